//! Building the pipelines from a diffusers folder or a folder converted by weights-tools
//! (native). Both keep `tokenizer*/` and `scheduler/` in the diffusers positions.

use std::path::Path;

use burn::tensor::Device;

use super::assembly::Role;
use super::conditioning::TextEncoder;
use super::memory_plan::{Network, NetworkBytes};
use super::parts::{self, BASE_PIPELINE, REFINER_PIPELINE, expect_pipeline};
use super::sdxl::{Base, BaseParts, Loaded, Refiner, UNetShape};
use super::generation::{Generation, Progress, Step};
use super::planned_run::RunHost;
use crate::error::{Error, Result};
use crate::models::unet::UNet2DConditionModel;
use crate::models::vae::AutoencoderKL;
use crate::weights::{ModelFolder, ModelSource};

fn text_encoder(model: &impl ModelSource, tokenizer: &str, encoder: &str, device: &Device) -> Result<TextEncoder> {
    let files = model.folder_files(tokenizer)?;
    let location = model.location().join(tokenizer).display().to_string();
    Ok(TextEncoder {
        tokenizer: parts::tokenizer(&location, |name| files.get(name).map(Vec::as_slice))?,
        model: parts::load(model, encoder, device)?.1,
    })
}

fn text_encoders(model: &ModelFolder, device: &Device) -> Result<[TextEncoder; 2]> {
    Ok([text_encoder(model, "tokenizer", "text_encoder", device)?, text_encoder(model, "tokenizer_2", "text_encoder_2", device)?])
}

/// `network` of the model in `dir` (the refiner's folder for [`Network::RefinerUnet`]),
/// loaded onto `device`.
pub fn network(dir: &Path, network: Network, device: &Device) -> Result<Loaded> {
    let model = &ModelFolder::open(dir)?;
    Ok(match network {
        Network::TextEncoders => Loaded::TextEncoders(text_encoders(model, device)?),
        Network::Unet | Network::RefinerUnet => Loaded::Unet(parts::load(model, "unet", device)?.1),
        Network::Vae => Loaded::Vae(parts::load(model, "vae", device)?.1),
    })
}

/// The model's UNet with its weights when `loaded`, and its shape either way.
fn unet(model: &ModelFolder, loaded: bool, device: &Device) -> Result<(Option<UNet2DConditionModel>, UNetShape)> {
    let unet = loaded.then(|| parts::load::<UNet2DConditionModel>(model, "unet", device)).transpose()?.map(|(_, unet)| unet);
    let shape = parts::unet_shape(model, unet.as_ref(), device)?;
    Ok((unet, shape))
}

/// The base model of a folder with the networks in `networks` loaded (see
/// [`Base::from_folder`]); the others are checked as configs and loaded later.
pub fn base(dir: &Path, networks: &[Network], device: &Device) -> Result<Base> {
    let model = ModelFolder::open(dir)?;
    let model = &model;
    expect_pipeline(model, BASE_PIPELINE, "base model")?;
    let vae_config = parts::init::<AutoencoderKL>(model, "vae", device)?.0;
    let wanted = |network| networks.contains(&network);
    let vae = wanted(Network::Vae).then(|| parts::load::<AutoencoderKL>(model, "vae", device)).transpose()?.map(|(_, vae)| vae);
    let text_encoders = wanted(Network::TextEncoders).then(|| text_encoders(model, device)).transpose()?;
    let (unet, unet_shape) = unet(model, wanted(Network::Unet), device)?;
    let parts = BaseParts {
        text_encoders,
        unet,
        unet_shape,
        vae,
        vae_config,
        scheduler: parts::scheduler_config(
            &model.location().display().to_string(),
            model.folder_files("scheduler")?.get("scheduler_config.json").map(Vec::as_slice),
        )?,
    };
    Ok(Base::from_parts(model, parts))
}

/// The refiner of a folder, its UNet loaded when `loaded` (see [`Refiner::from_folder`]).
pub fn refiner(dir: &Path, loaded: bool, device: &Device) -> Result<Refiner> {
    let model = ModelFolder::open(dir)?;
    expect_pipeline(&model, REFINER_PIPELINE, "refiner")?;
    let (unet, shape) = unet(&model, loaded, device)?;
    Ok(Refiner::from_parts(&model, unet, shape))
}

/// Bytes each network of a base (and its refiner) takes on the device, from converted folders'
/// manifests; `None` when a folder is a diffusers one (its networks' size on the device is
/// known only once loaded).
pub fn network_bytes(base: &Path, refiner: Option<&Path>) -> Result<Option<NetworkBytes>> {
    let mut sizes = Vec::new();
    for (dir, role) in std::iter::once((base, Role::Base)).chain(refiner.map(|dir| (dir, Role::Refiner))) {
        let ModelFolder::Converted(model) = ModelFolder::open(dir)? else { return Ok(None) };
        sizes.extend(role.network_bytes(model.manifest()));
    }
    Ok(Some(NetworkBytes::from_sizes(sizes)))
}

/// A run's host natively ([`RunHost`]): released networks load from their folders, steps go to
/// `progress`; nothing waits.
pub struct Folders<'a> {
    pub base: &'a Path,
    /// Required when the run refines.
    pub refiner: Option<&'a Path>,
    pub device: &'a Device,
    pub progress: &'a mut dyn Progress,
}

impl RunHost for Folders<'_> {
    async fn load(&mut self, which: Network) -> Result<Loaded> {
        let dir = match which {
            Network::RefinerUnet => self.refiner.ok_or(Error::NotLoaded(which.describe()))?,
            _ => self.base,
        };
        network(dir, which, self.device)
    }

    async fn step(&mut self, step: Step) -> Result<()> {
        Generation::report(step, self.progress)
    }

    fn warn(&mut self, message: String) {
        self.progress.warn(message);
    }
}

/// The output of a future whose awaits never wait (a native host's: [`Folders`]), polled on
/// this thread: `finished(generate_planned(..))` natively.
pub fn finished<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}

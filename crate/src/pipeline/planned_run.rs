//! A run under a memory plan ([`super::memory_plan`]): before each phase the device is made to
//! hold what the plan keeps for it, the caller (a [`RunHost`]) loading a released network
//! again. Each mode of running ([`super::text_to_image`], [`super::image_to_image`]) starts its
//! run here and ends it with [`denoise_and_decode`].

use burn::tensor::{Device, Tensor};

use super::generation::{Generation, Stage, Step};
use super::memory_plan::{MemoryPlan, Network, NetworkBytes};
use super::params::BufferLimit;
use super::sdxl::{Loaded, Models, Reloads, Sdxl};
use crate::clock;
use crate::error::Result;

/// What a run under a memory plan asks of its caller: a released network loaded again
/// (natively from its folder, in the browser from Cache Storage), each finished step reported
/// (`Err(Cancelled)` stops the run), warnings passed on. Natively these finish at once
/// ([`super::folder::Folders`]); in the browser they await the cache and the page.
#[allow(async_fn_in_trait)] // implemented and awaited within this crate only, never sent across threads
pub trait RunHost {
    async fn load(&mut self, network: Network) -> Result<Loaded>;
    async fn step(&mut self, step: Step) -> Result<()>;
    fn warn(&mut self, message: String);
}

/// Starts a run whose networks need `working` bytes of activations: checked against the
/// plan's budget before anything loads, its reloads and phases counted from zero, the device
/// holding what `plan` keeps for the first phase, which runs `network`.
pub(super) async fn begin(
    models: &mut Models,
    plan: &MemoryPlan,
    working: &NetworkBytes,
    network: Network,
    device: &Device,
    host: &mut impl RunHost,
) -> Result<()> {
    plan.for_run(working)?;
    models.reloads = Reloads::default();
    models.phases.clear();
    prepare(models, plan, network, device, host).await
}

/// The pipeline of a run under `plan`: buffers within `limit`, the VAE's also within what the
/// plan's budget leaves it ([`Sdxl::within_plan`]).
pub(super) fn pipeline<'m>(models: &'m Models, plan: &MemoryPlan, refined: bool, limit: &Option<BufferLimit>) -> Sdxl<'m> {
    models.sdxl(refined, limit.clone()).within_plan(plan)
}

/// Makes the device hold what `plan` keeps for a phase running `network`.
pub(super) async fn prepare(models: &mut Models, plan: &MemoryPlan, network: Network, device: &Device, host: &mut impl RunHost) -> Result<()> {
    if models.release_for(plan, network, device) {
        let started = clock::seconds();
        let loaded = host.load(network).await?;
        models.hold(network, loaded)?;
        models.reloads.count += 1;
        models.reloads.seconds += clock::seconds() - started;
    }
    models.start_phase(network, device);
    Ok(())
}

/// Takes `generation`'s steps, each stage with its UNet loaded as `plan` says, then decodes
/// with the VAE. Returns the pixels [H, W, 3], on the device.
pub(super) async fn denoise_and_decode(
    models: &mut Models,
    plan: &MemoryPlan,
    refined: bool,
    limit: Option<BufferLimit>,
    mut generation: Generation<'_>,
    device: &Device,
    host: &mut impl RunHost,
) -> Result<Tensor<3>> {
    while let Some(stage) = generation.next_stage() {
        let network = match stage {
            Stage::Base => Network::Unet,
            Stage::Refiner => Network::RefinerUnet,
        };
        prepare(models, plan, network, device, host).await?;
        if let Some(step) = pipeline(models, plan, refined, &limit).step(&mut generation)? {
            host.step(step).await?;
        }
    }
    prepare(models, plan, Network::Vae, device, host).await?;
    let pixels = pipeline(models, plan, refined, &limit).decode_pixels(generation.latents());
    models.sample_memory(device);
    pixels
}

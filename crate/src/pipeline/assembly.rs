//! A base or refiner built from a converted model's files handed over one at a time, as the
//! browser downloads them: the manifest first, then each file it lists. Every file is checked
//! against the manifest (size, SHA-256) before use; a shard's tensors go straight into their
//! module, so only one shard is held at a time.

use std::collections::BTreeMap;

use burn::tensor::Device;
use serde::Serialize;

use super::conditioning::TextEncoder;
use super::parts::{self, BASE_PIPELINE, Part, REFINER_PIPELINE, expect_pipeline};
use super::memory_plan::{Network, Residency};
use super::sdxl::{Base, BaseParts, Loaded, Refiner};
use crate::error::{Error, Result};
use crate::models::clip::ClipTextModel;
use crate::models::unet::UNet2DConditionModel;
use crate::models::vae::AutoencoderKL;
use crate::tokenizer::ClipTokenizer;
use crate::weights::ModelSource;
use crate::weights::manifest::{Manifest, check_bytes};
use crate::weights::sharded::{ModuleAssembly, ShardedModel};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Base,
    Refiner,
}

/// A file the assembly needs, as the manifest lists it (`path` relative to the manifest).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NeededFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// The component a shard belongs to; `None` for tokenizer and scheduler files.
    pub component: Option<String>,
}

impl Role {
    /// The networks each role brings: the refiner shares text encoder 2 and the VAE with the
    /// base (the SDXL model card's ensemble of experts), so only its UNet is fetched.
    pub fn networks(self) -> &'static [Network] {
        match self {
            Role::Base => &[Network::TextEncoders, Network::Unet, Network::Vae],
            Role::Refiner => &[Network::RefinerUnet],
        }
    }

    /// Bytes each of its networks takes on the device, from its converted model's `manifest`.
    pub fn network_bytes(self, manifest: &Manifest) -> Vec<(Network, u64)> {
        self.networks().iter().map(|&network| (network, network.bytes_in(manifest))).collect()
    }
}

/// The networks being filled as their shards arrive (those of the role to load now).
#[derive(Default)]
struct Modules {
    text_encoder: Option<ModuleAssembly<ClipTextModel>>,
    text_encoder_2: Option<ModuleAssembly<ClipTextModel>>,
    unet: Option<ModuleAssembly<UNet2DConditionModel>>,
    vae: Option<ModuleAssembly<AutoencoderKL>>,
}

pub struct Assembly {
    model: ShardedModel,
    role: Role,
    device: Device,
    needed: Vec<NeededFile>,
    /// Paths of the needed files not yet added.
    missing: std::collections::BTreeSet<String>,
    /// Small files (tokenizers, scheduler config) kept until the end.
    files: BTreeMap<String, Vec<u8>>,
    modules: Modules,
    residency: Residency,
}

fn start<P: Part>(model: &ShardedModel, component: &str, device: &Device) -> Result<ModuleAssembly<P>> {
    let (_, module) = parts::init::<P>(model, component, device)?;
    Ok(ModuleAssembly::new(component, module, P::BUFFERS))
}

impl Modules {
    /// Modules for `networks`, their weights to come.
    fn of(model: &ShardedModel, networks: &[Network], device: &Device) -> Result<Self> {
        let mut modules = Modules::default();
        for network in networks {
            match network {
                Network::TextEncoders => {
                    modules.text_encoder = Some(start(model, "text_encoder", device)?);
                    modules.text_encoder_2 = Some(start(model, "text_encoder_2", device)?);
                }
                Network::Unet | Network::RefinerUnet => modules.unet = Some(start(model, "unet", device)?),
                Network::Vae => modules.vae = Some(start(model, "vae", device)?),
            }
        }
        Ok(modules)
    }
}

fn needed_shards(model: &ShardedModel, networks: &[Network]) -> Result<Vec<NeededFile>> {
    let mut needed = Vec::new();
    for component in networks.iter().flat_map(|network| network.components()) {
        model.class_of(component)?;
        needed.extend(model.manifest().shards_of(component).map(|s| NeededFile {
            path: s.file.clone(),
            size: s.size,
            sha256: s.sha256.clone(),
            component: Some(s.component.clone()),
        }));
    }
    Ok(needed)
}

impl Assembly {
    /// Reads the manifest fetched from `folder` (a URL or path, naming files in messages),
    /// checks it describes a model of `role`, and prepares every network (so a bad config
    /// fails before anything is downloaded). Resident: the networks load as their files
    /// arrive. Sequential: every file is still checked (and so may be cached), but the networks
    /// load later, one at a time, from a [`CachedModel`].
    pub fn new(manifest: &[u8], folder: &str, role: Role, residency: Residency, device: &Device) -> Result<Self> {
        let model = ShardedModel::from_manifest(manifest, folder)?;
        match role {
            Role::Base => expect_pipeline(&model, BASE_PIPELINE, "base model")?,
            Role::Refiner => expect_pipeline(&model, REFINER_PIPELINE, "refiner")?,
        }
        let mut needed = Vec::new();
        if role == Role::Base {
            // The tokenizers and the scheduler config.
            needed.extend(model.manifest().files.iter().map(|f| NeededFile {
                path: f.path.clone(),
                size: f.size,
                sha256: f.sha256.clone(),
                component: None,
            }));
        }
        needed.extend(needed_shards(&model, role.networks())?);
        // Every network's config is checked now, before anything is downloaded.
        let modules = Modules::of(&model, role.networks(), device)?;
        let mut assembly = Self::with(model, role, needed, BTreeMap::new(), modules, device);
        assembly.set_residency(residency)?;
        Ok(assembly)
    }

    /// Resident: the networks load as their files arrive; sequential: the files are only
    /// checked. Chosen before the first file is added.
    pub fn set_residency(&mut self, residency: Residency) -> Result<()> {
        if self.missing.len() != self.needed.len() {
            return Err(Error::Input { name: "memory".into(), message: "choose the memory plan before adding files".into() });
        }
        if residency == self.residency {
            return Ok(());
        }
        self.modules = match residency {
            Residency::Resident => Modules::of(&self.model, self.role.networks(), &self.device)?,
            Residency::Sequential => Modules::default(),
        };
        self.residency = residency;
        Ok(())
    }

    pub fn residency(&self) -> Residency {
        self.residency
    }

    pub fn role(&self) -> Role {
        self.role
    }

    fn with(
        model: ShardedModel,
        role: Role,
        needed: Vec<NeededFile>,
        files: BTreeMap<String, Vec<u8>>,
        modules: Modules,
        device: &Device,
    ) -> Self {
        Self {
            missing: needed.iter().map(|f| f.path.clone()).collect(),
            model,
            role,
            device: device.clone(),
            needed,
            files,
            modules,
            residency: Residency::Resident,
        }
    }

    fn location(&self) -> std::path::Display<'_> {
        self.model.location().display()
    }

    /// Every file to fetch, in a good order to add them.
    pub fn needed(&self) -> &[NeededFile] {
        &self.needed
    }

    /// Total bytes of [`Self::needed`].
    pub fn total_bytes(&self) -> u64 {
        self.needed.iter().map(|f| f.size).sum()
    }

    /// Bytes each network of the role takes on the device: its shards' sizes (weights stay on
    /// the device as stored); the refiner's UNet under `unet` of its own model.
    pub fn network_bytes(&self) -> Vec<(Network, u64)> {
        self.role.network_bytes(self.model.manifest())
    }

    /// Checks a needed file's bytes ([`Error::Integrity`] when they differ from the manifest:
    /// fetch it again) and takes it in: a shard's tensors are loaded into their network, or
    /// passed over when the network loads later.
    pub fn add(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        let Some(file) = self.needed.iter().find(|f| f.path == path) else {
            return Err(Error::model(self.location(), format!("the manifest lists no needed file {path}")));
        };
        let Some(component) = file.component.clone() else {
            check_bytes(&format!("{}/{path}", self.location()), file.size, &file.sha256, bytes)?;
            self.files.insert(path.to_string(), bytes.to_vec());
            self.missing.remove(path);
            return Ok(());
        };
        let view = self.model.check_shard(path, bytes)?;
        let device = &self.device;
        let modules = &mut self.modules;
        match component.as_str() {
            "text_encoder" => modules.text_encoder.as_mut().map(|a| a.apply(&view, device)),
            "text_encoder_2" => modules.text_encoder_2.as_mut().map(|a| a.apply(&view, device)),
            "unet" => modules.unet.as_mut().map(|a| a.apply(&view, device)),
            "vae" => modules.vae.as_mut().map(|a| a.apply(&view, device)),
            _ => return Err(Error::model(path, format!("no network takes `{component}`"))),
        }
        .transpose()?;
        self.missing.remove(path);
        Ok(())
    }

    /// Whether every needed file was added.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }

    fn check_complete(&self) -> Result<()> {
        match self.missing.iter().next() {
            None => Ok(()),
            Some(path) => Err(Error::model(
                self.location(),
                format!("{} file(s) not loaded yet, {path} among them", self.missing.len()),
            )),
        }
    }

    fn tokenizer(&self, folder: &str) -> Result<ClipTokenizer> {
        let location = format!("{}/{folder}", self.location());
        parts::tokenizer(&location, |name| self.files.get(&format!("{folder}/{name}")).map(Vec::as_slice))
    }

    fn finish_part<P: Part>(&self, part: Option<ModuleAssembly<P>>) -> Result<Option<P>> {
        part.map(|part| part.finish(&self.model, &self.device)).transpose()
    }

    fn text_encoders(&mut self) -> Result<Option<[TextEncoder; 2]>> {
        let (one, two) = (self.modules.text_encoder.take(), self.modules.text_encoder_2.take());
        let (Some(one), Some(two)) = (self.finish_part(one)?, self.finish_part(two)?) else { return Ok(None) };
        Ok(Some([
            TextEncoder { tokenizer: self.tokenizer("tokenizer")?, model: one },
            TextEncoder { tokenizer: self.tokenizer("tokenizer_2")?, model: two },
        ]))
    }

    /// What loading this model's networks again takes: its manifest and small files (its
    /// shards are in the browser's cache).
    pub fn cached(&self) -> CachedModel {
        CachedModel { model: self.model.clone(), role: self.role, files: self.files.clone() }
    }

    /// The base, with the networks loaded so far (all of them when resident).
    pub fn into_base(mut self) -> Result<Base> {
        self.check_complete()?;
        if self.role != Role::Base {
            return Err(Error::Unsupported("a refiner's files make no base".into()));
        }
        let scheduler = self.files.get("scheduler/scheduler_config.json").map(Vec::as_slice);
        let scheduler = parts::scheduler_config(&self.location().to_string(), scheduler)?;
        let vae_config = parts::init::<AutoencoderKL>(&self.model, "vae", &self.device)?.0;
        let unet = self.modules.unet.take();
        let unet = self.finish_part(unet)?;
        let vae = self.modules.vae.take();
        let parts = BaseParts {
            text_encoders: self.text_encoders()?,
            unet_shape: parts::unet_shape(&self.model, unet.as_ref(), &self.device)?,
            unet,
            vae: self.finish_part(vae)?,
            vae_config,
            scheduler,
        };
        Ok(Base::from_parts(&self.model, parts))
    }

    /// The refiner, its UNet loaded when resident.
    pub fn into_refiner(mut self) -> Result<Refiner> {
        self.check_complete()?;
        if self.role != Role::Refiner {
            return Err(Error::Unsupported("a base model's files make no refiner".into()));
        }
        let unet = self.modules.unet.take();
        let unet = self.finish_part(unet)?;
        let shape = parts::unet_shape(&self.model, unet.as_ref(), &self.device)?;
        Ok(Refiner::from_parts(&self.model, unet, shape))
    }

    /// The network this assembly was made for by [`CachedModel::assembly`].
    pub fn into_network(mut self, network: Network) -> Result<Loaded> {
        self.check_complete()?;
        let location = self.location().to_string();
        let missing = || Error::model(location, format!("{} was not being assembled", network.describe()));
        Ok(match network {
            Network::TextEncoders => Loaded::TextEncoders(self.text_encoders()?.ok_or_else(missing)?),
            Network::Unet | Network::RefinerUnet => {
                let unet = self.modules.unet.take();
                Loaded::Unet(self.finish_part(unet)?.ok_or_else(missing)?)
            }
            Network::Vae => {
                let vae = self.modules.vae.take();
                Loaded::Vae(self.finish_part(vae)?.ok_or_else(missing)?)
            }
        })
    }
}

/// A model whose shards are cached where they can be fetched again (the browser's Cache
/// Storage): its manifest and small files, from which [`Self::assembly`] loads one network.
pub struct CachedModel {
    model: ShardedModel,
    role: Role,
    files: BTreeMap<String, Vec<u8>>,
}

impl CachedModel {
    pub fn role(&self) -> Role {
        self.role
    }

    /// An assembly of `network` alone: its shards are [`Assembly::needed`], then
    /// [`Assembly::into_network`].
    pub fn assembly(&self, network: Network, device: &Device) -> Result<Assembly> {
        if !self.role.networks().contains(&network) {
            return Err(Error::Unsupported(format!("{} is not part of this model", network.describe())));
        }
        let needed = needed_shards(&self.model, &[network])?;
        let modules = Modules::of(&self.model, &[network], device)?;
        Ok(Assembly::with(self.model.clone(), self.role, needed, self.files.clone(), modules, device))
    }
}

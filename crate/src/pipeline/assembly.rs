//! A base or refiner built from a converted model's files handed over one at a time, as the
//! browser downloads them: the manifest first, then each file it lists. Every file is checked
//! against the manifest (size, SHA-256) before use; a shard's tensors go straight into their
//! module, so only one shard is held at a time.

use std::collections::BTreeMap;

use burn::tensor::Device;
use serde::Serialize;

use super::conditioning::TextEncoder;
use super::parts::{self, BASE_PIPELINE, Part, REFINER_PIPELINE, expect_pipeline};
use super::sdxl::{Base, BaseParts, Refiner};
use crate::error::{Error, Result};
use crate::models::clip::ClipTextModel;
use crate::models::unet::UNet2DConditionModel;
use crate::models::vae::{AutoencoderKL, VaeConfig};
use crate::tokenizer::ClipTokenizer;
use crate::weights::ModelSource;
use crate::weights::manifest::check_bytes;
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

/// The components each role loads. The refiner shares text encoder 2 and the VAE with the
/// base (the SDXL model card's ensemble of experts), so only its UNet is fetched.
fn components(role: Role) -> &'static [&'static str] {
    match role {
        Role::Base => &["text_encoder", "text_encoder_2", "unet", "vae"],
        Role::Refiner => &["unet"],
    }
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
    text_encoder: Option<ModuleAssembly<ClipTextModel>>,
    text_encoder_2: Option<ModuleAssembly<ClipTextModel>>,
    unet: Option<ModuleAssembly<UNet2DConditionModel>>,
    vae: Option<(VaeConfig, ModuleAssembly<AutoencoderKL>)>,
}

fn start<P: Part>(model: &ShardedModel, component: &str, device: &Device) -> Result<(P::Config, ModuleAssembly<P>)> {
    let (config, module) = parts::init::<P>(model, component, device)?;
    Ok((config, ModuleAssembly::new(component, module, P::BUFFERS)))
}

impl Assembly {
    /// Reads the manifest fetched from `folder` (a URL or path, naming files in messages),
    /// checks it describes a model of `role`, and prepares every network (so a bad config
    /// fails before anything is downloaded).
    pub fn new(manifest: &[u8], folder: &str, role: Role, device: &Device) -> Result<Self> {
        let model = ShardedModel::from_manifest(manifest, folder)?;
        match role {
            Role::Base => expect_pipeline(&model, BASE_PIPELINE, "base model")?,
            Role::Refiner => expect_pipeline(&model, REFINER_PIPELINE, "refiner")?,
        }
        let wanted = components(role);
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
        for component in wanted {
            model.class_of(component)?;
            needed.extend(model.manifest().shards_of(component).map(|s| NeededFile {
                path: s.file.clone(),
                size: s.size,
                sha256: s.sha256.clone(),
                component: Some(s.component.clone()),
            }));
        }
        let (text_encoder, text_encoder_2, vae) = match role {
            Role::Base => (
                Some(start(&model, "text_encoder", device)?.1),
                Some(start(&model, "text_encoder_2", device)?.1),
                Some(start(&model, "vae", device)?),
            ),
            Role::Refiner => (None, None, None),
        };
        let unet = Some(start(&model, "unet", device)?.1);
        Ok(Self {
            missing: needed.iter().map(|f| f.path.clone()).collect(),
            model,
            role,
            device: device.clone(),
            needed,
            files: BTreeMap::new(),
            text_encoder,
            text_encoder_2,
            unet,
            vae,
        })
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

    /// Checks a needed file's bytes ([`Error::Integrity`] when they differ from the manifest:
    /// fetch it again) and takes it in: a shard's tensors are loaded into their network.
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
        match component.as_str() {
            "text_encoder" => self.text_encoder.as_mut().map(|a| a.apply(&view, device)),
            "text_encoder_2" => self.text_encoder_2.as_mut().map(|a| a.apply(&view, device)),
            "unet" => self.unet.as_mut().map(|a| a.apply(&view, device)),
            "vae" => self.vae.as_mut().map(|(_, a)| a.apply(&view, device)),
            _ => None,
        }
        .unwrap_or_else(|| Err(Error::model(path, format!("no network takes `{component}`"))))?;
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

    fn finish_part<P: Part>(&self, part: Option<ModuleAssembly<P>>) -> Result<P> {
        part.ok_or_else(|| Error::model(self.location(), "not a base model's assembly"))?
            .finish(&self.model, &self.device)
    }

    pub fn into_base(mut self) -> Result<Base> {
        self.check_complete()?;
        if self.role != Role::Base {
            return Err(Error::Unsupported("a refiner's files make no base".into()));
        }
        let scheduler = self.files.get("scheduler/scheduler_config.json").map(Vec::as_slice);
        let scheduler = parts::scheduler_config(&self.location().to_string(), scheduler)?;
        let (vae_config, vae) = self.vae.take().expect("a base assembly has a VAE");
        let (text_encoder, text_encoder_2, unet) = (self.text_encoder.take(), self.text_encoder_2.take(), self.unet.take());
        let parts = BaseParts {
            text_encoder: TextEncoder { tokenizer: self.tokenizer("tokenizer")?, model: self.finish_part(text_encoder)? },
            text_encoder_2: TextEncoder { tokenizer: self.tokenizer("tokenizer_2")?, model: self.finish_part(text_encoder_2)? },
            unet: self.finish_part(unet)?,
            vae: (vae_config, vae.finish(&self.model, &self.device)?),
            scheduler,
        };
        Ok(Base::from_parts(&self.model, parts))
    }

    pub fn into_refiner(mut self) -> Result<Refiner> {
        self.check_complete()?;
        if self.role != Role::Refiner {
            return Err(Error::Unsupported("a base model's files make no refiner".into()));
        }
        let unet = self.unet.take();
        let unet = self.finish_part(unet)?;
        Ok(Refiner::from_parts(&self.model, unet))
    }
}

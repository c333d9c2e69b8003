//! Building the pipelines from a diffusers folder or a folder converted by weights-tools
//! (native). Both keep `tokenizer*/` and `scheduler/` in the diffusers positions.

use std::path::Path;

use burn::tensor::Device;

use super::conditioning::TextEncoder;
use super::{Base, Refiner};
use crate::component::{load_text_encoder, load_unet, load_vae};
use crate::error::{Error, Result};
use crate::tokenizer::ClipTokenizer;
use crate::weights::ModelSource;
use crate::weights::diffusers::{DiffusersFolder, read_json};
use crate::weights::manifest::MANIFEST_FILE;
use crate::weights::sharded::ShardedModel;

/// Checks `model_index.json` names the pipeline expected of the folder.
fn expect_pipeline(model: &impl ModelSource, expected: &str, role: &str) -> Result<()> {
    match model.model_index().get("_class_name").and_then(|value| value.as_str()) {
        Some(class) if class == expected => Ok(()),
        other => Err(Error::Unsupported(format!(
            "{}: a {role} must be a {expected}, model_index.json says {}",
            model.location().display(),
            other.unwrap_or("nothing")
        ))),
    }
}

fn flag(model: &impl ModelSource, key: &str) -> Option<bool> {
    model.model_index().get(key).and_then(|value| value.as_bool())
}

fn text_encoder(model: &impl ModelSource, tokenizer: &str, encoder: &str, device: &Device) -> Result<TextEncoder> {
    let dir = model.location().join(tokenizer);
    Ok(TextEncoder {
        tokenizer: ClipTokenizer::from_dir(&dir).map_err(|e| Error::Weights(e.to_string()))?,
        model: load_text_encoder(model, encoder, device)?,
    })
}

fn base(model: &impl ModelSource, device: &Device) -> Result<Base> {
    expect_pipeline(model, "StableDiffusionXLPipeline", "base model")?;
    let (vae_config, vae) = load_vae(model, device)?;
    Ok(Base {
        text_encoder: text_encoder(model, "tokenizer", "text_encoder", device)?,
        text_encoder_2: text_encoder(model, "tokenizer_2", "text_encoder_2", device)?,
        unet: load_unet(model, device)?.1,
        vae,
        scheduler: read_json(&model.location().join("scheduler/scheduler_config.json"))?,
        scaling_factor: vae_config.scaling_factor,
        vae_scale_factor: vae_config.scale_factor(),
        force_zeros_for_empty_prompt: flag(model, "force_zeros_for_empty_prompt").unwrap_or(true),
    })
}

fn refiner(model: &impl ModelSource, device: &Device) -> Result<Refiner> {
    expect_pipeline(model, "StableDiffusionXLImg2ImgPipeline", "refiner")?;
    Ok(Refiner {
        unet: load_unet(model, device)?.1,
        force_zeros_for_empty_prompt: flag(model, "force_zeros_for_empty_prompt").unwrap_or(false),
    })
}

fn is_converted(dir: &Path) -> bool {
    dir.join(MANIFEST_FILE).is_file()
}

impl Base {
    pub fn from_folder(dir: &Path, device: &Device) -> Result<Self> {
        if is_converted(dir) { base(&ShardedModel::open(dir)?, device) } else { base(&DiffusersFolder::open(dir)?, device) }
    }
}

impl Refiner {
    pub fn from_folder(dir: &Path, device: &Device) -> Result<Self> {
        if is_converted(dir) {
            refiner(&ShardedModel::open(dir)?, device)
        } else {
            refiner(&DiffusersFolder::open(dir)?, device)
        }
    }
}

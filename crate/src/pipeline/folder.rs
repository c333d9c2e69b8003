//! Building the pipelines from diffusers folders (native).

use std::path::Path;

use burn::tensor::Device;

use super::conditioning::TextEncoder;
use super::{Base, Refiner};
use crate::component::{load_text_encoder, load_unet, load_vae};
use crate::error::{Error, Result};
use crate::tokenizer::ClipTokenizer;
use crate::weights::diffusers::{DiffusersFolder, read_json};

/// Opens a folder and checks `model_index.json` names the pipeline expected of it.
fn open_pipeline(dir: &Path, expected: &str, role: &str) -> Result<DiffusersFolder> {
    let folder = DiffusersFolder::open(dir)?;
    match folder.pipeline_class() {
        Some(class) if class == expected => Ok(folder),
        other => Err(Error::Unsupported(format!(
            "{}: a {role} must be a {expected}, model_index.json says {}",
            dir.display(),
            other.unwrap_or("nothing")
        ))),
    }
}

fn text_encoder(folder: &DiffusersFolder, tokenizer: &str, encoder: &str, device: &Device) -> Result<TextEncoder> {
    let dir = folder.root().join(tokenizer);
    Ok(TextEncoder {
        tokenizer: ClipTokenizer::from_dir(&dir).map_err(|e| Error::Weights(e.to_string()))?,
        model: load_text_encoder(folder, encoder, device)?,
    })
}

impl Base {
    pub fn from_folder(dir: &Path, device: &Device) -> Result<Self> {
        let folder = open_pipeline(dir, "StableDiffusionXLPipeline", "base model")?;
        let (vae_config, vae) = load_vae(&folder, device)?;
        Ok(Self {
            text_encoder: text_encoder(&folder, "tokenizer", "text_encoder", device)?,
            text_encoder_2: text_encoder(&folder, "tokenizer_2", "text_encoder_2", device)?,
            unet: load_unet(&folder, device)?.1,
            vae,
            scheduler: read_json(&dir.join("scheduler/scheduler_config.json"))?,
            scaling_factor: vae_config.scaling_factor,
            vae_scale_factor: vae_config.scale_factor(),
            force_zeros_for_empty_prompt: folder.flag("force_zeros_for_empty_prompt").unwrap_or(true),
        })
    }
}

impl Refiner {
    pub fn from_folder(dir: &Path, device: &Device) -> Result<Self> {
        let folder = open_pipeline(dir, "StableDiffusionXLImg2ImgPipeline", "refiner")?;
        Ok(Self {
            unet: load_unet(&folder, device)?.1,
            force_zeros_for_empty_prompt: folder.flag("force_zeros_for_empty_prompt").unwrap_or(false),
        })
    }
}

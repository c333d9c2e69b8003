//! Building the pipelines from a diffusers folder or a folder converted by weights-tools
//! (native). Both keep `tokenizer*/` and `scheduler/` in the diffusers positions.

use std::path::Path;

use burn::tensor::Device;

use super::conditioning::TextEncoder;
use super::parts::{self, BASE_PIPELINE, REFINER_PIPELINE, expect_pipeline};
use super::sdxl::{Base, BaseParts, Refiner};
use crate::error::Result;
use crate::weights::{ModelFolder, ModelSource};

fn text_encoder(model: &impl ModelSource, tokenizer: &str, encoder: &str, device: &Device) -> Result<TextEncoder> {
    let files = model.folder_files(tokenizer)?;
    let location = model.location().join(tokenizer).display().to_string();
    Ok(TextEncoder {
        tokenizer: parts::tokenizer(&location, |name| files.get(name).map(Vec::as_slice))?,
        model: parts::load(model, encoder, device)?.1,
    })
}

/// The base model of a folder (see [`Base::from_folder`]).
pub fn base(dir: &Path, device: &Device) -> Result<Base> {
    let model = ModelFolder::open(dir)?;
    let model = &model;
    expect_pipeline(model, BASE_PIPELINE, "base model")?;
    let parts = BaseParts {
        vae: parts::load(model, "vae", device)?,
        text_encoder: text_encoder(model, "tokenizer", "text_encoder", device)?,
        text_encoder_2: text_encoder(model, "tokenizer_2", "text_encoder_2", device)?,
        unet: parts::load(model, "unet", device)?.1,
        scheduler: parts::scheduler_config(
            &model.location().display().to_string(),
            model.folder_files("scheduler")?.get("scheduler_config.json").map(Vec::as_slice),
        )?,
    };
    Ok(Base::from_parts(model, parts))
}

/// The refiner of a folder (see [`Refiner::from_folder`]).
pub fn refiner(dir: &Path, device: &Device) -> Result<Refiner> {
    let model = ModelFolder::open(dir)?;
    expect_pipeline(&model, REFINER_PIPELINE, "refiner")?;
    Ok(Refiner::from_parts(&model, parts::load(&model, "unet", device)?.1))
}

//! Building the pipelines from a diffusers folder or a folder converted by weights-tools
//! (native). Both keep `tokenizer*/` and `scheduler/` in the diffusers positions.

use std::path::Path;

use burn::tensor::Device;

use super::conditioning::TextEncoder;
use super::parts::{self, BASE_PIPELINE, BaseParts, REFINER_PIPELINE, expect_pipeline};
use super::{Base, Refiner};
use crate::error::{Error, Result};
use crate::tokenizer::ClipTokenizer;
use crate::weights::diffusers::read_json;
use crate::weights::{ModelFolder, ModelSource};

fn text_encoder(model: &impl ModelSource, tokenizer: &str, encoder: &str, device: &Device) -> Result<TextEncoder> {
    let dir = model.location().join(tokenizer);
    Ok(TextEncoder {
        tokenizer: ClipTokenizer::from_dir(&dir).map_err(|e| Error::Weights(e.to_string()))?,
        model: parts::load(model, encoder, device)?.1,
    })
}

fn base(model: &impl ModelSource, device: &Device) -> Result<Base> {
    expect_pipeline(model, BASE_PIPELINE, "base model")?;
    let parts = BaseParts {
        vae: parts::load(model, "vae", device)?,
        text_encoder: text_encoder(model, "tokenizer", "text_encoder", device)?,
        text_encoder_2: text_encoder(model, "tokenizer_2", "text_encoder_2", device)?,
        unet: parts::load(model, "unet", device)?.1,
        scheduler: read_json(&model.location().join("scheduler/scheduler_config.json"))?,
    };
    Ok(Base::from_parts(model, parts))
}

fn refiner(model: &impl ModelSource, device: &Device) -> Result<Refiner> {
    expect_pipeline(model, REFINER_PIPELINE, "refiner")?;
    Ok(Refiner::from_parts(model, parts::load(model, "unet", device)?.1))
}

impl Base {
    pub fn from_folder(dir: &Path, device: &Device) -> Result<Self> {
        base(&ModelFolder::open(dir)?, device)
    }
}

impl Refiner {
    pub fn from_folder(dir: &Path, device: &Device) -> Result<Self> {
        refiner(&ModelFolder::open(dir)?, device)
    }
}

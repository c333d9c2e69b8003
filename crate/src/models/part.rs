//! The networks as components of a model: the classes `model_index.json` may name for each,
//! its config type, its buffers, and how it is checked and built.

use burn::module::Module;
use burn::tensor::Device;
use serde::de::DeserializeOwned;

use super::clip::{self, ClipTextConfig, ClipTextModel};
use super::unet::{UNet2DConditionModel, UNetConfig};
use super::vae::{AutoencoderKL, VaeConfig};
use crate::error::{Error, Result};

/// A network the pipelines use.
pub trait Part: Module + Sized {
    type Config: DeserializeOwned;
    /// The classes `model_index.json` may name for it.
    const CLASSES: &'static [&'static str];
    /// Checkpoint tensors that are buffers, not parameters.
    const BUFFERS: &'static [&'static str] = &[];
    /// Checks the config as [`Self::init`] does, building nothing.
    fn validate(config: &Self::Config) -> Result<()>;
    fn init(config: &Self::Config, device: &Device) -> Result<Self>;
}

impl Part for ClipTextModel {
    type Config = ClipTextConfig;
    const CLASSES: &'static [&'static str] = &["CLIPTextModel", "CLIPTextModelWithProjection"];
    const BUFFERS: &'static [&'static str] = clip::BUFFERS;
    fn validate(config: &ClipTextConfig) -> Result<()> {
        config.validate()
    }
    fn init(config: &ClipTextConfig, device: &Device) -> Result<Self> {
        config.init(device)
    }
}

impl Part for UNet2DConditionModel {
    type Config = UNetConfig;
    const CLASSES: &'static [&'static str] = &["UNet2DConditionModel"];
    fn validate(config: &UNetConfig) -> Result<()> {
        config.validate()
    }
    fn init(config: &UNetConfig, device: &Device) -> Result<Self> {
        config.init(device)
    }
}

impl Part for AutoencoderKL {
    type Config = VaeConfig;
    const CLASSES: &'static [&'static str] = &["AutoencoderKL"];
    fn validate(config: &VaeConfig) -> Result<()> {
        config.validate()
    }
    fn init(config: &VaeConfig, device: &Device) -> Result<Self> {
        config.init(device)
    }
}

/// Checks a component's `config.json` as the network `class` names would be built from it,
/// building nothing (the converter refuses a model that could not load).
pub fn check_config(class: &str, config: &serde_json::Value) -> Result<()> {
    fn check<P: Part>(class: &str, config: &serde_json::Value) -> Result<()> {
        let config: P::Config =
            serde_json::from_value(config.clone()).map_err(|e| Error::Unsupported(format!("{class} config: {e}")))?;
        P::validate(&config)
    }
    if ClipTextModel::CLASSES.contains(&class) {
        check::<ClipTextModel>(class, config)
    } else if UNet2DConditionModel::CLASSES.contains(&class) {
        check::<UNet2DConditionModel>(class, config)
    } else if AutoencoderKL::CLASSES.contains(&class) {
        check::<AutoencoderKL>(class, config)
    } else {
        Err(Error::Unsupported(format!("`{class}` is not a network the SDXL pipelines use")))
    }
}

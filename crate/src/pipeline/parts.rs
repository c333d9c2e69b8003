//! The pipelines' networks as components of a model: the classes each may have, its config, a
//! module of its shape, and the base and refiner made of them. Shared by folders (native),
//! `sdxl run` and the browser's [`super::assembly`].

use burn::module::Module;
use burn::tensor::Device;
use serde::de::DeserializeOwned;

use super::conditioning::TextEncoder;
use super::{Base, Refiner};
use crate::error::{Error, Result};
use crate::models::clip::{self, ClipTextConfig, ClipTextModel};
use crate::models::unet::{UNet2DConditionModel, UNetConfig};
use crate::models::vae::{AutoencoderKL, VaeConfig};
use crate::schedulers::SchedulerConfig;
use crate::weights::ModelSource;

/// A network the pipelines use.
pub trait Part: Module + Sized {
    type Config: DeserializeOwned;
    /// The classes `model_index.json` may name for it.
    const CLASSES: &'static [&'static str];
    /// Checkpoint tensors that are buffers, not parameters.
    const BUFFERS: &'static [&'static str] = &[];
    fn init(config: &Self::Config, device: &Device) -> Result<Self>;
}

impl Part for ClipTextModel {
    type Config = ClipTextConfig;
    const CLASSES: &'static [&'static str] = &["CLIPTextModel", "CLIPTextModelWithProjection"];
    const BUFFERS: &'static [&'static str] = clip::BUFFERS;
    fn init(config: &ClipTextConfig, device: &Device) -> Result<Self> {
        config.init(device)
    }
}

impl Part for UNet2DConditionModel {
    type Config = UNetConfig;
    const CLASSES: &'static [&'static str] = &["UNet2DConditionModel"];
    fn init(config: &UNetConfig, device: &Device) -> Result<Self> {
        config.init(device)
    }
}

impl Part for AutoencoderKL {
    type Config = VaeConfig;
    const CLASSES: &'static [&'static str] = &["AutoencoderKL"];
    fn init(config: &VaeConfig, device: &Device) -> Result<Self> {
        config.init(device)
    }
}

/// The component's config and a module of its shape, its weights still to be loaded; fails
/// when the model names another class for the component.
pub fn init<P: Part>(model: &impl ModelSource, component: &str, device: &Device) -> Result<(P::Config, P)> {
    let class = model.class_of(component)?;
    if !P::CLASSES.contains(&class) {
        return Err(Error::Unsupported(format!(
            "{}: `{component}` is a {class}, expected {}",
            model.location().display(),
            P::CLASSES.join(" or ")
        )));
    }
    let config = model.config(component)?;
    let module = P::init(&config, device)?;
    Ok((config, module))
}

/// The component's config and module with its weights.
pub fn load<P: Part>(model: &impl ModelSource, component: &str, device: &Device) -> Result<(P::Config, P)> {
    let (config, module) = init::<P>(model, component, device)?;
    let module = model.load(component, module, P::BUFFERS, device).map_err(|error| match error {
        // Errors about one shard already name its file and component.
        Error::Weights(message) if !message.contains(&model.location().display().to_string()) => {
            Error::Weights(format!("{}: {message}", model.location().join(component).display()))
        }
        other => other,
    })?;
    Ok((config, module))
}

/// Checks `model_index.json` names the pipeline expected of the model.
pub fn expect_pipeline(model: &impl ModelSource, expected: &str, role: &str) -> Result<()> {
    match model.model_index().get("_class_name").and_then(|value| value.as_str()) {
        Some(class) if class == expected => Ok(()),
        other => Err(Error::Unsupported(format!(
            "{}: a {role} must be a {expected}, model_index.json says {}",
            model.location().display(),
            other.unwrap_or("nothing")
        ))),
    }
}

pub const BASE_PIPELINE: &str = "StableDiffusionXLPipeline";
pub const REFINER_PIPELINE: &str = "StableDiffusionXLImg2ImgPipeline";

fn force_zeros_for_empty_prompt(model: &impl ModelSource, default: bool) -> bool {
    model.model_index().get("force_zeros_for_empty_prompt").and_then(|value| value.as_bool()).unwrap_or(default)
}

/// The base's networks, however they were loaded.
pub struct BaseParts {
    pub text_encoder: TextEncoder,
    pub text_encoder_2: TextEncoder,
    pub unet: UNet2DConditionModel,
    pub vae: (VaeConfig, AutoencoderKL),
    pub scheduler: SchedulerConfig,
}

impl Base {
    /// The base of `model` (whose pipeline class the caller checked) from its parts.
    pub fn from_parts(model: &impl ModelSource, parts: BaseParts) -> Self {
        let (vae_config, vae) = parts.vae;
        Base {
            text_encoder: parts.text_encoder,
            text_encoder_2: parts.text_encoder_2,
            unet: parts.unet,
            vae,
            scheduler: parts.scheduler,
            vae_config,
            force_zeros_for_empty_prompt: force_zeros_for_empty_prompt(model, true),
        }
    }
}

impl Refiner {
    /// The refiner of `model` (whose pipeline class the caller checked) from its UNet.
    pub fn from_parts(model: &impl ModelSource, unet: UNet2DConditionModel) -> Self {
        Refiner { unet, force_zeros_for_empty_prompt: force_zeros_for_empty_prompt(model, false) }
    }
}

//! The pipelines' networks as components of a model: the classes each may have, its config, a
//! module of its shape. Shared by folders (native),
//! `sdxl run` and the browser's [`super::assembly`].

use burn::tensor::Device;

use super::sdxl::UNetShape;
use crate::error::{Error, Result};
pub use crate::models::part::Part;
use crate::models::unet::UNet2DConditionModel;
use crate::schedulers::SchedulerConfig;
use crate::tokenizer::ClipTokenizer;
use crate::weights::ModelSource;

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

/// What the size rules need of the model's UNet: read from `unet` when it is loaded, else from a
/// module of its config's shape whose weights are never touched (nothing is allocated).
pub fn unet_shape(model: &impl ModelSource, unet: Option<&UNet2DConditionModel>, device: &Device) -> Result<UNetShape> {
    match unet {
        Some(unet) => Ok(UNetShape::of(unet)),
        None => Ok(UNetShape::of(&init::<UNet2DConditionModel>(model, "unet", device)?.1)),
    }
}

/// The component's config and module with its weights.
pub fn load<P: Part>(model: &impl ModelSource, component: &str, device: &Device) -> Result<(P::Config, P)> {
    let (config, module) = init::<P>(model, component, device)?;
    let module = model
        .load(component, module, P::BUFFERS, device)
        .map_err(|error| error.at(model.location().join(component).display()))?;
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

/// A tokenizer from its folder's files (`file(name)`, `None` when absent); `folder` (a path or
/// URL) names it in errors.
pub fn tokenizer<'a>(folder: &str, file: impl Fn(&str) -> Option<&'a [u8]>) -> Result<ClipTokenizer> {
    ClipTokenizer::from_folder_files(folder, file).map_err(|e| Error::model(folder, e.to_string()))
}

/// The scheduler settings from `scheduler/scheduler_config.json` of the model at `location`.
pub fn scheduler_config(location: &str, bytes: Option<&[u8]>) -> Result<SchedulerConfig> {
    let file = format!("{location}/scheduler/scheduler_config.json");
    let bytes = bytes.ok_or_else(|| Error::model(location, "the model has no scheduler/scheduler_config.json"))?;
    serde_json::from_slice(bytes).map_err(|e| Error::model(file, e.to_string()))
}

pub const BASE_PIPELINE: &str = "StableDiffusionXLPipeline";
pub const REFINER_PIPELINE: &str = "StableDiffusionXLImg2ImgPipeline";

//! Where a model comes from: [`ModelSource`], implemented by each kind of model folder
//! (a diffusers folder in `diffusers.rs`, a converted model in `sharded.rs`, either of them on
//! disk in `folder.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;

use crate::error::Result;

/// A model's components as diffusers names them: their classes, configs and weights; a
/// diffusers folder or a converted (sharded) model.
pub trait ModelSource {
    /// Where the model lives, for messages.
    fn location(&self) -> &Path;
    /// The class `model_index.json` names for a component, or a clear error when absent.
    fn class_of(&self, component: &str) -> Result<&str>;
    fn config<T: serde::de::DeserializeOwned>(&self, component: &str) -> Result<T>;
    /// `model_index.json`: the pipeline class and its flags (`force_zeros_for_empty_prompt`).
    fn model_index(&self) -> &serde_json::Map<String, serde_json::Value>;
    /// Fills `module`'s parameters with the component's weights (see [`super::load_module`]).
    fn load<M: Module>(&self, component: &str, module: M, buffers: &[&str], device: &Device) -> Result<M>;
    /// The files of one of the model's folders (a tokenizer, the scheduler), by name. A
    /// converted model's are those its manifest lists, each checked (size, SHA-256) as read.
    fn folder_files(&self, folder: &str) -> Result<BTreeMap<String, Vec<u8>>>;
}


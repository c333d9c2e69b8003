//! A model folder on disk (native), whichever kind it is.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;

use super::diffusers::DiffusersFolder;
use super::manifest;
use super::sharded::ShardedModel;
use super::source::ModelSource;
use crate::error::Result;

/// A model folder on disk (native): converted by weights-tools when it holds `manifest.json`,
/// else a diffusers folder.
pub enum ModelFolder {
    Diffusers(DiffusersFolder),
    Converted(ShardedModel),
}

impl ModelFolder {
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(if dir.join(manifest::MANIFEST_FILE).is_file() {
            Self::Converted(ShardedModel::open(dir)?)
        } else {
            Self::Diffusers(DiffusersFolder::open(dir)?)
        })
    }
}

impl ModelSource for ModelFolder {
    fn location(&self) -> &Path {
        match self {
            Self::Diffusers(model) => model.location(),
            Self::Converted(model) => model.location(),
        }
    }

    fn class_of(&self, component: &str) -> Result<&str> {
        match self {
            Self::Diffusers(model) => model.class_of(component),
            Self::Converted(model) => model.class_of(component),
        }
    }

    fn config<T: serde::de::DeserializeOwned>(&self, component: &str) -> Result<T> {
        match self {
            Self::Diffusers(model) => model.config(component),
            Self::Converted(model) => model.config(component),
        }
    }

    fn model_index(&self) -> &serde_json::Map<String, serde_json::Value> {
        match self {
            Self::Diffusers(model) => model.model_index(),
            Self::Converted(model) => model.model_index(),
        }
    }

    fn load<M: Module>(&self, component: &str, module: M, buffers: &[&str], device: &Device) -> Result<M> {
        match self {
            Self::Diffusers(model) => model.load(component, module, buffers, device),
            Self::Converted(model) => model.load(component, module, buffers, device),
        }
    }

    fn folder_files(&self, folder: &str) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
        match self {
            Self::Diffusers(model) => model.folder_files(folder),
            Self::Converted(model) => model.folder_files(folder),
        }
    }
}


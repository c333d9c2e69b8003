//! A diffusers pipeline folder as published: `model_index.json`, and per component a
//! `config.json` beside its weights (`diffusion_pytorch_model*.safetensors` for diffusers
//! models, `model*.safetensors` for transformers ones; sharded with an index; optionally the
//! `fp16` variant).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::safetensors_file::SafetensorsSource;
use crate::error::{Error, Result};

pub struct DiffusersFolder {
    root: PathBuf,
    /// component name → (library, class), from `model_index.json`.
    components: BTreeMap<String, (String, String)>,
    /// `model_index.json` as read.
    settings: serde_json::Map<String, serde_json::Value>,
}

impl DiffusersFolder {
    pub fn open(root: &Path) -> Result<Self> {
        let index: serde_json::Value = read_json(&root.join("model_index.json"))?;
        let serde_json::Value::Object(entries) = index else {
            return Err(Error::Weights(format!(
                "{}: model_index.json is not a JSON object",
                root.display()
            )));
        };
        let components = entries
            .iter()
            .filter_map(|(name, value)| match value {
                serde_json::Value::Array(pair) => match (pair.first(), pair.get(1)) {
                    (Some(serde_json::Value::String(lib)), Some(serde_json::Value::String(class))) => {
                        Some((name.clone(), (lib.clone(), class.clone())))
                    }
                    _ => None, // `[null, null]`: component absent (the refiner has no text_encoder)
                },
                _ => None, // `_class_name`, `force_zeros_for_empty_prompt`, …
            })
            .collect();
        Ok(Self { root: root.to_path_buf(), components, settings: entries })
    }

    /// `model_index.json` as read.
    pub fn model_index(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.settings
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The class `model_index.json` names for a component, or a clear error when absent.
    pub fn class_of(&self, component: &str) -> Result<&str> {
        self.components
            .get(component)
            .map(|(_, class)| class.as_str())
            .ok_or_else(|| {
                Error::Weights(format!(
                    "{}: model_index.json has no component `{component}` (it has: {})",
                    self.root.display(),
                    self.components.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })
    }

    pub fn config<T: DeserializeOwned>(&self, component: &str) -> Result<T> {
        self.class_of(component)?;
        read_json(&self.root.join(component).join("config.json"))
    }

    pub fn weights(&self, component: &str) -> Result<SafetensorsSource> {
        self.class_of(component)?;
        SafetensorsSource::open(&weight_files(&self.root.join(component))?)
    }
}

/// The weight files of one component folder: the full-precision files when present, else the
/// `fp16` variant; an index file names the shards.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    for stem in ["diffusion_pytorch_model", "model"] {
        for variant in ["", ".fp16"] {
            let single = dir.join(format!("{stem}{variant}.safetensors"));
            if single.is_file() {
                return Ok(vec![single]);
            }
            // diffusers names a variant's index both ways across versions.
            for index in [
                format!("{stem}{variant}.safetensors.index.json"),
                format!("{stem}.safetensors.index{variant}.json"),
            ] {
                let index = dir.join(index);
                if index.is_file() {
                    return shards_of(dir, &index);
                }
            }
        }
    }
    Err(Error::Weights(format!(
        "{}: no weights found (expected diffusion_pytorch_model[.fp16].safetensors, \
         model[.fp16].safetensors or a sharded *.safetensors.index.json)",
        dir.display()
    )))
}

fn shards_of(dir: &Path, index: &Path) -> Result<Vec<PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let index: Index = read_json(index)?;
    let files: BTreeSet<String> = index.weight_map.into_values().collect();
    Ok(files.into_iter().map(|file| dir.join(file)).collect())
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path: path.to_path_buf(), source })
}

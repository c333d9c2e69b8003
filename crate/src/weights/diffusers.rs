//! A diffusers pipeline folder as published: `model_index.json`, and per component a
//! `config.json` beside its weights (`diffusion_pytorch_model*.safetensors` for diffusers
//! models, `model*.safetensors` for transformers ones; sharded with an index; optionally the
//! `fp16` variant).

// Reads untrusted bytes: no unwrap, expect or unchecked indexing (each allowed case says why).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde::de::DeserializeOwned;

use super::files;
use super::loader::{Canonical, load_module};
use super::manifest::is_plain_file_name;
use super::safetensors::SafetensorsSource;
use super::source::ModelSource;
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
            return Err(Error::model(root.join("model_index.json").display(), "not a JSON object"));
        };
        for (name, _) in entries.iter().filter(|(_, value)| value.is_array()) {
            check_component_name(&root.join("model_index.json"), name)?;
        }
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

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn weights(&self, component: &str) -> Result<SafetensorsSource> {
        self.class_of(component)?;
        SafetensorsSource::open(&weight_files(&self.root.join(component))?)
    }
}

impl ModelSource for DiffusersFolder {
    fn location(&self) -> &Path {
        &self.root
    }

    fn class_of(&self, component: &str) -> Result<&str> {
        self.components
            .get(component)
            .map(|(_, class)| class.as_str())
            .ok_or_else(|| {
                Error::model(self.root.display(), format!(
                    "model_index.json has no component `{component}` (it has: {})",
                    self.components.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })
    }

    fn config<T: DeserializeOwned>(&self, component: &str) -> Result<T> {
        self.class_of(component)?;
        read_json(&self.root.join(component).join("config.json"))
    }

    fn model_index(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.settings
    }

    fn load<M: Module>(&self, component: &str, module: M, buffers: &[&str], device: &Device) -> Result<M> {
        let weights = self.weights(component)?;
        let class = self.class_of(component)?;
        load_module(module, &Canonical { class, inner: &weights }, buffers, device)
    }

    fn folder_files(&self, folder: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        let dir = self.root.join(folder);
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            if path.is_file() {
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                files.insert(name, files::read_capped(&path, files::MAX_JSON_BYTES)?);
            }
        }
        Ok(files)
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
    Err(Error::model(
        dir.display(),
        "no weights found (expected diffusion_pytorch_model[.fp16].safetensors, \
         model[.fp16].safetensors or a sharded *.safetensors.index.json)",
    ))
}

fn shards_of(dir: &Path, index: &Path) -> Result<Vec<PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let index_path = index;
    let index: Index = read_json(index_path)?;
    let files: BTreeSet<String> = index.weight_map.into_values().collect();
    files
        .into_iter()
        .map(|file| {
            // An index names files beside it; anything else (`../x`, `/dev/zero`) is refused.
            if is_plain_file_name(&file) {
                Ok(dir.join(file))
            } else {
                Err(Error::model(index_path.display(), format!("`{file}` is not a file name beside the index")))
            }
        })
        .collect()
}

/// `model_index.json`'s keys name components, which are folders beside it: a plain name
/// ([`is_plain_file_name`]), never a path.
pub fn check_component_name(index: &Path, name: &str) -> Result<()> {
    if is_plain_file_name(name) {
        Ok(())
    } else {
        Err(Error::model(index.display(), format!("`{name}` is not a component name (a folder beside it)")))
    }
}

/// Reads and parses a JSON file of at most [`files::MAX_JSON_BYTES`].
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = files::read_capped(path, files::MAX_JSON_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json { path: path.to_path_buf(), source })
}

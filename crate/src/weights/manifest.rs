//! `manifest.json` of a converted model (weights-tools/FORMAT.md): the model's configs, the
//! files beside it, and where every tensor lies in which shard. The structs mirror the JSON.
//! Parsing validates everything that can be checked without the shard bytes, so a loader
//! never indexes a shard with an offset the manifest did not promise to fit.

// Reads untrusted bytes: no unwrap, expect or unchecked indexing (each allowed case says why).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::quant::StoredDtype;
use crate::error::{Error, Result};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const FORMAT_NAME: &str = "sdxl-web-weights";
/// The newest format this build reads and the one it writes.
pub const FORMAT_VERSION: u32 = 1;
/// Tensors start at multiples of this within a shard, so a browser can view them as typed arrays.
pub const TENSOR_ALIGN: u64 = 16;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// `model_index.json` of the source diffusers folder, verbatim.
    pub model_index: serde_json::Map<String, serde_json::Value>,
    /// Networks with weights, by diffusers folder name (`unet`, `text_encoder`, …).
    pub components: BTreeMap<String, ComponentEntry>,
    /// Non-weight files beside the manifest (tokenizers, scheduler config), diffusers layout.
    pub files: Vec<FileEntry>,
    pub shards: Vec<ShardEntry>,
    pub tensors: Vec<TensorEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ComponentEntry {
    /// The class `model_index.json` names (`UNet2DConditionModel`, …).
    pub class: String,
    /// The component's `config.json`, verbatim.
    pub config: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the manifest, `/`-separated (`tokenizer/vocab.json`).
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardEntry {
    /// A file name beside the manifest.
    pub file: String,
    /// Every tensor of a shard belongs to this component.
    pub component: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TensorEntry {
    /// The diffusers checkpoint key.
    pub name: String,
    pub component: String,
    /// The checkpoint (PyTorch) shape: Linear weights are `[out, in]`.
    pub shape: Vec<usize>,
    pub dtype: StoredDtype,
    /// Elements per quantization block along the input dimension; only for q8/q4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<usize>,
    /// The shard's `file`.
    pub shard: String,
    pub offset: u64,
    pub length: u64,
}

impl Manifest {
    /// Parses and validates manifest bytes; `origin` names them in errors (a path or a URL).
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        let invalid = |message: String| Error::model(origin, message);
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
        let object = value.as_object().ok_or_else(|| invalid("not a JSON object".into()))?;
        if object.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(invalid(format!("not an {FORMAT_NAME} manifest (its `format` is not \"{FORMAT_NAME}\")")));
        }
        // The version is checked before anything else, so a newer manifest is reported as such
        // rather than as whatever new field or dtype this build does not know.
        let version = object.get("format_version").and_then(|v| v.as_u64());
        match version {
            Some(version) if version <= FORMAT_VERSION as u64 => {}
            Some(version) => {
                return Err(invalid(format!(
                    "format version {version} is newer than this build reads (up to {FORMAT_VERSION}); \
                     update sdxl-web or convert the model again with this version's sdxl-weights"
                )));
            }
            None => return Err(invalid("`format_version` is missing or not a number".into())),
        }
        // Tensors one by one, so that an error names the tensor.
        let mut object = object.clone();
        let tensors = match object.remove("tensors") {
            Some(serde_json::Value::Array(tensors)) => tensors,
            _ => return Err(invalid("`tensors` is missing or not an array".into())),
        };
        let tensors = tensors
            .into_iter()
            .enumerate()
            .map(|(index, tensor)| {
                let label = tensor
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map_or_else(|| format!("#{index}"), |name| format!("`{name}`"));
                serde_json::from_value(tensor).map_err(|e| invalid(format!("tensor {label}: {e}")))
            })
            .collect::<Result<Vec<TensorEntry>>>()?;
        object.insert("tensors".into(), serde_json::Value::Array(Vec::new()));
        let mut manifest: Manifest = serde_json::from_value(serde_json::Value::Object(object))
            .map_err(|e| invalid(e.to_string()))?;
        manifest.tensors = tensors;
        manifest.validate().map_err(invalid)?;
        Ok(manifest)
    }

    pub fn to_json(&self) -> String {
        #[allow(clippy::expect_used)] // plain data with string keys: serializing cannot fail
        serde_json::to_string_pretty(self).expect("a manifest always serializes")
    }

    pub fn shard(&self, file: &str) -> Option<&ShardEntry> {
        self.shards.iter().find(|shard| shard.file == file)
    }

    /// The shards holding a component's tensors, in manifest order.
    pub fn shards_of<'a>(&'a self, component: &'a str) -> impl Iterator<Item = &'a ShardEntry> + 'a {
        self.shards.iter().filter(move |shard| shard.component == component)
    }

    /// Everything checkable without the shard bytes: names, paths, and that each tensor's
    /// byte range fits its shard, matches its shape and dtype, and overlaps no other.
    fn validate(&self) -> std::result::Result<(), String> {
        let mut shards = BTreeMap::new();
        for shard in &self.shards {
            if !is_plain_file_name(&shard.file) {
                return Err(format!("shard file `{}` is not a plain file name", shard.file));
            }
            if !self.components.contains_key(&shard.component) {
                return Err(format!("shard {} belongs to unknown component `{}`", shard.file, shard.component));
            }
            check_hex_sha256(&shard.sha256).map_err(|e| format!("shard {}: {e}", shard.file))?;
            if shards.insert(shard.file.as_str(), (shard, Vec::new())).is_some() {
                return Err(format!("shard {} is listed twice", shard.file));
            }
        }
        let mut files = BTreeSet::new();
        for file in &self.files {
            if !is_relative_path(&file.path) || file.path == MANIFEST_FILE {
                return Err(format!("file `{}` is not a relative path inside the model", file.path));
            }
            check_hex_sha256(&file.sha256).map_err(|e| format!("file {}: {e}", file.path))?;
            if !files.insert(file.path.as_str()) || shards.contains_key(file.path.as_str()) {
                return Err(format!("file {} is listed twice", file.path));
            }
        }
        let mut names = BTreeSet::new();
        for tensor in &self.tensors {
            let name = &tensor.name;
            let Some((shard, ranges)) = shards.get_mut(tensor.shard.as_str()) else {
                return Err(format!("tensor {name}: unknown shard `{}`", tensor.shard));
            };
            if tensor.component != shard.component {
                return Err(format!(
                    "tensor {name}: component `{}`, but its shard {} holds `{}`",
                    tensor.component, shard.file, shard.component
                ));
            }
            if !names.insert((tensor.component.as_str(), name.as_str())) {
                return Err(format!("tensor {name} of `{}` is listed twice", tensor.component));
            }
            let expected = tensor
                .dtype
                .stored_len(&tensor.shape, tensor.block_size)
                .map_err(|e| format!("tensor {name}: {e}"))?;
            if tensor.length != expected {
                return Err(format!(
                    "tensor {name}: length {} bytes, but {} of shape {:?} takes {expected}",
                    tensor.length, tensor.dtype, tensor.shape
                ));
            }
            let end = tensor.offset.checked_add(tensor.length).filter(|end| *end <= shard.size);
            let Some(end) = end else {
                return Err(format!(
                    "tensor {name}: bytes {}..+{} lie beyond shard {} ({} bytes)",
                    tensor.offset, tensor.length, shard.file, shard.size
                ));
            };
            ranges.push((tensor.offset, end, name.as_str()));
        }
        for (file, (_, ranges)) in &mut shards {
            ranges.sort();
            for (before, after) in ranges.iter().zip(ranges.iter().skip(1)) {
                if after.0 < before.1 {
                    return Err(format!("tensors {} and {} overlap in shard {file}", before.2, after.2));
                }
            }
        }
        Ok(())
    }
}

/// A name that stays inside the model folder on every host: no separators, no `..`. The one
/// rule for every name a model file uses as a path (shards, listed files, diffusers' component
/// folders and index entries).
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn is_relative_path(path: &str) -> bool {
    path.split('/').all(is_plain_file_name)
}

fn check_hex_sha256(hex: &str) -> std::result::Result<(), String> {
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(format!("sha256 `{hex}` is not 64 lowercase hex digits"))
    }
}

/// Lowercase hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The integrity rule, the one place it is written: a listed file is used only when its size
/// and SHA-256 equal the manifest's ([`Error::Integrity`] otherwise: fetch it again).
/// `location` names the file in the message.
pub fn check_size(location: &str, listed: u64, actual: u64) -> Result<()> {
    if actual == listed {
        return Ok(());
    }
    Err(Error::Integrity {
        location: location.into(),
        problem: format!("{actual} bytes, the manifest says {listed} (truncated or replaced)"),
    })
}

/// See [`check_size`]; `actual` is the lowercase hex SHA-256 of the file.
pub fn check_sha256(location: &str, listed: &str, actual: &str) -> Result<()> {
    if actual == listed {
        return Ok(());
    }
    Err(Error::Integrity {
        location: location.into(),
        problem: format!("SHA-256 {actual} differs from the manifest's {listed} (corrupted or replaced)"),
    })
}

/// [`check_size`] then [`check_sha256`] of bytes in memory.
pub fn check_bytes(location: &str, size: u64, sha256: &str, bytes: &[u8]) -> Result<()> {
    check_size(location, size, bytes.len() as u64)?;
    check_sha256(location, sha256, &sha256_hex(bytes))
}

//! Diffusers folder → converted model (weights-tools/FORMAT.md), streaming: one tensor is read,
//! encoded and appended to the open shard at a time, so memory stays near the largest tensor
//! whatever the checkpoint's size.

// Reads untrusted bytes: no unwrap, expect or unchecked indexing (each allowed case says why).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::Digest;

use super::diffusers::{check_component_name, read_json, weight_files};
use super::manifest::{
    ComponentEntry, FORMAT_NAME, FORMAT_VERSION, FileEntry, MANIFEST_FILE, Manifest, ShardEntry, TENSOR_ALIGN,
    TensorEntry, hex,
};
use super::quant::{self, StoredDtype};
use super::safetensors::SafetensorsSource;
use super::single_file;
use super::sharded::hash_file;
use super::canonical_key;
use super::TensorSource;
use crate::error::{Error, Result};
use crate::models::clip;
use crate::models::part::check_config;

pub const DEFAULT_SHARD_MB: u64 = 64;

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// How linear and conv weights are stored; other tensors are f16, or f32 when this is f32.
    pub quant: StoredDtype,
    /// A shard is closed before it would exceed this many bytes (a larger tensor gets a
    /// shard of its own).
    pub shard_bytes: u64,
    pub block_size: usize,
    /// For a single-file checkpoint, which has none: the diffusers folder (weights not needed)
    /// whose `model_index.json`, configs, tokenizers and scheduler go with the model.
    pub config_from: Option<PathBuf>,
    /// Only these `model_index.json` entries (networks or file folders) go into the model; all
    /// when `None`. A refiner used beside its base needs only `unet`.
    pub components: Option<Vec<String>>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self { quant: StoredDtype::Q8, shard_bytes: DEFAULT_SHARD_MB << 20, block_size: quant::DEFAULT_BLOCK_SIZE, config_from: None, components: None }
    }
}

/// Converts `src` — a diffusers folder, or a Stability single-file checkpoint together with
/// `options.config_from` — into `dst` (which must not exist or be empty); `note`
/// receives progress lines. Everything is written into a temporary folder beside `dst` and
/// renamed into place once the manifest checks out, so nothing is written outside `dst` and an
/// interrupted or failed run leaves no model a loader would accept (and no partial folder).
pub fn convert(src: &Path, dst: &Path, options: &ConvertOptions, note: &mut dyn FnMut(String)) -> Result<Manifest> {
    if options.block_size == 0 || options.shard_bytes == 0 {
        return Err(Error::Unsupported("block size and shard size must be positive".into()));
    }
    if std::fs::read_dir(dst).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(Error::model(dst.display(), "exists and is not empty; refusing to overwrite"));
    }
    if dst.exists() && !dst.is_dir() {
        return Err(Error::model(dst.display(), "exists and is not a folder; refusing to overwrite"));
    }
    let name = dst.file_name().ok_or_else(|| Error::model(dst.display(), "names no folder"))?;
    let parent = match dst.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let temporary = TemporaryFolder::new(parent.join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id())))?;
    let manifest = convert_into(src, &temporary.0, options, note)?;
    if dst.is_dir() {
        std::fs::remove_dir(dst).map_err(|e| Error::io(dst, e))?; // empty, checked above
    }
    std::fs::rename(&temporary.0, dst).map_err(|e| Error::io(dst, e))?;
    std::mem::forget(temporary); // it is `dst` now
    Ok(manifest)
}

/// A folder removed (with what is in it) unless the conversion into it succeeded.
struct TemporaryFolder(PathBuf);

impl TemporaryFolder {
    fn new(path: PathBuf) -> Result<Self> {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Self(path))
    }
}

impl Drop for TemporaryFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// [`convert`] into the empty folder `dst`.
fn convert_into(src: &Path, dst: &Path, options: &ConvertOptions, note: &mut dyn FnMut(String)) -> Result<Manifest> {
    let (config_dir, checkpoint) = if src.is_file() {
        let Some(config_dir) = options.config_from.as_deref() else {
            return Err(Error::Unsupported(format!(
                "{}: a single-file checkpoint has no configs or tokenizers; name a diffusers folder to take them from",
                src.display()
            )));
        };
        (config_dir, Some(SafetensorsSource::open(&[src.to_path_buf()])?))
    } else {
        (src, None)
    };
    let index_path = config_dir.join("model_index.json");
    let model_index: serde_json::Map<String, serde_json::Value> = read_json(&index_path)?;
    // Component names become paths below both folders: check them all before anything is read.
    for (name, _) in model_index.iter().filter(|(_, value)| value.is_array()) {
        check_component_name(&index_path, name)?;
    }
    if let Some(unknown) = options.components.iter().flatten().find(|name| !lists(&model_index, name)) {
        return Err(Error::Unsupported(format!(
            "{}: model_index.json lists no component `{unknown}`",
            config_dir.display()
        )));
    }
    let wanted = |name: &str| options.components.as_ref().is_none_or(|names| names.iter().any(|n| n == name));
    // Every network's config must build before anything is converted.
    for (component, entry) in &model_index {
        let class = entry.as_array().and_then(|pair| pair.get(1)).and_then(|class| class.as_str());
        let config = config_dir.join(component).join("config.json");
        if let Some(class) = class.filter(|_| wanted(component) && config.is_file()) {
            let value: serde_json::Value = read_json(&config)?;
            check_config(class, &value).map_err(|e| Error::model(config.display(), e.to_string()))?;
        }
    }
    // A single-file checkpoint, split into diffusers components.
    let mut parts = match &checkpoint {
        Some(file) => Some(single_file::components(file, &layout(config_dir, &model_index)?)?),
        None => None,
    };
    let mut manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        model_index: model_index.clone(),
        components: Default::default(),
        files: Vec::new(),
        shards: Vec::new(),
        tensors: Vec::new(),
    };
    for (component, entry) in &model_index {
        let Some(class) = entry.as_array().and_then(|pair| pair.get(1)).and_then(|class| class.as_str()) else {
            continue; // `_class_name`, flags, and `[null, null]` for an absent component
        };
        if !wanted(component) {
            parts.as_mut().map(|parts| parts.remove(component.as_str()));
            continue;
        }
        let dir = config_dir.join(component);
        if dir.join("config.json").is_file() {
            let config = read_json(&dir.join("config.json"))?;
            manifest.components.insert(component.clone(), ComponentEntry { class: class.into(), config });
            let source: Box<dyn TensorSource + '_> = match &mut parts {
                Some(parts) => Box::new(parts.remove(component.as_str()).ok_or_else(|| {
                    Error::model(src.display(), format!("no tensors of `{component}` in the checkpoint"))
                })?),
                None => Box::new(SafetensorsSource::open(&weight_files(&dir)?)?),
            };
            let mut writer = ShardWriter::new(dst, component, options.shard_bytes);
            for name in source.names() {
                if clip::BUFFERS.contains(&name.as_str()) {
                    continue; // not a parameter (integer position ids in older checkpoints)
                }
                let data = source.read(&name)?.ok_or_else(|| Error::model(dir.display(), format!("tensor {name} vanished")))?;
                let shape = data.shape().to_vec();
                let values = data.try_into_vec::<f32>().map_err(|e| Error::model(dir.display(), format!("tensor {name}: {e:?}")))?;
                let (dtype, block_size) = match options.quant {
                    q if q.is_quantized() && quant::is_quantizable(&name, &shape) => (q, Some(options.block_size)),
                    StoredDtype::F32 => (StoredDtype::F32, None),
                    _ => (StoredDtype::F16, None),
                };
                let bytes = quant::encode(dtype, &values, &shape, block_size)
                    .map_err(|e| Error::model(dir.display(), format!("tensor {name}: {e}")))?;
                if bytes.len() as u64 > options.shard_bytes {
                    note(format!("{component}: tensor {name} ({} bytes) exceeds the shard size; it gets a shard of its own", bytes.len()));
                }
                writer.add(TensorEntry {
                    name: canonical_key(class, name),
                    component: component.clone(),
                    shape,
                    dtype,
                    block_size,
                    shard: String::new(),
                    offset: 0,
                    length: bytes.len() as u64,
                }, &bytes)?;
            }
            let (shards, tensors) = writer.finish()?;
            note(format!("{component}: {} tensors in {} shard(s)", tensors.len(), shards.len()));
            manifest.shards.extend(shards);
            manifest.tensors.extend(tensors);
        } else if dir.is_dir() {
            manifest.files.extend(copy_files(&dir, &dst.join(component), component)?);
        }
    }
    if let Some(left) = parts.as_ref().and_then(|parts| parts.keys().next()) {
        return Err(Error::model(
            src.display(),
            format!("the checkpoint holds `{left}`, which {} does not list", config_dir.join("model_index.json").display()),
        ));
    }
    let path = dst.join(MANIFEST_FILE);
    // What is written must read back: the same checks a loader makes, before it is written.
    Manifest::parse(manifest.to_json().as_bytes(), &path.display().to_string())?;
    std::fs::write(&path, manifest.to_json()).map_err(|e| Error::io(&path, e))?;
    Ok(manifest)
}

/// Whether `model_index.json` names a class for `component` (absent ones are `[null, null]`).
fn lists(model_index: &serde_json::Map<String, serde_json::Value>, component: &str) -> bool {
    model_index.get(component).and_then(|entry| entry.get(1)).is_some_and(|class| class.is_string())
}

/// The architecture facts the single-file key mapping needs, from the diffusers configs.
fn layout(config_dir: &Path, model_index: &serde_json::Map<String, serde_json::Value>) -> Result<single_file::Layout> {
    let number = |component: &str, field: &str| -> Result<serde_json::Value> {
        let config: serde_json::Value = read_json(&config_dir.join(component).join("config.json"))?;
        config.get(field).cloned().ok_or_else(|| {
            Error::model(config_dir.display(), format!("{component}/config.json has no `{field}`"))
        })
    };
    let has_clip_l = lists(model_index, "text_encoder");
    Ok(single_file::Layout {
        unet_layers_per_block: number("unet", "layers_per_block")?.as_u64().unwrap_or(2) as usize,
        vae_blocks: number("vae", "block_out_channels")?.as_array().map_or(4, Vec::len),
        clip_l: has_clip_l.then_some(0),
        open_clip: if has_clip_l { 1 } else { 0 },
    })
}

/// Copies a folder's files (tokenizer, scheduler) and lists them, paths relative to the model.
fn copy_files(from: &Path, to: &Path, prefix: &str) -> Result<Vec<FileEntry>> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    let mut names: Vec<_> = std::fs::read_dir(from)
        .map_err(|e| Error::io(from, e))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
            let target = to.join(&name);
            std::fs::copy(&path, &target).map_err(|e| Error::io(&target, e))?;
            let (size, sha256) = hash_file(&target)?;
            Ok(FileEntry { path: format!("{prefix}/{name}"), size, sha256 })
        })
        .collect()
}

/// Appends one component's tensors to shard files of bounded size, hashing as it writes.
struct ShardWriter<'a> {
    dir: &'a Path,
    component: &'a str,
    limit: u64,
    open: Option<OpenShard>,
    shards: Vec<ShardEntry>,
    tensors: Vec<TensorEntry>,
}

struct OpenShard {
    file: String,
    out: BufWriter<File>,
    hasher: sha2::Sha256,
    size: u64,
}

impl<'a> ShardWriter<'a> {
    fn new(dir: &'a Path, component: &'a str, limit: u64) -> Self {
        Self { dir, component, limit, open: None, shards: Vec::new(), tensors: Vec::new() }
    }

    fn add(&mut self, mut tensor: TensorEntry, bytes: &[u8]) -> Result<()> {
        let fits = |open: &OpenShard| open.size.next_multiple_of(TENSOR_ALIGN) + bytes.len() as u64 <= self.limit;
        if self.open.as_ref().is_some_and(|open| !fits(open)) {
            self.close()?;
        }
        if self.open.is_none() {
            let file = format!("{}-{:05}.bin", self.component, self.shards.len());
            let path = self.dir.join(&file);
            let out = BufWriter::new(File::create(&path).map_err(|e| Error::io(&path, e))?);
            self.open = Some(OpenShard { file, out, hasher: sha2::Sha256::new(), size: 0 });
        }
        let Some(open) = self.open.as_mut() else { return Ok(()) }; // opened above
        let padding = vec![0u8; (open.size.next_multiple_of(TENSOR_ALIGN) - open.size) as usize];
        for chunk in [&padding[..], bytes] {
            open.out.write_all(chunk).map_err(|e| Error::io(self.dir.join(&open.file), e))?;
            open.hasher.update(chunk);
            open.size += chunk.len() as u64;
        }
        tensor.shard = open.file.clone();
        tensor.offset = open.size - bytes.len() as u64;
        self.tensors.push(tensor);
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some(mut open) = self.open.take() {
            open.out.flush().map_err(|e| Error::io(self.dir.join(&open.file), e))?;
            self.shards.push(ShardEntry {
                file: open.file,
                component: self.component.to_string(),
                size: open.size,
                sha256: hex(&open.hasher.finalize()),
            });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(Vec<ShardEntry>, Vec<TensorEntry>)> {
        self.close()?;
        Ok((self.shards, self.tensors))
    }
}

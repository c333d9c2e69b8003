//! Loading a converted model (weights-tools/FORMAT.md): a manifest and shard files, read from
//! a folder (native) or handed over shard by shard as bytes (browser). Each shard is checked
//! against the manifest (size, SHA-256) before any of its bytes are used, and a module is
//! filled shard by shard, so host memory stays near one shard plus one dequantized tensor.

// Reads untrusted bytes: no unwrap, expect or unchecked indexing (each allowed case says why).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use super::quant::StoredDtype;
use super::files;
use super::loader::{Stored, TensorSource, load_partial};
use super::manifest::{FileEntry, MANIFEST_FILE, Manifest, ShardEntry, TensorEntry, check_bytes, check_sha256, check_size, hex};
use super::quant;
use super::source::ModelSource;
use crate::error::{Error, Result, TensorProblem};

#[derive(Clone)]
pub struct ShardedModel {
    /// The folder holding the manifest, or (browser) the URL it came from.
    root: PathBuf,
    manifest: Manifest,
}

impl ShardedModel {
    /// Opens `dir/manifest.json`; shards are read when a component is loaded.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = files::read_capped(&path, files::MAX_JSON_BYTES)?;
        Ok(Self { root: dir.to_path_buf(), manifest: Manifest::parse(&bytes, &path.display().to_string())? })
    }

    /// A model whose manifest came as bytes from `root` (a URL in the browser).
    pub fn from_manifest(bytes: &[u8], root: &str) -> Result<Self> {
        let manifest = Manifest::parse(bytes, &format!("{root}/{MANIFEST_FILE}"))?;
        Ok(Self { root: PathBuf::from(root), manifest })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks a shard's bytes against the manifest and makes its tensors readable.
    pub fn check_shard<'a>(&'a self, file: &str, bytes: &'a [u8]) -> Result<ShardView<'a>> {
        let shard = self.manifest.shard(file).ok_or_else(|| {
            Error::model(self.root.display(), format!("the manifest lists no shard {file}"))
        })?;
        check_bytes(&self.shard_location(shard), shard.size, &shard.sha256, bytes)?;
        let tensors = self.manifest.tensors.iter().filter(|t| t.shard == shard.file).map(|t| (t.name.as_str(), t)).collect();
        Ok(ShardView { model: self, shard, bytes, tensors, expanded: Default::default() })
    }

    /// Reads a shard file beside the manifest (native), refusing one of the wrong size (or not
    /// a regular file) unread; [`Self::check_shard`] checks the bytes.
    pub fn read_shard(&self, shard: &ShardEntry) -> Result<Vec<u8>> {
        let path = self.root.join(&shard.file);
        check_size(&self.shard_location(shard), shard.size, files::regular_file(&path)?)?;
        files::read_capped(&path, shard.size)
    }

    /// Re-hashes every shard and listed file beside the manifest (native), streaming; returns
    /// every problem found, empty when the model is intact.
    pub fn verify(&self) -> Vec<String> {
        let listed = self.manifest.shards.iter().map(|s| (&s.file, s.size, &s.sha256));
        let files = self.manifest.files.iter().map(|FileEntry { path, size, sha256 }| (path, *size, sha256));
        listed
            .chain(files)
            .filter_map(|(file, size, sha256)| {
                let path = self.root.join(file);
                let location = path.display().to_string();
                let checked = hash_file(&path).and_then(|(actual_size, hash)| {
                    check_size(&location, size, actual_size)?;
                    check_sha256(&location, sha256, &hash)
                });
                checked.err().map(|error| error.to_string())
            })
            .collect()
    }

    fn shard_error(&self, shard: &ShardEntry, message: String) -> Error {
        Error::model(self.shard_location(shard), message)
    }

    fn shard_location(&self, shard: &ShardEntry) -> String {
        format!("{}: shard of `{}`", self.root.join(&shard.file).display(), shard.component)
    }
}

/// Size and SHA-256 of a file, read in bounded pieces.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    use sha2::Digest;
    files::regular_file(path)?;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if read == 0 {
            return Ok((size, hex(&hasher.finalize())));
        }
        size += read as u64;
        hasher.update(buffer.get(..read).unwrap_or_default());
    }
}

/// The tensors of one checked shard, as the device takes them: kept quantized, or expanded to f32.
pub struct ShardView<'a> {
    model: &'a ShardedModel,
    shard: &'a ShardEntry,
    bytes: &'a [u8],
    tensors: BTreeMap<&'a str, &'a TensorEntry>,
    /// The quantized tensors on the device, expanded on the first read for one.
    expanded: std::cell::OnceCell<std::result::Result<Expanded, String>>,
}

impl ShardView<'_> {
    pub fn component(&self) -> &str {
        &self.shard.component
    }

    /// A tensor's entry and stored bytes; the manifest guarantees the range lies within the
    /// shard, whose size was checked.
    fn stored(&self, name: &str) -> Option<(&TensorEntry, &[u8])> {
        let tensor = *self.tensors.get(name)?;
        let range = usize::try_from(tensor.offset).ok()?..usize::try_from(tensor.offset + tensor.length).ok()?;
        Some((tensor, self.bytes.get(range)?))
    }
}

impl TensorSource for ShardView<'_> {
    fn names(&self) -> Vec<String> {
        self.tensors.keys().map(|name| name.to_string()).collect()
    }

    fn read(&self, name: &str) -> Result<Option<TensorData>> {
        let Some((tensor, bytes)) = self.stored(name) else {
            return Ok(None);
        };
        let values = quant::decode(tensor.dtype, bytes, &tensor.shape, tensor.block_size)
            .map_err(|e| self.model.shard_error(self.shard, format!("tensor {name}: {e}")))?;
        Ok(Some(TensorData::new(values, tensor.shape.clone())))
    }

    /// Quantized matrices stay quantized on a device that has block-quantized tensors; other
    /// quantized tensors go to the device as they are stored, all of the shard's at once, and are
    /// expanded there; the rest (and a quantized tensor whose rows are not whole blocks) is
    /// decoded on the host.
    fn read_for(&self, name: &str, device: &Device) -> Result<Option<Stored>> {
        if let Some(tensor) = self.device_quantized(name, device) {
            return Ok(Some(Stored::Quantized(tensor)));
        }
        let batch = self.expanded.get_or_init(|| self.expand(device));
        let batch = batch.as_ref().map_err(|message| self.model.shard_error(self.shard, message.clone()))?;
        match (batch.at.get(name), self.tensors.get(name)) {
            (Some(&(group, start, count)), Some(tensor)) => {
                let group = batch.groups.get(group).ok_or_else(|| self.model.shard_error(self.shard, "lost a batch".into()))?;
                Ok(Some(Stored::Device(group.clone().narrow(0, start, count), tensor.shape.clone())))
            }
            _ => Ok(self.read(name)?.map(Stored::Host)),
        }
    }
}

/// A shard's quantized tensors expanded on the device: one flat tensor per (dtype, block
/// size), and where each tensor lies in it.
struct Expanded {
    groups: Vec<Tensor<1>>,
    at: BTreeMap<String, (usize, usize, usize)>,
}

impl ShardView<'_> {
    fn device_quantized(&self, name: &str, device: &Device) -> Option<Tensor<2>> {
        let (tensor, bytes) = self.stored(name)?;
        quant::device_quantized(tensor.dtype, bytes, &tensor.shape, tensor.block_size, device)
    }

    fn expand(&self, device: &Device) -> std::result::Result<Expanded, String> {
        let mut batches: BTreeMap<(StoredDtype, usize), (Vec<f32>, Vec<u8>, Vec<(&str, usize, usize)>)> = BTreeMap::new();
        for (&name, tensor) in &self.tensors {
            let Some((_, bytes)) = self.stored(name) else { continue };
            if quant::device_scheme(tensor.dtype, &tensor.shape, tensor.block_size, device).is_some() {
                continue; // kept quantized when read
            }
            if let Some((scales, values)) = quant::whole_blocks(tensor.dtype, bytes, &tensor.shape, tensor.block_size) {
                let Some(block) = tensor.block_size else { continue };
                let (all_scales, all_values, members) = batches.entry((tensor.dtype, block)).or_default();
                members.push((name, all_scales.len() * block, scales.len() * block));
                all_scales.extend(scales);
                all_values.extend_from_slice(values);
            }
        }
        let mut expanded = Expanded { groups: Vec::new(), at: BTreeMap::new() };
        for ((dtype, block), (scales, values, members)) in batches {
            expanded.groups.push(quant::dequantize_blocks(dtype, &values, &scales, block, device)?);
            let group = expanded.groups.len() - 1;
            expanded.at.extend(members.into_iter().map(|(name, start, count)| (name.to_string(), (group, start, count))));
        }
        Ok(expanded)
    }
}

/// A component's module being filled shard by shard: each checked shard
/// ([`ShardedModel::check_shard`]) goes to [`apply`](Self::apply) as it arrives (read from disk
/// by [`ShardedModel`]'s `load`, downloaded by the browser's `pipeline::assembly`), then
/// [`finish`](Self::finish) names any parameter no shard held.
pub struct ModuleAssembly<M> {
    component: String,
    buffers: Vec<String>,
    module: Option<M>,
    applied: std::collections::BTreeSet<String>,
}

impl<M: Module> ModuleAssembly<M> {
    pub fn new(component: &str, module: M, buffers: &[&str]) -> Self {
        Self {
            component: component.to_string(),
            buffers: buffers.iter().map(|b| b.to_string()).collect(),
            module: Some(module),
            applied: Default::default(),
        }
    }

    /// Loads the tensors of a checked shard into the module.
    pub fn apply(&mut self, view: &ShardView, device: &Device) -> Result<()> {
        if view.component() != self.component {
            return Err(view.model.shard_error(view.shard, format!("not a shard of `{}`", self.component)));
        }
        let module = self.module.take().ok_or_else(|| self.failed_earlier())?;
        let buffers: Vec<&str> = self.buffers.iter().map(String::as_str).collect();
        let (module, partial) =
            load_partial(module, view, &buffers, device).map_err(|e| e.at(view.model.shard_location(view.shard)))?;
        self.applied.extend(partial.applied);
        self.module = Some(module);
        Ok(())
    }

    fn failed_earlier(&self) -> Error {
        Error::model(format!("`{}`", self.component), "loading failed earlier; start again")
    }

    /// The filled module, or an error naming the parameters no shard provided.
    pub fn finish(mut self, model: &ShardedModel, device: &Device) -> Result<M> {
        let module = self.module.take().ok_or_else(|| self.failed_earlier())?;
        // A pass over nothing lists every parameter's checkpoint name as absent.
        let (module, every) = load_partial(module, &Nothing, &[], device)?;
        let missing: Vec<String> = every.absent.difference(&self.applied).cloned().collect();
        if missing.is_empty() {
            Ok(module)
        } else {
            let location = format!("{}: `{}`: no shard holds {} tensor(s)", model.root.display(), self.component, missing.len());
            let problems = missing.into_iter().take(5).map(TensorProblem::Missing).collect();
            Err(Error::Tensors { location: Some(location), problems })
        }
    }
}

struct Nothing;

impl TensorSource for Nothing {
    fn names(&self) -> Vec<String> {
        Vec::new()
    }

    fn read(&self, _name: &str) -> Result<Option<TensorData>> {
        Ok(None)
    }
}

impl ModelSource for ShardedModel {
    fn location(&self) -> &Path {
        &self.root
    }

    fn class_of(&self, component: &str) -> Result<&str> {
        self.manifest.components.get(component).map(|entry| entry.class.as_str()).ok_or_else(|| {
            Error::model(self.root.display(), format!(
                "the manifest has no component `{component}` (it has: {})",
                self.manifest.components.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    fn config<T: serde::de::DeserializeOwned>(&self, component: &str) -> Result<T> {
        self.class_of(component)?;
        let entry = self.manifest.components.get(component).ok_or_else(|| Error::model(self.root.display(), format!("no component `{component}`")))?;
        serde_json::from_value(entry.config.clone()).map_err(|e| {
            Error::model(self.root.join(MANIFEST_FILE).display(), format!("the config of `{component}`: {e}"))
        })
    }

    fn model_index(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.manifest.model_index
    }

    fn folder_files(&self, folder: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        let prefix = format!("{folder}/");
        let mut files = BTreeMap::new();
        for file in self.manifest.files.iter().filter(|file| file.path.starts_with(&prefix)) {
            let path = self.root.join(&file.path);
            let bytes = files::read_capped(&path, file.size)?;
            check_bytes(&path.display().to_string(), file.size, &file.sha256, &bytes)?;
            files.insert(file.path[prefix.len()..].to_string(), bytes);
        }
        Ok(files)
    }

    /// Reads the component's shards one at a time, each checked before use.
    fn load<M: Module>(&self, component: &str, module: M, buffers: &[&str], device: &Device) -> Result<M> {
        self.class_of(component)?;
        let mut assembly = ModuleAssembly::new(component, module, buffers);
        for shard in self.manifest.shards_of(component) {
            let bytes = self.read_shard(shard)?;
            assembly.apply(&self.check_shard(&shard.file, &bytes)?, device)?;
        }
        assembly.finish(self, device)
    }
}

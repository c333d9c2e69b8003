//! Filling a module's parameters from named tensors.
//!
//! Our modules use diffusers' parameter names, so a checkpoint key *is* the module path
//! (`down_blocks.1.attentions.0.proj_in.weight`). The only translations are burn's own
//! conventions, applied by the module type that owns the parameter: `Linear` stores its
//! weight transposed, and the norms call weight/bias `gamma`/`beta`.

use std::collections::BTreeSet;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result, TensorProblem};

/// Somewhere named tensors can be read from, one at a time.
pub trait TensorSource {
    /// Every tensor name the source holds.
    fn names(&self) -> Vec<String>;
    /// The tensor as f32 data in its checkpoint layout, or `None` when absent.
    fn read(&self, name: &str) -> Result<Option<TensorData>>;
    /// The tensor for `device`: sources whose stored form is smaller than f32 (quantized
    /// shards) override this to expand it on the device.
    fn read_for(&self, name: &str, _device: &Device) -> Result<Option<Stored>> {
        Ok(self.read(name)?.map(Stored::Host))
    }
}

/// A tensor read for loading: f32 data on the host, already on the device (flattened, with
/// its checkpoint shape), or a matrix kept quantized on the device (`quant::device_quantized`).
pub enum Stored {
    Host(TensorData),
    Device(Tensor<1>, Vec<usize>),
    Quantized(Tensor<2>),
}

impl Stored {
    fn shape(&self) -> Vec<usize> {
        match self {
            Stored::Host(data) => data.shape().to_vec(),
            Stored::Device(_, shape) => shape.clone(),
            Stored::Quantized(tensor) => tensor.dims().to_vec(),
        }
    }

    /// The tensor as `shape`, which holds the same elements in the same order (a conv weight's
    /// rows flattened); a quantized matrix is already `[rows, cols]`.
    fn into_tensor<const D: usize>(self, shape: &[usize], device: &Device) -> Tensor<D> {
        let shape = burn::tensor::Shape::from(shape.to_vec());
        match self {
            Stored::Host(data) => {
                let dtype = data.dtype();
                Tensor::from_data(TensorData::from_bytes(data.into_bytes(), shape, dtype), device)
            }
            Stored::Device(tensor, _) => tensor.reshape(shape),
            Stored::Quantized(tensor) => tensor.reshape(shape),
        }
    }
}

/// Replaces every float parameter of `module` with the tensor of the same name from `source`.
/// Missing, surplus and mis-shaped tensors are errors that list the names involved; `buffers`
/// names checkpoint entries that are not parameters and are passed over.
pub fn load_module<M: Module>(
    module: M,
    source: &dyn TensorSource,
    buffers: &[&str],
    device: &Device,
) -> Result<M> {
    let mut loader = Loader::new(source, device, false);
    let module = module.map(&mut loader);
    loader.finish(buffers).map(|_| module)
}

/// Which parameters one [`load_partial`] pass filled, and which it found no tensor for.
pub struct Partial {
    pub applied: BTreeSet<String>,
    pub absent: BTreeSet<String>,
}

/// Like [`load_module`], but a parameter `source` lacks is left as it is and reported in
/// `absent`, so that a module can be filled from several sources in turn (shard after shard).
/// Surplus and mis-shaped tensors are errors as in [`load_module`].
pub fn load_partial<M: Module>(
    module: M,
    source: &dyn TensorSource,
    buffers: &[&str],
    device: &Device,
) -> Result<(M, Partial)> {
    let mut loader = Loader::new(source, device, true);
    let module = module.map(&mut loader);
    loader.finish(buffers).map(|partial| (module, partial))
}

impl<'a> Loader<'a> {
    fn new(source: &'a dyn TensorSource, device: &Device, partial: bool) -> Self {
        Loader {
            source,
            device: device.clone(),
            path: Vec::new(),
            containers: Vec::new(),
            used: BTreeSet::new(),
            partial,
            absent: BTreeSet::new(),
            problems: Vec::new(),
            failure: None,
        }
    }

    /// Adds the surplus-tensor check to the problems met while mapping.
    fn finish(mut self, buffers: &[&str]) -> Result<Partial> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        let unused: Vec<String> = self
            .source
            .names()
            .into_iter()
            .filter(|name| !self.used.contains(name) && !buffers.contains(&name.as_str()))
            .collect();
        if !unused.is_empty() {
            self.problems.push(TensorProblem::Unexpected(unused));
        }
        if self.problems.is_empty() {
            Ok(Partial { applied: self.used, absent: self.absent })
        } else {
            Err(Error::Tensors { location: None, problems: self.problems })
        }
    }
}

struct Loader<'a> {
    source: &'a dyn TensorSource,
    device: Device,
    path: Vec<String>,
    containers: Vec<String>,
    used: BTreeSet<String>,
    /// Whether a parameter without a tensor is left alone (and noted in `absent`).
    partial: bool,
    absent: BTreeSet<String>,
    problems: Vec<TensorProblem>,
    /// The first tensor that could not be read (the source's own error, which names it).
    failure: Option<Error>,
}

impl Loader<'_> {
    /// The checkpoint name of the parameter at the current path, and how the module holds it.
    fn checkpoint_name(&self) -> (String, Layout) {
        let owner = self.containers.last().map(String::as_str).unwrap_or("");
        let leaf = self.path.last().map(String::as_str).unwrap_or("");
        let is_norm = matches!(owner, "Struct:GroupNorm" | "Struct:LayerNorm");
        let leaf = match (is_norm, leaf) {
            (true, "gamma") => "weight",
            (true, "beta") => "bias",
            (_, leaf) => leaf,
        };
        let mut parts = self.path[..self.path.len().saturating_sub(1)].to_vec();
        parts.push(leaf.to_string());
        let layout = match (owner, leaf) {
            ("Struct:Linear", "weight") => Layout::Transposed,
            ("Struct:Conv2d", "weight") => Layout::Flattened,
            _ => Layout::AsStored,
        };
        (parts.join("."), layout)
    }

    fn fetch<const D: usize>(&mut self, expected: &[usize]) -> Option<Tensor<D>> {
        let (name, layout) = self.checkpoint_name();
        let transposed = layout == Layout::Transposed;
        let data = match self.source.read_for(&name, &self.device) {
            Ok(Some(data)) => data,
            Ok(None) if self.partial => {
                self.absent.insert(name);
                return None;
            }
            Ok(None) => {
                self.problems.push(TensorProblem::Missing(name));
                return None;
            }
            Err(error) => {
                self.failure.get_or_insert(error);
                return None;
            }
        };
        self.used.insert(name.clone());
        // The parameter's shape in the checkpoint's orientation, and the stored one as the
        // module holds it (a conv weight's rows flattened).
        let mut wanted = expected.to_vec();
        if transposed {
            wanted.reverse();
        }
        let stored = data.shape();
        let held = match (layout, stored.split_first()) {
            (Layout::Flattened, Some((rows, rest))) => vec![*rows, rest.iter().product()],
            _ => stored.clone(),
        };
        if held != wanted {
            self.problems.push(TensorProblem::Shape { name, stored, expected: wanted });
            return None;
        }
        let tensor = data.into_tensor::<D>(&wanted, &self.device);
        Some(if transposed { tensor.transpose() } else { tensor })
    }
}

/// How a module holds a checkpoint tensor.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    AsStored,
    /// burn's `Linear`: `[in, out]` for the checkpoint's `[out, in]`.
    Transposed,
    /// Our `Conv2d`: `[out, in·kh·kw]` for the checkpoint's `[out, in, kh, kw]`.
    Flattened,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_string());
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
        self.containers.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let expected = param.lazy_shape().to_vec();
        match self.fetch::<D>(&expected) {
            Some(tensor) => {
                let id = param.id;
                param.transform_for_load(tensor, id)
            }
            None => param,
        }
    }
}

/// transformers 5 saves `CLIPTextModel` without the `text_model.` prefix that transformers 4,
/// Stability's checkpoints and our module paths use; converted models always carry it.
pub fn canonical_key(class: &str, key: String) -> String {
    let clip = matches!(class, "CLIPTextModel" | "CLIPTextModelWithProjection");
    if clip && !key.starts_with("text_model.") && !key.starts_with("text_projection.") {
        format!("text_model.{key}")
    } else {
        key
    }
}

/// A checkpoint seen under [`canonical_key`] names.
pub(crate) struct Canonical<'a> {
    pub class: &'a str,
    pub inner: &'a dyn TensorSource,
}

impl TensorSource for Canonical<'_> {
    fn names(&self) -> Vec<String> {
        self.inner.names().into_iter().map(|name| canonical_key(self.class, name)).collect()
    }

    fn read(&self, name: &str) -> Result<Option<TensorData>> {
        self.lookup(name, |name| self.inner.read(name))
    }

    fn read_for(&self, name: &str, device: &Device) -> Result<Option<Stored>> {
        self.lookup(name, |name| self.inner.read_for(name, device))
    }
}

impl Canonical<'_> {
    /// `read` under `name`, else under the name the checkpoint may use for it.
    fn lookup<T>(&self, name: &str, read: impl Fn(&str) -> Result<Option<T>>) -> Result<Option<T>> {
        match read(name)? {
            Some(found) => Ok(Some(found)),
            None => match name.strip_prefix("text_model.") {
                Some(bare) if canonical_key(self.class, bare.to_string()) == name => read(bare),
                _ => Ok(None),
            },
        }
    }
}

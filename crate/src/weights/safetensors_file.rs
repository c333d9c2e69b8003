//! Tensors from `.safetensors` files, as diffusers and transformers publish them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{DType, TensorData};
use safetensors::{Dtype, SafeTensors};

use super::TensorSource;
use crate::error::{Error, Result};

/// One or more safetensors files read as a single set of named tensors (a sharded checkpoint
/// is several files with disjoint names).
pub struct SafetensorsSource {
    files: Vec<(PathBuf, Vec<u8>)>,
    located: HashMap<String, usize>,
}

impl SafetensorsSource {
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut located = HashMap::new();
        for path in paths {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            for name in parse(path, &bytes)?.names() {
                if located.insert(name.to_string(), files.len()).is_some() {
                    return Err(Error::Weights(format!(
                        "{}: tensor {name} also appears in another shard",
                        path.display()
                    )));
                }
            }
            files.push((path.clone(), bytes));
        }
        Ok(Self { files, located })
    }

    /// The tensor with its stored element type (ids stay integers), or `None` when absent.
    pub fn read_raw(&self, name: &str) -> Result<Option<TensorData>> {
        let Some(&index) = self.located.get(name) else {
            return Ok(None);
        };
        let (path, bytes) = &self.files[index];
        let view = parse(path, bytes)?.tensor(name).map_err(|e| malformed(path, e))?;
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            Dtype::I64 => DType::I64,
            Dtype::I32 => DType::I32,
            other => {
                return Err(Error::Weights(format!(
                    "{}: tensor {name} has unsupported dtype {other:?}",
                    path.display()
                )));
            }
        };
        Ok(Some(TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype)))
    }
}

impl TensorSource for SafetensorsSource {
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.located.keys().cloned().collect();
        names.sort();
        names
    }

    fn read(&self, name: &str) -> Result<Option<TensorData>> {
        Ok(self.read_raw(name)?.map(|data| data.convert::<f32>()))
    }
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| malformed(path, e))
}

fn malformed(path: &Path, error: impl std::fmt::Display) -> Error {
    Error::Safetensors { path: path.to_path_buf(), message: error.to_string() }
}

/// Writes f32 and i64 tensors as a safetensors file.
pub fn write(path: &Path, tensors: &[(&str, &TensorData)]) -> Result<()> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, data)| {
            let dtype = match data.dtype() {
                DType::F32 => Dtype::F32,
                DType::I64 => Dtype::I64,
                other => return Err(malformed(path, format!("tensor {name}: {other:?} is not written"))),
            };
            let view = safetensors::tensor::TensorView::new(dtype, data.shape().to_vec(), data.as_bytes())
                .map_err(|e| malformed(path, e))?;
            Ok((name.to_string(), view))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| malformed(path, e))
}

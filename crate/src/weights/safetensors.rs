//! `.safetensors` files, as diffusers and transformers publish them, read one tensor at a time
//! from disk: only the headers stay in memory, so loading or converting a multi-gigabyte
//! checkpoint needs about one tensor of memory. Also the writer for `sdxl run`/`generate`.

// Reads untrusted bytes: no unwrap, expect or unchecked indexing (each allowed case says why).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use burn::tensor::{DType, TensorData};
use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};

use super::files;
use super::loader::TensorSource;
use crate::error::{Error, Result};

/// Larger headers are refused before allocating (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// One or more safetensors files read as a single set of named tensors (a sharded checkpoint
/// is several files with disjoint names).
pub struct SafetensorsSource {
    files: Vec<PathBuf>,
    /// name → (file index, absolute byte offset, info).
    tensors: BTreeMap<String, (usize, u64, TensorInfo)>,
}

impl SafetensorsSource {
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        for (index, path) in paths.iter().enumerate() {
            let malformed = |message: String| Error::Safetensors { path: path.clone(), message };
            let file_len = files::regular_file(path)?;
            let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
            let mut len = [0u8; 8];
            file.read_exact(&mut len).map_err(|_| malformed("shorter than its 8-byte header length".into()))?;
            let header_len = u64::from_le_bytes(len);
            let data_len = file_len.saturating_sub(8).checked_sub(header_len).filter(|_| header_len <= MAX_HEADER);
            let Some(data_len) = data_len else {
                return Err(malformed(format!("header length {header_len} exceeds the file ({file_len} bytes)")));
            };
            let mut header = vec![0; header_len as usize];
            file.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
            let data_start = 8 + header_len;
            for (name, info) in parse_header(&header, data_len).map_err(malformed)? {
                if tensors.contains_key(&name) {
                    return Err(malformed(format!("tensor {name} also appears in another file")));
                }
                let offset = data_start + info.data_offsets.0 as u64;
                tensors.insert(name, (index, offset, info));
            }
        }
        Ok(Self { files: paths.to_vec(), tensors })
    }

    /// The stored element type of a tensor.
    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        self.tensors.get(name).map(|(_, _, info)| info.dtype)
    }

    /// The tensor with its stored element type (ids stay integers), or `None` when absent.
    pub fn read_raw(&self, name: &str) -> Result<Option<TensorData>> {
        let Some((index, offset, info)) = self.tensors.get(name) else {
            return Ok(None);
        };
        let Some(path) = self.files.get(*index) else { return Ok(None) };
        let dtype = match info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            Dtype::I64 => DType::I64,
            Dtype::I32 => DType::I32,
            other => {
                return Err(Error::model(path.display(), format!("tensor {name} has unsupported dtype {other:?}")));
            }
        };
        let mut bytes = vec![0u8; info.data_offsets.1 - info.data_offsets.0];
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        file.seek(SeekFrom::Start(*offset)).map_err(|e| Error::io(path, e))?;
        file.read_exact(&mut bytes).map_err(|e| Error::io(path, e))?;
        Ok(Some(TensorData::from_bytes_vec(bytes, info.shape.clone(), dtype)))
    }
}

impl SafetensorsSource {
    /// An input tensor (`sdxl run`, `--noise`) in its stored element type: present, and with
    /// finite values only (a NaN would run to the end and give a black image).
    pub fn read_input(&self, name: &str) -> Result<TensorData> {
        let missing = || Error::Input { name: name.into(), message: "missing from the input file".into() };
        let data = self.read_raw(name)?.ok_or_else(missing)?;
        let values = data.clone().convert::<f32>();
        if values.iter::<f32>().any(|value| !value.is_finite()) {
            return Err(Error::Input { name: name.into(), message: "holds values that are not finite (NaN or infinite)".into() });
        }
        Ok(data)
    }
}

/// The tensors a safetensors header describes, each checked to lie within `data_len` bytes and
/// to be exactly as long as its dtype and shape say.
pub fn parse_header(header: &[u8], data_len: u64) -> std::result::Result<Vec<(String, TensorInfo)>, String> {
    let metadata: Metadata = serde_json::from_slice(header).map_err(|e| format!("invalid header: {e}"))?;
    let mut tensors: Vec<(String, TensorInfo)> =
        metadata.tensors().into_iter().map(|(name, info)| (name, info.clone())).collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, info) in &tensors {
        let (start, end) = info.data_offsets;
        let bits = info
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_mul(info.dtype.bitsize()));
        let fits = bits.is_some_and(|bits| bits % 8 == 0 && end.checked_sub(start) == Some(bits / 8));
        if !fits || end as u64 > data_len {
            return Err(format!(
                "tensor {name}: bytes {start}..{end} do not hold {:?} {:?} within {data_len} data bytes",
                info.dtype, info.shape
            ));
        }
    }
    Ok(tensors)
}

impl TensorSource for SafetensorsSource {
    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    /// The tensor as f32 (integers converted too: `sdxl run` inputs may be either).
    fn read(&self, name: &str) -> Result<Option<TensorData>> {
        Ok(self.read_raw(name)?.map(|data| data.convert::<f32>()))
    }
}

/// Writes f32 and i64 tensors as a safetensors file.
pub fn write(path: &Path, tensors: &[(&str, &TensorData)]) -> Result<()> {
    let malformed = |message: String| Error::Safetensors { path: path.to_path_buf(), message };
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, data)| {
            let dtype = match data.dtype() {
                DType::F32 => Dtype::F32,
                DType::I64 => Dtype::I64,
                other => return Err(malformed(format!("tensor {name}: {other:?} is not written"))),
            };
            let view = safetensors::tensor::TensorView::new(dtype, data.shape().to_vec(), data.as_bytes())
                .map_err(|e| malformed(e.to_string()))?;
            Ok((name.to_string(), view))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| malformed(e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

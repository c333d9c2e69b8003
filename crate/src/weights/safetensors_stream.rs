//! Safetensors files read one tensor at a time from disk: only the headers stay in memory, so
//! converting a multi-gigabyte checkpoint needs about one tensor of memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use burn::tensor::TensorData;
use half::{bf16, f16};
use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo};

use super::TensorSource;
use crate::error::{Error, Result};

/// Larger headers are refused before allocating (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

pub struct SafetensorsStream {
    files: Vec<PathBuf>,
    /// name → (file index, absolute byte offset, info).
    tensors: BTreeMap<String, (usize, u64, TensorInfo)>,
}

impl SafetensorsStream {
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        for (index, path) in paths.iter().enumerate() {
            let malformed = |message: String| Error::Safetensors { path: path.clone(), message };
            let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
            let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
            let mut len = [0u8; 8];
            file.read_exact(&mut len).map_err(|_| malformed("shorter than its 8-byte header length".into()))?;
            let header_len = u64::from_le_bytes(len);
            if header_len > MAX_HEADER || header_len > file_len - 8 {
                return Err(malformed(format!("header length {header_len} exceeds the file ({file_len} bytes)")));
            }
            let mut header = vec![0; header_len as usize];
            file.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
            let data_start = 8 + header_len;
            for (name, info) in parse_header(&header, file_len - data_start).map_err(malformed)? {
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

impl TensorSource for SafetensorsStream {
    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn read(&self, name: &str) -> Result<Option<TensorData>> {
        let Some((index, offset, info)) = self.tensors.get(name) else {
            return Ok(None);
        };
        let path = &self.files[*index];
        let mut bytes = vec![0u8; info.data_offsets.1 - info.data_offsets.0];
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        file.seek(SeekFrom::Start(*offset)).map_err(|e| Error::io(path, e))?;
        file.read_exact(&mut bytes).map_err(|e| Error::io(path, e))?;
        let values: Vec<f32> = match info.dtype {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => return Err(unsupported(path, name, other)),
        };
        Ok(Some(TensorData::new(values, info.shape.clone())))
    }
}

fn unsupported(path: &Path, name: &str, dtype: Dtype) -> Error {
    Error::Weights(format!("{}: tensor {name} has dtype {dtype:?}, not a float type", path.display()))
}

//! How a tensor is stored in a shard (weights-tools/FORMAT.md): f32, f16, or symmetric
//! block quantization (q8, q4) with f16 scales, blocks running along the input dimension.
//! The converter encodes with this code; the loader keeps quantized weights quantized on a GPU
//! ([`device_quantized`]) or expands them on the device ([`dequantize_blocks`]); [`decode`] is the
//! host reference.

// Reads untrusted bytes: no unwrap, expect or unchecked indexing (each allowed case says why).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt;

use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use half::f16;
use serde::{Deserialize, Serialize};

/// Block size the converter uses unless told otherwise.
pub const DEFAULT_BLOCK_SIZE: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredDtype {
    F32,
    F16,
    Q8,
    Q4,
}

impl fmt::Display for StoredDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoredDtype::F32 => "f32",
            StoredDtype::F16 => "f16",
            StoredDtype::Q8 => "q8",
            StoredDtype::Q4 => "q4",
        })
    }
}

/// The levels a block may use: q8 is symmetric, ±127; q4 uses all sixteen nibbles, −8..7.
fn level_range(dtype: StoredDtype) -> (f32, f32) {
    match dtype {
        StoredDtype::Q8 => (-127.0, 127.0),
        _ => (-8.0, 7.0),
    }
}

/// A block's levels for `scale`: each value's nearest level (rounding with the stored scale, so
/// decoding reproduces it).
fn quantize_block(dtype: StoredDtype, chunk: &[f32], scale: f32) -> impl Iterator<Item = i8> + '_ {
    let (low, high) = level_range(dtype);
    chunk.iter().map(move |v| if scale == 0.0 { 0 } else { (v / scale).round().clamp(low, high) as i8 })
}

/// A block's f16 scale. q8: absmax/127. q4: the scale, among candidates around ggml's `q4_0`
/// choice (the value of largest magnitude maps to −8, so all sixteen levels are used), that
/// gives the block the least squared error after rounding: never worse than `q4_0` on the same
/// block (its scale is a candidate, and each value goes to its nearest level).
fn block_scale(dtype: StoredDtype, chunk: &[f32]) -> Result<f16, String> {
    let extreme = chunk.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let overflow = || format!("a block's largest magnitude {} overflows an f16 scale", extreme.abs());
    let finite = |scale: f16| if scale.is_finite() { Ok(scale) } else { Err(overflow()) };
    if dtype == StoredDtype::Q8 || extreme == 0.0 {
        return finite(f16::from_f32(extreme.abs() / 127.0));
    }
    let error = |scale: f16| -> f32 {
        let decoded = quantize_block(dtype, chunk, scale.to_f32()).map(|q| q as f32 * scale.to_f32());
        chunk.iter().zip(decoded).map(|(v, d)| (v - d) * (v - d)).sum()
    };
    let q4_0 = -extreme / 8.0;
    let mut best = finite(f16::from_f32(q4_0))?;
    let mut best_error = error(best);
    // Scales within about ±8 % of q4_0's (finer ones clamp the extreme value but fit the rest
    // better), with the largest value on either side of the level range.
    for step in -7..=5 {
        for sign in [1.0, -1.0] {
            let candidate = f16::from_f32(sign * q4_0 * (1.0 + step as f32 / (12.0 * 7.0)));
            if candidate.is_finite() && candidate.to_f32() != 0.0 {
                let candidate_error = error(candidate);
                if candidate_error < best_error {
                    (best, best_error) = (candidate, candidate_error);
                }
            }
        }
    }
    Ok(best)
}

impl StoredDtype {
    pub fn is_quantized(self) -> bool {
        matches!(self, StoredDtype::Q8 | StoredDtype::Q4)
    }

    /// Bytes a tensor of `shape` takes; errors say why the combination is impossible.
    pub fn stored_len(self, shape: &[usize], block_size: Option<usize>) -> Result<u64, String> {
        let count = element_count(shape).ok_or("its element count overflows")?;
        let bytes = match (self, block_size) {
            (StoredDtype::F32, None) => count.checked_mul(4),
            (StoredDtype::F16, None) => count.checked_mul(2),
            (StoredDtype::F32 | StoredDtype::F16, Some(_)) => {
                return Err(format!("{self} takes no block_size"));
            }
            (_, None) => return Err(format!("{self} needs a block_size")),
            (_, Some(block)) => {
                let (rows, cols) = rows_cols(shape).ok_or(format!("{self} needs a rank-2 or higher shape"))?;
                if block == 0 {
                    return Err("block_size 0".into());
                }
                let scales = rows.checked_mul(cols.div_ceil(block)).and_then(|n| n.checked_mul(2));
                let values = if self == StoredDtype::Q8 { Some(count) } else { Some(count.div_ceil(2)) };
                scales.zip(values).and_then(|(scales, values)| scales.checked_add(values))
            }
        };
        bytes.map(|b| b as u64).ok_or_else(|| "its byte length overflows".into())
    }
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// A weight viewed as `[out, in·kh·kw]`: rows are output channels, blocks run along a row.
fn rows_cols(shape: &[usize]) -> Option<(usize, usize)> {
    match shape {
        [rows, rest @ ..] if !rest.is_empty() => Some((*rows, element_count(rest)?)),
        _ => None,
    }
}

/// Whether the converter quantizes a tensor: the weights of linear and conv layers (rank 2
/// and 4, `*.weight`) and CLIP's token tables (`token_embedding`: rows gathered by
/// `kernels::embedding`, so the table stays quantized on the GPU), not the other embedding
/// tables (`position_embedding`: 77 rows, kept exact).
pub fn is_quantizable(name: &str, shape: &[usize]) -> bool {
    let mut parts = name.rsplit('.');
    let (leaf, owner) = (parts.next(), parts.next().unwrap_or(""));
    leaf == Some("weight") && matches!(shape.len(), 2 | 4) && (owner == "token_embedding" || !owner.ends_with("embedding"))
}

/// The bytes of `values` (row-major, checkpoint layout) stored as `dtype`: little-endian
/// f32/f16; for q8/q4 the f16 scales of every block (row by row), then the values: one i8
/// each (q8), or two per byte, low nibble first, as `q + 8` (q4).
pub fn encode(dtype: StoredDtype, values: &[f32], shape: &[usize], block_size: Option<usize>) -> Result<Vec<u8>, String> {
    let len = dtype.stored_len(shape, block_size)? as usize;
    if element_count(shape) != Some(values.len()) {
        return Err(format!("{} values for shape {shape:?}", values.len()));
    }
    let mut out = Vec::with_capacity(len);
    match dtype {
        StoredDtype::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        StoredDtype::F16 => values.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        StoredDtype::Q8 | StoredDtype::Q4 => {
            let (Some(block), Some((_, cols))) = (block_size, rows_cols(shape)) else {
                return Err(format!("{dtype} needs a block size and a matrix shape"));
            };
            let mut quantized = Vec::with_capacity(values.len());
            for row in values.chunks(cols.max(1)) {
                for chunk in row.chunks(block) {
                    let scale = block_scale(dtype, chunk)?;
                    out.extend_from_slice(&scale.to_le_bytes());
                    quantized.extend(quantize_block(dtype, chunk, scale.to_f32()));
                }
            }
            if dtype == StoredDtype::Q8 {
                out.extend(quantized.iter().map(|q| *q as u8));
            } else {
                let nibble = |q: Option<&i8>| q.map_or(0, |q| (q + 8) as u8);
                out.extend(quantized.chunks(2).map(|pair| nibble(pair.first()) | nibble(pair.get(1)) << 4));
            }
        }
    }
    debug_assert_eq!(out.len(), len);
    Ok(out)
}

/// The f32 values of a stored tensor; `bytes` must be exactly its stored length.
pub fn decode(dtype: StoredDtype, bytes: &[u8], shape: &[usize], block_size: Option<usize>) -> Result<Vec<f32>, String> {
    let len = dtype.stored_len(shape, block_size)? as usize;
    if bytes.len() != len {
        return Err(format!("{} bytes, {dtype} of shape {shape:?} takes {len}", bytes.len()));
    }
    Ok(match dtype {
        StoredDtype::F32 => bytes.as_chunks::<4>().0.iter().map(|b| f32::from_le_bytes(*b)).collect(),
        StoredDtype::F16 => f16_values(bytes),
        StoredDtype::Q8 | StoredDtype::Q4 => {
            let (Some(block), Some((rows, cols))) = (block_size, rows_cols(shape)) else {
                return Err(format!("{dtype} needs a block size and a matrix shape"));
            };
            let blocks_per_row = cols.div_ceil(block);
            let (scales, values) =
                bytes.split_at_checked(rows * blocks_per_row * 2).ok_or_else(|| format!("{} bytes hold no scales", bytes.len()))?;
            let scales = f16_values(scales);
            // Levels in order; q4 packs two per byte, the low nibble first.
            let levels: Vec<i8> = match dtype {
                StoredDtype::Q8 => values.iter().map(|&b| b as i8).collect(),
                _ => values.iter().flat_map(|&b| [(b & 0x0f) as i8 - 8, (b >> 4) as i8 - 8]).take(rows * cols).collect(),
            };
            levels
                .chunks(cols.max(1))
                .zip(scales.chunks(blocks_per_row.max(1)))
                .flat_map(|(row, row_scales)| {
                    row.chunks(block).zip(row_scales).flat_map(|(chunk, &scale)| chunk.iter().map(move |&q| q as f32 * scale))
                })
                .collect()
        }
    })
}

/// The scales (f32) and value bytes of a stored q8/q4 tensor whose rows are whole blocks, the
/// form [`dequantize_blocks`] takes; `None` for other tensors (those decode on the host).
pub fn whole_blocks<'a>(
    dtype: StoredDtype,
    bytes: &'a [u8],
    shape: &[usize],
    block_size: Option<usize>,
) -> Option<(Vec<f32>, &'a [u8])> {
    let block = block_size?;
    let (rows, cols) = rows_cols(shape)?;
    if !dtype.is_quantized() || cols % block != 0 || dtype.stored_len(shape, block_size).ok()? != bytes.len() as u64 {
        return None;
    }
    let (scales, values) = bytes.split_at_checked(rows * (cols / block) * 2)?;
    Some((f16_values(scales), values))
}

/// Little-endian f16 values as f32 (a trailing odd byte is ignored; callers check lengths).
fn f16_values(bytes: &[u8]) -> Vec<f32> {
    bytes.as_chunks::<2>().0.iter().map(|b| f16::from_le_bytes(*b).to_f32()).collect()
}

/// A q8/q4 weight as burn's block-quantized `[rows, cols]` tensor on `device` (a Linear weight in
/// checkpoint layout, a conv weight with its rows flattened), kept quantized there: matmuls read
/// it as stored, dequantizing as they go, convolutions expand it for the call; it takes ~1.1 (q8)
/// or ~0.6 (q4) bytes per parameter instead of f32's 4. `None` where the device has no such
/// tensors (the CPU backend) or the rows are not whole blocks of whole 32-bit words; those
/// tensors are expanded to f32 instead. Scales travel as f32 (WebGPU may lack f16).
pub fn device_quantized(dtype: StoredDtype, bytes: &[u8], shape: &[usize], block_size: Option<usize>, device: &Device) -> Option<Tensor<2>> {
    let scheme = device_scheme(dtype, shape, block_size, device)?;
    let (scales, values) = whole_blocks(dtype, bytes, shape, block_size)?;
    // burn packs values little end first, q4 as two's complement nibbles (ours are `q + 8`),
    // then the block scales row by row.
    let mut packed: Vec<u8> = match dtype {
        StoredDtype::Q8 => values.to_vec(),
        _ => values.iter().map(|byte| byte ^ 0x88).collect(),
    };
    packed.extend(scales.iter().flat_map(|scale| scale.to_le_bytes()));
    let (rows, cols) = rows_cols(shape)?;
    Some(Tensor::from_data(TensorData::from_bytes_vec(packed, [rows, cols], DType::QFloat(scheme)), device))
}

/// How a q8/q4 tensor kept block-quantized on a device is packed: its values, how many go in
/// a 32-bit word, and its block; `None` where its rows are not whole blocks of whole words
/// (such a tensor is expanded to f32).
fn device_packing(dtype: StoredDtype, shape: &[usize], block_size: Option<usize>) -> Option<(QuantValue, usize, usize)> {
    let (value, per_word) = match dtype {
        StoredDtype::Q8 => (QuantValue::Q8S, 4),
        StoredDtype::Q4 => (QuantValue::Q4S, 8),
        _ => return None,
    };
    let block = block_size?;
    let (_, cols) = rows_cols(shape)?;
    (block > 0 && cols % block == 0 && cols % per_word == 0).then_some((value, per_word, block))
}

/// The block-quantized form [`device_quantized`] gives a tensor, if it gives one.
pub fn device_scheme(dtype: StoredDtype, shape: &[usize], block_size: Option<usize>, device: &Device) -> Option<QuantScheme> {
    let (value, _, block) = device_packing(dtype, shape, block_size)?;
    let scheme = QuantScheme::default()
        .with_value(value)
        .with_store(QuantStore::PackedU32(0))
        .per_block([u8::try_from(block).ok()?], ScaleDtype::F32);
    device.supports_dtype(DType::QFloat(scheme)).then_some(scheme)
}

/// Bytes a stored tensor takes on a GPU once loaded: a q8/q4 weight [`device_quantized`] keeps
/// block-quantized, its values as stored plus an f32 scale per block (1.125 or 0.625 bytes per
/// parameter at block 32, where the file stores f16 scales); any other tensor as f32.
pub fn device_bytes(dtype: StoredDtype, shape: &[usize], block_size: Option<usize>) -> u64 {
    let count = element_count(shape).map_or(u64::MAX, |count| count as u64);
    match device_packing(dtype, shape, block_size) {
        Some((_, per_word, block)) => (count / per_word as u64 * 4).saturating_add(count / block as u64 * 4),
        None => count.saturating_mul(4),
    }
}

/// Expands q8/q4 values on `device`: `values` holds whole blocks of `block` values (one byte per
/// q8 value, two q4 values per byte), `scales` one f32 per block; the result is flat, block after
/// block. The values travel as packed 32-bit words and are unpacked, centred and scaled on the
/// device — the same products as [`decode`], equal bit for bit. A loader batches every such
/// tensor of a shard into one call: the cost is per call, not per value.
pub fn dequantize_blocks(dtype: StoredDtype, values: &[u8], scales: &[f32], block: usize, device: &Device) -> Result<Tensor<1>, String> {
    let (per_word, bits): (usize, i32) = match dtype {
        StoredDtype::Q8 => (4, 8),
        StoredDtype::Q4 => (8, 4),
        other => return Err(format!("{other} is not quantized")),
    };
    let count = scales.len() * block;
    if block == 0 || values.len() * per_word / 4 != count {
        return Err(format!("{} value bytes for {} blocks of {block}", values.len(), scales.len()));
    }
    let words: Vec<i32> = values
        .chunks(4)
        .map(|chunk| {
            let mut word = [0u8; 4];
            word.iter_mut().zip(chunk).for_each(|(to, from)| *to = *from);
            i32::from_le_bytes(word)
        })
        .collect();
    let word_count = words.len();
    let words = Tensor::<1, Int>::from_data(TensorData::new(words, [word_count]), device);
    // Field k of a little-endian word is value k (the low bits first).
    let fields: Vec<Tensor<2, Int>> = (0..per_word as i32)
        .map(|k| words.clone().bitwise_right_shift_scalar(k * bits).bitwise_and_scalar((1 << bits) - 1).unsqueeze_dim(1))
        .collect();
    let unsigned = Tensor::cat(fields, 1).reshape([word_count * per_word]).narrow(0, 0, count).float();
    let quantized = if dtype == StoredDtype::Q8 {
        unsigned.clone() - unsigned.greater_equal_elem(128).float() * 256.0
    } else {
        unsigned - 8.0
    };
    let scales = Tensor::<1>::from_data(TensorData::new(scales.to_vec(), [scales.len()]), device);
    Ok((quantized.reshape([scales.dims()[0], block]) * scales.unsqueeze_dim::<2>(1)).reshape([count]))
}

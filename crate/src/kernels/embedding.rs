//! Embedding lookup on a block-quantized table (`shaders/embedding_gather.wgsl`): CLIP's token
//! tables stay q8/q4 on the GPU (49,408 × 1280 values: 253 MB as f32, 67 MB at q8) and only the
//! rows a prompt uses are dequantized. burn 0.22.1's `select` on a quantized tensor dequantizes
//! the whole table and quantizes the rows again.

use burn::tensor::{DType, Int, Tensor};

use super::conv::block_quantized;
use super::launch::{Wgsl, empty_f32, launch, to_tensor, workgroups_for};

const GATHER: Wgsl = Wgsl {
    name: "embedding_gather",
    source: include_str!("../../../shaders/embedding_gather.wgsl"),
    placeholders: &[("weights", include_str!("../../../shaders/weights_quantized.wgsl"))],
    workgroup_size: [256, 1, 1],
};

/// `table` [rows, width] at `ids` [batch, tokens] → [batch, tokens, width]: burn's
/// `Embedding::forward`, reading a table kept block-quantized on wgpu as stored (our kernel); any
/// other quantized table is expanded for the call, an f32 one is burn's `select`. The ids must be
/// within the table (the caller checks them).
pub fn lookup(table: &Tensor<2>, ids: Tensor<2, Int>) -> Tensor<3> {
    let [batch, tokens] = ids.dims();
    let [rows, width] = table.dims();
    let flat = ids.reshape([batch * tokens]);
    if let Some(out) = super::enabled().then(|| gather(table, &flat, rows, width)).flatten() {
        return out.reshape([batch, tokens, width]);
    }
    let table = match table.dtype() {
        DType::QFloat(_) => table.clone().dequantize(),
        _ => table.clone(),
    };
    table.select(0, flat).reshape([batch, tokens, width])
}

fn gather(table: &Tensor<2>, ids: &Tensor<1, Int>, rows: usize, width: usize) -> Option<Tensor<2>> {
    let (values, scales, bits) = block_quantized(table)?;
    let count = ids.dims()[0];
    if count.checked_mul(width)? >= u32::MAX as usize || rows.checked_mul(width)? >= u32::MAX as usize {
        return None;
    }
    let ids = super::launch::wgpu_int(ids)?;
    let out = empty_f32(&ids, [count, width].into());
    launch(GATHER, workgroups_for(count * width, 256), &[&ids, &values, &scales], &out, &[count as u32, width as u32, bits]);
    Some(to_tensor(out))
}

/// Whether [`lookup`] gathers `table`'s rows as stored (block-quantized on wgpu), with no f32
/// copy of the table.
pub fn gathers_as_stored(table: &Tensor<2>, ids: &Tensor<2, Int>) -> bool {
    super::enabled() && block_quantized(table).is_some() && super::launch::wgpu_int(ids).is_some()
}

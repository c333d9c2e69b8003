//! Fused multi-head attention (`shaders/flash_attention.wgsl`): no score buffer in global
//! memory, heads read and written in the projections' own layout.
//!
//! burn 0.22.1 has a flash kernel of its own (`FlashUnit`), but without burn's `autotune` its
//! attention op always takes the unfused fallback (burn-cubecl `kernel/attention/base.rs`), which
//! writes every score to memory, and reaching `FlashUnit` means calling burn-cubecl's kernel
//! layer directly, on split heads: ours needs neither.

use burn::tensor::Tensor;

use super::launch::{MAX_WORKGROUPS, Wgsl, empty_f32, launch, to_tensor, wgpu_f32};

/// The head width the kernel is written for: SDXL's UNet and both CLIP text encoders.
pub const HEAD_DIM: usize = 64;
/// Queries per workgroup (the WGSL's `QUERIES`).
const QUERIES: usize = 64;

const FLASH: Wgsl = Wgsl {
    name: "flash_attention",
    source: include_str!("../../../shaders/flash_attention.wgsl"),
    placeholders: &[],
    workgroup_size: [QUERIES as u32, 1, 1],
};

/// softmax(q·kᵀ/√64 [+ causal mask])·v per head, over projections q [batch, queries,
/// heads·64] and k, v [batch, keys, heads·64], when our kernel applies: on wgpu, f32, head_dim
/// 64, within its dispatch limits (and, causal, as many queries as keys). `None` otherwise.
pub fn fused(q: &Tensor<3>, k: &Tensor<3>, v: &Tensor<3>, heads: usize, causal: bool) -> Option<Tensor<3>> {
    if !super::enabled() {
        return None;
    }
    let [batch, queries, width] = q.dims();
    let [k_batch, keys, k_width] = k.dims();
    let applies = heads > 0
        && width == heads * HEAD_DIM
        && k.dims() == v.dims()
        && (k_batch, k_width) == (batch, width)
        && queries > 0
        && keys > 0
        && (!causal || queries == keys)
        && queries.div_ceil(QUERIES) <= MAX_WORKGROUPS as usize
        && batch * heads <= MAX_WORKGROUPS as usize
        && batch * queries.max(keys) * width <= u32::MAX as usize;
    if !applies {
        return None;
    }
    let (q, k, v) = (wgpu_f32(q)?, wgpu_f32(k)?, wgpu_f32(v)?);
    let out = empty_f32(&q, [batch, queries, width].into());
    let scale = (HEAD_DIM as f32).powf(-0.5).to_bits();
    let params = [queries as u32, keys as u32, heads as u32, causal as u32, scale];
    let workgroups = [queries.div_ceil(QUERIES) as u32, (batch * heads) as u32, 1];
    launch(FLASH, workgroups, &[&q, &k, &v], &out, &params);
    Some(to_tensor(out))
}

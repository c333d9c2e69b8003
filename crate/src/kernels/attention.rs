//! Fused multi-head attention, no score buffer in global memory, two kernels:
//!
//! - ours (`shaders/flash_attention.wgsl`), heads read and written in the projections' own
//!   layout: [`fused`];
//! - burn's flash attention with unit inner matmuls (`FlashUnit`, a CubeCL kernel: no cmma or
//!   subgroups, so it runs on WebGPU too): [`flash_unit`]. Without burn's `autotune` its
//!   attention op always takes the unfused fallback (burn-cubecl `kernel/attention/base.rs`),
//!   which writes every score to memory, so we launch burn-cubecl's kernel directly, on split
//!   heads. A CubeCL kernel rather than ours here because it measured faster (`kernel_bench`,
//!   README): on lavapipe 2.1× today's chunked path at the UNet's 64² self-attention where ours
//!   ran at 0.29×.

use burn::tensor::Tensor;
use burn::tensor::ops::AttentionModuleOptions;
use burn_cubecl::kernel::attention::flash_attention;
use cubek::attention::forward::launch::{BlueprintStrategy, Strategy};

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

/// softmax(q·kᵀ/√64 [+ causal mask])·v over split heads q [batch, heads, queries, 64], k and v
/// [batch, heads, keys, 64] with burn's `FlashUnit` kernel, when it applies: on wgpu, f32, head
/// dim 64 (the width it was measured at), and a launch it accepts. `None` otherwise (its
/// refusals are checked at launch, before anything runs).
pub fn flash_unit(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, causal: bool) -> Option<Tensor<4>> {
    let [batch, heads, queries, head_dim] = q.dims();
    let [k_batch, k_heads, keys, k_dim] = k.dims();
    let applies = super::enabled()
        && head_dim == HEAD_DIM
        && k.dims() == v.dims()
        && (k_batch, k_heads, k_dim) == (batch, heads, head_dim)
        && queries > 0
        && keys > 0
        && (!causal || queries == keys);
    if !applies {
        return None;
    }
    let (q, k, v) = (wgpu_f32(q)?, wgpu_f32(k)?, wgpu_f32(v)?);
    // The default scale is 1/√head_dim, SDXL's; a scale of its own would send burn's op to the
    // fallback, and this launch takes none.
    let options = AttentionModuleOptions { is_causal: causal, ..Default::default() };
    let unit = Strategy::Unit(BlueprintStrategy::Inferred(()));
    flash_attention(q, k, v, None, None, options, unit).ok().map(to_tensor)
}

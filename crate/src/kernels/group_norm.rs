//! GroupNorm, optionally fused with the SiLU that follows it in every resnet: two dispatches
//! (`shaders/group_norm_stats.wgsl`, `shaders/group_norm_apply.wgsl`) where burn's op chain
//! takes a dozen (reshape, mean, subtract, square, mean, add, sqrt, divide, reshape, multiply,
//! add, and SiLU's own). (A LayerNorm as the same kernels, each token a group, measured
//! 0.52–0.77× burn's op on lavapipe: a 256-invocation workgroup reducing 640 values; README.)

use burn::nn::GroupNorm;
use burn::tensor::activation::silu;
use burn::tensor::Tensor;

use super::launch::{Wgsl, empty_f32, launch, to_tensor, workgroups_for, wgpu_f32};

const STATS: Wgsl = Wgsl {
    name: "group_norm_stats",
    source: include_str!("../../../shaders/group_norm_stats.wgsl"),
    placeholders: &[],
    workgroup_size: [256, 1, 1],
};

const APPLY: Wgsl = Wgsl {
    name: "group_norm_apply",
    source: include_str!("../../../shaders/group_norm_apply.wgsl"),
    placeholders: &[],
    workgroup_size: [256, 1, 1],
};

/// `silu(norm(x))` over [batch, channels, h, w]: our kernels on wgpu, burn's ops elsewhere (the
/// CPU backend is the reference).
pub fn norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    fused(norm, &x, true).unwrap_or_else(|| silu(norm.forward(x)))
}

/// `norm(x)` over [batch, channels, h, w], as [`norm_silu`] without the SiLU.
pub fn norm(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    fused(norm, &x, false).unwrap_or_else(|| norm.forward(x))
}

/// The kernels' path, when it applies: wgpu, f32, an affine norm, sizes within the kernels' limits.
fn fused(norm: &GroupNorm, x: &Tensor<4>, then_silu: bool) -> Option<Tensor<4>> {
    if !super::enabled() {
        return None;
    }
    let (gamma, beta) = (norm.gamma.as_ref()?.val(), norm.beta.as_ref()?.val());
    let [batch, channels, height, width] = x.dims();
    let groups = norm.num_groups;
    let elements = batch * channels * height * width;
    let fits = groups > 0 && channels % groups == 0 && batch * groups <= super::launch::MAX_WORKGROUPS as usize;
    if !fits || elements == 0 || elements > u32::MAX as usize {
        return None;
    }
    let input = wgpu_f32(x)?;
    let (gamma, beta) = (wgpu_f32(&gamma)?, wgpu_f32(&beta)?);
    let per_group = elements / (batch * groups);
    let stats = empty_f32(&input, [batch * groups * 2].into());
    let eps = (norm.epsilon as f32).to_bits();
    launch(STATS, [(batch * groups) as u32, 1, 1], &[&input], &stats, &[per_group as u32, eps]);
    let output = empty_f32(&input, [batch, channels, height, width].into());
    let params = [elements as u32, (height * width) as u32, channels as u32, per_group as u32, then_silu as u32];
    launch(APPLY, workgroups_for(elements, 256), &[&input, &stats, &gamma, &beta], &output, &params);
    Some(to_tensor(output))
}

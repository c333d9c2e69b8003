//! 2-D convolution as an implicit GEMM (`shaders/conv2d_gemm.wgsl`): shared-memory tiles of
//! weights and of input patches read straight from the input, the bias fused. burn 0.22.1 on
//! WebGPU has only its direct convolution (its implicit-GEMM kernels need cmma/mma, which WGSL
//! lacks).

use burn::tensor::Tensor;

use super::launch::{MAX_WORKGROUPS, Wgsl, empty_f32, launch, to_tensor, wgpu_f32};

/// Output channels and pixels per workgroup (the WGSL's `TILE`).
const TILE: usize = 64;

const GEMM: Wgsl = Wgsl {
    name: "conv2d_gemm",
    source: include_str!("../../../shaders/conv2d_gemm.wgsl"),
    workgroup_size: [16, 16, 1],
};

/// `x` [batch, in, h, w] convolved with `weight` [out, in · kernel²] (rows as in the checkpoint)
/// plus `bias` [out], square `kernel`, `stride`, padding `[(top, bottom), (left, right)]`, when
/// our kernel applies (wgpu, f32, within its dispatch limits); `None` otherwise.
pub fn conv2d(
    x: &Tensor<4>,
    weight: &Tensor<2>,
    bias: &Tensor<1>,
    kernel: usize,
    stride: usize,
    padding: [(usize, usize); 2],
) -> Option<Tensor<4>> {
    if !super::enabled() {
        return None;
    }
    let [batch, channels, height, width] = x.dims();
    let [outputs, k_total] = weight.dims();
    let [(top, bottom), (left, right)] = padding;
    if kernel == 0 || stride == 0 || k_total != channels * kernel * kernel || bias.dims() != [outputs] {
        return None;
    }
    let out_h = (height + top + bottom).checked_sub(kernel)? / stride + 1;
    let out_w = (width + left + right).checked_sub(kernel)? / stride + 1;
    let columns = batch * out_h * out_w;
    let fits = columns.div_ceil(TILE) <= MAX_WORKGROUPS as usize
        && outputs.div_ceil(TILE) <= MAX_WORKGROUPS as usize
        && [batch * channels * height * width, outputs * k_total, batch * outputs * out_h * out_w, height + top, width + left]
            .iter()
            .all(|&n| n < u32::MAX as usize);
    if !fits || columns == 0 || outputs == 0 {
        return None;
    }
    let (x, weight, bias) = (wgpu_f32(x)?, wgpu_f32(weight)?, wgpu_f32(bias)?);
    let out = empty_f32(&x, [batch, outputs, out_h, out_w].into());
    let params = [batch, channels, height, width, outputs, out_h, out_w, kernel, kernel, stride, top, left].map(|n| n as u32);
    let workgroups = [columns.div_ceil(TILE) as u32, outputs.div_ceil(TILE) as u32, 1];
    launch(GEMM, workgroups, &[&x, &weight, &bias], &out, &params);
    Some(to_tensor(out))
}

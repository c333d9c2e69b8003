//! 2-D convolution as an implicit GEMM (`shaders/conv2d_gemm.wgsl`): shared-memory tiles of
//! weights and of input patches read straight from the input, the bias fused. burn 0.22.1 on
//! WebGPU has only its direct convolution (its implicit-GEMM kernels need cmma/mma, which WGSL
//! lacks).

use burn::backend::wgpu::CubeTensor;
use burn::backend::{BackendTensor, CubeDevice, DispatchTensorKind};
use burn::tensor::{DType, Tensor};

use super::gemm::{self, TILE};
use super::launch::{MAX_WORKGROUPS, empty_f32, launch, to_tensor, wgpu_f32};
use crate::weights::quant::{self, StoredDtype};

/// The kernel with f32 weights, and reading q8/q4 block storage.
const KERNELS: gemm::Kernels =
    gemm::kernels("conv2d_gemm", "conv2d_gemm_quantized", include_str!("../../../shaders/conv2d_gemm.wgsl"), gemm::CONV_F32_WEIGHTS);

/// `x` [batch, in, h, w] convolved with `weight` [out, in · kernel²] (rows as in the checkpoint)
/// plus `bias` [out], square `kernel`, `stride`, padding `[(top, bottom), (left, right)]`, when
/// our kernel applies (wgpu, f32 input, within its dispatch limits); `None` otherwise. A weight
/// kept block-quantized on the device (`quant::device_quantized`: q8/q4, blocks of 32) is read
/// as stored, dequantized in the tile loader; another quantized weight is expanded first.
/// `upsampled`: of `x` upsampled ×2 by nearest neighbour (diffusers' `Upsample2D`), read so by
/// the tile loader from `x`, never stored ([batch, in, h, w] gives [batch, out, 2h, 2w] for a
/// 3×3 conv with padding 1).
pub fn conv2d(
    x: &Tensor<4>,
    weight: &Tensor<2>,
    bias: &Tensor<1>,
    kernel: usize,
    stride: usize,
    padding: [(usize, usize); 2],
    upsampled: bool,
) -> Option<Tensor<4>> {
    if !super::enabled() {
        return None;
    }
    let up = usize::from(upsampled);
    let [batch, channels, stored_h, stored_w] = x.dims();
    let (height, width) = (stored_h << up, stored_w << up);
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
    let (x, bias) = (wgpu_f32(x)?, wgpu_f32(bias)?);
    let out = empty_f32(&x, [batch, outputs, out_h, out_w].into());
    let mut params = [batch, channels, stored_h, stored_w, outputs, out_h, out_w, kernel, kernel, stride, top, left, up].map(|n| n as u32).to_vec();
    let workgroups = [columns.div_ceil(TILE) as u32, outputs.div_ceil(TILE) as u32, 1];
    if let Some((values, scales, bits)) = block_quantized(weight) {
        params.push(bits);
        launch(KERNELS.quantized, workgroups, &[&x, &values, &scales, &bias], &out, &params);
    } else {
        let weight = match weight.dtype() {
            DType::QFloat(_) => wgpu_f32(&weight.clone().dequantize())?,
            _ => wgpu_f32(weight)?,
        };
        launch(KERNELS.f32_weights, workgroups, &[&x, &weight, &bias], &out, &params);
    }
    Some(to_tensor(out))
}

/// Whether [`conv2d`] reads `weight` as stored (block-quantized on wgpu), with no f32 copy.
pub fn reads_as_stored(weight: &Tensor<2>) -> bool {
    block_quantized(weight).is_some()
}

/// The stored values (u32 words), block scales (f32) and bits per value of a weight that
/// `quant::device_quantized` keeps block-quantized on a wgpu device; `None` for anything else.
pub(super) fn block_quantized(weight: &Tensor<2>) -> Option<(CubeTensor, CubeTensor, u32)> {
    let DType::QFloat(scheme) = weight.dtype() else { return None };
    let DispatchTensorKind::Cube(BackendTensor::Quantized(tensor)) = weight.clone().into_dispatch().kind else {
        return None;
    };
    if !matches!(tensor.device, CubeDevice::Wgpu(_)) {
        return None;
    }
    let shape = weight.dims();
    let device = weight.device();
    let bits = [(StoredDtype::Q8, 8), (StoredDtype::Q4, 4)]
        .into_iter()
        .find(|&(dtype, _)| quant::device_scheme(dtype, &shape, Some(BLOCK), &device) == Some(scheme))
        .map(|(_, bits)| bits)?;
    // Rows one after the other, strides counted in packed words (not a transposed view).
    let words_per_row = shape[1] / (32 / bits as usize);
    if tensor.meta.strides().iter().copied().ne([words_per_row, 1]) {
        return None;
    }
    let (values, scales) = tensor.quantized_handles()?;
    Some((values, scales, bits))
}

/// The block size the quantized kernel reads (the WGSL's `32u`).
const BLOCK: usize = 32;

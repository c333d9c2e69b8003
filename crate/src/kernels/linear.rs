//! A Linear layer as a GEMM of our own (`shaders/linear_gemm.wgsl`: K-inner tiles, every load
//! a vec4) that reads q8/q4 weights as burn stores them on the device, dequantizing in the tile
//! loader. burn's own quantized matmul does that too; ours runs where it measured faster
//! (`kernel_bench linear`; see [`q4_linear`]).

use burn::backend::wgpu::CubeTensor;
use burn::tensor::Tensor;

use super::conv::block_quantized;
use super::gemm::{self, TILE};
use super::launch::{MAX_WORKGROUPS, empty_f32, launch, to_tensor, wgpu_f32};

const KERNELS: gemm::Kernels =
    gemm::kernels("linear_gemm", "linear_gemm_quantized", include_str!("../../../shaders/linear_gemm.wgsl"), gemm::LINEAR_F32_WEIGHTS);

/// A model's Linear layer, whose weight `weight_in_out` is held `[in, out]` (a view of the
/// checkpoint's rows), where our kernel runs it faster than burn's matmul: a q4 weight
/// block-quantized on wgpu; `None` otherwise (burn's matmul then). Measured on lavapipe
/// (`kernel_bench linear`, the UNet's GEGLU projection at 64², timed in turn): ours 5.6× burn's
/// q4 matmul; ours with q8 weights as fast as burn's q8 matmul (1.01×: burn's runs at its f32
/// speed), so q8 and f32 stay burn's.
pub fn q4_linear<const D: usize>(x: &Tensor<D>, weight_in_out: &Tensor<2>, bias: Option<&Tensor<1>>) -> Option<Tensor<D>> {
    if !super::enabled() {
        return None;
    }
    let weight = weight_in_out.clone().transpose();
    let quantized = block_quantized(&weight).filter(|&(_, _, bits)| bits == 4)?;
    run(x, &weight, Some(quantized), bias)
}

/// `x` [.., in] times `weight` [out, in] (the checkpoint's rows) transposed, plus `bias` [out]:
/// PyTorch's `nn.Linear`, when our kernel applies (wgpu, f32 `x`, `in` a multiple of 4, within
/// its dispatch limits); `None` otherwise. A weight block-quantized on the device (q8/q4, blocks
/// of 32) is read as stored; an f32 one (the benchmark's reference) as it is; any other is not
/// ours.
pub fn linear<const D: usize>(x: &Tensor<D>, weight: &Tensor<2>, bias: Option<&Tensor<1>>) -> Option<Tensor<D>> {
    if !super::enabled() {
        return None;
    }
    run(x, weight, block_quantized(weight), bias)
}

/// [`linear`] with the weight's block storage (`block_quantized`'s answer) already found.
fn run<const D: usize>(x: &Tensor<D>, weight: &Tensor<2>, quantized: Option<(CubeTensor, CubeTensor, u32)>, bias: Option<&Tensor<1>>) -> Option<Tensor<D>> {
    let dims = x.dims();
    let inputs = dims[D - 1];
    let tokens: usize = dims[..D - 1].iter().product();
    let [outputs, weight_inputs] = weight.dims();
    if weight_inputs != inputs || !inputs.is_multiple_of(4) || bias.is_some_and(|bias| bias.dims() != [outputs]) || tokens == 0 || outputs == 0 {
        return None;
    }
    let fits = tokens.div_ceil(TILE) <= MAX_WORKGROUPS as usize
        && outputs.div_ceil(TILE) <= MAX_WORKGROUPS as usize
        && [tokens * inputs, outputs * inputs, tokens * outputs].iter().all(|&n| n < u32::MAX as usize);
    if !fits {
        return None;
    }
    let x = wgpu_f32(&x.clone().reshape([tokens, inputs]))?;
    let out = empty_f32(&x, [tokens, outputs].into());
    let workgroups = [tokens.div_ceil(TILE) as u32, outputs.div_ceil(TILE) as u32, 1];
    let mut params = vec![tokens as u32, inputs as u32, outputs as u32, u32::from(bias.is_some())];
    // Where there is no bias, a one-value stand-in for its binding (never read).
    let bias = match bias {
        Some(bias) => wgpu_f32(bias)?,
        None => empty_f32(&x, [1].into()),
    };
    if let Some((values, scales, bits)) = quantized {
        params.push(bits);
        launch(KERNELS.quantized, workgroups, &[&x, &values, &scales, &bias], &out, &params);
    } else {
        let weight = wgpu_f32(weight)?;
        launch(KERNELS.f32_weights, workgroups, &[&x, &weight, &bias], &out, &params);
    }
    let mut shape = dims;
    shape[D - 1] = outputs;
    Some(to_tensor::<2>(out).reshape(shape))
}

//! diffusers' `nn.Conv2d`, its weight held as `[out, in·kh·kw]`: the checkpoint's rows, along
//! which the format's quantization blocks run, so a q8/q4 weight can stay block-quantized on the
//! device (`quant::device_quantized`): our wgpu kernel reads it as stored; burn's conv (the CPU
//! backend) gets it expanded for the call that uses it.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct Conv2d {
    /// `[out, in·kh·kw]`; the loader flattens the checkpoint's `[out, in, kh, kw]`.
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub channels_in: usize,
    pub kernel: usize,
    pub stride: usize,
    /// `[(top, bottom), (left, right)]`.
    pub padding: [(usize, usize); 2],
}

impl Conv2d {
    /// A `kernel`×`kernel` convolution with bias.
    pub fn new(channels: [usize; 2], kernel: usize, stride: usize, padding: [(usize, usize); 2], device: &Device) -> Self {
        let [channels_in, channels_out] = channels;
        Self {
            weight: Initializer::Zeros.init([channels_out, channels_in * kernel * kernel], device),
            bias: Some(Initializer::Zeros.init([channels_out], device)),
            channels_in,
            kernel,
            stride,
            padding,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // Our kernel on wgpu reads a block-quantized weight as stored.
        if let Some(bias) = &self.bias
            && let Some(out) = crate::kernels::conv::conv2d(&x, &self.weight.val(), &bias.val(), self.kernel, self.stride, self.padding, false)
        {
            return out;
        }
        self.reference(x)
    }

    /// The convolution of `x` upsampled ×2 by nearest neighbour (`Upsample2D`'s): on wgpu our
    /// kernel reads the upsampled input from `x` as it goes, never storing it (at SDXL's VAE
    /// decoding 1024², a 1 GiB tensor); elsewhere `x` is upsampled first.
    pub fn forward_upsampled(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(bias) = &self.bias
            && let Some(out) = crate::kernels::conv::conv2d(&x, &self.weight.val(), &bias.val(), self.kernel, self.stride, self.padding, true)
        {
            return out;
        }
        self.reference(upsample_nearest_2x(x))
    }

    /// burn's convolution (the CPU backend, or what our kernel does not cover).
    fn reference(&self, x: Tensor<4>) -> Tensor<4> {
        let [channels_out, _] = self.weight.dims();
        // A no-op for f32 weights; a quantized one is expanded for this call only.
        let weight = self.weight.val().dequantize().reshape([channels_out, self.channels_in, self.kernel, self.kernel]);
        let options = ConvOptions::new_with_padding([self.stride; 2], self.padding, [1, 1], 1);
        conv2d(x, weight, self.bias.as_ref().map(|bias| bias.val()), options)
    }
}

/// Nearest 2× by broadcasting: each pixel repeated into a 2×2 square, exactly.
pub fn upsample_nearest_2x(x: Tensor<4>) -> Tensor<4> {
    let [batch, channels, height, width] = x.dims();
    x.reshape([batch, channels, height, 1, width, 1])
        .expand([batch, channels, height, 2, width, 2])
        .reshape([batch, channels, height * 2, width * 2])
}

/// 3×3, stride 1, padding 1: the resnets' and samplers' convolution.
pub fn conv3x3(channels_in: usize, channels_out: usize, device: &Device) -> Conv2d {
    Conv2d::new([channels_in, channels_out], 3, 1, [(1, 1); 2], device)
}

pub fn conv1x1(channels_in: usize, channels_out: usize, device: &Device) -> Conv2d {
    Conv2d::new([channels_in, channels_out], 1, 1, [(0, 0); 2], device)
}

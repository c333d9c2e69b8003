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
        let [channels_out, _] = self.weight.dims();
        // Our kernel on wgpu reads a block-quantized weight as stored.
        if let Some(bias) = &self.bias
            && let Some(out) = crate::kernels::conv::conv2d(&x, &self.weight.val(), &bias.val(), self.kernel, self.stride, self.padding)
        {
            return out;
        }
        // A no-op for f32 weights; a quantized one is expanded for this call only.
        let weight = self.weight.val().dequantize().reshape([channels_out, self.channels_in, self.kernel, self.kernel]);
        let options = ConvOptions::new_with_padding([self.stride; 2], self.padding, [1, 1], 1);
        conv2d(x, weight, self.bias.as_ref().map(|bias| bias.val()), options)
    }
}

/// 3×3, stride 1, padding 1: the resnets' and samplers' convolution.
pub fn conv3x3(channels_in: usize, channels_out: usize, device: &Device) -> Conv2d {
    Conv2d::new([channels_in, channels_out], 3, 1, [(1, 1); 2], device)
}

pub fn conv1x1(channels_in: usize, channels_out: usize, device: &Device) -> Conv2d {
    Conv2d::new([channels_in, channels_out], 1, 1, [(0, 0); 2], device)
}

//! diffusers `ResnetBlock2D`, `Downsample2D` and `Upsample2D`.

use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

use super::conv::{Conv2d, conv1x1, conv3x3};
use super::linear::{Linear, LinearConfig};
use crate::kernels::group_norm::norm_silu;

pub fn group_norm(groups: usize, channels: usize, eps: f64, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels).with_epsilon(eps).init(device)
}

#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    /// Absent in the VAE, which has no time embedding.
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    /// A 1×1 projection of the input when the channel count changes.
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    pub fn new(
        channels_in: usize,
        channels_out: usize,
        time_dim: Option<usize>,
        groups: usize,
        eps: f64,
        device: &Device,
    ) -> Self {
        Self {
            norm1: group_norm(groups, channels_in, eps, device),
            conv1: conv3x3(channels_in, channels_out, device),
            time_emb_proj: time_dim.map(|dim| LinearConfig::new(dim, channels_out).init(device)),
            norm2: group_norm(groups, channels_out, eps, device),
            conv2: conv3x3(channels_out, channels_out, device),
            conv_shortcut: (channels_in != channels_out)
                .then(|| conv1x1(channels_in, channels_out, device)),
        }
    }

    pub fn forward(&self, x: Tensor<4>, time_emb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut h = self.conv1.forward(norm_silu(&self.norm1, x.clone()));
        if let (Some(proj), Some(emb)) = (&self.time_emb_proj, time_emb) {
            h = h + proj.forward(silu(emb.clone())).unsqueeze_dims::<4>(&[2, 3]);
        }
        let h = self.conv2.forward(norm_silu(&self.norm2, h));
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        shortcut + h
    }
}

/// Halves the resolution with a stride-2 3×3 conv. The UNet pads 1 on every side; the VAE
/// pads only bottom and right (diffusers' `padding=0` path pads (0, 1, 0, 1)).
#[derive(Module, Debug)]
pub struct Downsample2D {
    pub conv: Conv2d,
}

impl Downsample2D {
    pub fn new(channels: usize, symmetric_padding: bool, device: &Device) -> Self {
        let padding = if symmetric_padding { [(1, 1); 2] } else { [(0, 1); 2] };
        Self { conv: Conv2d::new([channels, channels], 3, 2, padding, device) }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

/// Doubles the resolution: nearest-neighbour 2× then a 3×3 conv.
#[derive(Module, Debug)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self { conv: conv3x3(channels, channels, device) }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward_upsampled(x)
    }
}

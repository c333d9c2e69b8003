//! diffusers `AutoencoderKL`: the encoder to the latent distribution's mean, the decoder back.

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::tensor::{Device, Tensor};
use serde::Deserialize;

use super::attention::Attention;
use super::config::{MAX_BLOCKS, MAX_LAYERS, MAX_WIDTH, require, require_divides, require_within};
use super::conv::{Conv2d, conv1x1, conv3x3};
use super::resnet::{Downsample2D, ResnetBlock2D, Upsample2D, group_norm};
use crate::error::{Error, Result};
use crate::kernels::group_norm::norm_silu;

/// The VAE's resnets and norms use this epsilon in diffusers (`resnet_eps=1e-6`).
const EPS: f64 = 1e-6;

/// diffusers' `AutoencoderKL` config. Keys this port does not implement are accepted only at
/// their defaults, every count and size only within bounds (see [`VaeConfig::validate`]). Not
/// read: `force_upcast` (a precision hint: this port decodes in the device's f32 either way);
/// `sample_size` (the default image size) only sets the default tiles of tiled decoding and
/// encoding (`vae_tiling::VaeTiling::from_config`). Neither changes a value `decode` computes.
#[derive(Clone, Debug, Deserialize)]
pub struct VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// Latents are multiplied by this after encoding and divided before decoding (0.13025 for
    /// SDXL, 0.18215 for SD 1.x).
    pub scaling_factor: f64,
    /// The VAE must run in f32 unless an fp16-safe one is given.
    #[serde(default)]
    pub force_upcast: bool,
    #[serde(default = "default_true")]
    pub mid_block_add_attention: bool,
    #[serde(default = "default_act")]
    pub act_fn: String,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
    /// Per-channel latent statistics the SDXL pipelines decode with when set (instead of the
    /// scaling factor alone).
    #[serde(default)]
    pub latents_mean: Option<Vec<f64>>,
    #[serde(default)]
    pub latents_std: Option<Vec<f64>>,
    /// diffusers' default image size (1024 for SDXL; a number, or a list): the default tile size
    /// of tiled decoding and encoding, read (and checked) only by
    /// `vae_tiling::VaeTiling::from_config`, so any value loads.
    #[serde(default)]
    pub sample_size: Option<serde_json::Value>,
}

fn default_groups() -> usize {
    32
}
fn default_true() -> bool {
    true
}
fn default_act() -> String {
    "silu".into()
}

impl VaeConfig {
    /// How many pixels one latent covers per side (8 for SDXL).
    pub fn scale_factor(&self) -> usize {
        // Saturates for a config `validate` refuses (more levels than bits) rather than overflow.
        1usize.checked_shl(self.block_out_channels.len().saturating_sub(1) as u32).unwrap_or(usize::MAX)
    }

    /// The latents' pixels of a `width`×`height` image.
    pub fn latent_pixels(&self, width: usize, height: usize) -> u64 {
        let scale = self.scale_factor() as u64;
        (width as u64 / scale).saturating_mul(height as u64 / scale)
    }

    /// Bytes of the largest activation decoding a `width`×`height` image takes: the widest
    /// channel count entering or leaving an up block at that block's resolution, or leaving its
    /// upsampler at twice it (SDXL at 1024²: 256 channels at full size, 1 GiB). The mid-block's
    /// attention scores stay below `attention::MAX_SCORE_BYTES`.
    pub fn largest_decode_bytes(&self, width: usize, height: usize) -> u64 {
        let channels: Vec<u64> = self.block_out_channels.iter().rev().map(|&c| c as u64).collect();
        let latent_pixels = self.latent_pixels(width, height);
        let (mut largest, mut input) = (0u64, channels.first().copied().unwrap_or(0));
        for (i, &output) in channels.iter().enumerate() {
            let pixels = latent_pixels.saturating_mul(1u64.checked_shl(2 * i as u32).unwrap_or(u64::MAX));
            largest = largest.max(input.max(output).saturating_mul(pixels));
            if i + 1 < channels.len() {
                largest = largest.max(output.saturating_mul(pixels).saturating_mul(4));
            }
            input = output;
        }
        largest.saturating_mul(size_of::<f32>() as u64)
    }

    /// Checks the config describes a network this port builds, with every count and size within
    /// bounds; [`VaeConfig::init`] checks the same first.
    pub fn validate(&self) -> Result<()> {
        let blocks = self.block_out_channels.len();
        require_within("block_out_channels (entries)", blocks, 1..=MAX_BLOCKS)?;
        if self.down_block_types.len() != blocks || self.up_block_types.len() != blocks {
            return Err(Error::Unsupported(format!(
                "VAE with {blocks} block_out_channels, {} down and {} up block types",
                self.down_block_types.len(),
                self.up_block_types.len()
            )));
        }
        for kind in &self.down_block_types {
            require("down_block_types[]", &kind.as_str(), &"DownEncoderBlock2D")?;
        }
        for kind in &self.up_block_types {
            require("up_block_types[]", &kind.as_str(), &"UpDecoderBlock2D")?;
        }
        require("act_fn", &self.act_fn.as_str(), &"silu")?;
        require("mid_block_add_attention", &self.mid_block_add_attention, &true)?;
        require("shift_factor", &self.shift_factor, &None)?;
        require("use_quant_conv", &self.use_quant_conv, &true)?;
        require("use_post_quant_conv", &self.use_post_quant_conv, &true)?;
        require("latents_mean", &self.latents_mean, &None)?;
        require("latents_std", &self.latents_std, &None)?;
        for (key, value) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("latent_channels", self.latent_channels),
            ("norm_num_groups", self.norm_num_groups),
        ] {
            require_within(key, value, 1..=MAX_WIDTH)?;
        }
        require_within("layers_per_block", self.layers_per_block, 1..=MAX_LAYERS)?;
        for (i, &channels) in self.block_out_channels.iter().enumerate() {
            let key = format!("block_out_channels[{i}]");
            require_within(&key, channels, 1..=MAX_WIDTH)?;
            require_divides("norm_num_groups", self.norm_num_groups, &key, channels)?;
        }
        // Latents are divided by it before decoding.
        if !(self.scaling_factor.is_finite() && self.scaling_factor > 0.0) {
            return Err(Error::Unsupported(format!(
                "`scaling_factor` = {} (expected a finite number > 0)",
                self.scaling_factor
            )));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> Result<AutoencoderKL> {
        self.validate()?;
        let channels = &self.block_out_channels;
        let blocks = channels.len();
        let groups = self.norm_num_groups;
        let resnet = |input, output| ResnetBlock2D::new(input, output, None, groups, EPS, device);
        let top = channels[blocks - 1];
        let encoder = Encoder {
            conv_in: conv3x3(self.in_channels, channels[0], device),
            down_blocks: (0..blocks)
                .map(|i| {
                    let input = if i == 0 { channels[0] } else { channels[i - 1] };
                    EncoderBlock {
                        resnets: (0..self.layers_per_block)
                            .map(|j| resnet(if j == 0 { input } else { channels[i] }, channels[i]))
                            .collect(),
                        downsamplers: (i + 1 < blocks)
                            .then(|| Downsample2D::new(channels[i], false, device))
                            .into_iter()
                            .collect(),
                    }
                })
                .collect(),
            mid_block: VaeMidBlock::new(top, groups, device),
            conv_norm_out: group_norm(groups, top, EPS, device),
            conv_out: conv3x3(top, 2 * self.latent_channels, device),
        };
        let decoder = Decoder {
            conv_in: conv3x3(self.latent_channels, top, device),
            mid_block: VaeMidBlock::new(top, groups, device),
            up_blocks: (0..blocks)
                .map(|i| {
                    let level = blocks - 1 - i;
                    let input = channels[(level + 1).min(blocks - 1)];
                    DecoderBlock {
                        resnets: (0..=self.layers_per_block)
                            .map(|j| resnet(if j == 0 { input } else { channels[level] }, channels[level]))
                            .collect(),
                        upsamplers: (i + 1 < blocks)
                            .then(|| Upsample2D::new(channels[level], device))
                            .into_iter()
                            .collect(),
                    }
                })
                .collect(),
            conv_norm_out: group_norm(groups, channels[0], EPS, device),
            conv_out: conv3x3(channels[0], self.out_channels, device),
        };
        Ok(AutoencoderKL {
            encoder,
            quant_conv: conv1x1(2 * self.latent_channels, 2 * self.latent_channels, device),
            post_quant_conv: conv1x1(self.latent_channels, self.latent_channels, device),
            decoder,
            latent_channels: self.latent_channels,
        })
    }
}

/// `UNetMidBlock2D` without time embedding: resnet, attention, resnet.
#[derive(Module, Debug)]
pub struct VaeMidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Attention>,
}

impl VaeMidBlock {
    fn new(channels: usize, groups: usize, device: &Device) -> Self {
        Self {
            resnets: (0..2)
                .map(|_| ResnetBlock2D::new(channels, channels, None, groups, EPS, device))
                .collect(),
            attentions: vec![Attention::vae(channels, groups, EPS, device)],
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.resnets[0].forward(x, None);
        let x = self.attentions[0].forward_image(x);
        self.resnets[1].forward(x, None)
    }
}

#[derive(Module, Debug)]
pub struct EncoderBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsamplers: Vec<Downsample2D>,
}

#[derive(Module, Debug)]
pub struct DecoderBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub upsamplers: Vec<Upsample2D>,
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<EncoderBlock>,
    pub mid_block: VaeMidBlock,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: VaeMidBlock,
    pub up_blocks: Vec<DecoderBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

#[derive(Module, Debug)]
pub struct AutoencoderKL {
    pub encoder: Encoder,
    pub quant_conv: Conv2d,
    pub post_quant_conv: Conv2d,
    pub decoder: Decoder,
    pub latent_channels: usize,
}

impl AutoencoderKL {
    /// The mean of the latent distribution of an image [B, 3, H, W] in −1..1 (unscaled).
    pub fn encode_mean(&self, image: Tensor<4>) -> Tensor<4> {
        self.moments(image).narrow(1, 0, self.latent_channels)
    }

    /// The latent distribution's mean and standard deviation (diffusers'
    /// `DiagonalGaussianDistribution`: log-variance clamped to −30..20).
    pub fn encode_distribution(&self, image: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let moments = self.moments(image);
        let mean = moments.clone().narrow(1, 0, self.latent_channels);
        let log_variance = moments.narrow(1, self.latent_channels, self.latent_channels).clamp(-30.0, 20.0);
        (mean, (log_variance * 0.5).exp())
    }

    /// diffusers' `_encode` without tiling: the encoder's output after `quant_conv`, mean and
    /// log-variance stacked along channels ([B, 2·latent_channels, H/8, W/8]).
    pub fn encode_moments(&self, image: Tensor<4>) -> Tensor<4> {
        self.moments(image)
    }

    /// The encoder's output: mean and log-variance stacked along channels.
    fn moments(&self, image: Tensor<4>) -> Tensor<4> {
        let e = &self.encoder;
        let mut x = e.conv_in.forward(image);
        for block in &e.down_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(x, None);
            }
            for downsampler in &block.downsamplers {
                x = downsampler.forward(x);
            }
        }
        x = e.mid_block.forward(x);
        self.quant_conv.forward(e.conv_out.forward(norm_silu(&e.conv_norm_out, x)))
    }

    /// The image [B, 3, 8H, 8W] in about −1..1 for latents already divided by the scaling factor.
    pub fn decode(&self, latents: Tensor<4>) -> Tensor<4> {
        let d = &self.decoder;
        let mut x = d.conv_in.forward(self.post_quant_conv.forward(latents));
        x = d.mid_block.forward(x);
        for block in &d.up_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(x, None);
            }
            for upsampler in &block.upsamplers {
                x = upsampler.forward(x);
            }
        }
        d.conv_out.forward(norm_silu(&d.conv_norm_out, x))
    }
}

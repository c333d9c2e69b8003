//! diffusers `Transformer2DModel` with `use_linear_projection` and its `BasicTransformerBlock`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, GroupNorm, LayerNorm, LayerNormConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use super::attention::Attention;
use super::linear::{Linear, LinearConfig};
use super::resnet::group_norm;

/// GEGLU: one projection to twice the width, half of it gating the other through GELU (on
/// wgpu in one pass: `kernels::geglu`).
#[derive(Module, Debug)]
pub struct GeGlu {
    pub proj: Linear,
}

impl GeGlu {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let proj = self.proj.forward(x);
        if let Some(out) = crate::kernels::geglu::fused(&proj) {
            return out;
        }
        let [hidden, gate] = proj.chunk(2, 2).try_into().expect("two chunks");
        hidden * gelu(gate)
    }
}

/// diffusers' `FeedForward`: `net = [GEGLU, Dropout, Linear]`, kept as a tuple so the keys stay
/// `ff.net.0.proj` and `ff.net.2`. Dropout is inert at inference.
#[derive(Module, Debug)]
pub struct FeedForward {
    pub net: (GeGlu, Dropout, Linear),
}

impl FeedForward {
    pub fn new(dim: usize, device: &Device) -> Self {
        let inner = dim * 4;
        Self {
            net: (
                GeGlu { proj: LinearConfig::new(dim, inner * 2).init(device) },
                DropoutConfig::new(0.0).init(),
                LinearConfig::new(inner, dim).init(device),
            ),
        }
    }

    /// `x` [batch, tokens, dim], in pieces of tokens where its GEGLU projection would take more
    /// than [`FEED_FORWARD_CHUNK_BYTES`].
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_within(x, FEED_FORWARD_CHUNK_BYTES)
    }

    /// [`Self::forward`] with the GEGLU projection held to `max_bytes` at once, as few tokens
    /// as it takes down to one at a time (diffusers' `_chunked_feed_forward`: each token's
    /// feed-forward is its own, so the pieces change no value).
    pub fn forward_within(&self, x: Tensor<3>, max_bytes: u64) -> Tensor<3> {
        let [batch, tokens, _] = x.dims();
        let row_bytes = (batch * self.net.0.proj.weight.lazy_shape()[1] * size_of::<f32>()) as u64;
        let per_piece = (max_bytes / row_bytes.max(1)).max(1) as usize;
        if tokens <= per_piece {
            return self.net.2.forward(self.net.0.forward(x));
        }
        let pieces = x.split(per_piece, 1).into_iter().map(|piece| self.net.2.forward(self.net.0.forward(piece)));
        Tensor::cat(pieces.collect(), 1)
    }
}

/// The most bytes a feed-forward's GEGLU projection takes at once. Whole, it would be SDXL's
/// widest activation (2 · 4 · 640 values per token of the 64² level at 1024², batch 2: 160 MiB,
/// beside its gated half and their product); in pieces of tokens it stays below the resnets'.
pub const FEED_FORWARD_CHUNK_BYTES: u64 = 32 << 20;

#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: Attention,
    pub norm2: LayerNorm,
    pub attn2: Attention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
}

impl BasicTransformerBlock {
    pub fn new(dim: usize, context_dim: usize, heads: usize, device: &Device) -> Self {
        let norm = || LayerNormConfig::new(dim).init(device);
        Self {
            norm1: norm(),
            attn1: Attention::transformer(dim, dim, heads, device),
            norm2: norm(),
            attn2: Attention::transformer(dim, context_dim, heads, device),
            norm3: norm(),
            ff: FeedForward::new(dim, device),
        }
    }

    pub fn forward(&self, x: Tensor<3>, context: &Tensor<3>) -> Tensor<3> {
        let x = self.attn1.forward(self.norm1.forward(x.clone()), None) + x;
        let x = self.attn2.forward(self.norm2.forward(x.clone()), Some(context.clone())) + x;
        self.ff.forward(self.norm3.forward(x.clone())) + x
    }
}

#[derive(Module, Debug)]
pub struct Transformer2DModel {
    pub norm: GroupNorm,
    pub proj_in: Linear,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Linear,
}

impl Transformer2DModel {
    pub fn new(
        channels: usize,
        layers: usize,
        heads: usize,
        context_dim: usize,
        groups: usize,
        device: &Device,
    ) -> Self {
        Self {
            norm: group_norm(groups, channels, 1e-6, device),
            proj_in: LinearConfig::new(channels, channels).init(device),
            transformer_blocks: (0..layers)
                .map(|_| BasicTransformerBlock::new(channels, context_dim, heads, device))
                .collect(),
            proj_out: LinearConfig::new(channels, channels).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let h = crate::kernels::group_norm::norm(&self.norm, x.clone());
        let h = h.reshape([batch, channels, height * width]).swap_dims(1, 2);
        let mut h = self.proj_in.forward(h);
        for block in &self.transformer_blocks {
            h = block.forward(h, context);
        }
        let h = self.proj_out.forward(h);
        h.swap_dims(1, 2).reshape([batch, channels, height, width]) + x
    }
}

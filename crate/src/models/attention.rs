//! Attention: the one place the attention math lives, and diffusers' `Attention` module.

use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor};

/// softmax(q·kᵀ/√d [+ causal mask])·v over [batch, heads, tokens, head_dim].
///
/// Every attention in SDXL goes through here, so a tiled (flash-style) kernel for large
/// resolutions replaces this one function.
pub fn scaled_dot_product(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool) -> Tensor<4> {
    let [_, _, tokens, head_dim] = q.dims();
    let scores = q.matmul(k.swap_dims(2, 3)) * (head_dim as f64).powf(-0.5);
    let scores = if causal {
        // transformers fills with the lowest finite float, not −∞, which softmax handles alike.
        // burn's `tril_mask` is true *outside* the lower triangle: the future tokens.
        let mask = Tensor::<2, Bool>::tril_mask([tokens, tokens], 0, &scores.device());
        let mask = mask.unsqueeze::<4>().expand(scores.dims());
        scores.mask_fill(mask, f32::MIN)
    } else {
        scores
    };
    softmax(scores, 3).matmul(v)
}

/// [batch, tokens, heads·head_dim] → [batch, heads, tokens, head_dim]
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [batch, tokens, width] = x.dims();
    x.reshape([batch, tokens, heads, width / heads]).swap_dims(1, 2)
}

/// [batch, heads, tokens, head_dim] → [batch, tokens, heads·head_dim]
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [batch, heads, tokens, head_dim] = x.dims();
    x.swap_dims(1, 2).reshape([batch, tokens, heads * head_dim])
}

/// diffusers `Attention`: self-attention, or cross-attention when given a context. The VAE's
/// variant adds a group norm and a residual connection over an image.
#[derive(Module, Debug)]
pub struct Attention {
    pub group_norm: Option<GroupNorm>,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    /// diffusers' `ModuleList([Linear, Dropout])`: a one-element list keeps the key `to_out.0`.
    pub to_out: Vec<Linear>,
    pub heads: usize,
}

impl Attention {
    /// Attention in a transformer block: projections without bias, `heads` × `head_dim`.
    pub fn transformer(query_dim: usize, context_dim: usize, heads: usize, device: &Device) -> Self {
        let inner = query_dim;
        let projection = |input| LinearConfig::new(input, inner).with_bias(false).init(device);
        Self {
            group_norm: None,
            to_q: projection(query_dim),
            to_k: projection(context_dim),
            to_v: projection(context_dim),
            to_out: vec![LinearConfig::new(inner, query_dim).init(device)],
            heads,
        }
    }

    /// The VAE mid-block attention: one head over all channels, biased projections.
    pub fn vae(channels: usize, groups: usize, eps: f64, device: &Device) -> Self {
        let projection = || LinearConfig::new(channels, channels).init(device);
        Self {
            group_norm: Some(GroupNormConfig::new(groups, channels).with_epsilon(eps).init(device)),
            to_q: projection(),
            to_k: projection(),
            to_v: projection(),
            to_out: vec![projection()],
            heads: 1,
        }
    }

    /// [batch, tokens, dim], attending to `context` (or to itself).
    pub fn forward(&self, x: Tensor<3>, context: Option<Tensor<3>>) -> Tensor<3> {
        let context = context.unwrap_or_else(|| x.clone());
        let q = split_heads(self.to_q.forward(x), self.heads);
        let k = split_heads(self.to_k.forward(context.clone()), self.heads);
        let v = split_heads(self.to_v.forward(context), self.heads);
        self.to_out[0].forward(merge_heads(scaled_dot_product(q, k, v, false)))
    }

    /// The VAE form over an image [batch, channels, h, w]: norm, attend, add the input back.
    pub fn forward_image(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let h = match &self.group_norm {
            Some(norm) => norm.forward(x.clone()),
            None => x.clone(),
        };
        let tokens = h.reshape([batch, channels, height * width]).swap_dims(1, 2);
        let out = self.forward(tokens, None);
        out.swap_dims(1, 2).reshape([batch, channels, height, width]) + x
    }
}

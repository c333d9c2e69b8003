//! Attention: the one place the attention math lives, and diffusers' `Attention` module.

use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor};

use super::linear::{Linear, LinearConfig};

/// The most bytes one block of attention scores may take: WebGPU's default (and everywhere
/// guaranteed) `maxStorageBufferBindingSize`. SDXL at 1024² would otherwise materialize 1.3 GB of
/// scores in the UNet's first attention level and 1 GiB in the VAE's mid-block.
pub const MAX_SCORE_BYTES: usize = 128 << 20;

/// Multi-head attention over projections q [batch, queries, heads·head_dim], k and v [batch,
/// keys, heads·head_dim], returned as [batch, queries, heads·head_dim]. Every attention in SDXL
/// goes through here: on wgpu with head_dim 64 a fused kernel (`kernels::attention`), burn's
/// `FlashUnit`, which measured fastest (`kernel_bench`, README: 2.1–3.0× today's chunked path on
/// the UNet's attention, 2.5× on CLIP's causal one, where ours gave 2.0×), or ours where that
/// declines a causal launch; elsewhere [`scaled_dot_product`] on split heads (the CPU backend,
/// the VAE's 512-wide head).
pub fn multi_head(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, heads: usize, causal: bool) -> Tensor<3> {
    let (q_heads, k_heads, v_heads) = (split_heads(q.clone(), heads), split_heads(k.clone(), heads), split_heads(v.clone(), heads));
    if let Some(out) = crate::kernels::attention::flash_unit(&q_heads, &k_heads, &v_heads, causal) {
        return merge_heads(out);
    }
    if causal && let Some(out) = crate::kernels::attention::fused(&q, &k, &v, heads, causal) {
        return out;
    }
    merge_heads(scaled_dot_product(q_heads, k_heads, v_heads, causal))
}

/// softmax(q·kᵀ/√d [+ causal mask])·v over [batch, heads, tokens, head_dim], the queries taken in
/// chunks whose scores fit [`MAX_SCORE_BYTES`]: the reference path (the CPU backend, and
/// attention our kernel does not cover, such as the VAE's 512-wide head).
pub fn scaled_dot_product(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool) -> Tensor<4> {
    scaled_dot_product_within(q, k, v, causal, MAX_SCORE_BYTES)
}

/// [`scaled_dot_product`] holding at most `max_score_bytes` of scores at a time (at least one
/// query row). Each query's softmax sees all keys, so chunking changes no value.
pub fn scaled_dot_product_within(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool, max_score_bytes: usize) -> Tensor<4> {
    let [batch, heads, tokens, head_dim] = q.dims();
    let keys = k.dims()[2];
    let row_bytes = batch * heads * keys * size_of::<f32>();
    let rows = (max_score_bytes / row_bytes.max(1)).clamp(1, tokens.max(1));
    let k_t = k.swap_dims(2, 3);
    let scale = (head_dim as f64).powf(-0.5);
    // transformers fills with the lowest finite float, not −∞, which softmax handles alike.
    // burn's `tril_mask` is true *outside* the lower triangle: the future tokens.
    let mask = causal.then(|| Tensor::<2, Bool>::tril_mask([tokens, keys], 0, &q.device()));
    let attend = |q: Tensor<4>, first_row: usize| {
        let scores = q.matmul(k_t.clone()) * scale;
        let scores = match &mask {
            Some(mask) => {
                let rows = scores.dims()[2];
                let mask = mask.clone().slice([first_row..first_row + rows, 0..keys]);
                let shape = scores.dims();
                scores.mask_fill(mask.unsqueeze::<4>().expand(shape), f32::MIN)
            }
            None => scores,
        };
        softmax(scores, 3).matmul(v.clone())
    };
    if rows >= tokens {
        return attend(q, 0);
    }
    let chunks = (0..tokens)
        .step_by(rows)
        .map(|start| {
            let end = (start + rows).min(tokens);
            attend(q.clone().slice([0..batch, 0..heads, start..end, 0..head_dim]), start)
        })
        .collect();
    Tensor::cat(chunks, 2)
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
        let (q, k, v) = (self.to_q.forward(x), self.to_k.forward(context.clone()), self.to_v.forward(context));
        self.to_out[0].forward(multi_head(q, k, v, self.heads, false))
    }

    /// The VAE form over an image [batch, channels, h, w]: norm, attend, add the input back.
    pub fn forward_image(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let h = match &self.group_norm {
            Some(norm) => crate::kernels::group_norm::norm(norm, x.clone()),
            None => x.clone(),
        };
        let tokens = h.reshape([batch, channels, height * width]).swap_dims(1, 2);
        let out = self.forward(tokens, None);
        out.swap_dims(1, 2).reshape([batch, channels, height, width]) + x
    }
}


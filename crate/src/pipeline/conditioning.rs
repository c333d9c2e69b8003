//! Text and micro-conditioning, as diffusers' SDXL pipelines compute them (`encode_prompt`,
//! `_get_add_time_ids`).

use burn::tensor::{Device, Tensor};

use crate::error::{Error, Result};
use crate::models::clip::ClipTextModel;
use crate::tokenizer::ClipTokenizer;

/// One text encoder with its tokenizer.
pub struct TextEncoder {
    pub tokenizer: ClipTokenizer,
    pub model: ClipTextModel,
}

/// What the UNet is conditioned on for one prompt: `context` [1, 77, Σ widths] (the encoders'
/// penultimate states side by side) and `pooled` [1, P] (encoder 2's `text_embeds`).
#[derive(Clone)]
pub struct PromptEmbeds {
    pub context: Tensor<3>,
    pub pooled: Tensor<2>,
}

impl PromptEmbeds {
    /// diffusers' `force_zeros_for_empty_prompt`: the negative branch of an SDXL base run
    /// without a negative prompt is all zeros, not the encoding of "".
    pub fn zeros_like(&self) -> Self {
        Self { context: self.context.zeros_like(), pooled: self.pooled.zeros_like() }
    }
}

/// Encodes `prompt` with each encoder (CLIP-L then OpenCLIP-bigG for the base; bigG alone for
/// the refiner). The last encoder's projection gives the pooled embedding. Calls `warn` when
/// the prompt is cut at the window, as diffusers logs it.
pub fn encode_prompt(
    encoders: &[&TextEncoder],
    prompt: &str,
    device: &Device,
    warn: &mut dyn FnMut(String),
) -> Result<PromptEmbeds> {
    let mut contexts = Vec::with_capacity(encoders.len());
    let mut pooled = None;
    for encoder in encoders {
        let encoded = encoder
            .tokenizer
            .encode(prompt)
            .map_err(|e| Error::Input { name: "prompt".into(), message: e.to_string() })?;
        let window = encoder.tokenizer.max_len();
        if encoded.untruncated_len > window {
            warn(format!(
                "the prompt has {} tokens; CLIP takes {window}, so the last {} were cut",
                encoded.untruncated_len,
                encoded.untruncated_len - window
            ));
        }
        let out = encoder.model.forward(&[encoded.ids], device)?;
        contexts.push(out.penultimate);
        pooled = out.text_embeds.or(pooled);
    }
    let pooled = pooled.ok_or_else(|| {
        Error::Unsupported("the last text encoder has no projection for the pooled embedding".into())
    })?;
    Ok(PromptEmbeds { context: Tensor::cat(contexts, 2), pooled })
}

/// The base's micro-conditioning: original size, crop top-left, target size (all (h, w)).
pub fn base_time_ids(original: (usize, usize), crop: (usize, usize), target: (usize, usize)) -> Vec<f32> {
    [original.0, original.1, crop.0, crop.1, target.0, target.1].map(|v| v as f32).to_vec()
}

/// The refiner's micro-conditioning: original size, crop top-left, aesthetic score (6.0 for
/// the prompt, 2.5 for the negative prompt by default).
pub fn refiner_time_ids(original: (usize, usize), crop: (usize, usize), aesthetic_score: f64) -> Vec<f32> {
    vec![original.0 as f32, original.1 as f32, crop.0 as f32, crop.1 as f32, aesthetic_score as f32]
}

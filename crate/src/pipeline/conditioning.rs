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

/// What happens to a prompt longer than CLIP's window (77 tokens with BOS and EOS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LongPrompt {
    /// Cut it, with a warning: diffusers' behaviour.
    #[default]
    Truncate,
    /// Encode it in windows of 75 tokens (each with its own BOS/EOS, padded) and concatenate
    /// the windows' states along the tokens; the pooled embedding is the first window's. This is
    /// AUTOMATIC1111's convention.
    Chunk,
}

impl std::str::FromStr for LongPrompt {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "truncate" => Ok(LongPrompt::Truncate),
            "chunk" => Ok(LongPrompt::Chunk),
            other => Err(Error::Input {
                name: "long prompt".into(),
                message: format!("`{other}` is not one of truncate, chunk"),
            }),
        }
    }
}

impl std::fmt::Display for LongPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LongPrompt::Truncate => "truncate",
            LongPrompt::Chunk => "chunk",
        })
    }
}

/// How many windows `prompt` takes in `mode` (the most any of the tokenizers needs).
pub fn windows_needed(encoders: &[&TextEncoder], prompt: &str, mode: LongPrompt) -> Result<usize> {
    if mode == LongPrompt::Truncate {
        return Ok(1);
    }
    let mut windows = 1;
    for encoder in encoders {
        let tokens = encoder.tokenizer.encode_raw(prompt).map_err(prompt_error)?.len();
        windows = windows.max(tokens.div_ceil(encoder.tokenizer.max_len() - 2));
    }
    Ok(windows)
}

fn prompt_error(error: crate::tokenizer::TokenizerError) -> Error {
    Error::Input { name: "prompt".into(), message: error.to_string() }
}

/// The token windows of `prompt` for one tokenizer: one cut window, or `windows` chunks.
fn token_windows(
    encoder: &TextEncoder,
    prompt: &str,
    mode: LongPrompt,
    windows: usize,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<Vec<i64>>> {
    let tokenizer = &encoder.tokenizer;
    let window = tokenizer.max_len();
    if mode == LongPrompt::Truncate {
        let encoded = tokenizer.encode(prompt).map_err(prompt_error)?;
        if encoded.untruncated_len > window {
            warn(format!(
                "the prompt has {} tokens; CLIP takes {window}, so the last {} were cut",
                encoded.untruncated_len,
                encoded.untruncated_len - window
            ));
        }
        return Ok(vec![encoded.ids]);
    }
    let tokens = tokenizer.encode_raw(prompt).map_err(prompt_error)?;
    let mut chunks: Vec<&[u32]> = tokens.chunks(window - 2).collect();
    chunks.resize(windows.max(chunks.len()), &[]);
    Ok(chunks.into_iter().map(|chunk| tokenizer.window(chunk)).collect())
}

/// Encodes `prompt` with each encoder (CLIP-L then OpenCLIP-bigG for the base; bigG alone for
/// the refiner). The last encoder's projection gives the pooled embedding. In
/// [`LongPrompt::Chunk`] mode the prompt fills at least `windows` windows, so that a prompt and
/// its negative get contexts of the same length.
pub fn encode_prompt(
    encoders: &[&TextEncoder],
    prompt: &str,
    mode: LongPrompt,
    windows: usize,
    device: &Device,
    warn: &mut dyn FnMut(String),
) -> Result<PromptEmbeds> {
    let mut contexts = Vec::with_capacity(encoders.len());
    let mut pooled = None;
    for encoder in encoders {
        let ids = token_windows(encoder, prompt, mode, windows, warn)?;
        let out = encoder.model.forward(&ids, device)?;
        let [count, tokens, width] = out.penultimate.dims();
        contexts.push(out.penultimate.reshape([1, count * tokens, width]));
        pooled = out.text_embeds.map(|embeds| embeds.narrow(0, 0, 1)).or(pooled);
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

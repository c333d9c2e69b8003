//! transformers' `CLIPTextModel` (SDXL's CLIP ViT-L/14) and `CLIPTextModelWithProjection`
//! (OpenCLIP ViT-bigG/14): causal transformer over learned positions. SDXL conditions on the
//! penultimate layer's hidden states and on encoder 2's projected EOS token.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use super::attention::multi_head;
use super::config::{
    MAX_LAYERS, MAX_MLP_WIDTH, MAX_POSITIONS, MAX_VOCAB, MAX_WIDTH, require_divides, require_finite, require_within,
};
use super::linear::{Linear, LinearConfig};
use crate::error::{Error, Result};

/// transformers' `CLIPTextConfig`. Every key that changes the math is read; the rest change no
/// value computed at inference (`dropout`, `attention_dropout`, `initializer_range`,
/// `initializer_factor`, `pad_token_id`, `bos_token_id`, `torch_dtype`). Every count and size is
/// checked to lie within bounds (see [`ClipTextConfig::validate`]).
#[derive(Clone, Debug, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Present for `CLIPTextModelWithProjection`.
    #[serde(default)]
    pub projection_dim: Option<usize>,
    #[serde(default = "default_eos")]
    pub eos_token_id: i64,
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_eos() -> i64 {
    2
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    QuickGelu,
    Gelu,
}

impl ClipTextConfig {
    /// Whether the checkpoint is a `CLIPTextModelWithProjection` (it has `text_projection`).
    pub fn with_projection(&self) -> bool {
        self.architectures
            .as_ref()
            .is_some_and(|names| names.iter().any(|name| name == "CLIPTextModelWithProjection"))
    }

    fn activation(&self) -> Result<Activation> {
        match self.hidden_act.as_str() {
            "quick_gelu" => Ok(Activation::QuickGelu),
            "gelu" => Ok(Activation::Gelu),
            other => Err(Error::Unsupported(format!("CLIP hidden_act `{other}`"))),
        }
    }

    /// Checks the config describes a network this port builds, with every count and size within
    /// bounds; [`ClipTextConfig::init`] checks the same first.
    pub fn validate(&self) -> Result<()> {
        self.activation()?;
        // SDXL conditions on the penultimate layer, so there must be one before the last.
        require_within("num_hidden_layers", self.num_hidden_layers, 2..=MAX_LAYERS)?;
        require_within("hidden_size", self.hidden_size, 1..=MAX_WIDTH)?;
        require_within("num_attention_heads", self.num_attention_heads, 1..=MAX_WIDTH)?;
        require_divides("num_attention_heads", self.num_attention_heads, "hidden_size", self.hidden_size)?;
        require_within("intermediate_size", self.intermediate_size, 1..=MAX_MLP_WIDTH)?;
        require_within("vocab_size", self.vocab_size, 1..=MAX_VOCAB)?;
        require_within("max_position_embeddings", self.max_position_embeddings, 1..=MAX_POSITIONS)?;
        require_finite("layer_norm_eps", self.layer_norm_eps, 0.0)?;
        match (self.with_projection(), self.projection_dim) {
            (true, Some(dim)) => require_within("projection_dim", dim, 1..=MAX_WIDTH),
            (true, None) => Err(Error::Unsupported("CLIPTextModelWithProjection without projection_dim".into())),
            (false, _) => Ok(()),
        }
    }

    pub fn init(&self, device: &Device) -> Result<ClipTextModel> {
        self.validate()?;
        let activation = self.activation()?;
        let projection = match (self.with_projection(), self.projection_dim) {
            (true, Some(dim)) => Some(LinearConfig::new(self.hidden_size, dim).with_bias(false).init(device)),
            _ => None,
        };
        let linear = |input, output| LinearConfig::new(input, output).init(device);
        let norm = || LayerNormConfig::new(self.hidden_size).with_epsilon(self.layer_norm_eps).init(device);
        let width = self.hidden_size;
        Ok(ClipTextModel {
            text_model: ClipTextTransformer {
                embeddings: ClipEmbeddings {
                    token_embedding: EmbeddingConfig::new(self.vocab_size, width).init(device),
                    position_embedding: EmbeddingConfig::new(self.max_position_embeddings, width).init(device),
                },
                encoder: ClipEncoder {
                    layers: (0..self.num_hidden_layers)
                        .map(|_| ClipEncoderLayer {
                            self_attn: ClipAttention {
                                q_proj: linear(width, width),
                                k_proj: linear(width, width),
                                v_proj: linear(width, width),
                                out_proj: linear(width, width),
                                heads: self.num_attention_heads,
                            },
                            layer_norm1: norm(),
                            mlp: ClipMlp {
                                fc1: linear(width, self.intermediate_size),
                                fc2: linear(self.intermediate_size, width),
                                quick_gelu: activation == Activation::QuickGelu,
                            },
                            layer_norm2: norm(),
                        })
                        .collect(),
                },
                final_layer_norm: norm(),
            },
            text_projection: projection,
            vocab_size: self.vocab_size,
            eos_token_id: self.eos_token_id,
        })
    }
}

#[derive(Module, Debug)]
pub struct ClipAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub heads: usize,
}

impl ClipAttention {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (q, k, v) = (self.q_proj.forward(x.clone()), self.k_proj.forward(x.clone()), self.v_proj.forward(x));
        self.out_proj.forward(multi_head(q, k, v, self.heads, true))
    }
}

#[derive(Module, Debug)]
pub struct ClipMlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub quick_gelu: bool,
}

impl ClipMlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.fc1.forward(x);
        let h = if self.quick_gelu { h.clone() * sigmoid(h * 1.702) } else { gelu(h) };
        self.fc2.forward(h)
    }
}

#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    pub self_attn: ClipAttention,
    pub layer_norm1: LayerNorm,
    pub mlp: ClipMlp,
    pub layer_norm2: LayerNorm,
}

impl ClipEncoderLayer {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.self_attn.forward(self.layer_norm1.forward(x.clone())) + x;
        self.mlp.forward(self.layer_norm2.forward(x.clone())) + x
    }
}

#[derive(Module, Debug)]
pub struct ClipEmbeddings {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
}

#[derive(Module, Debug)]
pub struct ClipEncoder {
    pub layers: Vec<ClipEncoderLayer>,
}

#[derive(Module, Debug)]
pub struct ClipTextTransformer {
    pub embeddings: ClipEmbeddings,
    pub encoder: ClipEncoder,
    pub final_layer_norm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct ClipTextModel {
    pub text_model: ClipTextTransformer,
    pub text_projection: Option<Linear>,
    pub vocab_size: usize,
    pub eos_token_id: i64,
}

/// What SDXL takes from a text encoder.
pub struct ClipOutput {
    /// `hidden_states[-2]`: the penultimate layer's output, before the final layer norm.
    pub penultimate: Tensor<3>,
    /// `text_embeds`: the final-layer-normed EOS token through `text_projection`
    /// (`CLIPTextModelWithProjection` only).
    pub text_embeds: Option<Tensor<2>>,
}

/// Checkpoint entries that are buffers, not parameters (older transformers saved them).
pub const BUFFERS: &[&str] = &["text_model.embeddings.position_ids"];

impl ClipTextModel {
    /// Encodes token windows (one `Vec` of equal length per prompt).
    pub fn forward(&self, input_ids: &[Vec<i64>], device: &Device) -> Result<ClipOutput> {
        let batch = input_ids.len();
        let tokens = input_ids.first().map_or(0, Vec::len);
        let max_positions = self.text_model.embeddings.position_embedding.weight.shape()[0];
        if batch == 0 || tokens == 0 || tokens > max_positions || input_ids.iter().any(|ids| ids.len() != tokens) {
            return Err(Error::Input {
                name: "input_ids".into(),
                message: format!("expected {batch} windows of equal length 1..={max_positions}"),
            });
        }
        if let Some(id) = input_ids.iter().flatten().find(|&&id| id < 0 || id as usize >= self.vocab_size) {
            return Err(Error::Input {
                name: "input_ids".into(),
                message: format!("token id {id} outside the vocabulary of {}", self.vocab_size),
            });
        }
        let flat: Vec<i64> = input_ids.iter().flatten().copied().collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, tokens]), device);
        let positions = Tensor::<1, Int>::arange(0..tokens as i64, device).unsqueeze::<2>().repeat_dim(0, batch);
        let embeddings = &self.text_model.embeddings;
        // The token table may be kept q8/q4 on the GPU: only the prompt's rows are expanded.
        let tokens = crate::kernels::embedding::lookup(&embeddings.token_embedding.weight.val(), ids);
        let mut x = tokens + embeddings.position_embedding.forward(positions);

        let layers = &self.text_model.encoder.layers;
        let (last, before_last) = layers.split_last().expect("at least two layers (checked at init)");
        for layer in before_last {
            x = layer.forward(x);
        }
        let text_embeds = self.text_projection.as_ref().map(|projection| {
            let last_hidden = self.text_model.final_layer_norm.forward(last.forward(x.clone()));
            let eos: Vec<Tensor<2>> = input_ids
                .iter()
                .enumerate()
                .map(|(b, ids)| {
                    let position = self.eos_position(ids);
                    last_hidden.clone().slice([b..b + 1, position..position + 1]).reshape([1, last_hidden.dims()[2]])
                })
                .collect();
            projection.forward(Tensor::cat(eos, 0))
        });
        Ok(ClipOutput { penultimate: x, text_embeds })
    }

    /// Where transformers pools: with the legacy `eos_token_id` 2 the highest id (the first
    /// `<|endoftext|>`), otherwise the first occurrence of `eos_token_id`.
    fn eos_position(&self, ids: &[i64]) -> usize {
        let position = if self.eos_token_id == 2 {
            let max = ids.iter().copied().max().unwrap_or_default();
            ids.iter().position(|&id| id == max)
        } else {
            ids.iter().position(|&id| id == self.eos_token_id)
        };
        position.unwrap_or(0)
    }
}

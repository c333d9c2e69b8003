//! diffusers `UNet2DConditionModel` for the SDXL family: text-time additional conditioning,
//! linear-projection transformers, per-block depth and heads.

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};
use serde::Deserialize;

use super::config::{PerBlock, require};
use super::embeddings::{TimestepEmbedding, timestep_sinusoids};
use super::conv::{Conv2d, conv3x3};
use super::resnet::group_norm;
use super::unet_blocks::{AttentionSettings, BlockSettings, DownBlock, MidBlock, UpBlock};
use crate::error::{Error, Result};

/// The keys of diffusers' `UNet2DConditionModel` config that SDXL uses; keys this port does
/// not implement are accepted only at their default values (see [`UNetConfig::validate`]).
#[derive(Clone, Debug, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default = "default_mid_block")]
    pub mid_block_type: Option<String>,
    pub layers_per_block: PerBlock,
    #[serde(default = "one_per_block")]
    pub transformer_layers_per_block: PerBlock,
    pub attention_head_dim: PerBlock,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    pub cross_attention_dim: usize,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default)]
    pub use_linear_projection: bool,
    pub addition_embed_type: Option<String>,
    pub addition_time_embed_dim: Option<usize>,
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub encoder_hid_dim_type: Option<String>,
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    #[serde(default = "default_time_embedding_type")]
    pub time_embedding_type: String,
    #[serde(default = "default_resnet_shift")]
    pub resnet_time_scale_shift: String,
    #[serde(default = "default_act")]
    pub act_fn: String,
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<serde_json::Value>,
    #[serde(default)]
    pub only_cross_attention: serde_json::Value,
    #[serde(default)]
    pub dual_cross_attention: bool,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default = "default_kernel")]
    pub conv_in_kernel: usize,
    #[serde(default = "default_kernel")]
    pub conv_out_kernel: usize,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default)]
    pub timestep_post_act: Option<String>,
    #[serde(default = "default_scale")]
    pub resnet_out_scale_factor: f64,
    #[serde(default = "default_scale")]
    pub mid_block_scale_factor: f64,
}

fn default_mid_block() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}
fn one_per_block() -> PerBlock {
    PerBlock::All(1)
}
fn default_groups() -> usize {
    32
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_time_embedding_type() -> String {
    "positional".into()
}
fn default_resnet_shift() -> String {
    "default".into()
}
fn default_act() -> String {
    "silu".into()
}
fn default_kernel() -> usize {
    3
}
fn default_scale() -> f64 {
    1.0
}


/// The config resolved per block, as the network is built.
struct Plan {
    heads: Vec<usize>,
    layers: Vec<usize>,
    transformer_layers: Vec<usize>,
    cross_attention: Vec<bool>,
    addition_time_embed_dim: usize,
    projection_dim: usize,
}

impl UNetConfig {
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::Unsupported(format!("UNet config: {e}")))
    }

    /// Checks the config describes a network this port builds, and resolves it per block.
    fn plan(&self) -> Result<Plan> {
        let blocks = self.block_out_channels.len();
        if blocks == 0 || self.down_block_types.len() != blocks || self.up_block_types.len() != blocks {
            return Err(Error::Unsupported(format!(
                "UNet with {blocks} block_out_channels, {} down and {} up block types",
                self.down_block_types.len(),
                self.up_block_types.len()
            )));
        }
        let cross_attention = self
            .down_block_types
            .iter()
            .map(|kind| match kind.as_str() {
                "CrossAttnDownBlock2D" => Ok(true),
                "DownBlock2D" => Ok(false),
                other => Err(Error::Unsupported(format!("down block type `{other}`"))),
            })
            .collect::<Result<Vec<_>>>()?;
        for (up, cross) in self.up_block_types.iter().zip(cross_attention.iter().rev()) {
            let expected = if *cross { "CrossAttnUpBlock2D" } else { "UpBlock2D" };
            if up != expected {
                return Err(Error::Unsupported(format!(
                    "up block type `{up}` where the mirrored down block needs `{expected}`"
                )));
            }
        }
        require("mid_block_type", &self.mid_block_type.as_deref(), &Some("UNetMidBlock2DCrossAttn"))?;
        require("use_linear_projection", &self.use_linear_projection, &true)?;
        require("addition_embed_type", &self.addition_embed_type.as_deref(), &Some("text_time"))?;
        require("class_embed_type", &self.class_embed_type, &None)?;
        require("encoder_hid_dim_type", &self.encoder_hid_dim_type, &None)?;
        require("time_embedding_dim", &self.time_embedding_dim, &None)?;
        require("time_embedding_type", &self.time_embedding_type.as_str(), &"positional")?;
        require("resnet_time_scale_shift", &self.resnet_time_scale_shift.as_str(), &"default")?;
        require("act_fn", &self.act_fn.as_str(), &"silu")?;
        require("reverse_transformer_layers_per_block", &self.reverse_transformer_layers_per_block, &None)?;
        if !matches!(self.only_cross_attention, serde_json::Value::Null | serde_json::Value::Bool(false)) {
            return Err(Error::Unsupported(format!("`only_cross_attention` = {}", self.only_cross_attention)));
        }
        require("dual_cross_attention", &self.dual_cross_attention, &false)?;
        require("center_input_sample", &self.center_input_sample, &false)?;
        require("conv_in_kernel", &self.conv_in_kernel, &3)?;
        require("conv_out_kernel", &self.conv_out_kernel, &3)?;
        require("time_cond_proj_dim", &self.time_cond_proj_dim, &None)?;
        require("timestep_post_act", &self.timestep_post_act, &None)?;
        require("resnet_out_scale_factor", &self.resnet_out_scale_factor, &1.0)?;
        require("mid_block_scale_factor", &self.mid_block_scale_factor, &1.0)?;
        let (Some(addition_time_embed_dim), Some(projection_dim)) =
            (self.addition_time_embed_dim, self.projection_class_embeddings_input_dim)
        else {
            return Err(Error::Unsupported(
                "text_time conditioning needs addition_time_embed_dim and projection_class_embeddings_input_dim".into(),
            ));
        };
        // diffusers reads `attention_head_dim` as the head count unless `num_attention_heads` is set.
        let heads = match &self.num_attention_heads {
            Some(heads) => heads.resolve("num_attention_heads", blocks)?,
            None => self.attention_head_dim.resolve("attention_head_dim", blocks)?,
        };
        for (channels, heads) in self.block_out_channels.iter().zip(&heads) {
            if *heads == 0 || channels % heads != 0 || channels % self.norm_num_groups != 0 {
                return Err(Error::Unsupported(format!(
                    "{channels} channels with {heads} heads and {} groups",
                    self.norm_num_groups
                )));
            }
        }
        Ok(Plan {
            heads,
            layers: self.layers_per_block.resolve("layers_per_block", blocks)?,
            transformer_layers: self
                .transformer_layers_per_block
                .resolve("transformer_layers_per_block", blocks)?,
            cross_attention,
            addition_time_embed_dim,
            projection_dim,
        })
    }

    pub fn init(&self, device: &Device) -> Result<UNet2DConditionModel> {
        let plan = self.plan()?;
        let channels = &self.block_out_channels;
        let blocks = channels.len();
        let time_dim = channels[0] * 4;
        let settings = BlockSettings {
            time_dim,
            context_dim: self.cross_attention_dim,
            groups: self.norm_num_groups,
            eps: self.norm_eps,
        };
        let attention = |block: usize| {
            plan.cross_attention[block].then(|| AttentionSettings {
                layers: plan.transformer_layers[block],
                heads: plan.heads[block],
            })
        };
        let down_blocks = (0..blocks)
            .map(|i| {
                let channels_in = if i == 0 { channels[0] } else { channels[i - 1] };
                DownBlock::new(&settings, attention(i), channels_in, channels[i], plan.layers[i], i + 1 < blocks, device)
            })
            .collect();
        let mid_attention = AttentionSettings {
            layers: plan.transformer_layers[blocks - 1],
            heads: plan.heads[blocks - 1],
        };
        let up_blocks = (0..blocks)
            .map(|i| {
                let level = blocks - 1 - i; // the down block this up block mirrors
                let channels_prev = channels[(level + 1).min(blocks - 1)];
                let channels_skip_last = if level == 0 { channels[0] } else { channels[level - 1] };
                UpBlock::new(
                    &settings,
                    attention(level),
                    channels_prev,
                    channels[level],
                    channels_skip_last,
                    plan.layers[level] + 1,
                    i + 1 < blocks,
                    device,
                )
            })
            .collect();
        Ok(UNet2DConditionModel {
            conv_in: conv3x3(self.in_channels, channels[0], device),
            time_embedding: TimestepEmbedding::new(channels[0], time_dim, device),
            add_embedding: TimestepEmbedding::new(plan.projection_dim, time_dim, device),
            down_blocks,
            mid_block: MidBlock::new(&settings, mid_attention, channels[blocks - 1], device),
            up_blocks,
            conv_norm_out: group_norm(self.norm_num_groups, channels[0], self.norm_eps, device),
            conv_out: conv3x3(channels[0], self.out_channels, device),
            time_proj_dim: channels[0],
            addition_time_embed_dim: plan.addition_time_embed_dim,
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
        })
    }
}

#[derive(Module, Debug)]
pub struct UNet2DConditionModel {
    pub conv_in: Conv2d,
    pub time_embedding: TimestepEmbedding,
    pub add_embedding: TimestepEmbedding,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: MidBlock,
    pub up_blocks: Vec<UpBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
    pub time_proj_dim: usize,
    pub addition_time_embed_dim: usize,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
}

impl UNet2DConditionModel {
    /// The conditioning vector every resnet receives: the timestep's embedding plus the
    /// embedding of the pooled text (`text_embeds` [B, P]) and the micro-conditioning
    /// (`time_ids` [B, N], each id as `addition_time_embed_dim` sinusoids).
    pub fn embedding(&self, timestep: Tensor<1>, text_embeds: Tensor<2>, time_ids: Tensor<2>) -> Tensor<2> {
        let time = timestep_sinusoids(timestep, self.time_proj_dim, self.flip_sin_to_cos, self.freq_shift);
        let [batch, ids] = time_ids.dims();
        let time_ids = timestep_sinusoids(
            time_ids.reshape([batch * ids]),
            self.addition_time_embed_dim,
            self.flip_sin_to_cos,
            self.freq_shift,
        )
        .reshape([batch, ids * self.addition_time_embed_dim]);
        self.time_embedding.forward(time)
            + self.add_embedding.forward(Tensor::cat(vec![text_embeds, time_ids], 1))
    }

    /// The predicted noise for `sample` [B, C, H, W] at `timestep` [B], attending to
    /// `context` [B, 77, cross_attention_dim].
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timestep: Tensor<1>,
        context: Tensor<3>,
        text_embeds: Tensor<2>,
        time_ids: Tensor<2>,
    ) -> Tensor<4> {
        let emb = self.embedding(timestep, text_embeds, time_ids);
        let mut x = self.conv_in.forward(sample);
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            let (out, block_skips) = block.forward(x, &emb, &context);
            x = out;
            skips.extend(block_skips);
        }
        x = self.mid_block.forward(x, &emb, &context);
        for block in &self.up_blocks {
            x = block.forward(x, &mut skips, &emb, &context);
        }
        self.conv_out.forward(silu(self.conv_norm_out.forward(x)))
    }
}

//! diffusers `UNet2DConditionModel` for the SDXL family: text-time additional conditioning,
//! linear-projection transformers, per-block depth and heads.

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::tensor::{Device, Tensor};
use serde::Deserialize;

use super::config::{MAX_BLOCKS, MAX_LAYERS, MAX_WIDTH, PerBlock, require, require_divides, require_finite, require_within};
use super::embeddings::{TimestepEmbedding, timestep_sinusoids};
use super::conv::{Conv2d, conv3x3};
use super::resnet::{ResnetBlock2D, group_norm};
use super::transformer::Transformer2DModel;
use super::unet_blocks::{AttentionSettings, BlockSettings, DownBlock, MidBlock, UpBlock};
use crate::error::{Error, Result};
use crate::kernels::group_norm::norm_silu;

/// The keys of diffusers' `UNet2DConditionModel` config (its `__init__` arguments); keys this
/// port does not implement are accepted only at their default values, and every count or size
/// only within bounds (see [`UNetConfig::validate`]). Not read: `sample_size` (the default image
/// size, which changes no value computed) and `_class_name`/`_diffusers_version`; `dropout` and
/// `upcast_attention` are read but change nothing here (see each).
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
    /// The UNet's downsamplers pad 1 on every side; diffusers pads asymmetrically otherwise.
    #[serde(default = "default_downsample_padding")]
    pub downsample_padding: usize,
    /// Inert at inference; checked to be a probability, as torch's `nn.Dropout` does.
    #[serde(default)]
    pub dropout: f64,
    /// Set without `encoder_hid_dim_type`, diffusers projects the context (`text_proj`).
    #[serde(default)]
    pub encoder_hid_dim: Option<usize>,
    /// A class-label embedding added to the time embedding.
    #[serde(default)]
    pub num_class_embeds: Option<usize>,
    #[serde(default)]
    pub class_embeddings_concat: bool,
    /// diffusers: attention scores in f32 even in an f16 model. Any value is accepted: this port
    /// computes every activation, attention included, in f32 (f16 or quantized weights are
    /// expanded to f32 for the computation).
    #[serde(default)]
    pub upcast_attention: Option<bool>,
    /// The resnets skip the SiLU before their time-embedding projection.
    #[serde(default)]
    pub resnet_skip_time_act: bool,
    #[serde(default)]
    pub time_embedding_act_fn: Option<String>,
    /// `gated` adds GLIGEN layers to every transformer block.
    #[serde(default = "default_attention_type")]
    pub attention_type: String,
    /// `null` takes `only_cross_attention`'s value (false).
    #[serde(default)]
    pub mid_block_only_cross_attention: Option<bool>,
    #[serde(default)]
    pub cross_attention_norm: Option<String>,
    /// Heads of the `text` addition embedding (diffusers reads it for no other type).
    #[serde(default = "default_addition_heads")]
    pub addition_embed_type_num_heads: usize,
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
fn default_downsample_padding() -> usize {
    1
}
fn default_attention_type() -> String {
    "default".into()
}
fn default_addition_heads() -> usize {
    64
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

    /// Checks the config describes a network this port builds, with every count and size
    /// within bounds; [`UNetConfig::init`] checks the same first.
    pub fn validate(&self) -> Result<()> {
        self.plan().map(drop)
    }

    /// Checks the config describes a network this port builds, and resolves it per block.
    fn plan(&self) -> Result<Plan> {
        let blocks = self.block_out_channels.len();
        require_within("block_out_channels (entries)", blocks, 1..=MAX_BLOCKS)?;
        if self.down_block_types.len() != blocks || self.up_block_types.len() != blocks {
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
        self.check_defaults()?;
        let (Some(addition_time_embed_dim), Some(projection_dim)) =
            (self.addition_time_embed_dim, self.projection_class_embeddings_input_dim)
        else {
            return Err(Error::Unsupported(
                "text_time conditioning needs addition_time_embed_dim and projection_class_embeddings_input_dim".into(),
            ));
        };

        // Sizes, before anything divides by them or builds that many modules.
        for (key, value) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("cross_attention_dim", self.cross_attention_dim),
            ("norm_num_groups", self.norm_num_groups),
            ("addition_time_embed_dim", addition_time_embed_dim),
            ("projection_class_embeddings_input_dim", projection_dim),
        ] {
            require_within(key, value, 1..=MAX_WIDTH)?;
        }
        for (i, &channels) in self.block_out_channels.iter().enumerate() {
            require_within(&format!("block_out_channels[{i}]"), channels, 1..=MAX_WIDTH)?;
            require_divides("norm_num_groups", self.norm_num_groups, &format!("block_out_channels[{i}]"), channels)?;
        }
        require_finite("norm_eps", self.norm_eps, 0.0)?;
        // The sinusoids divide by `dim / 2 - freq_shift` (time: block_out_channels[0]; ids:
        // addition_time_embed_dim): the shift stays below every half width that has frequencies.
        require_finite("freq_shift", self.freq_shift, 0.0)?;
        for half in [self.block_out_channels[0] / 2, addition_time_embed_dim / 2] {
            if half > 0 && self.freq_shift >= half as f64 {
                return Err(Error::Unsupported(format!(
                    "`freq_shift` = {} (expected below {half}, half the sinusoids' width)",
                    self.freq_shift
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.dropout) {
            return Err(Error::Unsupported(format!("`dropout` = {} (expected 0..=1)", self.dropout)));
        }

        // diffusers reads `attention_head_dim` as the head count unless `num_attention_heads` is set.
        let head_dims = self.attention_head_dim.resolve("attention_head_dim", blocks)?;
        let (heads_key, heads) = match &self.num_attention_heads {
            Some(heads) => ("num_attention_heads", heads.resolve("num_attention_heads", blocks)?),
            None => ("attention_head_dim", head_dims.clone()),
        };
        let layers = self.layers_per_block.resolve("layers_per_block", blocks)?;
        let transformer_layers =
            self.transformer_layers_per_block.resolve("transformer_layers_per_block", blocks)?;
        for (i, &channels) in self.block_out_channels.iter().enumerate() {
            require_within(&format!("attention_head_dim[{i}]"), head_dims[i], 1..=MAX_WIDTH)?;
            require_divides(&format!("{heads_key}[{i}]"), heads[i], &format!("block_out_channels[{i}]"), channels)?;
            require_within(&format!("layers_per_block[{i}]"), layers[i], 1..=MAX_LAYERS)?;
            // 0 is a transformer of no layers (diffusers builds it too).
            require_within(&format!("transformer_layers_per_block[{i}]"), transformer_layers[i], 0..=MAX_LAYERS)?;
        }
        Ok(Plan { heads, layers, transformer_layers, cross_attention, addition_time_embed_dim, projection_dim })
    }

    /// The keys this port does not implement, each at its default (diffusers' `__init__`
    /// default, or the one value SDXL uses).
    fn check_defaults(&self) -> Result<()> {
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
        require("downsample_padding", &self.downsample_padding, &1)?;
        require("encoder_hid_dim", &self.encoder_hid_dim, &None)?;
        require("num_class_embeds", &self.num_class_embeds, &None)?;
        require("class_embeddings_concat", &self.class_embeddings_concat, &false)?;
        require("resnet_skip_time_act", &self.resnet_skip_time_act, &false)?;
        require("time_embedding_act_fn", &self.time_embedding_act_fn, &None)?;
        require("attention_type", &self.attention_type.as_str(), &"default")?;
        require("mid_block_only_cross_attention", &self.mid_block_only_cross_attention.unwrap_or(false), &false)?;
        require("cross_attention_norm", &self.cross_attention_norm, &None)?;
        require("addition_embed_type_num_heads", &self.addition_embed_type_num_heads, &64)?;
        Ok(())
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
    /// How many times the UNet halves the latents: their sides must be multiples of 2^this.
    pub fn downsamplings(&self) -> usize {
        self.down_blocks.iter().filter(|block| !block.downsamplers.is_empty()).count()
    }

    /// The widest activation at each resolution level of a pass, in values per pixel of that
    /// level (level 0 at the latents' resolution, each next level a quarter of the pixels): every
    /// resnet's input and output (an up block's inputs concatenate a skip connection) and every
    /// upsampler's output (one level up). So a pass over latents of `p` pixels at batch `b`
    /// holds no such activation of more than `b · max over l of widths[l] · p / 4^l` values;
    /// the feed-forwards' projections ([`Self::feed_forward_widths_per_level`]) and attention
    /// scores (`attention::MAX_SCORE_BYTES`) are bounded on their own. Reads shapes only, so a
    /// module whose weights are not loaded allocates nothing for it.
    pub fn widths_per_level(&self) -> Vec<u64> {
        let resnets = |resnets: &[ResnetBlock2D]| -> Vec<usize> {
            resnets.iter().flat_map(|r| [r.conv1.channels_in, r.conv1.weight.lazy_shape()[0]]).collect()
        };
        self.level_widths(resnets, |_| Vec::new(), true)
    }

    /// Every transformer's GEGLU projection (twice its feed-forward width per token) at each
    /// level, in values per pixel as [`Self::widths_per_level`]: the widest activation of a
    /// pass where it is whole, which it is only up to `transformer::FEED_FORWARD_CHUNK_BYTES`.
    pub fn feed_forward_widths_per_level(&self) -> Vec<u64> {
        let geglus = |attentions: &[Transformer2DModel]| -> Vec<usize> {
            attentions.iter().flat_map(|a| a.transformer_blocks.iter().map(|b| b.ff.net.0.proj.weight.lazy_shape()[1])).collect()
        };
        self.level_widths(|_| Vec::new(), geglus, false)
    }

    /// The widest of `resnets`' and `attentions`' widths at each level the pass visits (with
    /// `conv_in`'s and the upsamplers' outputs where `with_convs`).
    fn level_widths(
        &self,
        resnets: impl Fn(&[ResnetBlock2D]) -> Vec<usize>,
        attentions: impl Fn(&[Transformer2DModel]) -> Vec<usize>,
        with_convs: bool,
    ) -> Vec<u64> {
        let mut widths = vec![0];
        let mut widen = |level: usize, width: usize| {
            if widths.len() <= level {
                widths.resize(level + 1, 0);
            }
            widths[level] = widths[level].max(width as u64);
        };
        let mut level = 0;
        if with_convs {
            widen(0, self.conv_in.weight.lazy_shape()[0]);
        }
        for block in &self.down_blocks {
            for width in resnets(&block.resnets).into_iter().chain(attentions(&block.attentions)) {
                widen(level, width);
            }
            level += block.downsamplers.len();
            widen(level, 0);
        }
        for width in resnets(&self.mid_block.resnets).into_iter().chain(attentions(&self.mid_block.attentions)) {
            widen(level, width);
        }
        for block in &self.up_blocks {
            for width in resnets(&block.resnets).into_iter().chain(attentions(&block.attentions)) {
                widen(level, width);
            }
            for upsampler in &block.upsamplers {
                level = level.saturating_sub(1);
                if with_convs {
                    widen(level, upsampler.conv.weight.lazy_shape()[0]);
                }
            }
        }
        widths
    }

    /// The skip connections a pass holds when its down path ends, in values per pixel of each
    /// level (as [`Self::widths_per_level`]): `conv_in`'s output, every down resnet's output
    /// (after its transformer) and every downsampler's output, each at its level. The up path
    /// takes them back one per resnet, so until the first up block they are all alive at once.
    pub fn skip_widths_per_level(&self) -> Vec<u64> {
        let mut widths = vec![self.conv_in.weight.lazy_shape()[0] as u64];
        let mut level = 0;
        for block in &self.down_blocks {
            for resnet in &block.resnets {
                widths[level] += resnet.conv1.weight.lazy_shape()[0] as u64;
            }
            for downsampler in &block.downsamplers {
                level += 1;
                if widths.len() <= level {
                    widths.push(0);
                }
                widths[level] += downsampler.conv.weight.lazy_shape()[0] as u64;
            }
        }
        widths
    }

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
        self.conv_out.forward(norm_silu(&self.conv_norm_out, x))
    }
}

//! Stability's single-file SDXL checkpoints (`sd_xl_base_1.0.safetensors`,
//! `sd_xl_refiner_1.0.safetensors`) read as diffusers components: the key mapping diffusers'
//! `from_single_file` applies (diffusers/loaders/single_file_utils.py), as one function from a
//! Stability key to the diffusers key(s) it becomes, and the tensor changes it needs.

// Reads untrusted bytes: no unwrap, expect or unchecked indexing (each allowed case says why).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use burn::tensor::TensorData;

use super::TensorSource;
use super::safetensors::SafetensorsSource;
use crate::error::{Error, Result};

/// The architecture facts the mapping depends on, from the diffusers configs.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The UNet's `layers_per_block`.
    pub unet_layers_per_block: usize,
    /// The VAE's block count (`len(block_out_channels)`): the decoder's blocks run reversed.
    pub vae_blocks: usize,
    /// `conditioner.embedders.N` holding CLIP ViT-L (the base's `text_encoder`; the refiner has none).
    pub clip_l: Option<usize>,
    /// `conditioner.embedders.N` holding OpenCLIP ViT-bigG (`text_encoder_2`).
    pub open_clip: usize,
}

/// How a Stability tensor becomes the diffusers one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    Same,
    /// The VAE attention's 1×1 convs `[c, c, 1, 1]` are diffusers linears `[c, c]`.
    Squeeze,
    /// OpenCLIP's `text_projection` is `x @ P`; diffusers' is a Linear: the transpose.
    Transpose,
    /// One third of OpenCLIP's fused `in_proj_*` (`[3c, …]`, rows q, k, v).
    Third(usize),
}

/// A diffusers parameter and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub component: &'static str,
    pub key: String,
    pub transform: Transform,
}

/// Stability keys that are not parameters of any diffusers component.
fn is_buffer(key: &str) -> bool {
    key.ends_with(".position_ids") || key.ends_with(".logit_scale") || key.ends_with(".attn_mask")
}

/// The diffusers parameter(s) a Stability key holds: none for a known non-parameter, an error
/// for a key outside the mapping.
pub fn to_diffusers(layout: &Layout, key: &str) -> std::result::Result<Vec<Mapped>, String> {
    let unknown = || format!("no diffusers equivalent for single-file tensor {key}");
    if is_buffer(key) {
        return Ok(Vec::new());
    }
    let one = |component, key: String, transform| Ok(vec![Mapped { component, key, transform }]);
    if let Some(rest) = key.strip_prefix("model.diffusion_model.") {
        return unet_key(layout.unet_layers_per_block, rest).map(|k| one("unet", k, Transform::Same)).unwrap_or_else(|| Err(unknown()));
    }
    if let Some(rest) = key.strip_prefix("first_stage_model.") {
        let (mapped, transform) = vae_key(layout.vae_blocks, rest).ok_or_else(unknown)?;
        return one("vae", mapped, transform);
    }
    if let Some(index) = layout.clip_l {
        if let Some(rest) = key.strip_prefix(&format!("conditioner.embedders.{index}.transformer.")) {
            return one("text_encoder", rest.to_string(), Transform::Same);
        }
    }
    if let Some(rest) = key.strip_prefix(&format!("conditioner.embedders.{}.model.", layout.open_clip)) {
        return open_clip_key(rest).ok_or_else(unknown);
    }
    Err(unknown())
}

/// Replaces a leading `from.` path with `to.`.
fn replace_prefix(key: &str, table: &[(&str, &str)]) -> Option<String> {
    table.iter().find_map(|(from, to)| {
        key.strip_prefix(from).filter(|rest| rest.starts_with('.')).map(|rest| format!("{to}{rest}"))
    })
}

/// `a.b.rest` → (a, b, rest) with a and b numbers.
fn two_indices(key: &str) -> Option<(usize, usize, &str)> {
    let mut parts = key.splitn(3, '.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?))
}

const UNET_FIXED: &[(&str, &str)] = &[
    ("time_embed.0", "time_embedding.linear_1"),
    ("time_embed.2", "time_embedding.linear_2"),
    ("label_emb.0.0", "add_embedding.linear_1"),
    ("label_emb.0.2", "add_embedding.linear_2"),
    ("input_blocks.0.0", "conv_in"),
    ("out.0", "conv_norm_out"),
    ("out.2", "conv_out"),
];

const UNET_RESNET: &[(&str, &str)] = &[
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("emb_layers.1", "time_emb_proj"),
    ("skip_connection", "conv_shortcut"),
];

fn unet_key(layers: usize, key: &str) -> Option<String> {
    if let Some(mapped) = replace_prefix(key, UNET_FIXED) {
        return Some(mapped);
    }
    let resnet = |prefix: String, rest: &str| replace_prefix(rest, UNET_RESNET).map(|rest| format!("{prefix}.{rest}"));
    if let Some((i, j, rest)) = key.strip_prefix("input_blocks.").and_then(two_indices) {
        let (block, layer) = ((i.checked_sub(1)?) / (layers + 1), (i - 1) % (layers + 1));
        return match (j, rest.strip_prefix("op.")) {
            (0, Some(param)) => Some(format!("down_blocks.{block}.downsamplers.0.conv.{param}")),
            (0, None) => resnet(format!("down_blocks.{block}.resnets.{layer}"), rest),
            (1, _) => Some(format!("down_blocks.{block}.attentions.{layer}.{rest}")),
            _ => None,
        };
    }
    if let Some((i, j, rest)) = key.strip_prefix("output_blocks.").and_then(two_indices) {
        let (block, layer) = (i / (layers + 1), i % (layers + 1));
        return match (j, rest.strip_prefix("conv.")) {
            (0, _) => resnet(format!("up_blocks.{block}.resnets.{layer}"), rest),
            (1 | 2, Some(param)) => Some(format!("up_blocks.{block}.upsamplers.0.conv.{param}")),
            (1, None) => Some(format!("up_blocks.{block}.attentions.{layer}.{rest}")),
            _ => None,
        };
    }
    let (k, rest) = key.strip_prefix("middle_block.")?.split_once('.')?;
    match k {
        "0" => resnet("mid_block.resnets.0".into(), rest),
        "1" => Some(format!("mid_block.attentions.0.{rest}")),
        "2" => resnet("mid_block.resnets.1".into(), rest),
        _ => None,
    }
}

fn vae_key(blocks: usize, key: &str) -> Option<(String, Transform)> {
    let same = |k: String| Some((k, Transform::Same));
    let (coder, rest) = key.split_once('.')?;
    if !matches!(coder, "encoder" | "decoder") {
        return matches!(coder, "quant_conv" | "post_quant_conv").then(|| (key.to_string(), Transform::Same));
    }
    let resnet = |rest: &str| rest.replace("nin_shortcut", "conv_shortcut");
    if let Some(param) = rest.strip_prefix("norm_out.") {
        return same(format!("{coder}.conv_norm_out.{param}"));
    }
    if rest.starts_with("conv_in.") || rest.starts_with("conv_out.") {
        return same(key.to_string());
    }
    if let Some(rest) = rest.strip_prefix("mid.") {
        let (part, param) = rest.split_once('.')?;
        return match part {
            "block_1" => same(format!("{coder}.mid_block.resnets.0.{}", resnet(param))),
            "block_2" => same(format!("{coder}.mid_block.resnets.1.{}", resnet(param))),
            "attn_1" => {
                let (layer, leaf) = param.split_once('.')?;
                let layer = match layer {
                    "norm" => "group_norm",
                    "q" => "to_q",
                    "k" => "to_k",
                    "v" => "to_v",
                    "proj_out" => "to_out.0",
                    _ => return None,
                };
                let transform = if layer != "group_norm" && leaf == "weight" { Transform::Squeeze } else { Transform::Same };
                Some((format!("{coder}.mid_block.attentions.0.{layer}.{leaf}"), transform))
            }
            _ => None,
        };
    }
    let (direction, rest) = rest.split_once('.')?;
    let (index, rest) = rest.split_once('.')?;
    let index: usize = index.parse().ok()?;
    let (kind, block) = match (coder, direction) {
        ("encoder", "down") => ("down_blocks", index),
        ("decoder", "up") => ("up_blocks", blocks.checked_sub(1)?.checked_sub(index)?),
        _ => return None,
    };
    if let Some(rest) = rest.strip_prefix("block.") {
        let (layer, param) = rest.split_once('.')?;
        return same(format!("{coder}.{kind}.{block}.resnets.{layer}.{}", resnet(param)));
    }
    let sampler = if kind == "down_blocks" { "downsample.conv." } else { "upsample.conv." };
    let param = rest.strip_prefix(sampler)?;
    let samplers = if kind == "down_blocks" { "downsamplers" } else { "upsamplers" };
    same(format!("{coder}.{kind}.{block}.{samplers}.0.conv.{param}"))
}

const OPEN_CLIP_LAYER: &[(&str, &str)] = &[
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    ("attn.out_proj", "self_attn.out_proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
];

fn open_clip_key(key: &str) -> Option<Vec<Mapped>> {
    let one = |key: &str, transform| Some(vec![Mapped { component: "text_encoder_2", key: key.into(), transform }]);
    match key {
        "token_embedding.weight" => return one("text_model.embeddings.token_embedding.weight", Transform::Same),
        "positional_embedding" => return one("text_model.embeddings.position_embedding.weight", Transform::Same),
        "ln_final.weight" => return one("text_model.final_layer_norm.weight", Transform::Same),
        "ln_final.bias" => return one("text_model.final_layer_norm.bias", Transform::Same),
        "text_projection" => return one("text_projection.weight", Transform::Transpose),
        _ => {}
    }
    let (layer, rest) = key.strip_prefix("transformer.resblocks.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let prefix = format!("text_model.encoder.layers.{layer}");
    if let Some(leaf) = rest.strip_prefix("attn.in_proj_") {
        return Some(
            ["q_proj", "k_proj", "v_proj"]
                .iter()
                .enumerate()
                .map(|(third, proj)| Mapped {
                    component: "text_encoder_2",
                    key: format!("{prefix}.self_attn.{proj}.{leaf}"),
                    transform: Transform::Third(third),
                })
                .collect(),
        );
    }
    one(&format!("{prefix}.{}", replace_prefix(rest, OPEN_CLIP_LAYER)?), Transform::Same)
}

/// Applies a transform to f32 data.
pub fn transform(data: TensorData, transform: Transform) -> std::result::Result<TensorData, String> {
    let shape = data.shape().to_vec();
    let values = data.try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    match (transform, &shape[..]) {
        (Transform::Same, _) => Ok(TensorData::new(values, shape)),
        (Transform::Squeeze, [out, inp, 1, 1]) => Ok(TensorData::new(values, vec![*out, *inp])),
        (Transform::Transpose, [rows, cols]) => {
            // Column by column of the [rows, cols] matrix (its rows hold `cols` values each).
            let transposed = (0..*cols).flat_map(|col| values.iter().skip(col).step_by((*cols).max(1)).copied()).collect();
            Ok(TensorData::new(transposed, vec![*cols, *rows]))
        }
        (Transform::Third(third), [rows, rest @ ..]) if rows % 3 == 0 => {
            let per_row: usize = rest.iter().product();
            let part = rows / 3 * per_row;
            let shape: Vec<usize> = std::iter::once(rows / 3).chain(rest.iter().copied()).collect();
            let values: Vec<f32> = values.iter().skip(third * part).take(part).copied().collect();
            if values.len() != part {
                return Err(format!("part {third} of a {shape:?}×3 tensor lies beyond its data"));
            }
            Ok(TensorData::new(values, shape))
        }
        (transform, shape) => Err(format!("cannot apply {transform:?} to shape {shape:?}")),
    }
}

/// One diffusers component's tensors, read from a single-file checkpoint.
pub struct SingleFileComponent<'a> {
    file: &'a SafetensorsSource,
    /// diffusers key → (Stability key, transform).
    keys: BTreeMap<String, (String, Transform)>,
}

/// Splits a single-file checkpoint into its diffusers components; errors name every key the
/// mapping does not know.
pub fn components<'a>(file: &'a SafetensorsSource, layout: &Layout) -> Result<BTreeMap<&'static str, SingleFileComponent<'a>>> {
    let mut components: BTreeMap<&'static str, SingleFileComponent<'a>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for key in file.names() {
        match to_diffusers(layout, &key) {
            Ok(mapped) => {
                for Mapped { component, key: diffusers, transform } in mapped {
                    let entry = components.entry(component).or_insert_with(|| SingleFileComponent { file, keys: BTreeMap::new() });
                    entry.keys.insert(diffusers, (key.clone(), transform));
                }
            }
            Err(_) => unknown.push(key),
        }
    }
    if unknown.is_empty() {
        Ok(components)
    } else {
        Err(Error::model(
            "single-file checkpoint",
            format!(
                "{} tensor(s) with no diffusers equivalent: {}",
                unknown.len(),
                unknown.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ),
        ))
    }
}

impl TensorSource for SingleFileComponent<'_> {
    fn names(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    fn read(&self, name: &str) -> Result<Option<TensorData>> {
        let Some((key, how)) = self.keys.get(name) else {
            return Ok(None);
        };
        let Some(data) = self.file.read(key)? else {
            return Ok(None);
        };
        transform(data, *how).map(Some).map_err(|e| Error::model("single-file checkpoint", format!("tensor {key} → {name}: {e}")))
    }
}

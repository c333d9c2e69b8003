//! A small deterministic graph covering the operations SDXL needs, run on any device so the
//! backends can be compared: conv2d 3×3 (padding 1, and stride 2), group norm, layer norm,
//! linear, softmax attention, GELU (erf), SiLU, nearest 2× upsample and concat.
//!
//! Inputs and weights come from a formula (a sine of the element index), not from an RNG, so
//! every backend and platform sees the same numbers.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    GroupNorm, GroupNormConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::activation::{gelu, silu, softmax};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, ExecutionError, Shape, Tensor, TensorData};

const CHANNELS: usize = 8;
const HEADS: usize = 2;

/// One named intermediate result of the graph, flattened.
pub struct Stage {
    pub name: &'static str,
    pub values: Vec<f32>,
}

/// `n` values `scale · sin(0.37·i + seed)`.
fn formula(n: usize, seed: f32, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| scale * (0.37 * i as f32 + seed).sin())
        .collect()
}

fn tensor<const D: usize>(shape: [usize; D], seed: f32, scale: f32, device: &Device) -> Tensor<D> {
    let n = shape.iter().product();
    Tensor::from_data(
        TensorData::new(formula(n, seed, scale), Shape::new(shape)),
        device,
    )
}

fn param<const D: usize>(
    shape: [usize; D],
    seed: f32,
    scale: f32,
    device: &Device,
) -> Param<Tensor<D>> {
    Param::from_tensor(tensor(shape, seed, scale, device))
}

fn conv3x3(channels: [usize; 2], stride: usize, seed: f32, device: &Device) -> Conv2d {
    let mut conv = Conv2dConfig::new(channels, [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_initializer(Initializer::Zeros)
        .init(device);
    let scale = 1.0 / (channels[0] as f32 * 9.0).sqrt();
    conv.weight = param([channels[1], channels[0], 3, 3], seed, scale, device);
    conv.bias = Some(param([channels[1]], seed + 0.5, 0.1, device));
    conv
}

fn linear(d_input: usize, d_output: usize, seed: f32, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d_input, d_output)
        .with_initializer(Initializer::Zeros)
        .init(device);
    let scale = 1.0 / (d_input as f32).sqrt();
    linear.weight = param([d_input, d_output], seed, scale, device);
    linear.bias = Some(param([d_output], seed + 0.5, 0.1, device));
    linear
}

fn group_norm(groups: usize, channels: usize, seed: f32, device: &Device) -> GroupNorm {
    let mut norm = GroupNormConfig::new(groups, channels).init(device);
    norm.gamma = Some(Param::from_tensor(
        tensor([channels], seed, 0.2, device).add_scalar(1.0),
    ));
    norm.beta = Some(param([channels], seed + 0.5, 0.1, device));
    norm
}

fn layer_norm(d_model: usize, seed: f32, device: &Device) -> LayerNorm {
    let mut norm = LayerNormConfig::new(d_model).init(device);
    norm.gamma = Param::from_tensor(tensor([d_model], seed, 0.2, device).add_scalar(1.0));
    norm.beta = Some(param([d_model], seed + 0.5, 0.1, device));
    norm
}

/// Multi-head softmax attention over tokens `[batch, tokens, channels]`.
fn attention(x: Tensor<3>, device: &Device) -> Tensor<3> {
    let [batch, tokens, channels] = x.dims();
    let head_dim = channels / HEADS;
    let heads = |t: Tensor<3>| t.reshape([batch, tokens, HEADS, head_dim]).swap_dims(1, 2);
    let q = heads(linear(channels, channels, 3.0, device).forward(x.clone()));
    let k = heads(linear(channels, channels, 4.0, device).forward(x.clone()));
    let v = heads(linear(channels, channels, 5.0, device).forward(x));
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .div_scalar((head_dim as f32).sqrt());
    let out = softmax(scores, 3).matmul(v);
    let out = out.swap_dims(1, 2).reshape([batch, tokens, channels]);
    linear(channels, channels, 6.0, device).forward(out)
}

/// Builds the graph on `device`; returns its named stages (nothing is read back yet).
pub fn graph(device: &Device) -> Vec<(&'static str, Tensor<1>)> {
    let x = tensor([1, 4, 8, 8], 0.0, 1.0, device);

    let skip = conv3x3([4, CHANNELS], 1, 1.0, device).forward(x);
    let h = silu(group_norm(2, CHANNELS, 1.5, device).forward(skip.clone()));
    let down = conv3x3([CHANNELS, CHANNELS], 2, 2.0, device).forward(h.clone());

    let [batch, channels, height, width] = down.dims();
    let tokens = down
        .clone()
        .reshape([batch, channels, height * width])
        .swap_dims(1, 2);
    let normed = layer_norm(channels, 2.5, device).forward(tokens.clone());
    let attended = tokens + attention(normed, device);
    let ff = linear(2 * channels, channels, 8.0, device).forward(gelu(
        linear(channels, 2 * channels, 7.0, device).forward(attended.clone()),
    ));
    let block = (attended.clone() + ff)
        .swap_dims(1, 2)
        .reshape([batch, channels, height, width]);

    let up = interpolate(
        block,
        InterpolateOptions::new(InterpolateMode::Nearest).with_scale_factor([2.0, 2.0]),
    );
    let out =
        conv3x3([2 * CHANNELS, 4], 1, 9.0, device).forward(Tensor::cat(vec![up, skip.clone()], 1));

    vec![
        ("conv3x3_pad1", skip.flatten(0, 3)),
        ("group_norm_silu", h.flatten(0, 3)),
        ("conv3x3_stride2", down.flatten(0, 3)),
        ("attention", attended.flatten(0, 2)),
        ("output", out.flatten(0, 3)),
    ]
}

/// Runs the graph on `device` and reads every stage back.
pub async fn run(device: &Device) -> Result<Vec<Stage>, ExecutionError> {
    let mut stages = Vec::new();
    for (name, tensor) in graph(device) {
        let values = tensor
            .into_data_async()
            .await?
            .try_into_vec::<f32>()
            .expect("the graph is f32");
        stages.push(Stage { name, values });
    }
    Ok(stages)
}

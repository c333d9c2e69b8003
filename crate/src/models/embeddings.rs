//! diffusers' `Timesteps` (sinusoidal projection) and `TimestepEmbedding` (its MLP).

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

use super::linear::{Linear, LinearConfig};

/// `get_timestep_embedding`: [n] → [n, dim], sin/cos of `t·exp(-ln(10⁴)·i/(dim/2 − shift))`,
/// cos first when `flip_sin_to_cos`.
pub fn timestep_sinusoids(
    timesteps: Tensor<1>,
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
) -> Tensor<2> {
    let half = dim / 2;
    let frequencies: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = -(10_000f32.ln()) * i as f32 / (half as f32 - freq_shift as f32);
            exponent.exp()
        })
        .collect();
    let frequencies = Tensor::<1>::from_floats(frequencies.as_slice(), &timesteps.device());
    let angles = timesteps.unsqueeze_dim::<2>(1) * frequencies.unsqueeze_dim::<2>(0);
    let (sin, cos) = (angles.clone().sin(), angles.cos());
    let emb = if flip_sin_to_cos { Tensor::cat(vec![cos, sin], 1) } else { Tensor::cat(vec![sin, cos], 1) };
    if dim % 2 == 1 {
        let [n, _] = emb.dims();
        Tensor::cat(vec![emb.clone(), Tensor::zeros([n, 1], &emb.device())], 1)
    } else {
        emb
    }
}

#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn new(input_dim: usize, embed_dim: usize, device: &Device) -> Self {
        Self {
            linear_1: LinearConfig::new(input_dim, embed_dim).init(device),
            linear_2: LinearConfig::new(embed_dim, embed_dim).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear_2.forward(silu(self.linear_1.forward(x)))
    }
}

//! diffusers' (PyTorch's) `nn.Linear`, as burn's `Linear` holds it — the weight `[in, out]`, the
//! loader transposing the checkpoint's `[out, in]` (a view of the rows as stored, so a q8/q4
//! weight stays block-quantized on the device) — with the product on wgpu taken by our GEMM
//! (`kernels::linear`) where it measured faster than burn's matmul: q4 weights (5.6–6.7× burn's q4
//! matmul on lavapipe; burn's q8 matmul is as fast as its f32 one, so q8 and f32 stay burn's).

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::module::linear;
use burn::tensor::{Device, Tensor};

use crate::kernels;

/// The configuration, as burn's `LinearConfig` (the same initialization).
#[derive(Clone, Copy, Debug)]
pub struct LinearConfig {
    pub d_input: usize,
    pub d_output: usize,
    pub bias: bool,
}

impl LinearConfig {
    pub fn new(d_input: usize, d_output: usize) -> Self {
        Self { d_input, d_output, bias: true }
    }

    pub fn with_bias(self, bias: bool) -> Self {
        Self { bias, ..self }
    }

    pub fn init(&self, device: &Device) -> Linear {
        let initializer = Initializer::KaimingUniform { gain: 1.0 / 3.0f64.sqrt(), fan_out_only: false };
        let (fan_in, fan_out) = (Some(self.d_input), Some(self.d_output));
        Linear {
            weight: initializer.init_with([self.d_input, self.d_output], fan_in, fan_out, device),
            bias: self.bias.then(|| initializer.init_with([self.d_output], fan_in, fan_out, device)),
        }
    }
}

#[derive(Module, Debug)]
pub struct Linear {
    /// `[in, out]`.
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
}

impl Linear {
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let weight = self.weight.val();
        let bias = self.bias.as_ref().map(|bias| bias.val());
        match kernels::linear::q4_linear(&x, &weight, bias.as_ref()) {
            Some(out) => out,
            None => linear(x, weight, bias),
        }
    }
}

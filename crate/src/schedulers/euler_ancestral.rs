//! `EulerAncestralDiscreteScheduler`: an Euler step down to `sigma_down`, then fresh noise of
//! size `sigma_up` (`sigma_down² + sigma_up² = sigma_next²`). Its class reads no interpolation,
//! Karras or final-sigma keys: the last sigma is always 0.

use burn::tensor::Tensor;

use super::euler::{init_noise_sigma, sigma_schedule};
use super::schedule::{self, Spacing};
use super::{Scheduler, SchedulerConfig, StepOutput};
use crate::error::Result;

pub(crate) struct EulerAncestral {
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    init_noise_sigma: f32,
}

impl EulerAncestral {
    pub(crate) fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        let spacing = Spacing::of(config, Spacing::Linspace)?;
        let train_sigmas = schedule::train_sigmas(&schedule::alphas_cumprod(config)?);
        let (timesteps, sigmas) = sigma_schedule(config, spacing, steps, &train_sigmas)?;
        let sigmas: Vec<f32> = sigmas.into_iter().chain([0.0]).map(|s| s as f32).collect();
        let init_noise_sigma = init_noise_sigma(&sigmas, spacing);
        Ok(EulerAncestral { timesteps, sigmas, init_noise_sigma })
    }
}

impl Scheduler for EulerAncestral {
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.sigmas)
    }

    fn init_noise_sigma(&self) -> f64 {
        f64::from(self.init_noise_sigma)
    }

    fn order(&self) -> usize {
        1
    }

    fn scale_model_input(&self, sample: Tensor<4>, step: usize) -> Tensor<4> {
        sample.div_scalar(schedule::input_scale(self.sigmas[step]))
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        step: usize,
        sample: Tensor<4>,
        noise: &mut dyn FnMut([usize; 4]) -> Tensor<4>,
    ) -> StepOutput {
        let (sigma, sigma_to) = (self.sigmas[step], self.sigmas[step + 1]);
        // f32 scalars in diffusers' expression order.
        let sigma_up = (sigma_to * sigma_to * (sigma * sigma - sigma_to * sigma_to) / (sigma * sigma)).sqrt();
        let sigma_down = (sigma_to * sigma_to - sigma_up * sigma_up).sqrt();
        let pred_original_sample = sample.clone().sub(model_output.mul_scalar(sigma));
        let derivative = sample.clone().sub(pred_original_sample.clone()).div_scalar(sigma);
        let prev_sample = sample.add(derivative.mul_scalar(sigma_down - sigma));
        let fresh = noise(prev_sample.dims());
        StepOutput { prev_sample: prev_sample.add(fresh.mul_scalar(sigma_up)), pred_original_sample }
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, step: usize) -> Tensor<4> {
        original.add(noise.mul_scalar(self.sigmas[step]))
    }
}

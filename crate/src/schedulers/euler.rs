//! `EulerDiscreteScheduler`: Karras et al.'s Euler method on the sigma schedule (SDXL's default).
//! `s_churn` is 0 as in the pipelines, so the step is deterministic.

use burn::tensor::Tensor;

use super::schedule::{self, Spacing, unsupported};
use super::{Scheduler, SchedulerConfig, StepOutput};
use crate::error::Result;

pub(crate) struct Euler {
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    init_noise_sigma: f32,
}

impl Euler {
    pub(crate) fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        if config.interpolation_type != "linear" {
            return Err(unsupported("interpolation_type", &config.interpolation_type, "linear"));
        }
        for (key, set) in [
            ("use_karras_sigmas", config.use_karras_sigmas),
            ("use_exponential_sigmas", config.use_exponential_sigmas),
            ("use_beta_sigmas", config.use_beta_sigmas),
        ] {
            if set {
                return Err(unsupported(key, true, "false for euler; dpmpp-2m-karras has Karras sigmas"));
            }
        }
        let spacing = Spacing::of(config, Spacing::Linspace)?;
        let train_sigmas = schedule::train_sigmas(&schedule::alphas_cumprod(config)?);
        let (timesteps, sigmas) = sigma_schedule(config, spacing, steps, &train_sigmas)?;
        let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
        sigmas.push(schedule::final_sigma(config, &train_sigmas)?);
        let init_noise_sigma = init_noise_sigma(&sigmas, spacing);
        Ok(Euler { timesteps, sigmas, init_noise_sigma })
    }
}

/// The f32 timesteps and their (f64, not yet rounded) sigmas of the two Euler schedulers:
/// `timesteps` spaced as configured, sigmas interpolated linearly between training timesteps.
pub(crate) fn sigma_schedule(
    config: &SchedulerConfig,
    spacing: Spacing,
    steps: usize,
    train_sigmas: &[f32],
) -> Result<(Vec<f32>, Vec<f64>)> {
    let train = config.num_train_timesteps;
    let timesteps: Vec<f64> = match spacing {
        Spacing::Linspace => schedule::linspace(0.0, (train - 1) as f64, steps).into_iter().rev().collect(),
        Spacing::Leading => schedule::leading(train, steps, config.steps_offset),
        Spacing::Trailing => schedule::trailing(train as f64, train as f64 / steps as f64)?,
    };
    let timesteps: Vec<f32> = timesteps.into_iter().map(|t| t as f32).collect();
    let sigmas = schedule::interp(&timesteps, train_sigmas);
    Ok((timesteps, sigmas))
}

/// With "leading" spacing the first timestep is below the last training one, so diffusers
/// scales the noise as `sqrt(max_sigma² + 1)` rather than `max_sigma` (f32, like its tensors).
pub(crate) fn init_noise_sigma(sigmas: &[f32], spacing: Spacing) -> f32 {
    let max = sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    match spacing {
        Spacing::Leading => schedule::input_scale(max),
        Spacing::Linspace | Spacing::Trailing => max,
    }
}

impl Scheduler for Euler {
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
        _noise: &mut dyn FnMut([usize; 4]) -> Tensor<4>,
    ) -> StepOutput {
        let sigma = self.sigmas[step];
        // diffusers' expression order (x0, then the derivative from it), so the rounding matches.
        let pred_original_sample = sample.clone().sub(model_output.mul_scalar(sigma));
        let derivative = sample.clone().sub(pred_original_sample.clone()).div_scalar(sigma);
        let dt = self.sigmas[step + 1] - sigma;
        StepOutput { prev_sample: sample.add(derivative.mul_scalar(dt)), pred_original_sample }
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, step: usize) -> Tensor<4> {
        original.add(noise.mul_scalar(self.sigmas[step]))
    }
}

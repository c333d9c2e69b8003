//! `EulerDiscreteScheduler` (SDXL's default) and `EulerAncestralDiscreteScheduler`: Karras et
//! al.'s Euler method on the sigma schedule. One type serves both; they differ only in the step:
//!
//! - plain Euler steps from `sigma` to the next sigma (`s_churn` is 0 as in the pipelines, so
//!   the step is deterministic);
//! - ancestral Euler steps down to `sigma_down`, then adds fresh noise of size `sigma_up`
//!   (`sigma_down² + sigma_up² = sigma_next²`). Its class reads no interpolation, Karras or
//!   final-sigma keys: the last sigma is always 0.

use burn::tensor::Tensor;

use super::schedule::{self, Spacing, unsupported};
use super::{Scheduler, SchedulerConfig, StepOutput};
use crate::error::Result;

pub(crate) struct Euler {
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    init_noise_sigma: f32,
    /// `EulerAncestralDiscreteScheduler`'s step (fresh noise each step).
    ancestral: bool,
}

impl Euler {
    /// `EulerDiscreteScheduler`.
    pub(crate) fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        if config.interpolation_type != "linear" {
            return Err(unsupported("interpolation_type", &config.interpolation_type, "linear"));
        }
        schedule::refuse_set(
            &[
                ("use_karras_sigmas", config.use_karras_sigmas),
                ("use_exponential_sigmas", config.use_exponential_sigmas),
                ("use_beta_sigmas", config.use_beta_sigmas),
            ],
            "false for euler; dpmpp-2m-karras has Karras sigmas",
        )?;
        Self::build(config, steps, false)
    }

    /// `EulerAncestralDiscreteScheduler`.
    pub(crate) fn ancestral(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        Self::build(config, steps, true)
    }

    /// The f32 timesteps spaced as configured, their sigmas interpolated linearly between
    /// training timesteps (in f64, then rounded to f32), and the final sigma appended.
    fn build(config: &SchedulerConfig, steps: usize, ancestral: bool) -> Result<Self> {
        let spacing = Spacing::of(config, Spacing::Linspace)?;
        let train_sigmas = schedule::train_sigmas(&schedule::alphas_cumprod(config)?);
        let train = config.num_train_timesteps;
        let timesteps: Vec<f64> = match spacing {
            Spacing::Linspace => schedule::linspace(0.0, (train - 1) as f64, steps).into_iter().rev().collect(),
            Spacing::Leading => schedule::leading(train, steps, config.steps_offset),
            Spacing::Trailing => schedule::trailing(train as f64, train as f64 / steps as f64)?,
        };
        let timesteps: Vec<f32> = timesteps.into_iter().map(|t| t as f32).collect();
        let mut sigmas: Vec<f32> =
            schedule::interp(&timesteps, &train_sigmas).into_iter().map(|s| s as f32).collect();
        sigmas.push(if ancestral { 0.0 } else { schedule::final_sigma(config, &train_sigmas)? });
        // With "leading" spacing the first timestep is below the last training one, so diffusers
        // scales the noise as `sqrt(max_sigma² + 1)` rather than `max_sigma` (f32, like its tensors).
        let max = sigmas.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let init_noise_sigma = match spacing {
            Spacing::Leading => schedule::input_scale(max),
            Spacing::Linspace | Spacing::Trailing => max,
        };
        Ok(Euler { timesteps, sigmas, init_noise_sigma, ancestral })
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
        // f32 scalars in diffusers' expression order (x0, then the derivative from it), so the
        // rounding matches. Plain Euler steps all the way to `sigma_to` and adds no noise.
        let (sigma_down, sigma_up) = if self.ancestral {
            let sigma_up = (sigma_to * sigma_to * (sigma * sigma - sigma_to * sigma_to) / (sigma * sigma)).sqrt();
            ((sigma_to * sigma_to - sigma_up * sigma_up).sqrt(), Some(sigma_up))
        } else {
            (sigma_to, None)
        };
        let pred_original_sample = sample.clone().sub(model_output.mul_scalar(sigma));
        let derivative = sample.clone().sub(pred_original_sample.clone()).div_scalar(sigma);
        let prev_sample = sample.add(derivative.mul_scalar(sigma_down - sigma));
        let prev_sample = match sigma_up {
            Some(sigma_up) => {
                let fresh = noise(prev_sample.dims());
                prev_sample.add(fresh.mul_scalar(sigma_up))
            }
            None => prev_sample,
        };
        StepOutput { prev_sample, pred_original_sample }
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, step: usize) -> Tensor<4> {
        original.add(noise.mul_scalar(self.sigmas[step]))
    }
}

//! `DDIMScheduler` with eta 0 (the SDXL pipelines' default): deterministic DDIM steps between
//! integer training timesteps. From SDXL's config it inherits `set_alpha_to_one: false` and
//! `clip_sample: false` (the class defaults are true).

use burn::tensor::Tensor;

use super::schedule::{self, Spacing, unsupported};
use super::{Scheduler, SchedulerConfig, StepOutput};
use crate::error::{Error, Result};

pub(crate) struct Ddim {
    timesteps: Vec<f32>,
    alphas_cumprod: Vec<f32>,
    /// The alpha "after" timestep 0.
    final_alpha_cumprod: f32,
    /// diffusers steps back by `num_train_timesteps // steps` whatever the spacing.
    step_ratio: usize,
    clip_sample_range: Option<f32>,
}

impl Ddim {
    pub(crate) fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        if config.thresholding {
            return Err(unsupported("thresholding", true, "false"));
        }
        let alphas_cumprod = schedule::alphas_cumprod(config)?;
        let train = config.num_train_timesteps;
        let timesteps: Vec<f64> = match Spacing::of(config, Spacing::Leading)? {
            Spacing::Linspace => schedule::linspace(0.0, (train - 1) as f64, steps)
                .into_iter()
                .rev()
                .map(f64::round_ties_even)
                .collect(),
            Spacing::Leading => schedule::leading(train, steps, config.steps_offset),
            Spacing::Trailing => schedule::trailing(train as f64, train as f64 / steps as f64)?,
        };
        if let Some(&t) = timesteps.iter().find(|&&t| t >= train as f64) {
            return Err(Error::Unsupported(format!(
                "DDIM with {steps} steps and steps_offset {}: timestep {t} is past the {train} training timesteps",
                config.steps_offset
            )));
        }
        let final_alpha_cumprod = match config.set_alpha_to_one.unwrap_or(true) {
            true => 1.0,
            false => alphas_cumprod[0],
        };
        Ok(Ddim {
            timesteps: timesteps.into_iter().map(|t| t as f32).collect(),
            alphas_cumprod,
            final_alpha_cumprod,
            step_ratio: train / steps,
            clip_sample_range: config.clip_sample.unwrap_or(true).then_some(config.clip_sample_range as f32),
        })
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f32]> {
        None
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        step: usize,
        sample: Tensor<4>,
        _noise: &mut dyn FnMut([usize; 4]) -> Tensor<4>,
    ) -> StepOutput {
        let timestep = self.timesteps[step] as usize;
        let alpha_prod_t = self.alphas_cumprod[timestep];
        let alpha_prod_t_prev = match timestep.checked_sub(self.step_ratio) {
            Some(prev) => self.alphas_cumprod[prev],
            None => self.final_alpha_cumprod,
        };
        // f32 scalars as diffusers' tensors; with eta 0 the variance term vanishes.
        let beta_prod_t = 1.0 - alpha_prod_t;
        let mut pred_original_sample =
            sample.sub(model_output.clone().mul_scalar(beta_prod_t.sqrt())).div_scalar(alpha_prod_t.sqrt());
        if let Some(range) = self.clip_sample_range {
            pred_original_sample = pred_original_sample.clamp(-range, range);
        }
        let direction = model_output.mul_scalar((1.0 - alpha_prod_t_prev).sqrt());
        let prev_sample = pred_original_sample.clone().mul_scalar(alpha_prod_t_prev.sqrt()).add(direction);
        StepOutput { prev_sample, pred_original_sample }
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, step: usize) -> Tensor<4> {
        let alpha_prod = self.alphas_cumprod[self.timesteps[step] as usize];
        original.mul_scalar(alpha_prod.sqrt()).add(noise.mul_scalar((1.0 - alpha_prod).sqrt()))
    }
}

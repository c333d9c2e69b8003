//! `DPMSolverMultistepScheduler` as DPM++ 2M (`algorithm_type` dpmsolver++, `solver_order` 2):
//! each step extrapolates from the model's x0 estimates at this step and the previous one in
//! log-SNR time; the first step (nothing to extrapolate from) and the last (see `new`) are
//! first order. Optionally on Karras sigmas (DPM++ 2M Karras).

use burn::tensor::Tensor;

use super::schedule::{self, Spacing, unsupported};
use super::{Scheduler, SchedulerConfig, StepOutput};
use crate::error::Result;

pub(crate) struct DpmSolver {
    timesteps: Vec<f32>,
    sigmas: Vec<f32>,
    heun: bool,
    /// Whether the last step is first order (diffusers' `lower_order_final` condition).
    first_order_last: bool,
    /// The x0 estimate of the previous step, once there was one.
    previous: Option<Tensor<4>>,
}

/// A sigma's `(alpha_t, sigma_t, lambda_t)`: signal and noise scale, and log-SNR, in f32 as
/// diffusers' tensors.
fn alpha_sigma_lambda(sigma: f32) -> (f32, f32, f32) {
    let alpha_t = 1.0 / (sigma * sigma + 1.0).sqrt();
    let sigma_t = sigma * alpha_t;
    (alpha_t, sigma_t, alpha_t.ln() - sigma_t.ln())
}

impl DpmSolver {
    pub(crate) fn new(config: &SchedulerConfig, steps: usize, karras: bool) -> Result<Self> {
        if config.algorithm_type != "dpmsolver++" {
            return Err(unsupported("algorithm_type", &config.algorithm_type, "dpmsolver++"));
        }
        if config.solver_order != 2 {
            return Err(unsupported("solver_order", config.solver_order, "2"));
        }
        let heun = match config.solver_type.as_str() {
            "midpoint" => false,
            "heun" => true,
            other => return Err(unsupported("solver_type", other, "midpoint, heun")),
        };
        if let Some(variance_type) = &config.variance_type {
            return Err(unsupported("variance_type", variance_type, "null"));
        }
        schedule::refuse_set(
            &[
                ("thresholding", config.thresholding),
                ("use_exponential_sigmas", config.use_exponential_sigmas),
                ("use_beta_sigmas", config.use_beta_sigmas),
                ("use_lu_lambdas", config.use_lu_lambdas),
                ("use_flow_sigmas", config.use_flow_sigmas),
            ],
            "false",
        )?;
        let alphas_cumprod = schedule::alphas_cumprod(config)?;
        let train_sigmas = schedule::train_sigmas(&alphas_cumprod);
        let train = config.num_train_timesteps;

        // Timesteps whose log-SNR is below `lambda_min_clipped` are cut from the top.
        let clipped = alphas_cumprod
            .iter()
            .filter(|&&a| {
                let lambda = f64::from(a.sqrt()).ln() - f64::from((1.0 - a).sqrt()).ln();
                lambda < config.lambda_min_clipped
            })
            .count();
        let last_timestep = train - clipped;
        // linspace and leading space n+1 points and drop the lowest.
        let mut timesteps: Vec<f64> = match Spacing::of(config, Spacing::Linspace)? {
            Spacing::Linspace => {
                let points = schedule::linspace(0.0, (last_timestep - 1) as f64, steps + 1);
                points.into_iter().skip(1).rev().map(f64::round_ties_even).collect()
            }
            Spacing::Leading => {
                let mut points = schedule::leading(last_timestep, steps + 1, config.steps_offset);
                points.pop();
                points
            }
            Spacing::Trailing => schedule::trailing(last_timestep as f64, train as f64 / steps as f64)?,
        };

        let mut sigmas: Vec<f64> = if karras {
            let sigma_min = config.sigma_min.unwrap_or(f64::from(train_sigmas[0]));
            let sigma_max = config.sigma_max.unwrap_or(f64::from(train_sigmas[train - 1]));
            let sigmas = schedule::karras(sigma_min, sigma_max, steps);
            let log_sigmas = schedule::log_sigmas(&train_sigmas);
            timesteps =
                sigmas.iter().map(|&s| schedule::sigma_to_t(s, &log_sigmas).round_ties_even()).collect();
            sigmas
        } else {
            let timesteps: Vec<f32> = timesteps.iter().map(|&t| t as f32).collect();
            schedule::interp(&timesteps, &train_sigmas)
        };
        sigmas.push(f64::from(schedule::final_sigma(config, &train_sigmas)?));

        let len = timesteps.len();
        let first_order_last = config.euler_at_final
            || (config.lower_order_final && len < 15)
            || config.final_sigmas_type == "zero";
        Ok(DpmSolver {
            timesteps: timesteps.into_iter().map(|t| t as f32).collect(),
            sigmas: sigmas.into_iter().map(|s| s as f32).collect(),
            heun,
            first_order_last,
            previous: None,
        })
    }
}

impl Scheduler for DpmSolver {
    fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.sigmas)
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        step: usize,
        sample: Tensor<4>,
        _noise: &mut dyn FnMut([usize; 4]) -> Tensor<4>,
    ) -> StepOutput {
        let (alpha_s0, sigma_s0, lambda_s0) = alpha_sigma_lambda(self.sigmas[step]);
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(self.sigmas[step + 1]);
        // Model output → x0 estimate (`convert_model_output`).
        let x0 = sample.clone().sub(model_output.mul_scalar(sigma_s0)).div_scalar(alpha_s0);
        // At sigma 0 (final_sigmas_type zero) lambda_t is +inf and the first-order step is x0.
        let h = lambda_t - lambda_s0;
        let phi = alpha_t * ((-h).exp() - 1.0);
        let last = step + 1 == self.timesteps.len();
        let prev_sample = match self.previous.take() {
            Some(previous) if !(last && self.first_order_last) => {
                let (_, _, lambda_s1) = alpha_sigma_lambda(self.sigmas[step - 1]);
                let r0 = (lambda_s0 - lambda_s1) / h;
                let d1 = x0.clone().sub(previous).mul_scalar(1.0 / r0);
                let d1_coefficient = match self.heun {
                    false => -0.5 * phi,
                    true => alpha_t * (((-h).exp() - 1.0) / h + 1.0),
                };
                sample
                    .mul_scalar(sigma_t / sigma_s0)
                    .sub(x0.clone().mul_scalar(phi))
                    .add(d1.mul_scalar(d1_coefficient))
            }
            _ => sample.mul_scalar(sigma_t / sigma_s0).sub(x0.clone().mul_scalar(phi)),
        };
        self.previous = Some(x0.clone());
        StepOutput { prev_sample, pred_original_sample: x0 }
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, step: usize) -> Tensor<4> {
        let (alpha_t, sigma_t, _) = alpha_sigma_lambda(self.sigmas[step]);
        original.mul_scalar(alpha_t).add(noise.mul_scalar(sigma_t))
    }
}

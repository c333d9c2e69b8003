//! diffusers' noise schedulers, each equal to its diffusers class created the way diffusers users
//! do: `Class.from_config(pipe.scheduler.config)` — keys the config has win, the rest take that
//! class's defaults — then `set_timesteps(num_inference_steps)`.
//!
//! Steps are addressed by index into the full schedule (diffusers' `step_index`), so a refiner
//! that continues mid-schedule (diffusers' `set_begin_index`) simply starts at a later index; see
//! [`steps_before`] and [`first_step_after`] for the ensemble-of-experts split.

mod ddim;
mod dpm_solver;
mod euler;
mod schedule;

use std::str::FromStr;

use burn::tensor::Tensor;
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// A `scheduler/scheduler_config.json`, e.g. SDXL's (an `EulerDiscreteScheduler` config). Keys
/// this crate does not read are ignored, as diffusers' `from_config` ignores another class's keys;
/// a read key with a value the schedulers do not implement is an [`Error::Unsupported`] when the
/// scheduler is built. Defaults are diffusers' `__init__` defaults; the three whose default differs
/// between classes are `Option`s resolved by each scheduler.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    /// `linear` or `scaled_linear` (SDXL).
    pub beta_schedule: String,
    pub trained_betas: Option<Vec<f64>>,
    /// Only `epsilon` (SDXL base and refiner).
    pub prediction_type: String,
    /// `linspace`, `leading` or `trailing`; the default is `leading` for DDIM, `linspace` otherwise.
    pub timestep_spacing: Option<String>,
    pub steps_offset: usize,
    pub rescale_betas_zero_snr: bool,
    /// Euler: only `linear`.
    pub interpolation_type: String,
    /// Euler: only false. DPM-Solver: set by [`SchedulerKind`], not read.
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    /// Bounds of the Karras sigmas; the training sigmas' range when absent.
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    /// `zero` or `sigma_min` (Euler, DPM-Solver).
    pub final_sigmas_type: String,
    /// DDIM: clamp the x0 estimate to ±`clip_sample_range` (class default true).
    pub clip_sample: Option<bool>,
    pub clip_sample_range: f64,
    /// DDIM: alpha after the last step is 1 rather than `alphas_cumprod[0]` (class default true).
    pub set_alpha_to_one: Option<bool>,
    /// Dynamic thresholding (DDIM, DPM-Solver): only false.
    pub thresholding: bool,
    /// DPM-Solver: only 2 (DPM++ 2M).
    pub solver_order: usize,
    /// DPM-Solver: only `dpmsolver++`.
    pub algorithm_type: String,
    /// DPM-Solver: `midpoint` or `heun` (the second-order formula).
    pub solver_type: String,
    pub lower_order_final: bool,
    pub euler_at_final: bool,
    pub use_lu_lambdas: bool,
    pub use_flow_sigmas: bool,
    /// DPM-Solver: timesteps whose log-SNR is below this are never used. JSON has no infinity, so
    /// a string such as `"-inf"` is accepted too.
    #[serde(deserialize_with = "number_or_string")]
    pub lambda_min_clipped: f64,
    /// DPM-Solver: only none (learned variance models output extra channels).
    pub variance_type: Option<String>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: "linear".into(),
            trained_betas: None,
            prediction_type: "epsilon".into(),
            timestep_spacing: None,
            steps_offset: 0,
            rescale_betas_zero_snr: false,
            interpolation_type: "linear".into(),
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            sigma_min: None,
            sigma_max: None,
            final_sigmas_type: "zero".into(),
            clip_sample: None,
            clip_sample_range: 1.0,
            set_alpha_to_one: None,
            thresholding: false,
            solver_order: 2,
            algorithm_type: "dpmsolver++".into(),
            solver_type: "midpoint".into(),
            lower_order_final: true,
            euler_at_final: false,
            use_lu_lambdas: false,
            use_flow_sigmas: false,
            lambda_min_clipped: f64::NEG_INFINITY,
            variance_type: None,
        }
    }
}

fn number_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Number(f64),
        Text(String),
    }
    match Value::deserialize(deserializer)? {
        Value::Number(value) => Ok(value),
        Value::Text(text) => {
            text.parse().map_err(|_| serde::de::Error::custom(format!("not a number: {text:?}")))
        }
    }
}

/// The schedulers, by their CLI names `euler`, `euler-a`, `dpmpp-2m`, `dpmpp-2m-karras`, `ddim`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchedulerKind {
    /// `EulerDiscreteScheduler`, SDXL's default.
    #[default]
    Euler,
    /// `EulerAncestralDiscreteScheduler`.
    EulerAncestral,
    /// `DPMSolverMultistepScheduler` (dpmsolver++, order 2).
    DpmPp2M,
    /// The same with `use_karras_sigmas=True`.
    DpmPp2MKarras,
    /// `DDIMScheduler` (eta 0, as the SDXL pipelines default).
    Ddim,
}

impl SchedulerKind {
    pub const NAMES: [&'static str; 5] = ["euler", "euler-a", "dpmpp-2m", "dpmpp-2m-karras", "ddim"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl FromStr for SchedulerKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        const KINDS: [SchedulerKind; 5] = [
            SchedulerKind::Euler,
            SchedulerKind::EulerAncestral,
            SchedulerKind::DpmPp2M,
            SchedulerKind::DpmPp2MKarras,
            SchedulerKind::Ddim,
        ];
        KINDS.into_iter().find(|kind| kind.name() == name).ok_or_else(|| Error::Input {
            name: "scheduler".into(),
            message: format!("unknown scheduler {name:?}; expected one of {}", Self::NAMES.join(", ")),
        })
    }
}

impl std::fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one step returns.
pub struct StepOutput {
    /// The latents for the next step.
    pub prev_sample: Tensor<4>,
    /// The model's current estimate of the denoised latents (x0), for previews.
    pub pred_original_sample: Tensor<4>,
}

/// A diffusers scheduler after `set_timesteps`. `step` indices are into [`Scheduler::timesteps`];
/// an index past the end is a caller bug and panics.
pub trait Scheduler {
    /// diffusers' `scheduler.timesteps` (integers for DPM-Solver and DDIM, f32 for Euler).
    fn timesteps(&self) -> &[f32];
    /// diffusers' `scheduler.sigmas` (one more than the timesteps); `None` for DDIM, which has none.
    fn sigmas(&self) -> Option<&[f32]>;
    /// The scale of the initial noise: `latents = noise * init_noise_sigma` (1 unless the
    /// scheduler works in sigma space).
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    /// `scale_model_input` for the step at index `step` (the identity unless the scheduler
    /// works in sigma space).
    fn scale_model_input(&self, sample: Tensor<4>, _step: usize) -> Tensor<4> {
        sample
    }
    /// One denoising step at index `step`. `noise` supplies the fresh Gaussian noise an ancestral
    /// step needs (given the sample's shape); the others never call it.
    fn step(
        &mut self,
        model_output: Tensor<4>,
        step: usize,
        sample: Tensor<4>,
        noise: &mut dyn FnMut([usize; 4]) -> Tensor<4>,
    ) -> StepOutput;
    /// `add_noise(original, noise, timesteps[step])`: `original` noised to the level of step
    /// `step` (img2img with `strength`).
    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, step: usize) -> Tensor<4>;
}

/// `kind.from_config(config)` followed by `set_timesteps(num_inference_steps)`.
pub fn new_scheduler(
    kind: SchedulerKind,
    config: &SchedulerConfig,
    num_inference_steps: usize,
) -> Result<Box<dyn Scheduler>> {
    schedule::check_common(config)?;
    schedule::check_steps(config, num_inference_steps)?;
    Ok(match kind {
        SchedulerKind::Euler => Box::new(euler::Euler::new(config, num_inference_steps)?),
        SchedulerKind::EulerAncestral => Box::new(euler::Euler::ancestral(config, num_inference_steps)?),
        SchedulerKind::DpmPp2M => Box::new(dpm_solver::DpmSolver::new(config, num_inference_steps, false)?),
        SchedulerKind::DpmPp2MKarras => {
            Box::new(dpm_solver::DpmSolver::new(config, num_inference_steps, true)?)
        }
        SchedulerKind::Ddim => Box::new(ddim::Ddim::new(config, num_inference_steps)?),
    })
}

/// `int(round(T - fraction·T))` (Python rounds half to even): the training timestep where the
/// pipelines cut the schedule for `denoising_end` / `denoising_start`.
fn cutoff_timestep(fraction: f64, num_train_timesteps: usize) -> f64 {
    let train = num_train_timesteps as f64;
    (train - fraction * train).round_ties_even()
}

/// How many steps the base runs with `denoising_end` (`StableDiffusionXLPipeline`): the
/// timesteps ≥ the cutoff. Only meaningful for `denoising_end` in (0, 1), as in the pipeline.
pub fn steps_before(timesteps: &[f32], denoising_end: f64, num_train_timesteps: usize) -> usize {
    let cutoff = cutoff_timestep(denoising_end, num_train_timesteps);
    timesteps.iter().filter(|&&t| f64::from(t) >= cutoff).count()
}

/// The step index where the refiner starts with `denoising_start`
/// (`StableDiffusionXLImg2ImgPipeline.get_timesteps`): it runs the timesteps below the cutoff.
/// (diffusers adds one step for a second-order scheduler when that count is even; every
/// scheduler here is first order.) Only meaningful for `denoising_start` in (0, 1).
pub fn first_step_after(timesteps: &[f32], denoising_start: f64, num_train_timesteps: usize) -> usize {
    let cutoff = cutoff_timestep(denoising_start, num_train_timesteps);
    let steps = timesteps.iter().filter(|&&t| f64::from(t) < cutoff).count();
    timesteps.len() - steps
}

/// The step index where img2img with `strength` starts (`get_timesteps` without
/// `denoising_start`, first-order schedulers): it runs `min(int(steps·strength), steps)` steps,
/// so `strength` 1 runs all.
pub fn first_step_for_strength(num_inference_steps: usize, strength: f64) -> usize {
    let run = ((num_inference_steps as f64 * strength) as usize).min(num_inference_steps);
    num_inference_steps - run
}

//! Schedule math shared by the schedulers: betas → `alphas_cumprod`, the training sigmas,
//! timestep spacings, interpolation and Karras sigmas — each reproducing the torch/numpy
//! expression diffusers evaluates, including its dtype (f32 tensors, f64 numpy arrays), so the
//! tables come out equal to diffusers' to the last bit where the operations are IEEE-exact.

use super::SchedulerConfig;
use crate::error::{Error, Result};

/// `config.timestep_spacing`, how the inference timesteps are picked out of the training ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Spacing {
    Linspace,
    Leading,
    Trailing,
}

impl Spacing {
    /// The config's spacing, or `default` (each scheduler class has its own) when it has none.
    pub(crate) fn of(config: &SchedulerConfig, default: Spacing) -> Result<Spacing> {
        match config.timestep_spacing.as_deref() {
            None => Ok(default),
            Some("linspace") => Ok(Spacing::Linspace),
            Some("leading") => Ok(Spacing::Leading),
            Some("trailing") => Ok(Spacing::Trailing),
            Some(other) => Err(unsupported("timestep_spacing", other, "linspace, leading, trailing")),
        }
    }
}

pub(crate) fn unsupported(key: &str, value: impl std::fmt::Display, supported: &str) -> Error {
    Error::Unsupported(format!("scheduler `{key}` = {value} (supported: {supported})"))
}

/// Fails on the first of the boolean `flags` (key, value) that is set: each enables something
/// the scheduler does not implement.
pub(crate) fn refuse_set(flags: &[(&str, bool)], supported: &str) -> Result<()> {
    match flags.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(unsupported(key, true, supported)),
        None => Ok(()),
    }
}

/// Rejects the config keys no scheduler here implements (each changes the numbers).
pub(crate) fn check_common(config: &SchedulerConfig) -> Result<()> {
    if config.prediction_type != "epsilon" {
        return Err(unsupported("prediction_type", &config.prediction_type, "epsilon"));
    }
    if config.rescale_betas_zero_snr {
        return Err(unsupported("rescale_betas_zero_snr", true, "false"));
    }
    if config.num_train_timesteps < 2 {
        return Err(unsupported("num_train_timesteps", config.num_train_timesteps, "at least 2"));
    }
    Ok(())
}

/// `num_inference_steps` must pick distinct training timesteps.
pub(crate) fn check_steps(config: &SchedulerConfig, steps: usize) -> Result<()> {
    if steps == 0 || steps > config.num_train_timesteps {
        return Err(Error::Input {
            name: "steps".into(),
            message: format!("{steps} inference steps; expected 1..={}", config.num_train_timesteps),
        });
    }
    Ok(())
}

/// `torch.cumprod(1 - betas)` with diffusers' betas, all f32 like diffusers' tensors.
pub(crate) fn alphas_cumprod(config: &SchedulerConfig) -> Result<Vec<f32>> {
    let n = config.num_train_timesteps;
    let betas: Vec<f32> = match (&config.trained_betas, config.beta_schedule.as_str()) {
        (Some(betas), _) if betas.len() == n => betas.iter().map(|&b| b as f32).collect(),
        (Some(betas), _) => {
            return Err(unsupported(
                "trained_betas",
                format!("{} values", betas.len()),
                &format!("{n} values"),
            ));
        }
        (None, "linear") => torch_linspace_f32(config.beta_start, config.beta_end, n),
        (None, "scaled_linear") => torch_linspace_f32(config.beta_start.sqrt(), config.beta_end.sqrt(), n)
            .into_iter()
            .map(|b| b * b)
            .collect(),
        (None, other) => return Err(unsupported("beta_schedule", other, "linear, scaled_linear")),
    };
    // torch's CPU cumprod accumulates f32 in f64 (`acc_type<float>`), rounding each output.
    let mut product = 1.0f64;
    Ok(betas
        .iter()
        .map(|&beta| {
            product *= f64::from(1.0f32 - beta);
            product as f32
        })
        .collect())
}

/// `torch.linspace(start, end, n, dtype=float32)` on CPU: `start + step·i` for the first half,
/// `end - step·(n-1-i)` for the second, with `step` in f32 and each value one fused multiply-add
/// (what torch's vectorized kernel computes; plain f32 `start + step*i` differs in ~15% of values).
fn torch_linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    (0..n)
        .map(|i| match i < n / 2 {
            true => step.mul_add(i as f32, start),
            false => (-step).mul_add((n - 1 - i) as f32, end),
        })
        .collect()
}

/// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in f32, indexed by training timestep.
pub(crate) fn train_sigmas(alphas_cumprod: &[f32]) -> Vec<f32> {
    alphas_cumprod.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect()
}

/// `config.final_sigmas_type`: the sigma appended after the last step.
pub(crate) fn final_sigma(config: &SchedulerConfig, train_sigmas: &[f32]) -> Result<f32> {
    match config.final_sigmas_type.as_str() {
        "zero" => Ok(0.0),
        "sigma_min" => Ok(train_sigmas[0]),
        other => Err(unsupported("final_sigmas_type", other, "zero, sigma_min")),
    }
}

/// `np.linspace(start, stop, n)` (f64): `start + i·step`, the last value exactly `stop`.
pub(crate) fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    (0..n).map(|i| if i == n - 1 { stop } else { i as f64 * step + start }).collect()
}

/// `(np.arange(0, n) * (span // n))[::-1] + offset`: diffusers' "leading" spacing.
pub(crate) fn leading(span: usize, n: usize, offset: usize) -> Vec<f64> {
    let ratio = span / n;
    (0..n).rev().map(|i| (i * ratio + offset) as f64).collect()
}

/// `np.arange(start, 0, -ratio).round() - 1`: diffusers' "trailing" spacing. numpy's float
/// `arange` has `ceil(start / ratio)` elements, `start + i·((start - ratio) - start)`; for some step
/// counts (61, 103, 121, … of 1000) that is one element too many and the last timestep is -1, which
/// diffusers then uses as is — here that is an error instead.
pub(crate) fn trailing(start: f64, ratio: f64) -> Result<Vec<f64>> {
    let len = ((0.0 - start) / -ratio).ceil() as usize;
    let delta = (start - ratio) - start;
    let timesteps: Vec<f64> = (0..len)
        .map(|i| if i == 0 { start } else { start + i as f64 * delta }.round_ties_even() - 1.0)
        .collect();
    if timesteps.iter().any(|&t| t < 0.0) {
        return Err(Error::Unsupported(format!(
            "timestep_spacing trailing with a step ratio of {ratio}: diffusers' schedule would end at timestep -1; \
             choose another number of steps"
        )));
    }
    Ok(timesteps)
}

/// `np.interp(timesteps, np.arange(len(sigmas)), sigmas)` (f64).
pub(crate) fn interp(timesteps: &[f32], sigmas: &[f32]) -> Vec<f64> {
    let last = sigmas.len() - 1;
    timesteps
        .iter()
        .map(|&t| {
            let x = f64::from(t);
            if x <= 0.0 {
                return f64::from(sigmas[0]);
            }
            if x >= last as f64 {
                return f64::from(sigmas[last]);
            }
            let j = x.floor() as usize;
            let (low, high) = (f64::from(sigmas[j]), f64::from(sigmas[j + 1]));
            if x == j as f64 { low } else { (high - low) * (x - j as f64) + low }
        })
        .collect()
}

/// Karras et al. (2022) sigmas, rho 7, from `sigma_max` down to `sigma_min` (f64, as numpy).
pub(crate) fn karras(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv_rho, max_inv_rho) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    linspace(0.0, 1.0, n)
        .into_iter()
        .map(|ramp| (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(rho))
        .collect()
}

/// diffusers' `_sigma_to_t`: the fractional training timestep whose sigma is `sigma`,
/// interpolating linearly in log sigma. `log_sigmas` is numpy's f32 `np.log(train_sigmas)`.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // The last index whose log sigma is ≤ ours (0 if none), at most len - 2.
    let low_idx = log_sigmas
        .iter()
        .rposition(|&l| log_sigma - f64::from(l) >= 0.0)
        .unwrap_or(0)
        .min(log_sigmas.len() - 2);
    let (low, high) = (f64::from(log_sigmas[low_idx]), f64::from(log_sigmas[low_idx + 1]));
    let w = ((low - log_sigma) / (low - high)).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * (low_idx + 1) as f64
}

/// `np.log` of the f32 training sigmas, kept in f32.
pub(crate) fn log_sigmas(train_sigmas: &[f32]) -> Vec<f32> {
    train_sigmas.iter().map(|&s| f64::from(s).ln() as f32).collect()
}

/// `(sigma**2 + 1) ** 0.5` in f32, the Euler schedulers' input scale.
pub(crate) fn input_scale(sigma: f32) -> f32 {
    (sigma * sigma + 1.0).sqrt()
}

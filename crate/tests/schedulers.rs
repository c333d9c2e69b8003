//! The schedulers against diffusers 0.42.1 (`tests/fixtures/schedulers.json`: tables and a full
//! step sequence per scheduler, each built as `Class.from_config(sdxl_scheduler_config)`), the
//! refiner split helpers, config errors, and the seeded noise generator.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::cell::Cell;

use burn::tensor::{Device, Tensor, TensorData};
use common::{fixtures, relative_l2};
use sdxl_web::error::Error;
use sdxl_web::noise::NoiseGenerator;
use sdxl_web::schedulers::{
    SchedulerConfig, SchedulerKind, first_step_after, first_step_for_strength, new_scheduler, steps_before,
};
use serde_json::Value;

fn fixture() -> Value {
    let path = fixtures().join("schedulers.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read schedulers.json"))
        .expect("parse schedulers.json")
}

fn sdxl_config() -> SchedulerConfig {
    serde_json::from_value(fixture()["base_config"].clone()).expect("SDXL's scheduler config parses")
}

fn kind_of(run_name: &str) -> SchedulerKind {
    match run_name {
        "euler" | "euler 40 steps" => SchedulerKind::Euler,
        "euler_a" => SchedulerKind::EulerAncestral,
        "dpmpp_2m" => SchedulerKind::DpmPp2M,
        "dpmpp_2m_karras" => SchedulerKind::DpmPp2MKarras,
        "ddim" => SchedulerKind::Ddim,
        other => panic!("fixture run {other:?} has no scheduler kind here"),
    }
}

fn floats(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        Value::Number(number) => vec![number.as_f64().unwrap()],
        other => panic!("not a number: {other}"),
    }
}

fn shape4(value: &Value) -> [usize; 4] {
    let mut shape = [0; 4];
    let mut level = value;
    for dim in &mut shape {
        let items = level.as_array().expect("a 4-d nested array");
        *dim = items.len();
        level = &items[0];
    }
    shape
}

fn tensor(value: &Value, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = floats(value).into_iter().map(|v| v as f32).collect();
    Tensor::from_data(TensorData::new(values, shape4(value)), device)
}

fn relative(ours: f64, reference: f64) -> f64 {
    if reference == 0.0 { ours.abs() } else { ((ours - reference) / reference).abs() }
}

/// The worst relative difference, after checking the lengths agree.
fn worst_relative(name: &str, ours: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(
        ours.len(),
        reference.len(),
        "{name}: {} values, diffusers has {}",
        ours.len(),
        reference.len()
    );
    ours.iter().zip(reference).map(|(&o, &r)| relative(f64::from(o), r)).fold(0.0, f64::max)
}

#[test]
fn schedules_and_steps_match_diffusers() {
    let fixture = fixture();
    let config = sdxl_config();
    let device = Device::flex();
    let runs = fixture["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 6);
    for run in runs {
        let name = run["name"].as_str().unwrap();
        let steps = run["num_inference_steps"].as_u64().unwrap() as usize;
        let mut scheduler = new_scheduler(kind_of(name), &config, steps).expect("the scheduler builds");

        let timestep_error = worst_relative(name, scheduler.timesteps(), &floats(&run["timesteps"]));
        let sigma_error = match (&run["sigmas"], scheduler.sigmas()) {
            (Value::Null, None) => 0.0,
            (reference @ Value::Array(_), Some(ours)) => worst_relative(name, ours, &floats(reference)),
            (reference, ours) => panic!("{name}: sigmas {ours:?}, diffusers has {reference}"),
        };
        let init_noise_sigma = run["init_noise_sigma"].as_f64().unwrap();
        let init_error = relative(scheduler.init_noise_sigma(), init_noise_sigma);
        assert!(timestep_error <= 1e-6, "{name}: timesteps differ by {timestep_error:.1e}");
        assert!(sigma_error <= 1e-6, "{name}: sigmas differ by {sigma_error:.1e}");
        assert!(init_error <= 1e-6, "{name}: init_noise_sigma differs by {init_error:.1e}");
        // The step-index helpers (`first_step_after`, `first_step_for_strength`) assume this.
        assert_eq!(run["order"].as_u64(), Some(1), "{name}: diffusers' scheduler.order");

        // sample = sample0 * init_noise_sigma; then scale_model_input and step at every index.
        let test = &run["step_test"];
        let ancestral = kind_of(name) == SchedulerKind::EulerAncestral;
        let mut sample = tensor(&test["sample0"], &device).mul_scalar(scheduler.init_noise_sigma() as f32);
        let (mut worst_scaled, mut worst_prev) = (0f64, 0f64);
        for step in 0..steps {
            let scaled = scheduler.scale_model_input(sample.clone(), step);
            let error =
                relative_l2(&scaled.into_data(), &tensor(&test["scaled_inputs"][step], &device).into_data());
            worst_scaled = worst_scaled.max(error);

            let draws = Cell::new(0);
            let recorded = &test["noise"];
            let mut noise = |shape: [usize; 4]| {
                draws.set(draws.get() + 1);
                let noise = tensor(&recorded[step], &device);
                assert_eq!(noise.dims(), shape, "{name}: noise shape");
                noise
            };
            let model_output = tensor(&test["model_outputs"][step], &device);
            let out = scheduler.step(model_output, step, sample, &mut noise);
            assert_eq!(draws.get(), usize::from(ancestral), "{name} step {step}: noise draws");
            let error = relative_l2(
                &out.prev_sample.clone().into_data(),
                &tensor(&test["prev_samples"][step], &device).into_data(),
            );
            worst_prev = worst_prev.max(error);
            if step + 1 == steps && kind_of(name) != SchedulerKind::Ddim {
                // The last step lands on sigma 0, where the sample is the x0 estimate itself.
                let x0_error = relative_l2(
                    &out.pred_original_sample.clone().into_data(),
                    &out.prev_sample.clone().into_data(),
                );
                assert!(
                    x0_error <= 1e-5,
                    "{name}: last x0 estimate differs from the result by {x0_error:.1e}"
                );
            }
            sample = out.prev_sample;
        }
        println!(
            "{name:<16} timesteps {timestep_error:.1e}  sigmas {sigma_error:.1e}  init_noise_sigma {init_error:.1e}  \
             scaled inputs {worst_scaled:.1e}  prev samples {worst_prev:.1e} (worst relative errors)"
        );
        assert!(worst_scaled <= 1e-5, "{name}: scaled inputs differ by {worst_scaled:.1e}");
        assert!(worst_prev <= 1e-5, "{name}: prev samples differ by {worst_prev:.1e}");
    }
}

/// The other two spacings, with diffusers' numbers for 7 steps, printed by:
/// ```python
/// cfg = json.load(open('tests/fixtures/schedulers.json'))['base_config']
/// for spacing in ('linspace', 'trailing'):
///     for name, cls in (('euler', EulerDiscreteScheduler), ('dpmpp-2m', DPMSolverMultistepScheduler), ('ddim', DDIMScheduler)):
///         s = cls.from_config(cfg, timestep_spacing=spacing); s.set_timesteps(7)
///         print(name, spacing, s.timesteps.tolist(), getattr(s, 'sigmas', None), float(s.init_noise_sigma))
/// ```
#[test]
fn linspace_and_trailing_spacings_match_diffusers() {
    /// (kind, spacing, timesteps, sigmas, init_noise_sigma)
    type SpacingCase = (&'static str, &'static str, &'static [f32], Option<&'static [f32]>, f64);
    #[rustfmt::skip]
    let cases: [SpacingCase; 6] = [
        ("euler", "linspace", &[999.0, 832.5, 666.0, 499.5, 333.0, 166.5, 0.0],
         Some(&[14.614647, 5.9489183, 2.9183085, 1.6155834, 0.9323583, 0.49355352, 0.029167533, 0.0]), 14.614646911621094),
        ("dpmpp-2m", "linspace", &[999.0, 856.0, 714.0, 571.0, 428.0, 285.0, 143.0],
         Some(&[14.614647, 6.668573, 3.5282047, 2.0616717, 1.2762358, 0.79006153, 0.44030958, 0.0]), 1.0),
        ("ddim", "linspace", &[999.0, 832.0, 666.0, 500.0, 333.0, 166.0, 0.0], None, 1.0),
        ("euler", "trailing", &[999.0, 856.0, 713.0, 570.0, 428.0, 285.0, 142.0],
         Some(&[14.614647, 6.668573, 3.5138793, 2.0544767, 1.2762358, 0.79006153, 0.4380623, 0.0]), 14.614646911621094),
        ("dpmpp-2m", "trailing", &[999.0, 856.0, 713.0, 570.0, 428.0, 285.0, 142.0],
         Some(&[14.614647, 6.668573, 3.5138793, 2.0544767, 1.2762358, 0.79006153, 0.4380623, 0.0]), 1.0),
        ("ddim", "trailing", &[999.0, 856.0, 713.0, 570.0, 428.0, 285.0, 142.0], None, 1.0),
    ];
    for (kind, spacing, timesteps, sigmas, init_noise_sigma) in cases {
        let config = SchedulerConfig { timestep_spacing: Some(spacing.into()), ..sdxl_config() };
        let scheduler = new_scheduler(kind.parse().unwrap(), &config, 7).unwrap();
        assert_eq!(scheduler.timesteps(), timesteps, "{kind} {spacing}: timesteps");
        match (scheduler.sigmas(), sigmas) {
            (Some(ours), Some(reference)) => {
                let reference: Vec<f64> = reference.iter().map(|&s| f64::from(s)).collect();
                let error = worst_relative(kind, ours, &reference);
                assert!(error <= 1e-6, "{kind} {spacing}: sigmas differ by {error:.1e}");
            }
            (None, None) => {}
            (ours, _) => panic!("{kind} {spacing}: sigmas {ours:?}"),
        }
        assert!(
            relative(scheduler.init_noise_sigma(), init_noise_sigma) <= 1e-6,
            "{kind} {spacing}: init_noise_sigma"
        );
    }
}

/// `add_noise(x, noise, timesteps[k])` (after `set_begin_index(k)` where the class has it) with
/// `x = [1, 0]`, `noise = [0, 1]`: diffusers' coefficients of the original and of the noise.
#[test]
fn add_noise_matches_diffusers() {
    #[rustfmt::skip]
    let cases = [
        ("euler", 3, 1.0, 2.2928547859191895), ("euler", 7, 1.0, 0.5740507245063782),
        ("euler-a", 3, 1.0, 2.2928547859191895), ("euler-a", 7, 1.0, 0.5740507245063782),
        ("dpmpp-2m", 3, 0.3641386926174164, 0.9313446283340454), ("dpmpp-2m", 7, 0.7994205951690674, 0.6007717251777649),
        ("dpmpp-2m-karras", 3, 0.30096331238746643, 0.9536356925964355),
        ("dpmpp-2m-karras", 7, 0.9803158640861511, 0.19743548333644867),
        ("ddim", 3, 0.3997703492641449, 0.9166153073310852), ("ddim", 7, 0.8672618269920349, 0.49785229563713074),
    ];
    let device = Device::flex();
    let config = sdxl_config();
    for (kind, step, original_scale, noise_scale) in cases {
        let scheduler = new_scheduler(kind.parse().unwrap(), &config, 10).unwrap();
        let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2, 1, 1]), &device);
        let noise = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 2, 1, 1]), &device);
        let out = scheduler.add_noise(x, noise, step).into_data().try_into_vec::<f32>().unwrap();
        for (ours, reference) in out.iter().zip([original_scale, noise_scale]) {
            assert!(relative(f64::from(*ours), reference) <= 1e-6, "{kind} step {step}: {out:?}");
        }
    }
}

/// diffusers' split for base + refiner. Printed by, for each kind, steps and fraction:
/// ```python
/// s = cls.from_config(cfg, **kw); s.set_timesteps(steps)
/// cutoff = int(round(1000 - frac * 1000))
/// end = len(list(filter(lambda t: t >= cutoff, s.timesteps)))          # StableDiffusionXLPipeline
/// rts, n = StableDiffusionXLImg2ImgPipeline.get_timesteps(SimpleNamespace(scheduler=s), steps, 0.3, 'cpu',
///                                                         denoising_start=frac)
/// start = len(s.timesteps) - n
/// ```
#[test]
fn refiner_split_matches_diffusers() {
    #[rustfmt::skip]
    let cases = [
        ("euler", 10, 0.8, 8, 8), ("euler", 10, 0.5, 5, 5), ("euler", 40, 0.8, 32, 32), ("euler", 40, 0.5, 20, 20),
        ("euler-a", 10, 0.8, 8, 8), ("euler-a", 40, 0.8, 32, 32),
        ("dpmpp-2m", 10, 0.8, 8, 8), ("dpmpp-2m", 40, 0.8, 32, 32), ("dpmpp-2m", 40, 0.5, 20, 20),
        ("dpmpp-2m-karras", 10, 0.8, 6, 6), ("dpmpp-2m-karras", 10, 0.5, 5, 5),
        ("dpmpp-2m-karras", 40, 0.8, 25, 25), ("dpmpp-2m-karras", 40, 0.5, 18, 18),
        ("ddim", 10, 0.8, 8, 8), ("ddim", 40, 0.8, 32, 32),
    ];
    let config = sdxl_config();
    for (kind, steps, fraction, end, start) in cases {
        let scheduler = new_scheduler(kind.parse().unwrap(), &config, steps).unwrap();
        let timesteps = scheduler.timesteps();
        assert_eq!(
            steps_before(timesteps, fraction, 1000),
            end,
            "{kind} {steps} steps, denoising_end {fraction}"
        );
        let first = first_step_after(timesteps, fraction, 1000);
        assert_eq!(first, start, "{kind} {steps} steps, denoising_start {fraction}");
    }

    // The pipeline fixture's Euler run: base timesteps [901 … 201], refiner [101, 1].
    let scheduler = new_scheduler(SchedulerKind::Euler, &config, 10).unwrap();
    let timesteps = scheduler.timesteps();
    assert_eq!(
        timesteps[..steps_before(timesteps, 0.8, 1000)],
        [901.0, 801.0, 701.0, 601.0, 501.0, 401.0, 301.0, 201.0]
    );
    assert_eq!(timesteps[first_step_after(timesteps, 0.8, 1000)..], [101.0, 1.0]);

    // img2img `strength` (get_timesteps without denoising_start): diffusers' begin indices.
    for (steps, strength, begin) in [(10, 0.3, 7), (10, 1.0, 0), (40, 0.35, 26), (10, 0.0, 10)] {
        assert_eq!(first_step_for_strength(steps, strength), begin, "{steps} steps, strength {strength}");
    }
}

fn unsupported(result: Result<Box<dyn sdxl_web::schedulers::Scheduler>, Error>) -> String {
    match result {
        Err(Error::Unsupported(message)) => message,
        Err(other) => panic!("expected Unsupported, got {other}"),
        Ok(_) => panic!("expected Unsupported, got a scheduler"),
    }
}

#[test]
fn bad_names_and_configs_are_clear_errors() {
    let error = "euler_a".parse::<SchedulerKind>().unwrap_err().to_string();
    assert!(error.contains("euler_a") && error.contains("euler-a, dpmpp-2m"), "{error}");
    for name in SchedulerKind::NAMES {
        assert_eq!(name.parse::<SchedulerKind>().unwrap().to_string(), name);
    }

    let sdxl = sdxl_config();
    let v_prediction = SchedulerConfig { prediction_type: "v_prediction".into(), ..sdxl.clone() };
    for name in SchedulerKind::NAMES {
        let message = unsupported(new_scheduler(name.parse().unwrap(), &v_prediction, 10));
        assert!(message.contains("prediction_type") && message.contains("v_prediction"), "{message}");
    }
    let cosine = SchedulerConfig { beta_schedule: "squaredcos_cap_v2".into(), ..sdxl.clone() };
    assert!(unsupported(new_scheduler(SchedulerKind::Ddim, &cosine, 10)).contains("beta_schedule"));
    let spacing = SchedulerConfig { timestep_spacing: Some("uniform".into()), ..sdxl.clone() };
    assert!(unsupported(new_scheduler(SchedulerKind::Euler, &spacing, 10)).contains("timestep_spacing"));
    let third_order = SchedulerConfig { solver_order: 3, ..sdxl.clone() };
    assert!(unsupported(new_scheduler(SchedulerKind::DpmPp2M, &third_order, 10)).contains("solver_order"));
    let karras_euler = SchedulerConfig { use_karras_sigmas: true, ..sdxl.clone() };
    assert!(
        unsupported(new_scheduler(SchedulerKind::Euler, &karras_euler, 10)).contains("use_karras_sigmas")
    );
    // numpy's arange makes diffusers' trailing schedule for 61 steps end at timestep -1.
    let trailing = SchedulerConfig { timestep_spacing: Some("trailing".into()), ..sdxl.clone() };
    assert!(unsupported(new_scheduler(SchedulerKind::Euler, &trailing, 61)).contains("-1"));
    assert!(new_scheduler(SchedulerKind::Euler, &trailing, 60).is_ok());
    for steps in [0, 1001] {
        match new_scheduler(SchedulerKind::Euler, &sdxl, steps) {
            Err(Error::Input { name, .. }) => assert_eq!(name, "steps"),
            _ => panic!("{steps} steps accepted"),
        }
    }
}

#[test]
fn config_files_parse_ignoring_unknown_keys() {
    let path = fixtures().join("tiny-sdxl-base/scheduler/scheduler_config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let config: SchedulerConfig = serde_json::from_str(&text).unwrap();
    assert_eq!((config.beta_schedule.as_str(), config.steps_offset), ("scaled_linear", 1));
    assert_eq!((config.clip_sample, config.set_alpha_to_one), (Some(false), Some(false)));

    // Keys of other classes, and diffusers' `-inf` written as a string.
    let config: SchedulerConfig =
        serde_json::from_str(r#"{"_class_name": "X", "skip_prk_steps": true, "lambda_min_clipped": "-inf"}"#)
            .unwrap();
    assert_eq!(config.lambda_min_clipped, f64::NEG_INFINITY);
    assert_eq!(config.timestep_spacing, None);
    let config: SchedulerConfig = serde_json::from_str(r#"{"lambda_min_clipped": -5.1}"#).unwrap();
    assert_eq!(config.lambda_min_clipped, -5.1);
    assert!(serde_json::from_str::<SchedulerConfig>(r#"{"lambda_min_clipped": "low"}"#).is_err());
}

/// The generator's first values, from this independent Python version of the algorithm in
/// `noise.rs`'s docs (it uses the platform's `math.log/cos/sin`; the Rust one its own):
/// ```python
/// import math, numpy as np
/// def normals(seed, count):
///     state, out = seed, []
///     def word():
///         nonlocal state
///         state = (state + 0x9E3779B97F4A7C15) % 2**64
///         z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
///         z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
///         return z ^ (z >> 31)
///     while len(out) < count:
///         u1 = ((word() >> 11) + 1) * 2.0**-53
///         u2 = (word() >> 11) * 2.0**-53
///         r = math.sqrt(-2.0 * math.log(u1))
///         out += [r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)]
///     return [np.float32(v) for v in out[:count]]
/// ```
/// Seed 42's 16 values have (cos, sin) pairs in all four quadrants.
#[test]
fn noise_matches_its_documented_algorithm() {
    let device = Device::flex();
    let seed_0: [f32; 8] =
        [-0.45275775, 0.20776604, 2.650606, -0.49042282, -0.9886041, 1.8721014, 0.25246271, -1.8534243];
    #[rustfmt::skip]
    let seed_42: [f32; 16] = [
        0.41471976, 0.65268123, -0.89188623, 1.3268336, 1.729593, -1.8834168, 0.54562044, -1.6568358,
        -1.080413, -0.99535567, -1.778848, 0.07840942, -1.1456184, -0.14482252, 0.26045054, 0.86465174,
    ];
    let seed_max: [f32; 8] =
        [0.40389818, -0.24716993, -1.5578115, 0.7785845, 0.37761974, -0.74491614, -0.0030864829, 0.34378263];
    assert_eq!(NoiseGenerator::new(0).values(8), seed_0);
    assert_eq!(NoiseGenerator::new(u64::MAX).values(8), seed_max);
    // Row-major into a tensor; an odd count drops the last sine and the next call starts afresh.
    let mut generator = NoiseGenerator::new(42);
    let tensor = generator.normal([1, 2, 2, 2], &device).into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(tensor, seed_42[..8]);
    assert_eq!(generator.values(7), seed_42[8..15]);
    assert_eq!(generator.values(1), NoiseGenerator::new(42).values(18)[16..17]);
}

#[test]
fn noise_is_seeded_and_standard_normal() {
    let device = Device::flex();
    let shape = [1, 4, 128, 128];
    let a = NoiseGenerator::new(1234).normal(shape, &device).into_data().try_into_vec::<f32>().unwrap();
    let b = NoiseGenerator::new(1234).normal(shape, &device).into_data().try_into_vec::<f32>().unwrap();
    let c = NoiseGenerator::new(1235).normal(shape, &device).into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(a, b, "the same seed gives the same noise");
    let same = a.iter().zip(&c).filter(|(x, y)| x == y).count();
    assert_eq!(same, 0, "seeds 1234 and 1235 share {same} values");

    let values = NoiseGenerator::new(7).values(100_000);
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let moment = |k: i32| values.iter().map(|&v| (f64::from(v) - mean).powi(k)).sum::<f64>() / n;
    let (std, skew, kurtosis) =
        (moment(2).sqrt(), moment(3) / moment(2).powf(1.5), moment(4) / moment(2).powi(2));
    let within_one = values.iter().filter(|v| v.abs() < 1.0).count() as f64 / n;
    println!(
        "mean {mean:.4}  std {std:.4}  skew {skew:.4}  kurtosis {kurtosis:.4}  P(|z|<1) {within_one:.4}"
    );
    // Bounds at about 3–4 standard errors for 1e5 samples.
    assert!(mean.abs() < 0.012, "mean {mean}");
    assert!((std - 1.0).abs() < 0.01, "std {std}");
    assert!(skew.abs() < 0.03, "skewness {skew}");
    assert!((kurtosis - 3.0).abs() < 0.06, "kurtosis {kurtosis}");
    assert!((within_one - 0.682_689).abs() < 0.005, "P(|z| < 1) = {within_one}");
}

//! The messages between the page's worker and the wasm module, as JSON: a generation request
//! (the parameters of `sdxl generate`), and the bookkeeping of a download (bytes, speed, ETA).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::models::vae::VaeConfig;
use crate::pipeline::GenerateParams;
use crate::pipeline::conditioning::LongPrompt;
use crate::schedulers::SchedulerKind;

/// A generation request, as the page sends it. Absent fields take `sdxl generate`'s defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    prompt: String,
    negative_prompt: Option<String>,
    steps: Option<usize>,
    guidance: Option<f64>,
    width: Option<usize>,
    height: Option<usize>,
    #[serde(deserialize_with = "seed")]
    seed: u64,
    scheduler: Option<String>,
    /// Whether the refiner (when one is loaded) takes over at `refiner_start`.
    #[serde(default)]
    refiner: bool,
    refiner_start: Option<f64>,
    long_prompt: Option<String>,
    /// Whether each step reports a preview.
    #[serde(default)]
    previews: bool,
}

/// A seed: a JSON number, or a decimal string (JavaScript numbers stop at 2^53).
fn seed<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<u64, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    let seed = match &value {
        serde_json::Value::Number(number) => number.as_u64(),
        serde_json::Value::String(text) => text.parse().ok(),
        _ => None,
    };
    seed.ok_or_else(|| D::Error::custom(format!("seed {value} is not a whole number from 0 to {}", u64::MAX)))
}

/// A checked request.
#[derive(Debug)]
pub struct Generate {
    pub params: GenerateParams,
    pub seed: u64,
    pub refiner: bool,
    pub previews: bool,
}

/// Parses and checks a request (the same checks as `sdxl generate`; warnings come when the
/// run starts), and that decoding its size fits the GPU's largest buffer, `buffer_limit` bytes.
pub fn parse_generate(json: &str, vae: &VaeConfig, buffer_limit: u64) -> Result<Generate> {
    let request: Request = serde_json::from_str(json)
        .map_err(|e| Error::Input { name: "request".into(), message: e.to_string() })?;
    let mut params = GenerateParams::new(request.prompt);
    params.negative_prompt = request.negative_prompt;
    params.steps = request.steps.unwrap_or(params.steps);
    params.guidance = request.guidance.unwrap_or(params.guidance);
    params.width = request.width.unwrap_or(params.width);
    params.height = request.height.unwrap_or(params.height);
    params.refiner_start = request.refiner_start.unwrap_or(params.refiner_start);
    if let Some(name) = request.scheduler {
        params.scheduler = name.parse::<SchedulerKind>()?;
    }
    if let Some(mode) = request.long_prompt {
        params.long_prompt = mode.parse::<LongPrompt>()?;
    }
    params.validate(vae.scale_factor())?;
    params.check_decode_fits(vae, buffer_limit, &format!("this GPU allows {} MiB", buffer_limit >> 20))?;
    Ok(Generate { params, seed: request.seed, refiner: request.refiner, previews: request.previews })
}

/// A download's progress: bytes done of the total, the speed over the last few seconds and
/// the time left at that speed. Times are in milliseconds (the page's `performance.now()`).
#[derive(Debug)]
pub struct Transfer {
    total: u64,
    done: u64,
    /// (time, bytes done) samples within the speed window.
    samples: std::collections::VecDeque<(f64, u64)>,
}

/// Speed is measured over this much recent time.
const SPEED_WINDOW_MS: f64 = 5000.0;

impl Transfer {
    /// A download of `total` bytes of which `done` are already here (cached), starting `now`.
    pub fn new(total: u64, done: u64, now: f64) -> Self {
        Self { total, done: done.min(total), samples: [(now, done.min(total))].into() }
    }

    /// `bytes` more arrived by `now`.
    pub fn advance(&mut self, bytes: u64, now: f64) {
        self.done = (self.done + bytes).min(self.total);
        self.samples.push_back((now, self.done));
        while self.samples.len() > 2 && self.samples.front().is_some_and(|(t, _)| now - t > SPEED_WINDOW_MS) {
            self.samples.pop_front();
        }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes per second over the window; `None` before two samples a moment apart.
    pub fn speed(&self) -> Option<f64> {
        let (&(t0, b0), &(t1, b1)) = (self.samples.front()?, self.samples.back()?);
        (t1 - t0 >= 1.0).then(|| (b1 - b0) as f64 * 1000.0 / (t1 - t0))
    }

    /// Seconds left at the current speed; `None` when unknown, 0 when done.
    pub fn eta_seconds(&self) -> Option<f64> {
        let left = self.total - self.done;
        if left == 0 {
            return Some(0.0);
        }
        self.speed().filter(|&speed| speed > 0.0).map(|speed| left as f64 / speed)
    }
}

//! A generation's parameters: their defaults (the one place they are set: `sdxl generate`'s
//! flags, the browser's requests and the page's form all take them from here), how a request
//! reads them, and their validation against what the loaded model and device allow.

use serde::{Deserialize, Deserializer, Serialize};

use super::conditioning::LongPrompt;
use super::sdxl::UNetShape;
use crate::error::{Error, Result};
use crate::models::vae::VaeConfig;
use crate::schedulers::SchedulerKind;

/// What to generate. Natively these are `sdxl generate`'s flags; in the browser the fields of
/// a request (absent fields take the defaults, unknown fields are refused).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::Args))]
pub struct GenerateParams {
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub prompt: String,
    /// Without one, the base's negative branch is zero embeddings (diffusers' default):
    /// `None` differs from `Some("")`.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub negative_prompt: Option<String>,
    #[serde(default = "default_steps")]
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = default_steps()))]
    pub steps: usize,
    #[serde(default = "default_guidance")]
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = default_guidance()))]
    pub guidance: f64,
    #[serde(default = "default_size")]
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = default_size()))]
    pub width: usize,
    #[serde(default = "default_size")]
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = default_size()))]
    pub height: usize,
    #[serde(default, deserialize_with = "parsed", serialize_with = "displayed")]
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t))]
    pub scheduler: SchedulerKind,
    /// Where the refiner takes over, as a fraction of the schedule (diffusers' `denoising_end`
    /// of the base and `denoising_start` of the refiner). Used only with a refiner.
    #[serde(default = "default_refiner_start")]
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = default_refiner_start()))]
    pub refiner_start: f64,
    /// The refiner's aesthetic-score conditioning (diffusers' `aesthetic_score`).
    #[serde(default = "default_aesthetic_score")]
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = default_aesthetic_score()))]
    pub aesthetic_score: f64,
    #[serde(default = "default_negative_aesthetic_score")]
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = default_negative_aesthetic_score()))]
    pub negative_aesthetic_score: f64,
    /// Past 77 tokens: `truncate` (diffusers, with a warning) or `chunk` (A1111: 75-token
    /// windows concatenated).
    #[serde(default, deserialize_with = "parsed", serialize_with = "displayed")]
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t))]
    pub long_prompt: LongPrompt,
}

fn default_steps() -> usize {
    40
}
fn default_guidance() -> f64 {
    5.0
}
fn default_size() -> usize {
    1024
}
fn default_refiner_start() -> f64 {
    0.8
}
fn default_aesthetic_score() -> f64 {
    6.0
}
fn default_negative_aesthetic_score() -> f64 {
    2.5
}

/// A field read from its name (`"dpmpp-2m"`), with the name's own error message.
fn parsed<'de, D: Deserializer<'de>, T: std::str::FromStr<Err = Error>>(deserializer: D) -> std::result::Result<T, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse().map_err(serde::de::Error::custom)
}

fn displayed<S: serde::Serializer, T: std::fmt::Display>(value: &T, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

impl GenerateParams {
    /// The defaults with `prompt`.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            negative_prompt: None,
            steps: default_steps(),
            guidance: default_guidance(),
            width: default_size(),
            height: default_size(),
            scheduler: SchedulerKind::default(),
            refiner_start: default_refiner_start(),
            aesthetic_score: default_aesthetic_score(),
            negative_aesthetic_score: default_negative_aesthetic_score(),
            long_prompt: LongPrompt::default(),
        }
    }

    /// Classifier-free guidance: a negative branch beside the prompt's (guidance above 1).
    pub fn guided(&self) -> bool {
        self.guidance > 1.0
    }

    /// Checks the parameters against what the model and device allow (the one validation:
    /// every run calls it before anything runs), returning warnings for what is allowed but
    /// unusual.
    pub fn validate(&self, rules: &SizeRules) -> Result<Vec<String>> {
        let invalid = |name: &str, message: String| Err(Error::Input { name: name.into(), message });
        let multiple = rules.multiple;
        for (name, size) in [("width", self.width), ("height", self.height)] {
            if size == 0 || size % multiple != 0 {
                return invalid(name, format!("{size} is not a positive multiple of {multiple}"));
            }
        }
        if self.steps == 0 {
            return invalid("steps", "at least 1 step is needed".into());
        }
        if self.steps > MAX_STEPS {
            return invalid("steps", format!("{} is more than {MAX_STEPS}", self.steps));
        }
        if !(self.guidance >= 0.0 && self.guidance.is_finite()) {
            return invalid("guidance", format!("{} is not a number ≥ 0", self.guidance));
        }
        if !(self.refiner_start > 0.0 && self.refiner_start < 1.0) {
            return invalid("refiner start", format!("{} is not inside (0, 1)", self.refiner_start));
        }
        for (name, score) in [("aesthetic score", self.aesthetic_score), ("negative aesthetic score", self.negative_aesthetic_score)] {
            if !score.is_finite() {
                return invalid(name, format!("{score} is not a number"));
            }
        }
        let mut warnings = Vec::new();
        let (width, height) = (self.width, self.height);
        let refuse = |needed: u64, what: &str, limit: &BufferLimit| {
            invalid(
                "size",
                format!("{width}×{height} needs a {} MiB buffer {what}; {}: choose a smaller size", needed.div_ceil(1 << 20), limit.text),
            )
        };
        if let Some(limit) = &rules.buffer_limit {
            let batch = rules.unet_batch(width, height, self.guided());
            let denoise = rules.largest_denoise_bytes(width, height, batch);
            if denoise > limit.bytes {
                return refuse(denoise, "to denoise", limit);
            }
            if self.guided() && batch == 1 {
                warnings.push(format!(
                    "{width}×{height} denoises the prompt and the negative prompt in a UNet pass each (twice the passes): \
                     in one pass they need a {} MiB buffer; {}",
                    rules.largest_denoise_bytes(width, height, 2).div_ceil(1 << 20),
                    limit.text
                ));
            }
        }
        if let Some(limit) = &rules.vae_limit {
            match rules.vae.decode_tiling(width, height, limit.bytes) {
                Err(needed) => return refuse(needed, "to decode the image, even in tiles", limit),
                Ok(Some(tiling)) => warnings.push(format!(
                    "{width}×{height} is decoded in {} overlapping tiles of {} px (diffusers' VAE tiling): \
                     a whole decode needs a {} MiB buffer; {}",
                    tiling.decode_tile_count(height / rules.vae.scale_factor(), width / rules.vae.scale_factor()),
                    tiling.tile_sample_min_size,
                    rules.vae.largest_decode_bytes(width, height).div_ceil(1 << 20),
                    limit.text
                )),
                Ok(None) => {}
            }
        }
        if self.width % 64 != 0 || self.height % 64 != 0 {
            warnings.push(format!(
                "{}×{} is not a multiple of 64; SDXL was trained on multiples of 64",
                self.width, self.height
            ));
        }
        Ok(warnings)
    }
}

/// More steps than any schedule of SDXL's 1000 training timesteps can take.
const MAX_STEPS: usize = 1000;

/// What the loaded model and its device allow.
#[derive(Clone, Debug)]
pub struct SizeRules {
    /// Sizes are multiples of this many pixels: the VAE's scale factor times 2 per UNet
    /// downsampling (32 for SDXL), else the UNet's skip connections do not line up.
    pub multiple: usize,
    pub vae: VaeConfig,
    /// The UNets' shapes: the larger of the base's and the refiner's at each level.
    pub unet: UNetShape,
    /// The largest buffer a run may use, when something limits it.
    pub buffer_limit: Option<BufferLimit>,
    /// The largest activation the VAE may take: the buffer limit, or less where a memory
    /// budget leaves the VAE's phase less ([`super::memory_plan::MemoryPlan::vae_limit`]).
    /// Decoding and encoding tile within it.
    pub vae_limit: Option<BufferLimit>,
}

impl SizeRules {
    /// Bytes of the largest activation a UNet pass over `batch` latents of a `width`×`height`
    /// image takes.
    pub fn largest_denoise_bytes(&self, width: usize, height: usize, batch: u64) -> u64 {
        self.unet.largest_bytes(self.vae.latent_pixels(width, height), batch)
    }

    /// How many latents a UNet pass takes at `width`×`height`: under classifier-free guidance
    /// (`guided`) the prompt's and the negative prompt's together, as diffusers batches them,
    /// where the buffer limit holds that pass's largest activation, else one per pass; 1
    /// unguided.
    pub fn unet_batch(&self, width: usize, height: usize, guided: bool) -> u64 {
        let fits = |limit: &BufferLimit| self.largest_denoise_bytes(width, height, 2) <= limit.bytes;
        if guided && self.buffer_limit.as_ref().is_none_or(fits) { 2 } else { 1 }
    }
}

/// A limit on one buffer, and what sets it, for the message ("this GPU allows 1024 MiB").
#[derive(Clone, Debug)]
pub struct BufferLimit {
    pub bytes: u64,
    pub text: String,
}

impl BufferLimit {
    /// The lower of two limits, where either is set (the first on a tie).
    pub fn narrower(a: Option<&BufferLimit>, b: Option<&BufferLimit>) -> Option<BufferLimit> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.bytes < a.bytes { b } else { a }.clone()),
            (a, b) => a.or(b).cloned(),
        }
    }
}

//! Text-to-image as diffusers' `StableDiffusionXLPipeline`, optionally handing over to the
//! refiner as `StableDiffusionXLImg2ImgPipeline` in ensemble-of-experts mode (the base denoises
//! up to `refiner_start`, the refiner continues on the same schedule).

pub mod assembly;
pub mod conditioning;
#[cfg(not(target_arch = "wasm32"))]
pub mod folder;
pub mod parts;
pub mod png;
pub mod preview;

use std::ops::ControlFlow;

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::models::unet::UNet2DConditionModel;
use crate::models::vae::{AutoencoderKL, VaeConfig};
use crate::noise::NoiseGenerator;
use crate::schedulers::{self, Scheduler, SchedulerConfig, SchedulerKind, StepOutput};
use conditioning::{
    LongPrompt, PromptEmbeds, TextEncoder, base_time_ids, encode_prompt, refiner_time_ids, windows_needed,
};
use preview::{Preview, latent_preview};

/// The base model: both text encoders, the UNet, the VAE and the scheduler settings.
pub struct Base {
    pub text_encoder: TextEncoder,
    pub text_encoder_2: TextEncoder,
    pub unet: UNet2DConditionModel,
    pub vae: AutoencoderKL,
    pub scheduler: SchedulerConfig,
    /// The VAE's shape, latent scaling factor and pixels per latent side (8 for SDXL).
    pub vae_config: VaeConfig,
    /// `model_index.json`'s `force_zeros_for_empty_prompt` (true for SDXL base).
    pub force_zeros_for_empty_prompt: bool,
}

/// The refiner's own parts. It shares text encoder 2 and the VAE with the base, as the SDXL
/// model card's ensemble-of-experts example does.
pub struct Refiner {
    pub unet: UNet2DConditionModel,
    /// `force_zeros_for_empty_prompt` of the refiner's `model_index.json` (false for SDXL).
    pub force_zeros_for_empty_prompt: bool,
}

#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub prompt: String,
    /// `None` differs from `Some("")` on the base: no negative prompt means zero embeddings.
    pub negative_prompt: Option<String>,
    pub steps: usize,
    pub guidance: f64,
    pub width: usize,
    pub height: usize,
    pub scheduler: SchedulerKind,
    /// Where the refiner takes over, as a fraction of the schedule (diffusers' `denoising_end`
    /// of the base and `denoising_start` of the refiner). Used only with a refiner.
    pub refiner_start: f64,
    pub aesthetic_score: f64,
    pub negative_aesthetic_score: f64,
    pub long_prompt: LongPrompt,
}

impl GenerateParams {
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            negative_prompt: None,
            steps: 40,
            guidance: 5.0,
            width: 1024,
            height: 1024,
            scheduler: SchedulerKind::Euler,
            refiner_start: 0.8,
            aesthetic_score: 6.0,
            negative_aesthetic_score: 2.5,
            long_prompt: LongPrompt::Truncate,
        }
    }

    /// Refuses a size whose VAE decoding needs one buffer larger than `limit` bytes;
    /// `limit_text` says what sets the limit ("this GPU allows 1024 MiB").
    pub fn check_decode_fits(&self, vae: &VaeConfig, limit: u64, limit_text: &str) -> Result<()> {
        let needed = vae.largest_decode_bytes(self.width, self.height);
        if needed <= limit {
            return Ok(());
        }
        Err(Error::Input {
            name: "size".into(),
            message: format!(
                "{}×{} needs a {} MiB buffer to decode the image; {limit_text}: choose a smaller size",
                self.width,
                self.height,
                needed.div_ceil(1 << 20)
            ),
        })
    }

    /// Checks the parameters, returning warnings for what is allowed but unusual.
    pub fn validate(&self, vae_scale_factor: usize) -> Result<Vec<String>> {
        let invalid = |name: &str, message: String| Err(Error::Input { name: name.into(), message });
        for (name, size) in [("width", self.width), ("height", self.height)] {
            if size == 0 || size % vae_scale_factor != 0 {
                return invalid(name, format!("{size} is not a positive multiple of {vae_scale_factor}"));
            }
        }
        if self.steps == 0 {
            return invalid("steps", "at least 1 step is needed".into());
        }
        if !(self.guidance >= 0.0 && self.guidance.is_finite()) {
            return invalid("guidance", format!("{} is not a number ≥ 0", self.guidance));
        }
        if !(self.refiner_start > 0.0 && self.refiner_start < 1.0) {
            return invalid("refiner start", format!("{} is not inside (0, 1)", self.refiner_start));
        }
        let mut warnings = Vec::new();
        if self.width % 64 != 0 || self.height % 64 != 0 {
            warnings.push(format!(
                "{}×{} is not a multiple of 64; SDXL was trained on multiples of 64",
                self.width, self.height
            ));
        }
        Ok(warnings)
    }
}

/// Which network a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Base,
    Refiner,
}

/// Receives each finished step; returning `ControlFlow::Break` cancels the run with
/// [`Error::Cancelled`] (what was allocated for it is dropped on return).
pub trait Progress {
    /// Whether `step` should be given a preview (computing one reads the latents back).
    fn wants_preview(&self) -> bool {
        false
    }
    /// `index` counts from 1 to `total` over base and refiner steps together.
    fn step(&mut self, stage: Stage, index: usize, total: usize, preview: Option<Preview>) -> ControlFlow<()>;
    fn warn(&mut self, message: String) {
        let _ = message;
    }
}

/// The run's randomness: the initial latents' noise [1, 4, H/8, W/8] and the fresh noise
/// ancestral samplers draw at each step.
pub struct Noise<'a> {
    pub initial: Tensor<4>,
    pub steps: Box<dyn FnMut([usize; 4]) -> Tensor<4> + 'a>,
}

impl Noise<'_> {
    /// Everything from one seeded stream (see [`crate::noise`]): the initial noise first,
    /// then each step's, so a seed fixes the whole image natively and in the browser.
    pub fn from_seed(seed: u64, latent_shape: [usize; 4], device: &Device) -> Self {
        let mut generator = NoiseGenerator::new(seed);
        let initial = generator.normal(latent_shape, device);
        let device = device.clone();
        Self { initial, steps: Box::new(move |shape| generator.normal(shape, &device)) }
    }

    /// Given initial noise (diffusers' `latents=`); step noise from a generator seeded with 0.
    pub fn given(initial: Tensor<4>, device: &Device) -> Self {
        let mut generator = NoiseGenerator::new(0);
        let device = device.clone();
        Self { initial, steps: Box::new(move |shape| generator.normal(shape, &device)) }
    }
}

/// The image as f32 [H, W, 3] in 0..1 (diffusers' `output_type="np"`).
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub pixels: TensorData,
}

impl Image {
    /// From pixels [H, W, 3].
    pub fn new(pixels: TensorData) -> Self {
        let (height, width) = (pixels.shape()[0], pixels.shape()[1]);
        Self { width, height, pixels }
    }
}

impl Base {
    /// Text to image: [`Self::denoise`] then [`Self::decode`].
    pub fn generate(
        &self,
        refiner: Option<&Refiner>,
        params: &GenerateParams,
        noise: Noise,
        device: &Device,
        progress: &mut dyn Progress,
    ) -> Result<Image> {
        Ok(self.decode(self.denoise(refiner, params, noise, device, progress)?))
    }

    /// The final latents (diffusers' `output_type="latent"` of the last pipeline run).
    pub fn denoise(
        &self,
        refiner: Option<&Refiner>,
        params: &GenerateParams,
        noise: Noise,
        device: &Device,
        progress: &mut dyn Progress,
    ) -> Result<Tensor<4>> {
        self.start(refiner, params, noise, device, &mut |warning| progress.warn(warning))?.run(progress)
    }

    /// A text-to-image run, ready to take its steps one at a time ([`Generation::step`]): the
    /// prompts are encoded, the noise scaled, the base's and the refiner's shares of the schedule
    /// fixed. `warn` receives what is allowed but unusual (sizes, truncated prompts).
    pub fn start<'a>(
        &'a self,
        refiner: Option<&'a Refiner>,
        params: &GenerateParams,
        noise: Noise<'a>,
        device: &Device,
        warn: &mut dyn FnMut(String),
    ) -> Result<Generation<'a>> {
        for warning in params.validate(self.vae_config.scale_factor())? {
            warn(warning);
        }
        let latent_shape = self.latent_shape(params);
        if noise.initial.dims() != latent_shape {
            return Err(Error::Input {
                name: "noise".into(),
                message: format!("shape {:?}, expected {latent_shape:?}", noise.initial.dims()),
            });
        }
        let encoders = [&self.text_encoder, &self.text_encoder_2];
        let (positive, negative) = self.conditioning(&encoders, params, self.force_zeros_for_empty_prompt, device, warn)?;

        let scheduler = schedulers::new_scheduler(params.scheduler, &self.scheduler, params.steps)?;
        let timesteps = scheduler.timesteps().to_vec();
        let train_steps = self.scheduler.num_train_timesteps;
        let (base_end, refiner_begin) = match refiner {
            Some(_) => (
                schedulers::steps_before(&timesteps, params.refiner_start, train_steps),
                schedulers::first_step_after(&timesteps, params.refiner_start, train_steps, scheduler.order()),
            ),
            None => (timesteps.len(), timesteps.len()),
        };
        let size = (params.height, params.width);
        let time_ids = base_time_ids(size, (0, 0), size);
        let latents = noise.initial * scheduler.init_noise_sigma();
        let base_run = Denoise::new(&self.unet, positive, negative, &time_ids, &time_ids, params.guidance, Stage::Base, device);
        let mut phases = vec![Phase { denoise: base_run, scheduler, steps: 0..base_end }];
        if let Some(refiner) = refiner {
            // The refiner continues the same schedule on a fresh scheduler (the pipeline's own).
            phases.push(Phase {
                denoise: self.refiner_denoise(refiner, params, size, device, warn)?,
                scheduler: schedulers::new_scheduler(params.scheduler, &self.scheduler, params.steps)?,
                steps: refiner_begin..timesteps.len(),
            });
        }
        Ok(Generation::new(phases, latents, noise.steps, device))
    }

    /// Refines a finished image [H, W, 3] in 0..1 with the refiner, as
    /// `StableDiffusionXLImg2ImgPipeline` with `strength`: the image is encoded (a sample of the
    /// VAE's posterior), noised to the level where the last `strength` of the schedule starts,
    /// and denoised from there. `draw` gives the two Gaussian draws, in diffusers' order: the
    /// posterior sample, then the added noise. Returns the final latents.
    #[allow(clippy::too_many_arguments)]
    pub fn refine_image(
        &self,
        refiner: &Refiner,
        image: Tensor<3>,
        strength: f64,
        params: &GenerateParams,
        draw: &mut dyn FnMut([usize; 4]) -> Tensor<4>,
        device: &Device,
        progress: &mut dyn Progress,
    ) -> Result<Tensor<4>> {
        let [height, width, channels] = image.dims();
        if channels != 3 || (height, width) != (params.height, params.width) {
            return Err(Error::Input {
                name: "image".into(),
                message: format!("shape [{height}, {width}, {channels}], expected [{}, {}, 3]", params.height, params.width),
            });
        }
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(Error::Input { name: "strength".into(), message: format!("{strength} is not inside (0, 1]") });
        }
        for warning in params.validate(self.vae_config.scale_factor())? {
            progress.warn(warning);
        }
        let scheduler = schedulers::new_scheduler(params.scheduler, &self.scheduler, params.steps)?;
        let steps = scheduler.timesteps().len();
        let first = schedulers::first_step_for_strength(params.steps, strength, scheduler.order());
        if first >= steps {
            return Err(Error::Input {
                name: "strength".into(),
                message: format!("{strength} of {} steps leaves no step to run", params.steps),
            });
        }
        let pixels = image.permute([2, 0, 1]).unsqueeze::<4>() * 2.0 - 1.0;
        let (mean, std) = self.vae.encode_distribution(pixels);
        let posterior = draw(mean.dims());
        let clean = (mean + std * posterior) * self.vae_config.scaling_factor;
        let noise = draw(clean.dims());
        let latents = scheduler.add_noise(clean, noise, first);

        let denoise = self.refiner_denoise(refiner, params, (height, width), device, &mut |w| progress.warn(w))?;
        let phases = vec![Phase { denoise, scheduler, steps: first..steps }];
        Generation::new(phases, latents, Box::new(draw), device).run(progress)
    }

    /// The refiner's share of a run: text encoder 2 alone, aesthetic-score time ids.
    fn refiner_denoise<'a>(
        &self,
        refiner: &'a Refiner,
        params: &GenerateParams,
        size: (usize, usize),
        device: &Device,
        warn: &mut dyn FnMut(String),
    ) -> Result<Denoise<'a>> {
        let (positive, negative) =
            self.conditioning(&[&self.text_encoder_2], params, refiner.force_zeros_for_empty_prompt, device, warn)?;
        Ok(Denoise::new(
            &refiner.unet,
            positive,
            negative,
            &refiner_time_ids(size, (0, 0), params.aesthetic_score),
            &refiner_time_ids(size, (0, 0), params.negative_aesthetic_score),
            params.guidance,
            Stage::Refiner,
            device,
        ))
    }

    /// The initial noise's shape for an image of the requested size.
    pub fn latent_shape(&self, params: &GenerateParams) -> [usize; 4] {
        [1, 4, params.height / self.vae_config.scale_factor(), params.width / self.vae_config.scale_factor()]
    }

    /// The prompt's embeddings and, under guidance, the negative branch's: zeros when there is
    /// no negative prompt and the model asks for it, else the encoding of the negative prompt
    /// (or of ""). In chunked mode both get the same number of windows.
    fn conditioning(
        &self,
        encoders: &[&TextEncoder],
        params: &GenerateParams,
        force_zeros_for_empty_prompt: bool,
        device: &Device,
        warn: &mut dyn FnMut(String),
    ) -> Result<(PromptEmbeds, Option<PromptEmbeds>)> {
        let mode = params.long_prompt;
        let negative_prompt = match &params.negative_prompt {
            _ if params.guidance <= 1.0 => None,
            None if force_zeros_for_empty_prompt => None,
            negative => Some(negative.as_deref().unwrap_or("")),
        };
        let mut windows = windows_needed(encoders, &params.prompt, mode)?;
        if let Some(negative) = negative_prompt {
            windows = windows.max(windows_needed(encoders, negative, mode)?);
        }
        let positive = encode_prompt(encoders, &params.prompt, mode, windows, device, warn)?;
        let negative = match negative_prompt {
            Some(negative) => Some(encode_prompt(encoders, negative, mode, windows, device, warn)?),
            None if params.guidance > 1.0 => Some(positive.zeros_like()),
            None => None,
        };
        Ok((positive, negative))
    }

    /// Latents → image [H, W, 3] in 0..1.
    pub fn decode(&self, latents: Tensor<4>) -> Image {
        Image::new(self.decode_pixels(latents).into_data())
    }

    /// Latents → pixels [H, W, 3] in 0..1, left on the device (the browser reads them back
    /// asynchronously).
    pub fn decode_pixels(&self, latents: Tensor<4>) -> Tensor<3> {
        let image = self.vae.decode(latents / self.vae_config.scaling_factor);
        let [_, _, height, width] = image.dims();
        (image / 2.0 + 0.5).clamp(0.0, 1.0).narrow(0, 0, 1).reshape([3, height, width]).permute([1, 2, 0])
    }
}

/// One network's share of the denoising loop.
struct Denoise<'a> {
    unet: &'a UNet2DConditionModel,
    /// The UNet's conditioning, batched once per run: [negative, positive] under classifier-free
    /// guidance, as diffusers concatenates it, else the positive alone.
    context: Tensor<3>,
    pooled: Tensor<2>,
    time_ids: Tensor<2>,
    guidance: f64,
    stage: Stage,
}

impl<'a> Denoise<'a> {
    /// `negative` is present when classifier-free guidance is on.
    #[allow(clippy::too_many_arguments)]
    fn new(
        unet: &'a UNet2DConditionModel,
        positive: PromptEmbeds,
        negative: Option<PromptEmbeds>,
        time_ids: &[f32],
        negative_time_ids: &[f32],
        guidance: f64,
        stage: Stage,
        device: &Device,
    ) -> Self {
        let ids = |ids: &[f32]| Tensor::<1>::from_floats(ids, device).unsqueeze::<2>();
        let (context, pooled, time_ids) = match negative {
            Some(negative) => (
                Tensor::cat(vec![negative.context, positive.context], 0),
                Tensor::cat(vec![negative.pooled, positive.pooled], 0),
                Tensor::cat(vec![ids(negative_time_ids), ids(time_ids)], 0),
            ),
            None => (positive.context, positive.pooled, ids(time_ids)),
        };
        Self { unet, context, pooled, time_ids, guidance, stage }
    }

    /// One step of the schedule: the UNet on the (doubled, under guidance) latents, guidance,
    /// the scheduler's update.
    fn step(
        &self,
        scheduler: &mut dyn Scheduler,
        latents: Tensor<4>,
        step: usize,
        noise: &mut dyn FnMut([usize; 4]) -> Tensor<4>,
        device: &Device,
    ) -> StepOutput {
        let batch = self.context.dims()[0];
        let t = scheduler.timesteps()[step];
        let input = scheduler.scale_model_input(latents.clone(), step);
        let input = if batch == 2 { Tensor::cat(vec![input.clone(), input], 0) } else { input };
        let timestep = Tensor::<1>::from_floats(vec![t; batch].as_slice(), device);
        let prediction = self.unet.forward(input, timestep, self.context.clone(), self.pooled.clone(), self.time_ids.clone());
        let prediction = if batch == 2 {
            let [uncond, text] = prediction.chunk(2, 0).try_into().expect("two halves");
            uncond.clone() + (text - uncond) * self.guidance
        } else {
            prediction
        };
        scheduler.step(prediction, step, latents, noise)
    }
}

/// One network's share of a run: its steps of the schedule, on its own scheduler.
struct Phase<'a> {
    denoise: Denoise<'a>,
    scheduler: Box<dyn Scheduler>,
    steps: std::ops::Range<usize>,
}

/// A finished step of a [`Generation`].
pub struct Step {
    pub stage: Stage,
    /// Counts from 1 to `total` over base and refiner steps together.
    pub index: usize,
    pub total: usize,
    /// The scheduler's estimate of the clean latents [1, 4, h, w] (what previews show).
    pub denoised: Tensor<4>,
}

/// A run taken one step at a time, so a caller can show progress, read previews back
/// asynchronously (the browser) or stop between steps. Dropping it frees what it holds.
pub struct Generation<'a> {
    phases: std::collections::VecDeque<Phase<'a>>,
    latents: Tensor<4>,
    draw: Box<dyn FnMut([usize; 4]) -> Tensor<4> + 'a>,
    device: Device,
    done: usize,
    total: usize,
}

impl<'a> Generation<'a> {
    fn new(
        phases: Vec<Phase<'a>>,
        latents: Tensor<4>,
        draw: Box<dyn FnMut([usize; 4]) -> Tensor<4> + 'a>,
        device: &Device,
    ) -> Self {
        let total = phases.iter().map(|phase| phase.steps.len()).sum();
        Self { phases: phases.into(), latents, draw, device: device.clone(), done: 0, total }
    }

    /// Takes the next step; `None` when the schedule is done.
    pub fn step(&mut self) -> Option<Step> {
        while self.phases.front().is_some_and(|phase| phase.steps.is_empty()) {
            self.phases.pop_front();
        }
        let phase = self.phases.front_mut()?;
        let step = phase.steps.next().expect("a phase with steps left");
        let out = phase.denoise.step(phase.scheduler.as_mut(), self.latents.clone(), step, &mut *self.draw, &self.device);
        self.latents = out.prev_sample;
        self.done += 1;
        Some(Step { stage: phase.denoise.stage, index: self.done, total: self.total, denoised: out.pred_original_sample })
    }

    /// Steps to the end, reporting each step (with a preview when asked for); stops with
    /// [`Error::Cancelled`] when `progress` says so.
    pub fn run(mut self, progress: &mut dyn Progress) -> Result<Tensor<4>> {
        while let Some(step) = self.step() {
            let preview = progress.wants_preview().then(|| latent_preview(step.denoised.narrow(0, 0, 1).into_data()));
            if progress.step(step.stage, step.index, step.total, preview).is_break() {
                return Err(Error::Cancelled);
            }
        }
        Ok(self.latents)
    }

    /// The current latents: the final ones once [`Self::step`] returned `None`.
    pub fn latents(&self) -> Tensor<4> {
        self.latents.clone()
    }
}

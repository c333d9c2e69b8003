//! Refining a finished image with the refiner, as diffusers' `StableDiffusionXLImg2ImgPipeline`
//! with `strength`: checked (no network needed), encoded (the VAE), conditioned (the text
//! encoders), denoised (the refiner's UNet) and decoded (the VAE) — in that order whether every
//! network stays loaded ([`Sdxl::refine_image`]) or one is loaded at a time
//! ([`refine_planned`]), so the two give the same image.

use burn::tensor::{Device, Tensor};

use super::generation::{Generation, Noise, Phase, Progress};
use super::memory_plan::{MemoryPlan, Network};
use super::params::{BufferLimit, GenerateParams};
use super::planned_run::{RunHost, begin, denoise_and_decode, pipeline, prepare};
use super::sdxl::{Models, Sdxl};
use crate::error::{Error, Result};
use crate::schedulers::{self, Scheduler};

/// A refinement whose input was checked: its schedule and the step it starts from.
struct Refining {
    scheduler: Box<dyn Scheduler>,
    first: usize,
}

impl Sdxl<'_> {
    /// Refines a finished image [H, W, 3] in 0..1 with the refiner: the image is encoded (a
    /// sample of the VAE's posterior), noised to the level where the last `strength` of the
    /// schedule starts, and denoised from there. `draw` gives the two Gaussian draws, in
    /// diffusers' order: the posterior sample, then the added noise. Returns the final latents.
    pub fn refine_image(
        &self,
        image: Tensor<3>,
        strength: f64,
        params: &GenerateParams,
        draw: &mut dyn FnMut([usize; 4]) -> Tensor<4>,
        device: &Device,
        progress: &mut dyn Progress,
    ) -> Result<Tensor<4>> {
        let refining = self.check_refining(image.dims(), strength, params, &mut |w| progress.warn(w))?;
        let latents = self.noised_image(image, &refining, draw)?;
        let generation = self.start_refining(refining, latents, params, Box::new(draw), device, &mut |w| progress.warn(w))?;
        self.run(generation, progress)
    }

    /// The one validation of a refinement (an image of `dims`), before any network is needed.
    fn check_refining(&self, dims: [usize; 3], strength: f64, params: &GenerateParams, warn: &mut dyn FnMut(String)) -> Result<Refining> {
        if self.refiner.is_none() {
            return Err(Error::Input { name: "refiner".into(), message: "refining an image needs a refiner".into() });
        }
        let [height, width, channels] = dims;
        if channels != 3 || (height, width) != (params.height, params.width) {
            return Err(Error::Input {
                name: "image".into(),
                message: format!("shape [{height}, {width}, {channels}], expected [{}, {}, 3]", params.height, params.width),
            });
        }
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(Error::Input { name: "strength".into(), message: format!("{strength} is not inside (0, 1]") });
        }
        self.check(params, warn)?;
        let scheduler = schedulers::new_scheduler(params.scheduler, &self.base.scheduler, params.steps)?;
        let first = schedulers::first_step_for_strength(params.steps, strength);
        if first >= scheduler.timesteps().len() {
            return Err(Error::Input {
                name: "strength".into(),
                message: format!("{strength} of {} steps leaves no step to run", params.steps),
            });
        }
        Ok(Refining { scheduler, first })
    }

    /// The image encoded by the VAE (in tiles where the buffer limit asks) and noised to the
    /// refinement's first step: two draws, the posterior sample then the added noise.
    fn noised_image(&self, image: Tensor<3>, refining: &Refining, draw: &mut dyn FnMut([usize; 4]) -> Tensor<4>) -> Result<Tensor<4>> {
        let [height, width, _] = image.dims();
        let vae = self.base.vae()?;
        let pixels = image.permute([2, 0, 1]).unsqueeze::<4>() * 2.0 - 1.0;
        let (mean, std) = match self.encode_tiling(width, height)? {
            Some(tiling) => vae.encode_distribution_with_tiling(pixels, &tiling)?,
            None => vae.encode_distribution(pixels),
        };
        let posterior = draw(mean.dims());
        let clean = (mean + std * posterior) * self.base.vae_config.scaling_factor;
        let noise = draw(clean.dims());
        Ok(refining.scheduler.add_noise(clean, noise, refining.first))
    }

    /// The refiner's run from `latents`, its prompts encoded (needs the text encoders).
    fn start_refining<'n>(
        &self,
        refining: Refining,
        latents: Tensor<4>,
        params: &GenerateParams,
        draw: Box<dyn FnMut([usize; 4]) -> Tensor<4> + 'n>,
        device: &Device,
        warn: &mut dyn FnMut(String),
    ) -> Result<Generation<'n>> {
        let refiner = self.refiner.ok_or_else(|| Error::NotLoaded(Network::RefinerUnet.describe()))?;
        let denoise = self.refiner_denoise(refiner, params, (params.height, params.width), device, warn)?;
        let steps = refining.first..refining.scheduler.timesteps().len();
        Ok(Generation::new(vec![Phase { denoise, scheduler: refining.scheduler, steps }], latents, draw, device))
    }
}

/// [`Sdxl::refine_image`] under a memory plan, decoded: the VAE for the encoding, the text
/// encoders, the refiner's UNet, the VAE again, each held as `plan` says (one at a time when
/// sequential; the base's UNet is never needed). Checked before anything loads; the draws come
/// from `noise.steps`. Returns the pixels [H, W, 3], on the device.
#[allow(clippy::too_many_arguments)]
pub async fn refine_planned(
    models: &mut Models,
    plan: &MemoryPlan,
    limit: Option<BufferLimit>,
    image: Tensor<3>,
    strength: f64,
    params: &GenerateParams,
    noise: Noise<'_>,
    device: &Device,
    host: &mut impl RunHost,
) -> Result<Tensor<3>> {
    let sdxl = pipeline(models, plan, true, &limit);
    let refining = sdxl.check_refining(image.dims(), strength, params, &mut |w| host.warn(w))?;
    let working = sdxl.working(params, true);
    let mut draw = noise.steps;
    begin(models, plan, &working, Network::Vae, device, host).await?;
    let latents = pipeline(models, plan, true, &limit).noised_image(image, &refining, &mut *draw)?;
    prepare(models, plan, Network::TextEncoders, device, host).await?;
    let generation = pipeline(models, plan, true, &limit).start_refining(refining, latents, params, draw, device, &mut |w| host.warn(w))?;
    denoise_and_decode(models, plan, true, limit, generation, device, host).await
}

//! Text to image, as diffusers' `StableDiffusionXLPipeline`, optionally handing over to the
//! refiner as `StableDiffusionXLImg2ImgPipeline` in ensemble-of-experts mode (the base denoises
//! up to `refiner_start`, the refiner continues on the same schedule).

use burn::tensor::{Device, Tensor};

use super::conditioning::base_time_ids;
use super::generation::{Denoise, Generation, Noise, Phase, Progress, Stage};
use super::image::Image;
use super::memory_plan::{MemoryPlan, Network};
use super::params::{BufferLimit, GenerateParams};
use super::planned_run::{RunHost, begin, denoise_and_decode, pipeline};
use super::sdxl::{Models, Sdxl};
use crate::error::Result;
use crate::schedulers;

impl Sdxl<'_> {
    /// Text to image: [`Self::denoise`] then the base's VAE ([`Sdxl::decode`]).
    pub fn generate(&self, params: &GenerateParams, noise: Noise, device: &Device, progress: &mut dyn Progress) -> Result<Image> {
        self.decode(self.denoise(params, noise, device, progress)?)
    }

    /// The final latents (diffusers' `output_type="latent"` of the last pipeline run).
    pub fn denoise(&self, params: &GenerateParams, noise: Noise, device: &Device, progress: &mut dyn Progress) -> Result<Tensor<4>> {
        let generation = self.start(params, noise, device, &mut |warning| progress.warn(warning))?;
        self.run(generation, progress)
    }

    /// A text-to-image run, ready to take its steps one at a time ([`Sdxl::step`]): the
    /// parameters checked, the prompts encoded, the noise scaled, the base's and the refiner's
    /// shares of the schedule fixed. `warn` receives what is allowed but unusual (sizes,
    /// truncated prompts). Needs only the text encoders loaded.
    pub fn start<'n>(
        &self,
        params: &GenerateParams,
        noise: Noise<'n>,
        device: &Device,
        warn: &mut dyn FnMut(String),
    ) -> Result<Generation<'n>> {
        self.check(params, warn)?;
        let base = self.base;
        let initial = (noise.initial)(base.latent_shape(params))?;
        let encoders = base.text_encoders()?;
        let (positive, negative) = self.conditioning(&encoders, params, base.force_zeros_for_empty_prompt, device, warn)?;

        let scheduler = schedulers::new_scheduler(params.scheduler, &base.scheduler, params.steps)?;
        let timesteps = scheduler.timesteps().to_vec();
        let train_steps = base.scheduler.num_train_timesteps;
        let (base_end, refiner_begin) = match self.refiner {
            Some(_) => (
                schedulers::steps_before(&timesteps, params.refiner_start, train_steps),
                schedulers::first_step_after(&timesteps, params.refiner_start, train_steps),
            ),
            None => (timesteps.len(), timesteps.len()),
        };
        let size = (params.height, params.width);
        let time_ids = base_time_ids(size, (0, 0), size);
        let latents = initial * scheduler.init_noise_sigma();
        let batch = self.unet_batch(params);
        let base_run = Denoise::new(positive, negative, &time_ids, &time_ids, params.guidance, batch, Stage::Base, device);
        let mut phases = vec![Phase { denoise: base_run, scheduler, steps: 0..base_end }];
        if let Some(refiner) = self.refiner {
            // The refiner continues the same schedule on a fresh scheduler (the pipeline's own).
            phases.push(Phase {
                denoise: self.refiner_denoise(refiner, params, size, device, warn)?,
                scheduler: schedulers::new_scheduler(params.scheduler, &base.scheduler, params.steps)?,
                steps: refiner_begin..timesteps.len(),
            });
        }
        Ok(Generation::new(phases, latents, noise.steps, device))
    }
}

/// Text to image under a memory plan: before each phase (the prompts, the base's steps, the
/// refiner's, the decode) the device is made to hold what `plan` keeps for it, the host loading
/// a released network again. The same computation as [`Sdxl::generate`] in the same order, so
/// the image is the same bit for bit, unless the plan's budget is too small for a whole decode:
/// the VAE then tiles ([`Sdxl::within_plan`]). The parameters are checked before anything loads;
/// `limit` bounds buffers as [`Sdxl::with_buffer_limit`]. Returns the pixels [H, W, 3], on the
/// device.
#[allow(clippy::too_many_arguments)]
pub async fn generate_planned(
    models: &mut Models,
    plan: &MemoryPlan,
    refined: bool,
    limit: Option<BufferLimit>,
    params: &GenerateParams,
    noise: Noise<'_>,
    device: &Device,
    host: &mut impl RunHost,
) -> Result<Tensor<3>> {
    // Refused before anything loads; the warnings come once, from `start`.
    let sdxl = pipeline(models, plan, refined, &limit);
    sdxl.check(params, &mut |_| {})?;
    let working = sdxl.working(params, false);
    begin(models, plan, &working, Network::TextEncoders, device, host).await?;
    let generation = pipeline(models, plan, refined, &limit).start(params, noise, device, &mut |w| host.warn(w))?;
    denoise_and_decode(models, plan, refined, limit, generation, device, host).await
}

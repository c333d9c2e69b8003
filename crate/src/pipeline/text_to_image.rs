//! Text to image, as diffusers' `StableDiffusionXLPipeline`, optionally handing over to the
//! refiner as `StableDiffusionXLImg2ImgPipeline` in ensemble-of-experts mode (the base denoises
//! up to `refiner_start`, the refiner continues on the same schedule).

use burn::tensor::{Device, Tensor};

use super::conditioning::base_time_ids;
use super::generation::{Denoise, Generation, Noise, Phase, Progress, Stage, Step};
use super::image::Image;
use super::memory_plan::{MemoryPlan, Network};
use super::params::{BufferLimit, GenerateParams};
use super::sdxl::{Loaded, Models, Sdxl};
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
        let base_run = Denoise::new(positive, negative, &time_ids, &time_ids, params.guidance, Stage::Base, device);
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

/// What a run under a memory plan asks of its caller: a released network loaded again
/// (natively from its folder, in the browser from Cache Storage), each finished step reported
/// (`Err(Cancelled)` stops the run), warnings passed on. Natively these finish at once
/// ([`super::folder::Folders`]); in the browser they await the cache and the page.
#[allow(async_fn_in_trait)] // implemented and awaited within this crate only, never sent across threads
pub trait RunHost {
    async fn load(&mut self, network: Network) -> Result<Loaded>;
    async fn step(&mut self, step: Step) -> Result<()>;
    fn warn(&mut self, message: String);
}

/// Text to image under a memory plan: before each phase (the prompts, the base's steps, the
/// refiner's, the decode) the device is made to hold what `plan` keeps for it, the host loading
/// a released network again. The same computation as [`Sdxl::generate`] in the same order, so
/// the image is the same bit for bit. The parameters are checked before anything loads; `limit`
/// bounds buffers as [`Sdxl::with_buffer_limit`]. Returns the pixels [H, W, 3], on the device.
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
    models.sdxl(refined, limit.clone()).check(params, &mut |_| {})?;
    prepare(models, plan, Network::TextEncoders, device, host).await?;
    let mut generation = models.sdxl(refined, limit.clone()).start(params, noise, device, &mut |w| host.warn(w))?;
    while let Some(stage) = generation.next_stage() {
        let network = match stage {
            Stage::Base => Network::Unet,
            Stage::Refiner => Network::RefinerUnet,
        };
        prepare(models, plan, network, device, host).await?;
        if let Some(step) = models.sdxl(refined, limit.clone()).step(&mut generation)? {
            host.step(step).await?;
        }
    }
    prepare(models, plan, Network::Vae, device, host).await?;
    let pixels = models.sdxl(refined, limit.clone()).decode_pixels(generation.latents());
    models.sample_memory(device);
    pixels
}

/// Makes the device hold what `plan` keeps for a phase running `network`.
async fn prepare(models: &mut Models, plan: &MemoryPlan, network: Network, device: &Device, host: &mut impl RunHost) -> Result<()> {
    if models.release_for(plan, network, device) {
        let loaded = host.load(network).await?;
        models.hold(network, loaded)?;
    }
    Ok(())
}

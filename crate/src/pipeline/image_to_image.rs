//! Refining a finished image with the refiner, as diffusers' `StableDiffusionXLImg2ImgPipeline`
//! with `strength`.

use burn::tensor::{Device, Tensor};

use super::generation::{Generation, Phase, Progress};
use super::params::GenerateParams;
use super::sdxl::Sdxl;
use crate::error::{Error, Result};
use crate::schedulers;

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
        let Some(refiner) = self.refiner else {
            return Err(Error::Input { name: "refiner".into(), message: "refining an image needs a refiner".into() });
        };
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
        self.check(params, &mut |warning| progress.warn(warning))?;
        let base = self.base;
        let scheduler = schedulers::new_scheduler(params.scheduler, &base.scheduler, params.steps)?;
        let steps = scheduler.timesteps().len();
        let first = schedulers::first_step_for_strength(params.steps, strength);
        if first >= steps {
            return Err(Error::Input {
                name: "strength".into(),
                message: format!("{strength} of {} steps leaves no step to run", params.steps),
            });
        }
        let pixels = image.permute([2, 0, 1]).unsqueeze::<4>() * 2.0 - 1.0;
        let (mean, std) = match self.encode_tiling(width, height)? {
            Some(tiling) => base.vae()?.encode_distribution_with_tiling(pixels, &tiling)?,
            None => base.vae()?.encode_distribution(pixels),
        };
        let posterior = draw(mean.dims());
        let clean = (mean + std * posterior) * base.vae_config.scaling_factor;
        let noise = draw(clean.dims());
        let latents = scheduler.add_noise(clean, noise, first);

        let denoise = self.refiner_denoise(refiner, params, (height, width), device, &mut |w| progress.warn(w))?;
        let phases = vec![Phase { denoise, scheduler, steps: first..steps }];
        self.run(Generation::new(phases, latents, Box::new(draw), device), progress)
    }
}

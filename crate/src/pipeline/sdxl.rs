//! The SDXL models and the pipeline made of them: the base (both text encoders, its UNet, the
//! VAE, the scheduler settings) and the refiner (its UNet; it shares text encoder 2 and the VAE
//! with the base), and [`Sdxl`], which runs them together. Each mode of running is a file of its
//! own: `text_to_image.rs`, `image_to_image.rs`.

use burn::tensor::{Device, Tensor};

use super::conditioning::{PromptEmbeds, TextEncoder, encode_prompt, refiner_time_ids, windows_needed};
use super::generation::{Denoise, Stage};
use super::image::Image;
use super::params::{DecodeLimit, GenerateParams, SizeRules};
use crate::error::Result;
use crate::models::unet::UNet2DConditionModel;
use crate::models::vae::{AutoencoderKL, VaeConfig};
use crate::schedulers::SchedulerConfig;
use crate::weights::ModelSource;

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

/// The base's networks, however they were loaded.
pub struct BaseParts {
    pub text_encoder: TextEncoder,
    pub text_encoder_2: TextEncoder,
    pub unet: UNet2DConditionModel,
    pub vae: (VaeConfig, AutoencoderKL),
    pub scheduler: SchedulerConfig,
}

fn force_zeros_for_empty_prompt(model: &impl ModelSource, default: bool) -> bool {
    model.model_index().get("force_zeros_for_empty_prompt").and_then(|value| value.as_bool()).unwrap_or(default)
}

impl Base {
    /// The base of `model` (whose pipeline class the caller checked) from its parts.
    pub fn from_parts(model: &impl ModelSource, parts: BaseParts) -> Self {
        let (vae_config, vae) = parts.vae;
        Base {
            text_encoder: parts.text_encoder,
            text_encoder_2: parts.text_encoder_2,
            unet: parts.unet,
            vae,
            scheduler: parts.scheduler,
            vae_config,
            force_zeros_for_empty_prompt: force_zeros_for_empty_prompt(model, true),
        }
    }

    /// The base model of a folder (native): diffusers' or converted.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_folder(dir: &std::path::Path, device: &Device) -> Result<Self> {
        super::folder::base(dir, device)
    }

    /// The initial noise's shape for an image of the requested size.
    pub fn latent_shape(&self, params: &GenerateParams) -> [usize; 4] {
        [1, 4, params.height / self.vae_config.scale_factor(), params.width / self.vae_config.scale_factor()]
    }

    /// What sizes this model can generate, decoding within `decode_limit` when given.
    pub fn size_rules(&self, decode_limit: Option<DecodeLimit>) -> SizeRules {
        let downsamplings = self.unet.down_blocks.iter().filter(|block| !block.downsamplers.is_empty()).count();
        SizeRules { multiple: self.vae_config.scale_factor() << downsamplings, vae: self.vae_config.clone(), decode_limit }
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

impl Refiner {
    /// The refiner of `model` (whose pipeline class the caller checked) from its UNet.
    pub fn from_parts(model: &impl ModelSource, unet: UNet2DConditionModel) -> Self {
        Refiner { unet, force_zeros_for_empty_prompt: force_zeros_for_empty_prompt(model, false) }
    }

    /// The refiner of a folder (native): diffusers' or converted.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_folder(dir: &std::path::Path, device: &Device) -> Result<Self> {
        super::folder::refiner(dir, device)
    }
}

/// SDXL as diffusers runs it: the base, optionally handing over to the refiner.
pub struct Sdxl<'a> {
    pub base: &'a Base,
    pub refiner: Option<&'a Refiner>,
    /// The largest buffer decoding may use, where something limits it (a GPU's buffers, the
    /// host's memory).
    pub decode_limit: Option<DecodeLimit>,
}

impl<'a> Sdxl<'a> {
    pub fn new(base: &'a Base, refiner: Option<&'a Refiner>) -> Self {
        Self { base, refiner, decode_limit: None }
    }

    /// Refuses sizes whose decoding needs a buffer larger than `limit`.
    pub fn with_decode_limit(mut self, limit: DecodeLimit) -> Self {
        self.decode_limit = Some(limit);
        self
    }

    /// The one validation of a run's parameters, before anything runs; warnings go to `warn`.
    pub(super) fn check(&self, params: &GenerateParams, warn: &mut dyn FnMut(String)) -> Result<()> {
        for warning in params.validate(&self.base.size_rules(self.decode_limit.clone()))? {
            warn(warning);
        }
        Ok(())
    }

    /// The refiner's share of a run: text encoder 2 alone, aesthetic-score time ids.
    pub(super) fn refiner_denoise(
        &self,
        refiner: &'a Refiner,
        params: &GenerateParams,
        size: (usize, usize),
        device: &Device,
        warn: &mut dyn FnMut(String),
    ) -> Result<Denoise<'a>> {
        let (positive, negative) =
            self.conditioning(&[&self.base.text_encoder_2], params, refiner.force_zeros_for_empty_prompt, device, warn)?;
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

    /// The prompt's embeddings and, under guidance, the negative branch's: zeros when there is
    /// no negative prompt and the model asks for it, else the encoding of the negative prompt
    /// (or of ""). In chunked mode both get the same number of windows.
    pub(super) fn conditioning(
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
}

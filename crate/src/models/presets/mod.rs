//! The published configs of stabilityai/stable-diffusion-xl-base-1.0 and -refiner-1.0, for
//! building full-size networks without a checkpoint (scale tests, converters).

pub const BASE_UNET: &str = include_str!("sdxl_base_unet.json");
pub const REFINER_UNET: &str = include_str!("sdxl_refiner_unet.json");
pub const TEXT_ENCODER: &str = include_str!("sdxl_text_encoder.json");
pub const TEXT_ENCODER_2: &str = include_str!("sdxl_text_encoder_2.json");
pub const VAE: &str = include_str!("sdxl_vae.json");

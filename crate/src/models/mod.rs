//! SDXL's networks, one file per block, configs mirroring diffusers' and transformers'.

pub mod attention;
pub mod clip;
pub mod config;
pub mod conv;
pub mod embeddings;
pub mod linear;
pub mod part;
pub mod presets;
pub mod resnet;
pub mod transformer;
pub mod unet;
pub mod unet_blocks;
pub mod vae;
pub mod vae_tiling;

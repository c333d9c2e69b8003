//! The full-size SDXL VAE's decode on wgpu, its memory measured beside the memory plan's
//! estimate (`VaeConfig::working_bytes`: three of a decode's largest activation): the published
//! config with random weights (values do not change what is allocated), random latents, decoded
//! whole and then in the tiles a buffer limit of `LIMIT_MIB` asks for (the tiles a memory budget
//! leaving that much to each activation picks). Prints the growth of burn's pools (reserved
//! bytes: what the GPU holds) during each decode, and its time.
//!
//! `cargo run --release -p sdxl-web --example vae_memory [-- SIZE [LIMIT_MIB]]` (default 512 px,
//! a limit of a quarter of the whole decode's largest activation).

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use sdxl_web::device::DeviceChoice;
use sdxl_web::models::presets;
use sdxl_web::models::vae::{AutoencoderKL, VaeConfig};

const MIB: u64 = 1 << 20;

fn reserved(device: &Device) -> u64 {
    device.sync().expect("the device runs");
    device.memory_pool_usage().expect("wgpu reports its pools").bytes_reserved
}

/// Decodes `latents` (in the tiles `config.decode_tiling` picks within `limit`), returning the
/// pools' growth and the seconds taken.
fn decode(vae: &AutoencoderKL, config: &VaeConfig, latents: Tensor<4>, size: usize, limit: Option<u64>, device: &Device) -> (u64, f64) {
    device.memory_cleanup();
    let before = reserved(device);
    let start = Instant::now();
    let tiling = limit.map(|limit| config.decode_tiling(size, size, limit).expect("tiles fit the limit"));
    let image = match tiling.flatten() {
        Some(tiling) => vae.decode_with_tiling(latents, &tiling).expect("valid tiling"),
        None => vae.decode(latents),
    };
    let values = image.into_data().try_to_vec::<f32>().expect("f32 pixels");
    assert!(values.iter().all(|v| v.is_finite()), "non-finite pixels");
    let seconds = start.elapsed().as_secs_f64();
    (reserved(device).saturating_sub(before), seconds)
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("SIZE [LIMIT_MIB] as numbers")).collect();
    let size = args.first().copied().unwrap_or(512) as usize;
    let device = DeviceChoice::Wgpu.device();
    let config: VaeConfig = serde_json::from_str(presets::VAE).expect("published config");
    let whole_largest = config.largest_decode_bytes(size, size);
    let limit = args.get(1).map_or(whole_largest / 4, |mib| mib * MIB);
    let vae = config.init(&device).expect("supported config");
    let weights = reserved(&device);
    println!("SDXL VAE on wgpu: weights and buffers {} MiB reserved", weights / MIB);
    let scale = config.scale_factor();
    for (name, limit) in [("whole", None), ("tiled", Some(limit))] {
        let latents = Tensor::<4>::random([1, 4, size / scale, size / scale], Distribution::Normal(0.0, 1.0), &device);
        let estimate = config.working_bytes(size, size, limit, false);
        let (growth, seconds) = decode(&vae, &config, latents, size, limit, &device);
        let tiles = limit.and_then(|limit| config.decode_tiling(size, size, limit).ok().flatten());
        let how = tiles.map_or("whole".to_string(), |t| format!("{} px tiles", t.tile_sample_min_size));
        println!(
            "{size}² decode, {name} ({how}): pools grew {} MiB; estimated {} MiB (3 × {} MiB); {seconds:.1} s",
            growth.div_ceil(MIB),
            estimate.div_ceil(MIB),
            (estimate / 3).div_ceil(MIB)
        );
    }
}

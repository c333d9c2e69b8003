//! The full-size SDXL VAE's decode on wgpu, its memory measured beside the memory plan's
//! estimate (`VaeConfig::working_bytes`): the published config with random weights (values do
//! not change what is allocated), random latents, decoded whole, or in the tiles a buffer limit
//! of `LIMIT_MIB` asks for (the tiles a memory budget leaving that much to each activation
//! picks). One decode per process, so the pools' high-water marks are that decode's own. Prints
//! the growth of burn's pools (reserved bytes: what the GPU holds), the pages they carved at
//! their peak, the largest allocation, and the time.
//!
//! With `dry` last, every kernel is compiled and dropped instead of run (burn's dry run): the
//! buffers are allocated as in the decode itself, so full-size decodes are measured in seconds.
//!
//! `cargo run -p sdxl-web --example vae_memory [-- SIZE [LIMIT_MIB] [dry]]` (default 256 px,
//! whole).

use std::time::Instant;

use burn::cubecl::dry_run::{DryRun, dry_run};
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
    assert!(dry_run() || values.iter().all(|v| v.is_finite()), "non-finite pixels");
    let seconds = start.elapsed().as_secs_f64();
    (reserved(device).saturating_sub(before), seconds)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let dry = args.last().is_some_and(|last| last == "dry");
    if dry {
        args.pop();
    }
    let _dry_run = dry.then(DryRun::new);
    let args: Vec<u64> = args.iter().map(|a| a.parse().expect("SIZE [LIMIT_MIB] as numbers")).collect();
    let size = args.first().copied().unwrap_or(256) as usize;
    // The device's largest buffer bounds every decode, as in `sdxl generate`: an allocation past
    // it fails (and a dry run would not say so).
    let (device, device_limit) = DeviceChoice::Wgpu.open().expect("a wgpu device");
    let device_limit = device_limit.map(|(bytes, text)| {
        println!("{text}");
        bytes
    });
    let limit = args.get(1).map(|mib| mib * MIB).into_iter().chain(device_limit).min();
    let config: VaeConfig = serde_json::from_str(presets::VAE).expect("published config");
    let vae = config.init(&device).expect("supported config");
    // burn initializes parameters on first use: a decode of a few latent pixels brings the
    // decoder's weights onto the device, so the measured decode's growth is its activations.
    vae.decode(Tensor::<4>::zeros([1, 4, 2, 2], &device));
    device.memory_cleanup();
    let weights = reserved(&device);
    println!("SDXL VAE on wgpu: weights and buffers {} MiB reserved", weights / MIB);
    let scale = config.scale_factor();
    let latents = Tensor::<4>::random([1, 4, size / scale, size / scale], Distribution::Normal(0.0, 1.0), &device);
    let estimate = config.working_bytes(size, size, limit, false);
    let (growth, seconds) = decode(&vae, &config, latents, size, limit, &device);
    let tiles = limit.and_then(|limit| config.decode_tiling(size, size, limit).ok().flatten());
    let how = tiles.map_or("whole".to_string(), |t| format!("{} px tiles", t.tile_sample_min_size));
    let mode = if dry { ", dry run" } else { "" };
    println!("{size}² decode ({how}{mode}): pools grew {} MiB; estimated {} MiB; {seconds:.1} s", growth.div_ceil(MIB), estimate.div_ceil(MIB));
    for pool in device.memory_pool_report().unwrap_or_default() {
        println!(
            "  pool: pages of {:.2} MiB, {} held, {} at the peak; largest allocation {:.2} MiB",
            pool.page_size as f64 / MIB as f64,
            pool.pages,
            pool.pages_peak,
            pool.largest_alloc as f64 / MIB as f64
        );
    }
}

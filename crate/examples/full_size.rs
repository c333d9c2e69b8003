//! Builds the full-size SDXL base and refiner UNets from the published configs with random
//! weights and runs one forward pass each at a 32×32 latent (256² pixels), printing parameter
//! counts, time and the process's peak memory.
//!
//! `cargo run --release -p sdxl-web --example full_size [-- cpu|wgpu]`

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use sdxl_web::device::DeviceChoice;
use sdxl_web::memory;
use sdxl_web::models::presets;
use sdxl_web::models::unet::UNetConfig;

fn main() {
    let device = match std::env::args().nth(1).as_deref() {
        Some("wgpu") => DeviceChoice::Wgpu,
        _ => DeviceChoice::Cpu,
    }
    .device();
    for (name, json, time_ids) in [
        ("base", presets::BASE_UNET, vec![256.0, 256.0, 0.0, 0.0, 256.0, 256.0]),
        ("refiner", presets::REFINER_UNET, vec![256.0, 256.0, 0.0, 0.0, 6.0]),
    ] {
        let config = UNetConfig::from_json(json).expect("published config");
        let start = Instant::now();
        let unet = config.init(&device).expect("supported config");
        println!("{name}: {} parameters", unet.num_params());
        let pooled = config.projection_class_embeddings_input_dim.unwrap()
            - time_ids.len() * config.addition_time_embed_dim.unwrap();
        let normal = Distribution::Normal(0.0, 1.0);
        let sample = Tensor::<4>::random([1, 4, 32, 32], normal, &device);
        let context = Tensor::<3>::random([1, 77, config.cross_attention_dim], normal, &device);
        let text_embeds = Tensor::<2>::random([1, pooled], normal, &device);
        let time_ids = Tensor::<1>::from_floats(time_ids.as_slice(), &device).unsqueeze::<2>();
        let timestep = Tensor::<1>::from_floats([500.0], &device);
        let out = unet.forward(sample, timestep, context, text_embeds, time_ids);
        let values = out.into_data().try_to_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "non-finite output");
        println!(
            "{name}: forward at 32×32 done in {:.1} s (init included); peak memory so far {}",
            start.elapsed().as_secs_f64(),
            memory::gib(memory::peak_resident())
        );
    }
}

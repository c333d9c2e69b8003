//! Loads each network of a converted model (weights-tools) with the shard loader, one at a
//! time, and prints the host memory it took: the peak while loading, what stays resident once
//! loaded, the network's f32 weights, and the peak beyond them (the loader's own overhead). On
//! the CPU backend every weight is expanded to f32 in host memory; on wgpu with lavapipe (whose
//! device memory is host memory) q8/q4 Linear weights stay block-quantized.
//!
//! `cargo run -p sdxl-web --example load_memory -- MODEL_DIR [cpu|wgpu] [COMPONENT]`

use burn::tensor::Device;
use sdxl_web::device::DeviceChoice;
use sdxl_web::memory::{self, gib};
use sdxl_web::models::clip::ClipTextModel;
use sdxl_web::models::unet::UNet2DConditionModel;
use sdxl_web::models::vae::AutoencoderKL;
use sdxl_web::pipeline::parts::{self, Part};
use sdxl_web::weights::sharded::ShardedModel;

fn measure<P: Part>(model: &ShardedModel, component: &str, device: &Device) {
    let largest_shard = model.manifest().shards_of(component).map(|s| s.size).max().unwrap_or(0);
    let before = memory::resident().unwrap_or(0);
    memory::reset_peak();
    let start = std::time::Instant::now();
    let (_, module) = parts::load::<P>(model, component, device).unwrap_or_else(|e| panic!("{e}"));
    let seconds = start.elapsed().as_secs_f64();
    let weights = module.num_params() as u64 * 4;
    let peak = memory::peak_resident().unwrap_or(0).saturating_sub(before);
    let resident = memory::resident().unwrap_or(0).saturating_sub(before);
    println!(
        "{component:<15} {:>14} params, {seconds:>6.1} s: peak +{}, resident +{}, f32 weights {}, overhead {} (largest shard {})",
        module.num_params(),
        gib(Some(peak)),
        gib(Some(resident)),
        gib(Some(weights)),
        gib(Some(peak.saturating_sub(weights))),
        gib(Some(largest_shard)),
    );
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: load_memory MODEL_DIR [cpu|wgpu] [COMPONENT]");
    let model = ShardedModel::open(std::path::Path::new(&dir)).unwrap_or_else(|e| panic!("{e}"));
    let device = match std::env::args().nth(2).as_deref() {
        Some("wgpu") => DeviceChoice::Wgpu,
        _ => DeviceChoice::Cpu,
    }
    .device();
    // Smallest first: the allocator keeps what a dropped network freed, which would hide the
    // peaks of smaller ones measured after it.
    let only = std::env::args().nth(3);
    let mut components: Vec<&String> =
        model.manifest().components.keys().filter(|c| only.as_ref().is_none_or(|only| only == *c)).collect();
    components.sort_by_key(|c| model.manifest().shards_of(c).map(|s| s.size).sum::<u64>());
    for component in components {
        match component.as_str() {
            "unet" => measure::<UNet2DConditionModel>(&model, component, &device),
            "vae" => measure::<AutoencoderKL>(&model, component, &device),
            _ => measure::<ClipTextModel>(&model, component, &device),
        }
    }
}

//! Host memory and time of SDXL's two largest attentions at an image size, on burn's CPU backend:
//! the VAE mid-block (one head over 512 channels at 1/8 of the pixels) and the UNet's first
//! attention level (2 × 10 heads of 64 at 1/16, classifier-free guidance's batch), each as one
//! block of scores and in query chunks of at most `MAX_SCORE_BYTES` of scores, side by side.
//!
//! `cargo run -p sdxl-web --example attention_memory -- [SIZE, default 1024]`

use burn::tensor::{Device, Distribution, Tensor};
use sdxl_web::memory::{self, gib};
use sdxl_web::models::attention::{MAX_SCORE_BYTES, scaled_dot_product_within};

fn measure(label: &str, shape: [usize; 4], max_score_bytes: usize, device: &Device) {
    let random = || Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let (q, k, v) = (random(), random(), random());
    let before = memory::resident().unwrap_or(0);
    memory::reset_peak();
    let start = std::time::Instant::now();
    let out = scaled_dot_product_within(q, k, v, false, max_score_bytes);
    let _ = out.into_data(); // wait for the result
    let seconds = start.elapsed().as_secs_f64();
    let peak = memory::peak_resident().unwrap_or(0).saturating_sub(before);
    println!("{label:<34} {shape:?}: peak +{} in {seconds:.1} s", gib(Some(peak)));
}

fn main() {
    let size: usize = std::env::args().nth(1).map_or(1024, |s| s.parse().expect("SIZE: pixels per side"));
    let device = Device::flex();
    let cases = [("VAE mid-block", [1, 1, (size / 8).pow(2), 512]), ("UNet first attention level", [2, 10, (size / 16).pow(2), 64])];
    // Chunked first: the allocator keeps what a run freed, which would hide a smaller later peak.
    for (name, shape) in cases {
        let scores = shape[0] * shape[1] * shape[2] * shape[2] * 4;
        println!("{name} at {size}²: one block of scores is {}", gib(Some(scores as u64)));
        measure("  chunked (≤ 128 MiB of scores)", shape, MAX_SCORE_BYTES, &device);
        measure("  one block", shape, usize::MAX, &device);
    }
}

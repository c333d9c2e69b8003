//! Our kernels (`sdxl_web::kernels`) against burn's ops on SDXL's shapes, on one device in one
//! run: each op's time, GFLOP/s, its ratio to burn's op for the same work, and its throughput
//! as a ratio to burn's f32 matmul of equal FLOPs on the same device. With `--unet`, a whole
//! full-size base UNet pass (published config, random f32 weights) at a 32² latent, batch 2,
//! with burn's ops only ("before") and with our kernels ("after").
//!
//! `cargo run --release -p sdxl-web --example kernel_bench -- [wgpu|cpu] [--small] [--unet]
//! [attention] [group-norm] [conv] [linear]` (the ops named, or all of them)
//!
//! Shapes are those of a 1024² image (UNet levels 128², 64², 32²; the VAE decoder's last level
//! at 1024²); `--small` quarters the token and pixel counts, for CPU-emulated GPUs (lavapipe).
//! Nothing here is a test: it prints figures, it asserts nothing about time.

use std::time::Instant;

use burn::module::Module;
use burn::nn::GroupNormConfig;
use burn::tensor::activation::silu;
use burn::tensor::module::{attention, conv2d};
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};
use burn::tensor::{Device, Distribution, Tensor};
use sdxl_web::device::DeviceChoice;
use sdxl_web::kernels;
use sdxl_web::models::attention::{MAX_SCORE_BYTES, merge_heads, scaled_dot_product, split_heads};
use sdxl_web::models::presets;
use sdxl_web::models::unet::UNetConfig;
use sdxl_web::weights::quant::{self, StoredDtype};

/// Runs of each op after a first, untimed one (shader compilation, allocation).
const RUNS: usize = 3;

struct Bench {
    device: Device,
    small: bool,
}

impl Bench {
    /// The best of [`RUNS`] timed runs of `op`, in seconds, the device synchronized after each.
    fn seconds<const D: usize>(&self, op: impl Fn() -> Tensor<D>) -> f64 {
        self.best_of(RUNS, op)
    }

    /// The best of `runs` timed runs of `op` after an untimed one.
    fn best_of<const D: usize>(&self, runs: usize, op: impl Fn() -> Tensor<D>) -> f64 {
        let run = || {
            let start = Instant::now();
            let out = op();
            self.device.sync().expect("the op runs");
            drop(out);
            start.elapsed().as_secs_f64()
        };
        run();
        (0..runs).map(|_| run()).fold(f64::INFINITY, f64::min)
    }

    fn normal<const D: usize>(&self, shape: [usize; D]) -> Tensor<D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &self.device)
    }

    /// Throughput of burn's f32 matmul on a square problem of about `flops`, GFLOP/s.
    fn matmul_gflops(&self, flops: f64) -> f64 {
        let n = ((flops / 2.0).cbrt() / 16.0).round().max(1.0) as usize * 16;
        let (a, b) = (self.normal([n, n]), self.normal([n, n]));
        2.0 * (n as f64).powi(3) / self.seconds(|| a.clone().matmul(b.clone())) / 1e9
    }

    /// One row: `name`, its FLOPs, our time and burn's (for the same work), as a table line.
    fn row(&self, name: &str, flops: f64, ours: f64, burns: Option<f64>) {
        let gflops = flops / ours / 1e9;
        let versus_burn = burns.map_or("—".to_string(), |burns| format!("{:.2}×", burns / ours));
        let versus_matmul = gflops / self.matmul_gflops(flops);
        println!("| {name} | {:.2} | {gflops:.1} | {versus_burn} | {versus_matmul:.2}× |", ours * 1e3);
    }

    fn attention(&self, name: &str, batch: usize, heads: usize, queries: usize, keys: usize, causal: bool) {
        let width = heads * kernels::attention::HEAD_DIM;
        let (q, k, v) = (self.normal([batch, queries, width]), self.normal([batch, keys, width]), self.normal([batch, keys, width]));
        let flops = 4.0 * (batch * heads * queries * keys * kernels::attention::HEAD_DIM) as f64;
        let chunked = || merge_heads(scaled_dot_product(split_heads(q.clone(), heads), split_heads(k.clone(), heads), split_heads(v.clone(), heads), causal));
        let today = self.seconds(chunked);
        let shape = format!("{name} (B {batch}, H {heads}, {queries}×{keys}, d 64{})", if causal { ", causal" } else { "" });
        let fused = || kernels::attention::fused(&q, &k, &v, heads, causal);
        match fused().is_some().then(|| self.seconds(|| fused().expect("applies"))) {
            Some(ours) => self.row(&format!("attention, ours vs today's chunked path: {shape}"), flops, ours, Some(today)),
            None => self.row(&format!("attention, today's chunked path (no kernel here): {shape}"), flops, today, None),
        }
        // burn's own attention op (its unfused fallback without `autotune`), where its full score
        // matrix fits one buffer.
        if batch * heads * queries * keys * 4 <= MAX_SCORE_BYTES {
            let options = AttentionModuleOptions { is_causal: causal, ..Default::default() };
            let burns = self.seconds(|| {
                let split = |t: &Tensor<3>| split_heads(t.clone(), heads);
                merge_heads(attention(split(&q), split(&k), split(&v), None, None, options))
            });
            self.row(&format!("attention, burn's `attention` op: {shape}"), flops, burns, None);
        }
        // burn's flash attention with unit (non-accelerated) inner matmuls, which its `attention`
        // op would choose only under autotune (what `multi_head` runs for the UNet).
        let split = |t: &Tensor<3>| split_heads(t.clone(), heads);
        let flash_unit = || kernels::attention::flash_unit(&split(&q), &split(&k), &split(&v), causal).map(merge_heads);
        match flash_unit() {
            Some(out) => {
                let reference = merge_heads(scaled_dot_product(split(&q), split(&k), split(&v), causal));
                let [out, reference] = [out, reference].map(|t| t.into_data().try_to_vec::<f32>().expect("f32"));
                let error = sdxl_web::relative_error::relative_l2(&out, &reference);
                let flash = self.seconds(|| flash_unit().expect("ran once"));
                self.row(&format!("attention, burn's FlashUnit vs today's chunked path (relative error {error:.1e}): {shape}"), flops, flash, Some(today));
            }
            None => println!("| attention, burn's FlashUnit: {shape} | does not apply | | | |"),
        }
    }

    fn group_norm_silu(&self, name: &str, shape: [usize; 4]) {
        let [_, channels, _, _] = shape;
        let norm = GroupNormConfig::new(32, channels).init(&self.device);
        let x = self.normal(shape);
        let burns = self.seconds(|| silu(norm.forward(x.clone())));
        let ours = self.seconds(|| kernels::group_norm::norm_silu(&norm, x.clone()));
        // About 10 FLOPs an element (statistics, normalize, affine, SiLU).
        let flops = 10.0 * shape.iter().product::<usize>() as f64;
        self.row(&format!("GroupNorm(32) + SiLU, ours vs burn's ops: {name} {shape:?}"), flops, ours, Some(burns));
    }

    fn conv3x3(&self, name: &str, shape: [usize; 4]) {
        let [batch, channels, height, width] = shape;
        let (x, weight, bias) = (self.normal(shape), self.normal([channels, channels * 9]), self.normal([channels]));
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let kernel = weight.clone().reshape([channels, channels, 3, 3]);
        let burns = self.seconds(|| conv2d(x.clone(), kernel.clone(), Some(bias.clone()), options.clone()));
        let flops = 2.0 * (batch * channels * height * width * channels * 9) as f64;
        let ours = || kernels::conv::conv2d(&x, &weight, &bias, 3, 1, [(1, 1); 2]);
        match ours().is_some().then(|| self.seconds(|| ours().expect("applies"))) {
            Some(seconds) => self.row(&format!("conv 3×3, ours vs burn's direct kernel: {name} {shape:?}"), flops, seconds, Some(burns)),
            None => self.row(&format!("conv 3×3, burn's direct kernel (no kernel here): {name} {shape:?}"), flops, burns, None),
        }
    }

    /// A Linear of `inputs` → `outputs` over `tokens` rows: f32, and burn's q8/q4 matmul on our
    /// block-32 weights (dequantized while read), as the model holds them.
    fn linear(&self, name: &str, tokens: usize, inputs: usize, outputs: usize) {
        let x = self.normal([tokens, inputs]);
        let weight = self.normal([outputs, inputs]);
        let flops = 2.0 * (tokens * inputs * outputs) as f64;
        let f32_seconds = self.seconds(|| x.clone().matmul(weight.clone().transpose()));
        self.row(&format!("Linear f32: {name} ({tokens}×{inputs} · {inputs}×{outputs})"), flops, f32_seconds, None);
        let values: Vec<f32> = weight.into_data().try_to_vec().expect("f32");
        for dtype in [StoredDtype::Q8, StoredDtype::Q4] {
            let shape = [outputs, inputs];
            let bytes = quant::encode(dtype, &values, &shape, Some(32)).expect("quantizable");
            let Some(quantized) = quant::device_quantized(dtype, &bytes, &shape, Some(32), &self.device) else {
                println!("| Linear {dtype:?}: not kept quantized on this device | | | | |");
                continue;
            };
            let seconds = self.seconds(|| x.clone().matmul(quantized.clone().transpose()));
            let label = format!("Linear {dtype:?}, burn's fused-dequant matmul (× = f32 time / this): {name}");
            self.row(&label, flops, seconds, Some(f32_seconds));
        }
    }

    /// The full-size base UNet, one pass at a `side`² latent, batch 2: seconds with burn's ops
    /// only and with our kernels.
    fn unet(&self, side: usize) {
        let config = UNetConfig::from_json(presets::BASE_UNET).expect("published config");
        let unet = config.init(&self.device).expect("supported config");
        let pooled = config.projection_class_embeddings_input_dim.unwrap() - 6 * config.addition_time_embed_dim.unwrap();
        let sample = self.normal([2, 4, side, side]);
        let context = self.normal([2, 77, config.cross_attention_dim]);
        let text_embeds = self.normal([2, pooled]);
        let time_ids = Tensor::<1>::from_floats([1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0], &self.device).unsqueeze::<2>().repeat_dim(0, 2);
        let timestep = Tensor::<1>::from_floats([500.0, 500.0], &self.device);
        let pass = || unet.forward(sample.clone(), timestep.clone(), context.clone(), text_embeds.clone(), time_ids.clone());
        println!("full-size base UNet ({} parameters), one pass at {side}² latents, batch 2:", unet.num_params());
        // One timed pass each (after an untimed one): a pass takes minutes on lavapipe.
        kernels::set_enabled(false);
        let before = self.best_of(1, pass);
        kernels::set_enabled(true);
        let after = self.best_of(1, pass);
        println!("  burn's ops only: {before:.2} s; with our kernels: {after:.2} s ({:.2}× faster)", before / after);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let choice = if args.iter().any(|a| a == "cpu") { DeviceChoice::Cpu } else { DeviceChoice::Wgpu };
    let (device, limit) = choice.open().expect("the device opens");
    let bench = Bench { device, small: args.iter().any(|a| a == "--small") };
    if let Some((_, text)) = limit {
        println!("device: {choice:?}; {text}");
    }
    // Token and pixel counts per level at 1024² (or a quarter of them with --small).
    let s = |n: usize| if bench.small { n / 2 } else { n };
    let (level0, level1, level2) = (s(128), s(64), s(32));
    println!("| op | ms | GFLOP/s | ours vs burn | vs f32 matmul of equal FLOPs |");
    println!("|---|---|---|---|---|");
    let ops = ["attention", "group-norm", "conv", "linear"];
    let named = |op: &str| args.iter().any(|a| a == op) || !args.iter().any(|a| ops.contains(&a.as_str()));
    if named("attention") {
        bench.attention("UNet 64² self", 2, 10, level1 * level1, level1 * level1, false);
        bench.attention("UNet 32² self", 2, 20, level2 * level2, level2 * level2, false);
        bench.attention("UNet 64² cross", 2, 10, level1 * level1, 77, false);
        bench.attention("CLIP ViT-bigG", 2, 20, 77, 77, true);
    }
    if named("group-norm") {
        bench.group_norm_silu("UNet 128²", [2, 320, level0, level0]);
        bench.group_norm_silu("VAE 1024²", [1, 128, s(1024), s(1024)]);
    }
    if named("conv") {
        bench.conv3x3("UNet 64², 640 ch", [2, 640, level1, level1]);
        bench.conv3x3("VAE 512², 256 ch", [1, 256, s(512), s(512)]);
    }
    if named("linear") {
        bench.linear("GEGLU proj, UNet 64²", 2 * level1 * level1, 640, 5120);
    }
    if args.iter().any(|a| a == "--unet") {
        bench.unet(32);
    }
}

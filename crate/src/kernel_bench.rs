//! The kernel benchmark: our kernels ([`crate::kernels`]) against burn's ops on SDXL's shapes,
//! on one device in one run — each op's time, GFLOP/s, its ratio to burn's op for the same work,
//! and its throughput as a ratio to burn's f32 matmul of equal FLOPs on the same device. One
//! code for both places it runs: natively (`examples/kernel_bench.rs`, lavapipe or a GPU) and in
//! the browser (`web/kernel-bench.html`, driven by `tests/browser/kernel-bench.mjs`).
//!
//! Shapes are those of a 1024² image (UNet levels 128², 64², 32²; the VAE decoder's last level
//! at 1024²); `small` quarters the token and pixel counts, for CPU-emulated GPUs (lavapipe,
//! SwiftShader). Each op runs once untimed (shader compilation, allocation), then [`RUNS`]
//! times in turn with what its row compares it to (`Bench::in_turn`); the best run counts (a
//! run ends when the device has finished it: [`finish`]).
//! Nothing here is a test: it measures, it asserts nothing about time.

use burn::nn::GroupNormConfig;
use burn::tensor::activation::{gelu, silu};
use burn::tensor::module::{attention, conv2d};
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions};
use burn::tensor::{Device, Distribution, Tensor};
use serde::Serialize;

use crate::clock;
use crate::kernels;
use crate::models::attention::{MAX_SCORE_BYTES, merge_heads, scaled_dot_product, split_heads};
use crate::models::conv::upsample_nearest_2x;
use crate::relative_error::relative_l2;
use crate::weights::quant::{self, StoredDtype};

/// An op to time: its result as one dimension (a view; `finish` waits for it).
type Op<'a> = &'a dyn Fn() -> Tensor<1>;

/// `tensor` as one dimension.
fn flat<const D: usize>(tensor: Tensor<D>) -> Tensor<1> {
    tensor.flatten(0, D - 1)
}

/// Timed runs of each op after a first, untimed one.
pub const RUNS: usize = 3;

/// The ops the benchmark knows, by the names that select them.
pub const OPS: [&str; 6] = ["attention", "group-norm", "geglu", "conv", "upsample", "linear"];

/// One measured op.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// What ran, on which shape, against what.
    pub op: String,
    /// The best run, milliseconds.
    pub ms: f64,
    pub gflops: f64,
    /// Burn's time for the same work over ours (more is faster).
    pub versus_burn: Option<f64>,
    /// Our throughput over burn's f32 matmul's on a problem of as many FLOPs.
    pub versus_matmul: f64,
}

impl Row {
    /// As a line of the Markdown table [`TABLE_HEADER`] starts.
    pub fn markdown(&self) -> String {
        let versus_burn = self.versus_burn.map_or("—".to_string(), |x| format!("{x:.2}×"));
        format!("| {} | {:.2} | {:.2} | {versus_burn} | {:.2}× |", self.op, self.ms, self.gflops, self.versus_matmul)
    }
}

/// The table's header, two Markdown lines.
pub const TABLE_HEADER: &str = "| op | ms | GFLOP/s | ours vs burn | vs f32 matmul of equal FLOPs |\n|---|---|---|---|---|";

/// The benchmark on one device.
pub struct Bench {
    pub device: Device,
    /// A quarter of the tokens and pixels.
    pub small: bool,
}

/// Waits for `tensor` to be computed: natively the device synchronized (as the benchmark always
/// did); in the browser, where nothing may block, one of its values read back (WebGPU maps a
/// buffer only once the work queued before it has finished). Natively on lavapipe a read-back
/// did not time the work reliably (a 1024² matmul read back in 0.1 ms in one run, after 6 s in
/// another), so it is not the clock there.
async fn finish<const D: usize>(tensor: Tensor<D>) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let device = tensor.device();
        drop(tensor);
        device.sync().expect("the op runs");
    }
    #[cfg(target_arch = "wasm32")]
    {
        let first = tensor.flatten::<1>(0, D - 1).slice(0..1);
        let _ = first.into_data_async().await;
    }
}

/// `tensor`'s values (none where reading fails: the row's error then shows as NaN).
async fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data_async().await.ok().and_then(|data| data.try_into_vec::<f32>().ok()).unwrap_or_default()
}

impl Bench {
    /// Runs the ops named in `ops` (all of them when none is), calling `report` with each row.
    pub async fn run(&self, ops: &[String], report: &mut dyn FnMut(Row)) {
        let named = |op: &str| ops.is_empty() || ops.iter().any(|o| o == op);
        // Token and pixel counts per level at 1024², or a quarter of them.
        let s = |n: usize| if self.small { n / 2 } else { n };
        let (level0, level1, level2) = (s(128), s(64), s(32));
        if named("attention") {
            self.attention("UNet 64² self", 2, 10, level1 * level1, level1 * level1, false, report).await;
            self.attention("UNet 32² self", 2, 20, level2 * level2, level2 * level2, false, report).await;
            self.attention("UNet 64² cross", 2, 10, level1 * level1, 77, false, report).await;
            self.attention("CLIP ViT-bigG", 2, 20, 77, 77, true, report).await;
        }
        if named("group-norm") {
            self.group_norm_silu("UNet 128²", [2, 320, level0, level0], report).await;
            self.group_norm_silu("VAE 1024²", [1, 128, s(1024), s(1024)], report).await;
        }
        if named("geglu") {
            self.geglu("UNet 64²", 2 * level1 * level1, 2560, report).await;
            self.geglu("UNet 32²", 2 * level2 * level2, 5120, report).await;
        }
        if named("conv") {
            self.conv3x3("UNet 64², 640 ch", [2, 640, level1, level1], report).await;
            self.conv3x3("VAE 512², 256 ch", [1, 256, s(512), s(512)], report).await;
        }
        if named("upsample") {
            self.upsampled_conv3x3("UNet 64² → 128², 640 ch", [2, 640, level1, level1], report).await;
            self.upsampled_conv3x3("VAE 512² → 1024², 256 ch", [1, 256, s(512), s(512)], report).await;
        }
        if named("linear") {
            self.linear("GEGLU proj, UNet 64²", 2 * level1 * level1, 640, 5120, report).await;
        }
    }

    /// The best of `runs` timed runs of `op` after an untimed one, seconds.
    pub async fn best_of<const D: usize>(&self, runs: usize, op: impl Fn() -> Tensor<D>) -> f64 {
        finish(op()).await;
        let mut best = f64::INFINITY;
        for _ in 0..runs {
            let start = clock::seconds();
            finish(op()).await;
            best = best.min(clock::seconds() - start);
        }
        best
    }

    /// The best of [`RUNS`] timed runs of each of `ops` after an untimed run of each, the ops run
    /// in turn (one run of each, then again): the machine's speed drifts (on lavapipe here, by up
    /// to 2× within minutes), and ops timed in turn see the same drift, so their ratios hold
    /// where times taken one op after another did not.
    async fn in_turn(&self, ops: &[Op<'_>]) -> Vec<f64> {
        for op in ops {
            finish(op()).await;
        }
        let mut best = vec![f64::INFINITY; ops.len()];
        for _ in 0..RUNS {
            for (op, best) in ops.iter().zip(&mut best) {
                let start = clock::seconds();
                finish(op()).await;
                *best = best.min(clock::seconds() - start);
            }
        }
        best
    }

    fn normal<const D: usize>(&self, shape: [usize; D]) -> Tensor<D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &self.device)
    }

    /// The row of `op`: `ours` doing `flops`, timed in turn with `burns` (the same work another
    /// way) and with burn's f32 matmul of a square problem of about as many FLOPs.
    async fn row(&self, op: String, flops: f64, ours: Op<'_>, burns: Option<Op<'_>>) -> Row {
        let n = ((flops / 2.0).cbrt() / 16.0).round().max(1.0) as usize * 16;
        let (a, b) = (self.normal([n, n]), self.normal([n, n]));
        let matmul = || flat(a.clone().matmul(b.clone()));
        let times = match burns {
            Some(burns) => self.in_turn(&[ours, &matmul, burns]).await,
            None => self.in_turn(&[ours, &matmul]).await,
        };
        let gflops = flops / times[0] / 1e9;
        let matmul_gflops = 2.0 * (n as f64).powi(3) / times[1] / 1e9;
        Row { op, ms: times[0] * 1e3, gflops, versus_burn: times.get(2).map(|burns| burns / times[0]), versus_matmul: gflops / matmul_gflops }
    }

    #[allow(clippy::too_many_arguments)]
    async fn attention(&self, name: &str, batch: usize, heads: usize, queries: usize, keys: usize, causal: bool, report: &mut dyn FnMut(Row)) {
        let width = heads * kernels::attention::HEAD_DIM;
        let (q, k, v) = (self.normal([batch, queries, width]), self.normal([batch, keys, width]), self.normal([batch, keys, width]));
        let flops = 4.0 * (batch * heads * queries * keys * kernels::attention::HEAD_DIM) as f64;
        let split = |t: &Tensor<3>| split_heads(t.clone(), heads);
        let chunked = || merge_heads(scaled_dot_product(split(&q), split(&k), split(&v), causal));
        let today = || flat(chunked());
        let shape = format!("{name} (B {batch}, H {heads}, {queries}×{keys}, d 64{})", if causal { ", causal" } else { "" });
        let fused = || kernels::attention::fused(&q, &k, &v, heads, causal);
        let row = match fused() {
            Some(_) => {
                let ours = || flat(fused().expect("applies"));
                self.row(format!("attention, ours vs today's chunked path: {shape}"), flops, &ours, Some(&today)).await
            }
            None => self.row(format!("attention, today's chunked path (no kernel here): {shape}"), flops, &today, None).await,
        };
        report(row);
        // burn's own attention op (its unfused fallback without `autotune`), where its full
        // score matrix fits one buffer.
        if batch * heads * queries * keys * 4 <= MAX_SCORE_BYTES {
            let options = AttentionModuleOptions { is_causal: causal, ..Default::default() };
            let burns = || flat(merge_heads(attention(split(&q), split(&k), split(&v), None, None, options)));
            report(self.row(format!("attention, burn's `attention` op: {shape}"), flops, &burns, None).await);
        }
        // burn's flash attention with unit (non-accelerated) inner matmuls, which its
        // `attention` op would choose only under autotune (what `multi_head` runs on wgpu).
        let flash_unit = || kernels::attention::flash_unit(&split(&q), &split(&k), &split(&v), causal).map(merge_heads);
        if let Some(out) = flash_unit() {
            let error = relative_l2(&values(out).await, &values(chunked()).await);
            let flash = || flat(flash_unit().expect("ran once"));
            let op = format!("attention, burn's FlashUnit vs today's chunked path (relative error {error:.1e}): {shape}");
            report(self.row(op, flops, &flash, Some(&today)).await);
        }
    }

    async fn group_norm_silu(&self, name: &str, shape: [usize; 4], report: &mut dyn FnMut(Row)) {
        let [_, channels, _, _] = shape;
        let norm = GroupNormConfig::new(32, channels).init(&self.device);
        let x = self.normal(shape);
        let burns = || flat(silu(norm.forward(x.clone())));
        let ours = || flat(kernels::group_norm::norm_silu(&norm, x.clone()));
        // About 10 FLOPs an element (statistics, normalize, affine, SiLU).
        let flops = 10.0 * shape.iter().product::<usize>() as f64;
        report(self.row(format!("GroupNorm(32) + SiLU, ours vs burn's ops: {name} {shape:?}"), flops, &ours, Some(&burns)).await);
    }

    /// GEGLU's gate after its projection: `tokens` rows of `inner` outputs.
    async fn geglu(&self, name: &str, tokens: usize, inner: usize, report: &mut dyn FnMut(Row)) {
        let proj = self.normal([1, tokens, 2 * inner]);
        let burns = || {
            let [hidden, gate] = proj.clone().chunk(2, 2).try_into().expect("two chunks");
            flat(hidden * gelu(gate))
        };
        // About 20 FLOPs an output (erf's polynomial and exponential, the products).
        let flops = 20.0 * (tokens * inner) as f64;
        if kernels::geglu::fused(&proj).is_none() {
            report(self.row(format!("GEGLU gate, burn's ops (no kernel here): {name} [{tokens}, {inner}]"), flops, &burns, None).await);
            return;
        }
        let ours = || flat(kernels::geglu::fused(&proj).expect("applies"));
        report(self.row(format!("GEGLU gate, ours vs burn's ops: {name} [{tokens}, {inner}]"), flops, &ours, Some(&burns)).await);
    }

    async fn conv3x3(&self, name: &str, shape: [usize; 4], report: &mut dyn FnMut(Row)) {
        let [batch, channels, height, width] = shape;
        let (x, weight, bias) = (self.normal(shape), self.normal([channels, channels * 9]), self.normal([channels]));
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let kernel = weight.clone().reshape([channels, channels, 3, 3]);
        let burns = || flat(conv2d(x.clone(), kernel.clone(), Some(bias.clone()), options.clone()));
        let flops = 2.0 * (batch * channels * height * width * channels * 9) as f64;
        let ours = || kernels::conv::conv2d(&x, &weight, &bias, 3, 1, [(1, 1); 2], false);
        if ours().is_none() {
            report(self.row(format!("conv 3×3, burn's direct kernel (no kernel here): {name} {shape:?}"), flops, &burns, None).await);
            return;
        }
        let f32_weights = || flat(ours().expect("applies"));
        report(self.row(format!("conv 3×3, ours vs burn's direct kernel: {name} {shape:?}"), flops, &f32_weights, Some(&burns)).await);
        // The same weights kept q8/q4 on the device, as the models hold them: ours reads them as
        // stored (burn's conv would expand them to f32 first).
        let weights = values(weight.clone()).await;
        for dtype in [StoredDtype::Q8, StoredDtype::Q4] {
            let shape_2d = [channels, channels * 9];
            let quantized = quant::encode(dtype, &weights, &shape_2d, Some(32))
                .ok()
                .and_then(|bytes| quant::device_quantized(dtype, &bytes, &shape_2d, Some(32), &self.device));
            let Some(quantized) = quantized else { continue };
            let ours = || kernels::conv::conv2d(&x, &quantized, &bias, 3, 1, [(1, 1); 2], false);
            if ours().is_some() {
                let op = format!("conv 3×3, {dtype:?} weights, ours (× = our f32 weights' time / this): {name} {shape:?}");
                report(self.row(op, flops, &|| flat(ours().expect("applies")), Some(&f32_weights)).await);
            }
        }
    }

    /// `Upsample2D` on an input of `shape`: our conv reading the input upsampled ×2 as it goes,
    /// against the upsampled input stored first and then convolved by our kernel.
    async fn upsampled_conv3x3(&self, name: &str, shape: [usize; 4], report: &mut dyn FnMut(Row)) {
        let [batch, channels, height, width] = shape;
        let (x, weight, bias) = (self.normal(shape), self.normal([channels, channels * 9]), self.normal([channels]));
        let flops = 2.0 * (batch * channels * 4 * height * width * channels * 9) as f64;
        let fused = || kernels::conv::conv2d(&x, &weight, &bias, 3, 1, [(1, 1); 2], true);
        let stored = || kernels::conv::conv2d(&upsample_nearest_2x(x.clone()), &weight, &bias, 3, 1, [(1, 1); 2], false);
        let (Some(_), Some(_)) = (fused(), stored()) else { return };
        let op = format!("×2 upsample + conv 3×3, read upsampled vs upsampled first (ours both): {name} {shape:?}");
        report(self.row(op, flops, &|| flat(fused().expect("applies")), Some(&|| flat(stored().expect("applies")))).await);
    }

    /// A Linear of `inputs` → `outputs` over `tokens` rows: burn's f32 matmul, and for our GEMM
    /// (`kernels::linear`) and burn's q8/q4 matmul on our block-32 weights (both dequantize
    /// while reading, as the model holds them) the time against burn's for the same weights and
    /// against burn's f32 matmul.
    async fn linear(&self, name: &str, tokens: usize, inputs: usize, outputs: usize, report: &mut dyn FnMut(Row)) {
        let x = self.normal([tokens, inputs]);
        let weight = self.normal([outputs, inputs]);
        let flops = 2.0 * (tokens * inputs * outputs) as f64;
        let shape = format!("{name} ({tokens}×{inputs} · {inputs}×{outputs})");
        let burn_f32 = || flat(x.clone().matmul(weight.clone().transpose()));
        report(self.row(format!("Linear f32, burn's matmul: {shape}"), flops, &burn_f32, None).await);
        let ours_f32 = || flat(kernels::linear::linear(&x, &weight, None).expect("applies"));
        let ours_applies = kernels::linear::linear(&x, &weight, None).is_some();
        if ours_applies {
            report(self.row(format!("Linear f32, ours vs burn's matmul: {shape}"), flops, &ours_f32, Some(&burn_f32)).await);
        }
        let weights = values(weight.clone()).await;
        for dtype in [StoredDtype::Q8, StoredDtype::Q4] {
            let shape_2d = [outputs, inputs];
            let quantized = quant::encode(dtype, &weights, &shape_2d, Some(32))
                .ok()
                .and_then(|bytes| quant::device_quantized(dtype, &bytes, &shape_2d, Some(32), &self.device));
            let Some(quantized) = quantized else { continue };
            let burns = || flat(x.clone().matmul(quantized.clone().transpose()));
            let op = format!("Linear {dtype:?}, burn's fused-dequant matmul (× = its f32 time / this): {shape}");
            report(self.row(op, flops, &burns, Some(&burn_f32)).await);
            if kernels::linear::linear(&x, &quantized, None).is_some() {
                let ours = || flat(kernels::linear::linear(&x, &quantized, None).expect("applies"));
                let op = format!("Linear {dtype:?}, ours vs burn's {dtype:?} matmul: {shape}");
                report(self.row(op, flops, &ours, Some(&burns)).await);
                let op = format!("Linear {dtype:?}, ours vs burn's f32 matmul: {shape}");
                report(self.row(op, flops, &ours, Some(&burn_f32)).await);
                if ours_applies {
                    let op = format!("Linear {dtype:?}, ours vs ours with f32 weights: {shape}");
                    report(self.row(op, flops, &ours, Some(&ours_f32)).await);
                }
            }
        }
    }
}

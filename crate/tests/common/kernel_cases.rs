//! Our kernels (`sdxl_web::kernels`) against burn's own ops on the same device, at shapes that
//! are not multiples of the kernels' tiles. Included by `tests/kernels.rs` (native: wgpu on
//! lavapipe, and the CPU backend) and `tests/web.rs` (WebGPU on SwiftShader): each case gives
//! our result and burn's, still on the device.

use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::activation::{gelu, silu};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use sdxl_web::kernels;
use sdxl_web::models::attention::{merge_heads, scaled_dot_product, split_heads};

/// One comparison: (what, ours, burn's).
pub type Case = (String, Tensor<3>, Tensor<3>);

fn normal<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// A GroupNorm with random affine parameters (a zero-initialized one would hide them).
fn random_norm(groups: usize, channels: usize, device: &Device) -> GroupNorm {
    let mut norm = GroupNormConfig::new(groups, channels).with_epsilon(1e-5).init(device);
    norm.gamma = norm.gamma.map(|gamma| gamma.map(|_| normal([channels], device)));
    norm.beta = norm.beta.map(|beta| beta.map(|_| normal([channels], device)));
    norm
}

/// [batch, channels, h, w, groups]: channels per group 1, 5, 10 (SDXL's 320 / 32), odd sides,
/// means up to 30 (the i-th case's mean is 10 · i).
pub const GROUP_NORM_SHAPES: [[usize; 5]; 4] = [[2, 30, 7, 9, 6], [1, 40, 13, 5, 8], [3, 12, 1, 1, 12], [2, 320, 9, 11, 32]];

pub fn group_norm_cases(device: &Device, shapes: &[[usize; 5]]) -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, &[batch, channels, height, width, groups]) in shapes.iter().enumerate() {
        let norm = random_norm(groups, channels, device);
        let x = normal([batch, channels, height, width], device) * 3.0 + (i as f64 * 10.0);
        let flat = |t: Tensor<4>| t.reshape([batch, channels, height * width]);
        let name = format!("group norm {:?}", [batch, channels, height, width, groups]);
        cases.push((
            format!("{name} + SiLU"),
            flat(kernels::group_norm::norm_silu(&norm, x.clone())),
            flat(silu(norm.forward(x.clone()))),
        ));
        cases.push((name, flat(kernels::group_norm::norm(&norm, x.clone())), flat(norm.forward(x))));
    }
    cases
}

/// [batch, tokens, inner] of a GEGLU projection's output [batch, tokens, 2 · inner]: rows of one
/// quad, a CLIP-like 77 tokens, a single token, and a dispatch of no whole number of workgroups.
pub const GEGLU_SHAPES: [[usize; 3]; 4] = [[2, 7, 12], [1, 77, 40], [3, 1, 4], [2, 300, 320]];

/// Our one-pass GEGLU against burn's `hidden * gelu(gate)`, on values up to about ±12 (erf's
/// tails on both sides).
pub fn geglu_cases(device: &Device, shapes: &[[usize; 3]]) -> Vec<Case> {
    shapes
        .iter()
        .map(|&[batch, tokens, inner]| {
            let proj = normal([batch, tokens, 2 * inner], device) * 4.0;
            let ours = kernels::geglu::fused(&proj).expect("the kernel applies on wgpu");
            let [hidden, gate] = proj.chunk(2, 2).try_into().expect("two chunks");
            (format!("geglu {:?}", [batch, tokens, inner]), ours, hidden * gelu(gate))
        })
        .collect()
}

/// [batch, queries, keys, heads, causal]: SDXL's cross-attention (77 keys), CLIP's causal 77,
/// queries and keys off the tiles (64 queries, 32 keys), a single query.
pub const ATTENTION_SHAPES: [(usize, usize, usize, usize, bool); 6] =
    [(2, 100, 77, 3, false), (1, 77, 77, 2, true), (2, 129, 33, 1, false), (1, 1, 5, 2, false), (1, 200, 200, 1, true), (2, 256, 256, 10, false)];

/// Our fused kernel against burn's ops (`scaled_dot_product`, the reference path) on the same
/// device, both over the projections' layout [batch, tokens, heads · 64].
pub fn attention_cases(device: &Device, shapes: &[(usize, usize, usize, usize, bool)]) -> Vec<Case> {
    shapes
        .iter()
        .map(|&(batch, queries, keys, heads, causal)| {
            let width = heads * kernels::attention::HEAD_DIM;
            let (q, k, v) = (normal([batch, queries, width], device), normal([batch, keys, width], device), normal([batch, keys, width], device));
            let ours = kernels::attention::fused(&q, &k, &v, heads, causal).expect("the kernel applies on wgpu");
            let reference = merge_heads(scaled_dot_product(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads), causal));
            (format!("attention {:?}", (batch, queries, keys, heads, causal)), ours, reference)
        })
        .collect()
}

/// burn's `FlashUnit` kernel against burn's ops (`scaled_dot_product`) on the same device, at
/// the same shapes, over split heads [batch, heads, tokens, 64] (compared merged).
pub fn flash_unit_cases(device: &Device, shapes: &[(usize, usize, usize, usize, bool)]) -> Vec<Case> {
    shapes
        .iter()
        .map(|&(batch, queries, keys, heads, causal)| {
            let dim = kernels::attention::HEAD_DIM;
            let (q, k, v) = (normal([batch, heads, queries, dim], device), normal([batch, heads, keys, dim], device), normal([batch, heads, keys, dim], device));
            let ours = kernels::attention::flash_unit(&q, &k, &v, causal).expect("FlashUnit applies on wgpu");
            let reference = scaled_dot_product(q, k, v, causal);
            (format!("FlashUnit attention {:?}", (batch, queries, keys, heads, causal)), merge_heads(ours), merge_heads(reference))
        })
        .collect()
}

/// ([batch, in, h, w], out channels, kernel, stride, [(top, bottom), (left, right)]): channel
/// counts off the 64 × 64 tiles and K off its 32-step, the UNet's stride-2 downsampler, the VAE's
/// (padding only bottom and right), a 1×1 shortcut, a single pixel.
pub const CONV_SHAPES: [([usize; 4], usize, usize, usize, [(usize, usize); 2]); 7] = [
    ([2, 5, 9, 7], 70, 3, 1, [(1, 1), (1, 1)]),
    ([1, 33, 17, 15], 33, 3, 2, [(1, 1), (1, 1)]),
    ([1, 16, 16, 16], 16, 3, 2, [(0, 1), (0, 1)]),
    ([2, 20, 5, 6], 48, 1, 1, [(0, 0), (0, 0)]),
    ([1, 3, 1, 1], 5, 3, 1, [(1, 1), (1, 1)]),
    ([2, 320, 16, 16], 320, 3, 1, [(1, 1), (1, 1)]),
    ([1, 64, 17, 15], 70, 3, 2, [(0, 1), (0, 1)]),
];

/// Our implicit-GEMM convolution against burn's `conv2d` on the same device; results flattened
/// to [batch, out, pixels].
pub fn conv_cases(device: &Device, shapes: &[([usize; 4], usize, usize, usize, [(usize, usize); 2])]) -> Vec<Case> {
    shapes
        .iter()
        .map(|&(shape, outputs, kernel, stride, padding)| {
            let [_, channels, _, _] = shape;
            let x = normal(shape, device);
            let weight = normal([outputs, channels * kernel * kernel], device);
            let bias = normal([outputs], device);
            let ours = kernels::conv::conv2d(&x, &weight, &bias, kernel, stride, padding, false).expect("the kernel applies on wgpu");
            let options = ConvOptions::new_with_padding([stride; 2], padding, [1, 1], 1);
            let reference = conv2d(x, weight.reshape([outputs, channels, kernel, kernel]), Some(bias), options);
            let flat = |t: Tensor<4>| {
                let [b, c, h, w] = t.dims();
                t.reshape([b, c, h * w])
            };
            assert_eq!(ours.dims(), reference.dims());
            (format!("conv {shape:?} → {outputs}, {kernel}×{kernel}, stride {stride}, padding {padding:?}"), flat(ours), flat(reference))
        })
        .collect()
}

/// [batch, in, h, w] and out channels of quantized-weight convolutions: K = in · 9 a multiple of
/// 32 (whole blocks per row, as the format stores them); out channels off the tile.
pub const QUANTIZED_CONV_SHAPES: [([usize; 4], usize); 2] = [([2, 32, 9, 7], 70), ([1, 64, 16, 15], 33)];

/// Our convolution reading q8 and q4 weights as stored against burn's `conv2d` on the same
/// weights expanded to f32.
pub fn quantized_conv_cases(device: &Device, shapes: &[([usize; 4], usize)]) -> Vec<Case> {
    use sdxl_web::weights::quant::{self, StoredDtype};
    let mut cases = Vec::new();
    for &(shape, outputs) in shapes {
        let [batch, channels, height, width] = shape;
        let columns = channels * 9;
        let values: Vec<f32> = (0..outputs * columns).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.05).collect();
        for dtype in [StoredDtype::Q8, StoredDtype::Q4] {
            let bytes = quant::encode(dtype, &values, &[outputs, columns], Some(32)).unwrap();
            let weight = quant::device_quantized(dtype, &bytes, &[outputs, columns], Some(32), device).expect("kept quantized on this device");
            assert!(kernels::conv::reads_as_stored(&weight), "{dtype:?}: read as stored, not expanded");
            let x = normal(shape, device);
            let bias = normal([outputs], device);
            let ours = kernels::conv::conv2d(&x, &weight, &bias, 3, 1, [(1, 1); 2], false).expect("the kernel applies on wgpu");
            let expanded = weight.dequantize().reshape([outputs, channels, 3, 3]);
            let options = ConvOptions::new_with_padding([1, 1], [(1, 1); 2], [1, 1], 1);
            let reference = conv2d(x, expanded, Some(bias), options);
            let flat = |t: Tensor<4>| t.reshape([batch, outputs, height * width]);
            cases.push((format!("conv {dtype:?} weights {shape:?} → {outputs}"), flat(ours), flat(reference)));
        }
    }
    cases
}

/// Linear layers: (the input's leading dimensions, in, out, bias): tokens and out features off
/// the 64 × 64 tile, in features whole blocks of 32 (as the format stores rows) but not whole
/// steps of the kernel's K, a single token, a 3-D input (batch × tokens, as the models call it),
/// and f32 rows of 36 (a step and one vec4 of the next: the kernel reads rows four at a time).
pub const LINEAR_SHAPES: [(&[usize], usize, usize, bool); 5] =
    [(&[77], 96, 70, true), (&[1], 32, 5, false), (&[2, 65], 320, 130, true), (&[3, 7], 64, 64, false), (&[2, 5], 36, 70, true)];

/// Our Linear kernel reading q8 and q4 weights as stored, and f32 ones, against burn's matmul
/// of the input with the same weights (expanded to f32) transposed, plus the bias.
pub fn linear_cases(device: &Device, shapes: &[(&[usize], usize, usize, bool)]) -> Vec<Case> {
    use sdxl_web::weights::quant::{self, StoredDtype};
    let mut cases = Vec::new();
    for &(leading, inputs, outputs, with_bias) in shapes {
        let tokens: usize = leading.iter().product();
        let values: Vec<f32> = (0..outputs * inputs).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.05).collect();
        let x = normal([tokens, inputs], device);
        let x = match leading {
            [batch, rest] => x.reshape([*batch, *rest, inputs]),
            _ => x.reshape([1, tokens, inputs]),
        };
        let bias = with_bias.then(|| normal([outputs], device));
        let f32_weight = Tensor::<2>::from_data(TensorData::new(values.clone(), [outputs, inputs]), device);
        let mut weights = vec![("f32".to_string(), f32_weight)];
        // Quantized where the rows are whole blocks of 32, as burn stores them.
        let dtypes = if inputs.is_multiple_of(32) { &[StoredDtype::Q8, StoredDtype::Q4][..] } else { &[] };
        for &dtype in dtypes {
            let bytes = quant::encode(dtype, &values, &[outputs, inputs], Some(32)).unwrap();
            let weight = quant::device_quantized(dtype, &bytes, &[outputs, inputs], Some(32), device).expect("kept quantized on this device");
            weights.push((format!("{dtype:?}"), weight));
        }
        for (what, weight) in weights {
            let ours = kernels::linear::linear(&x, &weight, bias.as_ref()).expect("the kernel applies on wgpu");
            let product = x.clone().matmul(weight.dequantize().transpose().unsqueeze::<3>());
            let reference = match &bias {
                Some(bias) => product + bias.clone().unsqueeze::<3>(),
                None => product,
            };
            cases.push((format!("linear {what} weights {leading:?} × {inputs} → {outputs}, bias {with_bias}"), ours, reference));
        }
    }
    cases
}

/// [batch, in, h, w] and out channels of convolutions of a ×2-upsampled input (3×3, padding 1,
/// as `Upsample2D`'s): sizes off the tile, odd, and one pixel.
pub const UPSAMPLED_CONV_SHAPES: [([usize; 4], usize); 3] = [([2, 5, 9, 7], 70), ([1, 32, 1, 1], 3), ([1, 64, 16, 15], 33)];

/// Our convolution reading the input upsampled ×2 as it goes, against burn's `conv2d` of the
/// upsampled input; f32 weights, and q4 ones read as stored where K is whole blocks.
pub fn upsampled_conv_cases(device: &Device, shapes: &[([usize; 4], usize)]) -> Vec<Case> {
    use sdxl_web::models::conv::upsample_nearest_2x;
    use sdxl_web::weights::quant::{self, StoredDtype};
    let mut cases = Vec::new();
    for &(shape, outputs) in shapes {
        let [batch, channels, height, width] = shape;
        let columns = channels * 9;
        // Made on the host: the wasm tests cannot read a tensor back synchronously.
        let values: Vec<f32> = (0..outputs * columns).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.05).collect();
        let mut weights = vec![("f32", Tensor::<2>::from_data(TensorData::new(values.clone(), [outputs, columns]), device))];
        if columns % 32 == 0 {
            let bytes = quant::encode(StoredDtype::Q4, &values, &[outputs, columns], Some(32)).unwrap();
            let q4 = quant::device_quantized(StoredDtype::Q4, &bytes, &[outputs, columns], Some(32), device).expect("kept quantized");
            assert!(kernels::conv::reads_as_stored(&q4));
            weights.push(("q4", q4));
        }
        for (dtype, weight) in weights {
            let x = normal(shape, device);
            let bias = normal([outputs], device);
            let ours = kernels::conv::conv2d(&x, &weight, &bias, 3, 1, [(1, 1); 2], true).expect("the kernel applies on wgpu");
            let expanded = weight.dequantize().reshape([outputs, channels, 3, 3]);
            let options = ConvOptions::new_with_padding([1, 1], [(1, 1); 2], [1, 1], 1);
            let reference = conv2d(upsample_nearest_2x(x), expanded, Some(bias), options);
            assert_eq!(ours.dims(), [batch, outputs, 2 * height, 2 * width]);
            let flat = |t: Tensor<4>| t.reshape([batch, outputs, 4 * height * width]);
            cases.push((format!("upsampled conv, {dtype} weights, {shape:?} → {outputs}"), flat(ours), flat(reference)));
        }
    }
    cases
}

/// [rows, width, batch, tokens]: widths of whole blocks (32, 96, and 1280 as OpenCLIP-bigG's),
/// row counts off any tile, ids covering the first and last rows and repeats.
pub const EMBEDDING_SHAPES: [(usize, usize, usize, usize); 3] = [(1000, 32, 2, 7), (333, 96, 1, 77), (49, 1280, 2, 5)];

/// A q8/q4 table kept quantized on the device, looked up by our kernel, against burn's select on
/// the expanded table.
pub fn embedding_cases(device: &Device, shapes: &[(usize, usize, usize, usize)]) -> Vec<Case> {
    use burn::tensor::{Int, TensorData};
    use sdxl_web::weights::quant::{self, StoredDtype};
    let mut cases = Vec::new();
    for &(rows, width, batch, tokens) in shapes {
        let values: Vec<f32> = (0..rows * width).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.05).collect();
        let count = batch * tokens;
        let ids: Vec<i64> = (0..count).map(|i| if i == 0 { rows as i64 - 1 } else { (i * 7919 % rows) as i64 }).collect();
        for dtype in [StoredDtype::Q8, StoredDtype::Q4] {
            let bytes = quant::encode(dtype, &values, &[rows, width], Some(32)).unwrap();
            let table = quant::device_quantized(dtype, &bytes, &[rows, width], Some(32), device).expect("kept quantized on this device");
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [batch, tokens]), device);
            assert!(kernels::embedding::gathers_as_stored(&table, &ids), "{dtype:?}: gathered as stored, not expanded");
            let ours = kernels::embedding::lookup(&table, ids.clone());
            let reference = table.dequantize().select(0, ids.reshape([count])).reshape([batch, tokens, width]);
            cases.push((format!("embedding {dtype:?} [{rows}, {width}] at [{batch}, {tokens}]"), ours, reference));
        }
    }
    cases
}

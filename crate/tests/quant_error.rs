//! The error each storage mode puts into a weight, measured (`--nocapture` prints the figures
//! FORMAT.md quotes): relative L2 on a full-size random SDXL weight and on every quantized
//! weight of the tiny fixture models. Component output errors are in tests/sharded.rs.
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system

mod common;

use common::fixtures;
use sdxl_web::weights::TensorSource;
use sdxl_web::relative_error::relative_l2;
use sdxl_web::weights::diffusers::{DiffusersFolder, weight_files};
use sdxl_web::weights::quant::{self, DEFAULT_BLOCK_SIZE, StoredDtype};
use sdxl_web::weights::safetensors::SafetensorsSource;

fn round_trip_error(dtype: StoredDtype, values: &[f32], shape: &[usize]) -> f64 {
    let block = dtype.is_quantized().then_some(DEFAULT_BLOCK_SIZE);
    let stored = quant::encode(dtype, values, shape, block).unwrap();
    relative_l2(&quant::decode(dtype, &stored, shape, block).unwrap(), values)
}

/// Normal(0, 0.02) values, as PyTorch initializes linear layers, from a fixed seed.
fn gaussian(count: usize) -> Vec<f32> {
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..count)
        .map(|_| (0.02 * (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos()) as f32)
        .collect()
}

/// ggml's `q4_0` (stable-diffusion.cpp's 4-bit format) as `quantize_row_q4_0_ref` computes it:
/// per block of 32, d = (the value of largest magnitude) / −8, levels min(15, ⌊x/d + 8.5⌋) − 8,
/// d stored as f16. Returns the decoded values.
fn q4_0_round_trip(values: &[f32]) -> Vec<f32> {
    values
        .chunks(32)
        .flat_map(|block| {
            let max = block.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let stored = half::f16::from_f32(d).to_f32();
            block.iter().map(move |&x| ((x * id + 8.5) as i8).min(15) as f32 - 8.0).map(move |q| q * stored).collect::<Vec<_>>()
        })
        .collect()
}

/// Our q4 against ggml's q4_0 on the same weights: never worse (rows here are whole blocks, as
/// q4_0 requires).
fn q4_against_q4_0(values: &[f32], shape: &[usize]) -> (f64, f64) {
    let ours = round_trip_error(StoredDtype::Q4, values, shape);
    let reference = relative_l2(&q4_0_round_trip(values), values);
    (ours, reference)
}

#[test]
fn q4_is_at_least_as_accurate_as_ggml_q4_0() {
    for shape in [vec![1280, 5120], vec![320, 320, 3, 3]] {
        let values = gaussian(shape.iter().product());
        let (ours, q4_0) = q4_against_q4_0(&values, &shape);
        println!("q4 {shape:?}: relative L2 {ours:.3e}, ggml q4_0 {q4_0:.3e} ({:+.1} %)", 100.0 * (ours / q4_0 - 1.0));
        assert!(ours <= q4_0, "{shape:?}: q4 {ours:.3e} > q4_0 {q4_0:.3e}");
    }
    let folder = DiffusersFolder::open(&fixtures().join("tiny-sdxl-base")).unwrap();
    let (mut ours_total, mut reference_total, mut count) = (0.0, 0.0, 0);
    for component in ["text_encoder", "text_encoder_2", "unet", "vae"] {
        let source = SafetensorsSource::open(&weight_files(&folder.root().join(component)).unwrap()).unwrap();
        for name in source.names() {
            let data = source.read(&name).unwrap().unwrap();
            let shape = data.shape().to_vec();
            let whole_blocks = shape.iter().skip(1).product::<usize>() % 32 == 0;
            if quant::is_quantizable(&name, &shape) && whole_blocks {
                let (ours, q4_0) = q4_against_q4_0(&data.try_into_vec::<f32>().unwrap(), &shape);
                assert!(ours <= q4_0 * (1.0 + 1e-6), "{name}: q4 {ours:.3e} > q4_0 {q4_0:.3e}");
                (ours_total, reference_total, count) = (ours_total + ours, reference_total + q4_0, count + 1);
            }
        }
    }
    println!("q4 on {count} tiny-base weights: mean relative L2 {:.3e}, ggml q4_0 {:.3e}", ours_total / count as f64, reference_total / count as f64);
    assert!(count > 10);
}

/// (mode, bound): each bound sits just above the figure measured on Normal(0, 0.02) weights.
const BOUNDS: [(StoredDtype, f64); 3] = [(StoredDtype::F16, 3e-4), (StoredDtype::Q8, 6e-3), (StoredDtype::Q4, 8.5e-2)];

#[test]
fn full_size_random_weights() {
    // The UNet's feed-forward projection [1280, 5120] and a 3×3 conv of the 320-channel stage.
    for shape in [vec![1280, 5120], vec![320, 320, 3, 3]] {
        let values = gaussian(shape.iter().product());
        for (dtype, bound) in BOUNDS {
            let error = round_trip_error(dtype, &values, &shape);
            println!("{dtype} (block {DEFAULT_BLOCK_SIZE}) {shape:?}: relative L2 {error:.3e}");
            assert!(error <= bound, "{dtype} {shape:?}: {error:.3e} > {bound:e}");
            assert!(error > bound / 10.0, "{dtype} {shape:?}: {error:.3e} is implausibly small");
        }
    }
}

#[test]
fn tiny_fixture_weights() {
    let folder = DiffusersFolder::open(&fixtures().join("tiny-sdxl-base")).unwrap();
    for (dtype, bound) in BOUNDS.into_iter().skip(1) {
        let mut errors = Vec::new();
        for component in ["text_encoder", "text_encoder_2", "unet", "vae"] {
            let source = SafetensorsSource::open(&weight_files(&folder.root().join(component)).unwrap()).unwrap();
            for name in source.names() {
                let data = source.read(&name).unwrap().unwrap();
                let shape = data.shape().to_vec();
                if quant::is_quantizable(&name, &shape) {
                    errors.push(round_trip_error(dtype, &data.try_into_vec::<f32>().unwrap(), &shape));
                }
            }
        }
        errors.sort_by(f64::total_cmp);
        let (median, worst) = (errors[errors.len() / 2], errors[errors.len() - 1]);
        println!("{dtype} on {} tiny-base weights: median {median:.3e}, worst {worst:.3e}", errors.len());
        assert!(median <= bound, "{dtype}: median {median:.3e} > {bound:e}");
        assert!(worst <= 2.0 * bound, "{dtype}: worst {worst:.3e} > {:e}", 2.0 * bound);
    }
}

/// The loader expands a shard's q8/q4 tensors on the device in one batch; the values equal the
/// host reference bit for bit, on the CPU backend and on wgpu. Rows that are not whole blocks
/// (here [7, 45]) are left to the host.
#[test]
fn device_dequantization_equals_the_host_decoding() {
    use burn::tensor::{Device, DeviceKind};
    let shapes = [vec![64, 320], vec![5, 64, 3, 3], vec![1280, 5120], vec![7, 45]];
    for device in [Device::flex(), Device::wgpu(DeviceKind::DefaultDevice)] {
        for dtype in [StoredDtype::Q8, StoredDtype::Q4] {
            for block in [DEFAULT_BLOCK_SIZE, 64] {
                let (mut scales, mut values, mut host) = (Vec::new(), Vec::new(), Vec::new());
                for shape in &shapes {
                    let weights = gaussian(shape.iter().product());
                    let stored = quant::encode(dtype, &weights, shape, Some(block)).unwrap();
                    let Some((s, v)) = quant::whole_blocks(dtype, &stored, shape, Some(block)) else {
                        assert_eq!(shape, &[7, 45], "{shape:?} is whole blocks of {block}");
                        continue;
                    };
                    scales.extend(s);
                    values.extend_from_slice(v);
                    host.extend(quant::decode(dtype, &stored, shape, Some(block)).unwrap());
                }
                let on_device = quant::dequantize_blocks(dtype, &values, &scales, block, &device).unwrap();
                let on_device = on_device.into_data().try_into_vec::<f32>().unwrap();
                assert!(on_device == host, "{dtype} block {block} on {device:?} differs from the host");
            }
        }
    }
}

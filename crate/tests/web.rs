//! The wasm side in headless Chromium (WebGPU on SwiftShader): `cargo test --target
//! wasm32-unknown-unknown --test web` or `wasm-pack test` (see the README).
#![cfg(target_arch = "wasm32")]

use burn::tensor::{Device, Tensor, TensorData};
use sdxl_web::error::Error;
use sdxl_web::ops_check::run;
use sdxl_web::relative_error::relative_l2;
use sdxl_web::pipeline::Residency;
use sdxl_web::pipeline::assembly::{Assembly, Role};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// The worker protocol's tests (natively, `tests/protocol.rs` on its own).
#[path = "protocol.rs"]
mod protocol;

/// Our WGSL kernels' cases (natively, `tests/kernels.rs`).
#[path = "common/kernel_cases.rs"]
mod kernel_cases;

thread_local! {
    static WEBGPU: std::cell::OnceCell<Device> = const { std::cell::OnceCell::new() };
}

/// burn on the browser's WebGPU, initialized once per test binary (a second registration of
/// the same device fails).
async fn webgpu() -> Device {
    if let Some(device) = WEBGPU.with(|cell| cell.get().cloned()) {
        return device;
    }
    let device = Device::wgpu_options().init_async().await.expect("a WebGPU adapter");
    WEBGPU.with(|cell| cell.set(device.clone()).expect("initialized once"));
    device
}

/// The ops check graph on WebGPU equals the CPU backend's values (committed natively, kept
/// current by `crate/tests/ops_check.rs`).
#[wasm_bindgen_test]
async fn webgpu_matches_the_native_cpu_values() {
    let want: std::collections::BTreeMap<String, Vec<f32>> =
        serde_json::from_str(include_str!("../../tests/fixtures/ops_check.json")).unwrap();
    let got = run(&webgpu().await).await.expect("the graph runs on WebGPU");
    assert_eq!(got.len(), want.len());
    for stage in &got {
        let error = relative_l2(&stage.values, &want[stage.name]);
        wasm_bindgen_test::console_log!("{:<16} relative L2 {error:.2e}", stage.name);
        assert!(error <= 1e-4, "{}: WebGPU differs from the CPU backend, relative L2 {error:.2e}", stage.name);
    }
}

/// A seed gives the same noise in the browser as natively: the values `crate/tests/schedulers.rs`
/// derives from the documented algorithm (an independent Python version), bit for bit.
#[wasm_bindgen_test]
fn seeded_noise_equals_the_native_values() {
    use sdxl_web::noise::NoiseGenerator;
    let seed_0: [f32; 8] =
        [-0.45275775, 0.20776604, 2.650606, -0.49042282, -0.9886041, 1.8721014, 0.25246271, -1.8534243];
    assert_eq!(NoiseGenerator::new(0).values(8), seed_0);
    let seed_max: [f32; 8] =
        [0.40389818, -0.24716993, -1.5578115, 0.7785845, 0.37761974, -0.74491614, -0.0030864829, 0.34378263];
    assert_eq!(NoiseGenerator::new(u64::MAX).values(8), seed_max);
}

/// The shard loader in wasm32 on WebGPU: the demo refiner, file by file, with a corrupt copy
/// refused first (and the assembly still usable after it).
#[wasm_bindgen_test]
async fn the_demo_refiner_loads_file_by_file_on_webgpu() {
    let device = webgpu().await;
    let manifest = include_bytes!("../../web/demo-model/refiner/manifest.json");
    let shard = include_bytes!("../../web/demo-model/refiner/unet-00000.bin");
    let mut refiner = Assembly::new(manifest, "https://example.org/refiner", Role::Refiner, Residency::Resident, &device).unwrap();
    let needed: Vec<String> = refiner.needed().iter().map(|f| f.path.clone()).collect();
    assert_eq!(needed, ["unet-00000.bin"]);
    let mut corrupt = shard.to_vec();
    corrupt[100] ^= 0x40;
    assert!(matches!(refiner.add("unet-00000.bin", &corrupt), Err(Error::Integrity { .. })));
    refiner.add("unet-00000.bin", shard).unwrap();
    refiner.into_refiner().unwrap();
}

/// On WebGPU, q8 and q4 matrices stay block-quantized on the device (matmuls read them as stored,
/// `quant::device_quantized`) and give the products of the weight expanded to f32.
#[wasm_bindgen_test]
async fn quantized_matrices_stay_quantized_on_webgpu() {
    use sdxl_web::weights::quant::{self, StoredDtype};
    let device = webgpu().await;
    let (rows, cols, batch) = (64, 96, 5);
    let wave = |n: usize, step: f32| (0..n).map(|i| (i as f32 * step).sin()).collect::<Vec<f32>>();
    let input = Tensor::<2>::from_data(TensorData::new(wave(batch * cols, 0.37), [batch, cols]), &device);
    for dtype in [StoredDtype::Q8, StoredDtype::Q4] {
        let bytes = quant::encode(dtype, &wave(rows * cols, 0.11), &[rows, cols], Some(32)).unwrap();
        let expanded = quant::decode(dtype, &bytes, &[rows, cols], Some(32)).unwrap();
        let kept = quant::device_quantized(dtype, &bytes, &[rows, cols], Some(32), &device).expect("kept quantized on WebGPU");
        let expanded = Tensor::<2>::from_data(TensorData::new(expanded, [rows, cols]), &device);
        let ours = input.clone().matmul(kept.transpose()).into_data_async().await.unwrap();
        let want = input.clone().matmul(expanded.transpose()).into_data_async().await.unwrap();
        let error = relative_l2(&ours.try_to_vec::<f32>().unwrap(), &want.try_to_vec::<f32>().unwrap());
        wasm_bindgen_test::console_log!("{dtype} kept quantized: relative L2 {error:.2e}");
        assert!(error <= 1e-5, "{dtype}: relative L2 {error:.2e}");
    }
}

/// Our WGSL kernels on WebGPU against burn's ops on the same device (`kernel_cases.rs`): the
/// launcher and every kernel work in the browser too.
#[wasm_bindgen_test]
async fn our_kernels_match_burns_ops_on_webgpu() {
    let device = webgpu().await;
    let cases = kernel_cases::group_norm_cases(&device, &kernel_cases::GROUP_NORM_SHAPES)
        .into_iter()
        .chain(kernel_cases::geglu_cases(&device, &kernel_cases::GEGLU_SHAPES))
        .chain(kernel_cases::attention_cases(&device, &kernel_cases::ATTENTION_SHAPES))
        .chain(kernel_cases::flash_unit_cases(&device, &kernel_cases::ATTENTION_SHAPES))
        .chain(kernel_cases::conv_cases(&device, &kernel_cases::CONV_SHAPES))
        .chain(kernel_cases::quantized_conv_cases(&device, &kernel_cases::QUANTIZED_CONV_SHAPES))
        .chain(kernel_cases::upsampled_conv_cases(&device, &kernel_cases::UPSAMPLED_CONV_SHAPES))
        .chain(kernel_cases::linear_cases(&device, &kernel_cases::LINEAR_SHAPES))
        .chain(kernel_cases::embedding_cases(&device, &kernel_cases::EMBEDDING_SHAPES));
    for (name, ours, burn) in cases {
        let ours = ours.into_data_async().await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let burn = burn.into_data_async().await.unwrap();
        assert_eq!(ours.shape(), burn.shape(), "{name}");
        let error = relative_l2(&ours.try_to_vec::<f32>().unwrap(), &burn.try_to_vec::<f32>().unwrap());
        wasm_bindgen_test::console_log!("{name}: relative L2 {error:.2e}");
        assert!(error <= 1e-5, "{name}: relative L2 {error:.3e}");
    }
}

//! The ops check graph on the browser's WebGPU against burn's CPU backend (flex), both inside
//! headless Chromium: `cargo test --target wasm32-unknown-unknown` or `wasm-pack test`.
#![cfg(target_arch = "wasm32")]

use burn::tensor::Device;
use sdxl_web::ops_check::{relative_l2, run};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn webgpu_matches_cpu() {
    let gpu = Device::wgpu_options()
        .init_async()
        .await
        .expect("a WebGPU adapter");
    let got = run(&gpu).await.expect("the graph runs on WebGPU");
    let want = run(&Device::flex()).await.expect("the graph runs on flex");
    assert_eq!(got.len(), want.len());
    for (got, want) in got.iter().zip(&want) {
        let error = relative_l2(&got.values, &want.values);
        wasm_bindgen_test::console_log!("{:<16} relative L2 {error:.2e}", want.name);
        assert!(
            error <= 1e-4,
            "{}: WebGPU differs from flex, relative L2 {error:.2e}",
            want.name
        );
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

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

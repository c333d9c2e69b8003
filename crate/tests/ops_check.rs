//! The ops check graph on burn's wgpu backend (Vulkan; lavapipe on CI) against its CPU backend,
//! and the committed CPU values the browser's wasm test compares WebGPU with.
#![cfg(not(target_arch = "wasm32"))]

use burn::tensor::{Device, DeviceKind, try_read_sync};
use sdxl_web::ops_check::{Stage, run};
use sdxl_web::relative_error::relative_l2;

fn stages(device: &Device) -> Vec<Stage> {
    try_read_sync(run(device))
        .expect("native reads are synchronous")
        .expect("the graph runs")
}

#[test]
fn wgpu_matches_cpu() {
    let cpu = stages(&Device::flex());
    let gpu = stages(&Device::wgpu(DeviceKind::DefaultDevice));
    assert_eq!(cpu.len(), gpu.len());
    for (want, got) in cpu.iter().zip(&gpu) {
        let error = relative_l2(&got.values, &want.values);
        println!(
            "{:<16} {} values, relative L2 {error:.2e}",
            want.name,
            want.values.len()
        );
        assert!(
            want.values.iter().all(|v| v.is_finite()),
            "{}: not finite",
            want.name
        );
        assert!(
            error <= 1e-4,
            "{}: wgpu differs from cpu, relative L2 {error:.2e}",
            want.name
        );
    }
}

/// `tests/fixtures/ops_check.json` (written by `cargo run --example ops_check -- --device cpu`)
/// holds what the CPU backend computes now.
#[test]
fn the_fixture_is_the_cpu_run() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/ops_check.json");
    let fixture: std::collections::BTreeMap<String, Vec<f32>> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cpu = stages(&Device::flex());
    assert_eq!(fixture.len(), cpu.len());
    for stage in &cpu {
        assert_eq!(fixture[stage.name], stage.values, "{}: regenerate {path}", stage.name);
    }
}

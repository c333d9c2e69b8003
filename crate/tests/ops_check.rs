//! The ops check graph on burn's wgpu backend (Vulkan; lavapipe on CI) against its CPU backend.
#![cfg(not(target_arch = "wasm32"))]

use burn::tensor::{Device, DeviceKind, try_read_sync};
use sdxl_web::ops_check::{Stage, relative_l2, run};

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

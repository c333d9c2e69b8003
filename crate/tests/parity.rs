//! Each network against diffusers' outputs on the tiny random-weight fixtures
//! (`tests/parity/make_fixtures.py`), in f32 on the CPU backend and on wgpu.
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::{fixtures, relative_l2};
use sdxl_web::network_run::{self, Component};
use sdxl_web::device::DeviceChoice;
use sdxl_web::weights::safetensors::SafetensorsSource;

const TOLERANCE: f64 = 1e-4;

fn check(model: &str, component: Component, fixture: &str, device: &Device) {
    let dir = fixtures().join("parity");
    let inputs = SafetensorsSource::open(&[dir.join(format!("{fixture}.in.safetensors"))]).unwrap();
    let expected = SafetensorsSource::open(&[dir.join(format!("{fixture}.out.safetensors"))]).unwrap();
    let outputs = network_run::run(&fixtures().join(model), component, &inputs, device).unwrap();
    for (name, ours) in &outputs {
        let reference = expected.read_raw(name).unwrap().unwrap_or_else(|| panic!("no reference `{name}`"));
        let error = relative_l2(ours, &reference);
        println!("{fixture}.{name} on {device:?}: relative L2 {error:.2e}");
        assert!(error <= TOLERANCE, "{fixture}.{name}: relative L2 {error:.3e} > {TOLERANCE:e}");
    }
}

fn all_components(device: DeviceChoice) {
    let device = device.device();
    check("tiny-sdxl-base", Component::TextEncoder, "text_encoder", &device);
    check("tiny-sdxl-base", Component::TextEncoder2, "text_encoder_2", &device);
    check("tiny-sdxl-base", Component::Unet, "unet", &device);
    check("tiny-sdxl-refiner", Component::Unet, "unet_refiner", &device);
    check("tiny-sdxl-base", Component::VaeDecoder, "vae_decoder", &device);
    check("tiny-sdxl-base", Component::VaeEncoder, "vae_encoder", &device);
}

#[test]
fn components_match_diffusers_on_cpu() {
    all_components(DeviceChoice::Cpu);
}

#[test]
fn components_match_diffusers_on_wgpu() {
    all_components(DeviceChoice::Wgpu);
}

/// The CLI reads and writes the same files, and turns bad input into a message, not a panic.
#[test]
fn cli_runs_a_component_and_reports_bad_input() {
    let out_dir = std::env::temp_dir().join(format!("sdxl-parity-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("vae_decoder.safetensors");
    let parity = fixtures().join("parity");
    let model = fixtures().join("tiny-sdxl-base");
    let run = |input: &Path, component: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sdxl"))
            .args(["run", "--model"])
            .arg(&model)
            .args(["--component", component, "--in"])
            .arg(input)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let ok = run(&parity.join("vae_decoder.in.safetensors"), "vae_decoder");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let ours = SafetensorsSource::open(&[out.clone()]).unwrap().read_raw("sample").unwrap().unwrap();
    let expected = SafetensorsSource::open(&[parity.join("vae_decoder.out.safetensors")])
        .unwrap()
        .read_raw("sample")
        .unwrap()
        .unwrap();
    assert!(relative_l2(&ours, &expected) <= TOLERANCE);

    // The decoder's input file has no `sample`: the encoder must say which tensor is missing.
    let missing = run(&parity.join("vae_decoder.in.safetensors"), "vae_encoder");
    assert!(!missing.status.success());
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(message.contains("input `sample`: missing"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
}

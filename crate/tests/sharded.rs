//! Converted models (weights-tools/FORMAT.md) against diffusers: the tiny base and refiner,
//! converted in every mode, give the parity fixtures' outputs within each mode's bound.
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use common::{Quiet, fixtures, relative_l2};
use sdxl_web::network_run::{self, Component};
use sdxl_web::device::DeviceChoice;
use sdxl_web::pipeline::{Base, Sdxl, GenerateParams, Noise, Refiner};
use sdxl_web::tokenizer::ClipTokenizer;
use sdxl_web::weights::convert::{ConvertOptions, convert};
use sdxl_web::weights::quant::{self, StoredDtype};
use sdxl_web::weights::safetensors::SafetensorsSource;
use sdxl_web::weights::sharded::{ModuleAssembly, ShardedModel};
use sdxl_web::weights::ModelSource;

/// A converted copy of a fixture model in a private folder, removed afterwards.
struct Converted(PathBuf);

impl Converted {
    fn new(model: &str, quant: StoredDtype, shard_bytes: Option<u64>) -> Self {
        // Tests run in parallel: each conversion gets a folder of its own.
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sdxl-sharded-{}-{n}-{model}-{quant}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut options = ConvertOptions { quant, ..Default::default() };
        options.shard_bytes = shard_bytes.unwrap_or(options.shard_bytes);
        convert(&fixtures().join(model), &dir, &options, &mut |_| {}).unwrap();
        Converted(dir)
    }
}

impl Drop for Converted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CASES: [(&str, Component, &str); 6] = [
    ("tiny-sdxl-base", Component::TextEncoder, "text_encoder"),
    ("tiny-sdxl-base", Component::TextEncoder2, "text_encoder_2"),
    ("tiny-sdxl-base", Component::Unet, "unet"),
    ("tiny-sdxl-refiner", Component::Unet, "unet_refiner"),
    ("tiny-sdxl-base", Component::VaeDecoder, "vae_decoder"),
    ("tiny-sdxl-base", Component::VaeEncoder, "vae_encoder"),
];

/// Relative L2 of a component's outputs on a model folder against diffusers' (the worst output).
fn error_of(model: &Path, component: Component, fixture: &str) -> f64 {
    let dir = fixtures().join("parity");
    let inputs = SafetensorsSource::open(&[dir.join(format!("{fixture}.in.safetensors"))]).unwrap();
    let expected = SafetensorsSource::open(&[dir.join(format!("{fixture}.out.safetensors"))]).unwrap();
    let outputs = network_run::run(model, component, &inputs, &Device::flex()).unwrap();
    outputs
        .iter()
        .map(|(name, ours)| relative_l2(ours, &expected.read_raw(name).unwrap().unwrap()))
        .fold(0.0, f64::max)
}

/// Converts both fixture models and checks every component within `bound`; prints the errors
/// (`--nocapture`), which FORMAT.md quotes.
fn parity(quant: StoredDtype, bound: f64) {
    for model in ["tiny-sdxl-base", "tiny-sdxl-refiner"] {
        let converted = Converted::new(model, quant, None);
        assert_eq!(ShardedModel::open(&converted.0).unwrap().verify(), Vec::<String>::new());
        for (_, component, fixture) in CASES.iter().filter(|(m, ..)| *m == model) {
            let error = error_of(&converted.0, *component, fixture);
            println!("{quant} {fixture}: relative L2 {error:.2e} (bound {bound:.0e})");
            assert!(error <= bound, "{quant} {fixture}: relative L2 {error:.3e} > {bound:e}");
        }
    }
}

#[test]
fn f32_matches_diffusers() {
    parity(StoredDtype::F32, 1e-4);
}

/// The fixtures' weights are f16 already, so storing them as f16 loses nothing.
#[test]
fn f16_matches_diffusers() {
    parity(StoredDtype::F16, 1e-4);
}

#[test]
fn q8_within_its_documented_bound() {
    parity(StoredDtype::Q8, Q8_BOUND);
}

#[test]
fn q4_within_its_documented_bound() {
    parity(StoredDtype::Q4, Q4_BOUND);
}

/// On wgpu, q8 and q4 Linear and conv weights stay block-quantized on the device (burn's
/// quantized tensors, which matmuls read as stored and convolutions expand per call); the CPU
/// backend has no such tensors and expands every weight to f32. Both give the same outputs.
#[test]
fn weights_stay_quantized_on_wgpu() {
    let (cpu, wgpu) = (Device::flex(), DeviceChoice::Wgpu.device());
    for quant in [StoredDtype::Q8, StoredDtype::Q4] {
        for model in ["tiny-sdxl-base", "tiny-sdxl-refiner"] {
            let converted = Converted::new(model, quant, None);
            let manifest = ShardedModel::open(&converted.0).unwrap().manifest().clone();
            let kept = |device: &Device| {
                manifest.tensors.iter().filter(|t| quant::device_scheme(t.dtype, &t.shape, t.block_size, device).is_some()).count()
            };
            println!("{quant} {model}: {} of {} tensors kept quantized on wgpu", kept(&wgpu), manifest.tensors.len());
            assert!(kept(&wgpu) >= 20, "{quant} {model}: {} kept", kept(&wgpu));
            assert_eq!(kept(&cpu), 0);
            for (_, component, fixture) in CASES.iter().filter(|(m, ..)| *m == model) {
                let inputs = SafetensorsSource::open(&[fixtures().join(format!("parity/{fixture}.in.safetensors"))]).unwrap();
                let on_cpu = network_run::run(&converted.0, *component, &inputs, &cpu).unwrap();
                let on_wgpu = network_run::run(&converted.0, *component, &inputs, &wgpu).unwrap();
                for ((name, ours), (_, expected)) in on_wgpu.iter().zip(&on_cpu) {
                    let error = relative_l2(ours, expected);
                    assert!(error <= 1e-5, "{quant} {fixture} {name}: wgpu vs cpu relative L2 {error:.3e}");
                }
            }
        }
    }
}

/// Bounds from the measured errors (FORMAT.md), with headroom for other backends' rounding.
const Q8_BOUND: f64 = 2e-2;
const Q4_BOUND: f64 = 5e-1;
/// The q8 demo's base + refiner latents and image against diffusers' on the fp16 weights.
const DEMO_BOUND: f64 = 1e-2;

/// Tiny shards (every tensor alone) load exactly like one shard per component.
#[test]
fn many_small_shards_load_like_one() {
    let one = Converted::new("tiny-sdxl-base", StoredDtype::Q8, None);
    let many = Converted::new("tiny-sdxl-base", StoredDtype::Q8, Some(1));
    let manifest = ShardedModel::open(&many.0).unwrap().manifest().clone();
    assert_eq!(manifest.shards.len(), manifest.tensors.len(), "every tensor has a shard of its own");
    assert_eq!(ShardedModel::open(&many.0).unwrap().verify(), Vec::<String>::new());
    for (component, fixture) in [(Component::VaeDecoder, "vae_decoder"), (Component::TextEncoder2, "text_encoder_2")] {
        assert_eq!(error_of(&one.0, component, fixture), error_of(&many.0, component, fixture));
    }
}

/// The browser's path: shard bytes handed over one at a time, in any order.
#[test]
fn shards_applied_one_by_one_in_any_order() {
    let converted = Converted::new("tiny-sdxl-base", StoredDtype::Q8, Some(4096));
    let manifest_bytes = std::fs::read(converted.0.join("manifest.json")).unwrap();
    let model = ShardedModel::from_manifest(&manifest_bytes, "https://example.test/model").unwrap();
    let device = Device::flex();
    let config: sdxl_web::models::vae::VaeConfig = model.config("vae").unwrap();
    let mut assembly = ModuleAssembly::new("vae", config.init(&device).unwrap(), &[]);
    let mut shards: Vec<_> = model.manifest().shards_of("vae").map(|s| s.file.clone()).collect();
    assert!(shards.len() > 2, "the test needs several shards");
    shards.reverse();
    for file in &shards {
        let bytes = std::fs::read(converted.0.join(file)).unwrap();
        model.check_shard(file, &bytes).and_then(|view| assembly.apply(&view, &device)).unwrap();
    }
    let vae = assembly.finish(&model, &device).unwrap();
    // Same weights as the native folder load: the decoder gives the same output.
    let parity = fixtures().join("parity");
    let latents = SafetensorsSource::open(&[parity.join("vae_decoder.in.safetensors")]).unwrap();
    let latents = burn::tensor::Tensor::<4>::from_data(
        latents.read_raw("latents").unwrap().unwrap().convert::<f32>(),
        &device,
    );
    let ours = vae.decode(latents).into_data();
    let native = network_run::run(
        &converted.0,
        Component::VaeDecoder,
        &SafetensorsSource::open(&[parity.join("vae_decoder.in.safetensors")]).unwrap(),
        &device,
    )
    .unwrap();
    assert_eq!(relative_l2(&ours, &native[0].1), 0.0);
}

/// The converter streams: the manifest records the stored dtypes the mode asks for.
#[test]
fn modes_store_what_they_say() {
    let q4 = Converted::new("tiny-sdxl-base", StoredDtype::Q4, None);
    let manifest = ShardedModel::open(&q4.0).unwrap().manifest().clone();
    let dtype_of = |name: &str| manifest.tensors.iter().find(|t| t.name == name).unwrap().dtype;
    assert_eq!(dtype_of("text_model.embeddings.token_embedding.weight"), StoredDtype::Q4);
    assert_eq!(dtype_of("text_model.embeddings.position_embedding.weight"), StoredDtype::F16);
    assert_eq!(dtype_of("text_model.encoder.layers.0.self_attn.q_proj.weight"), StoredDtype::Q4);
    assert_eq!(dtype_of("text_model.encoder.layers.0.self_attn.q_proj.bias"), StoredDtype::F16);
    assert_eq!(dtype_of("conv_in.weight"), StoredDtype::Q4);
    assert_eq!(dtype_of("conv_norm_out.weight"), StoredDtype::F16);
    for file in ["tokenizer/vocab.json", "tokenizer_2/merges.txt", "scheduler/scheduler_config.json"] {
        assert!(manifest.files.iter().any(|f| f.path == file), "{file} not carried");
        assert!(q4.0.join(file).is_file());
    }
}

/// The bundled demo model (web/demo-model, q8, written by weights-tools/scripts/make_demo_model.py):
/// intact, its refiner the UNet alone, its UNets and VAE the fixtures' within the q8 bound, and a
/// base + refiner run gives diffusers' image of the same run (tests/fixtures/demo) within
/// `DEMO_BOUND`.
#[test]
fn bundled_demo_model_verifies_and_matches() {
    let device = Device::flex();
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web/demo-model");
    for (model, folder, components) in
        [("tiny-sdxl-base", "base", &["text_encoder", "text_encoder_2", "unet", "vae"][..]), ("tiny-sdxl-refiner", "refiner", &["unet"])]
    {
        let dir = demo.join(folder);
        let sharded = ShardedModel::open(&dir).unwrap();
        assert_eq!(sharded.verify(), Vec::<String>::new());
        assert_eq!(sharded.manifest().components.keys().collect::<Vec<_>>(), components);
        assert!(sharded.manifest().tensors.iter().any(|t| t.dtype == StoredDtype::Q8));
        // The demo's text encoders have a vocabulary of their own; its other networks are the fixtures'.
        for (_, component, fixture) in CASES.iter().filter(|(m, c, _)| *m == model && !matches!(c, Component::TextEncoder | Component::TextEncoder2)) {
            let error = error_of(&dir, *component, fixture);
            assert!(error <= Q8_BOUND, "demo {folder} {fixture}: relative L2 {error:.3e}");
        }
    }

    let reference = SafetensorsSource::open(&[fixtures().join("demo/reference.safetensors")]).unwrap();
    let expected = |name: &str| reference.read_raw(name).unwrap().unwrap_or_else(|| panic!("no `{name}`"));
    let prompt = "a lighthouse on a cliff at dusk";
    for (tokenizer, ids) in [("tokenizer", "input_ids"), ("tokenizer_2", "input_ids_2")] {
        let ours = ClipTokenizer::from_dir(&demo.join("base").join(tokenizer)).unwrap().encode(prompt).unwrap().ids;
        assert_eq!(ours, expected(ids).try_to_vec::<i64>().unwrap(), "{tokenizer}");
    }
    let base = Base::from_folder(&demo.join("base"), &device).unwrap();
    let refiner = Refiner::from_folder(&demo.join("refiner"), &device).unwrap();
    let mut params = GenerateParams::new(prompt);
    (params.negative_prompt, params.steps, params.width, params.height) = (Some(String::new()), 10, 64, 64);
    let noise = Noise::given(Tensor::from_data(expected("noise"), &device), &device);
    let latents = Sdxl::new(&base, Some(&refiner)).denoise(&params, noise, &device, &mut Quiet).unwrap();
    let latent_error = relative_l2(&latents.clone().into_data(), &expected("latents"));
    let error = relative_l2(&base.decode(latents).unwrap().pixels, &expected("image"));
    println!("demo base + refiner vs diffusers: latents {latent_error:.2e}, image {error:.2e} (bound {DEMO_BOUND:.0e})");
    assert!(latent_error <= DEMO_BOUND, "demo latents relative L2 {latent_error:.3e}");
    assert!(error <= DEMO_BOUND, "demo image relative L2 {error:.3e}");
}

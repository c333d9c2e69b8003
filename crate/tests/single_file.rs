//! Stability's single-file layout ↔ diffusers keys, both ways, against the key tables that
//! `weights-tools/scripts/make_single_file_fixtures.py` proved with diffusers' own converters.
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::fixtures;
use sdxl_web::weights::TensorSource;
use sdxl_web::weights::convert::{ConvertOptions, convert};
use sdxl_web::weights::diffusers::weight_files;
use sdxl_web::weights::quant::StoredDtype;
use sdxl_web::weights::safetensors::SafetensorsSource;
use sdxl_web::weights::sharded::ShardedModel;
use sdxl_web::weights::single_file::{Layout, Transform, to_diffusers};

#[derive(serde::Deserialize)]
struct Entry {
    shape: Vec<usize>,
    diffusers: Vec<(String, String)>,
}

fn table(model: &str) -> BTreeMap<String, Entry> {
    let path = fixtures().join("single-file").join(format!("{model}.keys.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn layout(model: &str) -> Layout {
    let base = model == "tiny-sdxl-base";
    // The tiny fixtures' configs: UNet layers_per_block 2, VAE 4 blocks.
    Layout { unet_layers_per_block: 2, vae_blocks: 4, clip_l: base.then_some(0), open_clip: if base { 1 } else { 0 } }
}

/// The fixture's tensor for a diffusers key (raw f16 bytes and shape). transformers 5 saved the
/// base `text_encoder` without the `text_model.` prefix Stability's keys (and ours) carry.
fn diffusers_tensor(model: &str, component: &str, key: &str) -> (Vec<u8>, Vec<usize>) {
    let dir = fixtures().join(model).join(component);
    let source = SafetensorsSource::open(&weight_files(&dir).unwrap()).unwrap();
    let data = source
        .read_raw(key)
        .unwrap()
        .or_else(|| source.read_raw(key.strip_prefix("text_model.")?).unwrap())
        .unwrap_or_else(|| panic!("{component} has no {key}"));
    (data.as_bytes().to_vec(), data.shape().to_vec())
}

#[test]
fn every_single_file_key_maps_to_the_proven_diffusers_keys() {
    for model in ["tiny-sdxl-base", "tiny-sdxl-refiner"] {
        let layout = layout(model);
        let mut seen = BTreeMap::new();
        for (key, entry) in table(model) {
            let mapped = to_diffusers(&layout, &key).unwrap_or_else(|e| panic!("{model}: {e}"));
            let ours: Vec<(String, String)> = mapped.iter().map(|m| (m.component.to_string(), m.key.clone())).collect();
            assert_eq!(ours, entry.diffusers, "{model}: {key}");
            for m in &mapped {
                assert!(seen.insert((m.component, m.key.clone()), key.clone()).is_none(), "{} mapped twice", m.key);
            }
        }
        // Backwards: every diffusers parameter of the fixture comes from exactly one single-file key.
        let components: &[&str] = if model == "tiny-sdxl-base" {
            &["text_encoder", "text_encoder_2", "unet", "vae"]
        } else {
            &["text_encoder_2", "unet", "vae"]
        };
        let mut count = 0;
        for component in components {
            let dir = fixtures().join(model).join(component);
            for name in SafetensorsSource::open(&weight_files(&dir).unwrap()).unwrap().names() {
                let name = if *component == "text_encoder" { format!("text_model.{name}") } else { name };
                assert!(seen.contains_key(&(*component, name.clone())), "{model}: nothing maps to {component} {name}");
                count += 1;
            }
        }
        assert_eq!(count, seen.len(), "{model}: the mapping produces keys the fixture lacks");
    }
    let layout = layout("tiny-sdxl-base");
    assert!(to_diffusers(&layout, "model.diffusion_model.nonsense.weight").is_err());
    assert!(to_diffusers(&layout, "cond_stage_model.transformer.x").is_err());
    assert_eq!(to_diffusers(&layout, "conditioner.embedders.1.model.logit_scale").unwrap(), vec![]);
}

/// Writes the fixture model as a single-file checkpoint, undoing diffusers' conversion with the
/// proven table (concatenating q/k/v, transposing the projection, 1×1 conv shapes).
fn write_single_file(model: &str, path: &Path) {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (key, entry) in table(model) {
        let parts: Vec<(Vec<u8>, Vec<usize>)> =
            entry.diffusers.iter().map(|(component, name)| diffusers_tensor(model, component, name)).collect();
        let bytes = if key.ends_with(".text_projection") {
            let (bytes, shape) = &parts[0];
            let (rows, cols) = (shape[0], shape[1]);
            (0..rows * cols).flat_map(|i| {
                let at = 2 * ((i % rows) * cols + i / rows);
                [bytes[at], bytes[at + 1]]
            }).collect()
        } else {
            parts.iter().flat_map(|(bytes, _)| bytes.iter().copied()).collect()
        };
        tensors.push((key, entry.shape, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            (name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F16, shape.clone(), bytes).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Converting the single-file checkpoint gives the same shards as converting the diffusers folder.
#[test]
fn single_file_converts_like_the_diffusers_folder() {
    for model in ["tiny-sdxl-base", "tiny-sdxl-refiner"] {
        let scratch = Scratch(std::env::temp_dir().join(format!("sdxl-single-file-{}-{model}", std::process::id())));
        std::fs::create_dir_all(&scratch.0).unwrap();
        let checkpoint = scratch.0.join("checkpoint.safetensors");
        write_single_file(model, &checkpoint);
        let options = ConvertOptions { quant: StoredDtype::F32, config_from: Some(fixtures().join(model)), ..Default::default() };
        let from_file = convert(&checkpoint, &scratch.0.join("from-file"), &options, &mut |_| {}).unwrap();
        let from_folder = convert(&fixtures().join(model), &scratch.0.join("from-folder"), &options, &mut |_| {}).unwrap();
        assert_eq!(ShardedModel::open(&scratch.0.join("from-file")).unwrap().verify(), Vec::<String>::new());
        for component in ["text_encoder_2", "unet", "vae"] {
            let hashes = |m: &sdxl_web::weights::manifest::Manifest| {
                m.shards.iter().filter(|s| s.component == component).map(|s| s.sha256.clone()).collect::<Vec<_>>()
            };
            assert_eq!(hashes(&from_file), hashes(&from_folder), "{model} {component}: shards differ");
        }
        assert_eq!(from_file.tensors.len(), from_folder.tensors.len());
        assert_eq!(from_file.files, from_folder.files);
        assert_eq!(from_file.components, from_folder.components);

        // `components` picks networks out of a single file as out of a folder.
        let unet_only = ConvertOptions { components: Some(vec!["unet".into()]), ..options };
        let unet = convert(&checkpoint, &scratch.0.join("unet-only"), &unet_only, &mut |_| {}).unwrap();
        assert_eq!(unet.components.keys().collect::<Vec<_>>(), ["unet"]);
        assert_eq!(unet.shards, from_folder.shards.iter().filter(|s| s.component == "unet").cloned().collect::<Vec<_>>());
    }
}

#[test]
fn single_file_without_configs_is_refused() {
    let scratch = Scratch(std::env::temp_dir().join(format!("sdxl-single-file-{}-noconfig", std::process::id())));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let checkpoint = scratch.0.join("checkpoint.safetensors");
    write_single_file("tiny-sdxl-refiner", &checkpoint);
    let error = convert(&checkpoint, &scratch.0.join("out"), &ConvertOptions::default(), &mut |_| {}).unwrap_err();
    assert!(error.to_string().contains("name a diffusers folder"), "{error}");
}

#[test]
fn transforms_reshape_as_stated() {
    use burn::tensor::TensorData;
    use sdxl_web::weights::single_file::transform;
    let data = TensorData::new((0..6).map(|v| v as f32).collect::<Vec<_>>(), vec![2, 3]);
    let transposed = transform(data, Transform::Transpose).unwrap();
    assert_eq!(transposed.shape().to_vec(), vec![3, 2]);
    assert_eq!(transposed.try_to_vec::<f32>().unwrap(), vec![0., 3., 1., 4., 2., 5.]);
    let fused = TensorData::new((0..6).map(|v| v as f32).collect::<Vec<_>>(), vec![3, 2]);
    assert_eq!(transform(fused, Transform::Third(2)).unwrap().try_to_vec::<f32>().unwrap(), vec![4., 5.]);
    let conv = TensorData::new(vec![1f32; 4], vec![2, 2, 1, 1]);
    assert_eq!(transform(conv, Transform::Squeeze).unwrap().shape().to_vec(), vec![2, 2]);
    assert!(transform(TensorData::new(vec![1f32; 4], vec![4]), Transform::Squeeze).is_err());
}

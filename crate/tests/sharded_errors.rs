//! A damaged converted model is a clear error naming the file and tensor, never a panic.
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system

mod common;

use std::path::PathBuf;

use burn::tensor::Device;
use common::{TempDir, assert_mentions, fixtures};
use sdxl_web::error::Error;
use sdxl_web::models::vae::AutoencoderKL;
use sdxl_web::pipeline::{Base, parts};
use sdxl_web::weights::convert::{ConvertOptions, convert};
use sdxl_web::weights::quant::StoredDtype;
use sdxl_web::weights::sharded::{ModuleAssembly, ShardedModel};
use sdxl_web::weights::ModelSource;

/// A q8 conversion of the tiny base model in a private folder.
struct Scratch(TempDir);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = TempDir::new(&format!("sharded-errors-{name}"));
        let options = ConvertOptions { quant: StoredDtype::Q8, ..Default::default() };
        convert(&fixtures().join("tiny-sdxl-base"), &dir, &options, &mut |_| {}).unwrap();
        Scratch(dir)
    }

    fn vae_shard(&self) -> PathBuf {
        self.0.join("vae-00000.bin")
    }

    /// Rewrites the manifest after `edit` changes its JSON.
    fn edit_manifest(&self, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = self.0.join("manifest.json");
        let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut manifest);
        std::fs::write(&path, manifest.to_string()).unwrap();
    }

    fn edit_tensor(&self, name: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        self.edit_manifest(|manifest| {
            let tensor = manifest["tensors"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|t| t["name"] == name && t["component"] == "vae")
                .unwrap();
            edit(tensor);
        });
    }

    fn vae_error(&self) -> String {
        let model = match ShardedModel::open(&self.0) {
            Ok(model) => model,
            Err(error) => return error.to_string(),
        };
        match parts::load::<AutoencoderKL>(&model, "vae", &Device::flex()) {
            Ok(_) => panic!("loading succeeded"),
            Err(error) => error.to_string(),
        }
    }

    fn verify_problems(&self) -> Vec<String> {
        ShardedModel::open(&self.0).unwrap().verify()
    }
}

#[test]
fn intact_model_verifies_and_loads() {
    let scratch = Scratch::new("intact");
    assert_eq!(scratch.verify_problems(), Vec::<String>::new());
    parts::load::<AutoencoderKL>(&ShardedModel::open(&scratch.0).unwrap(), "vae", &Device::flex()).unwrap();
}

#[test]
fn truncated_shard_is_named() {
    let scratch = Scratch::new("truncated");
    let bytes = std::fs::read(scratch.vae_shard()).unwrap();
    std::fs::write(scratch.vae_shard(), &bytes[..bytes.len() - 100]).unwrap();
    assert_mentions(&scratch.vae_error(), &["vae-00000.bin", "truncated"]);
    assert_mentions(&scratch.verify_problems().join("\n"), &["vae-00000.bin", "bytes, the manifest says"]);
}

#[test]
fn wrong_hash_is_named() {
    let scratch = Scratch::new("hash");
    let mut bytes = std::fs::read(scratch.vae_shard()).unwrap();
    bytes[1000] ^= 0x55;
    std::fs::write(scratch.vae_shard(), &bytes).unwrap();
    assert_mentions(&scratch.vae_error(), &["vae-00000.bin", "SHA-256", "corrupted"]);
    assert_mentions(&scratch.verify_problems().join("\n"), &["vae-00000.bin", "SHA-256"]);
}

#[test]
fn changed_tokenizer_file_fails_verification() {
    let scratch = Scratch::new("file");
    std::fs::write(scratch.0.join("tokenizer/vocab.json"), "{}").unwrap();
    assert_mentions(&scratch.verify_problems().join("\n"), &["tokenizer/vocab.json", "bytes, the manifest says"]);
    // Loading checks the listed files as it reads them, as the browser does.
    let error = Base::from_folder(&scratch.0, &Device::flex()).err().expect("refused");
    assert!(matches!(error, Error::Integrity { .. }), "{error}");
    assert_mentions(&error.to_string(), &["tokenizer/vocab.json", "2 bytes, the manifest says"]);
}

/// A shard that is a FIFO (or any other non-file) is refused at once, not waited on.
#[test]
fn a_shard_that_is_no_regular_file_is_refused_without_waiting() {
    let scratch = Scratch::new("fifo");
    std::fs::remove_file(scratch.vae_shard()).unwrap();
    let made = std::process::Command::new("mkfifo").arg(scratch.vae_shard()).status().unwrap();
    assert!(made.success());
    let started = std::time::Instant::now();
    assert_mentions(&scratch.verify_problems().join("\n"), &["vae-00000.bin", "not a regular file"]);
    assert_mentions(&scratch.vae_error(), &["vae-00000.bin", "not a regular file"]);
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn changed_scheduler_config_is_refused_on_load() {
    let scratch = Scratch::new("scheduler");
    let path = scratch.0.join("scheduler/scheduler_config.json");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 1; // same size, other bytes
    std::fs::write(&path, bytes).unwrap();
    let error = Base::from_folder(&scratch.0, &Device::flex()).err().expect("refused").to_string();
    assert_mentions(&error, &["scheduler/scheduler_config.json", "SHA-256"]);
}

#[test]
fn offsets_beyond_the_shard_are_named() {
    let scratch = Scratch::new("offset");
    let size = std::fs::metadata(scratch.vae_shard()).unwrap().len();
    scratch.edit_tensor("decoder.conv_out.bias", |t| t["offset"] = (size - 2).into());
    assert_mentions(&scratch.vae_error(), &["decoder.conv_out.bias", "beyond shard vae-00000.bin"]);
}

#[test]
fn unknown_dtype_is_named() {
    let scratch = Scratch::new("dtype");
    scratch.edit_tensor("decoder.conv_out.weight", |t| t["dtype"] = "q3".into());
    assert_mentions(&scratch.vae_error(), &["tensor `decoder.conv_out.weight`", "unknown variant `q3`", "manifest.json"]);
}

#[test]
fn inconsistent_length_is_named() {
    let scratch = Scratch::new("length");
    scratch.edit_tensor("decoder.conv_out.weight", |t| t["block_size"] = 64.into());
    assert_mentions(&scratch.vae_error(), &["decoder.conv_out.weight", "length"]);
}

#[test]
fn missing_tensor_is_named() {
    let scratch = Scratch::new("missing");
    scratch.edit_manifest(|m| {
        m["tensors"].as_array_mut().unwrap().retain(|t| !(t["name"] == "decoder.conv_out.weight" && t["component"] == "vae"))
    });
    assert_mentions(&scratch.vae_error(), &["missing tensor decoder.conv_out.weight", "`vae`"]);
}

#[test]
fn unexpected_tensor_is_named() {
    let scratch = Scratch::new("unexpected");
    scratch.edit_tensor("decoder.conv_out.bias", |t| t["name"] = "decoder.extra.bias".into());
    assert_mentions(&scratch.vae_error(), &["unexpected tensors: decoder.extra.bias", "vae-00000.bin"]);
}

#[test]
fn wrong_shape_is_named() {
    let scratch = Scratch::new("shape");
    // Same element count, so the length still fits and only the module can object.
    scratch.edit_tensor("quant_conv.bias", |t| t["shape"] = serde_json::json!([4, 2]));
    assert_mentions(&scratch.vae_error(), &["quant_conv.bias", "[4, 2]", "expected [8]", "vae-00000.bin"]);
}

#[test]
fn newer_format_version_is_refused() {
    let scratch = Scratch::new("version");
    scratch.edit_manifest(|m| {
        m["format_version"] = 2.into();
        m["tensors"][0]["dtype"] = "q2_k".into(); // what a newer format might add
    });
    assert_mentions(&scratch.vae_error(), &["manifest.json", "format version 2 is newer", "up to 1"]);
}

#[test]
fn shard_paths_cannot_leave_the_model() {
    let scratch = Scratch::new("path");
    scratch.edit_manifest(|m| m["files"][0]["path"] = "../../etc/passwd".into());
    assert_mentions(&scratch.vae_error(), &["../../etc/passwd", "not a relative path"]);
}

#[test]
fn browser_shards_are_checked_before_use() {
    let scratch = Scratch::new("browser");
    let model = ShardedModel::from_manifest(&std::fs::read(scratch.0.join("manifest.json")).unwrap(), "/model").unwrap();
    let device = Device::flex();
    let config: sdxl_web::models::vae::VaeConfig = model.config("vae").unwrap();
    let mut assembly = ModuleAssembly::new("vae", config.init(&device).unwrap(), &[]);
    let bytes = std::fs::read(scratch.vae_shard()).unwrap();
    let message = model.check_shard("nope.bin", &bytes).and_then(|view| assembly.apply(&view, &device)).unwrap_err().to_string();
    assert_mentions(&message, &["no shard nope.bin"]);
    let message = model.check_shard("vae-00000.bin", &bytes[..10]).and_then(|view| assembly.apply(&view, &device)).unwrap_err().to_string();
    assert_mentions(&message, &["vae-00000.bin", "10 bytes"]);
    let unet = std::fs::read(scratch.0.join("unet-00000.bin")).unwrap();
    let message = model.check_shard("unet-00000.bin", &unet).and_then(|view| assembly.apply(&view, &device)).unwrap_err().to_string();
    assert_mentions(&message, &["unet-00000.bin", "not a shard of `vae`"]);
    // Nothing applied yet: finishing names what is missing.
    let message = assembly.finish(&model, &device).unwrap_err().to_string();
    assert_mentions(&message, &["`vae`", "missing tensor"]);
}

#[test]
fn converter_refuses_to_overwrite() {
    let scratch = Scratch::new("overwrite");
    let error = convert(&fixtures().join("tiny-sdxl-base"), &scratch.0, &ConvertOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert_mentions(&error, &["not empty", "refusing to overwrite"]);
    assert_eq!(scratch.verify_problems(), Vec::<String>::new());
}

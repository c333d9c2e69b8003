//! A damaged or mislabelled diffusers folder is a clear error naming the file and tensor.
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{DType, Device};
use common::{TempDir, assert_mentions, fixtures};
use safetensors::Dtype;
use sdxl_web::models::clip::ClipTextModel;
use sdxl_web::models::vae::AutoencoderKL;
use sdxl_web::pipeline::parts;
use sdxl_web::weights::diffusers::DiffusersFolder;
use sdxl_web::weights::safetensors::SafetensorsSource;
use sdxl_web::weights::TensorSource;

/// A private copy of the tiny base model's `model_index.json`, `vae/` and `text_encoder/`.
struct Scratch(TempDir);

impl Scratch {
    fn new(name: &str) -> Self {
        let root = TempDir::new(&format!("loading-{name}"));
        let source = fixtures().join("tiny-sdxl-base");
        for component in ["vae", "text_encoder"] {
            std::fs::create_dir_all(root.join(component)).unwrap();
            for entry in std::fs::read_dir(source.join(component)).unwrap() {
                let path = entry.unwrap().path();
                std::fs::copy(&path, root.join(component).join(path.file_name().unwrap())).unwrap();
            }
        }
        std::fs::copy(source.join("model_index.json"), root.join("model_index.json")).unwrap();
        Scratch(root)
    }

    fn weights(&self, component: &str) -> PathBuf {
        std::fs::read_dir(self.0.join(component))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|ext| ext == "safetensors"))
            .expect("a safetensors file")
    }

    /// Rewrites a component's weights after `edit` changes the (name, dtype, shape, bytes) list.
    fn edit(&self, component: &str, edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
        let path = self.weights(component);
        let source = SafetensorsSource::open(&[path.clone()]).unwrap();
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = source
            .names()
            .into_iter()
            .map(|name| {
                let data = source.read_raw(&name).unwrap().unwrap();
                let dtype = match data.dtype() {
                    DType::F16 => Dtype::F16,
                    DType::F32 => Dtype::F32,
                    other => panic!("unexpected dtype {other:?}"),
                };
                (name, dtype, data.shape().to_vec(), data.as_bytes().to_vec())
            })
            .collect();
        edit(&mut tensors);
        let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                (name.clone(), safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).unwrap())
            })
            .collect();
        safetensors::serialize_to_file(views, None, &path).unwrap();
    }

    fn vae_error(&self) -> String {
        let folder = match DiffusersFolder::open(&self.0) {
            Ok(folder) => folder,
            Err(error) => return error.to_string(),
        };
        match parts::load::<AutoencoderKL>(&folder, "vae", &Device::flex()) {
            Ok(_) => panic!("loading succeeded"),
            Err(error) => error.to_string(),
        }
    }
}



#[test]
fn intact_copy_loads() {
    let scratch = Scratch::new("intact");
    let folder = DiffusersFolder::open(&scratch.0).unwrap();
    parts::load::<AutoencoderKL>(&folder, "vae", &Device::flex()).unwrap();
    parts::load::<ClipTextModel>(&folder, "text_encoder", &Device::flex()).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    let scratch = Scratch::new("missing");
    scratch.edit("vae", |tensors| tensors.retain(|(name, ..)| name != "decoder.conv_out.weight"));
    assert_mentions(&scratch.vae_error(), &["missing tensor decoder.conv_out.weight", "vae"]);
}

#[test]
fn unexpected_tensor_is_named() {
    let scratch = Scratch::new("unexpected");
    scratch.edit("vae", |tensors| {
        tensors.push(("decoder.extra.weight".into(), Dtype::F32, vec![2], vec![0; 8]));
    });
    assert_mentions(&scratch.vae_error(), &["unexpected tensors: decoder.extra.weight"]);
}

#[test]
fn wrong_shape_is_named() {
    let scratch = Scratch::new("shape");
    scratch.edit("vae", |tensors| {
        let entry = tensors.iter_mut().find(|(name, ..)| name == "quant_conv.bias").unwrap();
        entry.2 = vec![entry.2[0] / 2, 2];
    });
    assert_mentions(&scratch.vae_error(), &["quant_conv.bias", "expected [8]"]);

    // A Linear weight (held transposed) is reported in the checkpoint's orientation.
    let scratch = Scratch::new("linear-shape");
    scratch.edit("vae", |tensors| {
        let entry = tensors.iter_mut().find(|(name, ..)| name == "encoder.mid_block.attentions.0.to_q.weight").unwrap();
        entry.2 = vec![8, 32];
    });
    assert_mentions(&scratch.vae_error(), &["to_q.weight has shape [8, 32], expected [16, 16]"]);
}

#[test]
fn truncated_file_is_named() {
    let scratch = Scratch::new("truncated");
    let path = scratch.weights("vae");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_mentions(&scratch.vae_error(), &["invalid safetensors file", &path.display().to_string()]);
}

#[test]
fn missing_weights_and_index_are_named() {
    let scratch = Scratch::new("no-weights");
    std::fs::remove_file(scratch.weights("vae")).unwrap();
    assert_mentions(&scratch.vae_error(), &["no weights found", "vae"]);
    std::fs::remove_file(scratch.0.join("model_index.json")).unwrap();
    assert_mentions(&scratch.vae_error(), &["model_index.json"]);
}

#[test]
fn component_of_another_class_is_refused() {
    let scratch = Scratch::new("class");
    let index = scratch.0.join("model_index.json");
    let text = std::fs::read_to_string(&index).unwrap().replace("\"AutoencoderKL\"", "\"AutoencoderTiny\"");
    std::fs::write(&index, text).unwrap();
    assert_mentions(&scratch.vae_error(), &["`vae` is a AutoencoderTiny, expected AutoencoderKL"]);
}

#[test]
fn sharded_checkpoint_loads_like_a_single_file() {
    let scratch = Scratch::new("sharded");
    let single = scratch.weights("vae");
    let source = SafetensorsSource::open(&[single.clone()]).unwrap();
    let names = source.names();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [("shard-1.safetensors", first), ("shard-2.safetensors", second)] {
        write_subset(&source, part, &scratch.0.join("vae").join(file));
        for name in part {
            weight_map.insert(name.clone(), file.into());
        }
    }
    std::fs::remove_file(&single).unwrap();
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(scratch.0.join("vae/diffusion_pytorch_model.safetensors.index.json"), index.to_string()).unwrap();
    let folder = DiffusersFolder::open(&scratch.0).unwrap();
    parts::load::<AutoencoderKL>(&folder, "vae", &Device::flex()).unwrap();
}

fn write_subset(source: &SafetensorsSource, names: &[String], path: &Path) {
    let data: Vec<_> = names.iter().map(|name| (name.clone(), source.read_raw(name).unwrap().unwrap())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(name, data)| {
            let dtype = if data.dtype() == DType::F16 { Dtype::F16 } else { Dtype::F32 };
            (name.clone(), safetensors::tensor::TensorView::new(dtype, data.shape().to_vec(), data.as_bytes()).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

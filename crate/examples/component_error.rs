//! Each network's output from converted copies of a full-size SDXL base against the model they
//! were converted from, on the CPU backend: the per-component error FORMAT.md quotes for
//! full-size random weights. Inputs are seeded random tensors of SDXL's shapes at a 32×32 latent
//! (256² pixels); one network is in memory at a time.
//!
//! `cargo run -p sdxl-web --example component_error -- SOURCE_DIR CONVERTED_DIR...`
//! (SOURCE_DIR: the diffusers folder; e.g. one written by weights-tools/scripts/random_full_size.py)

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use sdxl_web::network_run::{self, Component};
use sdxl_web::relative_error::relative_l2;
use sdxl_web::weights::safetensors::{self, SafetensorsSource};

/// SDXL base inputs of one component, written to a safetensors file `network_run::run` reads.
fn inputs(component: Component, dir: &std::path::Path, device: &Device) -> PathBuf {
    let normal = Distribution::Normal(0.0, 1.0);
    let random = |shape: Vec<usize>| {
        let values = Tensor::<1>::random([shape.iter().product::<usize>()], normal, device).into_data();
        TensorData::new(values.try_into_vec::<f32>().unwrap(), shape)
    };
    let tensors: Vec<(&str, TensorData)> = match component {
        Component::TextEncoder | Component::TextEncoder2 => {
            // BOS, a few tokens, EOS, then padding: the layout the tokenizers produce.
            let mut ids = vec![49406i64, 320, 1125, 539, 550, 18376, 6765, 525, 3293];
            ids.resize(77, 49407);
            vec![("input_ids", TensorData::new(ids, [1, 77]))]
        }
        Component::Unet => vec![
            ("sample", random(vec![1, 4, 32, 32])),
            ("timestep", TensorData::new(vec![500f32], [1])),
            ("encoder_hidden_states", random(vec![1, 77, 2048])),
            ("text_embeds", random(vec![1, 1280])),
            ("time_ids", TensorData::new(vec![256f32, 256., 0., 0., 256., 256.], [1, 6])),
        ],
        Component::VaeDecoder => vec![("latents", random(vec![1, 4, 32, 32]))],
        Component::VaeEncoder => vec![("sample", random(vec![1, 3, 256, 256]))],
    };
    let path = dir.join(format!("{component:?}.safetensors"));
    let named: Vec<(&str, &TensorData)> = tensors.iter().map(|(name, data)| (*name, data)).collect();
    safetensors::write(&path, &named).unwrap();
    path
}

fn main() {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let [source, converted @ ..] = &args[..] else {
        panic!("usage: component_error SOURCE_DIR CONVERTED_DIR...");
    };
    let device = Device::flex();
    let scratch = std::env::temp_dir().join(format!("sdxl-component-error-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let run = |dir: &PathBuf, component, inputs: &SafetensorsSource| {
        let start = Instant::now();
        let outputs = network_run::run(dir, component, inputs, &device).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let values: Vec<Vec<f32>> = outputs.into_iter().map(|(_, data)| data.try_into_vec::<f32>().unwrap()).collect();
        (values, start.elapsed().as_secs_f64())
    };
    for component in [Component::TextEncoder, Component::TextEncoder2, Component::VaeDecoder, Component::VaeEncoder, Component::Unet] {
        let inputs = SafetensorsSource::open(&[inputs(component, &scratch, &device)]).unwrap();
        let (reference, seconds) = run(source, component, &inputs);
        print!("{component:?} (source {seconds:.0} s):");
        for dir in converted {
            let (ours, _) = run(dir, component, &inputs);
            let worst = ours.iter().zip(&reference).map(|(a, b)| relative_l2(a, b)).fold(0.0, f64::max);
            print!("  {} {worst:.2e}", dir.file_name().unwrap_or_default().to_string_lossy());
        }
        println!();
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

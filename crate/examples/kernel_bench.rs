//! The kernel benchmark natively ([`sdxl_web::kernel_bench`]; the browser runs the same one:
//! `tests/browser/kernel-bench.mjs`). With `--unet`, a whole full-size base UNet pass
//! (published config, random f32 weights; `--unet=FOLDER`: the UNet of a converted folder, as
//! its q8/q4 weights load) at a 32² latent (`--latent=N`: N²), batch 2, with burn's ops only
//! ("before") and with our kernels ("after"); the ops' table only when ops are named.
//!
//! `cargo run --release -p sdxl-web --example kernel_bench -- [wgpu|cpu] [--small]
//! [--unet[=FOLDER]] [--latent=N] [attention] [group-norm] [geglu] [conv] [upsample] [linear]` (the ops
//! named, or all of them)

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use sdxl_web::device::DeviceChoice;
use sdxl_web::kernel_bench::{Bench, OPS, TABLE_HEADER};
use sdxl_web::kernels;
use sdxl_web::models::presets;
use sdxl_web::models::unet::UNetConfig;
use sdxl_web::pipeline::folder::{self, finished};
use sdxl_web::pipeline::{Loaded, Network};

/// The full-size base UNet (random f32 weights, or the UNet of the converted `folder`), one pass
/// at a `side`² latent, batch 2: seconds with burn's ops only and with our kernels.
fn unet(bench: &Bench, folder: Option<&str>, side: usize) {
    let config = UNetConfig::from_json(presets::BASE_UNET).expect("published config");
    let unet = match folder {
        None => config.init(&bench.device).expect("supported config"),
        Some(dir) => match folder::network(Path::new(dir), Network::Unet, &bench.device) {
            Ok(Loaded::Unet(unet)) => unet,
            Ok(_) => unreachable!("a UNet was asked for"),
            Err(error) => panic!("{dir}: {error}"),
        },
    };
    let pooled = config.projection_class_embeddings_input_dim.unwrap() - 6 * config.addition_time_embed_dim.unwrap();
    let normal = Distribution::Normal(0.0, 1.0);
    let sample = Tensor::<4>::random([2, 4, side, side], normal, &bench.device);
    let context = Tensor::<3>::random([2, 77, config.cross_attention_dim], normal, &bench.device);
    let text_embeds = Tensor::<2>::random([2, pooled], normal, &bench.device);
    let time_ids = Tensor::<1>::from_floats([1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0], &bench.device).unsqueeze::<2>().repeat_dim(0, 2);
    let timestep = Tensor::<1>::from_floats([500.0, 500.0], &bench.device);
    let pass = || unet.forward(sample.clone(), timestep.clone(), context.clone(), text_embeds.clone(), time_ids.clone());
    let weights = folder.unwrap_or("random f32 weights");
    println!("full-size base UNet ({} parameters; {weights}), one pass at {side}² latents, batch 2:", unet.num_params());
    // One timed pass each (after an untimed one): a pass takes minutes on lavapipe.
    kernels::set_enabled(false);
    let before = finished(bench.best_of(1, pass));
    kernels::set_enabled(true);
    let after = finished(bench.best_of(1, pass));
    println!("  burn's ops only: {before:.2} s; with our kernels: {after:.2} s ({:.2}× faster)", before / after);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let choice = if args.iter().any(|a| a == "cpu") { DeviceChoice::Cpu } else { DeviceChoice::Wgpu };
    let (device, limit) = choice.open().expect("the device opens");
    let bench = Bench { device, small: args.iter().any(|a| a == "--small") };
    if let Some((_, text)) = limit {
        println!("device: {choice:?}; {text}");
    }
    let ops: Vec<String> = args.iter().filter(|a| OPS.contains(&a.as_str())).cloned().collect();
    let unet_only = ops.is_empty() && args.iter().any(|a| a.starts_with("--unet"));
    if !unet_only {
        println!("{TABLE_HEADER}");
        finished(bench.run(&ops, &mut |row| println!("{}", row.markdown())));
    }
    let latent = args.iter().find_map(|a| a.strip_prefix("--latent=")).map_or(32, |n| n.parse().expect("--latent=N"));
    if args.iter().any(|a| a == "--unet") {
        unet(&bench, None, latent);
    }
    if let Some(dir) = args.iter().find_map(|a| a.strip_prefix("--unet=")) {
        unet(&bench, Some(dir), latent);
    }
}

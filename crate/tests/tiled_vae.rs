//! Tiled VAE decoding and encoding (`models::vae_tiling`) against diffusers' `enable_tiling()` on
//! the tiny VAE (`tests/parity/make_tiled_vae_fixture.py`), in f32 on the CPU backend; and the
//! tiling's defaults, checks and memory estimate.
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::{fixtures, relative_l2};
use sdxl_web::error::Error;
use sdxl_web::models::presets;
use sdxl_web::models::vae::{AutoencoderKL, VaeConfig};
use sdxl_web::models::vae_tiling::VaeTiling;
use sdxl_web::pipeline::parts;
use sdxl_web::weights::ModelFolder;
use sdxl_web::weights::safetensors::SafetensorsSource;
use serde_json::json;

const TOLERANCE: f64 = 1e-3;

fn tiny_vae(device: &Device) -> (VaeConfig, AutoencoderKL) {
    let model = ModelFolder::open(&fixtures().join("tiny-sdxl-base")).unwrap();
    parts::load::<AutoencoderKL>(&model, "vae", device).unwrap()
}

struct Fixture(SafetensorsSource);

impl Fixture {
    fn open() -> Self {
        Fixture(SafetensorsSource::open(&[fixtures().join("parity/tiled_vae.safetensors")]).unwrap())
    }

    fn data(&self, name: &str) -> TensorData {
        self.0.read_raw(name).unwrap().unwrap_or_else(|| panic!("no `{name}` in tiled_vae.safetensors"))
    }

    fn tensor(&self, name: &str, device: &Device) -> Tensor<4> {
        Tensor::from_data(self.data(name).convert::<f32>(), device)
    }

    /// The case's [tile_sample_min_size, tile_latent_min_size, tile_overlap_factor].
    fn tiling(&self, case: &str) -> VaeTiling {
        let values = self.data(&format!("{case}.tiling")).convert::<f32>().try_to_vec::<f32>().unwrap();
        VaeTiling {
            tile_sample_min_size: values[0] as usize,
            tile_latent_min_size: values[1] as usize,
            tile_overlap_factor: values[2] as f64,
        }
    }
}

fn check(case: &str, name: &str, ours: Tensor<4>, expected: &TensorData) -> f64 {
    let error = relative_l2(&ours.into_data(), expected);
    println!("{case}.{name}: relative L2 {error:.2e} against diffusers");
    assert!(error <= TOLERANCE, "{case}.{name}: relative L2 {error:.3e} > {TOLERANCE:e}");
    error
}

#[test]
fn tiled_decode_matches_diffusers() {
    let device = Device::flex();
    let (config, vae) = tiny_vae(&device);
    let fixture = Fixture::open();
    // The first case is diffusers' own default for this config.
    assert_eq!(fixture.tiling("decode_default"), VaeTiling::from_config(&config).unwrap());
    for (case, tiles) in [("decode_default", 12), ("decode_small", 12)] {
        let tiling = fixture.tiling(case);
        let latents = fixture.tensor(&format!("{case}.in"), &device);
        let [_, _, height, width] = latents.dims();
        assert!(tiling.tiles_decode(height, width));
        assert_eq!(tiling.decode_tile_count(height, width), tiles);
        let tiled = vae.decode_with_tiling(latents.clone(), &tiling).unwrap().into_data();
        check(case, "out", Tensor::from_data(tiled.clone(), &device), &fixture.data(&format!("{case}.out")));
        // Tiling happened: the plain decode (same shape) is far from it.
        let plain = vae.decode(latents.clone()).into_data();
        let difference = relative_l2(&tiled, &plain);
        println!("{case}: tiled vs untiled relative L2 {difference:.2e}");
        assert!(difference > 0.05, "{case}: tiled and untiled decodes agree ({difference:.2e})");
        // Above one tile, decode_with_tiling is tiled_decode.
        assert_eq!(vae.tiled_decode(latents, &tiling).unwrap().into_data(), tiled);
    }
}

#[test]
fn tiled_encode_matches_diffusers() {
    let device = Device::flex();
    let (config, vae) = tiny_vae(&device);
    let fixture = Fixture::open();
    assert_eq!(fixture.tiling("encode_default"), VaeTiling::from_config(&config).unwrap());
    for (case, tiles) in [("encode_default", 9), ("encode_half", 12)] {
        let tiling = fixture.tiling(case);
        let image = fixture.tensor(&format!("{case}.in"), &device);
        let [_, _, height, width] = image.dims();
        assert!(tiling.tiles_encode(height, width));
        assert_eq!(tiling.encode_tile_count(height, width), tiles);
        let (mean, std) = vae.encode_distribution_with_tiling(image.clone(), &tiling).unwrap();
        check(case, "mean", mean.clone(), &fixture.data(&format!("{case}.out")));
        check(case, "std", std, &fixture.data(&format!("{case}.std")));
        let mean_only = vae.encode_mean_with_tiling(image.clone(), &tiling).unwrap();
        assert_eq!(mean_only.into_data(), mean.clone().into_data());
        let plain = vae.encode_mean(image);
        let difference = relative_l2(&mean.into_data(), &plain.into_data());
        println!("{case}: tiled vs untiled relative L2 {difference:.2e}");
        assert!(difference > 0.05, "{case}: tiled and untiled encodes agree ({difference:.2e})");
    }
}

/// Within one tile (on both sides) nothing is tiled: the plain decode and encode, exactly.
#[test]
fn inputs_within_one_tile_are_not_tiled() {
    let device = Device::flex();
    let (_, vae) = tiny_vae(&device);
    let tiling = VaeTiling { tile_sample_min_size: 32, tile_latent_min_size: 4, tile_overlap_factor: 0.25 };
    let latents = Tensor::<4>::from_data(
        TensorData::new((0..2 * 4 * 4 * 3).map(|i| (i as f32 * 0.37).sin()).collect(), [2, 4, 4, 3]),
        &device,
    );
    assert!(!tiling.tiles_decode(4, 3));
    assert!(tiling.tiles_decode(4, 5) && tiling.tiles_decode(5, 1));
    assert_eq!(tiling.decode_tile_count(4, 3), 1);
    let tiled = vae.decode_with_tiling(latents.clone(), &tiling).unwrap().into_data();
    assert_eq!(tiled, vae.decode(latents.clone()).into_data());
    // diffusers' tiled_decode itself tiles whatever it gets: tiles start every 3 latents, so
    // 4 rows make two tiles (rows 0..4 and 3..4), each cropped to 24 pixels, the second to 8.
    let direct = vae.tiled_decode(latents, &tiling).unwrap();
    assert_eq!(direct.dims(), [2, 3, 32, 24]);
    assert_ne!(direct.into_data(), tiled);

    let image = Tensor::<4>::from_data(
        TensorData::new((0..3 * 32 * 24).map(|i| (i as f32 * 0.11).cos()).collect(), [1, 3, 32, 24]),
        &device,
    );
    assert!(!tiling.tiles_encode(32, 24) && tiling.tiles_encode(40, 8));
    let (mean, std) = vae.encode_distribution_with_tiling(image.clone(), &tiling).unwrap();
    let (plain_mean, plain_std) = vae.encode_distribution(image);
    assert_eq!(mean.into_data(), plain_mean.into_data());
    assert_eq!(std.into_data(), plain_std.into_data());
}

/// With no overlap the tiles are decoded side by side: the tiled decode is the concatenation of
/// each tile's plain decode.
#[test]
fn tiles_without_overlap_are_concatenated() {
    let device = Device::flex();
    let (_, vae) = tiny_vae(&device);
    let tiling = VaeTiling { tile_sample_min_size: 24, tile_latent_min_size: 3, tile_overlap_factor: 0.0 };
    let latents = Tensor::<4>::from_data(
        TensorData::new((0..4 * 5 * 7).map(|i| (i as f32 * 0.23).sin()).collect(), [1, 4, 5, 7]),
        &device,
    );
    let tiled = vae.decode_with_tiling(latents.clone(), &tiling).unwrap();
    assert_eq!(tiled.dims(), [1, 3, 40, 56]);
    let rows: Vec<Tensor<4>> = [(0, 3), (3, 2)]
        .into_iter()
        .map(|(i, h)| {
            let tiles = [(0, 3), (3, 3), (6, 1)]
                .into_iter()
                .map(|(j, w)| vae.decode(latents.clone().narrow(2, i, h).narrow(3, j, w)))
                .collect();
            Tensor::cat(tiles, 3)
        })
        .collect();
    let expected = Tensor::cat(rows, 2).into_data();
    assert_eq!(tiled.into_data(), expected);
}

fn sdxl_vae() -> VaeConfig {
    serde_json::from_str(presets::VAE).unwrap()
}

fn vae_with(key: &str, value: serde_json::Value) -> VaeConfig {
    let mut config: serde_json::Value = serde_json::from_str(presets::VAE).unwrap();
    config[key] = value;
    serde_json::from_value(config).unwrap()
}

#[test]
fn defaults_follow_diffusers() {
    let sdxl = VaeTiling { tile_sample_min_size: 1024, tile_latent_min_size: 128, tile_overlap_factor: 0.25 };
    assert_eq!(VaeTiling::from_config(&sdxl_vae()).unwrap(), sdxl);
    // A list: its first entry.
    let listed = VaeTiling::from_config(&vae_with("sample_size", json!([512, 768]))).unwrap();
    assert_eq!((listed.tile_sample_min_size, listed.tile_latent_min_size), (512, 64));
    // None: diffusers' default sample_size, 32.
    let mut config: serde_json::Value = serde_json::from_str(presets::VAE).unwrap();
    config.as_object_mut().unwrap().remove("sample_size");
    let config: VaeConfig = serde_json::from_value(config).unwrap();
    assert_eq!(VaeTiling::from_config(&config).unwrap().tile_latent_min_size, 4);
    // int(sample_size / 8), truncated.
    assert_eq!(VaeTiling::with_sample_size(&sdxl_vae(), 100).unwrap().tile_latent_min_size, 12);

    // diffusers tiles latents larger than 128 on either side; SDXL at 1024² is not tiled.
    assert!(!sdxl.tiles_decode(128, 128) && sdxl.tiles_decode(128, 129) && sdxl.tiles_decode(136, 96));
    assert!(!sdxl.tiles_encode(1024, 1024) && sdxl.tiles_encode(1024, 1032));
    // Decode tiles every 96 latents, encode tiles every 768 pixels.
    assert_eq!(sdxl.decode_tile_count(192, 144), 2 * 2);
    assert_eq!(sdxl.encode_tile_count(1536, 1152), 2 * 2);
}

#[test]
fn unusable_tilings_are_refused_by_name() {
    for (value, named) in [
        (json!(0), "sample_size"),
        (json!("big"), "sample_size"),
        (json!([]), "sample_size"),
        (json!(1.5), "sample_size"),
        (json!(8), "tile_latent_min_size"), // a 1-latent tile advances by int(0.75) = 0
    ] {
        match VaeTiling::from_config(&vae_with("sample_size", value.clone())) {
            Err(Error::Unsupported(message)) => assert!(message.contains(named), "{value}: {message}"),
            other => panic!("sample_size {value}: {other:?}"),
        }
    }
    let device = Device::flex();
    let (_, vae) = tiny_vae(&device);
    let latents = Tensor::<4>::zeros([1, 4, 3, 3], &device);
    let tiling = |sample, latent, factor| VaeTiling {
        tile_sample_min_size: sample,
        tile_latent_min_size: latent,
        tile_overlap_factor: factor,
    };
    for (tiling, named) in [
        (tiling(8, 1, 0.25), "tile_latent_min_size"),
        (tiling(0, 4, 0.25), "tile_sample_min_size"),
        (tiling(32, 4, 1.0), "tile_overlap_factor"),
        (tiling(32, 4, f64::NAN), "tile_overlap_factor"),
    ] {
        match vae.decode_with_tiling(latents.clone(), &tiling) {
            Err(Error::Unsupported(message)) => assert!(message.contains(named), "{tiling:?}: {message}"),
            other => panic!("{tiling:?}: {:?}", other.map(|t| t.dims())),
        }
    }
}

#[test]
fn tiled_decode_memory_is_that_of_one_tile() {
    let config = sdxl_vae();
    let sdxl = VaeTiling::from_config(&config).unwrap();
    let gib = 1u64 << 30;
    // Not tiled at 1024²: the plain decode's 1 GiB.
    assert_eq!(config.largest_tiled_decode_bytes(&sdxl, 1024, 1024), config.largest_decode_bytes(1024, 1024));
    assert_eq!(config.largest_decode_bytes(1024, 1024), gib);
    // Tiled, any larger size keeps one tile's.
    assert_eq!(config.largest_decode_bytes(2048, 2048), 4 * gib);
    assert_eq!(config.largest_tiled_decode_bytes(&sdxl, 2048, 2048), gib);
    assert_eq!(config.largest_tiled_decode_bytes(&sdxl, 1024, 1536), gib);
    // Smaller tiles, smaller activations; a side within one tile counts only its own size.
    let half = VaeTiling::with_sample_size(&config, 512).unwrap();
    assert_eq!(config.largest_tiled_decode_bytes(&half, 2048, 2048), gib / 4);
    assert_eq!(config.largest_tiled_decode_bytes(&half, 2048, 256), config.largest_decode_bytes(512, 256));
    // Tiny tiles: the assembled image [3, H, W] is the largest.
    let tiny = VaeTiling::with_sample_size(&config, 32).unwrap();
    assert_eq!(config.largest_tiled_decode_bytes(&tiny, 4096, 4096), 3 * 4096 * 4096 * 4);
}

/// The pipeline tiles on its own: under a buffer limit smaller than a whole decode needs,
/// `Sdxl::decode` decodes in the tiles `VaeConfig::decode_tiling` picks, and decodes whole
/// otherwise.
#[test]
fn the_pipeline_decodes_in_tiles_when_a_whole_decode_exceeds_the_buffer_limit() {
    use sdxl_web::pipeline::{Base, BufferLimit, Sdxl};
    let device = Device::flex();
    let base = Base::from_folder(&fixtures().join("tiny-sdxl-base"), &device).unwrap();
    let config = &base.vae_config;
    let scale = config.scale_factor();
    let (width, height) = (96 * scale / 2, 64 * scale / 2);
    let latents = Tensor::<4>::random([1, 4, height / scale, width / scale], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let whole = config.largest_decode_bytes(width, height);
    let limit = |bytes| BufferLimit { bytes, text: format!("the test allows {bytes} bytes") };

    let untiled = Sdxl::new(&base, None).with_buffer_limit(limit(whole)).decode(latents.clone()).unwrap();
    assert_eq!(untiled.pixels, base.decode(latents.clone()).unwrap().pixels);

    let tiling = config.decode_tiling(width, height, whole - 1).unwrap().expect("tiles below a whole decode");
    assert!(tiling.tiles_decode(height / scale, width / scale));
    assert!(config.largest_tiled_decode_bytes(&tiling, width, height) < whole);
    let tiled = Sdxl::new(&base, None).with_buffer_limit(limit(whole - 1)).decode(latents.clone()).unwrap();
    let expected = base.decode_pixels(latents, Some(&tiling)).unwrap().into_data();
    assert_eq!(tiled.pixels, expected);
    assert_ne!(tiled.pixels, untiled.pixels, "tiles see only their part of the latents");
}

/// Encoding tiles by the same rule: SDXL's encoder holds 128 channels at full size (512 MiB at
/// 1024²); under WebGPU's default 256 MiB it encodes in 512-pixel tiles (128 MiB each).
#[test]
fn encoding_tiles_within_a_buffer_limit() {
    let config = sdxl_vae();
    assert_eq!(config.largest_encode_bytes(1024, 1024), 512 << 20);
    assert_eq!(config.encode_tiling(1024, 1024, 512 << 20).unwrap(), None);
    let tiling = config.encode_tiling(1024, 1024, 256 << 20).unwrap().expect("tiles");
    assert_eq!(tiling.tile_sample_min_size, 512);
    assert_eq!(config.largest_tiled_encode_bytes(&tiling, 1024, 1024), 128 << 20);
    // 1 MiB holds neither the smallest tile (64 pixels: 2 MiB) nor the image itself (12 MiB).
    assert_eq!(config.encode_tiling(1024, 1024, 1 << 20), Err(12 << 20));
}

/// `refine_image` encodes in tiles under a buffer limit a whole encode exceeds: the run
/// succeeds and its result differs from the untiled one (each tile sees only its part).
#[test]
fn img2img_encodes_in_tiles_when_a_whole_encode_exceeds_the_buffer_limit() {
    use sdxl_web::pipeline::{Base, BufferLimit, GenerateParams, Refiner, Sdxl};
    let device = Device::flex();
    let base = Base::from_folder(&fixtures().join("tiny-sdxl-base"), &device).unwrap();
    let refiner = Refiner::from_folder(&fixtures().join("tiny-sdxl-refiner"), &device).unwrap();
    let mut params = GenerateParams::new("a lighthouse");
    (params.width, params.height, params.steps) = (128, 128, 2);
    let image = Tensor::<3>::random([128, 128, 3], burn::tensor::Distribution::Uniform(0.0, 1.0), &device);
    let config = &base.vae_config;
    let whole = config.largest_encode_bytes(128, 128);
    assert!(config.encode_tiling(128, 128, whole - 1).unwrap().is_some());
    let run = |limit: Option<u64>| {
        let mut sdxl = Sdxl::new(&base, Some(&refiner));
        if let Some(bytes) = limit {
            sdxl = sdxl.with_buffer_limit(BufferLimit { bytes, text: format!("the test allows {bytes} bytes") });
        }
        let mut draw = |shape: [usize; 4]| Tensor::<4>::ones(shape, &device) * 0.5;
        let mut progress = common::Quiet;
        sdxl.refine_image(image.clone(), 0.5, &params, &mut draw, &device, &mut progress).unwrap().into_data()
    };
    let (whole_run, tiled_run) = (run(None), run(Some(whole - 1)));
    assert!(tiled_run.clone().try_to_vec::<f32>().unwrap().iter().all(|v| v.is_finite()));
    assert_ne!(whole_run, tiled_run);
    assert_eq!(run(Some(whole)), whole_run, "a limit the whole encode fits changes nothing");
}


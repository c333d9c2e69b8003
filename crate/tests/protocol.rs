//! The worker's requests to the wasm module (`web::protocol`) and their validation
//! (`pipeline::params`). Runs natively, and in headless Chromium as a module of `tests/web.rs`
//! (one wasm test binary: each costs a fat-LTO link).

use sdxl_web::models::presets;
use sdxl_web::models::vae::VaeConfig;
use sdxl_web::pipeline::conditioning::LongPrompt;
use sdxl_web::pipeline::{BufferLimit, GenerateParams, SizeRules, UNetShape};
use sdxl_web::schedulers::SchedulerKind;
use sdxl_web::pipeline::{MemoryBudget, MemoryPlan, NetworkBytes, Residency};
use sdxl_web::web::protocol::{Generate, MemoryRequest};

fn sdxl_vae() -> VaeConfig {
    serde_json::from_str(presets::VAE).unwrap()
}

fn parse_generate(json: &str) -> sdxl_web::error::Result<Generate> {
    Generate::parse(json)
}

/// SDXL base's widest UNet activations per level (`UNet2DConditionModel::widths_per_level`):
/// each up block's first resnet input, 640 + 320, 1280 + 640 and 1280 + 1280 skip channels.
const SDXL_UNET_WIDTHS: [u64; 3] = [960, 1920, 2560];

/// SDXL base's GEGLU projections per level (2 · 4 · 640, 2 · 4 · 1280; none at the latents'
/// resolution), `UNet2DConditionModel::feed_forward_widths_per_level`.
const SDXL_UNET_FEED_FORWARD_WIDTHS: [u64; 3] = [0, 5120, 10240];

/// SDXL base's skip connections per level (`UNet2DConditionModel::skip_widths_per_level`):
/// `conv_in`'s 320 and two resnets' 320 at the latents' resolution; the downsampler's 320 and
/// two resnets' 640 below; the next downsampler's 640 and two resnets' 1280 below that.
const SDXL_UNET_SKIP_WIDTHS: [u64; 3] = [960, 1600, 3200];

/// SDXL base's UNet as the size rules and the memory plan see it.
fn sdxl_unet() -> UNetShape {
    UNetShape {
        downsamplings: 2,
        widths: SDXL_UNET_WIDTHS.to_vec(),
        feed_forward_widths: SDXL_UNET_FEED_FORWARD_WIDTHS.to_vec(),
        skip_widths: SDXL_UNET_SKIP_WIDTHS.to_vec(),
    }
}

/// SDXL's rules (sizes in multiples of 32), on a GPU whose largest buffer is `limit` bytes.
fn sdxl_rules(limit: Option<u64>) -> SizeRules {
    let buffer_limit = limit.map(|bytes| BufferLimit { bytes, text: format!("this GPU allows {} MiB", bytes >> 20) });
    SizeRules { multiple: 32, vae: sdxl_vae(), unet: sdxl_unet(), vae_limit: buffer_limit.clone(), buffer_limit }
}

/// A request's parameters checked against SDXL on a GPU without buffer limits.
fn validate(json: &str) -> sdxl_web::error::Result<Vec<String>> {
    parse_generate(json)?.params.validate(&sdxl_rules(None))
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_minimal_request_takes_the_cli_defaults() {
    let request = parse_generate(r#"{"prompt": "a cat", "seed": 7}"#).unwrap();
    assert_eq!(request.seed, 7);
    assert_eq!(parse_generate(r#"{"prompt": "a cat", "seed": "7"}"#).unwrap().seed, 7);
    assert_eq!((request.params.steps, request.params.guidance), (40, 5.0));
    assert_eq!((request.params.width, request.params.height), (1024, 1024));
    assert_eq!(request.params.negative_prompt, None);
    assert!(!request.refiner && !request.previews);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn every_field_is_read() {
    let json = r#"{"prompt": "a", "negative_prompt": "b", "steps": 12, "guidance": 7.5, "width": 832,
        "height": 1216, "seed": "18446744073709551615", "scheduler": "dpmpp-2m-karras", "refiner": true,
        "refiner_start": 0.7, "long_prompt": "chunk", "previews": true}"#;
    let request = parse_generate(json).unwrap();
    let p = &request.params;
    assert_eq!((p.prompt.as_str(), p.negative_prompt.as_deref()), ("a", Some("b")));
    assert_eq!((p.steps, p.guidance, p.width, p.height), (12, 7.5, 832, 1216));
    assert_eq!((p.scheduler, p.refiner_start, p.long_prompt), (SchedulerKind::DpmPp2MKarras, 0.7, LongPrompt::Chunk));
    assert_eq!(request.seed, u64::MAX);
    assert!(request.refiner && request.previews);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn bad_requests_are_clear_errors() {
    for (json, expected) in [
        (r#"{"seed": 1}"#, "missing field `prompt`"),
        (r#"{"prompt": "a"}"#, "missing field `seed`"),
        (r#"{"prompt": "a", "seed": -1}"#, "seed -1 is not a whole number"),
        (r#"{"prompt": "a", "seed": "18446744073709551616"}"#, "is not a whole number from 0 to 18446744073709551615"),
        (r#"{"prompt": "a", "seed": 1.5}"#, "seed 1.5 is not"),
        (r#"{"prompt": "a", "seed": 1, "sampler": "euler"}"#, "unknown field `sampler`"),
        (r#"{"prompt": "a", "seed": 1, "scheduler": "lms"}"#, "unknown scheduler \"lms\""),
        (r#"{"prompt": "a", "seed": 1, "long_prompt": "wrap"}"#, "not one of truncate, chunk"),
        (r#"{"prompt": "a", "seed": 1, "steps": "many"}"#, "invalid type"),
        ("[1]", "not an object"),
        ("not json", "expected ident"),
    ] {
        let error = parse_generate(json).unwrap_err().to_string();
        assert!(error.contains(expected), "{json}: {error}");
    }
}

/// The one validation of a request's parameters, against the loaded model's rules.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn invalid_parameters_are_clear_errors() {
    for (json, expected) in [
        (r#"{"prompt": "a", "seed": 1, "width": 1001}"#, "1001 is not a positive multiple of 32"),
        (r#"{"prompt": "a", "seed": 1, "width": 1000}"#, "1000 is not a positive multiple of 32"),
        (r#"{"prompt": "a", "seed": 1, "height": 0}"#, "0 is not a positive multiple of 32"),
        (r#"{"prompt": "a", "seed": 1, "steps": 0}"#, "at least 1 step"),
        (r#"{"prompt": "a", "seed": 1, "steps": 100000}"#, "100000 is more than 1000"),
        (r#"{"prompt": "a", "seed": 1, "guidance": -1}"#, "-1 is not a number ≥ 0"),
        (r#"{"prompt": "a", "seed": 1, "refiner_start": 1.0}"#, "not inside (0, 1)"),
    ] {
        let error = validate(json).unwrap_err().to_string();
        assert!(error.contains(expected), "{json}: {error}");
    }
    assert_eq!(validate(r#"{"prompt": "a", "seed": 1, "width": 832, "height": 1216}"#).unwrap(), Vec::<String>::new());
    let warnings = validate(r#"{"prompt": "a", "seed": 1, "width": 992}"#).unwrap();
    assert!(warnings[0].contains("not a multiple of 64"), "{warnings:?}");
}

/// Decoding SDXL at 1024² takes 256 channels at full size, 1 GiB: a GPU whose largest buffer is
/// smaller decodes in tiles (diffusers' tiling, the tiles halved until they fit), and a size that
/// even tiles cannot help, or whose denoising needs more, is refused with a clear error instead
/// of failing mid-run.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn sizes_beyond_the_gpus_buffers_are_tiled_or_refused() {
    let vae = sdxl_vae();
    assert_eq!(vae.largest_decode_bytes(1024, 1024), 1 << 30);
    assert_eq!(vae.largest_decode_bytes(832, 1216), 256 * 832 * 1216 * 4);
    let rules = sdxl_rules(None);
    // The last up block's first resnet input: 960 values × 128² pixels × batch 2 × 4 bytes. (The
    // 64² level's GEGLU, 5120 values × 4096 tokens × 2 × 4 = 160 MiB whole, goes through the
    // feed-forward in pieces of at most 32 MiB.)
    assert_eq!(rules.largest_denoise_bytes(1024, 1024, 2), 120 << 20);
    assert_eq!(rules.largest_denoise_bytes(2048, 2048, 2), 480 << 20);
    let check = |size: usize, limit| {
        let mut params = GenerateParams::new("a");
        (params.width, params.height) = (size, size);
        params.validate(&sdxl_rules(Some(limit)))
    };
    assert_eq!(check(1024, 1 << 30).unwrap(), Vec::<String>::new());
    // One byte less: 1024² decodes in tiles of 64 latents (diffusers' 128 halved), stepping 48:
    // 3 × 3 tiles.
    let warnings = check(1024, (1 << 30) - 1).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("1024×1024 is decoded in 9 overlapping tiles of 512 px"), "{warnings:?}");
    assert!(warnings[0].contains("a whole decode needs a 1024 MiB buffer; this GPU allows 1023 MiB"), "{warnings:?}");
    // WebGPU's default maxBufferSize, 256 MiB, is enough for 1024².
    assert_eq!(vae.decode_tiling(1024, 1024, 256 << 20).unwrap().unwrap().tile_sample_min_size, 512);
    assert!(check(1024, 256 << 20).is_ok());
    assert_eq!(vae.largest_tiled_decode_bytes(&vae.decode_tiling(1024, 1024, 256 << 20).unwrap().unwrap(), 1024, 1024), 256 << 20);
    // lavapipe's 128 MiB holds the UNet's widest at 1024² and the VAE's in 256 px tiles (32
    // latents, stepping 24: 6 × 6).
    let warnings = check(1024, 128 << 20).unwrap();
    assert!(warnings[0].starts_with("1024×1024 is decoded in 36 overlapping tiles of 256 px"), "{warnings:?}");
    // Denoising 2048² holds 480 MiB at once over both guidance branches, 240 MiB over one (a pass
    // each); 4096² 1920 and 960 MiB: no tiling of the VAE helps.
    let warnings = check(2048, 256 << 20).unwrap();
    assert!(warnings[0].contains("in a UNet pass each (twice the passes): in one pass they need a 480 MiB buffer"), "{warnings:?}");
    let error = check(2048, 200 << 20).unwrap_err().to_string();
    assert!(error.contains("2048×2048 needs a 240 MiB buffer to denoise; this GPU allows 200 MiB: choose a smaller size"), "{error}");
    let error = check(4096, 512 << 20).unwrap_err().to_string();
    assert!(error.contains("4096×4096 needs a 960 MiB buffer to denoise"), "{error}");
    // Tiles shrink to 8 latents at the least: a limit below that tile's 4 MiB refuses the decode.
    let tiny_limit = BufferLimit { bytes: 1 << 20, text: "this GPU allows 1 MiB".into() };
    let rules = SizeRules { unet: UNetShape::default(), buffer_limit: Some(tiny_limit.clone()), vae_limit: Some(tiny_limit), ..sdxl_rules(None) };
    let mut params = GenerateParams::new("a");
    (params.width, params.height) = (256, 256);
    let error = params.validate(&rules).unwrap_err().to_string();
    assert!(error.contains("256×256 needs a 4 MiB buffer to decode the image, even in tiles; this GPU allows 1 MiB"), "{error}");
    // Absurd sizes saturate instead of overflowing (the largest multiple of 32 a wasm32 usize holds).
    let error = check((u32::MAX & !31) as usize, u64::MAX - 1).unwrap_err().to_string();
    assert!(error.contains("choose a smaller size"), "{error}");
}

/// Where one UNet pass over both guidance branches needs a larger buffer than the GPU allows,
/// each branch gets a pass (said in a warning); a size whose single branch needs more is
/// refused. Unguided runs take one latent a pass anyway.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn guidance_branches_take_a_pass_each_where_one_pass_would_not_fit() {
    let check = |limit_mib: u64, guidance: f64| {
        let mut params = GenerateParams::new("a");
        (params.width, params.height, params.guidance) = (1024, 1024, guidance);
        let rules = sdxl_rules(Some(limit_mib << 20));
        (rules.unet_batch(1024, 1024, params.guided()), params.validate(&rules))
    };
    // 120 MiB for both branches (the last up block's resnet input), 60 MiB for one.
    let (batch, warnings) = check(128, 5.0);
    assert_eq!(batch, 2);
    assert!(warnings.unwrap().iter().all(|w| !w.contains("UNet pass each")));
    let (batch, warnings) = check(64, 5.0);
    assert_eq!(batch, 1);
    let expected = "1024×1024 denoises the prompt and the negative prompt in a UNet pass each (twice the passes): \
                    in one pass they need a 120 MiB buffer; this GPU allows 64 MiB";
    assert!(warnings.as_ref().unwrap().iter().any(|w| w == expected), "{warnings:?}");
    let (batch, warnings) = check(64, 1.0);
    assert_eq!(batch, 1);
    assert!(warnings.unwrap().iter().all(|w| !w.contains("UNet pass each")));
    let error = check(59, 5.0).1.unwrap_err().to_string();
    assert!(error.contains("1024×1024 needs a 60 MiB buffer to denoise; this GPU allows 59 MiB"), "{error}");
    // The estimate follows: one branch's activations.
    let (unet, pixels) = (sdxl_unet(), sdxl_vae().latent_pixels(1024, 1024));
    assert_eq!(unet.working_bytes(pixels, 1) * 2, unet.working_bytes(pixels, 2));
}

/// Each network's activations, estimated from SDXL's shapes (`pipeline::working_memory`).
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn activations_are_estimated_from_the_shapes() {
    let (unet, vae) = (sdxl_unet(), sdxl_vae());
    let pixels = vae.latent_pixels(1024, 1024);
    assert_eq!(pixels, 128 * 128);
    // The skips at 1024² (batch 2, f32): 960 values per pixel at 128², 1600 at 64², 3200 at 32².
    assert_eq!(unet.skip_bytes(pixels, 2), (960 * 128 * 128 + 1600 * 64 * 64 + 3200 * 32 * 32) * 2 * 4);
    assert_eq!(unet.skip_bytes(pixels, 2), 195 << 20);
    // The UNet: its skips and three of its widest activation (the last up block's first resnet
    // input, 120 MiB; the GEGLU's pieces take 32 MiB).
    assert_eq!(unet.largest_bytes(pixels, 2), sdxl_rules(None).largest_denoise_bytes(1024, 1024, 2));
    assert_eq!(unet.working_bytes(pixels, 2), (195 + 3 * 120) << 20);
    // Were the feed-forward's projection whole, it would be the widest: 160 MiB.
    let whole = UNetShape { widths: vec![960, 5120, 10240], ..sdxl_unet() };
    assert_eq!(whole.largest_bytes(pixels, 2), 160 << 20);
    // At 512² the skips take a quarter, and the GEGLU's 32 MiB piece is the widest (40 MiB whole;
    // the resnet input 30 MiB).
    assert_eq!(unet.working_bytes(vae.latent_pixels(512, 512), 2), unet.skip_bytes(pixels, 2) / 4 + 3 * (32 << 20));
    // The VAE decoding 1024² whole: three of its 1 GiB activations (256 channels at 1024²); in
    // the tiles a 256 MiB buffer limit asks for, three of 256 MiB.
    assert_eq!(vae.working_bytes(1024, 1024, None, false), 3 << 30);
    assert_eq!(vae.working_bytes(1024, 1024, Some(256 << 20), false), 3 * (256 << 20));
    assert_eq!(vae.working_bytes(1024, 1024, Some(1 << 30), false), 3 << 30);
    // Encoding an image to refine as well: its largest, 512 MiB whole (128 channels at 1024²),
    // counts where it exceeds the decode's; under 256 MiB it tiles to 128 MiB.
    assert_eq!(vae.working_bytes(1024, 1024, Some(600 << 20), false), 3 * (256 << 20));
    assert_eq!(vae.working_bytes(1024, 1024, Some(600 << 20), true), 3 * (512 << 20));
    assert_eq!(vae.working_bytes(1024, 1024, Some(256 << 20), true), 3 * (256 << 20));
    assert_eq!(vae.working_bytes(1024, 1024, None, true), 3 << 30);
    // Absurd sizes saturate.
    assert_eq!(unet.working_bytes(u64::MAX, 2), u64::MAX);
}

/// SDXL base at 1024² one network at a time, its networks as converted and loaded (MiB on the
/// GPU, `quant::device_bytes` of the full-size manifests, weights-tools/scripts/random_full_size.py):
/// at q8 within 3.5 GiB (a whole decode fits beside the VAE's weights: 90 + 3 × 1024 MiB), at
/// q4 within 2.5 GiB only because the budget tiles the VAE. Either way the UNet's phase peaks: its
/// weights, its skips and three of its widest activation.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_budget_tiles_sdxls_vae_to_fit_full_size_in_sequential_mode() {
    const MIB: u64 = 1 << 20;
    let (unet, vae) = (sdxl_unet(), sdxl_vae());
    let pixels = vae.latent_pixels(1024, 1024);
    for (networks, budget_mib, tile) in [([880, 2759, 90], 3584, None), ([490, 1535, 50], 2560, Some(512))] {
        let [text_encoders, unet_bytes, vae_bytes] = networks.map(|mib: u64| mib * MIB);
        let bytes = NetworkBytes { text_encoders, unet: unet_bytes, refiner_unet: None, vae: vae_bytes };
        let budget = MemoryBudget { bytes: budget_mib * MIB, text: format!("the budget is {budget_mib} MiB") };
        let plan = MemoryPlan::choose(&bytes, &NetworkBytes::default(), Some(Residency::Sequential), Some(&budget)).unwrap();
        let limit = plan.vae_limit().unwrap();
        assert_eq!(limit.bytes, (budget.bytes - vae_bytes) / 3);
        let tiling = vae.decode_tiling(1024, 1024, limit.bytes).unwrap();
        assert_eq!(tiling.map(|tiling| tiling.tile_sample_min_size), tile, "{budget_mib} MiB");
        let working = NetworkBytes {
            unet: unet.working_bytes(pixels, 2),
            vae: vae.working_bytes(1024, 1024, Some(limit.bytes), false),
            ..NetworkBytes::default()
        };
        // Whole, three of 1 GiB; in 512 px tiles, three of 256 MiB.
        assert_eq!(working.vae, if tile.is_some() { 768 * MIB } else { 3072 * MIB });
        let run = plan.for_run(&working).unwrap();
        assert_eq!(run.peak, unet_bytes + (195 + 3 * 120) * MIB);
        assert!(run.peak <= budget.bytes);
    }
}

/// The page's form takes its defaults from the same place as `sdxl generate`'s flags.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn defaults_round_trip_as_a_request() {
    let defaults = serde_json::to_value(GenerateParams::new("a cat")).unwrap();
    assert_eq!(defaults["scheduler"], "euler");
    assert_eq!(defaults["long_prompt"], "truncate");
    let mut request = defaults.as_object().unwrap().clone();
    request.insert("seed".into(), 5.into());
    let parsed = Generate::from_json(request.into()).unwrap();
    assert_eq!(serde_json::to_value(&parsed.params).unwrap(), defaults);
}

#[test]
fn memory_requests_are_read_and_bad_ones_are_clear_errors() {
    let read = |json: &str| MemoryRequest::from_json(serde_json::from_str(json).unwrap());
    assert_eq!(read("{}").unwrap(), MemoryRequest { residency: None, budget: None });
    assert_eq!(
        read(r#"{"memory": "sequential", "budgetMiB": 2560.5}"#).unwrap(),
        MemoryRequest {
            residency: Some(Residency::Sequential),
            budget: Some(MemoryBudget { bytes: 2560 << 20, text: "the GPU memory budget is 2560 MiB".into() }),
        }
    );
    assert_eq!(read(r#"{"memory": "resident"}"#).unwrap().residency, Some(Residency::Resident));
    for (json, message) in [
        (r#"{"memory": "lazy"}"#, "input `memory`: `lazy` is not auto, resident or sequential"),
        (r#"{"budgetMiB": 0}"#, "input `memory`: a budget of 0 MiB is not a number from 1 to 2^44"),
        (r#"{"budgetMiB": -5}"#, "input `memory`: a budget of -5 MiB is not a number from 1 to 2^44"),
        (r#"{"budgetMiB": "4096"}"#, "input `memory`: invalid type: string \"4096\", expected f64"),
        (r#"{"budget": 1}"#, "input `memory`: unknown field `budget`, expected `memory` or `budgetMiB`"),
        ("[]", "input `memory`: not an object"),
    ] {
        assert_eq!(read(json).err().expect(json).to_string(), message, "{json}");
    }
}

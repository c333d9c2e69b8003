//! The worker's messages to the wasm module (`web::protocol`): generation requests and download
//! bookkeeping. Runs natively, and in headless Chromium as a module of `tests/web.rs` (one wasm
//! test binary: each costs a fat-LTO link).

use sdxl_web::models::presets;
use sdxl_web::models::vae::VaeConfig;
use sdxl_web::pipeline::conditioning::LongPrompt;
use sdxl_web::schedulers::SchedulerKind;
use sdxl_web::web::protocol::{Generate, Transfer};

fn sdxl_vae() -> VaeConfig {
    serde_json::from_str(presets::VAE).unwrap()
}

/// A request to SDXL's VAE on a GPU without buffer limits.
fn parse_generate(json: &str) -> sdxl_web::error::Result<Generate> {
    sdxl_web::web::protocol::parse_generate(json, &sdxl_vae(), u64::MAX)
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
        (r#"{"prompt": "a", "seed": 1, "width": 1001}"#, "1001 is not a positive multiple of 8"),
        (r#"{"prompt": "a", "seed": 1, "steps": 0}"#, "at least 1 step"),
        (r#"{"prompt": "a", "seed": 1, "refiner_start": 1.0}"#, "not inside (0, 1)"),
        (r#"{"prompt": "a", "seed": 1, "long_prompt": "wrap"}"#, "not one of truncate, chunk"),
        ("not json", "expected ident"),
    ] {
        let error = parse_generate(json).unwrap_err().to_string();
        assert!(error.contains(expected), "{json}: {error}");
    }
}

/// Decoding SDXL at 1024² takes 256 channels at full size, 1 GiB: a GPU whose largest buffer is
/// smaller refuses the size with a clear error instead of failing mid-run.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn sizes_beyond_the_gpus_buffers_are_refused() {
    let vae = sdxl_vae();
    assert_eq!(vae.largest_decode_bytes(1024, 1024), 1 << 30);
    assert_eq!(vae.largest_decode_bytes(832, 1216), 256 * 832 * 1216 * 4);
    let request = |size: usize| format!(r#"{{"prompt": "a", "seed": 1, "width": {size}, "height": {size}}}"#);
    let parse = |size, limit| sdxl_web::web::protocol::parse_generate(&request(size), &vae, limit);
    assert!(parse(1024, 1 << 30).is_ok());
    let error = parse(1024, (1 << 30) - 1).unwrap_err().to_string();
    assert!(error.contains("1024×1024 needs a 1024 MiB buffer to decode the image; this GPU allows 1023 MiB"), "{error}");
    assert!(parse(512, (1 << 30) - 1).is_ok());
    // Absurd sizes saturate instead of overflowing (the largest multiple of 8 a wasm32 usize holds).
    let error = parse((u32::MAX & !7) as usize, u64::MAX - 1).unwrap_err().to_string();
    assert!(error.contains("choose a smaller size"), "{error}");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn transfer_speed_and_eta() {
    let mut transfer = Transfer::new(100_000, 2_000, 0.0);
    assert_eq!((transfer.speed(), transfer.eta_seconds()), (None, None));
    transfer.advance(1_000, 1000.0);
    transfer.advance(1_000, 2000.0);
    assert_eq!(transfer.done(), 4_000);
    assert_eq!(transfer.speed(), Some(1_000.0));
    assert_eq!(transfer.eta_seconds(), Some(96.0));
    // Only the last 5 s count: a faster stretch shows at once.
    for second in 3..=8 {
        transfer.advance(500 * second, second as f64 * 1000.0);
    }
    let speed = transfer.speed().unwrap();
    assert!((speed - 3_000.0).abs() < 1.0, "{speed}");
    transfer.advance(u64::MAX / 2, 9000.0);
    assert_eq!((transfer.done(), transfer.eta_seconds()), (100_000, Some(0.0)));
}

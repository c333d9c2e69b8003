//! Property tests: the parsers that read untrusted bytes (manifest, safetensors header,
//! stored tensors) return errors, never panic, whatever they are fed. Case counts stay modest
//! so CI time stays small; `PROPTEST_CASES=100000` gives a longer local run.
#![cfg(not(target_arch = "wasm32"))]

use proptest::prelude::*;
use sdxl_web::weights::manifest::Manifest;
use sdxl_web::weights::quant::{self, StoredDtype};
use sdxl_web::weights::safetensors::parse_header;

/// A small valid manifest to mutate.
fn valid_manifest() -> serde_json::Value {
    serde_json::json!({
        "format": "sdxl-web-weights",
        "format_version": 1,
        "model_index": {"_class_name": "StableDiffusionXLPipeline", "vae": ["diffusers", "AutoencoderKL"]},
        "components": {"vae": {"class": "AutoencoderKL", "config": {"latent_channels": 4}}},
        "files": [{"path": "scheduler/scheduler_config.json", "size": 3, "sha256": "a".repeat(64)}],
        "shards": [{"file": "vae-00000.bin", "component": "vae", "size": 64, "sha256": "b".repeat(64)}],
        "tensors": [
            {"name": "w", "component": "vae", "shape": [2, 4], "dtype": "q8", "block_size": 4,
             "shard": "vae-00000.bin", "offset": 0, "length": 12},
            {"name": "b", "component": "vae", "shape": [2], "dtype": "f16",
             "shard": "vae-00000.bin", "offset": 16, "length": 4}
        ]
    })
}

fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        "[a-z0-9_./-]{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("q4")),
        Just(serde_json::Value::from("vae-00000.bin")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer of a value's objects and arrays, so a mutation can pick one.
fn pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| pointers(v, format!("{at}/{k}"), out)),
        serde_json::Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// 256 cases, or `PROPTEST_CASES`.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
}

proptest! {
    // No regression files: a failure prints its minimal input.
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn manifest_parser_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Manifest::parse(&bytes, "fuzz");
    }

    /// Valid manifests with one value replaced anywhere: parse, or fail with a message.
    #[test]
    fn manifest_parser_survives_mutations(pick in any::<prop::sample::Index>(), replacement in arbitrary_json()) {
        let mut manifest = valid_manifest();
        let mut all = Vec::new();
        pointers(&manifest, String::new(), &mut all);
        let pointer = pick.get(&all).clone();
        if pointer.is_empty() {
            manifest = replacement;
        } else {
            *manifest.pointer_mut(&pointer).unwrap() = replacement;
        }
        if let Err(error) = Manifest::parse(manifest.to_string().as_bytes(), "fuzz") {
            prop_assert!(error.to_string().starts_with("fuzz: "));
        }
    }

    #[test]
    fn safetensors_header_parser_survives_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        data_len in any::<u64>(),
    ) {
        let _ = parse_header(&bytes, data_len);
    }

    #[test]
    fn safetensors_header_parser_survives_mutated_headers(
        dtype in prop::sample::select(vec!["F32", "F16", "BF16", "I64", "U8", "F4", "XX"]),
        shape in prop::collection::vec(any::<usize>(), 0..4),
        start in any::<usize>(),
        end in any::<usize>(),
        data_len in any::<u64>(),
    ) {
        let header = serde_json::json!({"t": {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}});
        if let Ok(tensors) = parse_header(header.to_string().as_bytes(), data_len) {
            let (_, info) = &tensors[0];
            prop_assert!(info.data_offsets.1 as u64 <= data_len);
        }
    }

    /// Decoding checks the byte count against shape and dtype before reading.
    #[test]
    fn decoding_survives_arbitrary_input(
        dtype in prop::sample::select(vec![StoredDtype::F32, StoredDtype::F16, StoredDtype::Q8, StoredDtype::Q4]),
        shape in prop::collection::vec(0usize..6, 0..4),
        block in prop::option::of(0usize..5),
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        if let Ok(values) = quant::decode(dtype, &bytes, &shape, block) {
            prop_assert_eq!(values.len(), shape.iter().product::<usize>());
        }
    }

    /// Encode then decode: exact for f32, within half a level per block for q8. q4 chooses each
    /// block's scale for the least squared error: the block's error is at most that of ggml's
    /// `q4_0` scale (largest value at −8); a value may be clamped where a finer scale fits the
    /// rest better: at worst a value of the block's largest magnitude on the +7 side with the
    /// finest candidate scale (q4_0's × 11/12), off by 1 − 7·(11/12)/8 < 20 % of it.
    #[test]
    fn quantization_round_trips(
        dtype in prop::sample::select(vec![StoredDtype::F32, StoredDtype::F16, StoredDtype::Q8, StoredDtype::Q4]),
        rows in 1usize..5,
        cols in 1usize..70,
        block in 1usize..40,
        seed in prop::collection::vec(-4.0f32..4.0, 1..8),
    ) {
        let values: Vec<f32> = (0..rows * cols).map(|i| seed[i % seed.len()] * (1.0 + i as f32 / 7.0).sin()).collect();
        let block = dtype.is_quantized().then_some(block);
        let stored = quant::encode(dtype, &values, &[rows, cols], block).unwrap();
        let back = quant::decode(dtype, &stored, &[rows, cols], block).unwrap();
        for (r, row) in values.chunks(cols).enumerate() {
            for (b, chunk) in row.chunks(block.unwrap_or(cols)).enumerate() {
                let max = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
                // Half a level, plus the f16 rounding of the scale (absolute where it is subnormal).
                let tolerance = match dtype {
                    StoredDtype::F32 => 0.0,
                    StoredDtype::F16 => max * 1e-3 + 1e-7,
                    StoredDtype::Q8 => max / 127.0 * 0.51 + max * 1e-3 + 1e-5,
                    StoredDtype::Q4 => max * 0.2 + 1e-6,
                };
                let start = r * cols + b * block.unwrap_or(cols);
                let got = &back[start..start + chunk.len()];
                for (v, got) in chunk.iter().zip(got) {
                    prop_assert!((got - v).abs() <= tolerance, "{dtype}: {v} came back as {got}");
                }
                if dtype == StoredDtype::Q4 {
                    let extreme = chunk.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                    let q4_0 = half::f16::from_f32(extreme / -8.0).to_f32();
                    let level = |v: f32| if q4_0 == 0.0 { 0.0 } else { (v / q4_0).round().clamp(-8.0, 7.0) * q4_0 };
                    let squared = |decoded: &mut dyn Iterator<Item = f32>| -> f32 {
                        chunk.iter().zip(decoded).map(|(v, d)| (v - d) * (v - d)).sum()
                    };
                    let (ours, reference) = (squared(&mut got.iter().copied()), squared(&mut chunk.iter().map(|&v| level(v))));
                    prop_assert!(ours <= reference * (1.0 + 1e-5) + 1e-12, "q4 block error {ours} > q4_0's {reference}");
                }
            }
        }
    }
}

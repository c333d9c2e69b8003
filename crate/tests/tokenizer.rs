//! The CLIP tokenizers against transformers' `CLIPTokenizer` (tests/fixtures/tokenizer_cases.json,
//! written by tests/parity/make_fixtures.py from the tiny-sdxl-base tokenizer files).
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system

use std::path::{Path, PathBuf};

use sdxl_web::tokenizer::{ClipTokenizer, TokenizerError};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn load(name: &str) -> ClipTokenizer {
    let dir = fixtures().join("tiny-sdxl-base").join(name);
    ClipTokenizer::from_dir(&dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

fn ids(value: &Value) -> Vec<i64> {
    value.as_array().expect("ids are a list").iter().map(|v| v.as_i64().expect("an id")).collect()
}

#[test]
fn ids_equal_transformers() {
    let (tok1, tok2) = (load("tokenizer"), load("tokenizer_2"));
    assert_eq!((tok1.bos_id(), tok1.eos_id(), tok1.pad_id(), tok1.max_len()), (49406, 49407, 49407, 77));
    assert_eq!((tok2.bos_id(), tok2.eos_id(), tok2.pad_id(), tok2.max_len()), (49406, 49407, 0, 77));

    let text = std::fs::read_to_string(fixtures().join("tokenizer_cases.json")).expect("tokenizer_cases.json");
    let fixture: Value = serde_json::from_str(&text).expect("tokenizer_cases.json is JSON");
    // transformers 5's CLIPTokenizer no longer runs ftfy; cases made with it would need ftfy's repairs.
    assert_eq!(fixture["ftfy"], false, "cases were made with ftfy.fix_text, which this tokenizer does not apply");
    let cases = fixture["cases"].as_array().expect("a list of cases");
    assert!(cases.len() >= 10, "only {} cases", cases.len());

    let mut truncated = 0;
    for case in cases {
        let prompt = case["prompt"].as_str().expect("prompt");
        let (e1, e2) = (tok1.encode(prompt).unwrap(), tok2.encode(prompt).unwrap());
        assert_eq!(e1.ids, ids(&case["ids_1"]), "tokenizer, prompt {prompt:?}");
        assert_eq!(e2.ids, ids(&case["ids_2"]), "tokenizer_2, prompt {prompt:?}");
        assert_eq!(e1.untruncated_len, case["untruncated_len"].as_u64().unwrap() as usize, "prompt {prompt:?}");
        if let Some(len_2) = case.get("untruncated_len_2") {
            assert_eq!(e2.untruncated_len, len_2.as_u64().unwrap() as usize, "tokenizer_2, prompt {prompt:?}");
        }
        // The window holds the raw tokens between BOS and EOS.
        let raw = tok1.encode_raw(prompt).unwrap();
        assert_eq!(raw.len() + 2, e1.untruncated_len);
        let kept = raw.len().min(75);
        assert!(e1.ids[1..=kept].iter().zip(&raw).all(|(&a, &b)| a == b as i64));
        truncated += usize::from(e1.untruncated_len > 77);
    }
    assert!(truncated > 0, "no case is longer than the window");
}

fn tokenizer_files() -> (Vec<u8>, Vec<u8>) {
    let dir = fixtures().join("tiny-sdxl-base/tokenizer");
    (std::fs::read(dir.join("vocab.json")).unwrap(), std::fs::read(dir.join("merges.txt")).unwrap())
}

fn error_text(result: Result<ClipTokenizer, TokenizerError>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_vocab_is_an_error() {
    let dir = std::env::temp_dir().join(format!("sdxl-tokenizer-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, merges) = tokenizer_files();
    std::fs::write(dir.join("merges.txt"), merges).unwrap();
    let message = error_text(ClipTokenizer::from_dir(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(message.contains("vocab.json"), "{message}");
}

#[test]
fn corrupt_files_are_errors() {
    let (vocab, merges) = tokenizer_files();
    let mut bad_line = merges.clone();
    bad_line.extend_from_slice(b"three symbols here\n");
    let message = error_text(ClipTokenizer::from_files(&vocab, &bad_line, None, None));
    assert!(message.contains("merges.txt") && message.contains("three symbols here"), "{message}");

    let mut unknown_symbol = merges.clone();
    unknown_symbol.extend_from_slice("zzqq\u{2603} x\n".as_bytes());
    let message = error_text(ClipTokenizer::from_files(&vocab, &unknown_symbol, None, None));
    assert!(message.contains("merges.txt"), "{message}");

    let message = error_text(ClipTokenizer::from_files(&vocab[..vocab.len() / 2], &merges, None, None));
    assert!(message.contains("vocab.json") && message.contains("JSON"), "{message}");

    let message = error_text(ClipTokenizer::from_files(&vocab, &merges, Some(br#"{"pad_token": "<pad>"}"#), None));
    assert!(message.contains("tokenizer_config.json") && message.contains("<pad>"), "{message}");

    let message = error_text(ClipTokenizer::from_files(&vocab, &merges, Some(br#"{"model_max_length": 1e30}"#), None));
    assert!(message.contains("model_max_length"), "{message}");
}

/// model_max_length sizes every window of ids: a config that asks for 10^12 positions is refused
/// by name instead of aborting the process on the allocation.
#[test]
fn huge_model_max_length_is_an_error() {
    let source = fixtures().join("tiny-sdxl-base/tokenizer");
    let dir = std::env::temp_dir().join(format!("sdxl-tokenizer-max-len-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in sdxl_web::tokenizer::FOLDER_FILES {
        if source.join(name).exists() {
            std::fs::copy(source.join(name), dir.join(name)).unwrap();
        }
    }
    let config_path = dir.join("tokenizer_config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    let mut messages = Vec::new();
    for max_len in [serde_json::json!(1_000_000_000_000u64), serde_json::json!(65537), serde_json::json!(-5), serde_json::json!(1)] {
        config["model_max_length"] = max_len;
        std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
        messages.push(error_text(ClipTokenizer::from_dir(&dir)));
    }
    config["model_max_length"] = serde_json::json!(sdxl_web::tokenizer::MAX_MAX_LEN);
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let largest = ClipTokenizer::from_dir(&dir).map(|t| t.encode("a photo of a cat").map(|e| e.ids.len()));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(messages[0].contains("tokenizer_config.json") && messages[0].contains("model_max_length 1000000000000"), "{}", messages[0]);
    for message in &messages {
        assert!(message.contains("tokenizer_config.json") && message.contains("model_max_length"), "{message}");
    }
    assert_eq!(largest.unwrap().unwrap(), sdxl_web::tokenizer::MAX_MAX_LEN);
}

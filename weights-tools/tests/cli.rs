//! The `sdxl-weights` command line: convert, inspect, verify, and a clear non-zero exit on
//! damage.

mod common;

use std::process::Command;

use common::{fixtures, sdxl_weights, text};

#[test]
fn convert_inspect_verify() {
    let out = std::env::temp_dir().join(format!("sdxl-weights-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let model = fixtures().join("tiny-sdxl-base");
    let convert = Command::new(env!("CARGO_BIN_EXE_sdxl-weights"))
        .args(["convert", "--quant", "q4", "--shard-mb", "1", "--from"])
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(convert.status.success(), "{}", text(&convert));
    assert!(text(&convert).contains("peak memory (VmHWM):"), "{}", text(&convert));

    let inspect = sdxl_weights(&["inspect"], &[&out]);
    assert!(inspect.status.success(), "{}", text(&inspect));
    let report = text(&inspect);
    for part in ["unet", "vae", "text_encoder_2", "q4", "f16", "parameters"] {
        assert!(report.contains(part), "`{part}` not in {report}");
    }

    let verify = sdxl_weights(&["verify"], &[&out]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains(": OK ("), "{}", text(&verify));

    // Damage one shard: verify names it and fails.
    let shard = out.join("unet-00000.bin");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[7] ^= 1;
    std::fs::write(&shard, &bytes).unwrap();
    let verify = sdxl_weights(&["verify"], &[&out]);
    assert!(!verify.status.success());
    assert!(text(&verify).contains("unet-00000.bin: SHA-256"), "{}", text(&verify));
    assert!(text(&verify).contains("1 problem(s)"), "{}", text(&verify));

    // Converting onto an existing model is refused, not a silent overwrite.
    let again = Command::new(env!("CARGO_BIN_EXE_sdxl-weights"))
        .args(["convert", "--from"])
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(text(&again).contains("refusing to overwrite"), "{}", text(&again));
    assert!(!text(&again).contains("panicked"));
    let _ = std::fs::remove_dir_all(&out);
}

/// `--components` keeps only the named networks: a refiner that runs beside its base needs its
/// UNet alone. A name model_index.json does not list is an error, before anything is written.
#[test]
fn convert_selected_components() {
    let out = std::env::temp_dir().join(format!("sdxl-weights-cli-components-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let model = fixtures().join("tiny-sdxl-refiner");
    let convert = |components: &str| {
        Command::new(env!("CARGO_BIN_EXE_sdxl-weights"))
            .args(["convert", "--components", components, "--from"])
            .arg(&model)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };

    let unknown = convert("unet,text_encoder");
    assert!(!unknown.status.success());
    assert!(text(&unknown).contains("lists no component `text_encoder`"), "{}", text(&unknown));
    assert!(!out.join("manifest.json").exists());

    let only_unet = convert("unet");
    assert!(only_unet.status.success(), "{}", text(&only_unet));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let components: Vec<&String> = manifest["components"].as_object().unwrap().keys().collect();
    assert_eq!(components, ["unet"]);
    assert_eq!(manifest["files"], serde_json::json!([]), "no tokenizer or scheduler files");
    assert!(manifest["tensors"].as_array().unwrap().iter().all(|t| t["component"] == "unet"));
    let names: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.iter().all(|name| name == "manifest.json" || name.starts_with("unet-")), "{names:?}");
    let verify = sdxl_weights(&["verify"], &[&out]);
    assert!(verify.status.success(), "{}", text(&verify));
    let _ = std::fs::remove_dir_all(&out);
}

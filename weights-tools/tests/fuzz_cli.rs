//! `sdxl-weights convert`, `verify` and `inspect` on damaged and hostile inputs: folder trees
//! whose `model_index.json`, configs, weight indexes and safetensors headers are mutated, and
//! converted models whose manifests are. Every run ends with exit code 0 or 1 and, on 1, a
//! message; never a panic or an abort; and nothing outside `--out` is written (a precious folder
//! beside it, and the source, stay byte for byte as they were).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{fixtures, sdxl_weights as run};

/// A small deterministic generator (xorshift64*): the cases are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    files
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Exit 0, or exit 1 with an `error:` message or a verify report; never a panic or a signal.
fn assert_clean_exit(what: &str, output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{what}: panicked: {stderr}");
    match output.status.code() {
        Some(0) => {}
        Some(1) => assert!(!stderr.trim().is_empty(), "{what}: exit 1 without a message"),
        other => panic!("{what}: exit {other:?} (a crash or an abort): {stderr}"),
    }
}

const HOSTILE_NAMES: [&str; 7] = ["..", ".", "", "../victim", "victim/../..", "a/b", "/"];
const HOSTILE_VALUES: [&str; 10] =
    ["0", "-1", "18446744073709551615", "1e300", "3.5", "null", "\"x\"", "[]", "{}", "[0, 0, 0, 0]"];

/// One mutation of the source folder `src` (a copy of the tiny base's VAE and scheduler);
/// `victim` is a folder beside it that must not change. Returns what was done, for messages.
fn mutate(rng: &mut Rng, kind: usize, src: &Path, victim: &Path) -> String {
    let index_path = src.join("model_index.json");
    let mut index: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let vae_config = src.join("vae/config.json");
    let weights = src.join("vae/diffusion_pytorch_model.fp16.safetensors");
    match kind {
        0 => {
            // A component key that is a path: absolute (the victim folder itself) or relative.
            let victim_path = victim.display().to_string();
            let key = if rng.below(2) == 0 { victim_path } else { rng.pick(&HOSTILE_NAMES).to_string() };
            let class = rng.pick(&["AutoencoderKL", "CLIPTokenizer", "EulerDiscreteScheduler"]).to_string();
            index.insert(key.clone(), serde_json::json!(["transformers", class]));
            std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
            format!("model_index key {key:?}")
        }
        1 => {
            // A config value out of range or of the wrong type.
            let mut config: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&std::fs::read(&vae_config).unwrap()).unwrap();
            let keys: Vec<String> = config.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            let value = *rng.pick(&HOSTILE_VALUES);
            config.insert(key.clone(), serde_json::from_str(value).unwrap());
            std::fs::write(&vae_config, serde_json::to_vec(&config).unwrap()).unwrap();
            format!("vae config {key} = {value}")
        }
        2 => {
            // The safetensors header length or header bytes.
            let mut bytes = std::fs::read(&weights).unwrap();
            let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let what = match rng.below(3) {
                0 => {
                    let len = *rng.pick(&[0u64, 7, u64::MAX, (bytes.len() as u64) - 7, 100_000_000]);
                    bytes[..8].copy_from_slice(&len.to_le_bytes());
                    format!("header length {len}")
                }
                1 => {
                    let at = 8 + rng.below(header_len);
                    bytes[at] = rng.next() as u8;
                    format!("header byte {at}")
                }
                _ => {
                    let keep = rng.below(8 + header_len);
                    bytes.truncate(keep);
                    format!("truncated to {keep} bytes")
                }
            };
            std::fs::write(&weights, bytes).unwrap();
            what
        }
        3 => {
            // A weight index whose entries point elsewhere.
            std::fs::remove_file(&weights).unwrap();
            let target = *rng.pick(&["/dev/zero", "../victim/precious.txt", "..", "missing.safetensors", "/etc/passwd", "/proc/self/fd/0"]);
            let index = serde_json::json!({ "weight_map": { "decoder.conv_in.weight": target } });
            std::fs::write(src.join("vae/diffusion_pytorch_model.safetensors.index.json"), index.to_string()).unwrap();
            format!("weight index → {target}")
        }
        4 => {
            // model_index.json itself damaged.
            let mut bytes = std::fs::read(&index_path).unwrap();
            let keep = rng.below(bytes.len());
            bytes.truncate(keep);
            std::fs::write(&index_path, bytes).unwrap();
            format!("model_index.json cut to {keep} bytes")
        }
        _ => {
            // A component entry of the wrong shape.
            let value = *rng.pick(&["[null]", "[\"diffusers\"]", "[\"diffusers\", 5]", "[1, 2, 3]", "\"vae\""]);
            index.insert("vae".into(), serde_json::from_str(value).unwrap());
            std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
            format!("vae entry {value}")
        }
    }
}

/// One mutation of a converted model's manifest: numbers out of range, paths, wrong types.
fn mutate_manifest(rng: &mut Rng, out: &Path) -> String {
    let path = out.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let (section, field) = *rng.pick(&[
        ("shards", "size"),
        ("shards", "file"),
        ("tensors", "offset"),
        ("tensors", "length"),
        ("tensors", "shape"),
        ("tensors", "block_size"),
        ("tensors", "dtype"),
        ("files", "path"),
        ("files", "size"),
    ]);
    let value = *rng.pick(&["18446744073709551615", "0", "\"../../victim/precious.txt\"", "\"/dev/zero\"", "[4294967295, 4294967295, 4294967295]", "\"q3\"", "null"]);
    if let Some(entries) = manifest[section].as_array_mut().filter(|entries| !entries.is_empty()) {
        let at = rng.below(entries.len());
        entries[at][field] = serde_json::from_str(value).unwrap();
    }
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    format!("manifest {section}[].{field} = {value}")
}

#[test]
fn hostile_inputs_end_in_a_message_and_write_nothing_outside_out() {
    let root = std::env::temp_dir().join(format!("sdxl-weights-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let victim = root.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious.txt"), "keep me").unwrap();
    let pristine = root.join("pristine");
    let base = fixtures().join("tiny-sdxl-base");
    copy_dir(&base.join("vae"), &pristine.join("vae"));
    copy_dir(&base.join("scheduler"), &pristine.join("scheduler"));
    let mut index: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(base.join("model_index.json")).unwrap()).unwrap();
    index.retain(|key, value| !value.is_array() || key == "vae" || key == "scheduler");
    std::fs::write(pristine.join("model_index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let victim_before = snapshot(&victim);
    let mut rng = Rng(0x5d1_e5eb);
    let out_parent = root.join("outputs");
    let out = out_parent.join("model");

    // Damaged or hostile sources: each kind of mutation in turn, with random details.
    let mut converted = 0;
    for case in 0..48 {
        let src = root.join("src");
        let _ = std::fs::remove_dir_all(&src);
        let _ = std::fs::remove_dir_all(&out_parent);
        std::fs::create_dir_all(&out_parent).unwrap();
        copy_dir(&pristine, &src);
        let what = mutate(&mut rng, case % 6, &src, &victim);
        let src_before = snapshot(&src);
        let convert = run(&["convert", "--quant", "q8", "--from"], &[&src, Path::new("--out"), &out]);
        let label = format!("case {case} ({what}): convert");
        assert_clean_exit(&label, &convert);
        assert_eq!(snapshot(&victim), victim_before, "{label}: wrote outside --out");
        assert_eq!(snapshot(&src), src_before, "{label}: changed its source");
        let beside: Vec<String> =
            std::fs::read_dir(&out_parent).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        if convert.status.success() {
            converted += 1;
            assert_eq!(beside, ["model"], "{label}: left more than its output");
            assert!(run(&["verify"], &[&out]).status.success(), "{label}: converted a model that does not verify");
        } else {
            assert!(beside.is_empty(), "{label}: a failed conversion left {beside:?}");
        }
    }
    // Harmless mutations convert (an absent VAE entry); most do not.
    assert!((1..24).contains(&converted), "{converted} of 48 cases converted");

    // Damaged manifests of a good conversion, through verify and inspect.
    let _ = std::fs::remove_dir_all(&out_parent);
    let good = root.join("good");
    assert!(run(&["convert", "--from"], &[&pristine, Path::new("--out"), &good]).status.success());
    for case in 0..24 {
        let _ = std::fs::remove_dir_all(&out);
        copy_dir(&good, &out);
        let what = mutate_manifest(&mut rng, &out);
        for command in ["verify", "inspect"] {
            let output = run(&[command], &[&out]);
            assert_clean_exit(&format!("manifest case {case} ({what}): {command}"), &output);
            assert_eq!(snapshot(&victim), victim_before, "manifest case {case} ({what}): {command} wrote outside");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

//! `sdxl generate` end to end on the bundled demo model (converted, q8): base + refiner, a
//! PNG with A1111 parameters, the f32 image tensor, and clear errors for bad input.
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{TempDir, assert_mentions, relative_l2};
use sdxl_web::weights::TensorSource;
use sdxl_web::weights::safetensors::SafetensorsSource;

fn demo(model: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web/demo-model").join(model)
}

/// `sdxl generate` on the demo base: 4 steps at 64×64 into `out` unless `extra` says otherwise.
fn generate(out: &std::path::Path, extra: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sdxl"));
    command.arg("generate").arg("--model").arg(demo("base"));
    let (png, tensor) = (out.join("image.png"), out.join("image.safetensors"));
    let defaults = [
        ("--prompt", "a lighthouse at dusk"),
        ("--steps", "4"),
        ("--width", "64"),
        ("--height", "64"),
        ("--out", png.to_str().unwrap()),
        ("--out-tensor", tensor.to_str().unwrap()),
    ];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            command.args([flag, value]);
        }
    }
    command.args(extra).output().unwrap()
}

fn image(out: &std::path::Path) -> burn::tensor::TensorData {
    SafetensorsSource::open(&[out.join("image.safetensors")]).unwrap().read("image").unwrap().unwrap()
}

#[test]
fn generates_with_the_demo_model_and_refiner() {
    let out = std::env::temp_dir().join(format!("sdxl-generate-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let refiner = demo("refiner");
    let run = generate(&out, &["--seed", "42", "--refiner", refiner.to_str().unwrap(), "--refiner-start", "0.5"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let pixels = image(&out);
    assert_eq!(pixels.shape().to_vec(), vec![64, 64, 3]);
    let values = pixels.try_to_vec::<f32>().unwrap();
    assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));

    let png = std::fs::read(out.join("image.png")).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert_eq!((info.width, info.height), (64, 64));
    let parameters = &info.uncompressed_latin1_text.iter().find(|chunk| chunk.keyword == "parameters").unwrap().text;
    assert!(parameters.starts_with("a lighthouse at dusk\n"), "{parameters}");
    assert!(parameters.contains("Steps: 4, Sampler: Euler, CFG scale: 5, Seed: 42, Size: 64x64"), "{parameters}");
    assert!(parameters.contains("Refiner switch at: 0.5"), "{parameters}");

    // The same seed gives the same image; another seed another one.
    let again = generate(&out, &["--seed", "42", "--refiner", refiner.to_str().unwrap(), "--refiner-start", "0.5"]);
    assert!(again.status.success());
    assert_eq!(image(&out), pixels);
    // One network at a time (sequential memory plan): the same image.
    let refiner_args = ["--seed", "42", "--refiner", refiner.to_str().unwrap(), "--refiner-start", "0.5"];
    let sequential = generate(&out, &[&refiner_args[..], &["--memory", "sequential"]].concat());
    assert!(sequential.status.success(), "{}", String::from_utf8_lossy(&sequential.stderr));
    assert_eq!(image(&out), pixels);
    let other = generate(&out, &["--seed", "43", "--refiner", refiner.to_str().unwrap(), "--refiner-start", "0.5"]);
    assert!(other.status.success());
    assert!(relative_l2(&image(&out), &pixels) > 1e-3);

    // Refining the PNG just written: img2img with the refiner, the size taken from the image.
    let input = out.join("input.png");
    let input_pixels = image(&out);
    std::fs::rename(out.join("image.png"), &input).unwrap();
    let refine = |memory: &str| {
        Command::new(env!("CARGO_BIN_EXE_sdxl"))
            .arg("generate")
            .arg("--model")
            .arg(demo("base"))
            .arg("--refiner")
            .arg(&refiner)
            .arg("--image")
            .arg(&input)
            .args(["--strength", "0.5", "--steps", "4", "--prompt", "a lighthouse at dusk", "--seed", "7", "--memory", memory])
            .arg("--out")
            .arg(out.join("image.png"))
            .arg("--out-tensor")
            .arg(out.join("image.safetensors"))
            .output()
            .unwrap()
    };
    let refined = refine("resident");
    assert!(refined.status.success(), "{}", String::from_utf8_lossy(&refined.stderr));
    let refined = image(&out);
    assert_eq!(refined.shape().to_vec(), vec![64, 64, 3]);
    assert!(relative_l2(&refined, &input_pixels) > 1e-3, "the refiner changed the image");
    // One network at a time: the same refined image.
    let sequential = refine("sequential");
    assert!(sequential.status.success(), "{}", String::from_utf8_lossy(&sequential.stderr));
    assert_eq!(image(&out), refined);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_input_is_a_message_not_a_panic() {
    let out = std::env::temp_dir().join(format!("sdxl-generate-bad-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let base = demo("base").display().to_string();
    for (extra, expected) in [
        (vec!["--width", "60"], "input `width`: 60 is not a positive multiple of 32"),
        // A multiple of 8 the demo UNet's two downsamplings cannot take (it used to panic in burn).
        (vec!["--width", "72"], "input `width`: 72 is not a positive multiple of 32"),
        (vec!["--steps", "1000000"], "1000000 is more than 1000"),
        (vec!["--steps", "0"], "at least 1 step"),
        (vec!["--scheduler", "plms"], "plms"),
        (vec!["--refiner", base.as_str()], "StableDiffusionXLImg2ImgPipeline"),
        // The demo UNet denoises 2^20 × 2^20 pixels through an 8 TiB buffer; nothing is allocated.
        (vec!["--width", "1048576", "--height", "1048576", "--device", "cpu"], "MiB of memory are available: choose a smaller size"),
        // On wgpu the adapter's own limits decide, as in the browser (the demo UNet at 32768²
        // holds 3 GiB in one buffer even with a pass per guidance branch; wgpu's buffers are
        // below 4 GiB).
        (vec!["--width", "32768", "--height", "32768", "--device", "wgpu"], "needs a 3072 MiB buffer to denoise; this GPU ("),
    ] {
        let run = generate(&out, &extra);
        let message = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{extra:?} succeeded");
        assert!(message.contains(expected), "{extra:?}: {message}");
        assert!(!message.contains("panicked"), "{extra:?}: {message}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// `--budget-mib`: a budget the weights exceed is refused before anything loads; one that
/// leaves the VAE too little for a whole decode tiles it, and says so; a diffusers folder (whose
/// size on the device is unknown before loading) is a clear error.
#[test]
fn a_budget_is_kept_or_refused_clearly() {
    let out = std::env::temp_dir().join(format!("sdxl-generate-budget-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let refused = generate(&out, &["--budget-mib", "1"]);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    // The demo base's networks on the device: 2.07 MiB (its f16 norms and biases as f32, its
    // q8 weights with f32 block scales), against 1.27 MiB of shards.
    assert!(message.contains("this model needs 3 MiB of GPU memory with every network resident"), "{message}");
    assert!(message.contains("--budget-mib allows 1 MiB"), "{message}");

    let size = ["--width", "256", "--height", "256", "--steps", "2", "--seed", "9"];
    let tiled = generate(&out, &[&size[..], &["--memory", "sequential", "--budget-mib", "8"]].concat());
    let message = String::from_utf8_lossy(&tiled.stderr);
    assert!(tiled.status.success(), "{message}");
    assert!(message.contains("256×256 is decoded in 36 overlapping tiles"), "{message}");
    assert!(message.contains("--budget-mib allows 8 MiB, which leaves"), "{message}");
    let tiled = image(&out);
    let whole = generate(&out, &[&size[..], &["--memory", "sequential"]].concat());
    assert!(whole.status.success());
    assert!(!String::from_utf8_lossy(&whole.stderr).contains("tiles"));
    assert_ne!(image(&out), tiled, "tiles see only their part of the latents");

    let diffusers = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-sdxl-base");
    let run = Command::new(env!("CARGO_BIN_EXE_sdxl"))
        .args(["generate", "--prompt", "a", "--budget-mib", "100", "--out"])
        .arg(out.join("image.png"))
        .arg("--model")
        .arg(&diffusers)
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(message.contains("input `budget-mib`: needs converted models (sdxl-weights)"), "{message}");
    let _ = std::fs::remove_dir_all(&out);
}

/// The lines `sdxl generate` prints about GPU memory: the peak and each phase's.
fn memory_lines(stderr: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<String> = text.lines().filter(|line| line.contains("MiB reserved")).map(str::to_string).collect();
    assert!(lines.len() == 5 && lines[0].starts_with("GPU memory peak (Sequential): "), "{text}");
    lines
}

/// A dry run (kernels compiled, not run) reserves what the run itself does, phase by phase,
/// and writes nothing.
#[test]
fn a_dry_run_reserves_what_the_run_does() {
    let out = TempDir::new("generate-dry-run");
    let refiner = demo("refiner");
    let args = ["--seed", "5", "--steps", "2", "--width", "256", "--height", "256", "--device", "wgpu", "--memory", "sequential"];
    let args = [&args[..], &["--refiner", refiner.to_str().unwrap(), "--refiner-start", "0.5"]].concat();
    let run = generate(&out, &args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let measured = memory_lines(&run.stderr);
    // The VAE's phase holds its 256² decode's activations (three of its widest, 4 MiB each, as
    // estimated): pages of the pools' arena are measured, not just their first small page.
    let vae: Vec<u64> = measured[4].split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    assert!(vae[1] >= vae[0] + vae[2], "{measured:?}");

    std::fs::remove_file(out.join("image.png")).unwrap();
    std::fs::remove_file(out.join("image.safetensors")).unwrap();
    let dry = generate(&out, &[&args[..], &["--dry-run"]].concat());
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert_eq!(memory_lines(&dry.stderr), measured);
    assert!(String::from_utf8_lossy(&dry.stderr).contains("dry run: kernels compiled, not run; no image written"));
    assert!(!out.join("image.png").exists() && !out.join("image.safetensors").exists());

    let cpu = generate(&out, &["--dry-run", "--steps", "1"]);
    assert!(!cpu.status.success());
    assert_mentions(&String::from_utf8_lossy(&cpu.stderr), &["input `dry-run`: needs --device wgpu"]);
}

/// Output paths are checked before anything runs, and a finished image is never lost to them.
#[test]
fn output_problems_are_found_before_the_run() {
    let out = TempDir::new("generate-output");
    let missing = out.join("no-such-folder/image.png");
    for flag in ["--out", "--out-tensor"] {
        let started = std::time::Instant::now();
        let run = generate(&out, &[flag, missing.to_str().unwrap(), "--steps", "1"]);
        let message = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success());
        assert_mentions(&message, &["no-such-folder/image.png", "No such file or directory"]);
        assert!(!message.contains("seed:"), "{flag}: the run started: {message}");
        assert!(started.elapsed().as_secs() < 60);
    }
    assert!(!out.join("image.png").exists(), "nothing is written on a refused run");
}

/// A prompt outside Latin-1 keeps its image: the PNG carries the parameters as UTF-8 iTXt.
#[test]
fn a_prompt_outside_latin1_keeps_the_image() {
    let out = TempDir::new("generate-utf8");
    let run = generate(&out, &["--prompt", "猫 in the rain", "--steps", "1"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let png = std::fs::read(out.join("image.png")).unwrap();
    let text = String::from_utf8_lossy(&png);
    assert!(text.contains("iTXt") && text.contains("猫 in the rain"), "the prompt is in the PNG");
}

/// Non-finite noise would run every step into a black image: it is refused up front.
#[test]
fn non_finite_noise_is_refused() {
    let out = TempDir::new("generate-nan");
    let noise = burn::tensor::TensorData::new(vec![f32::NAN; 4 * 8 * 8], [1, 4, 8, 8]);
    let path = out.join("noise.safetensors");
    sdxl_web::weights::safetensors::write(&path, &[("noise", &noise)]).unwrap();
    let run = generate(&out, &["--noise", path.to_str().unwrap()]);
    assert!(!run.status.success());
    assert_mentions(&String::from_utf8_lossy(&run.stderr), &["input `noise`", "not finite"]);
}

/// `sdxl run` names components as diffusers' folders do (`text_encoder_2`); the old spelling stays.
#[test]
fn run_takes_diffusers_component_names() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let out = TempDir::new("run-names");
    let mut outputs = Vec::new();
    for name in ["text_encoder_2", "text_encoder2"] {
        let path = out.join(format!("{name}.safetensors"));
        let run = Command::new(env!("CARGO_BIN_EXE_sdxl"))
            .args(["run", "--component", name, "--model"])
            .arg(fixtures.join("tiny-sdxl-base"))
            .arg("--in")
            .arg(fixtures.join("parity/text_encoder_2.in.safetensors"))
            .arg("--out")
            .arg(&path)
            .output()
            .unwrap();
        assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
        outputs.push(SafetensorsSource::open(&[path]).unwrap().read("text_embeds").unwrap().unwrap());
    }
    assert_eq!(outputs[0], outputs[1]);
}

/// `sdxl run` refuses inputs it cannot run: NaN token ids, ids past the vocabulary, a file too
/// short to be safetensors.
#[test]
fn run_refuses_bad_inputs() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let out = TempDir::new("run-bad");
    let run = |input: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_sdxl"))
            .args(["run", "--component", "text_encoder", "--model"])
            .arg(fixtures.join("tiny-sdxl-base"))
            .arg("--in")
            .arg(input)
            .arg("--out")
            .arg(out.join("out.safetensors"))
            .output()
            .unwrap()
    };
    let ids = |name: &str, values: Vec<f32>| {
        let path = out.join(name);
        let data = burn::tensor::TensorData::new(values, [1, 77]);
        sdxl_web::weights::safetensors::write(&path, &[("input_ids", &data)]).unwrap();
        path
    };
    let short = out.join("short.safetensors");
    std::fs::write(&short, [1, 2, 3]).unwrap();
    for (input, expected) in [
        (ids("nan.safetensors", vec![f32::NAN; 77]), "not finite"),
        (ids("large.safetensors", vec![1e9; 77]), "is not below the vocabulary size"),
        (short, "shorter than its 8-byte header length"),
    ] {
        let output = run(&input);
        let message = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{message}");
        assert!(message.contains(expected) && !message.contains("panicked"), "{message}");
    }
}

/// The acceptance check as a user would run it: `--noise` from diffusers' run,
/// `--out-tensor` against diffusers' `output_type="np"` image, base alone and with the refiner.
#[test]
fn out_tensor_equals_diffusers() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let out = std::env::temp_dir().join(format!("sdxl-generate-parity-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let refiner = fixtures.join("tiny-sdxl-refiner");
    for (case, extra) in [("base_euler", vec![]), ("base_refiner_euler", vec!["--refiner", refiner.to_str().unwrap()])] {
        let run = Command::new(env!("CARGO_BIN_EXE_sdxl"))
            .arg("generate")
            .arg("--model")
            .arg(fixtures.join("tiny-sdxl-base"))
            .args(["--prompt", "a photo of an astronaut riding a horse", "--negative-prompt", ""])
            .args(["--steps", "10", "--guidance", "5", "--width", "64", "--height", "64", "--noise"])
            .arg(fixtures.join("pipeline/noise.safetensors"))
            .arg("--out")
            .arg(out.join("image.png"))
            .arg("--out-tensor")
            .arg(out.join("image.safetensors"))
            .args(&extra)
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let expected = SafetensorsSource::open(&[fixtures.join(format!("pipeline/{case}.safetensors"))]).unwrap();
        let error = relative_l2(&image(&out), &expected.read("image").unwrap().unwrap());
        println!("{case}: --out-tensor relative L2 {error:.2e}");
        assert!(error <= 1e-3, "{case}: relative L2 {error:.3e}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

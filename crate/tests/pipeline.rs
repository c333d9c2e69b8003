//! Whole tiny-model runs against diffusers' `StableDiffusionXLPipeline` (+ the refiner in
//! ensemble-of-experts mode) from `tests/fixtures/pipeline`: same noise, 10 steps, guidance 5.
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system

mod common;

use std::collections::VecDeque;
use std::ops::ControlFlow;

use burn::tensor::{Device, Distribution, Tensor};
use common::{fixtures, relative_l2};
use sdxl_web::pipeline::conditioning::{LongPrompt, encode_prompt};
use sdxl_web::pipeline::preview::Preview;
use sdxl_web::pipeline::generation::UNetConditioning;
use sdxl_web::pipeline::{Base, GenerateParams, Noise, Progress, Refiner, Sdxl, Stage};
use sdxl_web::schedulers::SchedulerKind;
use sdxl_web::weights::TensorSource;
use sdxl_web::weights::safetensors::SafetensorsSource;

/// The final latents are compared tightly; the image (through the VAE, saturating on random
/// weights) within the 1e-3.
const LATENT_TOLERANCE: f64 = 1e-4;
const IMAGE_TOLERANCE: f64 = 1e-3;

#[derive(Default)]
struct Recorder {
    steps: Vec<(Stage, usize, usize)>,
    cancel_after: Option<usize>,
}

impl Progress for Recorder {
    fn wants_preview(&self) -> bool {
        true
    }

    fn step(&mut self, stage: Stage, index: usize, total: usize, preview: Option<Preview>) -> ControlFlow<()> {
        let preview = preview.expect("a preview was asked for");
        assert_eq!((preview.width, preview.height, preview.rgba.len()), (8, 8, 8 * 8 * 4));
        self.steps.push((stage, index, total));
        match self.cancel_after {
            Some(limit) if index >= limit => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
}

fn reference(case: &str) -> SafetensorsSource {
    SafetensorsSource::open(&[fixtures().join("pipeline").join(format!("{case}.safetensors"))]).unwrap()
}

fn tensor(source: &SafetensorsSource, name: &str, device: &Device) -> Tensor<4> {
    let data = source.read(name).unwrap().unwrap_or_else(|| panic!("no `{name}`"));
    Tensor::from_data(data, device)
}

fn params(scheduler: SchedulerKind, negative_prompt: Option<&str>) -> GenerateParams {
    let mut params = GenerateParams::new("a photo of an astronaut riding a horse");
    params.negative_prompt = negative_prompt.map(str::to_string);
    params.steps = 10;
    params.guidance = 5.0;
    params.width = 64;
    params.height = 64;
    params.scheduler = scheduler;
    params
}

/// The fixture's noise; for ancestral runs, the step noise diffusers drew, in order.
fn noise<'a>(case: &SafetensorsSource, device: &'a Device) -> Noise<'a> {
    let initial = SafetensorsSource::open(&[fixtures().join("pipeline/noise.safetensors")]).unwrap();
    let mut recorded: VecDeque<Tensor<4>> = (0..)
        .map_while(|i| case.read(&format!("step_noise_{i}")).unwrap())
        .map(|data| Tensor::from_data(data, device))
        .collect();
    let mut noise = Noise::given(tensor(&initial, "noise", device), device);
    if !recorded.is_empty() {
        noise.steps = Box::new(move |_| recorded.pop_front().expect("one recorded noise per step"));
    }
    noise
}

fn check_case(base: &Base, refiner: Option<&Refiner>, case: &str, params: &GenerateParams, final_latents: &str, device: &Device) {
    let expected = reference(case);
    let mut progress = Recorder::default();
    let latents = Sdxl::new(base, refiner).denoise(params, noise(&expected, device), device, &mut progress).unwrap();
    let latent_error = relative_l2(&latents.clone().into_data(), &expected.read(final_latents).unwrap().unwrap());
    let image = base.decode(latents).unwrap();
    let image_error = relative_l2(&image.pixels, &expected.read("image").unwrap().unwrap());
    println!("{case}: latents {latent_error:.2e}, image {image_error:.2e}");
    assert!(latent_error <= LATENT_TOLERANCE, "{case}: latents relative L2 {latent_error:.3e}");
    assert!(image_error <= IMAGE_TOLERANCE, "{case}: image relative L2 {image_error:.3e}");
    let total = progress.steps.len();
    assert_eq!(progress.steps.last().map(|step| (step.1, step.2)), Some((total, total)));
}

#[test]
fn base_runs_match_diffusers_for_every_scheduler() {
    let device = Device::flex();
    let base = Base::from_folder(&fixtures().join("tiny-sdxl-base"), &device).unwrap();
    for (case, scheduler, negative) in [
        ("base_euler", SchedulerKind::Euler, Some("")),
        ("base_euler_negative", SchedulerKind::Euler, Some("blurry, low quality")),
        ("base_euler_negative_none", SchedulerKind::Euler, None),
        ("base_euler_a", SchedulerKind::EulerAncestral, Some("")),
        ("base_dpmpp_2m", SchedulerKind::DpmPp2M, Some("")),
        ("base_dpmpp_2m_karras", SchedulerKind::DpmPp2MKarras, Some("")),
        ("base_ddim", SchedulerKind::Ddim, Some("")),
    ] {
        check_case(&base, None, case, &params(scheduler, negative), "latents_step_9", &device);
    }
}

#[test]
fn base_then_refiner_matches_diffusers_ensemble_of_experts() {
    let device = Device::flex();
    let base = Base::from_folder(&fixtures().join("tiny-sdxl-base"), &device).unwrap();
    let refiner = Refiner::from_folder(&fixtures().join("tiny-sdxl-refiner"), &device).unwrap();
    let params = params(SchedulerKind::Euler, Some(""));
    check_case(&base, Some(&refiner), "base_refiner_euler", &params, "refiner_latents_step_1", &device);
}

/// Under guidance, the branches in a UNet pass each (what a small buffer limit asks for) predict
/// what one pass over both does.
#[test]
fn guidance_branches_in_a_pass_each_predict_as_one_pass() {
    let device = Device::flex();
    let base = Base::from_folder(&fixtures().join("tiny-sdxl-base"), &device).unwrap();
    let unet = base.unet().unwrap();
    let normal = Distribution::Normal(0.0, 1.0);
    let conditioning = UNetConditioning {
        context: Tensor::random([2, 77, 64], normal, &device),
        pooled: Tensor::random([2, 32], normal, &device),
        time_ids: Tensor::<1>::from_floats([64.0, 64.0, 0.0, 0.0, 64.0, 64.0], &device).unsqueeze::<2>().repeat_dim(0, 2),
    };
    let input = Tensor::<4>::random([1, 4, 16, 24], normal, &device);
    let together = conditioning.predict(unet, input.clone(), 501.0, Some(5.0), 2, &device).into_data();
    let apart = conditioning.predict(unet, input.clone(), 501.0, Some(5.0), 1, &device).into_data();
    let error = relative_l2(&apart, &together);
    assert!(error < 1e-5, "a pass each vs one pass: {error:e}");
    // The guidance is applied: the positive branch alone differs.
    let positive = UNetConditioning {
        context: conditioning.context.clone().narrow(0, 1, 1),
        pooled: conditioning.pooled.clone().narrow(0, 1, 1),
        time_ids: conditioning.time_ids.clone().narrow(0, 1, 1),
    };
    let unguided = positive.predict(unet, input, 501.0, None, 1, &device).into_data();
    assert!(relative_l2(&unguided, &together) > 1e-2);
}

#[test]
fn cancelling_stops_between_steps() {
    let device = Device::flex();
    let base = Base::from_folder(&fixtures().join("tiny-sdxl-base"), &device).unwrap();
    let mut progress = Recorder { cancel_after: Some(3), ..Recorder::default() };
    let params = params(SchedulerKind::Euler, None);
    let noise = Noise::from_seed(7, &device);
    let error = Sdxl::new(&base, None).denoise(&params, noise, &device, &mut progress).err().expect("cancelled");
    assert!(error.to_string().contains("cancelled"), "{error}");
    assert_eq!(progress.steps.len(), 3);
}

#[test]
fn a_seed_fixes_the_image() {
    let device = Device::flex();
    let base = Base::from_folder(&fixtures().join("tiny-sdxl-base"), &device).unwrap();
    let mut params = params(SchedulerKind::EulerAncestral, None);
    params.steps = 3;
    let run = |seed| {
        let noise = Noise::from_seed(seed, &device);
        Sdxl::new(&base, None).denoise(&params, noise, &device, &mut Recorder::default()).unwrap().into_data()
    };
    let (first, again, other) = (run(1), run(1), run(2));
    assert_eq!(first, again);
    assert!(relative_l2(&other, &first) > 0.1);
}

#[test]
fn invalid_parameters_are_refused() {
    let device = Device::flex();
    let base = Base::from_folder(&fixtures().join("tiny-sdxl-base"), &device).unwrap();
    let good = params(SchedulerKind::Euler, None);
    for (edit, name) in [
        (Box::new(|p: &mut GenerateParams| p.width = 60) as Box<dyn Fn(&mut GenerateParams)>, "width"),
        (Box::new(|p: &mut GenerateParams| p.steps = 0), "steps"),
        (Box::new(|p: &mut GenerateParams| p.guidance = -1.0), "guidance"),
        (Box::new(|p: &mut GenerateParams| p.refiner_start = 1.0), "refiner start"),
    ] {
        let mut bad = good.clone();
        edit(&mut bad);
        let noise = Noise::from_seed(0, &device);
        let error = Sdxl::new(&base, None).denoise(&bad, noise, &device, &mut Recorder::default()).err().expect("refused");
        assert!(error.to_string().contains(name), "{name}: {error}");
    }
    // Sizes are multiples of the VAE's 8 times 2 per UNet downsampling: the tiny UNet has two.
    let rules = base.size_rules(None);
    assert_eq!(rules.multiple, 32);
    // The widest activations per level, from the tiny UNet's config (channels 16, 32, 32; GEGLU
    // inner width 4 · 32): the last up block's first resnet input 32 + 16 at level 0, the up
    // blocks' first resnet inputs 32 + 32 above; the GEGLU projections (2 · 128) at levels 1
    // and 2 apart.
    assert_eq!(rules.unet.widths, [48, 64, 64]);
    assert_eq!(rules.unet.feed_forward_widths, [0, 256, 256]);
    // The skips per level: conv_in's 16 and two resnets' 16; the downsampler's 16 and two
    // resnets' 32; the next downsampler's 32 and two resnets' 32.
    assert_eq!(rules.unet.skip_widths, [48, 80, 96]);
    let mut odd = good.clone();
    odd.width = 72; // a multiple of 8 that the UNet's skip connections cannot take
    let error = Sdxl::new(&base, None).denoise(&odd, Noise::from_seed(0, &device), &device, &mut Recorder::default());
    assert!(error.err().expect("refused").to_string().contains("72 is not a positive multiple of 32"));
    odd.width = 96;
    assert_eq!(odd.validate(&rules).unwrap().len(), 1, "96 is allowed, with a warning");
    // The tiny refiner downsamples three times: with it, sizes are multiples of 64 (it used to
    // fail inside burn, its skip connections misaligned).
    let refiner = Refiner::from_folder(&fixtures().join("tiny-sdxl-refiner"), &device).unwrap();
    let mut refined = odd.clone();
    refined.refiner_start = 0.5;
    let with_refiner = Sdxl::new(&base, Some(&refiner));
    assert_eq!(with_refiner.size_rules().multiple, 64);
    let error = with_refiner.denoise(&refined, Noise::from_seed(0, &device), &device, &mut Recorder::default());
    assert!(error.err().expect("refused").to_string().contains("96 is not a positive multiple of 64"));
}

#[test]
fn refining_a_finished_image_matches_diffusers_img2img() {
    let device = Device::flex();
    let base = Base::from_folder(&fixtures().join("tiny-sdxl-base"), &device).unwrap();
    let refiner = Refiner::from_folder(&fixtures().join("tiny-sdxl-refiner"), &device).unwrap();
    let expected = reference("refiner_img2img_euler");
    let image: Tensor<3> = Tensor::from_data(expected.read("image_in").unwrap().unwrap(), &device);
    let mut draws: VecDeque<Tensor<4>> =
        ["draw_0", "draw_1"].into_iter().map(|name| tensor(&expected, name, &device)).collect();
    let mut draw = |_shape: [usize; 4]| draws.pop_front().expect("two draws");
    let params = params(SchedulerKind::Euler, None);
    let mut progress = Recorder::default();
    let latents = Sdxl::new(&base, Some(&refiner)).refine_image(image.clone(), 0.3, &params, &mut draw, &device, &mut progress).unwrap();
    assert_eq!(progress.steps.len(), 3, "strength 0.3 of 10 steps runs 3");
    let error = relative_l2(&base.decode(latents).unwrap().pixels, &expected.read("image").unwrap().unwrap());
    println!("refiner_img2img_euler: image {error:.2e}");
    assert!(error <= IMAGE_TOLERANCE, "image relative L2 {error:.3e}");

    let mut draw = |shape: [usize; 4]| Tensor::zeros(shape, &device);
    for strength in [0.0, 0.05, 1.5] {
        let result = Sdxl::new(&base, Some(&refiner)).refine_image(image.clone(), strength, &params, &mut draw, &device, &mut progress);
        assert!(result.err().expect("refused").to_string().contains("strength"));
    }
}

#[test]
fn long_prompts_are_cut_or_chunked() {
    let device = Device::flex();
    let base = Base::from_folder(&fixtures().join("tiny-sdxl-base"), &device).unwrap();
    let encoders = base.text_encoders().unwrap();
    let long = "a very detailed painting of a quiet harbour town at dawn, ".repeat(12);
    let mut warnings = Vec::new();
    let mut warn = |message: String| warnings.push(message);
    let cut = encode_prompt(&encoders, &long, LongPrompt::Truncate, 1, &device, &mut warn).unwrap();
    let chunked = encode_prompt(&encoders, &long, LongPrompt::Chunk, 1, &device, &mut warn).unwrap();
    assert_eq!(warnings.len(), 2, "one truncation warning per tokenizer: {warnings:?}");
    let [_, tokens, width] = chunked.context.dims();
    assert!(tokens >= 2 * 77 && tokens % 77 == 0, "{tokens} tokens");
    assert_eq!(width, cut.context.dims()[2]);
    // The first window is the cut prompt: same states, same pooled embedding.
    let first = chunked.context.clone().narrow(1, 0, 77).into_data();
    assert!(relative_l2(&first, &cut.context.clone().into_data()) < 1e-6);
    assert!(relative_l2(&chunked.pooled.clone().into_data(), &cut.pooled.into_data()) < 1e-6);
    let second = chunked.context.narrow(1, 77, 77).into_data();
    assert!(relative_l2(&second, &first) > 1e-3, "later windows encode the rest of the prompt");

    // A short prompt chunked is the diffusers run; padding windows make prompt and negative match.
    let mut params = params(SchedulerKind::Euler, Some(""));
    params.long_prompt = LongPrompt::Chunk;
    check_case(&base, None, "base_euler", &params, "latents_step_9", &device);
    params.prompt = long;
    params.steps = 2;
    let noise = Noise::from_seed(3, &device);
    Sdxl::new(&base, None).denoise(&params, noise, &device, &mut Recorder::default()).unwrap();
}

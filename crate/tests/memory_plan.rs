//! The memory plan: sequential and resident runs give the same image bit for bit, releasing and
//! reloading a network leaves no GPU memory behind, and a budget too small for any mode is a
//! clear error before anything loads. On the demo model (converted, q8) with wgpu (lavapipe),
//! whose memory pools report their usage.
#![cfg(not(target_arch = "wasm32"))] // models come from the file system

mod common;

use std::path::PathBuf;

use burn::tensor::{Device, DeviceKind, Distribution, Tensor, TensorData};
use sdxl_web::error::{Kind, Result};
use sdxl_web::pipeline::folder::{self, Folders};
use sdxl_web::weights::manifest::Manifest;
use common::{Quiet, planned, relative_l2};
use sdxl_web::pipeline::{
    Base, BufferLimit, GenerateParams, Image, Loaded, MemoryBudget, MemoryPlan, Models, Network, NetworkBytes, Noise, Refiner, Residency, RunHost,
    Sdxl, Step, refine_planned,
};

fn demo(model: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web/demo-model").join(model)
}

/// The wgpu device, one test at a time: the memory figures are the device's.
fn wgpu() -> (Device, std::sync::MutexGuard<'static, ()>) {
    static DEVICE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = DEVICE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    (Device::wgpu(DeviceKind::DefaultDevice), guard)
}

/// The bytes the device's allocations take, once its work is done.
fn in_use(device: &Device) -> u64 {
    device.sync().unwrap();
    device.memory_pool_usage().expect("wgpu reports its pools").bytes_in_use
}

const EVERY_BASE_NETWORK: [Network; 3] = [Network::TextEncoders, Network::Unet, Network::Vae];

/// Loads from the folders, noting what loaded.
struct Logged<'a, 'f> {
    folders: &'a mut Folders<'f>,
    loads: Vec<Network>,
    warnings: Vec<String>,
}

impl RunHost for Logged<'_, '_> {
    async fn load(&mut self, network: Network) -> Result<Loaded> {
        self.loads.push(network);
        self.folders.load(network).await
    }

    async fn step(&mut self, step: Step) -> Result<()> {
        self.folders.step(step).await
    }

    fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }
}

fn params() -> GenerateParams {
    let mut params = GenerateParams::new("a lighthouse at dusk");
    (params.steps, params.width, params.height, params.refiner_start) = (4, 64, 64, 0.5);
    params
}

fn plan(residency: Residency) -> MemoryPlan {
    MemoryPlan::choose(&NetworkBytes::default(), &NetworkBytes::default(), Some(residency), None).unwrap()
}

/// The demo base with `loaded_first` loaded, and its refiner (its UNet loaded when resident).
fn demo_models(residency: Residency, loaded_first: &[Network], device: &Device) -> Models {
    let refiner = folder::refiner(&demo("refiner"), residency == Residency::Resident, device).unwrap();
    Models::new(folder::base(&demo("base"), loaded_first, device).unwrap(), Some(refiner))
}

/// A base + refiner run under `plan`, the networks loaded first as `loaded_first`; returns the
/// image and the networks loaded during the run, in order.
fn run(residency: Residency, device: &Device) -> (Image, Vec<Network>, Models) {
    let loaded_first: &[Network] = if residency == Residency::Resident { &EVERY_BASE_NETWORK } else { &[] };
    let mut models = demo_models(residency, loaded_first, device);
    let (base, refiner) = (demo("base"), demo("refiner"));
    let mut folders = Folders { base: &base, refiner: Some(&refiner), device, progress: &mut Quiet };
    let mut host = Logged { folders: &mut folders, loads: Vec::new(), warnings: Vec::new() };
    let noise = Noise::from_seed(42, device);
    let image = planned(&mut models, &plan(residency), true, None, &params(), noise, device, &mut host).unwrap();
    let loads = host.loads;
    (image, loads, models)
}

#[test]
fn sequential_and_resident_runs_give_the_same_image() {
    let (device, _only) = wgpu();
    let (resident, resident_loads, models) = run(Residency::Resident, &device);
    assert_eq!(resident_loads, []);
    assert!(models.networks().iter().all(|&network| models.holds(network)));
    drop(models);

    let (sequential, sequential_loads, models) = run(Residency::Sequential, &device);
    assert_eq!(sequential_loads, [Network::TextEncoders, Network::Unet, Network::RefinerUnet, Network::Vae]);
    // Each phase released the one before: only the VAE is left.
    let held: Vec<Network> = models.networks().into_iter().filter(|&network| models.holds(network)).collect();
    assert_eq!(held, [Network::Vae]);
    assert_eq!(sequential.pixels, resident.pixels);
    assert!(models.peak_reserved() > 0, "wgpu reports its pools");
    // Each phase's memory, noted in order: what it started from and its peak (what `sdxl
    // generate` prints beside the activations estimated).
    let phases: Vec<Network> = models.phases.iter().map(|phase| phase.network).collect();
    assert_eq!(phases, sequential_loads);
    assert!(models.phases.iter().all(|phase| 0 < phase.ready && phase.ready <= phase.peak && phase.peak <= models.peak_reserved()), "{:?}", models.phases);
    assert_eq!(models.phases.iter().map(|phase| phase.peak).max(), Some(models.peak_reserved()));
}

/// Refining an image (img2img) under `residency`: the pixels, and the networks loaded during
/// the run, in order.
fn refine(residency: Residency, image: &Tensor<3>, device: &Device) -> (TensorData, Vec<Network>) {
    let loaded_first: &[Network] = if residency == Residency::Resident { &[Network::TextEncoders, Network::Vae] } else { &[] };
    let mut models = demo_models(residency, loaded_first, device);
    let (base, refiner) = (demo("base"), demo("refiner"));
    let mut folders = Folders { base: &base, refiner: Some(&refiner), device, progress: &mut Quiet };
    let mut host = Logged { folders: &mut folders, loads: Vec::new(), warnings: Vec::new() };
    let noise = Noise::from_seed(7, device);
    let (plan, params) = (plan(residency), params());
    let run = refine_planned(&mut models, &plan, None, image.clone(), 0.6, &params, noise, device, &mut host);
    let pixels = folder::finished(run).unwrap().into_data();
    assert!(!models.holds(Network::Unet), "refining never needs the base UNet");
    (pixels, host.loads)
}

#[test]
fn refining_an_image_loads_one_network_at_a_time_and_gives_the_same_image() {
    let (device, _only) = wgpu();
    let image = Tensor::<3>::random([64, 64, 3], Distribution::Uniform(0.0, 1.0), &device);
    let (resident, resident_loads) = refine(Residency::Resident, &image, &device);
    assert_eq!(resident_loads, []);
    let (sequential, sequential_loads) = refine(Residency::Sequential, &image, &device);
    // The VAE encodes, the text encoders condition, the refiner denoises, the VAE decodes.
    assert_eq!(sequential_loads, [Network::Vae, Network::TextEncoders, Network::RefinerUnet, Network::Vae]);
    assert_eq!(sequential, resident);

    // And the same as the pipeline with every network loaded from the start.
    let base = Base::from_folder(&demo("base"), &device).unwrap();
    let refiner = Refiner::from_folder(&demo("refiner"), &device).unwrap();
    let mut draw = Noise::from_seed(7, &device).steps;
    let sdxl = Sdxl::new(&base, Some(&refiner));
    let latents = sdxl.refine_image(image, 0.6, &params(), &mut *draw, &device, &mut Quiet).unwrap();
    assert_eq!(sdxl.decode(latents).unwrap().pixels, resident);
    assert!(relative_l2(&resident, &run(Residency::Resident, &device).0.pixels) > 1e-2, "refining is not generating");
}

#[test]
fn a_released_network_leaves_no_memory_behind() {
    let (device, _only) = wgpu();
    let in_use = || in_use(&device);
    let before = in_use();
    let base = folder::base(&demo("base"), &EVERY_BASE_NETWORK, &device).unwrap();
    let mut models = Models::new(base, None);
    let loaded = in_use();
    assert!(loaded > before, "{loaded} bytes in use after loading, {before} before");

    let mut levels = Vec::new();
    for network in EVERY_BASE_NETWORK {
        models.release(network);
        assert!(!models.holds(network));
        let released = in_use();
        models.hold(network, folder::network(&demo("base"), network, &device).unwrap()).unwrap();
        assert_eq!(in_use(), loaded, "{network:?} reloaded");
        levels.push(released);
    }
    // Each network took memory of its own, all of which its release gave back.
    assert!(levels.iter().all(|&level| level < loaded), "{levels:?} vs {loaded}");
    for network in EVERY_BASE_NETWORK {
        models.release(network);
    }
    assert_eq!(in_use(), before);
    drop(models);
    assert_eq!(in_use(), before);
}

/// What the plan counts for a network from its manifest (`Network::bytes_in`: quantized weights
/// with f32 block scales, the rest f32) is what holding it takes on the GPU.
#[test]
fn the_plan_counts_what_each_network_takes_on_the_gpu() {
    let (device, _only) = wgpu();
    let in_use = || in_use(&device);
    for (model, networks) in [("base", &EVERY_BASE_NETWORK[..]), ("refiner", &[Network::RefinerUnet][..])] {
        let manifest = Manifest::parse(&std::fs::read(demo(model).join("manifest.json")).unwrap(), model).unwrap();
        for &network in networks {
            let before = in_use();
            let loaded = folder::network(&demo(model), network, &device).unwrap();
            let taken = in_use() - before;
            let counted = network.bytes_in(&manifest);
            println!("{network:?}: {taken} bytes in use, {counted} counted");
            assert!(counted.abs_diff(taken) <= counted / 1000, "{network:?}: {taken} bytes in use, {counted} counted");
            drop(loaded);
        }
    }
}

#[test]
fn a_released_network_is_an_error_not_a_panic() {
    let device = Device::flex();
    let mut models = Models::new(folder::base(&demo("base"), &[Network::TextEncoders], &device).unwrap(), None);
    let noise = Noise::from_seed(1, &device);
    let error = models.sdxl(false, None).generate(&params(), noise, &device, &mut Quiet).err().expect("the UNet was never loaded");
    assert_eq!(error.kind(), Kind::Input);
    assert_eq!(error.to_string(), "the base UNet is not loaded (the memory plan released it)");
    // A bad size is refused before anything loads.
    let mut bad = params();
    bad.width = 65;
    let base = demo("base");
    let mut folders = Folders { base: &base, refiner: None, device: &device, progress: &mut Quiet };
    let mut host = Logged { folders: &mut folders, loads: Vec::new(), warnings: Vec::new() };
    let noise = Noise::from_seed(1, &device);
    let error = planned(&mut models, &plan(Residency::Sequential), false, None, &bad, noise, &device, &mut host);
    assert_eq!(error.err().expect("refused").kind(), Kind::Input);
    assert_eq!(host.loads, []);

    // So is a size whose activations the budget cannot hold: the demo at 64² needs less than
    // 1 MiB besides its weights; at 1024² its UNet's skip connections alone take 9 MiB, and its
    // VAE's whole decode three activations of 64 MiB. Under 1 MiB even the VAE's smallest tiles
    // would not fit (the image they are assembled into takes 12 MiB).
    let one_mib = MemoryBudget { bytes: MIB, text: "the budget is 1 MiB".into() };
    let small = models.sdxl(false, None).working(&params(), false);
    let budgeted = MemoryPlan::choose(&NetworkBytes::default(), &small, Some(Residency::Sequential), Some(&one_mib)).unwrap();
    let mut large = params();
    (large.width, large.height) = (1024, 1024);
    let working = models.sdxl(false, None).working(&large, false);
    assert!(working.unet > 9 * MIB, "{working:?}");
    assert_eq!(working.vae, 192 * MIB);
    let noise = Noise::from_seed(1, &device);
    let error = planned(&mut models, &budgeted, false, None, &large, noise, &device, &mut host).err().expect("over the budget");
    assert_eq!(error.kind(), Kind::Input);
    assert_eq!(
        error.to_string(),
        "input `size`: 1024×1024 needs a 12 MiB buffer to decode the image, even in tiles; the budget is 1 MiB, \
         which leaves 0.3 MiB to each of the VAE's 3 largest activations: choose a smaller size"
    );
    // Under 40 MiB the VAE's tiles fit (three activations of at most 12 MiB); a UNet of 30 MiB
    // with its activations does not, and the refusal names both.
    let forty = MemoryBudget { bytes: 40 * MIB, text: "the budget is 40 MiB".into() };
    let bytes = NetworkBytes { unet: 30 * MIB, ..NetworkBytes::default() };
    let budgeted = MemoryPlan::choose(&bytes, &small, Some(Residency::Sequential), Some(&forty)).unwrap();
    let within = models.sdxl(false, None).within_plan(&budgeted).working(&large, false);
    assert!(within.vae <= 36 * MIB && 30 * MIB + within.unet > 40 * MIB, "{within:?}");
    let noise = Noise::from_seed(1, &device);
    let error = planned(&mut models, &budgeted, false, None, &large, noise, &device, &mut host).err().expect("over the budget");
    assert_eq!(
        error.to_string(),
        format!(
            "input `memory`: this model needs {} MiB of GPU memory even with one network at a time (sequential) \
             (30 MiB of weights, {} MiB of activations); the budget is 40 MiB",
            (30 * MIB + within.unet).div_ceil(MIB),
            within.unet.div_ceil(MIB)
        )
    );
    assert_eq!(host.loads, []);
}

const MIB: u64 = 1 << 20;

/// SDXL's networks at q8 (the converted full-size model's shards).
fn sdxl_q8() -> NetworkBytes {
    NetworkBytes { text_encoders: 1090 * MIB, unet: 3010 * MIB, refiner_unet: Some(2300 * MIB), vae: 160 * MIB }
}

fn budget(mib: u64) -> MemoryBudget {
    MemoryBudget { bytes: mib * MIB, text: format!("the budget is {mib} MiB") }
}

/// Activations per network: the UNets' at some size, a VAE decode of `vae` MiB.
fn activations(unet: u64, vae: u64) -> NetworkBytes {
    NetworkBytes { text_encoders: 0, unet: unet * MIB, refiner_unet: Some(unet * MIB), vae: vae * MIB }
}

#[test]
fn the_plan_fits_the_budget() {
    let bytes = sdxl_q8();
    assert_eq!(bytes.peak(Residency::Resident), (1090 + 3010 + 2300 + 160) * MIB);
    assert_eq!(bytes.peak(Residency::Sequential), 3010 * MIB);
    let working = activations(300, 900);

    // Unrequested: resident where everything fits, else sequential. Resident holds every
    // network in every phase (the VAE's activations then peak); sequential one network and its
    // activations (the base UNet's phase: 3010 + 300, more than the VAE's 160 + 900).
    let roomy = MemoryPlan::choose(&bytes, &working, None, Some(&budget(8000))).unwrap();
    assert_eq!((roomy.residency, roomy.peak, roomy.peak_weights), (Residency::Resident, (6560 + 900) * MIB, 6560 * MIB));
    let tight = MemoryPlan::choose(&bytes, &working, None, Some(&budget(3500))).unwrap();
    assert_eq!((tight.residency, tight.peak, tight.peak_weights), (Residency::Sequential, 3310 * MIB, 3010 * MIB));
    // No budget: resident unless asked.
    assert_eq!(MemoryPlan::choose(&bytes, &working, None, None).unwrap().residency, Residency::Resident);
    let asked = MemoryPlan::choose(&bytes, &working, Some(Residency::Sequential), Some(&budget(8000))).unwrap();
    assert_eq!(asked.residency, Residency::Sequential);

    // Too small for any mode, or for the mode asked for: a clear error naming the phase that
    // needs the most.
    let error = MemoryPlan::choose(&bytes, &working, None, Some(&budget(3000))).err().expect("too small");
    assert_eq!(error.kind(), Kind::Input);
    assert_eq!(
        error.to_string(),
        "input `memory`: this model needs 3310 MiB of GPU memory even with one network at a time (sequential) \
         (3010 MiB of weights, 300 MiB of activations); the budget is 3000 MiB"
    );
    let error = MemoryPlan::choose(&bytes, &working, Some(Residency::Resident), Some(&budget(3500))).err().expect("too small");
    assert!(error.to_string().contains("needs 7460 MiB of GPU memory with every network resident (6560 MiB of weights, 900 MiB of"), "{error}");
    let error = MemoryPlan::choose(&bytes, &NetworkBytes::default(), None, Some(&budget(3000))).err().expect("too small");
    assert!(error.to_string().contains("needs 3010 MiB of GPU memory even with one network at a time (sequential) (3010 MiB of weights); the"), "{error}");
    // A VAE decode larger than the UNet's activations makes its phase the peak.
    let error = MemoryPlan::choose(&bytes, &activations(300, 3400), None, Some(&budget(3500))).err().expect("too small");
    assert!(error.to_string().contains("needs 3560 MiB of GPU memory even with one network at a time (sequential) (160 MiB of weights, 3400 MiB of activations)"), "{error}");

    // A run at another size is checked against the same budget, in the same mode.
    assert_eq!(tight.for_run(&working).unwrap(), tight);
    assert_eq!(tight.for_run(&activations(400, 900)).unwrap().peak, 3410 * MIB);
    let error = tight.for_run(&activations(600, 900)).err().expect("over the budget");
    assert!(error.to_string().contains("needs 3610 MiB of GPU memory even with one network at a time (sequential) (3010 MiB of weights, 600 MiB of activations); the budget is 3500 MiB"), "{error}");

    // What a phase keeps.
    let all = Network::phases(true);
    assert_eq!(roomy.keep(Network::Unet, &all), all);
    assert_eq!(tight.keep(Network::RefinerUnet, &all), [Network::RefinerUnet]);
}


/// A budget too small for a whole decode tiles the VAE: the run decodes in the tiles a buffer
/// limit of the budget's share would pick (what the budget leaves the VAE's phase beside its
/// weights, over the three activations a decode holds), says so, and its VAE phase needs less.
/// A budget that leaves the UNet's phase less than a pass over both guidance branches needs:
/// each branch gets a pass (half the activations), said in a warning, with the image of the
/// run that takes both in one pass.
#[test]
fn a_budget_too_small_for_both_guidance_branches_gives_each_a_pass() {
    let (device, _only) = wgpu();
    let bytes = folder::network_bytes(&demo("base"), None).unwrap().expect("the demo is converted");
    let mut params = params();
    (params.width, params.height, params.steps) = (256, 256, 2);
    let mut models = Models::new(folder::base(&demo("base"), &[], &device).unwrap(), None);
    let together = models.sdxl(false, None).working(&params, false);
    let budget = MemoryBudget { bytes: bytes.unet + together.unet - 1, text: "the test's budget".into() };
    let plan = MemoryPlan::choose(&bytes, &NetworkBytes::default(), Some(Residency::Sequential), Some(&budget)).unwrap();
    assert_eq!(plan.room(Network::Unet), Some(together.unet - 1));
    let apart = models.sdxl(false, None).within_plan(&plan).working(&params, false);
    assert_eq!(apart.unet * 2, together.unet, "one latent a pass: half the activations");

    let base = demo("base");
    let mut folders = Folders { base: &base, refiner: None, device: &device, progress: &mut Quiet };
    let mut host = Logged { folders: &mut folders, loads: Vec::new(), warnings: Vec::new() };
    let image = planned(&mut models, &plan, false, None, &params, Noise::from_seed(3, &device), &device, &mut host).unwrap();
    let expected = format!(
        "256×256 denoises the prompt and the negative prompt in a UNet pass each (twice the passes): in one pass they need {} MiB \
         of activations; the test's budget, which leaves {:.1} MiB to the base UNet's activations",
        together.unet.div_ceil(MIB),
        (together.unet - 1) as f64 / MIB as f64
    );
    assert!(host.warnings.contains(&expected), "{:?}", host.warnings);

    // Every network loaded, both branches in one pass, decoded in the tiles the budget chose.
    let limit = plan.vae_limit().unwrap();
    let base = Base::from_folder(&demo("base"), &device).unwrap();
    let latents = Sdxl::new(&base, None).denoise(&params, Noise::from_seed(3, &device), &device, &mut Quiet).unwrap();
    let one_pass = Sdxl::new(&base, None).with_buffer_limit(BufferLimit { bytes: limit.bytes, text: String::new() }).decode(latents).unwrap();
    let error = relative_l2(&image.pixels, &one_pass.pixels);
    assert!(error < 1e-4, "a pass each vs one pass: {error:e}");
}

#[test]
fn a_budget_too_small_for_a_whole_decode_tiles_the_vae() {
    let (device, _only) = wgpu();
    let bytes = folder::network_bytes(&demo("base"), None).unwrap().expect("the demo is converted");
    assert!(bytes.unet > 0 && bytes.vae > 0 && bytes.text_encoders > 0, "{bytes:?}");
    let mut params = params();
    (params.width, params.height, params.steps) = (256, 256, 2);
    let mut models = Models::new(folder::base(&demo("base"), &[], &device).unwrap(), None);
    let whole = models.sdxl(false, None).working(&params, false);
    // At 256² the VAE's phase needs the most; a budget that holds every other phase exactly
    // cannot hold a whole decode.
    let others = (bytes.unet + whole.unet).max(bytes.text_encoders);
    assert!(others < bytes.vae + whole.vae, "{bytes:?} {whole:?}");
    let budget = MemoryBudget { bytes: others, text: "the test's budget".into() };
    assert!(MemoryPlan::choose(&bytes, &whole, Some(Residency::Sequential), Some(&budget)).is_err(), "whole, it does not fit");
    let plan = MemoryPlan::choose(&bytes, &NetworkBytes::default(), Some(Residency::Sequential), Some(&budget)).unwrap();
    let limit = plan.vae_limit().expect("a budget limits the VAE");
    assert_eq!(limit.bytes, (others - bytes.vae) / 3);
    assert!(limit.text.starts_with("the test's budget, which leaves "), "{}", limit.text);
    // Without a budget no limit; resident holds every network in the VAE's phase.
    assert!(self::plan(Residency::Sequential).vae_limit().is_none());
    let resident = MemoryPlan::choose(&bytes, &NetworkBytes::default(), Some(Residency::Resident), Some(&MemoryBudget { bytes: 1 << 40, text: String::new() })).unwrap();
    assert_eq!(resident.vae_limit().unwrap().bytes, ((1 << 40) - bytes.peak(Residency::Resident)) / 3);

    // Within the plan the VAE's activations fit what the budget leaves it.
    let within = models.sdxl(false, None).within_plan(&plan).working(&params, false);
    assert!(bytes.vae + within.vae <= others, "{within:?}");
    assert_eq!(within.unet, whole.unet);
    let tiling = models.base.vae_config.decode_tiling(256, 256, limit.bytes).unwrap().expect("tiles");

    let base = demo("base");
    let mut folders = Folders { base: &base, refiner: None, device: &device, progress: &mut Quiet };
    let mut host = Logged { folders: &mut folders, loads: Vec::new(), warnings: Vec::new() };
    let image = planned(&mut models, &plan, false, None, &params, Noise::from_seed(3, &device), &device, &mut host).unwrap();
    assert_eq!(host.loads, [Network::TextEncoders, Network::Unet, Network::Vae]);
    let latents = 256 / models.base.vae_config.scale_factor();
    let tiles = tiling.decode_tile_count(latents, latents);
    assert!(
        host.warnings.iter().any(|w| w.starts_with(&format!("256×256 is decoded in {tiles} overlapping tiles of {} px", tiling.tile_sample_min_size))
            && w.ends_with(&limit.text)),
        "{:?}",
        host.warnings
    );
    let tiled_peak = models.phases.last().map(|phase| phase.peak - phase.ready);

    // The same latents decoded in those tiles by the pipeline with every network loaded.
    let base = Base::from_folder(&demo("base"), &device).unwrap();
    let sdxl = Sdxl::new(&base, None);
    let latents = sdxl.denoise(&params, Noise::from_seed(3, &device), &device, &mut Quiet).unwrap();
    let tiled = Sdxl::new(&base, None).with_buffer_limit(BufferLimit { bytes: limit.bytes, text: String::new() }).decode(latents.clone()).unwrap();
    assert_eq!(image.pixels, tiled.pixels);
    assert_ne!(image.pixels, sdxl.decode(latents).unwrap().pixels, "tiles see only their part of the latents");

    // Without the budget, the same run decodes whole; its VAE phase grows burn's pools more.
    let mut models = Models::new(folder::base(&demo("base"), &[], &device).unwrap(), None);
    let mut host = Logged { folders: &mut folders, loads: Vec::new(), warnings: Vec::new() };
    planned(&mut models, &self::plan(Residency::Sequential), false, None, &params, Noise::from_seed(3, &device), &device, &mut host).unwrap();
    assert!(host.warnings.iter().all(|w| !w.contains("tiles")), "{:?}", host.warnings);
    let whole_peak = models.phases.last().map(|phase| phase.peak - phase.ready);
    println!("VAE phase growth at 256²: {tiled_peak:?} bytes in tiles, {whole_peak:?} whole; estimated {} and {}", within.vae, whole.vae);
    // Measured here: 2.2 MiB in tiles against 15.0 MiB whole (estimated 2.25 and 12).
    let (Some(tiled_peak), Some(whole_peak)) = (tiled_peak, whole_peak) else { panic!("wgpu reports its pools") };
    assert!(tiled_peak < whole_peak / 2, "{tiled_peak} in tiles, {whole_peak} whole");
}

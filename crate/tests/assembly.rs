//! The browser's way of loading a model (`pipeline::assembly`), run natively on the bundled demo
//! model: files handed over one at a time give the same pipeline as reading the folder, and
//! every bad file is a clear error that leaves the assembly usable.
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::{Quiet, planned};
use sdxl_web::error::{Error, Result};
use sdxl_web::pipeline::assembly::{Assembly, CachedModel, Role};
use sdxl_web::pipeline::folder::Folders;
use sdxl_web::pipeline::generation::Generation;
use sdxl_web::pipeline::{
    Base, GenerateParams, Loaded, MemoryPlan, Models, Network, NetworkBytes, Noise, Refiner, Residency, RunHost, Sdxl, Step,
};

fn demo(role: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web/demo-model").join(role)
}

fn open(dir: &Path, role: Role) -> Assembly {
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    Assembly::new(&manifest, "https://example.org/model", role, Residency::Resident, &Device::flex()).unwrap()
}

fn add_all(assembly: &mut Assembly, dir: &Path) {
    for file in assembly.needed().to_vec() {
        assembly.add(&file.path, &std::fs::read(dir.join(&file.path)).unwrap()).unwrap();
    }
}

fn params() -> GenerateParams {
    let mut params = GenerateParams::new("a lighthouse at dusk");
    (params.steps, params.width, params.height) = (4, 64, 64);
    params
}

#[test]
fn files_handed_over_one_by_one_give_the_folders_pipeline() {
    let device = Device::flex();
    let mut base = open(&demo("base"), Role::Base);
    let mut refiner = open(&demo("refiner"), Role::Refiner);
    // The base needs its tokenizers, scheduler and four networks; the refiner only its UNet.
    let components = |a: &Assembly| a.needed().iter().filter_map(|f| f.component.clone()).collect::<Vec<_>>();
    assert_eq!(components(&base), ["text_encoder", "text_encoder_2", "unet", "vae"]);
    assert_eq!(components(&refiner), ["unet"]);
    assert_eq!(base.needed().iter().filter(|f| f.path.starts_with("tokenizer")).count(), 8);
    assert_eq!(base.total_bytes(), base.needed().iter().map(|f| f.size).sum::<u64>());
    add_all(&mut base, &demo("base"));
    add_all(&mut refiner, &demo("refiner"));
    let (base, refiner) = (base.into_base().unwrap(), refiner.into_refiner().unwrap());

    let folder_base = Base::from_folder(&demo("base"), &device).unwrap();
    let folder_refiner = Refiner::from_folder(&demo("refiner"), &device).unwrap();
    let run = |base: &Base, refiner: &Refiner| {
        let params = params();
        let noise = Noise::from_seed(42, &device);
        Sdxl::new(&base, Some(refiner)).denoise(&params, noise, &device, &mut Quiet).unwrap().into_data()
    };
    let ours = run(&base, &refiner).try_to_vec::<f32>().unwrap();
    assert_eq!(ours, run(&folder_base, &folder_refiner).try_to_vec::<f32>().unwrap());
    assert!(ours.iter().any(|v| *v != 0.0));
}

#[test]
fn a_corrupt_file_is_an_integrity_error_and_the_good_one_still_loads() {
    let dir = demo("refiner");
    let mut refiner = open(&dir, Role::Refiner);
    let shard = refiner.needed()[0].path.clone();
    let good = std::fs::read(dir.join(&shard)).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    for bad in [flipped, good[..good.len() - 1].to_vec()] {
        match refiner.add(&shard, &bad) {
            Err(error @ Error::Integrity { .. }) => assert!(error.to_string().contains(&shard), "{error}"),
            other => panic!("expected an integrity error, got {other:?}"),
        }
    }
    refiner.add(&shard, &good).unwrap();
    refiner.into_refiner().unwrap();

    let mut base = open(&demo("base"), Role::Base);
    match base.add("tokenizer/vocab.json", b"{}") {
        Err(Error::Integrity { location, problem }) => {
            assert!(location.ends_with("tokenizer/vocab.json") && problem.starts_with("2 bytes"), "{location}: {problem}")
        }
        other => panic!("expected an integrity error, got {other:?}"),
    }
}

#[test]
fn wrong_roles_unknown_files_and_missing_files_are_clear_errors() {
    let manifest = std::fs::read(demo("refiner").join("manifest.json")).unwrap();
    let error = Assembly::new(&manifest, "https://example.org/refiner", Role::Base, Residency::Resident, &Device::flex()).err().unwrap();
    assert!(error.to_string().contains("a base model must be a StableDiffusionXLPipeline"), "{error}");
    let error = Assembly::new(b"{\"format\": 1}", "https://example.org/x", Role::Base, Residency::Resident, &Device::flex()).err().unwrap();
    assert!(error.to_string().contains("https://example.org/x/manifest.json"), "{error}");

    let mut base = open(&demo("base"), Role::Base);
    let error = base.add("unet-99999.bin", b"").unwrap_err().to_string();
    assert!(error.contains("lists no needed file unet-99999.bin"), "{error}");
    base.add("scheduler/scheduler_config.json", &std::fs::read(demo("base").join("scheduler/scheduler_config.json")).unwrap())
        .unwrap();
    assert!(!base.is_complete());
    let error = base.into_base().err().unwrap().to_string();
    assert!(error.contains("file(s) not loaded yet"), "{error}");
}

/// The browser's host natively: each network loads again from its model's files, as the
/// worker hands them over from Cache Storage.
struct CacheHost {
    cached: Vec<(CachedModel, PathBuf)>,
    loads: Vec<Network>,
}

impl RunHost for CacheHost {
    async fn load(&mut self, network: Network) -> Result<Loaded> {
        self.loads.push(network);
        let role = if network == Network::RefinerUnet { Role::Refiner } else { Role::Base };
        let (cached, dir) = self.cached.iter().find(|(cached, _)| cached.role() == role).unwrap();
        let mut assembly = cached.assembly(network, &Device::flex())?;
        assert!(assembly.needed().iter().all(|file| file.component.is_some()), "only shards load again");
        add_all(&mut assembly, dir);
        assembly.into_network(network)
    }

    async fn step(&mut self, step: Step) -> Result<()> {
        Generation::report(step, &mut Quiet)
    }

    fn warn(&mut self, _: String) {}
}

#[test]
fn a_sequential_assembly_checks_every_file_and_loads_each_network_for_its_phase() {
    let device = Device::flex();
    let (base_dir, refiner_dir) = (demo("base"), demo("refiner"));
    let sequential = |dir: &Path, role| {
        let mut assembly = open(dir, role);
        assembly.set_residency(Residency::Sequential).unwrap();
        // Every file is still needed (and checked): the download caches them all.
        assert_eq!(assembly.needed(), open(dir, role).needed());
        add_all(&mut assembly, dir);
        // Choosing the plan after files came in would leave them unloaded: refused.
        assert!(assembly.set_residency(Residency::Resident).is_err());
        assembly
    };
    let (base, refiner) = (sequential(&base_dir, Role::Base), sequential(&refiner_dir, Role::Refiner));

    let cached = vec![(base.cached(), base_dir.clone()), (refiner.cached(), refiner_dir.clone())];
    let sizes: Vec<_> = base.network_bytes().into_iter().chain(refiner.network_bytes()).collect();
    let bytes = NetworkBytes::from_sizes(sizes);
    assert!(bytes.text_encoders > 0 && bytes.unet > 0 && bytes.vae > 0 && bytes.refiner_unet.is_some_and(|b| b > 0));
    let (base, refiner) = (base.into_base().unwrap(), refiner.into_refiner().unwrap());
    assert!(base.text_encoders().is_err() && base.unet().is_err() && base.vae().is_err() && refiner.unet().is_err());

    let plan = MemoryPlan::choose(&bytes, &NetworkBytes::default(), Some(Residency::Sequential), None).unwrap();
    assert_eq!(plan.peak_weights, bytes.unet.max(bytes.text_encoders).max(bytes.vae).max(bytes.refiner_unet.unwrap()));
    let mut models = Models::new(base, Some(refiner));
    let mut host = CacheHost { cached, loads: Vec::new() };
    let mut params = params();
    params.refiner_start = 0.5;
    let noise = Noise::from_seed(42, &device);
    let image = planned(&mut models, &plan, true, None, &params, noise, &device, &mut host).unwrap();
    assert_eq!(host.loads, [Network::TextEncoders, Network::Unet, Network::RefinerUnet, Network::Vae]);

    // The same image as the folders' pipeline with everything resident.
    let mut resident = Models::new(Base::from_folder(&base_dir, &device).unwrap(), Some(Refiner::from_folder(&refiner_dir, &device).unwrap()));
    let plan = MemoryPlan::choose(&bytes, &NetworkBytes::default(), Some(Residency::Resident), None).unwrap();
    let mut folders = Folders { base: &base_dir, refiner: Some(&refiner_dir), device: &device, progress: &mut Quiet };
    let noise = Noise::from_seed(42, &device);
    let expected = planned(&mut resident, &plan, true, None, &params, noise, &device, &mut folders).unwrap();
    assert_eq!(image.pixels, expected.pixels);
}


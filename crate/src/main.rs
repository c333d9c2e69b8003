//! `sdxl`: the native command line.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::path::PathBuf;
    use std::process::ExitCode;

    use clap::{Parser, Subcommand};
    use sdxl_web::network_run::{self, Component};
    use sdxl_web::device::DeviceChoice;
    use std::ops::ControlFlow;

    use burn::cubecl::dry_run::DryRun;
    use burn::tensor::Tensor;
    use sdxl_web::error::{Error, Result};
    use sdxl_web::pipeline::png::{decode_png, encode_png, parameters_text};
    use sdxl_web::pipeline::preview::Preview;
    use sdxl_web::pipeline::{
        BufferLimit, GenerateParams, Image, MemoryBudget, MemoryPlan, Models, Network, NetworkBytes, Noise, Progress, Residency, Stage, folder,
        generate_planned, refine_planned,
    };
    use sdxl_web::pipeline::folder::Folders;
    use sdxl_web::weights::safetensors::{self, SafetensorsSource};

    #[derive(Parser)]
    #[command(name = "sdxl", about = "Stable Diffusion XL in burn")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Run one network of a model on tensors from a safetensors file.
        Run {
            /// A diffusers folder (base or refiner).
            #[arg(long)]
            model: PathBuf,
            #[arg(long, value_enum)]
            component: Component,
            /// Input tensors, named as diffusers' arguments (`input_ids`, `sample`, …).
            #[arg(long = "in")]
            input: PathBuf,
            /// Where the outputs are written (f32 safetensors).
            #[arg(long = "out")]
            output: PathBuf,
            #[arg(long, value_enum, default_value = "cpu")]
            device: DeviceChoice,
        },
        /// Text to image with the base model, optionally handing over to the refiner.
        Generate(GenerateArgs),
    }

    #[derive(clap::Args)]
    struct GenerateArgs {
        /// The base model: a diffusers SDXL folder or one converted by sdxl-weights.
        #[arg(long)]
        model: PathBuf,
        /// The refiner, continuing the base's schedule from `--refiner-start`.
        #[arg(long)]
        refiner: Option<PathBuf>,
        #[command(flatten)]
        params: GenerateParams,
        /// The seed of the initial noise (random when neither this nor `--noise` is given).
        #[arg(long, conflicts_with = "noise")]
        seed: Option<u64>,
        /// A safetensors file whose tensor `noise` [1, 4, H/8, W/8] is the initial noise
        /// (diffusers' `latents=` argument).
        #[arg(long)]
        noise: Option<PathBuf>,
        /// Refine this finished image (PNG) with the refiner instead of generating one
        /// (img2img; the size comes from the image).
        #[arg(long, requires = "refiner")]
        image: Option<PathBuf>,
        /// With `--image`: how much of the schedule the refiner runs, in (0, 1].
        #[arg(long, default_value_t = 0.3)]
        strength: f64,
        #[arg(long, default_value = "image.png")]
        out: PathBuf,
        /// Also write the image as f32 [H, W, 3] in 0..1 (tensor `image`).
        #[arg(long)]
        out_tensor: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceChoice,
        /// How the networks stay on the device: all loaded at once, or one at a time (the text
        /// encoders, the UNet, the refiner's UNet, the VAE; with `--image`: the VAE, the text
        /// encoders, the refiner's UNet, the VAE), each loaded from its folder for its phase and
        /// released after it: a lower peak for the time of the loads.
        #[arg(long, value_enum, default_value = "resident")]
        memory: Residency,
        /// Lowers the largest buffer a run may use below the device's (never raises it):
        /// decodes that would need more tile, larger sizes are refused. For trying the tiling
        /// on a small model; the page takes `?bufferLimitMiB=` alike.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
        buffer_limit_mib: Option<u64>,
        /// The GPU memory the run may use, MiB (converted models only: their shard sizes are
        /// what the networks take on the device): a run whose phase needs more is refused
        /// before it loads anything, and the VAE decodes in tiles where a whole decode would
        /// not fit. The page's memory budget alike.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
        budget_mib: Option<u64>,
        /// Plans the run's GPU memory without computing it (`--device wgpu`): every kernel is
        /// compiled and dropped instead of run (burn's dry run) while every buffer is allocated
        /// as in the run itself, so each phase's memory is printed in minutes where the run
        /// would take hours on a slow device. The values are meaningless: no image is written.
        #[arg(long)]
        dry_run: bool,
    }

    /// A one-line progress bar on the terminal.
    struct TerminalProgress;

    impl Progress for TerminalProgress {
        fn step(&mut self, stage: Stage, index: usize, total: usize, _: Option<Preview>) -> ControlFlow<()> {
            const WIDTH: usize = 30;
            let filled = WIDTH * index / total.max(1);
            eprint!("\r{:<7} [{}{}] {index}/{total}", format!("{stage:?}"), "=".repeat(filled), " ".repeat(WIDTH - filled));
            if index == total {
                eprintln!();
            }
            ControlFlow::Continue(())
        }

        fn warn(&mut self, message: String) {
            eprintln!("warning: {message}");
        }
    }

    fn generate(args: GenerateArgs) -> Result<()> {
        if args.dry_run && args.device != DeviceChoice::Wgpu {
            return Err(Error::Input { name: "dry-run".into(), message: "needs --device wgpu: it measures burn's GPU memory pools".into() });
        }
        // A finished image is never lost to an output path that cannot be written.
        for path in std::iter::once(&args.out).chain(&args.out_tensor).filter(|_| !args.dry_run) {
            check_writable(path)?;
        }
        let (device, buffer_limit) = args.device.open()?;
        // Kernels compiled and dropped from here on, until the guard drops with this function.
        let _dry_run = args.dry_run.then(DryRun::new);
        let mut params = args.params;
        let input = args.image.as_ref().map(|path| -> Result<_> {
            let input = decode_png(&std::fs::read(path).map_err(|e| Error::io(path, e))?)?;
            params.width = input.width;
            params.height = input.height;
            Ok(Tensor::<3>::from_data(input.pixels, &device))
        });
        let input = input.transpose()?;
        // A size that needs a larger buffer than the device takes (the GPU's limits; host memory
        // on the CPU backend) is refused up front rather than failing mid-run; the VAE decodes
        // in tiles where a whole decode would need one.
        let buffer_limit = match args.buffer_limit_mib {
            Some(mib) if buffer_limit.as_ref().is_none_or(|(bytes, _)| mib << 20 < *bytes) => {
                Some((mib << 20, format!("--buffer-limit-mib allows {mib} MiB")))
            }
            _ => buffer_limit,
        };
        let buffer_limit = buffer_limit.map(|(bytes, text)| BufferLimit { bytes, text });
        let plan = match args.budget_mib {
            None => MemoryPlan::choose(&NetworkBytes::default(), &NetworkBytes::default(), Some(args.memory), None)?,
            Some(mib) => {
                let budget = MemoryBudget { bytes: mib << 20, text: format!("--budget-mib allows {mib} MiB") };
                let bytes = folder::network_bytes(&args.model, args.refiner.as_deref())?.ok_or_else(|| Error::Input {
                    name: "budget-mib".into(),
                    message: "needs converted models (sdxl-weights): a diffusers folder's size on the device is known only once loaded".into(),
                })?;
                MemoryPlan::choose(&bytes, &NetworkBytes::default(), Some(args.memory), Some(&budget))?
            }
        };
        // Resident: what the run needs, loaded up front (refining an image needs no base UNet).
        let loaded_first = match (args.memory, &input) {
            (Residency::Resident, None) => vec![Network::TextEncoders, Network::Unet, Network::Vae],
            (Residency::Resident, Some(_)) => vec![Network::TextEncoders, Network::Vae],
            (Residency::Sequential, _) => vec![],
        };
        let base = folder::base(&args.model, &loaded_first, &device)?;
        let refiner = args.refiner.as_deref();
        let refiner = refiner.map(|dir| folder::refiner(dir, args.memory == Residency::Resident, &device)).transpose()?;
        let mut models = Models::new(base, refiner);
        let (noise, seed) = match (args.noise, args.seed) {
            (Some(path), _) => {
                let data = SafetensorsSource::open(&[path])?.read_input("noise")?.convert::<f32>();
                if data.shape().len() != 4 {
                    return Err(Error::Input { name: "noise".into(), message: format!("shape {:?}, expected 4 dimensions", data.shape()) });
                }
                (Noise::given(Tensor::from_data(data, &device), &device), None)
            }
            (None, seed) => {
                let seed = seed.unwrap_or_else(random_seed);
                eprintln!("seed: {seed}");
                (Noise::from_seed(seed, &device), Some(seed))
            }
        };
        let refined = models.refiner.is_some();
        let mut host = Folders { base: &args.model, refiner: args.refiner.as_deref(), device: &device, progress: &mut TerminalProgress };
        let working = models.sdxl(refined, buffer_limit.clone()).within_plan(&plan).working(&params, input.is_some());
        let pixels = match input {
            Some(input) => folder::finished(refine_planned(
                &mut models, &plan, buffer_limit, input, args.strength, &params, noise, &device, &mut host,
            )),
            None => folder::finished(generate_planned(&mut models, &plan, refined, buffer_limit, &params, noise, &device, &mut host)),
        };
        let image = Image::new(pixels?.into_data());
        if models.peak_reserved() > 0 {
            eprintln!("GPU memory peak ({:?}): {} MiB reserved", args.memory, models.peak_reserved() >> 20);
            for phase in &models.phases {
                eprintln!(
                    "  {}: {} MiB reserved when ready, {} MiB at its end; activations estimated at {} MiB",
                    phase.network.describe(),
                    phase.ready >> 20,
                    phase.peak >> 20,
                    working.of(phase.network).div_ceil(1 << 20)
                );
            }
        }
        if models.reloads.count > 0 {
            eprintln!("reloaded {} networks in {:.1} s", models.reloads.count, models.reloads.seconds);
        }
        if args.dry_run {
            eprintln!("dry run: kernels compiled, not run; no image written");
            return Ok(());
        }
        let parameters = parameters_text(&params, seed, refined);
        let png = encode_png(&image, &parameters)?;
        std::fs::write(&args.out, png).map_err(|e| Error::io(&args.out, e))?;
        eprintln!("wrote {}", args.out.display());
        if let Some(path) = args.out_tensor {
            safetensors::write(&path, &[("image", &image.pixels)])?;
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    }

    /// Fails unless `path` can be written (created or replaced), leaving nothing behind.
    fn check_writable(path: &std::path::Path) -> Result<()> {
        let existed = path.exists();
        std::fs::OpenOptions::new().append(true).create(true).open(path).map_err(|e| Error::io(path, e))?;
        if !existed {
            std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    fn random_seed() -> u64 {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
    }

    pub fn main() -> ExitCode {
        match run(Cli::parse()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        }
    }

    fn run(cli: Cli) -> Result<()> {
        match cli.command {
            Command::Run { model, component, input, output, device } => {
                let inputs = SafetensorsSource::open(&[input])?;
                let outputs = network_run::run(&model, component, &inputs, &device.device())?;
                let named: Vec<(&str, &_)> = outputs.iter().map(|(name, data)| (name.as_str(), data)).collect();
                safetensors::write(&output, &named)
            }
            Command::Generate(args) => generate(args),
        }
    }
}

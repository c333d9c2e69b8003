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
    use sdxl_web::component::{self, Component};
    use sdxl_web::device::DeviceChoice;
    use std::ops::ControlFlow;

    use burn::tensor::Tensor;
    use sdxl_web::error::{Error, Result};
    use sdxl_web::pipeline::conditioning::LongPrompt;
    use sdxl_web::pipeline::png::{decode_png, encode_png, parameters_text};
    use sdxl_web::pipeline::preview::Preview;
    use sdxl_web::pipeline::{Base, GenerateParams, Noise, Progress, Refiner, Stage};
    use sdxl_web::schedulers::SchedulerKind;
    use sdxl_web::weights::TensorSource;
    use sdxl_web::weights::safetensors_file::{self, SafetensorsSource};

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
        /// The base model: a diffusers SDXL folder.
        #[arg(long)]
        model: PathBuf,
        /// The refiner, continuing the base's schedule from `--refiner-start`.
        #[arg(long)]
        refiner: Option<PathBuf>,
        #[arg(long)]
        prompt: String,
        /// Without one, the base's negative branch is zero embeddings (diffusers' default).
        #[arg(long)]
        negative_prompt: Option<String>,
        #[arg(long, default_value_t = 40)]
        steps: usize,
        #[arg(long, default_value_t = 5.0)]
        guidance: f64,
        #[arg(long, default_value_t = 1024)]
        width: usize,
        #[arg(long, default_value_t = 1024)]
        height: usize,
        /// The seed of the initial noise (random when neither this nor `--noise` is given).
        #[arg(long, conflicts_with = "noise")]
        seed: Option<u64>,
        /// A safetensors file whose tensor `noise` [1, 4, H/8, W/8] is the initial noise
        /// (diffusers' `latents=` argument).
        #[arg(long)]
        noise: Option<PathBuf>,
        #[arg(long, default_value = "euler")]
        scheduler: SchedulerKind,
        #[arg(long, default_value_t = 0.8)]
        refiner_start: f64,
        /// Past 77 tokens: `truncate` (diffusers, with a warning) or `chunk` (A1111: 75-token
        /// windows concatenated).
        #[arg(long, default_value = "truncate")]
        long_prompt: LongPrompt,
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
        let device = args.device.device();
        let mut params = GenerateParams::new(args.prompt);
        params.negative_prompt = args.negative_prompt;
        params.steps = args.steps;
        params.guidance = args.guidance;
        params.width = args.width;
        params.height = args.height;
        params.scheduler = args.scheduler;
        params.refiner_start = args.refiner_start;
        params.long_prompt = args.long_prompt;
        let input = args.image.as_ref().map(|path| -> Result<_> {
            let input = decode_png(&std::fs::read(path).map_err(|e| Error::io(path, e))?)?;
            params.width = input.width;
            params.height = input.height;
            Ok(Tensor::<3>::from_data(input.pixels, &device))
        });
        let input = input.transpose()?;
        let base = Base::from_folder(&args.model, &device)?;
        params.validate(base.vae_config.scale_factor())?;
        // On the CPU backend buffers are host memory: a size that cannot fit is refused up front
        // rather than aborting on a failed allocation.
        if let (DeviceChoice::Cpu, Some(available)) = (args.device, sdxl_web::memory::available()) {
            params.check_decode_fits(&base.vae_config, available, &format!("only {} MiB of memory are available", available >> 20))?;
        }
        let refiner = args.refiner.as_deref().map(|dir| Refiner::from_folder(dir, &device)).transpose()?;
        let (noise, seed) = match (args.noise, args.seed) {
            (Some(path), _) => {
                let source = SafetensorsSource::open(&[path])?;
                let data = source.read("noise")?.ok_or_else(|| Error::Input {
                    name: "noise".into(),
                    message: "the file has no tensor `noise`".into(),
                })?;
                if data.shape().len() != 4 {
                    return Err(Error::Input { name: "noise".into(), message: format!("shape {:?}, expected 4 dimensions", data.shape()) });
                }
                (Noise::given(Tensor::from_data(data, &device), &device), None)
            }
            (None, seed) => {
                let seed = seed.unwrap_or_else(random_seed);
                eprintln!("seed: {seed}");
                (Noise::from_seed(seed, base.latent_shape(&params), &device), Some(seed))
            }
        };
        let image = match (input, &refiner) {
            (Some(input), Some(refiner)) => {
                let mut draw = noise.steps;
                let latents = base.refine_image(refiner, input, args.strength, &params, &mut *draw, &device, &mut TerminalProgress)?;
                base.decode(latents)
            }
            _ => base.generate(refiner.as_ref(), &params, noise, &device, &mut TerminalProgress)?,
        };
        let parameters = parameters_text(&params, seed, refiner.is_some());
        let png = encode_png(&image, &parameters)?;
        std::fs::write(&args.out, png).map_err(|e| Error::io(&args.out, e))?;
        eprintln!("wrote {}", args.out.display());
        if let Some(path) = args.out_tensor {
            safetensors_file::write(&path, &[("image", &image.pixels)])?;
            eprintln!("wrote {}", path.display());
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
                let outputs = component::run(&model, component, &inputs, &device.device())?;
                let named: Vec<(&str, &_)> = outputs.iter().map(|(name, data)| (name.as_str(), data)).collect();
                safetensors_file::write(&output, &named)
            }
            Command::Generate(args) => generate(args),
        }
    }
}

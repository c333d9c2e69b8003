//! `sdxl-weights`: diffusers checkpoints → sharded, quantized models for sdxl-web
//! (FORMAT.md), and checks of converted models.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sdxl_web::weights::convert::{ConvertOptions, DEFAULT_SHARD_MB, convert};
use sdxl_web::weights::quant::{DEFAULT_BLOCK_SIZE, StoredDtype};
use sdxl_web::weights::sharded::ShardedModel;

#[derive(Parser)]
#[command(name = "sdxl-weights", about = "Converts SDXL checkpoints into sdxl-web's sharded format")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a diffusers folder (base or refiner; fp32 or fp16 variant; sharded or not), or a
    /// Stability single-file checkpoint (`sd_xl_base_1.0.safetensors`) with `--config-from`.
    Convert {
        #[arg(long)]
        from: PathBuf,
        /// For a single-file checkpoint: a diffusers folder of the same model (its weights are not
        /// read) whose model_index.json, configs, tokenizers and scheduler go with the model.
        #[arg(long)]
        config_from: Option<PathBuf>,
        /// A new or empty folder.
        #[arg(long)]
        out: PathBuf,
        /// How linear and conv weights are stored; other tensors stay f16 (f32 with `f32`).
        #[arg(long, value_enum, default_value = "q8")]
        quant: Quant,
        /// Shard size limit in MiB (a single larger tensor gets a shard of its own).
        #[arg(long, default_value_t = DEFAULT_SHARD_MB)]
        shard_mb: u64,
        /// Elements per quantization block along the input dimension.
        #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE)]
        block_size: usize,
        /// Only these components (comma-separated `model_index.json` names, e.g. `unet` for a
        /// refiner that runs beside its base); all by default.
        #[arg(long, value_delimiter = ',')]
        components: Option<Vec<String>>,
    },
    /// Re-hash every shard and file and check every tensor's bounds; exits non-zero on a problem.
    Verify { dir: PathBuf },
    /// Bytes and parameter counts per component and per stored dtype.
    Inspect { dir: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
enum Quant {
    F32,
    F16,
    Q8,
    Q4,
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> sdxl_web::error::Result<ExitCode> {
    match command {
        Command::Convert { from, config_from, out, quant, shard_mb, block_size, components } => {
            let quant = match quant {
                Quant::F32 => StoredDtype::F32,
                Quant::F16 => StoredDtype::F16,
                Quant::Q8 => StoredDtype::Q8,
                Quant::Q4 => StoredDtype::Q4,
            };
            let options = ConvertOptions { quant, shard_bytes: shard_mb.saturating_mul(1 << 20), block_size, config_from, components };
            let manifest = convert(&from, &out, &options, &mut |line| eprintln!("{line}"))?;
            let bytes = saturating_sum(manifest.shards.iter().map(|s| s.size));
            println!("{}: {} tensors, {} shards, {bytes} bytes", out.display(), manifest.tensors.len(), manifest.shards.len());
            println!("peak memory (VmHWM): {}", sdxl_web::memory::gib(sdxl_web::memory::peak_resident()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { dir } => {
            // Opening parses and checks the manifest: versions, dtypes, every tensor's bounds.
            let model = ShardedModel::open(&dir)?;
            let problems = model.verify();
            let manifest = model.manifest();
            if problems.is_empty() {
                println!(
                    "{}: OK ({} shards, {} files, {} tensors)",
                    dir.display(),
                    manifest.shards.len(),
                    manifest.files.len(),
                    manifest.tensors.len()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                for problem in &problems {
                    eprintln!("{problem}");
                }
                eprintln!("{}: {} problem(s)", dir.display(), problems.len());
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Inspect { dir } => {
            let model = ShardedModel::open(&dir)?;
            let manifest = model.manifest();
            let mut by_component: BTreeMap<&str, Totals> = BTreeMap::new();
            let mut by_dtype: BTreeMap<String, Totals> = BTreeMap::new();
            for tensor in &manifest.tensors {
                let params = tensor.shape.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64));
                by_component.entry(tensor.component.as_str()).or_default().add(params, tensor.length);
                by_dtype.entry(tensor.dtype.to_string()).or_default().add(params, tensor.length);
            }
            println!("{} (format version {})", dir.display(), manifest.format_version);
            print_table("component", &by_component);
            print_table("dtype", &by_dtype);
            let shard_bytes = saturating_sum(manifest.shards.iter().map(|s| s.size));
            let file_bytes = saturating_sum(manifest.files.iter().map(|f| f.size));
            println!("{} shards, {shard_bytes} bytes; {} other files, {file_bytes} bytes", manifest.shards.len(), manifest.files.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Default)]
struct Totals {
    tensors: u64,
    params: u64,
    bytes: u64,
}

/// Sizes a manifest declares are untrusted: their totals saturate rather than overflow.
fn saturating_sum(values: impl Iterator<Item = u64>) -> u64 {
    values.fold(0, u64::saturating_add)
}

impl Totals {
    fn add(&mut self, params: u64, bytes: u64) {
        self.tensors += 1;
        self.params = self.params.saturating_add(params);
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

fn print_table<K: std::fmt::Display>(label: &str, rows: &BTreeMap<K, Totals>) {
    println!("{label:<16} {:>8} {:>14} {:>14} {:>12}", "tensors", "parameters", "bytes", "bytes/param");
    for (key, t) in rows {
        let per = if t.params == 0 { 0.0 } else { t.bytes as f64 / t.params as f64 };
        println!("{:<16} {:>8} {:>14} {:>14} {per:>12.4}", key.to_string(), t.tensors, t.params, t.bytes);
    }
}

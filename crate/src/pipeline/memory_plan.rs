//! Which networks are on the device during a run: the memory plan.
//!
//! - **Resident**: every network loaded once and kept; repeated runs reload nothing.
//! - **Sequential**: a run's phases hold one network each — the text encoders for the prompts
//!   (both the base's and the refiner's conditioning), the base UNet for its steps, the
//!   refiner's UNet in its place, the VAE last — each released before the next is loaded (from
//!   the folder natively, from Cache Storage in the browser, never from the network), so the
//!   peak holds the largest network rather than all of them.
//!
//! Both run the same computation in the same order, so their images are bit-identical, unless
//! a budget leaves the VAE too little for a whole decode: it then decodes in tiles
//! ([`MemoryPlan::vae_limit`]; resident holds more weights in that phase, so it tiles first). The
//! plan is chosen before anything is downloaded or loaded, from the networks' sizes on the
//! device (a converted model's shard sizes: weights stay as stored) and a budget; each run is
//! checked against the same budget with its networks' activations at the run's size
//! ([`super::working_memory`]) before it loads anything ([`MemoryPlan::for_run`]).

use serde::{Deserialize, Serialize};

use super::params::BufferLimit;
use super::working_memory::LIVE_WIDEST;
use crate::error::{Error, Result};
use crate::weights::manifest::Manifest;
use crate::weights::quant;

/// How the networks of a run are kept on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Residency {
    Resident,
    Sequential,
}

/// A network of the pipeline, as the memory plan loads and releases it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Network {
    /// Both CLIP text encoders with their tokenizers (they run together).
    TextEncoders,
    /// The base model's UNet.
    Unet,
    /// The refiner's UNet.
    RefinerUnet,
    Vae,
}

impl Network {
    /// The model's components that make it (`unet` of the refiner's model for `RefinerUnet`).
    pub fn components(self) -> &'static [&'static str] {
        match self {
            Network::TextEncoders => &["text_encoder", "text_encoder_2"],
            Network::Unet | Network::RefinerUnet => &["unet"],
            Network::Vae => &["vae"],
        }
    }

    /// Bytes it takes on the device from a converted model (`manifest`): its components'
    /// tensors as the loader keeps them (`quant::device_bytes`: quantized weights stay
    /// quantized, with f32 block scales; the rest f32).
    pub fn bytes_in(self, manifest: &Manifest) -> u64 {
        let components = self.components();
        let tensors = manifest.tensors.iter().filter(|tensor| components.contains(&tensor.component.as_str()));
        tensors.map(|t| quant::device_bytes(t.dtype, &t.shape, t.block_size)).fold(0, u64::saturating_add)
    }

    /// Its name in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Network::TextEncoders => "the text encoders",
            Network::Unet => "the base UNet",
            Network::RefinerUnet => "the refiner's UNet",
            Network::Vae => "the VAE",
        }
    }

    /// The phases of a text-to-image run, in order, each needing one network.
    pub fn phases(refined: bool) -> Vec<Network> {
        let mut phases = vec![Network::TextEncoders, Network::Unet];
        if refined {
            phases.push(Network::RefinerUnet);
        }
        phases.push(Network::Vae);
        phases
    }
}

/// Bytes each network takes on the device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBytes {
    pub text_encoders: u64,
    pub unet: u64,
    /// `None` without a refiner.
    pub refiner_unet: Option<u64>,
    pub vae: u64,
}

impl NetworkBytes {
    /// From each network's size (a model's and its refiner's, together).
    pub fn from_sizes(sizes: impl IntoIterator<Item = (Network, u64)>) -> Self {
        let mut bytes = NetworkBytes::default();
        for (network, size) in sizes {
            match network {
                Network::TextEncoders => bytes.text_encoders = size,
                Network::Unet => bytes.unet = size,
                Network::RefinerUnet => bytes.refiner_unet = Some(size),
                Network::Vae => bytes.vae = size,
            }
        }
        bytes
    }

    pub fn of(&self, network: Network) -> u64 {
        match network {
            Network::TextEncoders => self.text_encoders,
            Network::Unet => self.unet,
            Network::RefinerUnet => self.refiner_unet.unwrap_or(0),
            Network::Vae => self.vae,
        }
    }

    /// The most weight bytes on the device at once under `residency`: every network when
    /// resident (the refiner's too: it stays loaded for the runs that use it), the largest one
    /// when sequential.
    pub fn peak(&self, residency: Residency) -> u64 {
        self.phases(residency, &NetworkBytes::default()).map(|(weights, _)| weights).max().unwrap_or(0)
    }

    /// The weights on the device under `residency` in a phase that runs `network`: every
    /// network's when resident, that one's when sequential.
    fn held(&self, residency: Residency, network: Network) -> u64 {
        match residency {
            Residency::Resident => {
                Network::phases(self.refiner_unet.is_some()).iter().fold(0u64, |sum, &n| sum.saturating_add(self.of(n)))
            }
            Residency::Sequential => self.of(network),
        }
    }

    /// Each phase's weights on the device under `residency` and its network's `working` bytes.
    fn phases<'a>(&'a self, residency: Residency, working: &'a NetworkBytes) -> impl Iterator<Item = (u64, u64)> + 'a {
        let networks = Network::phases(self.refiner_unet.is_some());
        networks.into_iter().map(move |network| (self.held(residency, network), working.of(network)))
    }
}

/// What a run may use on the device, and where the figure comes from (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    pub bytes: u64,
    pub text: String,
}

/// The memory plan of a model: its residency and what it peaks at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryPlan {
    pub residency: Residency,
    /// The most weight bytes on the device at once.
    pub peak_weights: u64,
    /// The most bytes on the device at once: a phase's weights and its network's activations
    /// at the size planned for ([`super::working_memory`]).
    pub peak: u64,
    /// What it was chosen from, to check a run of another size by ([`Self::for_run`]).
    #[serde(skip)]
    bytes: NetworkBytes,
    #[serde(skip)]
    budget: Option<MemoryBudget>,
}

impl MemoryPlan {
    /// The plan for networks of `bytes`, each needing `working` bytes of activations to run,
    /// within `budget`: the `requested` residency, or without one resident where it fits and
    /// sequential where only that fits. Fails, naming the figures, where the request (or,
    /// unrequested, every mode) exceeds the budget: before anything is downloaded or loaded.
    pub fn choose(bytes: &NetworkBytes, working: &NetworkBytes, requested: Option<Residency>, budget: Option<&MemoryBudget>) -> Result<MemoryPlan> {
        let plan = |residency| MemoryPlan {
            residency,
            peak_weights: bytes.peak(residency),
            peak: bytes.phases(residency, working).map(|(held, run)| held.saturating_add(run)).max().unwrap_or(0),
            bytes: bytes.clone(),
            budget: budget.cloned(),
        };
        let candidates = match requested {
            Some(residency) => vec![residency],
            None => vec![Residency::Resident, Residency::Sequential],
        };
        let Some(budget) = budget else { return Ok(plan(candidates[0])) };
        if let Some(&fits) = candidates.iter().find(|&&residency| plan(residency).peak <= budget.bytes) {
            return Ok(plan(fits));
        }
        let residency = *candidates.last().expect("a candidate");
        let mode = match requested {
            Some(Residency::Resident) => "with every network resident",
            _ => "even with one network at a time (sequential)",
        };
        // The phase that needs the most.
        let (held, run) = bytes.phases(residency, working).max_by_key(|&(held, run)| held.saturating_add(run)).unwrap_or((0, 0));
        let activations = match run {
            0 => String::new(),
            run => format!(", {} MiB of activations", run.div_ceil(1 << 20)),
        };
        Err(Error::Input {
            name: "memory".into(),
            message: format!(
                "this model needs {} MiB of GPU memory {mode} ({} MiB of weights{activations}); {}",
                held.saturating_add(run).div_ceil(1 << 20),
                held.div_ceil(1 << 20),
                budget.text
            ),
        })
    }

    /// This plan for a run whose networks need `working` bytes of activations: the same
    /// residency, checked against the same budget (an `input` error before the run loads
    /// anything where the run's size does not fit).
    pub fn for_run(&self, working: &NetworkBytes) -> Result<MemoryPlan> {
        MemoryPlan::choose(&self.bytes, working, Some(self.residency), self.budget.as_ref())
    }

    /// What the budget leaves the phase that runs `network` besides the weights held in it
    /// (`None` without a budget).
    pub fn room(&self, network: Network) -> Option<u64> {
        Some(self.budget.as_ref()?.bytes.saturating_sub(self.bytes.held(self.residency, network)))
    }

    /// The budget and the room it leaves `network`'s phase, for messages.
    pub fn room_text(&self, network: Network) -> String {
        match (&self.budget, self.room(network)) {
            (Some(budget), Some(room)) => {
                format!("{}, which leaves {:.1} MiB to {}'s activations", budget.text, room as f64 / (1 << 20) as f64, network.describe())
            }
            _ => "no budget".into(),
        }
    }

    /// The most one of the VAE's activations may take within the budget (`None` without one):
    /// what the budget leaves the VAE's phase besides the weights held in it, shared by the
    /// [`LIVE_WIDEST`] activations a decode or encode holds at once. The VAE tiles within it
    /// ([`super::sdxl::Sdxl::within_plan`]), so a budget too small for a whole decode (SDXL's
    /// at 1024² holds three activations of 1 GiB) still decodes, in smaller tiles, as diffusers'
    /// tiling would; sizes the smallest tiles cannot fit are refused before the run.
    pub fn vae_limit(&self) -> Option<BufferLimit> {
        let budget = self.budget.as_ref()?;
        let bytes = self.room(Network::Vae)? / LIVE_WIDEST;
        Some(BufferLimit {
            bytes,
            text: format!(
                "{}, which leaves {:.1} MiB to each of the VAE's {LIVE_WIDEST} largest activations",
                budget.text,
                bytes as f64 / (1 << 20) as f64
            ),
        })
    }

    /// The networks to hold for a phase that runs `network`: all of them when resident (those
    /// of the model, `present`), only it when sequential.
    pub fn keep(&self, network: Network, present: &[Network]) -> Vec<Network> {
        match self.residency {
            Residency::Resident => present.to_vec(),
            Residency::Sequential => vec![network],
        }
    }
}

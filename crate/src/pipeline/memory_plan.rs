//! Which networks are on the device during a run: the memory plan.
//!
//! - **Resident**: every network loaded once and kept; repeated runs reload nothing.
//! - **Sequential**: a run's phases hold one network each — the text encoders for the prompts
//!   (both the base's and the refiner's conditioning), the base UNet for its steps, the
//!   refiner's UNet in its place, the VAE last — each released before the next is loaded (from
//!   the folder natively, from Cache Storage in the browser, never from the network), so the
//!   peak holds the largest network rather than all of them.
//!
//! Both run the same computation in the same order, so their images are bit-identical. The
//! plan is chosen before anything is downloaded or loaded, from the networks' sizes on the
//! device (a converted model's shard sizes: weights stay as stored) and a budget; each run is
//! checked against the same budget with its networks' activations at the run's size
//! ([`super::working_memory`]) before it loads anything ([`MemoryPlan::for_run`]).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

    /// Each phase's weights on the device under `residency` and its network's `working` bytes.
    fn phases<'a>(&'a self, residency: Residency, working: &'a NetworkBytes) -> impl Iterator<Item = (u64, u64)> + 'a {
        let networks = Network::phases(self.refiner_unet.is_some());
        let all = networks.iter().fold(0u64, |sum, &n| sum.saturating_add(self.of(n)));
        networks.into_iter().map(move |network| {
            let held = match residency {
                Residency::Resident => all,
                Residency::Sequential => self.of(network),
            };
            (held, working.of(network))
        })
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
    /// The networks to hold for a phase that runs `network`: all of them when resident (those
    /// of the model, `present`), only it when sequential.
    pub fn keep(&self, network: Network, present: &[Network]) -> Vec<Network> {
        match self.residency {
            Residency::Resident => present.to_vec(),
            Residency::Sequential => vec![network],
        }
    }
}

//! The SDXL models and the pipeline made of them: the base (both text encoders, its UNet, the
//! VAE, the scheduler settings) and the refiner (its UNet; it shares text encoder 2 and the VAE
//! with the base), and [`Sdxl`], which runs them together. Each mode of running is a file of its
//! own: `text_to_image.rs`, `image_to_image.rs`.

use burn::tensor::{Device, Tensor};

use super::conditioning::{PromptEmbeds, TextEncoder, encode_prompt, refiner_time_ids, windows_needed};
use super::generation::{Denoise, Generation, Progress, Stage, Step};
use super::memory_plan::{MemoryPlan, Network, NetworkBytes};
use super::image::Image;
use super::params::{BufferLimit, GenerateParams, SizeRules};
use crate::error::{Error, Result};
use crate::models::unet::UNet2DConditionModel;
use crate::models::vae::{AutoencoderKL, VaeConfig};
use crate::models::vae_tiling::VaeTiling;
use crate::schedulers::SchedulerConfig;
use crate::weights::ModelSource;

/// The base model: both text encoders, the UNet, the VAE and the scheduler settings. A
/// network may be released and loaded again ([`super::memory_plan`]); what the pipeline needs to
/// know of a released one (its sizes) stays.
pub struct Base {
    text_encoders: Option<[TextEncoder; 2]>,
    unet: Option<UNet2DConditionModel>,
    vae: Option<AutoencoderKL>,
    pub scheduler: SchedulerConfig,
    /// The VAE's shape, latent scaling factor and pixels per latent side (8 for SDXL).
    pub vae_config: VaeConfig,
    /// `model_index.json`'s `force_zeros_for_empty_prompt` (true for SDXL base).
    pub force_zeros_for_empty_prompt: bool,
    unet_shape: UNetShape,
}

/// The refiner's own parts. It shares text encoder 2 and the VAE with the base, as the SDXL
/// model card's ensemble-of-experts example does.
pub struct Refiner {
    unet: Option<UNet2DConditionModel>,
    /// `force_zeros_for_empty_prompt` of the refiner's `model_index.json` (false for SDXL).
    pub force_zeros_for_empty_prompt: bool,
    unet_shape: UNetShape,
}

/// What the size rules and the memory plan need of a UNet, kept while it is released: how
/// often it halves the latents, and per resolution level its widest activation besides the
/// feed-forwards, its feed-forwards' projections and the skip connections it keeps (values per
/// pixel of the level,
/// `UNet2DConditionModel::{widths_per_level, feed_forward_widths_per_level, skip_widths_per_level}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UNetShape {
    pub downsamplings: usize,
    pub widths: Vec<u64>,
    pub feed_forward_widths: Vec<u64>,
    pub skip_widths: Vec<u64>,
}

impl UNetShape {
    /// Reads shapes only: `unet` may be a module whose weights were never loaded.
    pub fn of(unet: &UNet2DConditionModel) -> Self {
        Self {
            downsamplings: unet.downsamplings(),
            widths: unet.widths_per_level(),
            feed_forward_widths: unet.feed_forward_widths_per_level(),
            skip_widths: unet.skip_widths_per_level(),
        }
    }

    /// The larger of the two at each level (two UNets' rules as one).
    pub fn widest(&self, other: &UNetShape) -> UNetShape {
        let widest = |a: &[u64], b: &[u64]| -> Vec<u64> {
            (0..a.len().max(b.len())).map(|level| a.get(level).max(b.get(level)).copied().unwrap_or(0)).collect()
        };
        UNetShape {
            downsamplings: self.downsamplings.max(other.downsamplings),
            widths: widest(&self.widths, &other.widths),
            feed_forward_widths: widest(&self.feed_forward_widths, &other.feed_forward_widths),
            skip_widths: widest(&self.skip_widths, &other.skip_widths),
        }
    }
}

/// A network loaded for a [`Network`] slot.
#[allow(clippy::large_enum_variant)] // moved once per load
pub enum Loaded {
    TextEncoders([TextEncoder; 2]),
    Unet(UNet2DConditionModel),
    Vae(AutoencoderKL),
}

/// The base's networks, however they were loaded; those not loaded (`None`) are loaded later.
pub struct BaseParts {
    pub text_encoders: Option<[TextEncoder; 2]>,
    pub unet: Option<UNet2DConditionModel>,
    pub unet_shape: UNetShape,
    pub vae: Option<AutoencoderKL>,
    pub vae_config: VaeConfig,
    pub scheduler: SchedulerConfig,
}

fn force_zeros_for_empty_prompt(model: &impl ModelSource, default: bool) -> bool {
    model.model_index().get("force_zeros_for_empty_prompt").and_then(|value| value.as_bool()).unwrap_or(default)
}

fn loaded<T>(slot: &Option<T>, network: Network) -> Result<&T> {
    slot.as_ref().ok_or(Error::NotLoaded(network.describe()))
}

impl Base {
    /// The base of `model` (whose pipeline class the caller checked) from its parts.
    pub fn from_parts(model: &impl ModelSource, parts: BaseParts) -> Self {
        Base {
            text_encoders: parts.text_encoders,
            unet: parts.unet,
            vae: parts.vae,
            scheduler: parts.scheduler,
            vae_config: parts.vae_config,
            force_zeros_for_empty_prompt: force_zeros_for_empty_prompt(model, true),
            unet_shape: parts.unet_shape,
        }
    }

    /// The base model of a folder (native): diffusers' or converted, every network loaded.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_folder(dir: &std::path::Path, device: &Device) -> Result<Self> {
        super::folder::base(dir, &[Network::TextEncoders, Network::Unet, Network::Vae], device)
    }

    /// Both text encoders, `[text_encoder, text_encoder_2]`.
    pub fn text_encoders(&self) -> Result<[&TextEncoder; 2]> {
        let [one, two] = loaded(&self.text_encoders, Network::TextEncoders)?;
        Ok([one, two])
    }

    pub fn unet(&self) -> Result<&UNet2DConditionModel> {
        loaded(&self.unet, Network::Unet)
    }

    pub fn vae(&self) -> Result<&AutoencoderKL> {
        loaded(&self.vae, Network::Vae)
    }

    /// The initial noise's shape for an image of the requested size.
    pub fn latent_shape(&self, params: &GenerateParams) -> [usize; 4] {
        [1, 4, params.height / self.vae_config.scale_factor(), params.width / self.vae_config.scale_factor()]
    }

    /// What sizes this model can generate, within `buffer_limit` when given.
    pub fn size_rules(&self, buffer_limit: Option<BufferLimit>) -> SizeRules {
        SizeRules {
            multiple: self.vae_config.scale_factor() << self.unet_shape.downsamplings,
            vae: self.vae_config.clone(),
            unet: self.unet_shape.clone(),
            vae_limit: buffer_limit.clone(),
            buffer_limit,
        }
    }

    /// Latents → image [H, W, 3] in 0..1, decoded whole.
    pub fn decode(&self, latents: Tensor<4>) -> Result<Image> {
        Ok(Image::new(self.decode_pixels(latents, None)?.into_data()))
    }

    /// Latents → pixels [H, W, 3] in 0..1, decoded whole, or in `tiling`'s tiles when given, left
    /// on the device (the browser reads them back asynchronously).
    pub fn decode_pixels(&self, latents: Tensor<4>, tiling: Option<&VaeTiling>) -> Result<Tensor<3>> {
        let vae = self.vae()?;
        let image = match tiling {
            Some(tiling) => vae.decode_with_tiling(latents / self.vae_config.scaling_factor, tiling)?,
            None => vae.decode(latents / self.vae_config.scaling_factor),
        };
        Ok(to_pixels(image))
    }
}

/// The VAE's output [1, 3, H, W] in −1..1 → pixels [H, W, 3] in 0..1.
fn to_pixels(image: Tensor<4>) -> Tensor<3> {
    let [_, _, height, width] = image.dims();
    (image / 2.0 + 0.5).clamp(0.0, 1.0).narrow(0, 0, 1).reshape([3, height, width]).permute([1, 2, 0])
}

impl Refiner {
    /// The refiner of `model` (whose pipeline class the caller checked) from its UNet, loaded
    /// or (`None`) to be loaded later.
    pub fn from_parts(model: &impl ModelSource, unet: Option<UNet2DConditionModel>, unet_shape: UNetShape) -> Self {
        Refiner { unet, force_zeros_for_empty_prompt: force_zeros_for_empty_prompt(model, false), unet_shape }
    }

    /// The refiner of a folder (native): diffusers' or converted, its UNet loaded.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_folder(dir: &std::path::Path, device: &Device) -> Result<Self> {
        super::folder::refiner(dir, true, device)
    }

    pub fn unet(&self) -> Result<&UNet2DConditionModel> {
        loaded(&self.unet, Network::RefinerUnet)
    }
}

/// A base model and its refiner whose networks come and go as a [`MemoryPlan`] says.
pub struct Models {
    pub base: Base,
    pub refiner: Option<Refiner>,
    /// The most device memory seen reserved, sampled before each release and after a run.
    peak_reserved: u64,
    /// The networks the last run under a plan loaded again, and the time that took.
    pub reloads: Reloads,
    /// The device memory of each phase of the last run under a plan, in order.
    pub phases: Vec<PhaseMemory>,
}

/// A phase's device memory: burn's reserved bytes when its network was ready to run, and at
/// the phase's end (its peak: the pools only grow between cleanups).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PhaseMemory {
    pub network: Network,
    pub ready: u64,
    pub peak: u64,
}

/// Networks loaded during a run (what a sequential plan costs in time).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reloads {
    pub count: usize,
    pub seconds: f64,
}

impl Models {
    pub fn new(base: Base, refiner: Option<Refiner>) -> Self {
        Self { base, refiner, peak_reserved: 0, reloads: Reloads::default(), phases: Vec::new() }
    }

    /// Notes the device's reserved memory (burn's pools only grow between cleanups, so a sample
    /// at the end of a phase is that phase's peak), as the running phase's peak too.
    pub fn sample_memory(&mut self, device: &Device) {
        if let Some(usage) = device.memory_pool_usage() {
            self.peak_reserved = self.peak_reserved.max(usage.bytes_reserved);
            if let Some(phase) = self.phases.last_mut() {
                phase.peak = phase.peak.max(usage.bytes_reserved);
            }
        }
    }

    /// Starts a phase running `network`, which is ready: notes the memory it starts from (a
    /// phase goes on while its network runs step after step).
    pub fn start_phase(&mut self, network: Network, device: &Device) {
        if self.phases.last().is_some_and(|phase| phase.network == network) {
            return;
        }
        if let Some(usage) = device.memory_pool_usage() {
            self.phases.push(PhaseMemory { network, ready: usage.bytes_reserved, peak: usage.bytes_reserved });
        }
    }

    /// The most device memory seen reserved (0 where the backend does not report it).
    pub fn peak_reserved(&self) -> u64 {
        self.peak_reserved
    }

    /// The model's networks (the refiner's UNet where there is a refiner).
    pub fn networks(&self) -> Vec<Network> {
        Network::phases(self.refiner.is_some())
    }

    /// Whether `network` is on the device.
    pub fn holds(&self, network: Network) -> bool {
        match network {
            Network::TextEncoders => self.base.text_encoders.is_some(),
            Network::Unet => self.base.unet.is_some(),
            Network::RefinerUnet => self.refiner.as_ref().is_some_and(|refiner| refiner.unet.is_some()),
            Network::Vae => self.base.vae.is_some(),
        }
    }

    /// Frees `network`'s weights (a no-op when it is not loaded).
    pub fn release(&mut self, network: Network) {
        match network {
            Network::TextEncoders => drop(self.base.text_encoders.take()),
            Network::Unet => drop(self.base.unet.take()),
            Network::RefinerUnet => drop(self.refiner.as_mut().and_then(|refiner| refiner.unet.take())),
            Network::Vae => drop(self.base.vae.take()),
        }
    }

    /// Puts a loaded network in `network`'s place.
    pub fn hold(&mut self, network: Network, loaded: Loaded) -> Result<()> {
        match (network, loaded) {
            (Network::TextEncoders, Loaded::TextEncoders(encoders)) => self.base.text_encoders = Some(encoders),
            (Network::Unet, Loaded::Unet(unet)) => self.base.unet = Some(unet),
            (Network::RefinerUnet, Loaded::Unet(unet)) => match &mut self.refiner {
                Some(refiner) => refiner.unet = Some(unet),
                None => return Err(Error::Unsupported("a refiner's UNet for a pipeline without a refiner".into())),
            },
            (Network::Vae, Loaded::Vae(vae)) => self.base.vae = Some(vae),
            (network, _) => return Err(Error::Unsupported(format!("a network of another kind for {}", network.describe()))),
        }
        Ok(())
    }

    /// Releases what `plan` does not keep for a phase running `network` and returns whether
    /// `network` itself must be loaded; the freed memory goes back to the device.
    pub fn release_for(&mut self, plan: &MemoryPlan, network: Network, device: &Device) -> bool {
        self.sample_memory(device);
        let keep = plan.keep(network, &self.networks());
        let released: Vec<Network> = self.networks().into_iter().filter(|n| !keep.contains(n) && self.holds(*n)).collect();
        for &other in &released {
            self.release(other);
        }
        if !released.is_empty() {
            device.memory_cleanup();
        }
        !self.holds(network)
    }

    /// The pipeline over these models, with the refiner when `refined`, within `limit`.
    pub fn sdxl(&self, refined: bool, limit: Option<BufferLimit>) -> Sdxl<'_> {
        Sdxl { base: &self.base, refiner: self.refiner.as_ref().filter(|_| refined), buffer_limit: limit, plan: None }
    }
}

/// SDXL as diffusers runs it: the base, optionally handing over to the refiner.
pub struct Sdxl<'a> {
    pub base: &'a Base,
    pub refiner: Option<&'a Refiner>,
    /// The largest buffer a run may use, where something limits it (a GPU's buffers, the
    /// host's memory): sizes that need more are refused, decoding tiles where that helps.
    pub buffer_limit: Option<BufferLimit>,
    /// The memory plan the run keeps to, where it has a budget: the VAE tiles within what it
    /// leaves the VAE ([`MemoryPlan::vae_limit`]), and the UNets take the guidance branches in
    /// a pass each where both in one pass would not fit what it leaves them
    /// ([`MemoryPlan::room`]).
    pub plan: Option<MemoryPlan>,
}

impl<'a> Sdxl<'a> {
    pub fn new(base: &'a Base, refiner: Option<&'a Refiner>) -> Self {
        Self { base, refiner, buffer_limit: None, plan: None }
    }

    /// Refuses sizes that need a buffer larger than `limit`, and decodes in tiles the sizes
    /// whose whole decode would.
    pub fn with_buffer_limit(mut self, limit: BufferLimit) -> Self {
        self.buffer_limit = Some(limit);
        self
    }

    /// Runs within `plan`: where its budget leaves the VAE's phase less than the buffer limit,
    /// decoding and encoding tile to fit the budget (a whole decode of 1024² holds three
    /// activations of 1 GiB); where it leaves a UNet's phase less than a pass over both
    /// guidance branches needs, each branch gets a pass.
    pub fn within_plan(mut self, plan: &MemoryPlan) -> Self {
        self.plan = Some(plan.clone());
        self
    }

    /// The largest activation the VAE may take: the narrower of the buffer limit and the
    /// budget's.
    fn vae_limit(&self) -> Option<BufferLimit> {
        BufferLimit::narrower(self.buffer_limit.as_ref(), self.plan.as_ref().and_then(MemoryPlan::vae_limit).as_ref())
    }

    /// The sizes this pipeline can run: the base's, and the refiner's too when there is one (its
    /// UNet may downsample more: SDXL's refiner three times, so multiples of 64 pixels where the
    /// base takes 32), bounded by the widest activation of either.
    pub fn size_rules(&self) -> SizeRules {
        let mut rules = self.base.size_rules(self.buffer_limit.clone());
        if let Some(refiner) = self.refiner {
            rules.unet = rules.unet.widest(&refiner.unet_shape);
            rules.multiple = self.base.vae_config.scale_factor() << rules.unet.downsamplings;
        }
        rules.vae_limit = self.vae_limit();
        rules
    }

    /// The one validation of a run's parameters, before anything runs or loads; warnings go to
    /// `warn`.
    pub fn check(&self, params: &GenerateParams, warn: &mut dyn FnMut(String)) -> Result<()> {
        let rules = self.size_rules();
        for warning in params.validate(&rules)? {
            warn(warning);
        }
        let (width, height) = (params.width, params.height);
        let together = rules.unet_batch(width, height, params.guided()) == 2;
        if let Some((plan, network)) = self.plan.as_ref().zip(self.unet_room_short(params, 2)).filter(|_| together) {
            warn(format!(
                "{width}×{height} denoises the prompt and the negative prompt in a UNet pass each (twice the passes): \
                 in one pass they need {} MiB of activations; {}",
                self.unet_working(params, 2).into_iter().map(|(_, bytes)| bytes).max().unwrap_or(0).div_ceil(1 << 20),
                plan.room_text(network)
            ));
        }
        Ok(())
    }

    /// Each UNet's activations in a pass over `batch` latents at the run's size.
    fn unet_working(&self, params: &GenerateParams, batch: u64) -> Vec<(Network, u64)> {
        let pixels = self.base.vae_config.latent_pixels(params.width, params.height);
        let refiner = self.refiner.map(|refiner| (Network::RefinerUnet, refiner.unet_shape.working_bytes(pixels, batch)));
        std::iter::once((Network::Unet, self.base.unet_shape.working_bytes(pixels, batch))).chain(refiner).collect()
    }

    /// The first UNet phase whose room within the plan's budget is less than its activations
    /// in a pass over `batch` latents need; `None` where every one fits or there is no budget.
    fn unet_room_short(&self, params: &GenerateParams, batch: u64) -> Option<Network> {
        let plan = self.plan.as_ref()?;
        self.unet_working(params, batch).into_iter().find(|&(network, bytes)| plan.room(network).is_some_and(|room| bytes > room)).map(|(network, _)| network)
    }

    /// Each network's activations at the run's size, estimated ([`super::working_memory`]);
    /// the VAE's encoding too where the run `encodes` an image to refine.
    pub fn working(&self, params: &GenerateParams, encodes: bool) -> NetworkBytes {
        let vae = &self.base.vae_config;
        let unets = self.unet_working(params, self.unet_batch(params));
        let of = |network| unets.iter().find(|(n, _)| *n == network).map(|&(_, bytes)| bytes);
        NetworkBytes {
            text_encoders: 0,
            unet: of(Network::Unet).unwrap_or(0),
            refiner_unet: of(Network::RefinerUnet),
            vae: vae.working_bytes(params.width, params.height, self.vae_limit().map(|limit| limit.bytes), encodes),
        }
    }

    /// How many latents a UNet pass of the run takes: both guidance branches where the buffer
    /// limit ([`SizeRules::unet_batch`]) and the plan's budget allow a pass over both, else
    /// one.
    pub(super) fn unet_batch(&self, params: &GenerateParams) -> u64 {
        match self.size_rules().unet_batch(params.width, params.height, params.guided()) {
            2 if self.unet_room_short(params, 2).is_some() => 1,
            batch => batch,
        }
    }

    /// The tiles decoding latents [1, 4, h, w] takes within the buffer limit (none: whole).
    fn decode_tiling(&self, latents: &Tensor<4>) -> Result<Option<VaeTiling>> {
        let config = &self.base.vae_config;
        let [_, _, height, width] = latents.dims();
        let (width, height) = (width * config.scale_factor(), height * config.scale_factor());
        self.tiling_within_limit(width, height, "decode", VaeConfig::decode_tiling)
    }

    /// The tiles encoding a `width`×`height` image takes within the buffer limit (none: whole).
    pub(super) fn encode_tiling(&self, width: usize, height: usize) -> Result<Option<VaeTiling>> {
        self.tiling_within_limit(width, height, "encode", VaeConfig::encode_tiling)
    }

    fn tiling_within_limit(
        &self,
        width: usize,
        height: usize,
        what: &str,
        plan: fn(&VaeConfig, usize, usize, u64) -> std::result::Result<Option<VaeTiling>, u64>,
    ) -> Result<Option<VaeTiling>> {
        let Some(limit) = self.vae_limit() else { return Ok(None) };
        plan(&self.base.vae_config, width, height, limit.bytes).map_err(|needed| Error::Input {
            name: "size".into(),
            message: format!(
                "{width}×{height} needs a {} MiB buffer to {what}, even in tiles; {}: choose a smaller size",
                needed.div_ceil(1 << 20),
                limit.text
            ),
        })
    }

    /// Latents → image [H, W, 3] in 0..1, in tiles where a whole decode would exceed the buffer
    /// limit.
    pub fn decode(&self, latents: Tensor<4>) -> Result<Image> {
        Ok(Image::new(self.decode_pixels(latents)?.into_data()))
    }

    /// As [`Sdxl::decode`], the pixels left on the device.
    pub fn decode_pixels(&self, latents: Tensor<4>) -> Result<Tensor<3>> {
        let tiling = self.decode_tiling(&latents)?;
        self.base.decode_pixels(latents, tiling.as_ref())
    }

    /// The UNet of `stage`.
    fn unet_of(&self, stage: Stage) -> Result<&'a UNet2DConditionModel> {
        match (stage, self.refiner) {
            (Stage::Base, _) => self.base.unet(),
            (Stage::Refiner, Some(refiner)) => refiner.unet(),
            (Stage::Refiner, None) => Err(Error::NotLoaded(Network::RefinerUnet.describe())),
        }
    }

    /// Takes `generation`'s next step with its stage's UNet; `None` when it is done.
    pub fn step(&self, generation: &mut Generation) -> Result<Option<Step>> {
        let Some(stage) = generation.next_stage() else { return Ok(None) };
        Ok(generation.step(self.unet_of(stage)?))
    }

    /// Steps to the end, reporting each step; stops with [`Error::Cancelled`] when `progress`
    /// says so. Returns the final latents.
    pub fn run(&self, mut generation: Generation, progress: &mut dyn Progress) -> Result<Tensor<4>> {
        while let Some(step) = self.step(&mut generation)? {
            Generation::report(step, progress)?;
        }
        Ok(generation.latents())
    }

    /// The refiner's share of a run: text encoder 2 alone, aesthetic-score time ids.
    pub(super) fn refiner_denoise(
        &self,
        refiner: &Refiner,
        params: &GenerateParams,
        size: (usize, usize),
        device: &Device,
        warn: &mut dyn FnMut(String),
    ) -> Result<Denoise> {
        let [_, text_encoder_2] = self.base.text_encoders()?;
        let (positive, negative) =
            self.conditioning(&[text_encoder_2], params, refiner.force_zeros_for_empty_prompt, device, warn)?;
        Ok(Denoise::new(
            positive,
            negative,
            &refiner_time_ids(size, (0, 0), params.aesthetic_score),
            &refiner_time_ids(size, (0, 0), params.negative_aesthetic_score),
            params.guidance,
            self.unet_batch(params),
            Stage::Refiner,
            device,
        ))
    }

    /// The prompt's embeddings and, under guidance, the negative branch's: zeros when there is
    /// no negative prompt and the model asks for it, else the encoding of the negative prompt
    /// (or of ""). In chunked mode both get the same number of windows.
    pub(super) fn conditioning(
        &self,
        encoders: &[&TextEncoder],
        params: &GenerateParams,
        force_zeros_for_empty_prompt: bool,
        device: &Device,
        warn: &mut dyn FnMut(String),
    ) -> Result<(PromptEmbeds, Option<PromptEmbeds>)> {
        let mode = params.long_prompt;
        let negative_prompt = match &params.negative_prompt {
            _ if !params.guided() => None,
            None if force_zeros_for_empty_prompt => None,
            negative => Some(negative.as_deref().unwrap_or("")),
        };
        let mut windows = windows_needed(encoders, &params.prompt, mode)?;
        if let Some(negative) = negative_prompt {
            windows = windows.max(windows_needed(encoders, negative, mode)?);
        }
        let positive = encode_prompt(encoders, &params.prompt, mode, windows, device, warn)?;
        let negative = match negative_prompt {
            Some(negative) => Some(encode_prompt(encoders, negative, mode, windows, device, warn)?),
            None if params.guided() => Some(positive.zeros_like()),
            None => None,
        };
        Ok((positive, negative))
    }
}

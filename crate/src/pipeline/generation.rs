//! A run of the denoising loop, one step at a time: each network's share of the schedule
//! ([`Phase`]), classifier-free guidance, progress reports and the run's randomness.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::rc::Rc;

use burn::tensor::{Device, Tensor};

use super::conditioning::PromptEmbeds;
use super::preview::{Preview, latent_preview};
use crate::error::{Error, Result};
use crate::models::unet::UNet2DConditionModel;
use crate::noise::NoiseGenerator;
use crate::schedulers::{Scheduler, StepOutput};

/// Which network a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Base,
    Refiner,
}

/// Receives each finished step; returning `ControlFlow::Break` cancels the run with
/// [`Error::Cancelled`] (what was allocated for it is dropped on return).
pub trait Progress {
    /// Whether `step` should be given a preview (computing one reads the latents back).
    fn wants_preview(&self) -> bool {
        false
    }
    /// `index` counts from 1 to `total` over base and refiner steps together.
    fn step(&mut self, stage: Stage, index: usize, total: usize, preview: Option<Preview>) -> ControlFlow<()>;
    fn warn(&mut self, message: String) {
        let _ = message;
    }
}

/// The run's randomness: the initial latents' noise [1, 4, H/8, W/8], drawn once the run's
/// parameters are checked (so a bad size never sizes an allocation), and the fresh noise
/// ancestral samplers (and img2img) draw.
pub struct Noise<'a> {
    pub initial: Box<dyn FnOnce([usize; 4]) -> Result<Tensor<4>> + 'a>,
    pub steps: Box<dyn FnMut([usize; 4]) -> Tensor<4> + 'a>,
}

impl<'a> Noise<'a> {
    /// Everything from one seeded stream (see [`crate::noise`]): the initial noise first,
    /// then each step's, so a seed fixes the whole image natively and in the browser.
    pub fn from_seed(seed: u64, device: &Device) -> Self {
        let generator = Rc::new(RefCell::new(NoiseGenerator::new(seed)));
        let (first, device, later) = (generator.clone(), device.clone(), device.clone());
        Self {
            initial: Box::new(move |shape| Ok(first.borrow_mut().normal(shape, &device))),
            steps: Box::new(move |shape| generator.borrow_mut().normal(shape, &later)),
        }
    }

    /// Given initial noise (diffusers' `latents=`), which must have the run's shape; step
    /// noise from a generator seeded with 0.
    pub fn given(initial: Tensor<4>, device: &Device) -> Self {
        let mut generator = NoiseGenerator::new(0);
        let device = device.clone();
        Self {
            initial: Box::new(move |shape| {
                if initial.dims() != shape {
                    return Err(Error::Input {
                        name: "noise".into(),
                        message: format!("shape {:?}, expected {shape:?}", initial.dims()),
                    });
                }
                Ok(initial)
            }),
            steps: Box::new(move |shape| generator.normal(shape, &device)),
        }
    }
}

/// The UNet's conditioning for a run, batched once: [negative, positive] under classifier-free
/// guidance (a negative branch present), as diffusers concatenates it, else the positive alone.
pub struct UNetConditioning {
    pub context: Tensor<3>,
    pub pooled: Tensor<2>,
    pub time_ids: Tensor<2>,
}

impl UNetConditioning {
    /// The noise `unet` predicts for `input` [1, 4, h, w] at timestep `t`. Under guidance
    /// (`Some(scale)`, both branches present) the branches' predictions combined, taken in one
    /// pass over a batch of 2 (`batch` 2, as diffusers runs them) or in a pass each (`batch`
    /// 1: half the activations, twice the passes).
    #[allow(clippy::too_many_arguments)]
    pub fn predict(&self, unet: &UNet2DConditionModel, input: Tensor<4>, t: f32, guidance: Option<f64>, batch: u64, device: &Device) -> Tensor<4> {
        // The UNet on `input`, conditioned on the branches `first..first + count`.
        let pass = |input: Tensor<4>, first: usize, count: usize| {
            let timestep = Tensor::<1>::from_floats(vec![t; count].as_slice(), device);
            let (context, pooled) = (self.context.clone().narrow(0, first, count), self.pooled.clone().narrow(0, first, count));
            unet.forward(input, timestep, context, pooled, self.time_ids.clone().narrow(0, first, count))
        };
        match (guidance, batch) {
            (None, _) => pass(input, 0, 1),
            (Some(scale), 2) => {
                let [uncond, text] = pass(Tensor::cat(vec![input.clone(), input], 0), 0, 2).chunk(2, 0).try_into().expect("two halves");
                uncond.clone() + (text - uncond) * scale
            }
            (Some(scale), _) => {
                let uncond = pass(input.clone(), 0, 1);
                uncond.clone() + (pass(input, 1, 1) - uncond) * scale
            }
        }
    }
}

/// One network's share of the denoising loop: its conditioning (the network itself is passed
/// to each step, so a memory plan may load it only for its phase).
pub(super) struct Denoise {
    conditioning: UNetConditioning,
    /// Classifier-free guidance's scale, where a negative branch is present.
    guidance: Option<f64>,
    /// Latents per UNet pass under guidance: 2 (both branches in one pass, as diffusers) or 1
    /// (a pass each, where one pass of both would need too large a buffer).
    batch: u64,
    stage: Stage,
}

impl Denoise {
    /// `negative` is present when classifier-free guidance is on; `batch` latents per UNet pass.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        positive: PromptEmbeds,
        negative: Option<PromptEmbeds>,
        time_ids: &[f32],
        negative_time_ids: &[f32],
        guidance: f64,
        batch: u64,
        stage: Stage,
        device: &Device,
    ) -> Self {
        let ids = |ids: &[f32]| Tensor::<1>::from_floats(ids, device).unsqueeze::<2>();
        let guidance = negative.is_some().then_some(guidance);
        let (context, pooled, time_ids) = match negative {
            Some(negative) => (
                Tensor::cat(vec![negative.context, positive.context], 0),
                Tensor::cat(vec![negative.pooled, positive.pooled], 0),
                Tensor::cat(vec![ids(negative_time_ids), ids(time_ids)], 0),
            ),
            None => (positive.context, positive.pooled, ids(time_ids)),
        };
        Self { conditioning: UNetConditioning { context, pooled, time_ids }, guidance, batch, stage }
    }

    /// One step of the schedule: the UNet's prediction (guided), the scheduler's update.
    fn step(
        &self,
        unet: &UNet2DConditionModel,
        scheduler: &mut dyn Scheduler,
        latents: Tensor<4>,
        step: usize,
        noise: &mut dyn FnMut([usize; 4]) -> Tensor<4>,
        device: &Device,
    ) -> StepOutput {
        let t = scheduler.timesteps()[step];
        let input = scheduler.scale_model_input(latents.clone(), step);
        let prediction = self.conditioning.predict(unet, input, t, self.guidance, self.batch, device);
        scheduler.step(prediction, step, latents, noise)
    }
}

/// One network's share of a run: its steps of the schedule, on its own scheduler.
pub(super) struct Phase {
    pub denoise: Denoise,
    pub scheduler: Box<dyn Scheduler>,
    pub steps: std::ops::Range<usize>,
}

/// A finished step of a [`Generation`].
pub struct Step {
    pub stage: Stage,
    /// Counts from 1 to `total` over base and refiner steps together.
    pub index: usize,
    pub total: usize,
    /// The scheduler's estimate of the clean latents [1, 4, h, w] (what previews show).
    pub denoised: Tensor<4>,
}

/// A run taken one step at a time, so a caller can show progress, read previews back
/// asynchronously (the browser), stop between steps, or load each stage's UNet only for its
/// steps ([`Sdxl::step`](super::Sdxl::step) passes the right one). Dropping it frees what it
/// holds.
pub struct Generation<'a> {
    phases: std::collections::VecDeque<Phase>,
    latents: Tensor<4>,
    draw: Box<dyn FnMut([usize; 4]) -> Tensor<4> + 'a>,
    device: Device,
    done: usize,
    total: usize,
}

impl<'a> Generation<'a> {
    pub(super) fn new(
        phases: Vec<Phase>,
        latents: Tensor<4>,
        draw: Box<dyn FnMut([usize; 4]) -> Tensor<4> + 'a>,
        device: &Device,
    ) -> Self {
        let total = phases.iter().map(|phase| phase.steps.len()).sum();
        Self { phases: phases.into(), latents, draw, device: device.clone(), done: 0, total }
    }

    /// The network the next step runs: `None` when the schedule is done.
    pub fn next_stage(&mut self) -> Option<Stage> {
        while self.phases.front().is_some_and(|phase| phase.steps.is_empty()) {
            self.phases.pop_front();
        }
        self.phases.front().map(|phase| phase.denoise.stage)
    }

    /// Takes the next step with `unet`, the UNet of [`Self::next_stage`]; `None` when the
    /// schedule is done.
    pub fn step(&mut self, unet: &UNet2DConditionModel) -> Option<Step> {
        self.next_stage()?;
        let phase = self.phases.front_mut()?;
        let step = phase.steps.next().expect("a phase with steps left");
        let out = phase.denoise.step(unet, phase.scheduler.as_mut(), self.latents.clone(), step, &mut *self.draw, &self.device);
        self.latents = out.prev_sample;
        self.done += 1;
        Some(Step { stage: phase.denoise.stage, index: self.done, total: self.total, denoised: out.pred_original_sample })
    }

    /// Reports a finished step to `progress` (with a preview when asked for): `Err(Cancelled)`
    /// when it says stop.
    pub fn report(step: Step, progress: &mut dyn Progress) -> Result<()> {
        let preview = progress.wants_preview().then(|| latent_preview(step.denoised.narrow(0, 0, 1).into_data()));
        match progress.step(step.stage, step.index, step.total, preview) {
            ControlFlow::Break(()) => Err(Error::Cancelled),
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    /// The current latents: the final ones once [`Self::step`] returned `None`.
    pub fn latents(&self) -> Tensor<4> {
        self.latents.clone()
    }
}

//! SDXL's pipelines, along the data flow: parameters ([`params`]) → prompt conditioning
//! ([`conditioning`]) → the denoising loop ([`generation`]) → the image ([`image`], [`png`]).
//! [`sdxl`] holds the models and the pipeline type; each mode of running it is a file
//! ([`text_to_image`], [`image_to_image`]), each also under a memory plan ([`memory_plan`],
//! [`planned_run`]). Models come from folders ([`folder`], native) or
//! from files handed over one at a time ([`assembly`], the browser), both through [`parts`].

pub mod assembly;
pub mod conditioning;
#[cfg(not(target_arch = "wasm32"))]
pub mod folder;
pub mod generation;
pub mod image;
pub mod image_to_image;
pub mod memory_plan;
pub mod params;
pub mod planned_run;
pub mod parts;
pub mod png;
pub mod preview;
pub mod sdxl;
pub mod text_to_image;
pub mod working_memory;

pub use generation::{Generation, Noise, Progress, Stage, Step};
pub use image::Image;
pub use params::{BufferLimit, GenerateParams, SizeRules};
pub use memory_plan::{MemoryBudget, MemoryPlan, Network, NetworkBytes, Residency};
pub use sdxl::{Base, BaseParts, Loaded, Models, PhaseMemory, Refiner, Reloads, Sdxl, UNetShape};
pub use image_to_image::refine_planned;
pub use planned_run::RunHost;
pub use text_to_image::generate_planned;

//! Model weights: where a model comes from ([`source`]: a diffusers folder, a converted model,
//! either on disk), how tensors fill a module ([`loader`]), and the file formats
//! ([`safetensors`], [`manifest`] and [`quant`] for converted models, [`single_file`]).

#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
pub mod diffusers;
pub mod files;
#[cfg(not(target_arch = "wasm32"))]
pub mod folder;
pub mod loader;
pub mod manifest;
pub mod quant;
pub mod safetensors;
pub mod sharded;
pub mod single_file;
pub mod source;

#[cfg(not(target_arch = "wasm32"))]
pub use folder::ModelFolder;
pub use loader::{Partial, Stored, TensorSource, canonical_key, load_module, load_partial};
pub use source::ModelSource;

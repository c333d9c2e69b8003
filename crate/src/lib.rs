//! Stable Diffusion XL in burn: the networks, their weights, and (in the browser) the wasm API.

pub mod clock;
pub mod error;
pub mod kernel_bench;
pub mod kernels;
pub mod models;
pub mod noise;
pub mod ops_check;
pub mod pipeline;
pub mod relative_error;
pub mod schedulers;
pub mod tokenizer;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub mod network_run;
#[cfg(not(target_arch = "wasm32"))]
pub mod device;
#[cfg(not(target_arch = "wasm32"))]
pub mod memory;

pub mod web;

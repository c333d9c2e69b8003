//! The browser side: what the worker sends and receives ([`protocol`], plain Rust, tested on
//! every target) and the JavaScript bindings over it (wasm32 only).

pub mod protocol;

#[cfg(target_arch = "wasm32")]
mod bindings;

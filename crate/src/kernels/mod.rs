//! Our own GPU kernels: the WGSL in `shaders/` (one file per kernel, its algorithm, tile sizes
//! and limits in its header), launched on burn's wgpu tensors by [`launch`]. Each function here
//! runs our kernel where it applies (wgpu, f32, the shapes it is written for) and otherwise
//! says so (`None`) or falls back to burn's ops, so the CPU backend stays the reference the
//! tests compare against.

pub mod attention;
pub mod conv;
pub mod embedding;
pub mod gemm;
pub mod geglu;
pub mod group_norm;
pub mod launch;
pub mod linear;

use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether our kernels run where they apply (the default), or burn's ops everywhere: the
/// benchmarks' "before", in the same process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

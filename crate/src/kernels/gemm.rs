//! What the GEMM kernels (`conv2d_gemm.wgsl`, `linear_gemm.wgsl`) share: the tile multiply
//! (`gemm_tile.wgsl`) and the two weight readers, each with the bindings after it numbered.

use super::launch::Wgsl;

/// Outputs along each side of a workgroup's tile (the WGSL's `TILE`).
pub const TILE: usize = 64;

const GEMM_TILE: &str = include_str!("../../../shaders/gemm_tile.wgsl");

/// f32 weights: `w` at binding 1; bias, out and info at 2, 3, 4.
const F32_WEIGHTS: &[(&str, &str)] =
    &[("weights", include_str!("../../../shaders/conv2d_weights_f32.wgsl")), ("gemm", GEMM_TILE), ("bias", "2"), ("out", "3"), ("info", "4")];

/// q8/q4 block storage read as stored: values and scales at bindings 1 and 2; bias, out and info
/// at 3, 4, 5.
const QUANTIZED_WEIGHTS: &[(&str, &str)] = &[
    ("weights", include_str!("../../../shaders/weights_quantized.wgsl")),
    ("gemm", GEMM_TILE),
    ("bias", "3"),
    ("out", "4"),
    ("info", "5"),
];

/// A GEMM kernel with each weight reader.
pub struct Kernels {
    pub f32_weights: Wgsl,
    pub quantized: Wgsl,
}

/// The kernel of `source` with f32 weights and with q8/q4 ones.
pub const fn kernels(name: &'static str, quantized_name: &'static str, source: &'static str) -> Kernels {
    Kernels {
        f32_weights: Wgsl { name, source, placeholders: F32_WEIGHTS, workgroup_size: [8, 8, 1] },
        quantized: Wgsl { name: quantized_name, source, placeholders: QUANTIZED_WEIGHTS, workgroup_size: [8, 8, 1] },
    }
}

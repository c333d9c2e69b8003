//! What the GEMM kernels (`conv2d_gemm.wgsl`, `linear_gemm.wgsl`) share: the tile and
//! workgroup sizes, and the weight readers inserted into them, each with the bindings after it
//! numbered.

use super::launch::Wgsl;

/// Outputs along each side of a workgroup's tile (the WGSL's `TILE`).
pub const TILE: usize = 64;

/// Invocations of a workgroup (the WGSL's `@workgroup_size`): 8 × 4, each a 16 × 8 block.
const WORKGROUP_SIZE: [u32; 3] = [8, 4, 1];

/// The convolution's tile multiply (`gemm_tile.wgsl`), at its placeholder `gemm`.
const GEMM_TILE: &str = include_str!("../../../shaders/gemm_tile.wgsl");

/// The convolution's f32 weights, a value at a time: `w` at binding 1; bias, out and info at
/// 2, 3, 4.
pub const CONV_F32_WEIGHTS: &[(&str, &str)] =
    &[("weights", include_str!("../../../shaders/conv2d_weights_f32.wgsl")), ("gemm", GEMM_TILE), ("bias", "2"), ("out", "3"), ("info", "4")];

/// The Linear kernel's f32 weights, four values at a time: `w` at binding 1; bias, out and info
/// at 2, 3, 4.
pub const LINEAR_F32_WEIGHTS: &[(&str, &str)] =
    &[("weights", include_str!("../../../shaders/linear_weights_f32.wgsl")), ("bias", "2"), ("out", "3"), ("info", "4")];

/// q8/q4 block storage read as stored: values and scales at bindings 1 and 2; bias, out and info
/// at 3, 4, 5. (`gemm` is the convolution's; the Linear kernel has no such placeholder.)
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

/// The kernel of `source` with the f32 weights of `f32_weights` and with q8/q4 ones.
pub const fn kernels(name: &'static str, quantized_name: &'static str, source: &'static str, f32_weights: &'static [(&'static str, &'static str)]) -> Kernels {
    Kernels {
        f32_weights: Wgsl { name, source, placeholders: f32_weights, workgroup_size: WORKGROUP_SIZE },
        quantized: Wgsl { name: quantized_name, source, placeholders: QUANTIZED_WEIGHTS, workgroup_size: WORKGROUP_SIZE },
    }
}

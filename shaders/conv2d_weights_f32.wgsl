// Weights of the GEMM kernels, conv2d_gemm.wgsl and linear_gemm.wgsl (inserted at their
// placeholder `weights`): an f32 [M, K] row-major matrix.

@group(0) @binding(1) var<storage, read_write> w: array<f32>;

fn weight(flat: u32) -> f32 {
    return w[flat];
}

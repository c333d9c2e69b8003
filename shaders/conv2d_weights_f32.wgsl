// f32 weights of conv2d_gemm.wgsl (inserted at its placeholder `weights`): an [M, K] row-major
// matrix, read a value at a time (the convolution's K steps are not contiguous along a row).

@group(0) @binding(1) var<storage, read_write> w: array<f32>;

fn weight(flat: u32) -> f32 {
    return w[flat];
}

// f32 weights of linear_gemm.wgsl (inserted at its placeholder `weights`): an [M, K] row-major
// matrix, K a multiple of 4, read four values at a time.

@group(0) @binding(1) var<storage, read_write> w: array<vec4<f32>>;

// The four values at `flat` .. `flat` + 4 (`flat` a multiple of 4).
fn weight4(flat: u32) -> vec4<f32> {
    return w[flat / 4u];
}

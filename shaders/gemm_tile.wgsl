// The register-blocked tile multiply shared by the GEMM kernels (conv2d_gemm.wgsl,
// linear_gemm.wgsl; inserted at their placeholder `gemm`): out[m, n] = Σ_k w[m, k] · x[k, n]
// over a 64 (m) × 64 (n) tile of the output.
//
// Algorithm: a workgroup of 8 × 8 invocations; each keeps an 8 × 8 block of the tile in
// registers (out rows lid.y · 8 + 0..8, columns lid.x · 8 + 0..8, two vec4s of columns per
// row). The kernel loads a K step of 32 — 64 × 32 weights (`set_weight`) and 32 × 64 values of
// the other operand (`set_input`), 32 of each per invocation — into workgroup memory, then
// `multiply_step` accumulates every invocation's block over those 32 (fma, f32).
// Tile sizes: 64 × 64 outputs, K step 32; workgroup memory 2 · 32 · 64 · 4 B = 16 KiB (WebGPU's
// guaranteed maximum); 64 invocations. Measured on lavapipe (a conv 3×3, 320 → 320 channels on
// [1, 320, 32, 32]) against the first version, 16 × 16 invocations of 4 × 4 with K step 16:
// 2.4× faster; K step 16 here: 1.6× slower.
// The accumulators are sixteen variables, not an array: llvmpipe keeps an array that a loop
// variable indexes anywhere in memory, which made the same kernel 2.3× slower there.

const TILE: u32 = 64u;
const STEP: u32 = 32u;

// [k within the step · 16 + m or n / 4][m or n % 4]
var<workgroup> w_tile: array<vec4<f32>, 512>;
var<workgroup> x_tile: array<vec4<f32>, 512>;

var<private> acc0: vec4<f32>;
var<private> acc1: vec4<f32>;
var<private> acc2: vec4<f32>;
var<private> acc3: vec4<f32>;
var<private> acc4: vec4<f32>;
var<private> acc5: vec4<f32>;
var<private> acc6: vec4<f32>;
var<private> acc7: vec4<f32>;
var<private> acc8: vec4<f32>;
var<private> acc9: vec4<f32>;
var<private> acc10: vec4<f32>;
var<private> acc11: vec4<f32>;
var<private> acc12: vec4<f32>;
var<private> acc13: vec4<f32>;
var<private> acc14: vec4<f32>;
var<private> acc15: vec4<f32>;

// Weight (row `m` of the tile, `kk` within the step).
fn set_weight(kk: u32, m: u32, value: f32) {
    w_tile[kk * 16u + m / 4u][m % 4u] = value;
}

// The other operand (`kk` within the step, column `n` of the tile).
fn set_input(kk: u32, n: u32, value: f32) {
    x_tile[kk * 16u + n / 4u][n % 4u] = value;
}

// Accumulates the step loaded (between the loaders' barrier and the next step's).
fn multiply_step(lid: vec3<u32>) {
    for (var kk = 0u; kk < STEP; kk = kk + 1u) {
        let a0 = w_tile[kk * 16u + lid.y * 2u];
        let a1 = w_tile[kk * 16u + lid.y * 2u + 1u];
        let b0 = x_tile[kk * 16u + lid.x * 2u];
        let b1 = x_tile[kk * 16u + lid.x * 2u + 1u];
        acc0 = fma(vec4<f32>(a0.x), b0, acc0);
        acc1 = fma(vec4<f32>(a0.x), b1, acc1);
        acc2 = fma(vec4<f32>(a0.y), b0, acc2);
        acc3 = fma(vec4<f32>(a0.y), b1, acc3);
        acc4 = fma(vec4<f32>(a0.z), b0, acc4);
        acc5 = fma(vec4<f32>(a0.z), b1, acc5);
        acc6 = fma(vec4<f32>(a0.w), b0, acc6);
        acc7 = fma(vec4<f32>(a0.w), b1, acc7);
        acc8 = fma(vec4<f32>(a1.x), b0, acc8);
        acc9 = fma(vec4<f32>(a1.x), b1, acc9);
        acc10 = fma(vec4<f32>(a1.y), b0, acc10);
        acc11 = fma(vec4<f32>(a1.y), b1, acc11);
        acc12 = fma(vec4<f32>(a1.z), b0, acc12);
        acc13 = fma(vec4<f32>(a1.z), b1, acc13);
        acc14 = fma(vec4<f32>(a1.w), b0, acc14);
        acc15 = fma(vec4<f32>(a1.w), b1, acc15);
    }
}

// The invocation's block when every step is done: [row i · 2 + h] = columns h · 4 + 0..4 of
// row i (tile row lid.y · 8 + i, tile column lid.x · 8 + h · 4 + j).
fn block() -> array<vec4<f32>, 16> {
    return array<vec4<f32>, 16>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, acc8, acc9, acc10, acc11, acc12, acc13, acc14, acc15);
}

// The register-blocked tile multiply of conv2d_gemm.wgsl (inserted at its placeholder `gemm`):
// out[m, n] = Σ_k w[m, k] · x[k, n] over a 64 (m) × 64 (n) tile of the output, K-major in
// workgroup memory (vec4s along m and along n) because the convolution's patch operand is
// contiguous along pixels (n), not along K. (linear_gemm.wgsl, whose operands are both
// contiguous along K, keeps its tiles K-inner instead.)
//
// Algorithm: a workgroup of 8 × 4 invocations; each keeps a 16 (m) × 8 (n) block of the tile in
// registers (out rows lid.y · 16 + 0..16, columns lid.x · 8 + 0..8, two vec4s of columns per
// row). The kernel loads a K step of 32 — 64 × 32 weights (`set_weights`) and 32 × 64 values
// of the other operand (`set_inputs`), each as vec4s of four consecutive rows or columns, 16
// of each per invocation — into workgroup memory, then `multiply_step` accumulates every
// invocation's block over those 32 (fma, f32): per k, 6 vec4 reads for 128 multiply-adds.
// Tile sizes: 64 × 64 outputs, K step 32; workgroup memory 2 · 32 · 64 · 4 B = 16 KiB (WebGPU's
// guaranteed maximum); 32 invocations.
// Measured on lavapipe (a conv 3×3, 320 → 320 channels on [1, 320, 32, 32]; the last figure
// with a throwaway probe timing ops in turn, `kernel_bench conv` for the SDXL shapes): the
// first version, 16 × 16 invocations of 4 × 4 with K step 16, ran at 2.75 GFLOP/s; 8 × 8
// invocations of 8 × 8 with K step 32, 6.7 (K step 16 there: 4.2); this one, 16 × 8 blocks
// stored a vec4 at a time, 1.4× that (0.74–0.77× burn's f32 matmul in the
// same run, from 0.55–0.67×). llvmpipe runs every workgroup-memory read or write whose address
// differs between invocations as a loop over the SIMD lanes, so reads per multiply-add and
// components per access decide its speed; on a GPU the same blocking is the usual SIMT GEMM.
// The accumulators are variables, not an array: llvmpipe keeps an array that a loop variable
// indexes anywhere in memory, which made an earlier version 2.3× slower there.

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
var<private> acc16: vec4<f32>;
var<private> acc17: vec4<f32>;
var<private> acc18: vec4<f32>;
var<private> acc19: vec4<f32>;
var<private> acc20: vec4<f32>;
var<private> acc21: vec4<f32>;
var<private> acc22: vec4<f32>;
var<private> acc23: vec4<f32>;
var<private> acc24: vec4<f32>;
var<private> acc25: vec4<f32>;
var<private> acc26: vec4<f32>;
var<private> acc27: vec4<f32>;
var<private> acc28: vec4<f32>;
var<private> acc29: vec4<f32>;
var<private> acc30: vec4<f32>;
var<private> acc31: vec4<f32>;

// Weights of rows 4 mq .. 4 mq + 4 of the tile at `kk` within the step.
fn set_weights(kk: u32, mq: u32, values: vec4<f32>) {
    w_tile[kk * 16u + mq] = values;
}

// The other operand at `kk` within the step, columns 4 nq .. 4 nq + 4 of the tile.
fn set_inputs(kk: u32, nq: u32, values: vec4<f32>) {
    x_tile[kk * 16u + nq] = values;
}

// Accumulates the step loaded (between the loaders' barrier and the next step's).
fn multiply_step(lid: vec3<u32>) {
    for (var kk = 0u; kk < STEP; kk = kk + 1u) {
        let a0 = w_tile[kk * 16u + lid.y * 4u + 0u];
        let a1 = w_tile[kk * 16u + lid.y * 4u + 1u];
        let a2 = w_tile[kk * 16u + lid.y * 4u + 2u];
        let a3 = w_tile[kk * 16u + lid.y * 4u + 3u];
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
        acc16 = fma(vec4<f32>(a2.x), b0, acc16);
        acc17 = fma(vec4<f32>(a2.x), b1, acc17);
        acc18 = fma(vec4<f32>(a2.y), b0, acc18);
        acc19 = fma(vec4<f32>(a2.y), b1, acc19);
        acc20 = fma(vec4<f32>(a2.z), b0, acc20);
        acc21 = fma(vec4<f32>(a2.z), b1, acc21);
        acc22 = fma(vec4<f32>(a2.w), b0, acc22);
        acc23 = fma(vec4<f32>(a2.w), b1, acc23);
        acc24 = fma(vec4<f32>(a3.x), b0, acc24);
        acc25 = fma(vec4<f32>(a3.x), b1, acc25);
        acc26 = fma(vec4<f32>(a3.y), b0, acc26);
        acc27 = fma(vec4<f32>(a3.y), b1, acc27);
        acc28 = fma(vec4<f32>(a3.z), b0, acc28);
        acc29 = fma(vec4<f32>(a3.z), b1, acc29);
        acc30 = fma(vec4<f32>(a3.w), b0, acc30);
        acc31 = fma(vec4<f32>(a3.w), b1, acc31);
    }
}

// The invocation's block when every step is done: [row i · 2 + h] = columns h · 4 + 0..4 of
// row i (tile row lid.y · 16 + i, tile column lid.x · 8 + h · 4 + j).
fn block() -> array<vec4<f32>, 32> {
    return array<vec4<f32>, 32>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, acc8, acc9, acc10, acc11, acc12, acc13, acc14, acc15, acc16, acc17, acc18, acc19, acc20, acc21, acc22, acc23, acc24, acc25, acc26, acc27, acc28, acc29, acc30, acc31);
}

// A Linear layer (PyTorch's nn.Linear): out[n, m] = bias[m] + Σ_k x[n, k] · w[m, k], x [N, K]
// row-major (N = tokens: every dimension of the input but the last), w [M, K] the checkpoint's
// rows, out [N, M]; K a multiple of 4.
//
// Algorithm: a workgroup of 8 × 4 invocations computes a 64 (m) × 64 (n) tile of the output,
// each invocation a 16 × 8 block in registers (out features lid.y + 4 i, tokens lid.x + 8 j).
// Both operands are contiguous along K, so unlike the convolution's tile (gemm_tile.wgsl) the
// tiles here are K-inner: per step of 32 k, 64 rows of each operand as 8 vec4s along k, every
// invocation loading 16 vec4s of each — x as vec4s, the weights by the `weights` reader's
// `weight4` (four values of a row: one vec4 of f32, linear_weights_f32.wgsl, or one word of
// q8/q4 block storage and its scale, weights_quantized.wgsl, so a quantized weight is never
// expanded). The multiply reads, per 4 k, 16 + 8 vec4s for 128 dot products.
// Workgroup memory: 2 · 64 · 32 · 4 B = 16 KiB (WebGPU's guaranteed maximum). A row's vec4
// slot is swizzled (k/4 XOR row % 8) so that on a GPU the invocations of a row of the
// workgroup, reading rows 8 apart, hit distinct banks.
// Measured on lavapipe (a throwaway probe timing ops in turn on 1024 × 640 · 640 × 2560;
// `kernel_bench linear` for SDXL's GEGLU projection, README): the K-major tile of the
// convolution with scalar loads ran this at 0.65–0.76× burn's f32 matmul, its q8/q4 reads at
// 0.86× its f32; this at 0.8–1.0×, q8/q4 at 0.9–1.3× its f32 (one word read per four values).
// Limits: K % 4 == 0; workgroups (⌈N/64⌉, ⌈M/64⌉) each ≤ 65535; every index < 2^32.
// A template (placeholders in double braces, filled by crate/src/kernels/linear.rs): `weights`
// gives bindings from 1 on and `fn weight4(flat) -> vec4<f32>`, its bits per value from this
// file's `weight_bits()`; `bias`, `out`, `info` number the bindings after them.
// Bindings: x [N, K], the weights, bias [M] (read; any tensor where there is none), out [N, M]
// (write), info = [N, K, M, has bias (0/1), weights' own parameters].

@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding({{ bias }}) var<storage, read_write> bias: array<f32>;
@group(0) @binding({{ out }}) var<storage, read_write> out: array<f32>;
@group(0) @binding({{ info }}) var<storage, read> info: array<u32>;

// Bits per value of a quantized weight (the weights' own parameter); unused for f32 weights.
fn weight_bits() -> u32 {
    return info[4];
}

{{ weights }}

const TILE: u32 = 64u;
const STEP: u32 = 32u;

// Rows of the tile (out features; tokens), 32 k each as 8 vec4s: [slot(row, k / 4)].
var<workgroup> w_tile: array<vec4<f32>, 512>;
var<workgroup> x_tile: array<vec4<f32>, 512>;

// A row's vec4 of k 4 k4 .. 4 k4 + 4, swizzled.
fn slot(row: u32, k4: u32) -> u32 {
    return row * 8u + (k4 ^ (row & 7u));
}

@compute @workgroup_size(8, 4)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let n_total = info[0];
    let k_total = info[1];
    let m_total = info[2];
    let has_bias = info[3] == 1u;
    let m0 = group.y * TILE;
    let n0 = group.x * TILE;
    // This invocation loads vec4 `k4` of the step of rows `row + 4 i` of both operands.
    let k4 = local % 8u;
    let row = local / 8u;
    // The block: acc{i}_{h}[j] is out feature lid.y + 4 i, token lid.x + 8 (4 h + j).
    var acc0_0 = vec4<f32>(); var acc0_1 = vec4<f32>();
    var acc1_0 = vec4<f32>(); var acc1_1 = vec4<f32>();
    var acc2_0 = vec4<f32>(); var acc2_1 = vec4<f32>();
    var acc3_0 = vec4<f32>(); var acc3_1 = vec4<f32>();
    var acc4_0 = vec4<f32>(); var acc4_1 = vec4<f32>();
    var acc5_0 = vec4<f32>(); var acc5_1 = vec4<f32>();
    var acc6_0 = vec4<f32>(); var acc6_1 = vec4<f32>();
    var acc7_0 = vec4<f32>(); var acc7_1 = vec4<f32>();
    var acc8_0 = vec4<f32>(); var acc8_1 = vec4<f32>();
    var acc9_0 = vec4<f32>(); var acc9_1 = vec4<f32>();
    var acc10_0 = vec4<f32>(); var acc10_1 = vec4<f32>();
    var acc11_0 = vec4<f32>(); var acc11_1 = vec4<f32>();
    var acc12_0 = vec4<f32>(); var acc12_1 = vec4<f32>();
    var acc13_0 = vec4<f32>(); var acc13_1 = vec4<f32>();
    var acc14_0 = vec4<f32>(); var acc14_1 = vec4<f32>();
    var acc15_0 = vec4<f32>(); var acc15_1 = vec4<f32>();

    for (var k0 = 0u; k0 < k_total; k0 = k0 + STEP) {
        let k = k0 + k4 * 4u;
        for (var i = 0u; i < 16u; i = i + 1u) {
            let r = row + 4u * i;
            var w_value = vec4<f32>();
            var x_value = vec4<f32>();
            if (k < k_total) {
                if (m0 + r < m_total) {
                    w_value = weight4((m0 + r) * k_total + k);
                }
                if (n0 + r < n_total) {
                    x_value = x[((n0 + r) * k_total + k) / 4u];
                }
            }
            w_tile[slot(r, k4)] = w_value;
            x_tile[slot(r, k4)] = x_value;
        }
        workgroupBarrier();
        for (var q = 0u; q < 8u; q = q + 1u) {
            let a0 = w_tile[slot(lid.y + 0u, q)];
            let a1 = w_tile[slot(lid.y + 4u, q)];
            let a2 = w_tile[slot(lid.y + 8u, q)];
            let a3 = w_tile[slot(lid.y + 12u, q)];
            let a4 = w_tile[slot(lid.y + 16u, q)];
            let a5 = w_tile[slot(lid.y + 20u, q)];
            let a6 = w_tile[slot(lid.y + 24u, q)];
            let a7 = w_tile[slot(lid.y + 28u, q)];
            let a8 = w_tile[slot(lid.y + 32u, q)];
            let a9 = w_tile[slot(lid.y + 36u, q)];
            let a10 = w_tile[slot(lid.y + 40u, q)];
            let a11 = w_tile[slot(lid.y + 44u, q)];
            let a12 = w_tile[slot(lid.y + 48u, q)];
            let a13 = w_tile[slot(lid.y + 52u, q)];
            let a14 = w_tile[slot(lid.y + 56u, q)];
            let a15 = w_tile[slot(lid.y + 60u, q)];
            let b0 = x_tile[slot(lid.x + 0u, q)];
            let b1 = x_tile[slot(lid.x + 8u, q)];
            let b2 = x_tile[slot(lid.x + 16u, q)];
            let b3 = x_tile[slot(lid.x + 24u, q)];
            let b4 = x_tile[slot(lid.x + 32u, q)];
            let b5 = x_tile[slot(lid.x + 40u, q)];
            let b6 = x_tile[slot(lid.x + 48u, q)];
            let b7 = x_tile[slot(lid.x + 56u, q)];
            acc0_0 += vec4<f32>(dot(a0, b0), dot(a0, b1), dot(a0, b2), dot(a0, b3));
            acc0_1 += vec4<f32>(dot(a0, b4), dot(a0, b5), dot(a0, b6), dot(a0, b7));
            acc1_0 += vec4<f32>(dot(a1, b0), dot(a1, b1), dot(a1, b2), dot(a1, b3));
            acc1_1 += vec4<f32>(dot(a1, b4), dot(a1, b5), dot(a1, b6), dot(a1, b7));
            acc2_0 += vec4<f32>(dot(a2, b0), dot(a2, b1), dot(a2, b2), dot(a2, b3));
            acc2_1 += vec4<f32>(dot(a2, b4), dot(a2, b5), dot(a2, b6), dot(a2, b7));
            acc3_0 += vec4<f32>(dot(a3, b0), dot(a3, b1), dot(a3, b2), dot(a3, b3));
            acc3_1 += vec4<f32>(dot(a3, b4), dot(a3, b5), dot(a3, b6), dot(a3, b7));
            acc4_0 += vec4<f32>(dot(a4, b0), dot(a4, b1), dot(a4, b2), dot(a4, b3));
            acc4_1 += vec4<f32>(dot(a4, b4), dot(a4, b5), dot(a4, b6), dot(a4, b7));
            acc5_0 += vec4<f32>(dot(a5, b0), dot(a5, b1), dot(a5, b2), dot(a5, b3));
            acc5_1 += vec4<f32>(dot(a5, b4), dot(a5, b5), dot(a5, b6), dot(a5, b7));
            acc6_0 += vec4<f32>(dot(a6, b0), dot(a6, b1), dot(a6, b2), dot(a6, b3));
            acc6_1 += vec4<f32>(dot(a6, b4), dot(a6, b5), dot(a6, b6), dot(a6, b7));
            acc7_0 += vec4<f32>(dot(a7, b0), dot(a7, b1), dot(a7, b2), dot(a7, b3));
            acc7_1 += vec4<f32>(dot(a7, b4), dot(a7, b5), dot(a7, b6), dot(a7, b7));
            acc8_0 += vec4<f32>(dot(a8, b0), dot(a8, b1), dot(a8, b2), dot(a8, b3));
            acc8_1 += vec4<f32>(dot(a8, b4), dot(a8, b5), dot(a8, b6), dot(a8, b7));
            acc9_0 += vec4<f32>(dot(a9, b0), dot(a9, b1), dot(a9, b2), dot(a9, b3));
            acc9_1 += vec4<f32>(dot(a9, b4), dot(a9, b5), dot(a9, b6), dot(a9, b7));
            acc10_0 += vec4<f32>(dot(a10, b0), dot(a10, b1), dot(a10, b2), dot(a10, b3));
            acc10_1 += vec4<f32>(dot(a10, b4), dot(a10, b5), dot(a10, b6), dot(a10, b7));
            acc11_0 += vec4<f32>(dot(a11, b0), dot(a11, b1), dot(a11, b2), dot(a11, b3));
            acc11_1 += vec4<f32>(dot(a11, b4), dot(a11, b5), dot(a11, b6), dot(a11, b7));
            acc12_0 += vec4<f32>(dot(a12, b0), dot(a12, b1), dot(a12, b2), dot(a12, b3));
            acc12_1 += vec4<f32>(dot(a12, b4), dot(a12, b5), dot(a12, b6), dot(a12, b7));
            acc13_0 += vec4<f32>(dot(a13, b0), dot(a13, b1), dot(a13, b2), dot(a13, b3));
            acc13_1 += vec4<f32>(dot(a13, b4), dot(a13, b5), dot(a13, b6), dot(a13, b7));
            acc14_0 += vec4<f32>(dot(a14, b0), dot(a14, b1), dot(a14, b2), dot(a14, b3));
            acc14_1 += vec4<f32>(dot(a14, b4), dot(a14, b5), dot(a14, b6), dot(a14, b7));
            acc15_0 += vec4<f32>(dot(a15, b0), dot(a15, b1), dot(a15, b2), dot(a15, b3));
            acc15_1 += vec4<f32>(dot(a15, b4), dot(a15, b5), dot(a15, b6), dot(a15, b7));
        }
        workgroupBarrier();
    }

    let rows = array<vec4<f32>, 32>(acc0_0, acc0_1, acc1_0, acc1_1, acc2_0, acc2_1, acc3_0, acc3_1, acc4_0, acc4_1, acc5_0, acc5_1, acc6_0, acc6_1, acc7_0, acc7_1, acc8_0, acc8_1, acc9_0, acc9_1, acc10_0, acc10_1, acc11_0, acc11_1, acc12_0, acc12_1, acc13_0, acc13_1, acc14_0, acc14_1, acc15_0, acc15_1);
    for (var i = 0u; i < 16u; i = i + 1u) {
        let m = m0 + lid.y + 4u * i;
        var b = 0.0;
        if (has_bias && m < m_total) {
            b = bias[m];
        }
        for (var h = 0u; h < 2u; h = h + 1u) {
            let v = rows[i * 2u + h];
            for (var j = 0u; j < 4u; j = j + 1u) {
                let n = n0 + lid.x + 8u * (h * 4u + j);
                if (m < m_total && n < n_total) {
                    out[n * m_total + m] = v[j] + b;
                }
            }
        }
    }
}

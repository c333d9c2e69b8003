// A Linear layer (PyTorch's nn.Linear): out[n, m] = bias[m] + Σ_k x[n, k] · w[m, k], x [N, K]
// row-major (N = tokens: every dimension of the input but the last), w [M, K] the checkpoint's
// rows, out [N, M]. The GEMM of conv2d_gemm.wgsl with x's rows for its patches.
//
// Algorithm: the tile multiply of gemm_tile.wgsl (64 out features × 64 tokens per workgroup of
// 8 × 8 invocations, K step 32), its weights read by the `weights` reader — q8/q4 block
// storage dequantized as read (weights_quantized.wgsl), so a quantized weight is never expanded
// — or f32 (conv2d_weights_f32.wgsl). Each step, 32 consecutive invocations read 32
// consecutive values of a row of x (and of w).
// Limits: workgroups (⌈N/64⌉, ⌈M/64⌉) each ≤ 65535; every index < 2^32.
// A template (placeholders in double braces, filled by crate/src/kernels/linear.rs): `weights`
// gives bindings from 1 on and `fn weight(flat) -> f32`, its bits per value from this file's
// `weight_bits()`; `bias`, `out`, `info` number the bindings after them; `gemm` is
// gemm_tile.wgsl.
// Bindings: x [N, K], the weights, bias [M] (read; any tensor where there is none), out [N, M]
// (write), info = [N, K, M, has bias (0/1), weights' own parameters].

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding({{ bias }}) var<storage, read_write> bias: array<f32>;
@group(0) @binding({{ out }}) var<storage, read_write> out: array<f32>;
@group(0) @binding({{ info }}) var<storage, read> info: array<u32>;

// Bits per value of a quantized weight (the weights' own parameter); unused for f32 weights.
fn weight_bits() -> u32 {
    return info[4];
}

{{ weights }}

{{ gemm }}

@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let n_total = info[0];
    let k_total = info[1];
    let m_total = info[2];
    let has_bias = info[3] == 1u;
    let m0 = group.y * TILE;
    let n0 = group.x * TILE;
    // This invocation loads k `kk` within the step of weight rows m0 + row + 2 i and of x's rows
    // n0 + row + 2 i.
    let kk = local % STEP;
    let row = local / STEP;

    for (var k0 = 0u; k0 < k_total; k0 = k0 + STEP) {
        let k = k0 + kk;
        for (var i = 0u; i < 32u; i = i + 1u) {
            let r = row + 2u * i;
            var w_value = 0.0;
            var x_value = 0.0;
            if (k < k_total) {
                if (m0 + r < m_total) {
                    w_value = weight((m0 + r) * k_total + k);
                }
                if (n0 + r < n_total) {
                    x_value = x[(n0 + r) * k_total + k];
                }
            }
            set_weight(kk, r, w_value);
            set_input(kk, r, x_value);
        }
        workgroupBarrier();
        multiply_step(lid);
        workgroupBarrier();
    }

    let rows = block();
    for (var i = 0u; i < 8u; i = i + 1u) {
        let m = m0 + lid.y * 8u + i;
        var b = 0.0;
        if (has_bias && m < m_total) {
            b = bias[m];
        }
        for (var h = 0u; h < 2u; h = h + 1u) {
            let v = rows[i * 2u + h];
            for (var j = 0u; j < 4u; j = j + 1u) {
                let n = n0 + lid.x * 8u + h * 4u + j;
                if (m < m_total && n < n_total) {
                    out[n * m_total + m] = v[j] + b;
                }
            }
        }
    }
}

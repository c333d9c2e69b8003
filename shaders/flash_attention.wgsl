// Fused multi-head attention, flash-style: softmax(q·kᵀ·scale [+ causal mask])·v with no score
// buffer in global memory.
//
// Layout: q [B, Nq, H·64], k and v [B, Nk, H·64], out [B, Nq, H·64], row-major: the Linear
// projections' own layout, so heads are neither split nor merged by copies.
// Algorithm: a workgroup takes 64 queries of one (batch, head), one query per invocation, its
// row (pre-scaled) and its output accumulator in registers as 16 + 16 named vec4s (no private
// arrays: indexing those dynamically sends them to memory on CPU implementations). Keys and
// values stream through workgroup memory in tiles of 32; for each key an invocation updates an
// online softmax in f32 (running max m and sum l; the accumulator rescaled by exp(m_old − m_new)
// when the max grows). Causal: keys after a query's own position are skipped, and tiles after
// the workgroup's last query are not loaded. Two barriers per 32 keys.
// Tile sizes: 64 queries × 32 keys; workgroup memory 2 · 32 · 64 · 4 B = 16 KiB (WebGPU's
// guaranteed maxComputeWorkgroupStorageSize); 64 invocations; no subgroups.
// Limits: head_dim exactly 64; workgroups (⌈Nq/64⌉, B·H) each ≤ 65535; indices < 2^32.
// (The loops over a row's 16 vec4s are written out, one line per vec4.)
// Bindings: q, k, v (read), out (write), info = [Nq, Nk, H, causal (0/1), bits(scale)].

@group(0) @binding(0) var<storage, read_write> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> info: array<u32>;

const QUERIES: u32 = 64u;  // per workgroup, one per invocation
const KEYS: u32 = 32u;     // per tile
const D4: u32 = 16u;       // head_dim / 4

var<workgroup> k_tile: array<vec4<f32>, 512>;  // KEYS · D4
var<workgroup> v_tile: array<vec4<f32>, 512>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let n_q = info[0];
    let n_k = info[1];
    let heads = info[2];
    let causal = info[3] != 0u;
    let scale = bitcast<f32>(info[4]);
    let batch = group.y / heads;
    let head = group.y % heads;
    let first_query = group.x * QUERIES;
    let row = first_query + local;
    let in_range = row < n_q;
    let row_stride = heads * D4;  // vec4s per token

    let q_base = (batch * n_q + min(row, n_q - 1u)) * row_stride + head * D4;
    let q0 = q[q_base + 0u] * scale;
    let q1 = q[q_base + 1u] * scale;
    let q2 = q[q_base + 2u] * scale;
    let q3 = q[q_base + 3u] * scale;
    let q4 = q[q_base + 4u] * scale;
    let q5 = q[q_base + 5u] * scale;
    let q6 = q[q_base + 6u] * scale;
    let q7 = q[q_base + 7u] * scale;
    let q8 = q[q_base + 8u] * scale;
    let q9 = q[q_base + 9u] * scale;
    let q10 = q[q_base + 10u] * scale;
    let q11 = q[q_base + 11u] * scale;
    let q12 = q[q_base + 12u] * scale;
    let q13 = q[q_base + 13u] * scale;
    let q14 = q[q_base + 14u] * scale;
    let q15 = q[q_base + 15u] * scale;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var a8 = vec4<f32>(0.0);
    var a9 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0);
    var a11 = vec4<f32>(0.0);
    var a12 = vec4<f32>(0.0);
    var a13 = vec4<f32>(0.0);
    var a14 = vec4<f32>(0.0);
    var a15 = vec4<f32>(0.0);
    var m = -3.0e38;
    var l = 0.0;

    // Keys this workgroup needs: all, or (causal) up to its last query.
    var keys_needed = n_k;
    if (causal) {
        keys_needed = min(n_k, min(first_query + QUERIES, n_q));
    }
    let kv_base = batch * n_k * row_stride + head * D4;
    for (var start = 0u; start < keys_needed; start = start + KEYS) {
        // 32 keys × 16 vec4s = 512 per tile, 8 per invocation.
        for (var j = local; j < KEYS * D4; j = j + QUERIES) {
            let key = start + j / D4;
            var k_value = vec4<f32>(0.0);
            var v_value = vec4<f32>(0.0);
            if (key < n_k) {
                let at = kv_base + key * row_stride + j % D4;
                k_value = k[at];
                v_value = v[at];
            }
            k_tile[j] = k_value;
            v_tile[j] = v_value;
        }
        workgroupBarrier();

        var count = min(KEYS, n_k - start);
        if (causal) {
            count = min(count, select(0u, row + 1u - start, row + 1u > start));
        }
        if (in_range) {
            for (var c = 0u; c < count; c = c + 1u) {
                let at = c * D4;
                let s = dot(q0, k_tile[at + 0u]) + dot(q1, k_tile[at + 1u]) + dot(q2, k_tile[at + 2u]) + dot(q3, k_tile[at + 3u]) + dot(q4, k_tile[at + 4u]) + dot(q5, k_tile[at + 5u]) + dot(q6, k_tile[at + 6u]) + dot(q7, k_tile[at + 7u]) + dot(q8, k_tile[at + 8u]) + dot(q9, k_tile[at + 9u]) + dot(q10, k_tile[at + 10u]) + dot(q11, k_tile[at + 11u]) + dot(q12, k_tile[at + 12u]) + dot(q13, k_tile[at + 13u]) + dot(q14, k_tile[at + 14u]) + dot(q15, k_tile[at + 15u]);
                let m_new = max(m, s);
                let correction = exp(m - m_new);
                let p = exp(s - m_new);
                l = l * correction + p;
                a0 = a0 * correction + p * v_tile[at + 0u];
                a1 = a1 * correction + p * v_tile[at + 1u];
                a2 = a2 * correction + p * v_tile[at + 2u];
                a3 = a3 * correction + p * v_tile[at + 3u];
                a4 = a4 * correction + p * v_tile[at + 4u];
                a5 = a5 * correction + p * v_tile[at + 5u];
                a6 = a6 * correction + p * v_tile[at + 6u];
                a7 = a7 * correction + p * v_tile[at + 7u];
                a8 = a8 * correction + p * v_tile[at + 8u];
                a9 = a9 * correction + p * v_tile[at + 9u];
                a10 = a10 * correction + p * v_tile[at + 10u];
                a11 = a11 * correction + p * v_tile[at + 11u];
                a12 = a12 * correction + p * v_tile[at + 12u];
                a13 = a13 * correction + p * v_tile[at + 13u];
                a14 = a14 * correction + p * v_tile[at + 14u];
                a15 = a15 * correction + p * v_tile[at + 15u];
                m = m_new;
            }
        }
        workgroupBarrier();
    }

    if (in_range) {
        let o_base = (batch * n_q + row) * row_stride + head * D4;
        let inv = 1.0 / l;
        out[o_base + 0u] = a0 * inv;
        out[o_base + 1u] = a1 * inv;
        out[o_base + 2u] = a2 * inv;
        out[o_base + 3u] = a3 * inv;
        out[o_base + 4u] = a4 * inv;
        out[o_base + 5u] = a5 * inv;
        out[o_base + 6u] = a6 * inv;
        out[o_base + 7u] = a7 * inv;
        out[o_base + 8u] = a8 * inv;
        out[o_base + 9u] = a9 * inv;
        out[o_base + 10u] = a10 * inv;
        out[o_base + 11u] = a11 * inv;
        out[o_base + 12u] = a12 * inv;
        out[o_base + 13u] = a13 * inv;
        out[o_base + 14u] = a14 * inv;
        out[o_base + 15u] = a15 * inv;
    }
}

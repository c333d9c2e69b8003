// Fused multi-head attention, flash-style: softmax(q·kᵀ·scale [+ causal mask])·v with no score
// buffer in global memory.
//
// Layout: q [B, Nq, H·64], k and v [B, Nk, H·64], out [B, Nq, H·64], row-major: the Linear
// projections' own layout, so heads are neither split nor merged by copies.
// Algorithm: a workgroup takes 64 queries of one (batch, head), one query per invocation (its
// row and its output accumulator in registers, as vec4s). Keys and values stream through
// workgroup memory in tiles of 32: each invocation scores its query against the tile, and an
// online softmax in f32 (running max m, running sum l; the accumulator rescaled by exp(m_old −
// m_new) once per tile) adds the tile's values. Causal: keys after a query's own position are
// skipped, and tiles after the workgroup's last query are not loaded.
// Tile sizes: 64 queries × 32 keys; workgroup memory 2 · 32 · 64 · 4 B = 16 KiB (WebGPU's
// guaranteed maxComputeWorkgroupStorageSize), 64 invocations, no subgroups.
// Limits: head_dim exactly 64; workgroups (⌈Nq/64⌉, B·H) each ≤ 65535; buffers 16-byte aligned.
// Bindings: q, k, v (read), out (write), info = [Nq, Nk, H, causal (0/1), bits(scale)].

@group(0) @binding(0) var<storage, read_write> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> info: array<u32>;

const QUERIES: u32 = 64u;   // per workgroup, one per invocation
const KEYS: u32 = 32u;      // per tile
const D4: u32 = 16u;        // head_dim / 4

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

    var query: array<vec4<f32>, 16>;
    var acc: array<vec4<f32>, 16>;
    let q_base = (batch * n_q + min(row, n_q - 1u)) * row_stride + head * D4;
    for (var i = 0u; i < D4; i = i + 1u) {
        query[i] = q[q_base + i] * scale;
        acc[i] = vec4<f32>(0.0);
    }
    var m = -3.0e38;
    var l = 0.0;

    // Keys this workgroup needs: all, or (causal) up to its last query.
    var keys_needed = n_k;
    if (causal) {
        keys_needed = min(n_k, min(first_query + QUERIES, n_q));
    }
    let kv_base = batch * n_k * row_stride + head * D4;
    var scores: array<f32, 32>;
    for (var start = 0u; start < keys_needed; start = start + KEYS) {
        // 32 keys × 16 vec4s = 512 per tile, 8 per invocation.
        for (var j = local; j < KEYS * D4; j = j + QUERIES) {
            let key = start + j / D4;
            if (key < n_k) {
                let at = kv_base + key * row_stride + j % D4;
                k_tile[j] = k[at];
                v_tile[j] = v[at];
            } else {
                k_tile[j] = vec4<f32>(0.0);
                v_tile[j] = vec4<f32>(0.0);
            }
        }
        workgroupBarrier();

        var count = min(KEYS, n_k - start);
        if (causal) {
            count = min(count, select(0u, row + 1u - start, row + 1u > start));
        }
        if (in_range && count > 0u) {
            var tile_max = -3.0e38;
            for (var c = 0u; c < count; c = c + 1u) {
                var s = 0.0;
                for (var i = 0u; i < D4; i = i + 1u) {
                    s = s + dot(query[i], k_tile[c * D4 + i]);
                }
                scores[c] = s;
                tile_max = max(tile_max, s);
            }
            let m_new = max(m, tile_max);
            let correction = exp(m - m_new);
            l = l * correction;
            for (var i = 0u; i < D4; i = i + 1u) {
                acc[i] = acc[i] * correction;
            }
            for (var c = 0u; c < count; c = c + 1u) {
                let p = exp(scores[c] - m_new);
                l = l + p;
                for (var i = 0u; i < D4; i = i + 1u) {
                    acc[i] = acc[i] + p * v_tile[c * D4 + i];
                }
            }
            m = m_new;
        }
        workgroupBarrier();
    }

    if (in_range) {
        let o_base = (batch * n_q + row) * row_stride + head * D4;
        let inv = 1.0 / l;
        for (var i = 0u; i < D4; i = i + 1u) {
            out[o_base + i] = acc[i] * inv;
        }
    }
}

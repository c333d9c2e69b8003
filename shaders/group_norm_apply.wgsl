// GroupNorm's normalization and affine transform, optionally followed by SiLU, in one pass:
// y = (x − mean) · rstd · gamma[c] + beta[c], then y · sigmoid(y) when `silu` is set.
//
// Algorithm: one invocation per element of the NCHW input, 256 per workgroup; the statistics
// come from group_norm_stats.wgsl. Elements beyond 65535 workgroups spill into the second
// dispatch dimension (index = x + y · 65535 · 256).
// Limits: elements < 2^32.
// Bindings: x, stats (2 per (batch, group)), gamma [C], beta [C] (read), y (write),
// info = [elements, pixels per channel (H·W), channels C, values per group, silu (0 or 1)].

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> info: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let index = id.x + id.y * 65535u * 256u;
    if (index >= info[0]) { return; }
    let channel = (index / info[1]) % info[2];
    let group = index / info[3];
    let normalized = (x[index] - stats[2u * group]) * stats[2u * group + 1u];
    var value = normalized * gamma[channel] + beta[channel];
    if (info[4] != 0u) {
        value = value / (1.0 + exp(-value));
    }
    y[index] = value;
}

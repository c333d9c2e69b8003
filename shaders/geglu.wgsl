// GEGLU's gate (diffusers' `GEGLU`: `hidden, gate = proj(x).chunk(2, dim=-1)`, then
// `hidden * gelu(gate)`) in one pass over the projection's output:
// out[r, j] = p[r, j] · GELU(p[r, inner + j]), GELU(g) = g · (1 + erf(g / √2)) / 2, exact GELU
// with erf as burn computes it (Abramowitz & Stegun 7.1.26, absolute error ≤ 1.5e-7; WGSL has
// no erf), so the result is burn's `hidden * gelu(gate)` up to rounding.
//
// Algorithm: one invocation per four consecutive outputs of a row (vec4 loads and store), 256
// per workgroup; quads beyond 65535 workgroups spill into the second dispatch dimension
// (index = x + y · 65535 · 256).
// Limits: inner (the half width) a multiple of 4; quads < 2^32.
// Bindings: p [rows, 2 · inner] (read), out [rows, inner] (write),
// info = [quads (rows · inner / 4), inner / 4].

@group(0) @binding(0) var<storage, read_write> p: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> info: array<u32>;

// erf(x) for x ≥ 0 (A&S 7.1.26, the constants burn's cubecl uses).
fn erf_positive(x: vec4<f32>) -> vec4<f32> {
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let poly = (((1.0614054 * t - 1.453152) * t + 1.4214137) * t - 0.28449674) * t + 0.2548296;
    return 1.0 - poly * t * exp(-x * x);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let index = id.x + id.y * 65535u * 256u;
    if (index >= info[0]) { return; }
    let quads_per_row = info[1];
    let row = index / quads_per_row;
    let column = index - row * quads_per_row;
    let hidden = p[row * 2u * quads_per_row + column];
    let gate = p[(row * 2u + 1u) * quads_per_row + column];
    let scaled = gate / 1.4142135;
    let magnitude = erf_positive(abs(scaled));
    let erf = select(magnitude, -magnitude, scaled < vec4<f32>(0.0));
    out[index] = hidden * (gate * (erf + 1.0) / 2.0);
}

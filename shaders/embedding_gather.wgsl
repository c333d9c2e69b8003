// An embedding lookup on a block-quantized table: out[i, c] = table[ids[i], c] for a table of
// `rows` × `width` held as burn stores q8/q4 on the device, each value dequantized as read, so
// no f32 copy of the table exists (CLIP's token tables: 49,408 × 1280 values).
//
// Algorithm: one invocation per output value, 256 per workgroup; values beyond 65535 workgroups
// spill into the second dispatch dimension (index = x + y · 65535 · 256).
// Limits: ids within the table (checked on the host); ids · width and rows · width < 2^32.
// Weights: a template (placeholders in double braces, filled by crate/src/kernels/embedding.rs):
// `weights` is weights_quantized.wgsl (bindings 1 and 2, `fn weight(flat) -> f32`), which calls
// this file's `weight_bits()`.
// Bindings: ids [n] (i32, read), the table's values and scales, out [n, width] (write),
// info = [n, width, bits per value (8 or 4)].

@group(0) @binding(0) var<storage, read_write> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> info: array<u32>;

fn weight_bits() -> u32 {
    return info[2];
}

{{ weights }}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let index = id.x + id.y * 65535u * 256u;
    let width = info[1];
    if (index >= info[0] * width) { return; }
    let row = u32(ids[index / width]);
    out[index] = weight(row * width + index % width);
}

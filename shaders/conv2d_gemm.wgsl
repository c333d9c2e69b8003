// 2-D convolution (NCHW, groups 1, dilation 1) as an implicit GEMM with the bias fused:
// out[b, m, p] = bias[m] + Σ_k w[m, k] · x̂[k, (b, p)], where k runs over (in channel, ky, kx)
// and x̂ is the input patch matrix (im2col), read straight from the input by the tile loader,
// never stored. M = out channels, N = batch · output pixels, K = in channels · kh · kw.
//
// Algorithm: a workgroup of 16 × 16 invocations computes a 64 (out channels) × 64 (pixels) tile
// of the output, each invocation a 4 × 4 block of it in registers. K advances 16 at a time:
// 64 × 16 weights and 16 × 64 patch values are loaded into workgroup memory (4 of each per
// invocation; the pixel an invocation loads is fixed, so its coordinates are computed once),
// then every invocation accumulates its 4 × 4 block over those 16. f32 throughout.
// Tile sizes: 64 × 64 outputs, K step 16; workgroup memory 2 · 16 · 64 · 4 B = 8 KiB; 256
// invocations.
// Upsampling: with `up` = 1 the input is read as if upsampled ×2 by nearest neighbour first
// (diffusers' `Upsample2D`: F.interpolate(scale_factor=2.0, mode="nearest") then the conv): the
// loader reads x[iy / 2, ix / 2] of a 2H × 2W image that is never stored. 0: as it is.
// Limits: workgroups (⌈N/64⌉, ⌈M/64⌉) each ≤ 65535; every index < 2^32.
// Weights: a template (placeholders in double braces, filled by crate/src/kernels/conv.rs). The
// placeholder `weights` is one of conv2d_weights_f32.wgsl (an f32 [M, C·kh·kw] row-major
// matrix: the checkpoint's rows) or weights_quantized.wgsl (q8/q4 block storage, dequantized
// as read, its bits per value from this file's `weight_bits()`): its bindings from 1 on and
// `fn weight(flat) -> f32`; the placeholders `bias`, `out` and `info` number the bindings after
// them.
// Bindings: x [B, C, H, W], the weights, bias [M] (read), out [B, M, Ho, Wo] (write),
// info = [B, C, H, W, M, Ho, Wo, kh, kw, stride, pad top, pad left, up, weights' own parameters]
// (H and W the stored input's).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding({{ bias }}) var<storage, read_write> bias: array<f32>;
@group(0) @binding({{ out }}) var<storage, read_write> out: array<f32>;
@group(0) @binding({{ info }}) var<storage, read> info: array<u32>;

// Bits per value of a quantized weight (the weights' own parameter); unused for f32 weights.
fn weight_bits() -> u32 {
    return info[13];
}

{{ weights }}

const TILE: u32 = 64u;
const STEP: u32 = 16u;

// [k within the step][4 out channels or 4 pixels]
var<workgroup> w_tile: array<vec4<f32>, 256>;  // STEP · TILE / 4
var<workgroup> x_tile: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) local: u32) {
    let batch = info[0];
    let channels = info[1];
    let up = info[12];
    // The stored input's size, and the size the convolution sees (twice it when upsampling).
    let stored_h = info[2];
    let stored_w = info[3];
    let height = stored_h << up;
    let width = stored_w << up;
    let m_total = info[4];
    let out_h = info[5];
    let out_w = info[6];
    let kh = info[7];
    let kw = info[8];
    let stride = info[9];
    let pad_top = info[10];
    let pad_left = info[11];
    let window = kh * kw;
    let k_total = channels * window;
    let pixels = out_h * out_w;
    let n_total = batch * pixels;
    let m0 = group.y * TILE;
    let n0 = group.x * TILE;

    // The output pixel whose patch values this invocation loads, the same at every K step.
    let my_pixel = local % TILE;
    let my_column = n0 + my_pixel;
    let pixel_in_range = my_column < n_total;
    let my_p = my_column % pixels;
    let image_base = (my_column / pixels) * channels;
    let y0 = (my_p / out_w) * stride;
    let x0 = (my_p % out_w) * stride;

    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var k0 = 0u; k0 < k_total; k0 = k0 + STEP) {
        // Weights: element e of 1024 → out channel e / 16, k e % 16 (a row's 16 consecutive).
        for (var e = local; e < STEP * TILE; e = e + 256u) {
            let m = e / STEP;
            let kk = e % STEP;
            var value = 0.0;
            if (m0 + m < m_total && k0 + kk < k_total) {
                value = weight((m0 + m) * k_total + k0 + kk);
            }
            w_tile[kk * 16u + m / 4u][m % 4u] = value;
        }
        // Patches: element e → k e / 64, pixel e % 64 = this invocation's `my_pixel` for all four
        // (consecutive invocations, consecutive pixels).
        for (var e = local; e < STEP * TILE; e = e + 256u) {
            let kk = e / TILE;
            let k = k0 + kk;
            var value = 0.0;
            if (k < k_total && pixel_in_range) {
                let channel = k / window;
                let rest = k - channel * window;
                let ky = rest / kw;
                let kx = rest - ky * kw;
                // Unsigned: a position above or left of the image wraps past `height`/`width`.
                let iy = y0 + ky - pad_top;
                let ix = x0 + kx - pad_left;
                if (y0 + ky >= pad_top && x0 + kx >= pad_left && iy < height && ix < width) {
                    value = x[(image_base + channel) * stored_h * stored_w + (iy >> up) * stored_w + (ix >> up)];
                }
            }
            x_tile[kk * 16u + my_pixel / 4u][my_pixel % 4u] = value;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < STEP; kk = kk + 1u) {
            let a = w_tile[kk * 16u + lid.y];
            let b = x_tile[kk * 16u + lid.x];
            acc[0] = acc[0] + a.x * b;
            acc[1] = acc[1] + a.y * b;
            acc[2] = acc[2] + a.z * b;
            acc[3] = acc[3] + a.w * b;
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + lid.y * 4u + i;
        if (m >= m_total) { break; }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let column = n0 + lid.x * 4u + j;
            if (column < n_total) {
                let b = column / pixels;
                let p = column % pixels;
                out[(b * m_total + m) * pixels + p] = acc[i][j] + bias[m];
            }
        }
    }
}

// 2-D convolution (NCHW, groups 1, dilation 1) as an implicit GEMM with the bias fused:
// out[b, m, p] = bias[m] + Σ_k w[m, k] · x̂[k, (b, p)], where k runs over (in channel, ky, kx)
// and x̂ is the input patch matrix (im2col), read straight from the input by the tile loader,
// never stored. M = out channels, N = batch · output pixels, K = in channels · kh · kw.
//
// Algorithm: the tile multiply of gemm_tile.wgsl (64 × 64 outputs per workgroup of 8 × 8
// invocations, K step 32), its weights read by the `weights` reader, its patch values straight
// from the input (the pixel an invocation loads is fixed, so its coordinates are computed once).
// Where the in channels are a multiple of 32 (every SDXL conv but the first), K runs over taps
// outer and channels inner — the sum's terms in another order — so a step is 32 channels of
// one (ky, kx): each pixel's input position and bounds are computed once a step, and its 32
// values lie a channel plane apart. Otherwise K runs in the weights' order (channel, ky, kx).
// Upsampling: with `up` = 1 the input is read as if upsampled ×2 by nearest neighbour first
// (diffusers' `Upsample2D`: F.interpolate(scale_factor=2.0, mode="nearest") then the conv): the
// loader reads x[iy / 2, ix / 2] of a 2H × 2W image that is never stored. 0: as it is.
// Limits: workgroups (⌈N/64⌉, ⌈M/64⌉) each ≤ 65535; every index < 2^32.
// Weights: a template (placeholders in double braces, filled by crate/src/kernels/conv.rs). The
// placeholder `weights` is one of conv2d_weights_f32.wgsl (an f32 [M, C·kh·kw] row-major
// matrix: the checkpoint's rows) or weights_quantized.wgsl (q8/q4 block storage, dequantized
// as read, its bits per value from this file's `weight_bits()`): its bindings from 1 on and
// `fn weight(flat) -> f32`; the placeholders `bias`, `out` and `info` number the bindings after
// them; `gemm` is gemm_tile.wgsl.
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

{{ gemm }}

@compute @workgroup_size(8, 8)
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
    let plane = stored_h * stored_w;
    let m0 = group.y * TILE;
    let n0 = group.x * TILE;
    let by_tap = channels % STEP == 0u;

    // The output pixel whose patch values this invocation loads, the same at every K step.
    let my_pixel = local;
    let my_column = n0 + my_pixel;
    let pixel_in_range = my_column < n_total;
    let my_p = my_column % pixels;
    let image_base = (my_column / pixels) * channels;
    let y0 = (my_p / out_w) * stride;
    let x0 = (my_p % out_w) * stride;
    // The weights this invocation loads: k `w_kk` within the step of out channels w_m + 2 i.
    let w_kk = local % STEP;
    let w_m = local / STEP;

    for (var k0 = 0u; k0 < k_total; k0 = k0 + STEP) {
        if (by_tap) {
            // Tap `tap` of channels c0..c0 + 32: one (ky, kx), so one input position per pixel.
            let tap = k0 / channels;
            let c0 = k0 - tap * channels;
            let column = (c0 + w_kk) * window + tap;
            for (var i = 0u; i < 32u; i = i + 1u) {
                let m = w_m + 2u * i;
                var value = 0.0;
                if (m0 + m < m_total) {
                    value = weight((m0 + m) * k_total + column);
                }
                set_weight(w_kk, m, value);
            }
            let ky = tap / kw;
            let kx = tap - ky * kw;
            // Unsigned: a position above or left of the image wraps past `height`/`width`.
            let iy = y0 + ky - pad_top;
            let ix = x0 + kx - pad_left;
            let inside = pixel_in_range && y0 + ky >= pad_top && x0 + kx >= pad_left && iy < height && ix < width;
            let first = (image_base + c0) * plane + (iy >> up) * stored_w + (ix >> up);
            for (var kk = 0u; kk < STEP; kk = kk + 1u) {
                var value = 0.0;
                if (inside) {
                    value = x[first + kk * plane];
                }
                set_input(kk, my_pixel, value);
            }
        } else {
            // K in the weights' own order (channel, ky, kx).
            for (var i = 0u; i < 32u; i = i + 1u) {
                let m = w_m + 2u * i;
                var value = 0.0;
                if (m0 + m < m_total && k0 + w_kk < k_total) {
                    value = weight((m0 + m) * k_total + k0 + w_kk);
                }
                set_weight(w_kk, m, value);
            }
            for (var kk = 0u; kk < STEP; kk = kk + 1u) {
                let k = k0 + kk;
                var value = 0.0;
                if (k < k_total && pixel_in_range) {
                    let channel = k / window;
                    let rest = k - channel * window;
                    let ky = rest / kw;
                    let kx = rest - ky * kw;
                    let iy = y0 + ky - pad_top;
                    let ix = x0 + kx - pad_left;
                    if (y0 + ky >= pad_top && x0 + kx >= pad_left && iy < height && ix < width) {
                        value = x[(image_base + channel) * plane + (iy >> up) * stored_w + (ix >> up)];
                    }
                }
                set_input(kk, my_pixel, value);
            }
        }
        workgroupBarrier();
        multiply_step(lid);
        workgroupBarrier();
    }

    let rows = block();
    for (var i = 0u; i < 8u; i = i + 1u) {
        let m = m0 + lid.y * 8u + i;
        for (var h = 0u; h < 2u; h = h + 1u) {
            let v = rows[i * 2u + h];
            for (var j = 0u; j < 4u; j = j + 1u) {
                let column = n0 + lid.x * 8u + h * 4u + j;
                if (m < m_total && column < n_total) {
                    let b = column / pixels;
                    let p = column % pixels;
                    out[(b * m_total + m) * pixels + p] = v[j] + bias[m];
                }
            }
        }
    }
}

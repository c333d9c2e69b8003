// 2-D convolution (NCHW, groups 1, dilation 1) as an implicit GEMM with the bias fused:
// out[b, m, p] = bias[m] + Σ_k w[m, k] · x̂[k, (b, p)], where k runs over (in channel, ky, kx)
// and x̂ is the input patch matrix (im2col), read straight from the input by the tile loader,
// never stored. M = out channels, N = batch · output pixels, K = in channels · kh · kw.
//
// Algorithm: the tile multiply of gemm_tile.wgsl (64 × 64 outputs per workgroup of 8 × 4
// invocations, K step 32), its weights read by the `weights` reader, its patch values straight
// from the input. Each invocation loads, per step, one k of every out channel's weights and 16
// k of four consecutive output pixels (fixed, so their coordinates are computed once), each
// stored as vec4s of four channels or four pixels.
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

@compute @workgroup_size(8, 4)
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

    // The four output pixels (tile columns 4 nq + j) whose patch values this invocation loads,
    // at k `x_kk + 2 i` within each step.
    let nq = local % 16u;
    let x_kk = local / 16u;
    var in_range: vec4<bool>;
    var image_base: vec4<u32>;
    var y0: vec4<u32>;
    var x0: vec4<u32>;
    for (var j = 0u; j < 4u; j = j + 1u) {
        let column = n0 + nq * 4u + j;
        let p = column % pixels;
        in_range[j] = column < n_total;
        image_base[j] = (column / pixels) * channels;
        y0[j] = (p / out_w) * stride;
        x0[j] = (p % out_w) * stride;
    }
    // The weights this invocation loads: k `local` within the step of every out channel.
    let w_kk = local;

    for (var k0 = 0u; k0 < k_total; k0 = k0 + STEP) {
        // Tap-major: this step is tap `tap` of channels c0..c0 + 32, one (ky, kx), so one input
        // position per pixel. Otherwise K runs in the weights' own order (channel, ky, kx).
        let tap = k0 / channels;
        let c0 = k0 - tap * channels;
        // The weights' column holding k `w_kk` of this step (tap-major steps are never partial).
        let column = select(k0 + w_kk, (c0 + w_kk) * window + tap, by_tap);
        let column_inside = by_tap || column < k_total;
        for (var mq = 0u; mq < 16u; mq = mq + 1u) {
            var values = vec4<f32>();
            for (var j = 0u; j < 4u; j = j + 1u) {
                let m = m0 + mq * 4u + j;
                if (m < m_total && column_inside) {
                    values[j] = weight(m * k_total + column);
                }
            }
            set_weights(w_kk, mq, values);
        }
        if (by_tap) {
            let ky = tap / kw;
            let kx = tap - ky * kw;
            var first: vec4<u32>;
            var inside: vec4<bool>;
            for (var j = 0u; j < 4u; j = j + 1u) {
                // Unsigned: a position above or left of the image wraps past `height`/`width`.
                let iy = y0[j] + ky - pad_top;
                let ix = x0[j] + kx - pad_left;
                inside[j] = in_range[j] && y0[j] + ky >= pad_top && x0[j] + kx >= pad_left && iy < height && ix < width;
                first[j] = (image_base[j] + c0) * plane + (iy >> up) * stored_w + (ix >> up);
            }
            for (var i = 0u; i < 16u; i = i + 1u) {
                let kk = x_kk + 2u * i;
                var values = vec4<f32>();
                for (var j = 0u; j < 4u; j = j + 1u) {
                    if (inside[j]) {
                        values[j] = x[first[j] + kk * plane];
                    }
                }
                set_inputs(kk, nq, values);
            }
        } else {
            for (var i = 0u; i < 16u; i = i + 1u) {
                let kk = x_kk + 2u * i;
                let k = k0 + kk;
                var values = vec4<f32>();
                if (k < k_total) {
                    let channel = k / window;
                    let rest = k - channel * window;
                    let ky = rest / kw;
                    let kx = rest - ky * kw;
                    for (var j = 0u; j < 4u; j = j + 1u) {
                        let iy = y0[j] + ky - pad_top;
                        let ix = x0[j] + kx - pad_left;
                        if (in_range[j] && y0[j] + ky >= pad_top && x0[j] + kx >= pad_left && iy < height && ix < width) {
                            values[j] = x[(image_base[j] + channel) * plane + (iy >> up) * stored_w + (ix >> up)];
                        }
                    }
                }
                set_inputs(kk, nq, values);
            }
        }
        workgroupBarrier();
        multiply_step(lid);
        workgroupBarrier();
    }

    let rows = block();
    for (var i = 0u; i < 16u; i = i + 1u) {
        let m = m0 + lid.y * 16u + i;
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

// A q8/q4 weight matrix read straight from burn's block-quantized storage and dequantized as
// read, so no f32 copy of the weight exists: q8 (4 signed bytes per u32) or q4 (8
// two's-complement nibbles per u32), low bits first, one f32 scale per block of 32 along a row
// (rows of whole blocks, as burn stores them). Inserted at the placeholder `weights` of
// conv2d_gemm.wgsl and embedding_gather.wgsl (which read a value at a time: `weight`) and
// linear_gemm.wgsl (four consecutive values of a row: `weight4`), which define
// `weight_bits()` (8 or 4).

@group(0) @binding(1) var<storage, read_write> values: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<f32>;

// The value at `flat` (row-major index).
fn weight(flat: u32) -> f32 {
    let bits = weight_bits();
    // Values per word: 4 (q8) or 8 (q4), as a shift: no division per value.
    let per_word_log2 = select(3u, 2u, bits == 8u);
    let word = bitcast<i32>(values[flat >> per_word_log2]);
    let first_bit = (flat & ((1u << per_word_log2) - 1u)) * bits;
    return f32(extractBits(word, first_bit, bits)) * scales[flat >> 5u];
}

// The four values at `flat` .. `flat` + 4 (`flat` a multiple of 4, so within one word and
// one block): one word and one scale read.
fn weight4(flat: u32) -> vec4<f32> {
    let bits = weight_bits();
    let per_word_log2 = select(3u, 2u, bits == 8u);
    let word = bitcast<i32>(values[flat >> per_word_log2]);
    let first_bit = (flat & ((1u << per_word_log2) - 1u)) * bits;
    let scale = scales[flat >> 5u];
    return vec4<f32>(
        f32(extractBits(word, first_bit, bits)),
        f32(extractBits(word, first_bit + bits, bits)),
        f32(extractBits(word, first_bit + 2u * bits, bits)),
        f32(extractBits(word, first_bit + 3u * bits, bits))) * scale;
}

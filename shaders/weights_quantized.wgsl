// A q8/q4 weight matrix read straight from burn's block-quantized storage and dequantized as
// read, so no f32 copy of the weight exists: q8 (4 signed bytes per u32) or q4 (8
// two's-complement nibbles per u32), low bits first, one f32 scale per block of 32 along a row
// (rows of whole blocks, as burn stores them). Inserted at the placeholder `weights` of
// conv2d_gemm.wgsl and embedding_gather.wgsl (which read a value at a time: `weight`) and
// linear_gemm.wgsl (four consecutive values of a row: `weight4`), which define
// `weight_bits()` (8 or 4).

@group(0) @binding(1) var<storage, read_write> values: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<f32>;

// The word holding the value at `flat` (row-major index), and that value's first bit in it
// (`bits` = weight_bits(), read once by the caller).
struct WordBits {
    word: i32,
    first_bit: u32,
}

fn word_of(flat: u32, bits: u32) -> WordBits {
    // Values per word: 4 (q8) or 8 (q4), as a shift: no division per value.
    let per_word_log2 = select(3u, 2u, bits == 8u);
    return WordBits(bitcast<i32>(values[flat >> per_word_log2]), (flat & ((1u << per_word_log2) - 1u)) * bits);
}

// The value at `flat` (row-major index).
fn weight(flat: u32) -> f32 {
    let bits = weight_bits();
    let at = word_of(flat, bits);
    return f32(extractBits(at.word, at.first_bit, bits)) * scales[flat >> 5u];
}

// The four values at `flat` .. `flat` + 4 (`flat` a multiple of 4, so within one word and
// one block): one word and one scale read.
fn weight4(flat: u32) -> vec4<f32> {
    let bits = weight_bits();
    let at = word_of(flat, bits);
    return vec4<f32>(
        f32(extractBits(at.word, at.first_bit, bits)),
        f32(extractBits(at.word, at.first_bit + bits, bits)),
        f32(extractBits(at.word, at.first_bit + 2u * bits, bits)),
        f32(extractBits(at.word, at.first_bit + 3u * bits, bits))) * scales[flat >> 5u];
}

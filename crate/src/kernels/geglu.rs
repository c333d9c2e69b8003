//! GEGLU's gate, `hidden · GELU(gate)` over the two halves of the feed-forward projection's
//! output, in one pass (`shaders/geglu.wgsl`) where burn's ops take six (GELU's divide, erf,
//! add, multiply and divide, then the product), each over a [tokens, 4 · dim] half, the widest
//! activations of a transformer block.

use burn::tensor::Tensor;

use super::launch::{Wgsl, empty_f32, launch, to_tensor, workgroups_for, wgpu_f32};

const GEGLU: Wgsl = Wgsl { name: "geglu", source: include_str!("../../../shaders/geglu.wgsl"), placeholders: &[], workgroup_size: [256, 1, 1] };

/// `hidden * gelu(gate)` where `[hidden, gate]` are the halves of `proj`'s last dimension
/// (diffusers' `GEGLU` after its projection, `models::transformer::GeGlu`, which computes it
/// with burn's ops where this is `None`): our kernel where it applies, on wgpu, f32, halves of
/// a multiple of 4 columns.
pub fn fused(proj: &Tensor<3>) -> Option<Tensor<3>> {
    if !super::enabled() {
        return None;
    }
    let [batch, tokens, width] = proj.dims();
    let inner = width / 2;
    let quads = batch * tokens * inner / 4;
    if width % 8 != 0 || quads == 0 || batch * tokens * width > u32::MAX as usize {
        return None;
    }
    let input = wgpu_f32(proj)?;
    let output = empty_f32(&input, [batch, tokens, inner].into());
    launch(GEGLU, workgroups_for(quads, 256), &[&input], &output, &[quads as u32, (inner / 4) as u32]);
    Some(to_tensor(output))
}

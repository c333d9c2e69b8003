//! The feed-forward in pieces of tokens (a bounded GEGLU projection) gives the whole result.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use common::relative_l2;
use sdxl_web::models::transformer::FeedForward;

/// Pieces that do and do not divide the tokens, down to one token at a time, at batch 2.
#[test]
fn a_feed_forward_in_pieces_equals_one_block() {
    let device = Device::flex();
    let ff = FeedForward::new(8, &device);
    for tokens in [1usize, 7, 10, 33] {
        let x = Tensor::<3>::random([2, tokens, 8], Distribution::Normal(0.0, 1.0), &device);
        let whole = ff.net.2.forward(ff.net.0.forward(x.clone())).into_data();
        // One token's projection at batch 2: 2 · 64 values.
        let row_bytes = 2 * 64 * size_of::<f32>() as u64;
        for rows in [1, 3, 4, tokens.saturating_sub(1).max(1), tokens, 1000] {
            let pieces = ff.forward_within(x.clone(), rows as u64 * row_bytes);
            assert_eq!(pieces.dims(), [2, tokens, 8]);
            let error = relative_l2(&pieces.into_data(), &whole);
            assert!(error < 1e-6, "{tokens} tokens, {rows} per piece: {error:e}");
        }
        // A bound below one token's row still goes a token at a time.
        let error = relative_l2(&ff.forward_within(x, 1).into_data(), &whole);
        assert!(error < 1e-6, "{tokens} tokens, below one row: {error:e}");
    }
}

//! Attention over query chunks (bounded score buffers) gives the one-block result.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use common::relative_l2;
use sdxl_web::models::attention::scaled_dot_product_within;

/// Self (causal or not) and cross attention, chunks that do and do not divide the tokens, down
/// to one query row at a time.
#[test]
fn chunked_attention_equals_one_block() {
    let device = Device::flex();
    let random = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    for (tokens, keys, causal) in [(10, 10, false), (10, 10, true), (10, 7, false), (77, 77, true)] {
        let (q, k, v) = (random([2, 3, tokens, 8]), random([2, 3, keys, 8]), random([2, 3, keys, 8]));
        let whole = scaled_dot_product_within(q.clone(), k.clone(), v.clone(), causal, usize::MAX).into_data();
        let row_bytes = 2 * 3 * keys * size_of::<f32>();
        for rows in [1, 3, 4, tokens - 1] {
            let chunked = scaled_dot_product_within(q.clone(), k.clone(), v.clone(), causal, rows * row_bytes);
            let error = relative_l2(&chunked.into_data(), &whole);
            assert!(error < 1e-6, "{tokens}x{keys} causal {causal}, {rows} rows: {error:e}");
        }
    }
}

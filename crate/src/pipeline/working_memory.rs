//! What a run needs on the device besides the weights: each network's activations at an image
//! size, estimated from the network's shapes, for the memory plan ([`super::memory_plan`]).
//!
//! At its most a pass holds what it keeps for later (the UNet's skip connections, all alive
//! when its down path ends) and its widest activation beside what is computed from it: a
//! resnet's input with its normalized copy and its convolution's output, or a GEGLU projection
//! (of at most `FEED_FORWARD_CHUNK_BYTES`: longer sequences go through in pieces) with its
//! gated half and their product. So a network counts its kept activations plus
//! [`LIVE_WIDEST`] times its widest one, in f32, at the batch a UNet pass takes (2 under
//! classifier-free guidance with both branches in one pass, as diffusers runs them; else 1). Attention keeps no scores ([`crate::kernels::attention`]); the text encoders' 77
//! tokens take a few MiB, not counted. `sdxl generate` prints the estimate beside what burn's
//! pools measured in each phase.

use super::sdxl::UNetShape;
use crate::models::transformer::FEED_FORWARD_CHUNK_BYTES;
use crate::models::vae::VaeConfig;
use crate::models::vae_tiling::VaeTiling;

/// How many activations as wide as a pass's widest are alive at once.
pub const LIVE_WIDEST: u64 = 3;

/// Values per pixel of each level times the level's pixels, for latents of `pixels` (each
/// level a quarter of the pixels of the one above).
fn per_level(widths: &[u64], pixels: u64) -> impl Iterator<Item = u64> + '_ {
    widths
        .iter()
        .enumerate()
        .map(move |(level, &width)| width.saturating_mul(pixels.checked_shr(2 * level as u32).unwrap_or(0)))
}

/// Bytes of `values` f32 for each of `batch` items.
fn f32_bytes(values: u64, batch: u64) -> u64 {
    values.saturating_mul(batch).saturating_mul(size_of::<f32>() as u64)
}

impl UNetShape {
    /// Bytes of the skip connections a pass over `batch` latents of `latent_pixels` holds when
    /// its down path ends.
    pub fn skip_bytes(&self, latent_pixels: u64, batch: u64) -> u64 {
        f32_bytes(per_level(&self.skip_widths, latent_pixels).fold(0u64, u64::saturating_add), batch)
    }

    /// Bytes of a pass's largest activation: a resnet's or an upsampler's, or a feed-forward's
    /// projection, which is never more than [`FEED_FORWARD_CHUNK_BYTES`] at once.
    pub fn largest_bytes(&self, latent_pixels: u64, batch: u64) -> u64 {
        let widest = |widths| f32_bytes(per_level(widths, latent_pixels).max().unwrap_or(0), batch);
        widest(&self.widths).max(widest(&self.feed_forward_widths).min(FEED_FORWARD_CHUNK_BYTES))
    }

    /// Bytes of activations a pass holds at its most: its skips and [`LIVE_WIDEST`] of its
    /// largest.
    pub fn working_bytes(&self, latent_pixels: u64, batch: u64) -> u64 {
        let largest = self.largest_bytes(latent_pixels, batch);
        self.skip_bytes(latent_pixels, batch).saturating_add(LIVE_WIDEST.saturating_mul(largest))
    }
}

/// A decode's or encode's largest activation: in the tiles `tiling` chose, whole where it chose
/// none, or what the smallest tiles would need where none fit (such a size is refused by
/// `GenerateParams::validate`).
fn within_limit(tiling: Result<Option<VaeTiling>, u64>, tiled: impl Fn(&VaeTiling) -> u64, whole: u64) -> u64 {
    match tiling {
        Ok(Some(tiling)) => tiled(&tiling),
        Ok(None) => whole,
        Err(needed) => needed,
    }
}

impl VaeConfig {
    /// Bytes of activations decoding a `width`×`height` image (and encoding one first, where
    /// the run `encodes` an image to refine) holds at its most, in the tiles a buffer limit of
    /// `limit` bytes asks for: [`LIVE_WIDEST`] of its largest activation.
    pub fn working_bytes(&self, width: usize, height: usize, limit: Option<u64>, encodes: bool) -> u64 {
        let (decode, encode) = (self.largest_decode_bytes(width, height), self.largest_encode_bytes(width, height));
        let (decode, encode) = match limit {
            None => (decode, encode),
            Some(limit) => (
                within_limit(self.decode_tiling(width, height, limit), |t| self.largest_tiled_decode_bytes(t, width, height), decode),
                within_limit(self.encode_tiling(width, height, limit), |t| self.largest_tiled_encode_bytes(t, width, height), encode),
            ),
        };
        LIVE_WIDEST.saturating_mul(if encodes { decode.max(encode) } else { decode })
    }
}

//! Tiled VAE decoding and encoding as diffusers' `AutoencoderKL` does them once
//! `enable_tiling()` is called (mirrors diffusers 0.42.1, `models/autoencoders/autoencoder_kl.py`:
//! `_decode`, `tiled_decode`, `_encode`, `_tiled_encode`, `blend_v`, `blend_h`).
//!
//! The input is cut into overlapping tiles, each decoded (or encoded) on its own, so the largest
//! activation is that of one tile whatever the image size. Tiles start every `overlap_size`
//! (a tile's size less its overlap) and the last ones of a row or column are cut short by the
//! input's edge. Each tile's first `blend_extent` rows are then blended linearly with the last
//! rows of the tile above (`blend_v`), then its first columns with the last columns of the tile
//! to its left (`blend_h`), and only its first `row_limit` rows and columns are kept. diffusers
//! blends in place, so the tile above and the tile to the left have both already been blended
//! themselves (vertically, then horizontally); this port blends in the same order from the
//! blended tiles. It decodes row by row, keeping only the row above, where diffusers decodes
//! every tile first: the tiles do not depend on each other, so the result is the same.
//!
//! The result differs from the untiled decode (every tile sees only its own part of the latents,
//! the mid-block's attention included): tiling is a memory trade, as in diffusers.

use burn::tensor::{Tensor, TensorData};

use super::vae::{AutoencoderKL, VaeConfig};
use crate::error::{Error, Result};

/// diffusers' `AutoencoderKL` default `sample_size` when a config has none.
const DEFAULT_SAMPLE_SIZE: usize = 32;

/// The smallest decode tile [`VaeConfig::decode_tiling`] shrinks to, in latents per side: below
/// this the overlaps (a quarter of a tile) are a latent or two and the mid-block's attention sees
/// too little of the image.
pub const MIN_TILE_LATENTS: usize = 8;

/// diffusers' tiling attributes of an `AutoencoderKL`, under diffusers' names. Sizes are per
/// side: a decode tile is `tile_latent_min_size`² latents (giving about `tile_sample_min_size`²
/// pixels), an encode tile `tile_sample_min_size`² pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VaeTiling {
    /// Pixels per side of an encoded tile; the decoded tiles' extent in pixels, from which the
    /// blend and crop sizes of decoding are computed.
    pub tile_sample_min_size: usize,
    /// Latents per side of a decoded tile; the encoded tiles' extent in latents. Latents larger
    /// than this on either side are decoded in tiles.
    pub tile_latent_min_size: usize,
    /// The fraction of a tile shared with its neighbour (0.25 in diffusers), in 0..1.
    pub tile_overlap_factor: f64,
}

impl VaeTiling {
    /// diffusers' overlap factor.
    pub const DEFAULT_OVERLAP_FACTOR: f64 = 0.25;

    /// The tiling diffusers sets up for `config`: `tile_sample_min_size = sample_size` (1024 for
    /// SDXL's VAE, diffusers' default 32 when the config has none), `tile_latent_min_size =
    /// int(sample_size / 2 ** (len(block_out_channels) - 1))` (128 for SDXL), overlap 0.25.
    ///
    /// A list `sample_size` gives its first entry for both. diffusers takes the first entry for
    /// `tile_latent_min_size` only and keeps the list as `tile_sample_min_size`, where tiled
    /// decoding and encoding would then fail (a list times a float); this port uses the entry.
    /// Fails (`Error::Unsupported` naming `sample_size`) for a value that is not a positive
    /// integer or a list starting with one, or one too small to tile with (see
    /// [`VaeTiling::validate`]).
    pub fn from_config(config: &VaeConfig) -> Result<Self> {
        let sample_size = match &config.sample_size {
            None => DEFAULT_SAMPLE_SIZE,
            Some(value) => {
                let first = value.as_array().map_or(Some(value), |list| list.first());
                first
                    .and_then(|v| v.as_u64())
                    .and_then(|v| usize::try_from(v).ok())
                    .filter(|&v| v > 0)
                    .ok_or_else(|| {
                        Error::Unsupported(format!(
                            "VAE `sample_size` = {value} (expected a positive integer, or a list of them)"
                        ))
                    })?
            }
        };
        Self::with_sample_size(config, sample_size).map_err(|error| match error {
            Error::Unsupported(message) => Error::Unsupported(format!("VAE `sample_size` = {sample_size}: {message}")),
            other => other,
        })
    }

    /// Tiles of `tile_sample_min_size` pixels per side, with diffusers' formula for the latent
    /// tile (`int(tile_sample_min_size / 2 ** (len(block_out_channels) - 1))`) and the default
    /// overlap: what setting diffusers' `sample_size` to it would give. Smaller tiles need less
    /// memory (see [`VaeConfig::largest_tiled_decode_bytes`]); the latent tile should stay a
    /// whole number of latents (a multiple of 8 pixels for SDXL), and one that is a multiple of 4
    /// latents keeps the overlaps whole.
    pub fn with_sample_size(config: &VaeConfig, tile_sample_min_size: usize) -> Result<Self> {
        let tiling = VaeTiling {
            tile_sample_min_size,
            tile_latent_min_size: tile_sample_min_size / config.scale_factor().max(1),
            tile_overlap_factor: Self::DEFAULT_OVERLAP_FACTOR,
        };
        tiling.validate()?;
        Ok(tiling)
    }

    /// Checks the tiling can run: both tile sizes at least 1, the overlap factor in 0..1, and
    /// tiles that advance (diffusers' `range(0, size, overlap_size)` fails on a step of 0, e.g.
    /// for a 1-latent tile at overlap 0.25). Every tiled method checks this first.
    pub fn validate(&self) -> Result<()> {
        let factor = self.tile_overlap_factor;
        if !(factor.is_finite() && (0.0..1.0).contains(&factor)) {
            return Err(Error::Unsupported(format!("VAE `tile_overlap_factor` = {factor} (expected 0 ≤ factor < 1)")));
        }
        for (name, size, overlap) in [
            ("tile_sample_min_size", self.tile_sample_min_size, self.sample_overlap_size()),
            ("tile_latent_min_size", self.tile_latent_min_size, self.latent_overlap_size()),
        ] {
            if size == 0 || overlap == 0 {
                return Err(Error::Unsupported(format!(
                    "VAE `{name}` = {size}: tiles must advance by at least 1 at `tile_overlap_factor` {factor}"
                )));
            }
        }
        Ok(())
    }

    /// Whether diffusers decodes latents [.., `latent_height`, `latent_width`] in tiles (its
    /// `_decode`: either side larger than `tile_latent_min_size`).
    pub fn tiles_decode(&self, latent_height: usize, latent_width: usize) -> bool {
        latent_width > self.tile_latent_min_size || latent_height > self.tile_latent_min_size
    }

    /// Whether diffusers encodes an image [.., `height`, `width`] in tiles (its `_encode`:
    /// either side larger than `tile_sample_min_size`).
    pub fn tiles_encode(&self, height: usize, width: usize) -> bool {
        width > self.tile_sample_min_size || height > self.tile_sample_min_size
    }

    /// How many tiles [`AutoencoderKL::decode_with_tiling`] decodes for latents of this size
    /// (1 when it does not tile), e.g. for progress.
    pub fn decode_tile_count(&self, latent_height: usize, latent_width: usize) -> usize {
        if !self.tiles_decode(latent_height, latent_width) {
            return 1;
        }
        let step = self.latent_overlap_size().max(1);
        latent_height.div_ceil(step) * latent_width.div_ceil(step)
    }

    /// How many tiles [`AutoencoderKL::encode_distribution_with_tiling`] encodes for an image
    /// of this size (1 when it does not tile).
    pub fn encode_tile_count(&self, height: usize, width: usize) -> usize {
        if !self.tiles_encode(height, width) {
            return 1;
        }
        let step = self.sample_overlap_size().max(1);
        height.div_ceil(step) * width.div_ceil(step)
    }

    /// Python's `int(size * factor)` for sizes and factors ≥ 0 (truncation).
    fn scaled(size: usize, factor: f64) -> usize {
        (size as f64 * factor) as usize
    }

    /// Decoding's tile step in latents: `int(tile_latent_min_size * (1 - tile_overlap_factor))`.
    fn latent_overlap_size(&self) -> usize {
        Self::scaled(self.tile_latent_min_size, 1.0 - self.tile_overlap_factor)
    }

    /// Encoding's tile step in pixels: `int(tile_sample_min_size * (1 - tile_overlap_factor))`.
    fn sample_overlap_size(&self) -> usize {
        Self::scaled(self.tile_sample_min_size, 1.0 - self.tile_overlap_factor)
    }

    /// Decoding: (blend_extent, row_limit) in pixels.
    fn decode_blend(&self) -> (usize, usize) {
        let blend_extent = Self::scaled(self.tile_sample_min_size, self.tile_overlap_factor);
        (blend_extent, self.tile_sample_min_size - blend_extent)
    }

    /// Encoding: (blend_extent, row_limit) in latents.
    fn encode_blend(&self) -> (usize, usize) {
        let blend_extent = Self::scaled(self.tile_latent_min_size, self.tile_overlap_factor);
        (blend_extent, self.tile_latent_min_size - blend_extent)
    }
}

impl VaeConfig {
    /// How to decode a `width`×`height` image with no buffer over `limit` bytes: whole
    /// (`Ok(None)`) when that fits, else in the largest tiles that fit: diffusers' tiling for
    /// this config (`VaeTiling::from_config`), its `tile_sample_min_size` halved until the tiles
    /// fit, down to [`MIN_TILE_LATENTS`] latents per side. `Err(bytes)`: the least the smallest
    /// of these tilings needs (the assembled image, or one tile), when even that is over `limit`.
    pub fn decode_tiling(&self, width: usize, height: usize, limit: u64) -> std::result::Result<Option<VaeTiling>, u64> {
        let whole = self.largest_decode_bytes(width, height);
        self.tiles_within(limit, whole, |tiling| self.largest_tiled_decode_bytes(tiling, width, height))
    }

    /// As [`VaeConfig::decode_tiling`], for encoding a `width`×`height` image.
    pub fn encode_tiling(&self, width: usize, height: usize, limit: u64) -> std::result::Result<Option<VaeTiling>, u64> {
        let whole = self.largest_encode_bytes(width, height);
        self.tiles_within(limit, whole, |tiling| self.largest_tiled_encode_bytes(tiling, width, height))
    }

    /// The tiling rule of [`VaeConfig::decode_tiling`], given what the whole run and a tiling need.
    fn tiles_within(&self, limit: u64, whole: u64, needs: impl Fn(&VaeTiling) -> u64) -> std::result::Result<Option<VaeTiling>, u64> {
        if whole <= limit {
            return Ok(None);
        }
        let scale = self.scale_factor().max(1);
        // A config whose own tiling is unusable still tiles from 128 latents (SDXL's).
        let mut sample = VaeTiling::from_config(self).map_or(128 * scale, |tiling| tiling.tile_sample_min_size);
        let mut needed = whole;
        while let Ok(tiling) = VaeTiling::with_sample_size(self, sample) {
            if tiling.tile_latent_min_size < MIN_TILE_LATENTS {
                break;
            }
            needed = needs(&tiling);
            if needed <= limit {
                return Ok(Some(tiling));
            }
            sample /= 2;
        }
        Err(needed)
    }

    /// Bytes of the largest activation encoding a `width`×`height` image takes (batch 1): each
    /// down block's widest input or output at its resolution (SDXL at 1024²: 128 channels at
    /// full size, 512 MiB).
    pub fn largest_encode_bytes(&self, width: usize, height: usize) -> u64 {
        let pixels = (width as u64).saturating_mul(height as u64);
        let mut input = self.block_out_channels.first().copied().unwrap_or(0) as u64;
        let mut largest = 0u64;
        for (level, &output) in self.block_out_channels.iter().enumerate() {
            let level_pixels = pixels.checked_shr(2 * level as u32).unwrap_or(0);
            largest = largest.max(input.max(output as u64).saturating_mul(level_pixels));
            input = output as u64;
        }
        largest.saturating_mul(size_of::<f32>() as u64)
    }

    /// As [`VaeConfig::largest_tiled_decode_bytes`], for encoding with `tiling`: one tile of at
    /// most `tile_sample_min_size`² pixels, or the input image when larger.
    pub fn largest_tiled_encode_bytes(&self, tiling: &VaeTiling, width: usize, height: usize) -> u64 {
        if !tiling.tiles_encode(height, width) {
            return self.largest_encode_bytes(width, height);
        }
        let tile = tiling.tile_sample_min_size;
        let image_bytes = (self.in_channels as u64)
            .saturating_mul(width as u64)
            .saturating_mul(height as u64)
            .saturating_mul(size_of::<f32>() as u64);
        self.largest_encode_bytes(width.min(tile), height.min(tile)).max(image_bytes)
    }

    /// Bytes of the largest activation decoding a `width`×`height` image with `tiling` takes
    /// (as [`VaeConfig::largest_decode_bytes`], batch 1): that of one decoded tile of at most
    /// `tile_latent_min_size`² latents (about `tile_sample_min_size`² pixels), or of the
    /// assembled image when larger; the untiled decode's when diffusers would not tile latents
    /// of this size. SDXL's default tiles (128 latents) keep 1 GiB, those of
    /// `VaeTiling::with_sample_size(config, 512)` 256 MiB.
    pub fn largest_tiled_decode_bytes(&self, tiling: &VaeTiling, width: usize, height: usize) -> u64 {
        let scale = self.scale_factor().max(1);
        let (latent_width, latent_height) = (width / scale, height / scale);
        if !tiling.tiles_decode(latent_height, latent_width) {
            return self.largest_decode_bytes(width, height);
        }
        let tile = tiling.tile_latent_min_size;
        let tile_bytes = self.largest_decode_bytes(
            latent_width.min(tile).saturating_mul(scale),
            latent_height.min(tile).saturating_mul(scale),
        );
        let image_bytes = (self.out_channels as u64)
            .saturating_mul(width as u64)
            .saturating_mul(height as u64)
            .saturating_mul(size_of::<f32>() as u64);
        tile_bytes.max(image_bytes)
    }
}

impl AutoencoderKL {
    /// diffusers' `vae.decode(latents)` with `enable_tiling()`: [`AutoencoderKL::tiled_decode`]
    /// when the latents are larger than one tile on either side
    /// ([`VaeTiling::tiles_decode`]), else exactly [`AutoencoderKL::decode`]. Latents already
    /// divided by the scaling factor, as for `decode`.
    pub fn decode_with_tiling(&self, latents: Tensor<4>, tiling: &VaeTiling) -> Result<Tensor<4>> {
        tiling.validate()?;
        let [_, _, height, width] = latents.dims();
        if tiling.tiles_decode(height, width) { self.tiled_decode(latents, tiling) } else { Ok(self.decode(latents)) }
    }

    /// diffusers' `tiled_decode`: always in tiles of `tile_latent_min_size`² latents, stepping
    /// `int(tile_latent_min_size · (1 − factor))`, each through `post_quant_conv` and the
    /// decoder, blended over `int(tile_sample_min_size · factor)` pixels and cropped to
    /// `tile_sample_min_size` less that. (For latents within one tile it still crops: use
    /// [`AutoencoderKL::decode_with_tiling`].)
    pub fn tiled_decode(&self, latents: Tensor<4>, tiling: &VaeTiling) -> Result<Tensor<4>> {
        tiling.validate()?;
        let (blend_extent, row_limit) = tiling.decode_blend();
        let step = tiling.latent_overlap_size();
        let decode = |tile| self.decode(tile);
        Ok(tiled(latents, tiling.tile_latent_min_size, step, blend_extent, row_limit, decode))
    }

    /// diffusers' `_tiled_encode`: the encoder's moments (mean and log-variance along channels,
    /// after `quant_conv`) in tiles of `tile_sample_min_size`² pixels, stepping
    /// `int(tile_sample_min_size · (1 − factor))`, blended over `int(tile_latent_min_size ·
    /// factor)` latents and cropped to `tile_latent_min_size` less that.
    pub fn tiled_encode(&self, image: Tensor<4>, tiling: &VaeTiling) -> Result<Tensor<4>> {
        tiling.validate()?;
        let (blend_extent, row_limit) = tiling.encode_blend();
        let step = tiling.sample_overlap_size();
        let encode = |tile| self.encode_moments(tile);
        Ok(tiled(image, tiling.tile_sample_min_size, step, blend_extent, row_limit, encode))
    }

    /// diffusers' `vae.encode(image).latent_dist` with `enable_tiling()`: the moments of
    /// [`AutoencoderKL::tiled_encode`] when the image is larger than one tile on either side
    /// ([`VaeTiling::tiles_encode`]), else of the plain encoder; then the mean and standard
    /// deviation as [`AutoencoderKL::encode_distribution`] (log-variance clamped to −30..20).
    pub fn encode_distribution_with_tiling(
        &self,
        image: Tensor<4>,
        tiling: &VaeTiling,
    ) -> Result<(Tensor<4>, Tensor<4>)> {
        let moments = self.encode_moments_with_tiling(image, tiling)?;
        let mean = moments.clone().narrow(1, 0, self.latent_channels);
        let log_variance = moments.narrow(1, self.latent_channels, self.latent_channels).clamp(-30.0, 20.0);
        Ok((mean, (log_variance * 0.5).exp()))
    }

    /// The mean of [`AutoencoderKL::encode_distribution_with_tiling`] (unscaled).
    pub fn encode_mean_with_tiling(&self, image: Tensor<4>, tiling: &VaeTiling) -> Result<Tensor<4>> {
        Ok(self.encode_moments_with_tiling(image, tiling)?.narrow(1, 0, self.latent_channels))
    }

    /// diffusers' `_encode` with tiling enabled: the moments, tiled when the image is larger than
    /// one tile.
    fn encode_moments_with_tiling(&self, image: Tensor<4>, tiling: &VaeTiling) -> Result<Tensor<4>> {
        tiling.validate()?;
        let [_, _, height, width] = image.dims();
        if tiling.tiles_encode(height, width) {
            self.tiled_encode(image, tiling)
        } else {
            Ok(self.encode_moments(image))
        }
    }
}

/// diffusers' tiling loop (shared by `tiled_decode` and `_tiled_encode`): tiles of `tile` per
/// side starting every `step` (the last cut short by the edge), each through `run`; each tile
/// blended with the (already blended) tile above, then with the (already blended) one to its
/// left, cropped to `row_limit`, and the crops concatenated. `step` ≥ 1 and `row_limit` ≥ 1.
fn tiled(
    input: Tensor<4>,
    tile: usize,
    step: usize,
    blend_extent: usize,
    row_limit: usize,
    run: impl Fn(Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    let [_, _, height, width] = input.dims();
    let mut above: Vec<Tensor<4>> = Vec::new();
    let mut rows = Vec::new();
    for i in (0..height).step_by(step) {
        let mut row: Vec<Tensor<4>> = Vec::new();
        let mut crops = Vec::new();
        for (column, j) in (0..width).step_by(step).enumerate() {
            let part = input.clone().narrow(2, i, tile.min(height - i)).narrow(3, j, tile.min(width - j));
            let mut out = run(part);
            if let Some(upper) = above.get(column) {
                out = blend(upper, out, 2, blend_extent);
            }
            if let Some(left) = row.last() {
                out = blend(left, out, 3, blend_extent);
            }
            let [_, _, out_height, out_width] = out.dims();
            crops.push(out.clone().narrow(2, 0, row_limit.min(out_height)).narrow(3, 0, row_limit.min(out_width)));
            row.push(out);
        }
        rows.push(Tensor::cat(crops, 3));
        above = row;
    }
    Tensor::cat(rows, 2)
}

/// diffusers' `blend_v` (`dim` 2) and `blend_h` (`dim` 3): over `e = min(a's, b's size along
/// dim, blend_extent)`, b's slice `y` becomes `a[-e + y] · (1 − y/e) + b[y] · (y/e)`, the weights
/// computed in f64 as Python does, then used in f32 as torch does.
fn blend(a: &Tensor<4>, b: Tensor<4>, dim: usize, blend_extent: usize) -> Tensor<4> {
    let (a_size, b_size) = (a.dims()[dim], b.dims()[dim]);
    let extent = blend_extent.min(a_size).min(b_size);
    if extent == 0 {
        return b;
    }
    let mut shape = [1usize; 4];
    shape[dim] = extent;
    let device = b.device();
    let weights = |weight: &dyn Fn(f64) -> f64| {
        let values: Vec<f32> = (0..extent).map(|y| weight(y as f64 / extent as f64) as f32).collect();
        Tensor::<4>::from_data(TensorData::new(values, shape), &device)
    };
    let blended = a.clone().narrow(dim, a_size - extent, extent) * weights(&|t| 1.0 - t)
        + b.clone().narrow(dim, 0, extent) * weights(&|t| t);
    if extent == b_size { blended } else { Tensor::cat(vec![blended, b.narrow(dim, extent, b_size - extent)], dim) }
}

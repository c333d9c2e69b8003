//! Helpers shared by the model configs, which mirror diffusers' and transformers' `config.json`.

use serde::Deserialize;

use crate::error::{Error, Result};

/// A config value given either once for every block or per block (`4` or `[1, 2, 10]`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PerBlock {
    All(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    pub fn resolve(&self, key: &str, blocks: usize) -> Result<Vec<usize>> {
        match self {
            PerBlock::All(value) => Ok(vec![*value; blocks]),
            PerBlock::Each(values) if values.len() == blocks => Ok(values.clone()),
            PerBlock::Each(values) => Err(Error::Unsupported(format!(
                "`{key}` has {} entries for {blocks} blocks",
                values.len()
            ))),
        }
    }
}

/// Fails when a config key the port does not implement holds anything but its default.
pub fn require<T: PartialEq + std::fmt::Debug>(key: &str, value: &T, supported: &T) -> Result<()> {
    if value == supported {
        Ok(())
    } else {
        Err(Error::Unsupported(format!("`{key}` = {value:?} (only {supported:?} is implemented)")))
    }
}

// Bounds on the config values that size modules and allocations (or divide), checked before
// anything is built so that a zero or absurd value is an error rather than a division by zero,
// an overflow or an allocation that never ends. Each is far above every published model of the
// family (SDXL: at most 2048 channels or widths, 5120 MLP width, 10 transformer layers per block,
// 32 text-encoder layers, 4 blocks, 49408 tokens, 77 positions) and low enough that sums and
// products of them (channels·4, channels_in·9 conv weights, vocab·width) stay far from overflow.

/// Channels, widths, head and group counts, embedding dimensions.
pub const MAX_WIDTH: usize = 1 << 16;
/// A CLIP MLP's hidden width (4× the widest width).
pub const MAX_MLP_WIDTH: usize = 1 << 18;
/// Resnets or transformer layers in one UNet/VAE block, and CLIP encoder layers.
pub const MAX_LAYERS: usize = 64;
/// Resolution levels (entries of `block_out_channels`); all but the last halve the resolution,
/// so 8 already shrink the innermost feature map 128× (SDXL: 3 in the UNet, 4 in the VAE).
pub const MAX_BLOCKS: usize = 8;
/// CLIP vocabulary entries.
pub const MAX_VOCAB: usize = 1 << 20;
/// CLIP positions (tokens in one window).
pub const MAX_POSITIONS: usize = 1 << 16;

/// Fails unless the count or size `value` of `key` lies in `range`.
pub fn require_within(key: &str, value: usize, range: std::ops::RangeInclusive<usize>) -> Result<()> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(Error::Unsupported(format!("`{key}` = {value} (expected {}..={})", range.start(), range.end())))
    }
}

/// Fails unless `value` of `key` is a finite number of at least `min` (epsilons, shifts).
pub fn require_finite(key: &str, value: f64, min: f64) -> Result<()> {
    if value.is_finite() && value >= min {
        Ok(())
    } else {
        Err(Error::Unsupported(format!("`{key}` = {value} (expected a finite number ≥ {min})")))
    }
}

/// Fails unless `divisor` (of `divisor_key`, at least 1) divides `value` (of `value_key`):
/// channels into groups, widths into heads.
pub fn require_divides(divisor_key: &str, divisor: usize, value_key: &str, value: usize) -> Result<()> {
    if divisor != 0 && value % divisor == 0 {
        Ok(())
    } else {
        Err(Error::Unsupported(format!("`{divisor_key}` = {divisor} does not divide `{value_key}` = {value}")))
    }
}

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

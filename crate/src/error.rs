//! One error type for loading and running models: every failure names what it was about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Weights(String),
    /// Bytes that differ from what the manifest promises (size or SHA-256): a download to
    /// repeat, not a broken model.
    #[error("{0}")]
    Integrity(String),
    #[error("writing the result: {0}")]
    Output(String),
    #[error("input `{name}`: {message}")]
    Input { name: String, message: String },
    /// A run stopped on request between steps.
    #[error("generation cancelled")]
    Cancelled,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

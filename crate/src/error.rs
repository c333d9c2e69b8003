//! One error type for loading and running models: every failure names what it was about, and
//! [`Error::kind`] says, in one place, what a user can do about it.

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
    /// A model this port does not run: a class, or a config value it does not implement.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    /// A model whose files are incomplete or contradict each other; `location` names the file,
    /// folder or URL.
    #[error("{location}: {problem}")]
    Model { location: String, problem: String },
    /// Checkpoint tensors that do not fit the module they load into; `location` (the
    /// component's folder, a shard) is filled in by whoever knows it.
    #[error("{}{}", location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default(), problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Tensors { location: Option<String>, problems: Vec<TensorProblem> },
    /// Bytes that differ from what the manifest promises (size or SHA-256): a download to
    /// repeat, not a broken model.
    #[error("{location}: {problem}")]
    Integrity { location: String, problem: String },
    /// The finished image could not be encoded (`format`: "PNG", …).
    #[error("encoding the {format}: {message}")]
    Encoding { format: &'static str, message: String },
    #[error("input `{name}`: {message}")]
    Input { name: String, message: String },
    /// A run stopped on request between steps.
    #[error("generation cancelled")]
    Cancelled,
    /// A network the memory plan released was used before being loaded again.
    #[error("{0} is not loaded (the memory plan released it)")]
    NotLoaded(&'static str),
}

/// What is wrong with one checkpoint tensor.
#[derive(Debug, thiserror::Error)]
pub enum TensorProblem {
    #[error("missing tensor {0}")]
    Missing(String),
    #[error("unexpected tensors: {}", summarize(.0))]
    Unexpected(Vec<String>),
    #[error("tensor {name} has shape {stored:?}, expected {expected:?}")]
    Shape { name: String, stored: Vec<usize>, expected: Vec<usize> },
}

fn summarize(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        text += &format!(" and {} more", names.len() - SHOWN);
    }
    text
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a user can do about an error: the browser's advice and the CLI's wording follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Fetch the file again.
    Integrity,
    /// Change the request.
    Input,
    Cancelled,
    /// Use another model (a broken or unsupported one).
    Model,
    /// The result could not be written or encoded.
    Output,
}

impl Kind {
    /// The name the page's advice is keyed by.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Integrity => "integrity",
            Kind::Input => "input",
            Kind::Cancelled => "cancelled",
            Kind::Model => "model",
            Kind::Output => "output",
        }
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A [`Error::Model`] problem at `location`.
    pub fn model(location: impl std::fmt::Display, problem: impl Into<String>) -> Self {
        Error::Model { location: location.to_string(), problem: problem.into() }
    }

    /// Tensor problems get `location` unless they already have one; other errors pass.
    pub fn at(self, location: impl std::fmt::Display) -> Self {
        match self {
            Error::Tensors { location: None, problems } => Error::Tensors { location: Some(location.to_string()), problems },
            other => other,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Error::Integrity { .. } => Kind::Integrity,
            Error::Input { .. } | Error::NotLoaded(_) => Kind::Input,
            Error::Cancelled => Kind::Cancelled,
            Error::Encoding { .. } => Kind::Output,
            Error::Io { .. }
            | Error::Json { .. }
            | Error::Safetensors { .. }
            | Error::Unsupported(_)
            | Error::Model { .. }
            | Error::Tensors { .. } => Kind::Model,
        }
    }
}

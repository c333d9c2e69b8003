//! What the `sdxl-weights` tests share: fixture paths and running the command.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// `sdxl-weights ARGS PATHS`.
pub fn sdxl_weights(args: &[&str], paths: &[&Path]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sdxl-weights"));
    command.args(args);
    for path in paths {
        command.arg(path);
    }
    command.output().unwrap()
}

/// What a run printed, stdout then stderr.
pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

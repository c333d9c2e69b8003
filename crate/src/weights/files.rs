//! Reading files named by a model (native): only regular files, and never more than a bound
//! the caller states, so a path to `/dev/zero`, a FIFO or a huge file is a clear error rather
//! than a hang or an exhausted memory.

// Reads untrusted bytes: no unwrap, expect or unchecked indexing (each allowed case says why).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// JSON files of a model (configs, indexes, manifests, tokenizer files) are far smaller.
pub const MAX_JSON_BYTES: u64 = 256 << 20;

/// The size of a regular file; anything else (a folder, a device, a FIFO) is refused before it
/// is opened (opening a FIFO blocks).
pub fn regular_file(path: &Path) -> Result<u64> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !metadata.is_file() {
        return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")));
    }
    Ok(metadata.len())
}

/// A regular file's bytes, refused when it holds more than `cap`.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let size = regular_file(path)?;
    if size > cap {
        let message = format!("{size} bytes, more than the {cap} allowed for this file");
        return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidData, message)));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(size as usize);
    // The file may grow after the check: never read past the cap.
    file.take(cap + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidData, "grew past its allowed size")));
    }
    Ok(bytes)
}

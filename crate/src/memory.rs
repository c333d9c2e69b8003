//! The process's resident memory as Linux reports it (`/proc/self/status`), for the examples and
//! tools that print what they used. `None` where it cannot be read.

fn status_kib(field: &str) -> Option<u64> {
    proc_kib("/proc/self/status", field)
}

fn proc_kib(file: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(file).ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix(field))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Memory the system can still give (MemAvailable).
pub fn available() -> Option<u64> {
    proc_kib("/proc/meminfo", "MemAvailable:").map(|kib| kib * 1024)
}

/// Peak resident bytes (VmHWM) since the start or the last [`reset_peak`].
pub fn peak_resident() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// Resident bytes now (VmRSS).
pub fn resident() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// Starts a new peak from the current resident size (Linux ≥ 4.0).
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Bytes as GiB with two decimals, or "unavailable".
pub fn gib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "unavailable".into(), |b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64))
}

//! Seconds on a monotonic-enough clock, natively and in the browser (where `std::time::Instant`
//! panics on wasm32): for reporting how long something took, never for results.

/// Seconds since an arbitrary origin fixed for the process (natively) or the page (browser).
#[cfg(not(target_arch = "wasm32"))]
pub fn seconds() -> f64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed().as_secs_f64()
}

/// Seconds since an arbitrary origin fixed for the process (natively) or the page (browser).
#[cfg(target_arch = "wasm32")]
pub fn seconds() -> f64 {
    js_sys::Date::now() / 1000.0
}

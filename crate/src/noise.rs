//! Seeded Gaussian noise computed on the host, bit-identical on every platform (native and wasm),
//! so a seed gives the same initial latents, and the same image, everywhere.
//!
//! The algorithm, exactly (anyone can reproduce it; `crate/tests/schedulers.rs` has a Python
//! version):
//!
//! 1. **Words**: SplitMix64. The state starts at `seed`; each word adds `0x9E3779B97F4A7C15` to
//!    the state (mod 2⁶⁴) and returns `z ^ (z >> 31)` after `z = state;
//!    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB`
//!    (wrapping multiplications).
//! 2. **Uniforms**: from two consecutive words `a`, `b`: `u1 = ((a >> 11) + 1) · 2⁻⁵³` in (0, 1]
//!    and `u2 = (b >> 11) · 2⁻⁵³` in [0, 1), both exact in f64.
//! 3. **Box–Muller** in f64: `r = sqrt(-2 ln u1)`, then `r cos(2π u2)` and `r sin(2π u2)`, each
//!    rounded to the nearest f32. They are the next two values in row-major order; a call that
//!    asks for an odd count drops the last sine, so every call starts on a fresh pair.
//!
//! `ln`, `cos` and `sin` are computed here from `+ − × ÷` and `sqrt` only (all correctly rounded
//! by IEEE 754), because the platform's libm may differ in the last bit between native and wasm.
//! They are accurate to a few units in the last place of f64, so the f32 results equal those of
//! a correctly rounded libm except in the rare case of an f64 value next to an f32 rounding
//! boundary.

use std::f64::consts::{FRAC_PI_2, LN_2, SQRT_2};

use burn::tensor::{Device, Tensor, TensorData};

/// A seeded stream of standard normal f32 values (see the module docs for the algorithm).
#[derive(Clone, Debug)]
pub struct NoiseGenerator {
    state: u64,
}

impl NoiseGenerator {
    pub fn new(seed: u64) -> Self {
        NoiseGenerator { state: seed }
    }

    fn next_word(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next `count` values.
    pub fn values(&mut self, count: usize) -> Vec<f32> {
        let mut values = Vec::with_capacity(count + 1);
        while values.len() < count {
            let u1 = ((self.next_word() >> 11) + 1) as f64 * TWO_POW_MINUS_53;
            let u2 = (self.next_word() >> 11) as f64 * TWO_POW_MINUS_53;
            let radius = (-2.0 * ln(u1)).sqrt();
            let (sin, cos) = sin_cos_turns(u2);
            values.push((radius * cos) as f32);
            values.push((radius * sin) as f32);
        }
        values.truncate(count);
        values
    }

    /// A tensor of the next values, filled in row-major order.
    pub fn normal(&mut self, shape: [usize; 4], device: &Device) -> Tensor<4> {
        let values = self.values(shape.iter().product());
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

const TWO_POW_MINUS_53: f64 = 1.0 / 9_007_199_254_740_992.0;

/// Natural log of `x` in (0, 1]: `x = m·2^e` with `m` in (√½, √2], `ln m = 2 atanh(s)`,
/// `s = (m−1)/(m+1)`, summing the series to `s²¹` (|s| ≤ 0.172, so the rest is below 1e-17).
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > SQRT_2 {
        m *= 0.5;
        exponent += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = (0..=10).rev().fold(0.0, |sum, k| sum * s2 + 1.0 / (2 * k + 1) as f64);
    exponent as f64 * LN_2 + 2.0 * s * series
}

/// `(sin 2πt, cos 2πt)` for `t` in [0, 1): quarter turn `q` and its fraction `f` are exact, the
/// angle within the quarter is folded to [0, π/4] and fed to Taylor series.
fn sin_cos_turns(t: f64) -> (f64, f64) {
    let quarters = t * 4.0;
    let q = quarters.floor();
    let f = quarters - q;
    let (s, c) = match f <= 0.5 {
        true => sin_cos_small(f * FRAC_PI_2),
        false => {
            let (s, c) = sin_cos_small((1.0 - f) * FRAC_PI_2);
            (c, s)
        }
    };
    match q as u8 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// Taylor series of sin and cos for |x| ≤ π/4, to x¹⁷ and x¹⁸ (the rest is below 1e-19).
fn sin_cos_small(x: f64) -> (f64, f64) {
    let x2 = x * x;
    let mut factorial = [1.0f64; 19];
    for n in 1..19 {
        factorial[n] = factorial[n - 1] * n as f64; // exact: 18! < 2⁵³
    }
    let sign = |k: usize| if k.is_multiple_of(2) { 1.0 } else { -1.0 };
    let sin = (0..=8).rev().fold(0.0, |sum, k| sum * x2 + sign(k) / factorial[2 * k + 1]);
    let cos = (0..=9).rev().fold(0.0, |sum, k| sum * x2 + sign(k) / factorial[2 * k]);
    (x * sin, cos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable functions against the platform's libm, over the ranges Box–Muller uses.
    #[test]
    fn ln_sin_cos_match_libm() {
        let mut generator = NoiseGenerator::new(7);
        for _ in 0..100_000 {
            let u1 = ((generator.next_word() >> 11) + 1) as f64 * TWO_POW_MINUS_53;
            let u2 = (generator.next_word() >> 11) as f64 * TWO_POW_MINUS_53;
            for u in [u1, u1 * u1] {
                assert!((ln(u) - u.ln()).abs() <= 4.0 * f64::EPSILON * u.ln().abs().max(1.0), "ln({u})");
            }
            let (sin, cos) = sin_cos_turns(u2);
            let angle = std::f64::consts::TAU * u2;
            assert!((sin - angle.sin()).abs() <= 2e-15 && (cos - angle.cos()).abs() <= 2e-15, "sincos({u2})");
        }
    }
}

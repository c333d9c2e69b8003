//! What the native tests share: fixture paths and the parity measure.

#![allow(dead_code)] // each test binary uses its own subset

use std::ops::ControlFlow;
use std::path::PathBuf;

use burn::tensor::TensorData;
use sdxl_web::pipeline::preview::Preview;
use sdxl_web::pipeline::{Progress, Stage};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// ‖ours − reference‖ / ‖reference‖, after checking the shapes agree.
pub fn relative_l2(ours: &TensorData, reference: &TensorData) -> f64 {
    assert_eq!(ours.shape(), reference.shape(), "shapes differ");
    let ours = ours.try_to_vec::<f32>().unwrap();
    let reference = reference.try_to_vec::<f32>().unwrap();
    let (mut diff, mut norm) = (0f64, 0f64);
    for (a, b) in ours.iter().zip(&reference) {
        diff += (*a as f64 - *b as f64).powi(2);
        norm += (*b as f64).powi(2);
    }
    assert!(norm > 0.0, "the reference is all zeros: the comparison would prove nothing");
    (diff / norm).sqrt()
}

/// Progress that lets every run go on and asks for no previews.
pub struct Quiet;

impl Progress for Quiet {
    fn step(&mut self, _: Stage, _: usize, _: usize, _: Option<Preview>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

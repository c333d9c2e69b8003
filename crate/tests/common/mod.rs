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
    assert!(reference.iter().any(|&v| v != 0.0), "the reference is all zeros: the comparison would prove nothing");
    sdxl_web::ops_check::relative_l2(&ours, &reference)
}

/// Progress that lets every run go on and asks for no previews.
pub struct Quiet;

impl Progress for Quiet {
    fn step(&mut self, _: Stage, _: usize, _: usize, _: Option<Preview>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

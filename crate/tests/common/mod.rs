//! What the native tests share: fixture paths and the parity measure.

#![allow(dead_code)] // each test binary uses its own subset

use std::ops::ControlFlow;
use std::path::PathBuf;

use burn::tensor::{Device, TensorData};
use sdxl_web::error::Result;
use sdxl_web::pipeline::folder::finished;
use sdxl_web::pipeline::preview::Preview;
use sdxl_web::pipeline::{BufferLimit, GenerateParams, Image, MemoryPlan, Models, Noise, Progress, RunHost, Stage, generate_planned};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// ‖ours − reference‖ / ‖reference‖, after checking the shapes agree.
pub fn relative_l2(ours: &TensorData, reference: &TensorData) -> f64 {
    assert_eq!(ours.shape(), reference.shape(), "shapes differ");
    let ours = ours.try_to_vec::<f32>().unwrap();
    let reference = reference.try_to_vec::<f32>().unwrap();
    assert!(reference.iter().any(|&v| v != 0.0), "the reference is all zeros: the comparison would prove nothing");
    sdxl_web::relative_error::relative_l2(&ours, &reference)
}

/// Progress that lets every run go on and asks for no previews.
pub struct Quiet;

impl Progress for Quiet {
    fn step(&mut self, _: Stage, _: usize, _: usize, _: Option<Preview>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// A folder of its own under the system's temp folder (named for the test binary's process),
/// emptied when made and removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sdxl-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts an error message names each of `parts`.
pub fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "`{part}` not in: {message}");
    }
}

/// A run under a memory plan natively (`generate_planned`): the image read back.
#[allow(clippy::too_many_arguments)]
pub fn planned(
    models: &mut Models,
    plan: &MemoryPlan,
    refined: bool,
    limit: Option<BufferLimit>,
    params: &GenerateParams,
    noise: Noise,
    device: &Device,
    host: &mut impl RunHost,
) -> Result<Image> {
    Ok(Image::new(finished(generate_planned(models, plan, refined, limit, params, noise, device, host))?.into_data()))
}

//! The generated image.

use burn::tensor::TensorData;

/// The image as f32 [H, W, 3] in 0..1 (diffusers' `output_type="np"`).
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub pixels: TensorData,
}

impl Image {
    /// From pixels [H, W, 3].
    pub fn new(pixels: TensorData) -> Self {
        let (height, width) = (pixels.shape()[0], pixels.shape()[1]);
        Self { width, height, pixels }
    }
}

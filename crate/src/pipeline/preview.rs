//! A cheap preview of a latent: a fixed linear map from SDXL's 4 latent channels to RGB
//! (ComfyUI's `latent_rgb_factors` for SDXL), no VAE call.

use burn::tensor::TensorData;

const LATENT_RGB_FACTORS: [[f32; 3]; 4] = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
];
const LATENT_RGB_BIAS: [f32; 3] = [0.1084, -0.0175, -0.0011];

/// An RGBA image, row-major, 8 bits per channel (what a canvas takes).
#[derive(Clone, Debug, PartialEq)]
pub struct Preview {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

/// The preview of one latent [1, 4, h, w], read back from the device: one pixel per latent
/// position.
pub fn latent_preview(latent: TensorData) -> Preview {
    let [_, channels, height, width] = latent.shape()[..] else {
        return Preview { width: 0, height: 0, rgba: Vec::new() };
    };
    let values = latent.convert::<f32>().try_into_vec::<f32>().unwrap_or_default();
    let plane = height * width;
    let mut rgba = Vec::with_capacity(plane * 4);
    for pixel in 0..plane {
        for (rgb, bias) in LATENT_RGB_BIAS.iter().enumerate() {
            let value: f32 = (0..channels.min(4))
                .map(|channel| values[channel * plane + pixel] * LATENT_RGB_FACTORS[channel][rgb])
                .sum::<f32>()
                + bias;
            // The factors map to about −1..1.
            rgba.push((((value + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).round() as u8);
        }
        rgba.push(255);
    }
    Preview { width, height, rgba }
}

//! The finished image as a PNG carrying its generation parameters in a `parameters` text
//! chunk, in AUTOMATIC1111's format (which image viewers and web UIs read back): `tEXt` when the
//! text is Latin-1, else `iTXt` (UTF-8), as A1111 (through PIL) writes it.

// Reads untrusted bytes: no unwrap, expect or unchecked indexing (each allowed case says why).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::error::{Error, Result};
use crate::pipeline::{GenerateParams, Image};
use crate::schedulers::SchedulerKind;

/// A1111's sampler names for our schedulers.
fn sampler_name(kind: SchedulerKind) -> &'static str {
    match kind {
        SchedulerKind::Euler => "Euler",
        SchedulerKind::EulerAncestral => "Euler a",
        SchedulerKind::DpmPp2M => "DPM++ 2M",
        SchedulerKind::DpmPp2MKarras => "DPM++ 2M Karras",
        SchedulerKind::Ddim => "DDIM",
    }
}

/// `prompt`, `Negative prompt: …`, then `Key: value` pairs on one line.
pub fn parameters_text(params: &GenerateParams, seed: Option<u64>, refiner: bool) -> String {
    let mut text = params.prompt.clone();
    if let Some(negative) = &params.negative_prompt {
        text += &format!("\nNegative prompt: {negative}");
    }
    let mut fields = vec![
        format!("Steps: {}", params.steps),
        format!("Sampler: {}", sampler_name(params.scheduler)),
        format!("CFG scale: {}", params.guidance),
    ];
    if let Some(seed) = seed {
        fields.push(format!("Seed: {seed}"));
    }
    fields.push(format!("Size: {}x{}", params.width, params.height));
    if refiner {
        fields.push(format!("Refiner switch at: {}", params.refiner_start));
    }
    text + "\n" + &fields.join(", ")
}

/// 8-bit RGB values of `image`, rounded as diffusers' `numpy_to_pil` does (`round(x·255)`).
pub fn to_rgb8(image: &Image) -> Result<Vec<u8>> {
    let values = image.pixels.try_to_vec::<f32>().map_err(|e| Error::Encoding { format: "PNG", message: format!("{e:?}") })?;
    Ok(values.iter().map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect())
}

/// 8-bit RGB PNG bytes of `image` ([`to_rgb8`]) with the parameters text.
pub fn encode_png(image: &Image, parameters: &str) -> Result<Vec<u8>> {
    let bytes = to_rgb8(image)?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.width as u32, image.height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let failed = |e: png::EncodingError| Error::Encoding { format: "PNG", message: e.to_string() };
    // tEXt can only hold Latin-1; PIL falls back to an uncompressed iTXt in the same way.
    if parameters.chars().all(|c| u32::from(c) <= 0xFF) {
        encoder.add_text_chunk("parameters".into(), parameters.into()).map_err(failed)?;
    } else {
        encoder.add_itxt_chunk("parameters".into(), parameters.into()).map_err(failed)?;
    }
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(&bytes).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

/// The largest side [`decode_png`] accepts, in pixels.
pub const MAX_INPUT_SIDE: u32 = 16384;
/// The most pixels [`decode_png`] accepts (8192×8192): decoded they take 768 MiB as f32 RGB.
pub const MAX_INPUT_PIXELS: u64 = 1 << 26;

/// A PNG of any color type and bit depth (palette expanded, 16-bit cut to 8, gray repeated to
/// RGB, alpha dropped) as f32 [H, W, 3] in 0..1, for refining an image. The size the header
/// declares is checked against [`MAX_INPUT_SIDE`] and [`MAX_INPUT_PIXELS`] before anything is
/// allocated for the pixels.
pub fn decode_png(bytes: &[u8]) -> Result<Image> {
    let invalid = |message: String| Error::Input { name: "image".into(), message };
    let unreadable = |e: png::DecodingError| invalid(format!("not a readable PNG: {e}"));
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    // The parameters text of an input image is not used; skipping it bounds what metadata costs.
    decoder.set_ignore_text_chunk(true);
    let (width, height) = decoder.read_header_info().map_err(unreadable)?.size();
    if width > MAX_INPUT_SIDE || height > MAX_INPUT_SIDE || u64::from(width) * u64::from(height) > MAX_INPUT_PIXELS {
        return Err(invalid(format!(
            "{width}×{height} is too large: at most {MAX_INPUT_SIDE} pixels a side and {MAX_INPUT_PIXELS} pixels \
             in all (8192×8192)"
        )));
    }
    let mut reader = decoder.read_info().map_err(unreadable)?;
    let mut buffer = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buffer).map_err(unreadable)?;
    if frame.bit_depth != png::BitDepth::Eight {
        return Err(invalid(format!("{:?}-bit samples are not supported after expansion", frame.bit_depth)));
    }
    // Pixels come in chunks of `channels` bytes (1 to 4): both patterns always match.
    let gray = |pixel: &[u8]| [pixel.first().copied().unwrap_or_default(); 3];
    let rgb = |pixel: &[u8]| match pixel {
        [r, g, b, ..] => [*r, *g, *b],
        _ => [0; 3],
    };
    let (channels, to_rgb): (usize, &dyn Fn(&[u8]) -> [u8; 3]) = match frame.color_type {
        png::ColorType::Grayscale => (1, &gray),
        png::ColorType::GrayscaleAlpha => (2, &gray),
        png::ColorType::Rgb => (3, &rgb),
        png::ColorType::Rgba => (4, &rgb),
        png::ColorType::Indexed => return Err(invalid("palette PNGs could not be expanded to RGB".into())),
    };
    let (width, height) = (frame.width as usize, frame.height as usize);
    let samples = buffer.get(..frame.buffer_size()).filter(|samples| samples.len() == width * height * channels);
    let samples = samples.ok_or_else(|| invalid(format!("the decoded frame does not hold {width}×{height} pixels")))?;
    let pixels: Vec<f32> =
        samples.chunks_exact(channels).flat_map(|pixel| to_rgb(pixel).map(|v| f32::from(v) / 255.0)).collect();
    Ok(Image { width, height, pixels: burn::tensor::TensorData::new(pixels, [height, width, 3]) })
}

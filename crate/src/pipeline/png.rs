//! The finished image as a PNG carrying its generation parameters in a `parameters` tEXt
//! chunk, in AUTOMATIC1111's format (which image viewers and web UIs read back).

use super::{GenerateParams, Image};
use crate::error::{Error, Result};
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
    let values = image.pixels.try_to_vec::<f32>().map_err(|e| Error::Output(format!("{e:?}")))?;
    Ok(values.iter().map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect())
}

/// 8-bit RGB PNG bytes of `image` ([`to_rgb8`]) with the parameters text.
pub fn encode_png(image: &Image, parameters: &str) -> Result<Vec<u8>> {
    let bytes = to_rgb8(image)?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.width as u32, image.height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let failed = |e: png::EncodingError| Error::Output(format!("PNG encoding: {e}"));
    encoder.add_text_chunk("parameters".into(), parameters.into()).map_err(failed)?;
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(&bytes).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

/// An 8-bit RGB or RGBA PNG as f32 [H, W, 3] in 0..1 (alpha dropped), for refining an image.
pub fn decode_png(bytes: &[u8]) -> Result<Image> {
    let invalid = |message: String| Error::Input { name: "image".into(), message };
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| invalid(format!("not a readable PNG: {e}")))?;
    let mut buffer = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buffer).map_err(|e| invalid(format!("not a readable PNG: {e}")))?;
    let channels = match frame.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => return Err(invalid(format!("{other:?} PNGs are not supported, only RGB and RGBA"))),
    };
    let (width, height) = (frame.width as usize, frame.height as usize);
    let pixels: Vec<f32> = buffer[..frame.buffer_size()]
        .chunks_exact(channels)
        .flat_map(|pixel| pixel[..3].iter().map(|&v| f32::from(v) / 255.0))
        .collect();
    Ok(Image { width, height, pixels: burn::tensor::TensorData::new(pixels, [height, width, 3]) })
}

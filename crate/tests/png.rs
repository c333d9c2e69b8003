//! The output PNG's A1111 `parameters` chunk (tEXt for Latin-1, iTXt otherwise) and the input
//! PNG decoder (`sdxl generate --image`) on odd and hostile files.
#![cfg(not(target_arch = "wasm32"))] // native only: each wasm test binary costs a fat-LTO link

use burn::tensor::TensorData;
use sdxl_web::error::Error;
use sdxl_web::pipeline::png::{MAX_INPUT_SIDE, decode_png, encode_png, parameters_text};
use sdxl_web::pipeline::{GenerateParams, Image};

/// A 2×1 image: a red and a mid-gray pixel.
fn image() -> Image {
    Image::new(TensorData::new(vec![1.0f32, 0.0, 0.0, 0.5, 0.5, 0.5], [1, 2, 3]))
}

/// The `parameters` chunks of `png`: (tEXt texts, iTXt texts).
fn parameters_chunks(png: &[u8]) -> (Vec<String>, Vec<String>) {
    let reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().expect("a readable PNG");
    let info = reader.info();
    let latin1 = info.uncompressed_latin1_text.iter().filter(|c| c.keyword == "parameters").map(|c| c.text.clone());
    let utf8 = info.utf8_text.iter().filter(|c| c.keyword == "parameters").map(|c| c.get_text().expect("UTF-8 text"));
    (latin1.collect(), utf8.collect())
}

#[test]
fn non_latin1_parameters_are_written_as_itxt() {
    let mut params = GenerateParams::new("猫, a cat at sunset — 夕焼け 🐈");
    params.negative_prompt = Some("ぼやけた".into());
    let text = parameters_text(&params, Some(42), false);
    assert!(text.starts_with(&params.prompt), "{text}");
    assert!(text.contains("Negative prompt: ぼやけた"), "{text}");

    let png = encode_png(&image(), &text).expect("a non-Latin-1 prompt still gives a PNG");
    assert_eq!(parameters_chunks(&png), (vec![], vec![text]));
}

#[test]
fn latin1_parameters_stay_text() {
    let text = parameters_text(&GenerateParams::new("café crème, Ångström, ½ ÿ"), None, true);
    assert!(text.starts_with("café crème, Ångström, ½ ÿ\n"), "{text}");
    let png = encode_png(&image(), &text).unwrap();
    assert_eq!(parameters_chunks(&png), (vec![text], vec![]));
}

#[test]
fn encoded_image_decodes_back() {
    let decoded = decode_png(&encode_png(&image(), "a cat").unwrap()).unwrap();
    assert_eq!((decoded.width, decoded.height), (2, 1));
    let expected = [255.0, 0.0, 0.0, 128.0, 128.0, 128.0].map(|v: f32| v / 255.0);
    assert_eq!(decoded.pixels.try_to_vec::<f32>().unwrap(), expected);
}

/// A PNG of `width`×`height` from raw samples.
fn encode_raw(width: u32, height: u32, color: png::ColorType, depth: png::BitDepth, palette: Option<Vec<u8>>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    if let Some(palette) = palette {
        encoder.set_palette(palette);
    }
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
    out
}

fn rgb8(png: &[u8]) -> Vec<u8> {
    let image = decode_png(png).unwrap_or_else(|e| panic!("{e}"));
    let shape = image.pixels.shape();
    assert_eq!([shape[0], shape[1], shape[2]], [image.height, image.width, 3]);
    let values = image.pixels.try_to_vec::<f32>().unwrap();
    assert_eq!(values.len(), image.height * image.width * 3);
    values.iter().map(|v| (v * 255.0).round() as u8).collect()
}

#[test]
fn every_color_type_decodes_to_rgb() {
    use png::{BitDepth, ColorType};
    // Two pixels each: the decoded RGB is the same whatever the storage.
    let gray = encode_raw(2, 1, ColorType::Grayscale, BitDepth::Eight, None, &[10, 200]);
    assert_eq!(rgb8(&gray), [10, 10, 10, 200, 200, 200]);
    let gray_alpha = encode_raw(2, 1, ColorType::GrayscaleAlpha, BitDepth::Eight, None, &[10, 0, 200, 255]);
    assert_eq!(rgb8(&gray_alpha), [10, 10, 10, 200, 200, 200]);
    let one_bit = encode_raw(2, 1, ColorType::Grayscale, BitDepth::One, None, &[0b0100_0000]);
    assert_eq!(rgb8(&one_bit), [0, 0, 0, 255, 255, 255]);
    let rgba = encode_raw(2, 1, ColorType::Rgba, BitDepth::Eight, None, &[1, 2, 3, 0, 4, 5, 6, 255]);
    assert_eq!(rgb8(&rgba), [1, 2, 3, 4, 5, 6]);
    let rgb16 = encode_raw(2, 1, ColorType::Rgb, BitDepth::Sixteen, None, &[1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0]);
    assert_eq!(rgb8(&rgb16), [1, 2, 3, 4, 5, 6]);
    let palette = encode_raw(2, 1, ColorType::Indexed, BitDepth::Eight, Some(vec![9, 8, 7, 1, 2, 3]), &[1, 0]);
    assert_eq!(rgb8(&palette), [1, 2, 3, 9, 8, 7]);
}

fn input_error(bytes: &[u8]) -> String {
    match decode_png(bytes) {
        Ok(image) => panic!("decoded a {}×{} image", image.width, image.height),
        Err(Error::Input { name, message }) => {
            assert_eq!(name, "image");
            message
        }
        Err(other) => panic!("not an input error: {other}"),
    }
}

/// CRC-32 (ISO-HDLC), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &byte| {
        (0..8).fold(crc ^ u32::from(byte), |c, _| if c & 1 == 1 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 })
    })
}

/// `png` with its IHDR declaring `width`×`height` (and a valid CRC), the rest unchanged.
fn with_declared_size(mut png: Vec<u8>, width: u32, height: u32) -> Vec<u8> {
    // Signature (8), IHDR length (4) and type (4), then width and height; the CRC covers type + 13 bytes.
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[test]
fn huge_declared_size_is_refused_before_allocating() {
    let small = encode_raw(1, 1, png::ColorType::Rgb, png::BitDepth::Eight, None, &[1, 2, 3]);
    assert_eq!(rgb8(&with_declared_size(small.clone(), 1, 1)), [1, 2, 3], "the patching keeps a valid PNG");

    let huge = with_declared_size(small.clone(), 100_000, 100_000);
    let message = input_error(&huge);
    assert!(message.contains("100000×100000") && message.contains(&MAX_INPUT_SIDE.to_string()), "{message}");
    // Within the side limit but too many pixels in all.
    let message = input_error(&with_declared_size(small.clone(), MAX_INPUT_SIDE, MAX_INPUT_SIDE));
    assert!(message.contains("too large"), "{message}");
    let message = input_error(&with_declared_size(small, 1, u32::MAX >> 1));
    assert!(message.contains("too large"), "{message}");
}

#[test]
fn broken_pngs_are_input_errors() {
    let good = encode_raw(4, 4, png::ColorType::Rgb, png::BitDepth::Eight, None, &[7; 48]);
    // Declared larger than its data: decoding runs out of image data.
    input_error(&with_declared_size(good.clone(), 64, 64));
    for cut in [0, 8, 20, 33, good.len() / 2, good.len() - 13] {
        input_error(&good[..cut]);
    }
    input_error(b"GIF89a not a png at all");
}

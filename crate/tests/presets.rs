//! The full-size SDXL networks built from the published configs have the published parameter
//! counts (parameters are created lazily, so nothing of that size is allocated here).
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system

use burn::module::Module;
use burn::tensor::Device;
use sdxl_web::models::clip::ClipTextConfig;
use sdxl_web::models::presets;
use sdxl_web::models::unet::UNetConfig;
use sdxl_web::models::vae::VaeConfig;

#[test]
fn full_size_parameter_counts_equal_diffusers() {
    let device = Device::flex();
    let unet = |json| UNetConfig::from_json(json).unwrap().init(&device).unwrap().num_params();
    let clip = |json| serde_json::from_str::<ClipTextConfig>(json).unwrap().init(&device).unwrap().num_params();
    let vae: VaeConfig = serde_json::from_str(presets::VAE).unwrap();
    assert_eq!(unet(presets::BASE_UNET), 2_567_463_684);
    assert_eq!(unet(presets::REFINER_UNET), 2_259_526_660);
    assert_eq!(clip(presets::TEXT_ENCODER), 123_060_480);
    assert_eq!(clip(presets::TEXT_ENCODER_2), 694_659_840);
    assert_eq!(vae.init(&device).unwrap().num_params(), 83_653_863);
}

#[test]
fn unsupported_configs_are_named_errors() {
    let mut config: serde_json::Value = serde_json::from_str(presets::BASE_UNET).unwrap();
    config["use_linear_projection"] = false.into();
    let error = UNetConfig::from_json(&config.to_string()).unwrap().init(&Device::flex()).unwrap_err();
    assert!(error.to_string().contains("use_linear_projection"), "{error}");

    config["use_linear_projection"] = true.into();
    config["down_block_types"][0] = "SimpleCrossAttnDownBlock2D".into();
    let error = UNetConfig::from_json(&config.to_string()).unwrap().init(&Device::flex()).unwrap_err();
    assert!(error.to_string().contains("SimpleCrossAttnDownBlock2D"), "{error}");
}

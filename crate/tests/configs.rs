//! Model configs: the published SDXL configs (and the tiny fixtures) load; a key this port does not
//! implement, set to anything but its default, and a zero or absurd count or size are
//! `Error::Unsupported` naming the key — never a panic, a division by zero or an endless build.
#![cfg(not(target_arch = "wasm32"))] // fixtures come from the file system; panics must unwind

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use burn::tensor::Device;
use sdxl_web::error::Error;
use sdxl_web::models::clip::ClipTextConfig;
use sdxl_web::models::presets;
use sdxl_web::models::unet::UNetConfig;
use sdxl_web::models::vae::VaeConfig;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
enum Part {
    Unet,
    Vae,
    Clip,
}

/// Builds the module the config describes (parameters are created lazily, so a full-size one
/// allocates nothing).
fn init(part: Part, config: &Value) -> Result<(), Error> {
    let device = Device::flex();
    let text = config.to_string();
    match part {
        Part::Unet => UNetConfig::from_json(&text)?.init(&device).map(drop),
        Part::Vae => serde_json::from_str::<VaeConfig>(&text).expect("a VAE config").init(&device).map(drop),
        Part::Clip => serde_json::from_str::<ClipTextConfig>(&text).expect("a CLIP config").init(&device).map(drop),
    }
}

fn parse(json: &str) -> Value {
    serde_json::from_str(json).expect("valid JSON")
}

fn fixture(path: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(path);
    parse(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// `base` with `key` set to `value` must be refused with a message naming `named`, without a
/// panic.
fn assert_refused(part: Part, base: &Value, key: &str, value: Value, named: &str) {
    let mut config = base.clone();
    config[key] = value.clone();
    let outcome = catch_unwind(AssertUnwindSafe(|| init(part, &config)));
    match outcome {
        Err(_) => panic!("{part:?} with `{key}` = {value} panicked"),
        Ok(Ok(())) => panic!("{part:?} with `{key}` = {value} was accepted"),
        Ok(Err(Error::Unsupported(message))) => {
            assert!(message.contains(named), "{part:?} with `{key}` = {value}: {message:?} does not name `{named}`");
        }
        Ok(Err(other)) => panic!("{part:?} with `{key}` = {value}: expected Unsupported, got {other}"),
    }
}

/// `base` with `key` set to `value` still loads.
fn assert_accepted(part: Part, base: &Value, key: &str, value: Value) {
    let mut config = base.clone();
    config[key] = value.clone();
    if let Err(error) = init(part, &config) {
        panic!("{part:?} with `{key}` = {value}: {error}");
    }
}

#[test]
fn published_configs_load() {
    for (part, config) in [
        (Part::Unet, parse(presets::BASE_UNET)),
        (Part::Unet, parse(presets::REFINER_UNET)),
        (Part::Vae, parse(presets::VAE)),
        (Part::Clip, parse(presets::TEXT_ENCODER)),
        (Part::Clip, parse(presets::TEXT_ENCODER_2)),
        (Part::Unet, fixture("tiny-sdxl-base/unet/config.json")),
        (Part::Unet, fixture("tiny-sdxl-refiner/unet/config.json")),
        (Part::Vae, fixture("tiny-sdxl-base/vae/config.json")),
        (Part::Clip, fixture("tiny-sdxl-base/text_encoder/config.json")),
        (Part::Clip, fixture("tiny-sdxl-base/text_encoder_2/config.json")),
    ] {
        if let Err(error) = init(part, &config) {
            panic!("{part:?}: {error}");
        }
    }
}

/// diffusers 0.42.1 `UNet2DConditionModel.__init__` keys SDXL's configs leave at the default:
/// each is accepted at that default (whether the config has it or not).
#[test]
fn unet_keys_load_at_diffusers_defaults() {
    let base = parse(presets::BASE_UNET);
    for (key, default) in [
        ("center_input_sample", json!(false)),
        ("only_cross_attention", json!(false)),
        ("downsample_padding", json!(1)),
        ("mid_block_scale_factor", json!(1)),
        ("dropout", json!(0.0)),
        ("act_fn", json!("silu")),
        ("reverse_transformer_layers_per_block", Value::Null),
        ("encoder_hid_dim", Value::Null),
        ("encoder_hid_dim_type", Value::Null),
        ("num_attention_heads", Value::Null),
        ("dual_cross_attention", json!(false)),
        ("class_embed_type", Value::Null),
        ("num_class_embeds", Value::Null),
        ("upcast_attention", json!(false)),
        ("resnet_time_scale_shift", json!("default")),
        ("resnet_skip_time_act", json!(false)),
        ("resnet_out_scale_factor", json!(1.0)),
        ("time_embedding_type", json!("positional")),
        ("time_embedding_dim", Value::Null),
        ("time_embedding_act_fn", Value::Null),
        ("timestep_post_act", Value::Null),
        ("time_cond_proj_dim", Value::Null),
        ("conv_in_kernel", json!(3)),
        ("conv_out_kernel", json!(3)),
        ("attention_type", json!("default")),
        ("class_embeddings_concat", json!(false)),
        ("mid_block_only_cross_attention", Value::Null),
        ("cross_attention_norm", Value::Null),
        ("addition_embed_type_num_heads", json!(64)),
    ] {
        assert_accepted(Part::Unet, &base, key, default.clone());
        let mut without = base.clone();
        without.as_object_mut().unwrap().remove(key);
        init(Part::Unet, &without).unwrap_or_else(|error| panic!("UNet without `{key}`: {error}"));
    }
    // Keys that change no value this port computes: any (valid) value loads.
    assert_accepted(Part::Unet, &base, "upcast_attention", json!(true)); // all attention is f32 here
    assert_accepted(Part::Unet, &base, "dropout", json!(0.1)); // inert at inference
    assert_accepted(Part::Unet, &base, "sample_size", json!(64));
    assert_accepted(Part::Unet, &base, "mid_block_only_cross_attention", json!(false));
}

#[test]
fn unimplemented_keys_are_refused_by_name() {
    let unet = parse(presets::BASE_UNET);
    for (key, value) in [
        ("downsample_padding", json!(0)),
        ("encoder_hid_dim", json!(1280)),
        ("num_class_embeds", json!(10)),
        ("class_embeddings_concat", json!(true)),
        ("resnet_skip_time_act", json!(true)),
        ("time_embedding_act_fn", json!("silu")),
        ("attention_type", json!("gated")),
        ("mid_block_only_cross_attention", json!(true)),
        ("cross_attention_norm", json!("group_norm")),
        ("addition_embed_type_num_heads", json!(32)),
        ("resnet_time_scale_shift", json!("scale_shift")),
        ("class_embed_type", json!("timestep")),
        ("time_embedding_type", json!("fourier")),
        ("conv_in_kernel", json!(1)),
        ("mid_block_scale_factor", json!(2.0)),
    ] {
        assert_refused(Part::Unet, &unet, key, value, key);
    }
    let refiner = parse(presets::REFINER_UNET);
    assert_refused(Part::Unet, &refiner, "attention_type", json!("gated-text-image"), "attention_type");

    let vae = parse(presets::VAE);
    for (key, value) in [
        ("latents_mean", json!([0.0, 0.0, 0.0, 0.0])),
        ("latents_std", json!([1.0, 1.0, 1.0, 1.0])),
        ("shift_factor", json!(0.1)),
        ("mid_block_add_attention", json!(false)),
        ("act_fn", json!("relu")),
    ] {
        assert_refused(Part::Vae, &vae, key, value, key);
    }
    // A precision hint and the default image size: no value computed changes.
    assert_accepted(Part::Vae, &vae, "force_upcast", json!(false));
    assert_accepted(Part::Vae, &vae, "sample_size", json!(512));

    let clip = parse(presets::TEXT_ENCODER_2);
    assert_refused(Part::Clip, &clip, "hidden_act", json!("relu"), "hidden_act");
    for (key, value) in [
        ("dropout", json!(0.1)),
        ("attention_dropout", json!(0.1)),
        ("initializer_range", json!(1.0)),
        ("initializer_factor", json!(2.0)),
        ("pad_token_id", json!(49407)),
        ("bos_token_id", json!(49406)),
    ] {
        assert_accepted(Part::Clip, &clip, key, value);
    }
}

const HUGE: u64 = u64::MAX; // 2^64 − 1

#[test]
fn zero_and_absurd_unet_sizes_are_refused_by_name() {
    let unet = parse(presets::BASE_UNET);
    #[rustfmt::skip]
    let cases = [
        ("norm_num_groups", json!(0), "norm_num_groups"),
        ("norm_num_groups", json!(7), "norm_num_groups"), // does not divide 320
        ("norm_num_groups", json!(HUGE), "norm_num_groups"),
        ("layers_per_block", json!(HUGE), "layers_per_block"),
        ("layers_per_block", json!(0), "layers_per_block"),
        ("layers_per_block", json!([2, 2, 65]), "layers_per_block"),
        ("layers_per_block", json!([2, 2]), "layers_per_block"),
        ("transformer_layers_per_block", json!(HUGE), "transformer_layers_per_block"),
        ("transformer_layers_per_block", json!([1, 2, 1000]), "transformer_layers_per_block"),
        ("block_out_channels", json!([]), "block_out_channels"),
        ("block_out_channels", json!(vec![320; 9]), "block_out_channels"),
        ("block_out_channels", json!([320, 640, 0]), "block_out_channels"),
        ("block_out_channels", json!([320, 640, HUGE]), "block_out_channels"),
        ("block_out_channels", json!([320, 640, 1u64 << 20]), "block_out_channels"),
        ("block_out_channels", json!([320, 650, 1280]), "block_out_channels"), // not in 32 groups
        ("attention_head_dim", json!(0), "attention_head_dim"),
        ("attention_head_dim", json!([5, 10, 0]), "attention_head_dim"),
        ("attention_head_dim", json!([5, 10, 3]), "attention_head_dim"), // 3 heads of 1280 channels
        ("attention_head_dim", json!(HUGE), "attention_head_dim"),
        ("num_attention_heads", json!([5, 10, 0]), "num_attention_heads"),
        ("num_attention_heads", json!(HUGE), "num_attention_heads"),
        ("in_channels", json!(0), "in_channels"),
        ("out_channels", json!(HUGE), "out_channels"),
        ("cross_attention_dim", json!(0), "cross_attention_dim"),
        ("cross_attention_dim", json!(HUGE), "cross_attention_dim"),
        ("addition_time_embed_dim", json!(0), "addition_time_embed_dim"),
        ("addition_time_embed_dim", json!(HUGE), "addition_time_embed_dim"),
        ("projection_class_embeddings_input_dim", json!(0), "projection_class_embeddings_input_dim"),
        ("projection_class_embeddings_input_dim", json!(HUGE), "projection_class_embeddings_input_dim"),
        ("norm_eps", json!(-1.0), "norm_eps"),
        ("freq_shift", json!(128), "freq_shift"), // half of addition_time_embed_dim 256: divides by zero
        ("freq_shift", json!(-1), "freq_shift"),
        ("dropout", json!(1.5), "dropout"),
    ];
    for (key, value, named) in cases {
        assert_refused(Part::Unet, &unet, key, value, named);
    }
}

#[test]
fn zero_and_absurd_vae_and_clip_sizes_are_refused_by_name() {
    let vae = parse(presets::VAE);
    #[rustfmt::skip]
    let cases = [
        ("norm_num_groups", json!(0), "norm_num_groups"),
        ("norm_num_groups", json!(48), "norm_num_groups"), // does not divide 128
        ("norm_num_groups", json!(HUGE), "norm_num_groups"),
        ("layers_per_block", json!(HUGE), "layers_per_block"),
        ("layers_per_block", json!(0), "layers_per_block"),
        ("block_out_channels", json!([]), "block_out_channels"),
        ("block_out_channels", json!([128, 256, 512, 0]), "block_out_channels"),
        ("block_out_channels", json!([128, 256, 512, HUGE]), "block_out_channels"),
        ("in_channels", json!(0), "in_channels"),
        ("out_channels", json!(HUGE), "out_channels"),
        ("latent_channels", json!(0), "latent_channels"),
        ("latent_channels", json!(HUGE), "latent_channels"),
        ("scaling_factor", json!(0.0), "scaling_factor"),
        ("scaling_factor", json!(-0.13025), "scaling_factor"),
    ];
    for (key, value, named) in cases {
        assert_refused(Part::Vae, &vae, key, value, named);
    }
    // 65 levels: the block types match, only the count is absurd (a 2^64 scale factor).
    let mut deep = vae.clone();
    deep["down_block_types"] = json!(vec!["DownEncoderBlock2D"; 65]);
    deep["up_block_types"] = json!(vec!["UpDecoderBlock2D"; 65]);
    deep["block_out_channels"] = json!(vec![128; 65]);
    assert_refused(Part::Vae, &deep, "block_out_channels", json!(vec![128; 65]), "block_out_channels");
    let deep: VaeConfig = serde_json::from_value(deep).unwrap();
    assert_eq!(deep.scale_factor(), usize::MAX, "saturates rather than overflow");

    for clip in [parse(presets::TEXT_ENCODER), parse(presets::TEXT_ENCODER_2)] {
        #[rustfmt::skip]
        let cases = [
            ("num_attention_heads", json!(0), "num_attention_heads"),
            ("num_attention_heads", json!(HUGE), "num_attention_heads"),
            ("num_attention_heads", json!(7), "num_attention_heads"), // does not divide the width
            ("hidden_size", json!(0), "hidden_size"),
            ("hidden_size", json!(770), "hidden_size"), // not divisible by the heads
            ("hidden_size", json!(HUGE), "hidden_size"),
            ("num_hidden_layers", json!(HUGE), "num_hidden_layers"),
            ("num_hidden_layers", json!(1), "num_hidden_layers"), // no penultimate layer
            ("intermediate_size", json!(0), "intermediate_size"),
            ("intermediate_size", json!(HUGE), "intermediate_size"),
            ("vocab_size", json!(0), "vocab_size"),
            ("vocab_size", json!(1u64 << 40), "vocab_size"),
            ("max_position_embeddings", json!(0), "max_position_embeddings"),
            ("max_position_embeddings", json!(HUGE), "max_position_embeddings"),
            ("layer_norm_eps", json!(-1e-5), "layer_norm_eps"),
        ];
        for (key, value, named) in cases {
            assert_refused(Part::Clip, &clip, key, value, named);
        }
    }
    let clip = parse(presets::TEXT_ENCODER_2);
    assert_refused(Part::Clip, &clip, "projection_dim", json!(0), "projection_dim");
    assert_refused(Part::Clip, &clip, "projection_dim", json!(HUGE), "projection_dim");
    assert_refused(Part::Clip, &clip, "projection_dim", Value::Null, "projection_dim");
}

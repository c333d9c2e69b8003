//! Running one network of a model on tensors from a safetensors file: `sdxl run`, used by the
//! parity tests and by anyone checking a conversion. Names follow diffusers' arguments.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::pipeline::parts;
use crate::models::clip::{ClipTextConfig, ClipTextModel};
use crate::models::unet::{UNet2DConditionModel, UNetConfig};
use crate::models::vae::{AutoencoderKL, VaeConfig};
use crate::weights::ModelFolder;
use crate::weights::safetensors::SafetensorsSource;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[clap(rename_all = "snake_case")]
pub enum Component {
    TextEncoder,
    /// Spelled as the folder, the manifest and diffusers spell it (`text_encoder2` still works).
    #[value(name = "text_encoder_2", alias = "text_encoder2")]
    TextEncoder2,
    Unet,
    VaeDecoder,
    VaeEncoder,
}

impl Component {
    /// The folder (and `model_index.json` entry) holding this component's weights.
    fn folder(self) -> &'static str {
        match self {
            Component::TextEncoder => "text_encoder",
            Component::TextEncoder2 => "text_encoder_2",
            Component::Unet => "unet",
            Component::VaeDecoder | Component::VaeEncoder => "vae",
        }
    }
}

/// The named inputs of one run, checked for presence and rank as they are taken.
struct Inputs<'a> {
    source: &'a SafetensorsSource,
    device: &'a Device,
}

impl Inputs<'_> {
    fn data(&self, name: &str) -> Result<TensorData> {
        self.source.read_input(name)
    }

    fn float<const D: usize>(&self, name: &str, expected: [Option<usize>; D]) -> Result<Tensor<D>> {
        let data = self.data(name)?.convert::<f32>();
        let shape = data.shape().to_vec();
        let fits = shape.len() == D && shape.iter().zip(&expected).all(|(size, want)| want.is_none_or(|want| *size == want));
        if !fits || shape.contains(&0) {
            let wanted: Vec<String> =
                expected.iter().map(|size| size.map_or("_".to_string(), |s| s.to_string())).collect();
            return Err(Error::Input {
                name: name.into(),
                message: format!("shape {shape:?}, expected [{}]", wanted.join(", ")),
            });
        }
        Ok(Tensor::from_data(data, self.device))
    }

    /// Token ids [B, T], each below `vocab_size`.
    fn token_windows(&self, name: &str, vocab_size: usize) -> Result<Vec<Vec<i64>>> {
        let data = self.data(name)?;
        let shape = data.shape().to_vec();
        let [batch, tokens] = shape[..] else {
            return Err(Error::Input { name: name.into(), message: format!("shape {shape:?}, expected [B, 77]") });
        };
        let ids = data.convert::<i64>().try_into_vec::<i64>().map_err(|e| Error::Input {
            name: name.into(),
            message: format!("{e:?}"),
        })?;
        if let Some(id) = ids.iter().find(|&&id| id < 0 || id as u64 >= vocab_size as u64) {
            return Err(Error::Input { name: name.into(), message: format!("token id {id} is not below the vocabulary size {vocab_size}") });
        }
        Ok((0..batch).map(|b| ids[b * tokens..(b + 1) * tokens].to_vec()).collect())
    }
}

/// Runs `component` of the model at `model_dir` (a diffusers folder, or a converted model:
/// a folder with `manifest.json`) on the inputs, returning its named outputs.
pub fn run(
    model_dir: &Path,
    component: Component,
    inputs: &SafetensorsSource,
    device: &Device,
) -> Result<Vec<(String, TensorData)>> {
    let model = &ModelFolder::open(model_dir)?;
    let inputs = Inputs { source: inputs, device };
    let outputs = match component {
        Component::TextEncoder | Component::TextEncoder2 => {
            let (config, encoder): (ClipTextConfig, ClipTextModel) = parts::load(model, component.folder(), device)?;
            let out = encoder.forward(&inputs.token_windows("input_ids", config.vocab_size)?, device)?;
            let mut outputs = vec![("penultimate".to_string(), out.penultimate.into_data())];
            if let Some(text_embeds) = out.text_embeds {
                outputs.push(("text_embeds".to_string(), text_embeds.into_data()));
            }
            outputs
        }
        Component::Unet => {
            let (config, unet): (UNetConfig, UNet2DConditionModel) = parts::load(model, "unet", device)?;
            let sample = inputs.float("sample", [None, Some(config.in_channels), None, None])?;
            let [batch, _, height, width] = sample.dims();
            let multiple = 1 << (config.block_out_channels.len() - 1);
            if height % multiple != 0 || width % multiple != 0 {
                return Err(Error::Input {
                    name: "sample".into(),
                    message: format!("{height}×{width} is not a multiple of {multiple}"),
                });
            }
            let timestep = inputs.float("timestep", [Some(batch)])?;
            let context =
                inputs.float("encoder_hidden_states", [Some(batch), None, Some(config.cross_attention_dim)])?;
            let text_embeds = inputs.float("text_embeds", [Some(batch), None])?;
            let time_ids = inputs.float("time_ids", [Some(batch), None])?;
            let added = text_embeds.dims()[1] + time_ids.dims()[1] * config.addition_time_embed_dim.unwrap_or(0);
            if Some(added) != config.projection_class_embeddings_input_dim {
                return Err(Error::Input {
                    name: "text_embeds, time_ids".into(),
                    message: format!(
                        "{} pooled + {} time ids give {added} features, the UNet expects {:?}",
                        text_embeds.dims()[1],
                        time_ids.dims()[1],
                        config.projection_class_embeddings_input_dim
                    ),
                });
            }
            let out = unet.forward(sample, timestep, context, text_embeds, time_ids);
            vec![("out".to_string(), out.into_data())]
        }
        Component::VaeDecoder => {
            let (config, vae): (VaeConfig, AutoencoderKL) = parts::load(model, "vae", device)?;
            let latents = inputs.float("latents", [None, Some(config.latent_channels), None, None])?;
            vec![("sample".to_string(), vae.decode(latents).into_data())]
        }
        Component::VaeEncoder => {
            let (config, vae): (VaeConfig, AutoencoderKL) = parts::load(model, "vae", device)?;
            let sample = inputs.float("sample", [None, Some(config.in_channels), None, None])?;
            let [_, _, height, width] = sample.dims();
            let multiple = config.scale_factor();
            if height % multiple != 0 || width % multiple != 0 {
                return Err(Error::Input {
                    name: "sample".into(),
                    message: format!("{height}×{width} is not a multiple of {multiple}"),
                });
            }
            vec![("mean".to_string(), vae.encode_mean(sample).into_data())]
        }
    };
    Ok(outputs)
}

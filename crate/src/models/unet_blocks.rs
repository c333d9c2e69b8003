//! The UNet's down, mid and up blocks. A plain block (`DownBlock2D`, `UpBlock2D`) is the
//! cross-attention one without attentions, so one type serves both and the keys stay diffusers'.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
use super::transformer::Transformer2DModel;

/// What every block of one UNet shares.
#[derive(Clone, Copy, Debug)]
pub struct BlockSettings {
    pub time_dim: usize,
    pub context_dim: usize,
    pub groups: usize,
    pub eps: f64,
}

/// How a block's attentions are built: `None` for a plain block.
#[derive(Clone, Copy, Debug)]
pub struct AttentionSettings {
    pub layers: usize,
    pub heads: usize,
}

impl BlockSettings {
    fn resnet(&self, channels_in: usize, channels_out: usize, device: &Device) -> ResnetBlock2D {
        ResnetBlock2D::new(channels_in, channels_out, Some(self.time_dim), self.groups, self.eps, device)
    }

    fn attentions(
        &self,
        attention: Option<AttentionSettings>,
        channels: usize,
        count: usize,
        device: &Device,
    ) -> Vec<Transformer2DModel> {
        let Some(attention) = attention else { return Vec::new() };
        (0..count)
            .map(|_| {
                Transformer2DModel::new(
                    channels,
                    attention.layers,
                    attention.heads,
                    self.context_dim,
                    self.groups,
                    device,
                )
            })
            .collect()
    }
}

#[derive(Module, Debug)]
pub struct DownBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub downsamplers: Vec<Downsample2D>,
}

impl DownBlock {
    pub fn new(
        settings: &BlockSettings,
        attention: Option<AttentionSettings>,
        channels_in: usize,
        channels_out: usize,
        layers: usize,
        downsample: bool,
        device: &Device,
    ) -> Self {
        Self {
            resnets: (0..layers)
                .map(|i| settings.resnet(if i == 0 { channels_in } else { channels_out }, channels_out, device))
                .collect(),
            attentions: settings.attentions(attention, channels_out, layers, device),
            downsamplers: downsample
                .then(|| Downsample2D::new(channels_out, true, device))
                .into_iter()
                .collect(),
        }
    }

    /// Returns the output and the skip connections it adds (one per resnet, one for the
    /// downsampler).
    pub fn forward(&self, mut x: Tensor<4>, emb: &Tensor<2>, context: &Tensor<3>) -> (Tensor<4>, Vec<Tensor<4>>) {
        let mut skips = Vec::with_capacity(self.resnets.len() + 1);
        for (i, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, Some(emb));
            if let Some(attention) = self.attentions.get(i) {
                x = attention.forward(x, context);
            }
            skips.push(x.clone());
        }
        for downsampler in &self.downsamplers {
            x = downsampler.forward(x);
            skips.push(x.clone());
        }
        (x, skips)
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (attention, resnet) pairs.
#[derive(Module, Debug)]
pub struct MidBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
}

impl MidBlock {
    pub fn new(settings: &BlockSettings, attention: AttentionSettings, channels: usize, device: &Device) -> Self {
        Self {
            resnets: (0..2).map(|_| settings.resnet(channels, channels, device)).collect(),
            attentions: settings.attentions(Some(attention), channels, 1, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>, emb: &Tensor<2>, context: &Tensor<3>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, Some(emb));
        for (attention, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = resnet.forward(attention.forward(x, context), Some(emb));
        }
        x
    }
}

#[derive(Module, Debug)]
pub struct UpBlock {
    pub resnets: Vec<ResnetBlock2D>,
    pub attentions: Vec<Transformer2DModel>,
    pub upsamplers: Vec<Upsample2D>,
}

impl UpBlock {
    /// `channels_prev`: the output of the block below; `channels_skip_last`: the channels of the
    /// skip connection the last resnet takes (the matching down block's input).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: &BlockSettings,
        attention: Option<AttentionSettings>,
        channels_prev: usize,
        channels_out: usize,
        channels_skip_last: usize,
        layers: usize,
        upsample: bool,
        device: &Device,
    ) -> Self {
        Self {
            resnets: (0..layers)
                .map(|i| {
                    let skip = if i == layers - 1 { channels_skip_last } else { channels_out };
                    let input = if i == 0 { channels_prev } else { channels_out };
                    settings.resnet(input + skip, channels_out, device)
                })
                .collect(),
            attentions: settings.attentions(attention, channels_out, layers, device),
            upsamplers: upsample.then(|| Upsample2D::new(channels_out, device)).into_iter().collect(),
        }
    }

    /// Consumes one skip connection per resnet from the end of `skips`.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        skips: &mut Vec<Tensor<4>>,
        emb: &Tensor<2>,
        context: &Tensor<3>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("the down path provides one skip per up resnet");
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(emb));
            if let Some(attention) = self.attentions.get(i) {
                x = attention.forward(x, context);
            }
        }
        for upsampler in &self.upsamplers {
            x = upsampler.forward(x);
        }
        x
    }
}

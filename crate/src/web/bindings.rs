//! JavaScript bindings (wasm32 only), used by web/worker.js: burn on the browser's WebGPU, a
//! model loaded file by file as the worker fetches them, generation step by step.
//!
//! One style across the boundary: what crosses is plain data, converted by serde-wasm-bindgen
//! (requests in, results and events out; byte buffers as `Uint8Array`). Errors reach JavaScript
//! as `Error`s with a `kind` ([`crate::error::Kind`], or `gpu` when reading back failed).

use burn::tensor::Device;
use burn::tensor::wgpu::WgpuSetup;
use serde::Serialize;
use serde_bytes::ByteBuf;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::protocol::Generate;
use crate::error::Error;
use crate::ops_check;
use crate::pipeline::assembly::{Assembly, Role};
use crate::pipeline::png::{encode_png, parameters_text, to_rgb8};
use crate::pipeline::preview::latent_preview;
use crate::pipeline::{Base, BufferLimit, GenerateParams, Image, Noise, Refiner, Sdxl, Stage};

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

fn js_error(error: Error) -> JsValue {
    tagged_error(&error.to_string(), error.kind().name())
}

fn tagged_error(message: &str, kind: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    let _ = js_sys::Reflect::set(&error, &"kind".into(), &kind.into());
    error.into()
}

fn gpu_error(error: impl std::fmt::Display) -> JsValue {
    tagged_error(&format!("reading back from the GPU failed: {error}"), "gpu")
}

/// Plain data as a JavaScript value (objects as plain objects, not `Map`s).
fn to_js(value: &impl Serialize) -> JsValue {
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    value.serialize(&serializer).expect("plain data converts")
}

/// The parameters' defaults (`sdxl generate`'s), for the page's form.
#[wasm_bindgen]
pub fn defaults() -> JsValue {
    to_js(&GenerateParams::new(""))
}

/// burn initialized on the browser's WebGPU adapter.
#[wasm_bindgen]
pub struct Gpu {
    device: Device,
    setup: WgpuSetup,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Adapter {
    name: String,
    backend: String,
    driver: String,
    features: Vec<String>,
    limits: String,
    max_buffer_size: f64,
    max_storage_buffer_binding_size: f64,
}

#[derive(Serialize)]
struct OpsStage {
    name: &'static str,
    values: Vec<f32>,
}

#[wasm_bindgen]
impl Gpu {
    /// Requests a WebGPU adapter and device and registers them with burn. Fails with a message
    /// when the browser has no WebGPU or no adapter.
    pub async fn init() -> Result<Gpu, JsError> {
        let (device, setup) = Device::wgpu_options()
            .init_with_setup_async()
            .await
            .map_err(|e| JsError::new(&format!("WebGPU initialization failed: {e}")))?;
        Ok(Gpu { device, setup })
    }

    /// The adapter burn runs on: `{ name, backend, driver, features, limits, maxBufferSize,
    /// maxStorageBufferBindingSize }`.
    pub fn adapter(&self) -> JsValue {
        let adapter = &self.setup.adapter;
        let info = adapter.get_info();
        let limits = self.setup.device.limits();
        to_js(&Adapter {
            name: info.name,
            backend: format!("{:?}", self.setup.backend),
            driver: format!("{} {}", info.driver, info.driver_info),
            features: adapter.features().iter_names().map(|(name, _)| name.to_string()).collect(),
            limits: format!("{limits:#?}"),
            max_buffer_size: limits.max_buffer_size as f64,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size as f64,
        })
    }

    /// Runs the ops check graph on WebGPU: `[{ name, values }]`, in the graph's order.
    #[wasm_bindgen(js_name = opsCheck)]
    pub async fn ops_check(&self) -> Result<JsValue, JsError> {
        let stages = ops_check::run(&self.device).await.map_err(|e| JsError::new(&e.to_string()))?;
        let stages: Vec<OpsStage> = stages.into_iter().map(|stage| OpsStage { name: stage.name, values: stage.values }).collect();
        Ok(to_js(&stages))
    }
}

/// A base model or refiner being loaded: the worker fetches each file [`needed`](Self::needed)
/// lists (from its cache or the network) and hands it to [`add`](Self::add).
#[wasm_bindgen]
pub struct ModelLoader {
    assembly: Assembly,
}

#[wasm_bindgen]
impl ModelLoader {
    /// `manifest`: the bytes of `folder/manifest.json`; `role`: `base` or `refiner`.
    #[wasm_bindgen(constructor)]
    pub fn new(gpu: &Gpu, manifest: &[u8], folder: &str, role: &str) -> Result<ModelLoader, JsValue> {
        let role = match role {
            "base" => Role::Base,
            "refiner" => Role::Refiner,
            other => return Err(tagged_error(&format!("role `{other}` is not base or refiner"), "input")),
        };
        let assembly = Assembly::new(manifest, folder, role, &gpu.device).map_err(js_error)?;
        Ok(ModelLoader { assembly })
    }

    /// The files to fetch, in order: `[{ path, size, sha256, component }]`, paths relative to
    /// the manifest.
    pub fn needed(&self) -> JsValue {
        to_js(&self.assembly.needed())
    }

    /// Checks a file against the manifest and loads it (an `integrity` error: fetch it again).
    pub fn add(&mut self, path: &str, bytes: &[u8]) -> Result<(), JsValue> {
        self.assembly.add(path, bytes).map_err(js_error)
    }
}

/// A loaded base model (and refiner): generation. `free()` releases its GPU memory.
#[wasm_bindgen]
pub struct Pipeline {
    base: Base,
    refiner: Option<Refiner>,
    device: Device,
    /// The largest buffer the GPU allows, bytes.
    buffer_limit: u64,
}

#[derive(Serialize)]
struct Preview {
    width: usize,
    height: usize,
    rgba: ByteBuf,
}

#[derive(Serialize)]
struct StepEvent {
    stage: &'static str,
    index: usize,
    total: usize,
    preview: Option<Preview>,
}

#[derive(Serialize)]
struct Generated {
    width: usize,
    height: usize,
    rgba: ByteBuf,
    png: ByteBuf,
    /// As a string: a u64 does not fit a JavaScript number.
    seed: String,
    parameters: String,
    warnings: Vec<String>,
}

/// RGB bytes → RGBA bytes, opaque.
fn rgba(rgb: &[u8]) -> ByteBuf {
    ByteBuf::from(rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect::<Vec<u8>>())
}

#[wasm_bindgen]
impl Pipeline {
    /// Takes the loaders, which must have every file.
    #[wasm_bindgen(constructor)]
    pub fn new(gpu: &Gpu, base: ModelLoader, refiner: Option<ModelLoader>) -> Result<Pipeline, JsValue> {
        let refiner = refiner.map(|loader| loader.assembly.into_refiner()).transpose().map_err(js_error)?;
        let limits = gpu.setup.device.limits();
        let buffer_limit = limits.max_buffer_size.min(limits.max_storage_buffer_binding_size.into());
        Ok(Pipeline { base: base.assembly.into_base().map_err(js_error)?, refiner, device: gpu.device.clone(), buffer_limit })
    }

    #[wasm_bindgen(getter, js_name = hasRefiner)]
    pub fn has_refiner(&self) -> bool {
        self.refiner.is_some()
    }

    /// Widths and heights must be multiples of this many pixels (the VAE's scale times the
    /// base UNet's downsamplings); with the refiner on, `refinerSizeMultiple`.
    #[wasm_bindgen(getter, js_name = sizeMultiple)]
    pub fn size_multiple(&self) -> usize {
        self.base.size_rules(None).multiple
    }

    /// The multiple sizes take with the refiner on (its UNet may downsample more than the
    /// base's: SDXL's refiner asks for 64); the base's when no refiner is loaded.
    #[wasm_bindgen(getter, js_name = refinerSizeMultiple)]
    pub fn refiner_size_multiple(&self) -> usize {
        Sdxl::new(&self.base, self.refiner.as_ref()).size_rules().multiple
    }

    /// Runs a request (the parameters of `sdxl generate` and `seed`, `refiner`, `previews`;
    /// see `web::protocol`). After each step it calls `onStep({ stage, index, total, preview?:
    /// { width, height, rgba } })` and awaits its result: false (or a promise of false)
    /// cancels. Resolves to `{ width, height, rgba, png, seed, parameters, warnings }`.
    pub async fn generate(&self, request: JsValue, on_step: js_sys::Function) -> Result<JsValue, JsValue> {
        let request: serde_json::Value = serde_wasm_bindgen::from_value(request)
            .map_err(|e| js_error(Error::Input { name: "request".into(), message: e.to_string() }))?;
        let request = Generate::from_json(request).map_err(js_error)?;
        let refiner = match (request.refiner, &self.refiner) {
            (false, _) => None,
            (true, Some(refiner)) => Some(refiner),
            (true, None) => return Err(tagged_error("the refiner is on but no refiner is loaded", "input")),
        };
        let limit = BufferLimit { bytes: self.buffer_limit, text: format!("this GPU allows {} MiB", self.buffer_limit >> 20) };
        let sdxl = Sdxl::new(&self.base, refiner).with_buffer_limit(limit);
        let params = &request.params;
        let device = &self.device;
        let mut warnings = Vec::new();
        let noise = Noise::from_seed(request.seed, device);
        let mut generation = sdxl.start(params, noise, device, &mut |w| warnings.push(w)).map_err(js_error)?;
        while let Some(step) = generation.step() {
            let preview = match request.previews {
                true => {
                    let latent = step.denoised.into_data_async().await.map_err(gpu_error)?;
                    let preview = latent_preview(latent);
                    Some(Preview { width: preview.width, height: preview.height, rgba: ByteBuf::from(preview.rgba) })
                }
                false => None,
            };
            let stage = if step.stage == Stage::Base { "base" } else { "refiner" };
            let event = StepEvent { stage, index: step.index, total: step.total, preview };
            let mut go_on = on_step.call1(&JsValue::NULL, &to_js(&event))?;
            if let Some(promise) = go_on.dyn_ref::<js_sys::Promise>() {
                go_on = JsFuture::from(promise.clone()).await?;
            }
            if !go_on.is_truthy() {
                return Err(js_error(Error::Cancelled));
            }
        }
        let pixels = sdxl.decode_pixels(generation.latents()).map_err(js_error)?;
        drop(generation);
        let image = Image::new(pixels.into_data_async().await.map_err(gpu_error)?);
        let parameters = parameters_text(params, Some(request.seed), refiner.is_some());
        let png = encode_png(&image, &parameters).map_err(js_error)?;
        Ok(to_js(&Generated {
            width: image.width,
            height: image.height,
            rgba: rgba(&to_rgb8(&image).map_err(js_error)?),
            png: ByteBuf::from(png),
            seed: request.seed.to_string(),
            parameters,
            warnings,
        }))
    }
}

//! JavaScript bindings (wasm32 only), used by web/worker.js: burn on the browser's WebGPU, a
//! model loaded file by file as the worker fetches them, generation step by step.
//!
//! Errors reach JavaScript as `Error`s with a `kind`: `integrity` (bytes differ from the
//! manifest: fetch again), `input` (a bad request), `cancelled`, `model` (a broken or
//! unsupported model), `gpu` (reading back from the GPU failed).

use burn::tensor::Device;
use burn::tensor::wgpu::WgpuSetup;
use js_sys::{Array, Object, Reflect, Uint8Array, Uint8ClampedArray};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::protocol::{Transfer, parse_generate};
use crate::error::Error;
use crate::ops_check;
use crate::pipeline::assembly::{Assembly, Role};
use crate::pipeline::png::{encode_png, parameters_text, to_rgb8};
use crate::pipeline::preview::{Preview, latent_preview};
use crate::pipeline::{Base, Image, Noise, Refiner, Stage};

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

fn js_error(error: Error) -> JsValue {
    let kind = match &error {
        Error::Integrity(_) => "integrity",
        Error::Input { .. } => "input",
        Error::Cancelled => "cancelled",
        Error::Io { .. } | Error::Json { .. } | Error::Safetensors { .. } | Error::Unsupported(_) | Error::Weights(_) => {
            "model"
        }
        Error::Output(_) => "gpu",
    };
    tagged_error(&error.to_string(), kind)
}

fn tagged_error(message: &str, kind: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    let _ = Reflect::set(&error, &"kind".into(), &kind.into());
    error.into()
}

/// Sets `object[key] = value`; setting a property of a plain object cannot fail.
fn set(object: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(object, &key.into(), &value.into());
}

/// burn initialized on the browser's WebGPU adapter.
#[wasm_bindgen]
pub struct Gpu {
    device: Device,
    setup: WgpuSetup,
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

    /// The adapter burn runs on: `{ name, backend, driver, features: [..], limits: "…",
    /// maxBufferSize, maxStorageBufferBindingSize }`.
    pub fn adapter(&self) -> JsValue {
        let adapter = &self.setup.adapter;
        let info = adapter.get_info();
        let features = Array::new();
        for (name, _) in adapter.features().iter_names() {
            features.push(&name.into());
        }
        let limits = self.setup.device.limits();
        let object = Object::new();
        set(&object, "name", info.name);
        set(&object, "backend", format!("{:?}", self.setup.backend));
        set(&object, "driver", format!("{} {}", info.driver, info.driver_info));
        set(&object, "features", features);
        set(&object, "limits", format!("{limits:#?}"));
        set(&object, "maxBufferSize", limits.max_buffer_size as f64);
        set(&object, "maxStorageBufferBindingSize", limits.max_storage_buffer_binding_size as f64);
        object.into()
    }

    /// Runs the ops check graph on WebGPU: `{ stage name: Float32Array }`.
    #[wasm_bindgen(js_name = opsCheck)]
    pub async fn ops_check(&self) -> Result<JsValue, JsError> {
        let stages = ops_check::run(&self.device).await.map_err(|e| JsError::new(&e.to_string()))?;
        let object = Object::new();
        for stage in &stages {
            set(&object, stage.name, js_sys::Float32Array::from(stage.values.as_slice()));
        }
        Ok(object.into())
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

    /// The files to fetch, in order, as JSON: `[{ path, size, sha256, component }]`, paths
    /// relative to the manifest.
    pub fn needed(&self) -> String {
        serde_json::to_string(self.assembly.needed()).expect("plain data serializes")
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

    /// Runs a request (JSON: the parameters of `sdxl generate`, see `web::protocol`). After
    /// each step it calls `onStep({ stage, index, total, preview?: { width, height, rgba } })`
    /// and awaits its result: false (or a promise of false) cancels. Resolves to `{ width,
    /// height, rgba, png, seed, parameters, warnings }`.
    pub async fn generate(&self, request: String, on_step: js_sys::Function) -> Result<JsValue, JsValue> {
        let request = parse_generate(&request, &self.base.vae_config, self.buffer_limit).map_err(js_error)?;
        let refiner = match (request.refiner, &self.refiner) {
            (false, _) => None,
            (true, Some(refiner)) => Some(refiner),
            (true, None) => return Err(tagged_error("the refiner is on but no refiner is loaded", "input")),
        };
        let params = &request.params;
        let device = &self.device;
        let noise = Noise::from_seed(request.seed, self.base.latent_shape(params), device);
        let warnings = Array::new();
        let mut generation =
            self.base.start(refiner, params, noise, device, &mut |w| _ = warnings.push(&JsValue::from(w))).map_err(js_error)?;
        while let Some(step) = generation.step() {
            let event = Object::new();
            set(&event, "stage", if step.stage == Stage::Base { "base" } else { "refiner" });
            set(&event, "index", step.index as u32);
            set(&event, "total", step.total as u32);
            if request.previews {
                let latent = step.denoised.into_data_async().await.map_err(gpu_error)?;
                set(&event, "preview", preview_to_js(&latent_preview(latent)));
            }
            let mut go_on = on_step.call1(&JsValue::NULL, &event)?;
            if let Some(promise) = go_on.dyn_ref::<js_sys::Promise>() {
                go_on = JsFuture::from(promise.clone()).await?;
            }
            if !go_on.is_truthy() {
                return Err(js_error(Error::Cancelled));
            }
        }
        let pixels = self.base.decode_pixels(generation.latents());
        drop(generation);
        let image = Image::new(pixels.into_data_async().await.map_err(gpu_error)?);
        let parameters = parameters_text(params, Some(request.seed), refiner.is_some());
        let png = encode_png(&image, &parameters).map_err(js_error)?;
        let rgba: Vec<u8> = to_rgb8(&image).map_err(js_error)?.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        let result = Object::new();
        set(&result, "width", image.width as u32);
        set(&result, "height", image.height as u32);
        set(&result, "rgba", Uint8ClampedArray::from(rgba.as_slice()));
        set(&result, "png", Uint8Array::from(png.as_slice()));
        // As a string: a u64 does not fit a JavaScript number.
        set(&result, "seed", request.seed.to_string());
        set(&result, "parameters", parameters);
        set(&result, "warnings", warnings);
        Ok(result.into())
    }
}

fn gpu_error(error: impl std::fmt::Display) -> JsValue {
    tagged_error(&format!("reading back from the GPU failed: {error}"), "gpu")
}

fn preview_to_js(preview: &Preview) -> JsValue {
    let object = Object::new();
    set(&object, "width", preview.width as u32);
    set(&object, "height", preview.height as u32);
    set(&object, "rgba", Uint8ClampedArray::from(preview.rgba.as_slice()));
    object.into()
}

/// A download's bookkeeping ([`Transfer`]); times in milliseconds (`performance.now()`).
#[wasm_bindgen]
pub struct Download(Transfer);

#[wasm_bindgen]
impl Download {
    /// `total` bytes, of which `done` are already cached.
    #[wasm_bindgen(constructor)]
    pub fn new(total: f64, done: f64, now: f64) -> Download {
        Download(Transfer::new(total as u64, done as u64, now))
    }

    pub fn advance(&mut self, bytes: f64, now: f64) {
        self.0.advance(bytes as u64, now);
    }

    #[wasm_bindgen(getter)]
    pub fn done(&self) -> f64 {
        self.0.done() as f64
    }

    #[wasm_bindgen(getter)]
    pub fn total(&self) -> f64 {
        self.0.total() as f64
    }

    /// Bytes per second, `undefined` until known.
    #[wasm_bindgen(getter)]
    pub fn speed(&self) -> Option<f64> {
        self.0.speed()
    }

    /// Seconds left, `undefined` until known.
    #[wasm_bindgen(getter)]
    pub fn eta(&self) -> Option<f64> {
        self.0.eta_seconds()
    }
}

//! JavaScript bindings (wasm32 only), used by web/worker.js: burn on the browser's WebGPU, a
//! model loaded file by file as the worker fetches them, generation step by step.
//!
//! One style across the boundary: what crosses is plain data, converted by serde-wasm-bindgen
//! (requests in, results and events out; byte buffers as `Uint8Array`). Errors reach JavaScript
//! as `Error`s with a `kind` ([`crate::error::Kind`], or `gpu` when reading back failed).

use burn::tensor::Device;
use burn::tensor::wgpu::WgpuSetup;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::protocol::{Generate, MemoryRequest};
use crate::error::Error;
use crate::{kernel_bench, ops_check};
use crate::pipeline::assembly::{Assembly, CachedModel, NeededFile, Role};
use crate::pipeline::png::{encode_png, parameters_text, to_rgb8};
use crate::pipeline::preview::latent_preview;
use crate::pipeline::{
    BufferLimit, GenerateParams, Image, Loaded, MemoryPlan, Models, Network, NetworkBytes, Noise, Residency, RunHost, Stage, Step,
    generate_planned,
};

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

    /// Runs the kernel benchmark on WebGPU (`crate::kernel_bench`, as the native example): the
    /// ops named in `ops` (all of them when empty), at a quarter of the tokens and pixels when
    /// `small`; `[{ op, ms, gflops, versusBurn, versusMatmul }]`.
    #[wasm_bindgen(js_name = kernelBench)]
    pub async fn kernel_bench(&self, small: bool, ops: Vec<String>) -> JsValue {
        let bench = kernel_bench::Bench { device: self.device.clone(), small };
        let mut rows = Vec::new();
        bench.run(&ops, &mut |row| rows.push(row)).await;
        to_js(&rows)
    }
}

/// A base model or refiner being loaded: the worker fetches each file [`needed`](Self::needed)
/// lists (from its cache or the network) and hands it to [`add`](Self::add). Resident (the
/// default) loads each network as its files arrive; sequential only checks them (they go to the
/// cache), the networks loading one at a time during each run.
#[wasm_bindgen]
pub struct ModelLoader {
    assembly: Assembly,
}

/// A network's size on the GPU, as it crosses to JavaScript and back.
#[derive(Serialize, Deserialize)]
struct NetworkSize {
    network: Network,
    bytes: f64,
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
        let assembly = Assembly::new(manifest, folder, role, Residency::Resident, &gpu.device).map_err(js_error)?;
        Ok(ModelLoader { assembly })
    }

    /// The files to fetch, in order: `[{ path, size, sha256, component }]`, paths relative to
    /// the manifest.
    pub fn needed(&self) -> JsValue {
        to_js(&self.assembly.needed())
    }

    /// What each of its networks takes on the GPU: `[{ network, bytes }]`, for [`plan_memory`].
    #[wasm_bindgen(js_name = networkBytes)]
    pub fn network_bytes(&self) -> JsValue {
        let sizes: Vec<NetworkSize> =
            self.assembly.network_bytes().into_iter().map(|(network, bytes)| NetworkSize { network, bytes: bytes as f64 }).collect();
        to_js(&sizes)
    }

    /// `resident` or `sequential` (as [`plan_memory`] chose), before the first [`Self::add`].
    #[wasm_bindgen(js_name = setResidency)]
    pub fn set_residency(&mut self, residency: JsValue) -> Result<(), JsValue> {
        let residency: Residency = serde_wasm_bindgen::from_value(residency)
            .map_err(|e| js_error(Error::Input { name: "memory".into(), message: e.to_string() }))?;
        self.assembly.set_residency(residency).map_err(js_error)
    }

    /// Checks a file against the manifest and loads it (an `integrity` error: fetch it again).
    pub fn add(&mut self, path: &str, bytes: &[u8]) -> Result<(), JsValue> {
        self.assembly.add(path, bytes).map_err(js_error)
    }
}

/// The memory plan for networks of `sizes` (the loaders' [`ModelLoader::network_bytes`]
/// together) and the page's `request` (`{ memory, budgetMiB? }`, see `web::protocol`):
/// `{ residency, peakWeights, peak }`. Fails (kind `input`) where the budget is too small for
/// the weights in the mode asked for, or in any mode: before anything is downloaded. (The
/// activations, which depend on the size asked for, are checked at each run, before it loads
/// anything: [`Pipeline::new`].)
#[wasm_bindgen(js_name = planMemory)]
pub fn plan_memory(sizes: JsValue, request: JsValue) -> Result<JsValue, JsValue> {
    let sizes: Vec<NetworkSize> = serde_wasm_bindgen::from_value(sizes).map_err(memory_input)?;
    let request = memory_request(request)?;
    let bytes = NetworkBytes::from_sizes(sizes.into_iter().map(|size| (size.network, size.bytes as u64)));
    let plan = MemoryPlan::choose(&bytes, &NetworkBytes::default(), request.residency, request.budget.as_ref()).map_err(js_error)?;
    Ok(to_js(&plan))
}

fn memory_input(e: serde_wasm_bindgen::Error) -> JsValue {
    js_error(Error::Input { name: "memory".into(), message: e.to_string() })
}

/// The page's memory request, `{ memory, budgetMiB? }` (`web::protocol::MemoryRequest`).
fn memory_request(request: JsValue) -> Result<MemoryRequest, JsValue> {
    let request: serde_json::Value = serde_wasm_bindgen::from_value(request).map_err(memory_input)?;
    MemoryRequest::from_json(request).map_err(js_error)
}

/// A loaded base model (and refiner): generation under its memory plan. `free()` releases its
/// GPU memory.
#[wasm_bindgen]
pub struct Pipeline {
    models: Models,
    plan: MemoryPlan,
    /// Where released networks load from again: the base's and the refiner's cached files.
    cached: Vec<CachedModel>,
    device: Device,
    /// The largest buffer a run may use: the GPU's, unless lowered.
    buffer_limit: BufferLimit,
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
    /// Takes the loaders, which must have every file (and the same residency), and the page's
    /// memory request (`{ memory, budgetMiB? }`, as for [`plan_memory`]): each run is checked
    /// against its budget with the activations of the run's size before anything loads.
    #[wasm_bindgen(constructor)]
    pub fn new(gpu: &Gpu, base: ModelLoader, refiner: Option<ModelLoader>, memory: JsValue) -> Result<Pipeline, JsValue> {
        let request = memory_request(memory)?;
        let residency = base.assembly.residency();
        if refiner.as_ref().is_some_and(|refiner| refiner.assembly.residency() != residency) {
            return Err(tagged_error("the base and the refiner were loaded under different memory plans", "input"));
        }
        let mut sizes = base.assembly.network_bytes();
        let mut cached = vec![base.assembly.cached()];
        let refiner = match refiner {
            Some(loader) => {
                sizes.extend(loader.assembly.network_bytes());
                cached.push(loader.assembly.cached());
                Some(loader.assembly.into_refiner().map_err(js_error)?)
            }
            None => None,
        };
        let plan = MemoryPlan::choose(&NetworkBytes::from_sizes(sizes), &NetworkBytes::default(), Some(residency), request.budget.as_ref())
            .map_err(js_error)?;
        let limits = gpu.setup.device.limits();
        let bytes = limits.max_buffer_size.min(limits.max_storage_buffer_binding_size.into());
        let buffer_limit = BufferLimit { bytes, text: format!("this GPU allows {} MiB", bytes >> 20) };
        let base = base.assembly.into_base().map_err(js_error)?;
        Ok(Pipeline { models: Models::new(base, refiner), plan, cached, device: gpu.device.clone(), buffer_limit })
    }

    /// The memory plan: `{ residency, peakWeights, peak }`.
    #[wasm_bindgen(getter)]
    pub fn plan(&self) -> JsValue {
        to_js(&self.plan)
    }

    /// The most GPU memory burn's pools held so far, bytes (sampled at the end of each phase).
    #[wasm_bindgen(getter, js_name = peakReserved)]
    pub fn peak_reserved(&self) -> f64 {
        self.models.peak_reserved() as f64
    }

    /// The GPU memory of each phase of the last run: `[{ network, ready, peak }]`, burn's
    /// reserved bytes when the phase's network was ready and at the phase's end.
    #[wasm_bindgen(getter)]
    pub fn phases(&self) -> JsValue {
        to_js(&self.models.phases)
    }

    /// The seconds the last run spent loading released networks again (from Cache Storage;
    /// 0 when every network stayed resident).
    #[wasm_bindgen(getter, js_name = reloadSeconds)]
    pub fn reload_seconds(&self) -> f64 {
        self.models.reloads.seconds
    }

    /// Lowers the largest buffer a run may use below the GPU's (never raises it): larger
    /// decodes tile, larger sizes are refused. For trying the tiling on a small model.
    #[wasm_bindgen(js_name = lowerBufferLimit)]
    pub fn lower_buffer_limit(&mut self, bytes: f64) {
        if bytes.is_finite() && bytes >= 1.0 && (bytes as u64) < self.buffer_limit.bytes {
            let bytes = bytes as u64;
            self.buffer_limit = BufferLimit { bytes, text: format!("the page's bufferLimitMiB allows {} MiB", bytes >> 20) };
        }
    }

    #[wasm_bindgen(getter, js_name = hasRefiner)]
    pub fn has_refiner(&self) -> bool {
        self.models.refiner.is_some()
    }

    /// Widths and heights must be multiples of this many pixels (the VAE's scale times the
    /// base UNet's downsamplings); with the refiner on, `refinerSizeMultiple`.
    #[wasm_bindgen(getter, js_name = sizeMultiple)]
    pub fn size_multiple(&self) -> usize {
        self.models.base.size_rules(None).multiple
    }

    /// The multiple sizes take with the refiner on (its UNet may downsample more than the
    /// base's: SDXL's refiner asks for 64); the base's when no refiner is loaded.
    #[wasm_bindgen(getter, js_name = refinerSizeMultiple)]
    pub fn refiner_size_multiple(&self) -> usize {
        self.models.sdxl(true, None).size_rules().multiple
    }

    /// Runs a request (the parameters of `sdxl generate` and `seed`, `refiner`, `previews`;
    /// see `web::protocol`). After each step it calls `onStep({ stage, index, total, preview?:
    /// { width, height, rgba } })` and awaits its result: false (or a promise of false)
    /// cancels. Under a sequential plan each network loads for its phase: `fetchFile(role,
    /// { path, size, sha256 }, fresh)` resolves to the bytes of a file of the `base` or
    /// `refiner` model (from the cache; `fresh`: the cached copy failed its check, fetch it
    /// again). Resolves to
    /// `{ width, height, rgba, png, seed, parameters, warnings }`.
    pub async fn generate(&mut self, request: JsValue, on_step: js_sys::Function, fetch_file: js_sys::Function) -> Result<JsValue, JsValue> {
        let request: serde_json::Value = serde_wasm_bindgen::from_value(request)
            .map_err(|e| js_error(Error::Input { name: "request".into(), message: e.to_string() }))?;
        let request = Generate::from_json(request).map_err(js_error)?;
        if request.refiner && self.models.refiner.is_none() {
            return Err(tagged_error("the refiner is on but no refiner is loaded", "input"));
        }
        let limit = self.buffer_limit.clone();
        let params = &request.params;
        let device = self.device.clone();
        let mut host = PageHost {
            on_step,
            fetch_file,
            previews: request.previews,
            cached: &self.cached,
            device: &device,
            warnings: Vec::new(),
            failure: None,
        };
        let noise = Noise::from_seed(request.seed, &device);
        let run = generate_planned(&mut self.models, &self.plan, request.refiner, Some(limit), params, noise, &device, &mut host).await;
        let pixels = match (run, host.failure.take()) {
            (_, Some(failure)) => return Err(failure),
            (run, None) => run.map_err(js_error)?,
        };
        let image = Image::new(pixels.into_data_async().await.map_err(gpu_error)?);
        let parameters = parameters_text(params, Some(request.seed), request.refiner);
        let png = encode_png(&image, &parameters).map_err(js_error)?;
        Ok(to_js(&Generated {
            width: image.width,
            height: image.height,
            rgba: rgba(&to_rgb8(&image).map_err(js_error)?),
            png: ByteBuf::from(png),
            seed: request.seed.to_string(),
            parameters,
            warnings: host.warnings,
        }))
    }
}

/// A run's host in the browser: released networks load from the files `fetch_file` gives
/// (Cache Storage), steps go to `on_step`. A JavaScript failure is kept in `failure` (the run
/// then stops) and returned as it is, its `kind` intact.
struct PageHost<'a> {
    on_step: js_sys::Function,
    fetch_file: js_sys::Function,
    previews: bool,
    cached: &'a [CachedModel],
    device: &'a Device,
    warnings: Vec<String>,
    failure: Option<JsValue>,
}

impl PageHost<'_> {
    /// Keeps a JavaScript failure; the run stops with an error the caller replaces by it.
    fn fail(&mut self, failure: JsValue) -> Error {
        self.failure = Some(failure);
        Error::Cancelled
    }

    async fn call(&mut self, function: &js_sys::Function, args: &js_sys::Array) -> Result<JsValue, Error> {
        let mut value = match function.apply(&JsValue::NULL, args) {
            Ok(value) => value,
            Err(failure) => return Err(self.fail(failure)),
        };
        if let Some(promise) = value.dyn_ref::<js_sys::Promise>() {
            value = match JsFuture::from(promise.clone()).await {
                Ok(value) => value,
                Err(failure) => return Err(self.fail(failure)),
            };
        }
        Ok(value)
    }

    async fn fetch(&mut self, role: &str, file: &NeededFile, fresh: bool) -> Result<Vec<u8>, Error> {
        let args = js_sys::Array::of3(&role.into(), &to_js(file), &fresh.into());
        let bytes = self.call(&self.fetch_file.clone(), &args).await?;
        Ok(js_sys::Uint8Array::new(&bytes).to_vec())
    }
}

impl RunHost for PageHost<'_> {
    async fn load(&mut self, network: Network) -> Result<Loaded, Error> {
        let role = if network == Network::RefinerUnet { Role::Refiner } else { Role::Base };
        let Some(cached) = self.cached.iter().find(|cached| cached.role() == role) else {
            return Err(Error::NotLoaded(network.describe()));
        };
        let role = if role == Role::Base { "base" } else { "refiner" };
        let mut assembly = cached.assembly(network, self.device)?;
        for file in assembly.needed().to_vec() {
            let bytes = self.fetch(role, &file, false).await?;
            match assembly.add(&file.path, &bytes) {
                // A damaged cached copy: fetched again, once.
                Err(Error::Integrity { .. }) => {
                    let bytes = self.fetch(role, &file, true).await?;
                    assembly.add(&file.path, &bytes)?;
                }
                other => other?,
            }
        }
        assembly.into_network(network)
    }

    async fn step(&mut self, step: Step) -> Result<(), Error> {
        let preview = match self.previews {
            true => {
                let latent = match step.denoised.into_data_async().await {
                    Ok(latent) => latent,
                    Err(error) => return Err(self.fail(gpu_error(error))),
                };
                let preview = latent_preview(latent);
                Some(Preview { width: preview.width, height: preview.height, rgba: ByteBuf::from(preview.rgba) })
            }
            false => None,
        };
        let stage = if step.stage == Stage::Base { "base" } else { "refiner" };
        let event = StepEvent { stage, index: step.index, total: step.total, preview };
        let go_on = self.call(&self.on_step.clone(), &js_sys::Array::of1(&to_js(&event))).await?;
        if go_on.is_truthy() { Ok(()) } else { Err(Error::Cancelled) }
    }

    fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }
}

//! JavaScript bindings (wasm32 only): burn on the browser's WebGPU.

use burn::tensor::Device;
use burn::tensor::wgpu::WgpuSetup;
use wasm_bindgen::prelude::*;

use crate::ops_check;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
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

    /// The adapter burn runs on: `{ name, backend, driver, features: [..], limits: "…" }`.
    pub fn adapter(&self) -> Result<JsValue, JsError> {
        let adapter = &self.setup.adapter;
        let info = adapter.get_info();
        let features = js_sys::Array::new();
        for (name, _) in adapter.features().iter_names() {
            features.push(&name.into());
        }
        let object = js_sys::Object::new();
        let set = |key: &str, value: JsValue| js_sys::Reflect::set(&object, &key.into(), &value);
        let result = set("name", info.name.into())
            .and(set("backend", format!("{:?}", self.setup.backend).into()))
            .and(set(
                "driver",
                format!("{} {}", info.driver, info.driver_info).into(),
            ))
            .and(set("features", features.into()))
            .and(set(
                "limits",
                format!("{:#?}", self.setup.device.limits()).into(),
            ));
        result.map_err(|_| JsError::new("could not build the adapter description"))?;
        Ok(object.into())
    }

    /// Runs the ops check graph on WebGPU: `{ stage name: Float32Array }`.
    #[wasm_bindgen(js_name = opsCheck)]
    pub async fn ops_check(&self) -> Result<JsValue, JsError> {
        stages_to_js(
            &ops_check::run(&self.device)
                .await
                .map_err(|e| JsError::new(&e.to_string()))?,
        )
    }
}

fn stages_to_js(stages: &[ops_check::Stage]) -> Result<JsValue, JsError> {
    let object = js_sys::Object::new();
    for stage in stages {
        let values = js_sys::Float32Array::from(stage.values.as_slice());
        js_sys::Reflect::set(&object, &stage.name.into(), &values)
            .map_err(|_| JsError::new("could not build the ops check result"))?;
    }
    Ok(object.into())
}

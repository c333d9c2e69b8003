//! What the worker sends the wasm module: a generation request, a JavaScript object holding
//! the parameters of `sdxl generate` (`pipeline::GenerateParams`: absent fields take its
//! defaults) and the browser's own fields. Plain Rust, tested on every target.

// Reads untrusted bytes: no unwrap, expect or unchecked indexing (each allowed case says why).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::pipeline::{GenerateParams, MemoryBudget, Residency};

/// A generation request: the parameters, and what only the browser asks for.
#[derive(Debug)]
pub struct Generate {
    pub params: GenerateParams,
    pub seed: u64,
    /// Whether the refiner (when one is loaded) takes over at `refiner_start`.
    pub refiner: bool,
    /// Whether each step reports a preview.
    pub previews: bool,
}

/// The browser's own fields of a request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrowserFields {
    #[serde(deserialize_with = "seed")]
    seed: u64,
    #[serde(default)]
    refiner: bool,
    #[serde(default)]
    previews: bool,
}

/// A seed: a JSON number, or a decimal string (JavaScript numbers stop at 2^53).
fn seed<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<u64, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    let seed = match &value {
        serde_json::Value::Number(number) => number.as_u64(),
        serde_json::Value::String(text) => text.parse().ok(),
        _ => None,
    };
    seed.ok_or_else(|| D::Error::custom(format!("seed {value} is not a whole number from 0 to {}", u64::MAX)))
}

/// How the page asks for a memory plan: `{ memory: "auto" | "resident" | "sequential",
/// budgetMiB?: number }` (auto: every network resident where that fits the budget, else one at
/// a time; the budget is what the user allows the GPU, WebGPU does not tell).
#[derive(Debug, PartialEq)]
pub struct MemoryRequest {
    /// `None`: auto.
    pub residency: Option<Residency>,
    pub budget: Option<MemoryBudget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MemoryFields {
    #[serde(default = "auto")]
    memory: String,
    #[serde(default, rename = "budgetMiB")]
    budget_mib: Option<f64>,
}

fn auto() -> String {
    "auto".into()
}

impl MemoryRequest {
    pub fn from_json(request: serde_json::Value) -> Result<Self> {
        let invalid = |message: String| Error::Input { name: "memory".into(), message };
        if !request.is_object() {
            return Err(invalid("not an object".into()));
        }
        let fields: MemoryFields = serde_json::from_value(request).map_err(|e| invalid(e.to_string()))?;
        let residency = match fields.memory.as_str() {
            "auto" => None,
            "resident" => Some(Residency::Resident),
            "sequential" => Some(Residency::Sequential),
            other => return Err(invalid(format!("`{other}` is not auto, resident or sequential"))),
        };
        let budget = match fields.budget_mib {
            None => None,
            Some(mib) if mib.is_finite() && mib >= 1.0 && mib <= (1u64 << 44) as f64 => {
                let mib = mib.floor() as u64;
                Some(MemoryBudget { bytes: mib << 20, text: format!("the GPU memory budget is {mib} MiB") })
            }
            Some(mib) => return Err(invalid(format!("a budget of {mib} MiB is not a number from 1 to 2^44"))),
        };
        Ok(Self { residency, budget })
    }
}

impl Generate {
    /// Reads a request. Only its form is checked here: the parameters are validated against
    /// the loaded model when the run starts (`Sdxl::start`), the one place that does it.
    pub fn from_json(request: serde_json::Value) -> Result<Self> {
        let invalid = |e: serde_json::Error| Error::Input { name: "request".into(), message: e.to_string() };
        let serde_json::Value::Object(mut fields) = request else {
            return Err(Error::Input { name: "request".into(), message: "not an object".into() });
        };
        let mut own = serde_json::Map::new();
        for key in ["seed", "refiner", "previews"] {
            if let Some(value) = fields.remove(key) {
                own.insert(key.into(), value);
            }
        }
        let own: BrowserFields = serde_json::from_value(own.into()).map_err(invalid)?;
        let params: GenerateParams = serde_json::from_value(fields.into()).map_err(invalid)?;
        Ok(Self { params, seed: own.seed, refiner: own.refiner, previews: own.previews })
    }

    /// [`Self::from_json`] of JSON text.
    pub fn parse(json: &str) -> Result<Self> {
        let value = serde_json::from_str(json).map_err(|e| Error::Input { name: "request".into(), message: e.to_string() })?;
        Self::from_json(value)
    }
}

//! DRAFT (not yet compiled): launching hand-written WGSL compute shaders on burn 0.22.1 wgpu
//! tensors.
//!
//! Needs burn features `extension` (tensor <-> backend primitive, `burn::backend`), `template`
//! (`SourceKernel`, `KernelSource`, `into_contiguous` in `burn::backend::wgpu`) and `cubecl`
//! (`burn::cubecl`: `KernelArguments`, `KernelId`, `CubeCount`, ...), added to the workspace
//! `burn` dependency, e.g. `features = ["std", "wgpu", "flex", "extension", "template", "cubecl"]`.
//! Not registered in `lib.rs` yet.
//!
//! # The WGSL a shader must declare to match [`launch_wgsl`]
//!
//! With `n = inputs.len()` (and one output):
//!
//! ```wgsl
//! // enable f16;   // only if a binding is array<f16> (device needs SHADER_F16)
//! @group(0) @binding(0)     var<storage, read_write> in0: array<f32>;
//! // ... one binding per input, in slice order ...
//! @group(0) @binding(n - 1) var<storage, read_write> in_last: array<f32>;
//! @group(0) @binding(n)     var<storage, read_write> out: array<f32>;
//! // Present ONLY when `params` is non-empty; always the last binding:
//! @group(0) @binding(n + 1) var<storage, read>       info: array<u32>;  // info[i] == params[i]
//!
//! @compute @workgroup_size(WX, WY, WZ)   // this is what runs; `workgroup_size` below must match
//! fn main(@builtin(global_invocation_id) gid: vec3<u32>,
//!         @builtin(local_invocation_index) lid: u32,
//!         @builtin(workgroup_id) wid: vec3<u32>) {
//!     // f32 parameters: bitcast<f32>(info[k]) (the host passes f.to_bits()).
//! }
//! ```
//!
//! Rules (see the report for citations):
//! - The entry point MUST be named `main` (`SourceKernel` hard-codes it).
//! - Tensor buffers MUST be `read_write` even if only read: natively, tensors share wgpu buffers
//!   (memory pages), and the same buffer bound read-only and read-write in one dispatch is a
//!   usage conflict. cubecl's own WGSL does the same unless `exclusive_memory_only` (wasm).
//! - The pipeline uses wgpu's *auto layout* (derived from the shader): every declared binding
//!   MUST be statically used by `main`, or the bind group (one entry per resource) won't match.
//! - No `info` binding when `params` is empty; `info` is `read` storage (a `var<uniform>` would
//!   need 16-byte array strides).
//! - Buffers are bound at the tensor handle's offset, so index 0 is the tensor's first element;
//!   `arrayLength()` is rounded up to 4 bytes, so pass element counts in `params` instead.
//! - `WX*WY*WZ` and the workgroup counts must fit the device limits (65535 workgroups per dim).

use burn::backend::wgpu::{CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous};
use burn::backend::{Cube, CubeDevice, DispatchDevice};
use burn::cubecl::prelude::{BufferIOAttr, CubeCount, CubeDim, KernelId};
use burn::cubecl::server::{KernelArguments, MetadataBindingInfo};
use burn::tensor::{DType, Device, Shape, Tensor};
// UNSURE: `Client` is only needed if a caller names it; it is `burn::cubecl::prelude::Client`
// (= cubecl_runtime::client::Client), the type of `CubeTensor::client`.

/// The float `CubeTensor` behind `t`, when `t` lives on a wgpu device; `None` otherwise (flex,
/// autodiff-tracked tensors, ...). Cheap: clones an Arc'd handle, no copy.
pub fn cube_float<const D: usize>(t: &Tensor<D>) -> Option<CubeTensor> {
    // burn-tensor api/extension.rs:95 — fails with BackendMismatch on Flex or an autodiff context.
    let cube = t.clone().try_into_primitive::<Cube>().ok()?;
    // `Cube` is every cubecl runtime; only wgpu runs WGSL.
    matches!(cube.device, CubeDevice::Wgpu(_)).then_some(cube)
}

/// Wrap a `CubeTensor` back into a (non-autodiff) `Tensor<D>`.
///
/// Equivalent by hand: `Tensor::from_dispatch(DispatchTensor { kind:
/// DispatchTensorKind::Cube(BackendTensor::Float(t)), autodiff: DispatchAutodiffContext::Disabled })`.
pub fn to_tensor<const D: usize>(t: CubeTensor) -> Tensor<D> {
    debug_assert_eq!(t.meta.num_dims(), D, "rank mismatch wrapping a CubeTensor");
    Tensor::from_primitive::<Cube>(t)
}

/// The wgpu device (and its client) behind a burn `Device`, if it is one.
pub fn wgpu_device(device: &Device) -> Option<CubeDevice> {
    #[allow(unreachable_patterns)]
    match device.as_dispatch() {
        DispatchDevice::Cube(d @ CubeDevice::Wgpu(_)) => Some(d.clone()),
        _ => None,
    }
    // Client: `cube_device.client()` (cubecl device.rs:331), or just `tensor.client.clone()`.
}

/// `t` with a plain row-major layout (copies only when it isn't already). The buffer may still
/// start at a non-zero offset into a shared page; the binding accounts for that.
pub fn contiguous(t: CubeTensor) -> CubeTensor {
    into_contiguous(t)
}

/// A fresh, uninitialized, contiguous tensor on `like`'s device.
pub fn empty_output(like: &CubeTensor, shape: Shape, dtype: DType) -> CubeTensor {
    let bytes = shape.num_elements() * dtype.size();
    // UNSURE: a zero-byte `empty` — callers should skip launches with no elements.
    let handle = like.client.empty(bytes.max(4));
    CubeTensor::new_contiguous(like.client.clone(), like.device.clone(), shape, handle, dtype)
}

/// A WGSL text as a burn `KernelSource`. The compiled pipeline is cached per `KernelId`, and the
/// cache never sees the text, so the id is keyed on a name plus a hash of the text.
struct WgslSource {
    source: &'static str,
    key: &'static str,
    hash: u64,
    workgroup: (u32, u32, u32),
}

impl KernelSource for WgslSource {
    fn source(&self) -> SourceTemplate {
        // `complete()` runs `{{ name }}` placeholder substitution; plain WGSL passes through.
        SourceTemplate::new(self.source)
    }

    fn id(&self) -> KernelId {
        let (x, y, z) = self.workgroup;
        KernelId::new::<Self>()
            .info((self.key, self.hash))
            // Lets the server check the size against the device limits (validate_cube_dim). The
            // WGSL's own @workgroup_size is what runs; this does not change it.
            .cube_dim(CubeDim::new_3d(x, y, z).0)
    }

    fn lang(&self) -> &'static str {
        "wgsl" // must equal the wgpu WGSL compiler's lang_tag
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Launch `source` (entry point `main`) over `workgroups` workgroups.
///
/// Bindings: `inputs` in order at 0..n, `output` at n, then (if `params` is non-empty) the
/// params as `array<u32>` at n + 1. `workgroup_size` must equal the shader's `@workgroup_size`.
/// Inputs should already be contiguous (see [`contiguous`]) if the shader assumes row-major.
///
/// Errors (bad WGSL, binding mismatch) don't return here: a failed compile taints `output`, and
/// reading it (`into_data`) reports the error. A bind-group mismatch is NOT under an error scope
/// (stream.rs register_pipeline) and surfaces as an uncaptured wgpu error.
#[allow(clippy::too_many_arguments)]
pub fn launch_wgsl(
    source: &'static str,
    key: &'static str,
    workgroups: (u32, u32, u32),
    workgroup_size: (u32, u32, u32),
    inputs: &[&CubeTensor],
    output: &CubeTensor,
    params: &[u32],
) {
    let client = output.client.clone();
    for input in inputs {
        debug_assert!(input.device == output.device, "tensors on different devices");
    }

    let mut args = KernelArguments::new();
    for input in inputs {
        args = args.with_buffer_io(input.handle.clone().binding(), BufferIOAttr::ReadOnly);
    }
    // UNSURE: WriteOnly means a failed launch taints only this buffer and it is not checked
    // before launch; use ReadWrite if the shader also reads `out` (accumulation).
    args = args.with_buffer_io(output.handle.clone().binding(), BufferIOAttr::WriteOnly);

    if !params.is_empty() {
        // `info` is Vec<u64> uploaded as little-endian bytes: pack two u32 per word so that the
        // shader's `info: array<u32>` sees `info[i] == params[i]`.
        let words = params
            .chunks(2)
            .map(|pair| pair[0] as u64 | (pair.get(1).copied().unwrap_or(0) as u64) << 32)
            .collect::<Vec<u64>>();
        args = args.with_info(MetadataBindingInfo::custom(words));
    }

    let kernel = SourceKernel::new(
        WgslSource { source, key, hash: fnv1a(source), workgroup: workgroup_size },
        CubeDim::new_3d(workgroup_size.0, workgroup_size.1, workgroup_size.2),
    );
    let (x, y, z) = workgroups;
    client.launch(Box::new(kernel), CubeCount::Static(x, y, z), args);
}

/// f32 parameter for `params` (read back with `bitcast<f32>(info[k])`).
pub fn f32_param(v: f32) -> u32 {
    v.to_bits()
}

/// Example: elementwise `out = a * s + b` on wgpu; None if not on wgpu.
#[allow(dead_code)]
fn example_axpb<const D: usize>(a: &Tensor<D>, b: &Tensor<D>, s: f32) -> Option<Tensor<D>> {
    const SRC: &str = r#"
@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> info: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = info[0];
    let i = gid.x + gid.y * 65535u * 256u;
    if (i >= n) { return; }
    out[i] = a[i] * bitcast<f32>(info[1]) + b[i];
}
"#;
    let ca = contiguous(cube_float(a)?);
    let cb = contiguous(cube_float(b)?);
    if ca.dtype != DType::F32 || cb.dtype != DType::F32 || ca.meta.shape() != cb.meta.shape() {
        return None;
    }
    let n = ca.meta.shape().num_elements() as u32;
    let out = empty_output(&ca, ca.meta.shape().clone(), DType::F32);
    let groups = n.div_ceil(256);
    let (gx, gy) = if groups <= 65535 { (groups, 1) } else { (65535, groups.div_ceil(65535)) };
    launch_wgsl(SRC, "axpb", (gx, gy, 1), (256, 1, 1), &[&ca, &cb], &out, &[n, f32_param(s)]);
    Some(to_tensor(out))
}

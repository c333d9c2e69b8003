//! Runs our hand-written WGSL kernels (`shaders/`) on burn's wgpu tensors, natively (wgpu's WGSL
//! compiler: our build has no `vulkan` feature, which would switch wgpu to SPIR-V and refuse
//! WGSL) and in the browser (WebGPU). burn 0.22.1's `template` feature supplies `SourceKernel`;
//! its `extension` feature reaches the `CubeTensor` behind a `Tensor`.
//!
//! What a kernel's WGSL must declare to match [`launch`] (read from cubecl-wgpu 0.11.3):
//! - the entry point `main`, its own `@workgroup_size` (that is what runs);
//! - one binding per input at 0..n in order, the output at n, and when `params` is not empty
//!   `@binding(n + 1) var<storage, read> info: array<u32>` (`info[i] == params[i]`; an f32
//!   parameter travels as its bits: `bitcast<f32>(info[i])`);
//! - every tensor binding `var<storage, read_write>`, inputs too: natively tensors share wgpu
//!   buffers, and one buffer bound read-only and read-write in one dispatch is a usage conflict;
//! - every binding used by `main`: the pipeline's layout is derived from the shader, and wgpu
//!   leaves unused bindings out of it;
//! - element counts from `params`, not `arrayLength` (buffers are bound at the tensor's offset,
//!   their length rounded up).
//!
//! Browsers guarantee 8 storage buffers per stage (`info` included).

use burn::backend::Cube;
use burn::backend::wgpu::{CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous};
use burn::cubecl::prelude::{BufferIOAttr, CubeCount, CubeDim, KernelId};
use burn::cubecl::server::{KernelArguments, MetadataBindingInfo};
use burn::tensor::{DType, Int, Shape, Tensor};

/// Workgroups per dispatch dimension every WebGPU device allows.
pub const MAX_WORKGROUPS: u32 = 65535;

/// The f32 `CubeTensor` behind `tensor` when it lives on a wgpu device, contiguous (copied only
/// when it is not already); `None` on any other device or type, where callers use burn's ops.
pub fn wgpu_f32<const D: usize>(tensor: &Tensor<D>) -> Option<CubeTensor> {
    let cube = tensor.clone().try_into_primitive::<Cube>().ok()?;
    let on_wgpu = matches!(cube.device, burn::backend::CubeDevice::Wgpu(_));
    (on_wgpu && cube.dtype == DType::F32).then(|| into_contiguous(cube))
}

/// The i32 `CubeTensor` behind an integer tensor on a wgpu device, contiguous; `None` elsewhere.
pub fn wgpu_int<const D: usize>(tensor: &Tensor<D, Int>) -> Option<CubeTensor> {
    let cube = tensor.clone().try_into_primitive::<Cube>().ok()?;
    let on_wgpu = matches!(cube.device, burn::backend::CubeDevice::Wgpu(_));
    (on_wgpu && cube.dtype == DType::I32).then(|| into_contiguous(cube))
}

/// A `CubeTensor` back as a `Tensor`.
pub fn to_tensor<const D: usize>(tensor: CubeTensor) -> Tensor<D> {
    Tensor::from_primitive::<Cube>(tensor)
}

/// A new, uninitialized, contiguous f32 tensor of `shape` on `like`'s device.
pub fn empty_f32(like: &CubeTensor, shape: Shape) -> CubeTensor {
    let bytes = (shape.num_elements() * size_of::<f32>()).max(size_of::<f32>());
    let handle = like.client.empty(bytes);
    CubeTensor::new_contiguous(like.client.clone(), like.device.clone(), shape, handle, DType::F32)
}

/// One kernel: its WGSL text, the values of the text's `{{ name }}` placeholders, and its
/// workgroup size (which must equal the text's own).
#[derive(Clone, Copy)]
pub struct Wgsl {
    pub name: &'static str,
    pub source: &'static str,
    pub placeholders: &'static [(&'static str, &'static str)],
    pub workgroup_size: [u32; 3],
}

/// The compiled pipeline is cached by `KernelId`, which never sees the text: the name and a hash
/// of the text and its placeholders' values key it.
struct Source(Wgsl);

impl KernelSource for Source {
    fn source(&self) -> SourceTemplate {
        self.0.placeholders.iter().fold(SourceTemplate::new(self.0.source), |text, &(name, value)| text.register(name, value))
    }

    fn id(&self) -> KernelId {
        let [x, y, z] = self.0.workgroup_size;
        let texts = std::iter::once(self.0.source).chain(self.0.placeholders.iter().flat_map(|&(name, value)| [name, value]));
        let hash = texts.flat_map(str::bytes).fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
        // The workgroup size lets the server check it against the device's limits.
        KernelId::new::<Self>().info((self.0.name, hash)).cube_dim(CubeDim::new_3d(x, y, z).0)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// Enough workgroups of `per_workgroup` invocations for `count` invocations, spilling into the
/// second dimension past [`MAX_WORKGROUPS`] (the kernel indexes `x + y · 65535 · per_workgroup`).
pub fn workgroups_for(count: usize, per_workgroup: u32) -> [u32; 3] {
    let groups = (count as u64).div_ceil(per_workgroup as u64).max(1);
    let max = MAX_WORKGROUPS as u64;
    if groups <= max { [groups as u32, 1, 1] } else { [MAX_WORKGROUPS, groups.div_ceil(max) as u32, 1] }
}

/// Dispatches `kernel` over `workgroups`, binding `inputs`, then `output`, then `params`. A WGSL
/// error does not return here: it fails the output's read (`into_data`), with wgpu's message.
pub fn launch(kernel: Wgsl, workgroups: [u32; 3], inputs: &[&CubeTensor], output: &CubeTensor, params: &[u32]) {
    let mut arguments = KernelArguments::new();
    for input in inputs {
        arguments = arguments.with_buffer_io(input.handle.clone().binding(), BufferIOAttr::ReadOnly);
    }
    arguments = arguments.with_buffer_io(output.handle.clone().binding(), BufferIOAttr::ReadWrite);
    if !params.is_empty() {
        // `info` is uploaded as u64 words: two parameters per word, little-endian.
        let words = params.chunks(2).map(|pair| pair[0] as u64 | (pair.get(1).copied().unwrap_or(0) as u64) << 32).collect();
        arguments = arguments.with_info(MetadataBindingInfo::custom(words));
    }
    let [x, y, z] = kernel.workgroup_size;
    let source = SourceKernel::new(Source(kernel), CubeDim::new_3d(x, y, z));
    let [wx, wy, wz] = workgroups;
    output.client.launch(Box::new(source), CubeCount::Static(wx, wy, wz), arguments);
}

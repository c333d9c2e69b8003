//! The native devices the CLI and tests choose between.

use burn::tensor::{Device, DeviceKind};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// wgpu on the system's GPU API (Vulkan; lavapipe on machines without a GPU).
    Wgpu,
}

impl DeviceChoice {
    pub fn device(self) -> Device {
        match self {
            DeviceChoice::Cpu => Device::flex(),
            DeviceChoice::Wgpu => Device::wgpu(DeviceKind::DefaultDevice),
        }
    }

    /// The device, set up now, and the largest single buffer it takes in bytes: the adapter's
    /// limits on wgpu (as the browser reads them), the memory available on the CPU backend.
    /// For a process's first use of the device (wgpu refuses a second setup).
    pub fn open(self) -> Result<(Device, Option<(u64, String)>)> {
        match self {
            DeviceChoice::Cpu => {
                let limit = crate::memory::available()
                    .map(|bytes| (bytes, format!("only {} MiB of memory are available", bytes >> 20)));
                Ok((Device::flex(), limit))
            }
            DeviceChoice::Wgpu => {
                let (device, setup) = Device::wgpu_options()
                    .init_with_setup()
                    .map_err(|e| Error::Unsupported(format!("wgpu: {e}")))?;
                let limits = setup.device.limits();
                let bytes = limits.max_buffer_size.min(limits.max_storage_buffer_binding_size);
                let text = format!("this GPU ({}) allows {} MiB", setup.adapter.get_info().name, bytes >> 20);
                Ok((device, Some((bytes, text))))
            }
        }
    }
}

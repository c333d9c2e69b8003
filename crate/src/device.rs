//! The native devices the CLI and tests choose between.

use burn::tensor::{Device, DeviceKind};

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
}

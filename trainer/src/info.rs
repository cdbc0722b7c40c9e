//! `nasop-trainer info`: what libtorch this binary loaded and what it can use.

use anyhow::{ensure, Result};
use serde::Serialize;
use tch::{Cuda, Device, Kind, Tensor};

/// What `info` reports.
#[derive(Debug, Serialize)]
pub struct Info {
    /// nasop version.
    pub nasop_version: &'static str,
    /// Whether libtorch sees a usable CUDA device.
    pub cuda_available: bool,
    /// CUDA devices visible.
    pub cuda_devices: i64,
    /// Whether cuDNN is usable.
    pub cudnn_available: bool,
    /// Intra-op CPU threads libtorch uses.
    pub cpu_threads: i32,
    /// Result of the self-test: sum of a 16x16 all-ones matrix product (must be 16^3 = 4096).
    pub selftest_sum: f64,
}

/// Runs the self-test and collects the report.
///
/// # Errors
/// When the self-test computes a wrong value.
pub fn collect() -> Result<Info> {
    let ones = Tensor::ones([16, 16], (Kind::Float, Device::Cpu));
    let selftest_sum = ones.matmul(&ones).sum(Kind::Double).double_value(&[]);
    ensure!(
        (selftest_sum - 4096.0).abs() < 1e-9,
        "libtorch self-test computed {selftest_sum}, expected 4096"
    );
    Ok(Info {
        nasop_version: env!("CARGO_PKG_VERSION"),
        cuda_available: Cuda::is_available(),
        cuda_devices: Cuda::device_count(),
        cudnn_available: Cuda::cudnn_is_available(),
        cpu_threads: tch::get_num_threads(),
        selftest_sum,
    })
}

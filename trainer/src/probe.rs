//! Batch-1 inference latency of a child on this device (MnasNet 1807.11626 Sec. 3: real
//! latency measured on the target device, on a single CPU thread for its phones).

use std::time::Instant;

use nasop_crds::api::{DeviceIdentity, LatencySummary};
use tch::{Device, Kind, Tensor};

use crate::net::{to_channels_last, Mode, Net};

/// One random input of `shape` (`[N, C, H, W]`), with channels-last strides when
/// `channels_last` (the order [`Net::to_channels_last`] gives the weights).
pub fn probe_input(shape: [i64; 4], channels_last: bool, device: Device) -> Tensor {
    let x = Tensor::randn(shape, (Kind::Float, device));
    if channels_last {
        to_channels_last(&x)
    } else {
        x
    }
}

/// Runs the network in eval mode on one random input of `shape` (`[N, C, H, W]`; see
/// [`probe_input`]): `warmup` untimed runs, then `repeats` timed ones. Returns each timed run in
/// ms, or `None` when `stop` says so between runs. On CUDA the device is synchronized before and
/// after each run, so the time is the GPU's, not the launch's.
pub fn measure(
    net: &Net,
    shape: [i64; 4],
    channels_last: bool,
    device: Device,
    warmup: usize,
    repeats: usize,
    stop: &dyn Fn() -> bool,
) -> Option<Vec<f64>> {
    tch::no_grad(|| {
        let x = probe_input(shape, channels_last, device);
        let sync = || {
            if let Device::Cuda(i) = device {
                tch::Cuda::synchronize(i as i64);
            }
        };
        for _ in 0..warmup {
            if stop() {
                return None;
            }
            let _ = net.forward(&x, Mode::Eval);
        }
        sync();
        let mut samples = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            if stop() {
                return None;
            }
            sync();
            let start = Instant::now();
            let y = net.forward(&x, Mode::Eval).0;
            sync();
            samples.push(start.elapsed().as_secs_f64() * 1e3);
            drop(y);
        }
        Some(samples)
    })
}

/// glibc malloc settings for a probe (`GLIBC_TUNABLES`, read by the loader at process start):
/// activations stay in the heap instead of being returned to the kernel after every run and
/// faulted back in by the next one. With glibc's defaults (dynamic mmap threshold from 128 KiB,
/// trim threshold twice it) a probe of the NB201 optimum at 32x32 on one thread ran either at
/// 6.3 ms or at 9.1 ms depending on when the thresholds settled (measured here; with these
/// settings every probe ran at 6.2-6.9 ms). 32 MiB is the largest mmap threshold glibc accepts on
/// 64-bit (`DEFAULT_MMAP_THRESHOLD_MAX`, glibc malloc/malloc.c); 256 MiB of free heap may stay.
pub const MALLOC_TUNABLES: &str =
    "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456";

/// The `GLIBC_TUNABLES` value a probe should run with, given the current one: `None` when it
/// already sets the malloc thresholds (the user's choice stands), else the current tunables
/// with [`MALLOC_TUNABLES`] appended.
pub fn probe_tunables(current: Option<&str>) -> Option<String> {
    let current = current.unwrap_or("").trim_matches(':');
    let sets_thresholds = current.split(':').any(|t| {
        t.starts_with("glibc.malloc.mmap_threshold=")
            || t.starts_with("glibc.malloc.trim_threshold=")
    });
    match (sets_thresholds, current.is_empty()) {
        (true, _) => None,
        (false, true) => Some(MALLOC_TUNABLES.to_string()),
        (false, false) => Some(format!("{current}:{MALLOC_TUNABLES}")),
    }
}

/// Median, 90th percentile (nearest rank), mean, standard deviation (population) and minimum of
/// the timed runs.
///
/// # Panics
/// When `samples` is empty.
pub fn summarize(samples: &[f64]) -> LatencySummary {
    assert!(!samples.is_empty(), "at least one timed run");
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let p90 = sorted[((0.9 * n as f64).ceil() as usize).clamp(1, n) - 1];
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let stddev = (sorted.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64).sqrt();
    LatencySummary {
        median_ms: median,
        p90_ms: p90,
        mean_ms: mean,
        stddev_ms: stddev,
        min_ms: sorted[0],
        repeats: n as i32,
    }
}

/// This machine: the Kubernetes node (`NODE_NAME`, set from the downward API) or the host
/// name, the CPU model (`/proc/cpuinfo`) and, for CUDA, the GPU model (NVIDIA's
/// `/proc/driver/nvidia/gpus/*/information`).
pub fn identity(device: Device) -> DeviceIdentity {
    let node_name = std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        });
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        });
    let gpu_name = device.is_cuda().then(gpu_model).flatten();
    DeviceIdentity {
        node_name,
        cpu_model,
        gpu_name,
    }
}

/// The version of the libtorch this process runs on: PyTorch's `torch/version.py` beside the
/// loaded `libtorch_cpu.so` (found in `/proc/self/maps`), e.g. `2.11.0+cu130`; `unknown` for a
/// libtorch without it.
pub fn libtorch_version() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|l| l.split_whitespace().last())
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .and_then(|lib| {
            std::path::Path::new(lib)
                .parent()
                .map(|dir| dir.join("../version.py"))
        })
        .and_then(|file| std::fs::read_to_string(file).ok())
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("__version__"))
                .map(|v| {
                    v.trim_start_matches([' ', '='])
                        .trim()
                        .trim_matches(['\'', '"'])
                        .to_string()
                })
        })
        .unwrap_or_else(|| "unknown".into())
}

fn gpu_model() -> Option<String> {
    let mut dirs: Vec<_> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .ok()?
        .filter_map(Result::ok)
        .collect();
    dirs.sort_by_key(|d| d.path());
    let text = std::fs::read_to_string(dirs.first()?.path().join("information")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Model:"))
        .map(|m| m.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_tunables_add_the_malloc_thresholds_once() {
        assert_eq!(probe_tunables(None).as_deref(), Some(MALLOC_TUNABLES));
        assert_eq!(probe_tunables(Some("")).as_deref(), Some(MALLOC_TUNABLES));
        assert_eq!(
            probe_tunables(Some("glibc.rtld.optional_static_tls=512")).unwrap(),
            format!("glibc.rtld.optional_static_tls=512:{MALLOC_TUNABLES}")
        );
        assert_eq!(probe_tunables(Some(MALLOC_TUNABLES)), None);
        assert_eq!(
            probe_tunables(Some("glibc.malloc.trim_threshold=0")),
            None,
            "a user's own threshold stands"
        );
    }

    #[test]
    fn statistics_of_timed_runs() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(
            (s.median_ms, s.p90_ms, s.min_ms, s.repeats),
            (5.5, 9.0, 1.0, 10)
        );
        assert!((s.mean_ms - 5.5).abs() < 1e-12);
        assert!((s.stddev_ms - 8.25f64.sqrt()).abs() < 1e-12);
        let one = summarize(&[2.5]);
        assert_eq!((one.median_ms, one.p90_ms, one.stddev_ms), (2.5, 2.5, 0.0));
    }
}

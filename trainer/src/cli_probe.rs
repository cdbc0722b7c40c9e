//! `nasop-trainer probe`: arguments, measurement, TorchScript export and outputs.

use std::path::{Path, PathBuf};

use clap::Args;
use nasop_crds::result::{FailureReason, ProbeReport, ProbeResult, Versions};
use tch::{CModule, Device, Tensor};

use crate::args::{parse_genotype, NetArgs};
use crate::cli_train::{
    check_output_path, clean_torch_message, select_device, stop_flag, write_result, Failure,
    TERMINATION_LOG,
};
use crate::net::{Mode, Net, Shape};
use crate::probe::{identity, libtorch_version, measure, probe_input, summarize};
use crate::train::device_name;

/// Arguments of `nasop-trainer probe`.
#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The child network.
    #[command(flatten)]
    pub net: NetArgs,
    /// Input height and width, pixels (MnasNet: 224).
    #[arg(long, default_value_t = 224)]
    pub input_size: i64,
    /// Input channels.
    #[arg(long, default_value_t = 3)]
    pub channels: i64,
    /// Classes of the classifier.
    #[arg(long, default_value_t = 1000)]
    pub classes: i64,
    /// Batch size of the measured input (1: the latency of one image).
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    /// Timed runs.
    #[arg(long, default_value_t = 50)]
    pub repeats: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// CPU threads (MnasNet measured on one: `--threads 1`); default: libtorch's choice.
    #[arg(long)]
    pub threads: Option<i32>,
    /// Device: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Channels-last (NHWC) weights and input, as an inference runtime would lay them out:
    /// oneDNN's and cuDNN's fast kernels use it (on one CPU thread, NCHW 3x3 average pooling
    /// costs more than a 3x3 convolution of the same size, NHWC about a third of it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub channels_last: bool,
    /// Load these trained weights (safetensors of `train --checkpoint`) instead of random ones.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Also save the child as TorchScript (traced, eval mode) for runtimes outside nasop.
    #[arg(long)]
    pub export_torchscript: Option<PathBuf>,
    /// Write the result JSON here too.
    #[arg(long)]
    pub result: Option<PathBuf>,
    /// Write the result JSON here (missing parent folder: skipped).
    #[arg(long, default_value = TERMINATION_LOG)]
    pub termination_log: PathBuf,
}

/// Runs the probe and returns the result document.
pub fn run(args: &ProbeArgs) -> ProbeResult {
    match run_inner(args) {
        Ok(report) => ProbeResult::succeeded(report),
        Err(f) => ProbeResult::failed(f.reason, f.message),
    }
}

fn invalid(message: String) -> Failure {
    Failure::new(FailureReason::InvalidInput, message)
}

fn run_inner(args: &ProbeArgs) -> Result<ProbeReport, Failure> {
    let stop = stop_flag()?;
    if let (Some(result), Some(export)) = (&args.result, &args.export_torchscript) {
        if result == export {
            return Err(invalid(format!(
                "--result and --export-torchscript are the same file {}; give them different paths",
                result.display()
            )));
        }
    }
    let genotype = parse_genotype(&args.net.genotype).map_err(|e| invalid(format!("{e:#}")))?;
    if !(1..=100_000).contains(&args.repeats) {
        return Err(invalid(format!(
            "--repeats: {} is out of range; allowed: 1..=100000",
            args.repeats
        )));
    }
    if args.warmup > 100_000 {
        return Err(invalid(format!(
            "--warmup: {} is out of range; allowed: 0..=100000",
            args.warmup
        )));
    }
    if !(1..=4096).contains(&args.batch) {
        return Err(invalid(format!(
            "--batch: {} is out of range; allowed: 1..=4096",
            args.batch
        )));
    }
    check_output_path("--result", args.result.as_deref(), None)?;
    check_output_path(
        "--export-torchscript",
        args.export_torchscript.as_deref(),
        None,
    )?;
    let device = select_device(&args.device)?;
    if let Some(t) = args.threads {
        if !(1..=1024).contains(&t) {
            return Err(invalid(format!(
                "--threads: {t} is out of range; allowed: 1..=1024"
            )));
        }
        tch::set_num_threads(t);
    }
    let input = Shape {
        c: args.channels,
        h: args.input_size,
        w: args.input_size,
    };
    let config = args.net.config(input, args.classes, false);
    Net::summarize(&genotype, &config).map_err(|e| invalid(e.to_string()))?;
    tch::manual_seed(0);
    let mut net = Net::new(&genotype, &config, device).map_err(|e| invalid(e.to_string()))?;
    let weights = match &args.checkpoint {
        Some(path) => {
            if !path.is_file() {
                return Err(invalid(format!(
                    "--checkpoint {}: not a file",
                    path.display()
                )));
            }
            net.var_store_mut().load(path).map_err(|e| {
                invalid(format!(
                    "--checkpoint {}: does not fit this network (same genotype and --cells-per-stage/--filters/--classes/--channels as training?): {}",
                    path.display(),
                    clean_torch_message(&e.to_string())
                ))
            })?;
            path.display().to_string()
        }
        None => "random".into(),
    };
    if args.channels_last {
        net.to_channels_last();
    }
    // Inference only: no gradients, and constants a TorchScript trace can embed.
    net.var_store_mut().freeze();
    let shape = [args.batch, input.c, input.h, input.w];
    if let Some(path) = &args.export_torchscript {
        export(&net, shape, args.channels_last, device, path)?;
    }
    eprintln!(
        "probing {} on {}: {} warm-up and {} timed runs of input {shape:?}",
        genotype.hash(),
        device_name(device),
        args.warmup,
        args.repeats
    );
    let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);
    let samples = measure(
        &net,
        shape,
        args.channels_last,
        device,
        args.warmup,
        args.repeats,
        &stopped,
    )
    .ok_or_else(|| {
        Failure::new(
            FailureReason::Terminated,
            "stopped by a signal before the timed runs finished",
        )
    })?;
    let summary = net.summary();
    Ok(ProbeReport {
        genotype_hash: genotype.hash().as_str().to_string(),
        space: genotype.kind(),
        device: device_name(device),
        latency: summarize(&samples),
        warmup: args.warmup as i32,
        input_shape: shape,
        threads: tch::get_num_threads(),
        channels_last: args.channels_last,
        identity: identity(device),
        versions: Versions {
            nasop: env!("CARGO_PKG_VERSION").into(),
            libtorch: libtorch_version(),
        },
        params: summary.params,
        macs: summary.macs,
        weights,
    })
}

/// Traces the network in eval mode on an input of `shape` (channels-last strides when
/// `channels_last`) and saves the TorchScript module.
fn export(
    net: &Net,
    shape: [i64; 4],
    channels_last: bool,
    device: Device,
    path: &Path,
) -> Result<(), Failure> {
    let x = probe_input(shape, channels_last, device);
    let mut forward = |inputs: &[Tensor]| vec![net.forward(&inputs[0], Mode::Eval).0];
    let module =
        tch::no_grad(|| CModule::create_by_tracing("NasopChild", "forward", &[x], &mut forward))
            .and_then(|m| m.save(path).map(|()| m))
            .map_err(|e| {
                Failure::new(
                    FailureReason::Internal,
                    format!(
                        "--export-torchscript {}: {}",
                        path.display(),
                        clean_torch_message(&e.to_string())
                    ),
                )
            })?;
    drop(module);
    Ok(())
}

/// Writes the result (one compact JSON document) to stdout, the termination log and `--result`;
/// returns warnings for the writes that failed.
pub fn write_outputs(args: &ProbeArgs, result: &ProbeResult) -> Vec<String> {
    let text = serde_json::to_string(result).expect("result serializes");
    write_result(
        &result.termination_message(),
        &format!("{text}\n"),
        &args.termination_log,
        args.result.as_deref(),
    )
}

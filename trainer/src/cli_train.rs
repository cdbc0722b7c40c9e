//! `nasop-trainer train`: arguments, device selection, outputs and failure classification.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use nasop_crds::result::{EpochRecord, FailureReason, TrainResult};
use tch::Device;

use crate::args::{parse_genotype, NetArgs};
use crate::data::loader::Augment;
use crate::data::{self, DataError, DataFormat, DataOptions};
use crate::net::{Net, Shape};
use crate::train::{
    self, device_name, Observer, Optimizer, Runtime, Schedule, TrainConfig, TrainError,
};
use nasop_crds::space::Genotype;

/// Default termination-message path of a Kubernetes container.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// Optimizer choice on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OptimizerArg {
    /// SGD with Nesterov momentum.
    Sgd,
    /// RMSProp (MnasNet).
    Rmsprop,
}

/// Schedule choice on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScheduleArg {
    /// Cosine decay to 0.
    Cosine,
    /// x0.97 every 2.4 epochs (MnasNet).
    Exponential,
    /// Constant.
    Constant,
}

/// Numeric precision.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum PrecisionArg {
    /// bf16 on CUDA, fp32 on the CPU.
    Auto,
    /// fp32 everywhere.
    Fp32,
    /// Convolutions and linear layers in bfloat16 (weights stay fp32).
    Bf16,
}

/// Arguments of `nasop-trainer train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The child network.
    #[command(flatten)]
    pub net: NetArgs,
    /// Dataset format: cifar10, fashion-mnist, mnist, image-folder (API names such as
    /// `CIFAR10` and `FashionMNIST` are accepted too).
    #[arg(long, value_parser = parse_format)]
    pub dataset_format: DataFormat,
    /// Folder with the dataset files.
    #[arg(long)]
    pub data: PathBuf,
    /// Training examples used (first N of the training split; default: all).
    #[arg(long)]
    pub train_examples: Option<usize>,
    /// Validation examples held out from the end of the training set (default: 10%).
    #[arg(long)]
    pub validation_examples: Option<usize>,
    /// Also evaluate on the test set and report `testAccuracy`.
    #[arg(long)]
    pub test: bool,
    /// Image folders: resize images to this square size (default: the first image's size).
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    pub epochs: u32,
    /// Examples per step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Stop after at most this many steps (the schedule spans the steps actually run).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Sgd)]
    pub optimizer: OptimizerArg,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.05)]
    pub learning_rate: f64,
    /// Momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay (conv and linear weights only).
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Cosine)]
    pub schedule: ScheduleArg,
    /// Linear warm-up, epochs.
    #[arg(long, default_value_t = 0.0)]
    pub warmup_epochs: f64,
    /// Label smoothing.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Clip the gradient norm to this (0: off).
    #[arg(long, default_value_t = 5.0)]
    pub grad_clip: f64,
    /// Largest ScheduledDropPath probability (NASNet), reached at the last step.
    #[arg(long, default_value_t = 0.0)]
    pub drop_path: f64,
    /// Random-crop padding, pixels (0: no crop).
    #[arg(long, default_value_t = 4)]
    pub crop_padding: usize,
    /// Disable horizontal flips.
    #[arg(long)]
    pub no_flip: bool,
    /// Cutout square side, pixels (0: off).
    #[arg(long, default_value_t = 0)]
    pub cutout: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Intra-op CPU threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Precision.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Auto)]
    pub precision: PrecisionArg,
    /// Channels-last memory order: default on for CUDA, off on the CPU.
    #[arg(long)]
    pub channels_last: Option<bool>,
    /// Write the full result JSON here.
    #[arg(long)]
    pub result: Option<PathBuf>,
    /// Write the compact result JSON (<= 4 KiB) here; missing parent folder: skipped.
    #[arg(long, default_value = TERMINATION_LOG)]
    pub termination_log: PathBuf,
    /// Save the trained weights here (safetensors; the name must end in `.safetensors`).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// No per-epoch progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

fn parse_format(s: &str) -> Result<DataFormat, String> {
    s.parse()
}

/// A failure with its category.
#[derive(Debug)]
pub struct Failure {
    /// Category (sets the exit code).
    pub reason: FailureReason,
    /// Message.
    pub message: String,
}

impl Failure {
    pub(crate) fn new(reason: FailureReason, message: impl std::fmt::Display) -> Self {
        Self {
            reason,
            message: message.to_string(),
        }
    }
}

/// The failure a libtorch error (surfacing as a panic in tch's infallible calls) stands for:
/// allocation failures on CUDA ("CUDA out of memory") or the CPU ("DefaultCPUAllocator: not
/// enough memory", "can't allocate memory") are [`FailureReason::OutOfMemory`]; anything else
/// is [`FailureReason::Internal`].
pub fn classify_panic(message: &str) -> FailureReason {
    let m = message.to_ascii_lowercase();
    if m.contains("out of memory")
        || m.contains("can't allocate memory")
        || m.contains("not enough memory")
    {
        FailureReason::OutOfMemory
    } else {
        FailureReason::Internal
    }
}

/// Parses `auto`, `cpu`, `cuda`, `cuda:N`.
///
/// # Errors
/// [`FailureReason::InvalidInput`] for other text; [`FailureReason::DeviceUnavailable`] when
/// CUDA (or device N) is asked for and absent.
pub fn select_device(text: &str) -> Result<Device, Failure> {
    let text = text.trim().to_ascii_lowercase();
    let cuda_count = || {
        if tch::Cuda::is_available() {
            tch::Cuda::device_count()
        } else {
            0
        }
    };
    let unavailable = |what: &str| {
        Failure::new(
            FailureReason::DeviceUnavailable,
            format!(
                "--device {what}: CUDA is not available here ({} CUDA devices visible to libtorch); use --device cpu or run on a GPU node",
                cuda_count()
            ),
        )
    };
    match text.as_str() {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => {
            if cuda_count() > 0 {
                Ok(Device::Cuda(0))
            } else {
                Err(unavailable(&text))
            }
        }
        _ => match text.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) if (i as i64) < cuda_count() => Ok(Device::Cuda(i)),
            Some(Ok(_)) => Err(unavailable(&text)),
            _ => Err(Failure::new(
                FailureReason::InvalidInput,
                format!("--device {text:?} is not a device; allowed: auto, cpu, cuda, cuda:N"),
            )),
        },
    }
}

struct Progress {
    quiet: bool,
    stop: Arc<AtomicBool>,
}

impl Observer for Progress {
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn epoch(&mut self, r: &EpochRecord, epochs: u32, samples_per_second: f64) {
        if !self.quiet {
            eprintln!(
                "epoch {}/{epochs}: train loss {:.4} acc {:.2}% | validation loss {:.4} acc {:.2}% | lr {:.5} | {:.0} img/s | {:.1} s",
                r.epoch,
                r.train_loss,
                100.0 * r.train_accuracy,
                r.validation_loss,
                100.0 * r.validation_accuracy,
                r.learning_rate,
                samples_per_second,
                r.seconds
            );
        }
    }
}

/// Runs `train` and returns the result document (success or failure); the caller writes it.
pub fn run(args: &TrainArgs) -> TrainResult {
    match run_inner(args) {
        Ok(result) => result,
        Err(f) => TrainResult::failed(f.reason, f.message),
    }
}

/// A flag set by SIGTERM or SIGINT (a second signal ends the process at once, exit 143), so
/// that a stopped pod still writes its result.
///
/// # Errors
/// When the handler cannot be installed.
pub fn stop_flag() -> Result<Arc<AtomicBool>, Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 143, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .map_err(|e| {
                Failure::new(
                    FailureReason::Internal,
                    format!("installing the signal handler: {e}"),
                )
            })?;
    }
    Ok(stop)
}

fn run_inner(args: &TrainArgs) -> Result<TrainResult, Failure> {
    let started = Instant::now();
    let stop = stop_flag()?;
    let genotype = parse_genotype(&args.net.genotype)
        .map_err(|e| Failure::new(FailureReason::InvalidInput, format!("{e:#}")))?;
    check_output_path(
        "--checkpoint",
        args.checkpoint.as_deref(),
        Some("safetensors"),
    )?;
    check_output_path("--result", args.result.as_deref(), None)?;
    if let Some(side) = args.image_size.filter(|s| !(8..=4096).contains(s)) {
        return Err(Failure::new(
            FailureReason::InvalidInput,
            format!("--image-size: {side} is out of range; allowed: 8..=4096"),
        ));
    }
    if args.grad_clip < 0.0 || !args.grad_clip.is_finite() {
        return Err(Failure::new(
            FailureReason::InvalidInput,
            format!(
                "--grad-clip: {} is out of range; allowed: a positive number, or 0 for no clipping",
                args.grad_clip
            ),
        ));
    }
    for warning in inapplicable_flags(args, &genotype) {
        eprintln!("warning: {warning}");
    }
    let device = select_device(&args.device)?;
    if let Some(t) = args.threads {
        if !(1..=1024).contains(&t) {
            return Err(Failure::new(
                FailureReason::InvalidInput,
                format!("--threads {t} is out of range; allowed: 1..=1024"),
            ));
        }
        tch::set_num_threads(t);
    }
    let runtime = Runtime {
        device,
        bf16: match args.precision {
            PrecisionArg::Auto => device.is_cuda(),
            PrecisionArg::Fp32 => false,
            PrecisionArg::Bf16 => true,
        },
        channels_last: args.channels_last.unwrap_or(device.is_cuda()),
    };
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        optimizer: match args.optimizer {
            OptimizerArg::Sgd => Optimizer::Sgd,
            OptimizerArg::Rmsprop => Optimizer::RmsProp,
        },
        learning_rate: args.learning_rate,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        schedule: match args.schedule {
            ScheduleArg::Cosine => Schedule::Cosine,
            ScheduleArg::Exponential => Schedule::Exponential,
            ScheduleArg::Constant => Schedule::Constant,
        },
        warmup_epochs: args.warmup_epochs,
        label_smoothing: args.label_smoothing,
        grad_clip: (args.grad_clip > 0.0).then_some(args.grad_clip),
        drop_path: args.drop_path,
        augment: Augment {
            crop_padding: args.crop_padding,
            flip: !args.no_flip,
            cutout: args.cutout,
        },
        seed: args.seed,
        max_steps: args.max_steps,
    };
    config
        .validate()
        .map_err(|e| Failure::new(FailureReason::InvalidInput, e))?;
    let splits = data::load(&DataOptions {
        format: args.dataset_format,
        path: args.data.clone(),
        train_examples: args.train_examples,
        validation_examples: args.validation_examples,
        test: args.test,
        image_size: args.image_size,
    })
    .map_err(|e: DataError| Failure::new(FailureReason::DataError, e))?;
    let shape: Shape = splits.train.shape;
    check_images(&genotype, shape, &config)?;
    let net_config = args.net.config(shape, splits.classes as i64, runtime.bf16);
    // Every setting of the network, checked in milliseconds before anything is allocated.
    let summary = Net::summarize(&genotype, &net_config)
        .map_err(|e| Failure::new(FailureReason::InvalidInput, e))?;
    let batch = config.batch_size.min(splits.train.len()) as i64;
    if let Some(l) = summary
        .layers
        .iter()
        .find(|l| l.kind == "batchnorm" && batch * l.output[1] * l.output[2] < 2)
    {
        return Err(Failure::new(
            FailureReason::InvalidInput,
            format!(
                "--batch-size {batch}: batch norm layer {} would normalize a single value per channel ({}x{} maps); use a batch of at least 2",
                l.name, l.output[1], l.output[2]
            ),
        ));
    }
    if !args.quiet {
        eprintln!(
            "training {} child {} on {} ({}, {} threads) with {} training / {} validation examples of {}",
            genotype.kind(),
            genotype.hash(),
            device_name(device),
            if runtime.bf16 { "bf16" } else { "fp32" },
            tch::get_num_threads(),
            splits.train.len(),
            splits.validation.len(),
            args.dataset_format,
        );
    }
    let mut progress = Progress {
        quiet: args.quiet,
        stop,
    };
    let (mut report, net) = train::train(
        &genotype,
        &net_config,
        &splits,
        &config,
        runtime,
        &mut progress,
    )
    .map_err(|e| match e {
        TrainError::Diverged { .. } => Failure::new(FailureReason::Diverged, e),
        TrainError::Interrupted { .. } => Failure::new(FailureReason::Terminated, e),
        TrainError::Config { .. } | TrainError::Net(_) => {
            Failure::new(FailureReason::InvalidInput, e)
        }
    })?;
    if let Some(path) = &args.checkpoint {
        create_parent(path)?;
        // Written beside the target and renamed: a crash never leaves a half-written checkpoint.
        let partial = path.with_extension("partial.safetensors");
        net.var_store()
            .save(&partial)
            .and_then(|()| std::fs::rename(&partial, path).map_err(tch::TchError::from))
            .map_err(|e| {
                let _ = std::fs::remove_file(&partial);
                Failure::new(
                    FailureReason::Internal,
                    format!(
                        "--checkpoint {}: {}",
                        path.display(),
                        clean_torch_message(&e.to_string())
                    ),
                )
            })?;
    }
    report.wall_seconds = started.elapsed().as_secs_f64();
    Ok(TrainResult::succeeded(report))
}

pub(crate) fn create_parent(path: &Path) -> Result<(), Failure> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Failure::new(
                FailureReason::Internal,
                format!("{}: {e}", parent.display()),
            )
        })?;
    }
    Ok(())
}

/// Writes the result: compact JSON to stdout first (a closed stdout is not an error), then to
/// the termination log (skipped when its folder does not exist, as outside Kubernetes) and in
/// full to `--result`. The output paths were checked before training, so a failure here is rare;
/// it is reported as a warning, and the result stays on stdout.
pub fn write_outputs(args: &TrainArgs, result: &TrainResult) -> Vec<String> {
    let full = serde_json::to_string_pretty(result).expect("result serializes") + "\n";
    write_result(
        &result.termination_message(),
        &full,
        &args.termination_log,
        args.result.as_deref(),
    )
}

/// Prints `line` and a newline to stdout; a closed stdout (`| head`) is not an error.
///
/// # Errors
/// Any other write error, as a message.
pub fn print_line(line: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("writing to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

/// Writes a result document of `train` or `probe`: `compact` to stdout and the termination log
/// (skipped when its folder does not exist; the default `/dev/termination-log` may be
/// unwritable outside a container), `full` to the `--result` file. Returns warnings for the
/// writes that failed.
pub(crate) fn write_result(
    compact: &str,
    full: &str,
    termination_log: &Path,
    result: Option<&Path>,
) -> Vec<String> {
    let mut warnings: Vec<String> = print_line(compact).err().into_iter().collect();
    if termination_log.parent().is_some_and(Path::is_dir) {
        if let Err(e) = std::fs::write(termination_log, compact) {
            if termination_log != Path::new(TERMINATION_LOG) {
                warnings.push(format!(
                    "--termination-log {}: {e}",
                    termination_log.display()
                ));
            }
        }
    }
    if let Some(path) = result.filter(|p| !p.exists() || p.is_file()) {
        if let Err(e) = create_parent(path).map_err(|f| f.message).and_then(|()| {
            std::fs::write(path, full).map_err(|e| format!("--result {}: {e}", path.display()))
        }) {
            warnings.push(e);
        }
    }
    warnings
}

/// Writes a failure document to the termination log named in raw command-line arguments (for
/// arguments that do not parse, so that a pod still reports why it failed).
pub fn write_parse_failure(raw_args: &[String], message: &str) {
    let probe = raw_args.get(1).map(String::as_str) == Some("probe");
    let flag = |name: &str| -> Option<PathBuf> {
        let eq = format!("{name}=");
        let mut found = None;
        for (i, arg) in raw_args.iter().enumerate() {
            if let Some(v) = arg.strip_prefix(&eq) {
                found = Some(PathBuf::from(v));
            } else if arg == name {
                found = raw_args.get(i + 1).map(PathBuf::from);
            }
        }
        found
    };
    let log = flag("--termination-log").unwrap_or_else(|| PathBuf::from(TERMINATION_LOG));
    let first = message.lines().next().unwrap_or_default();
    let message = first.trim_start_matches("error: ").trim();
    let text = if probe {
        nasop_crds::result::ProbeResult::failed(FailureReason::InvalidInput, message)
            .termination_message()
    } else {
        TrainResult::failed(FailureReason::InvalidInput, message).termination_message()
    };
    // The termination log and `--result` both get the failure (a local runner reads the latter).
    for path in std::iter::once(log).chain(flag("--result")) {
        if path.parent().is_some_and(Path::is_dir) && !path.is_dir() {
            let _ = std::fs::write(&path, &text);
        }
    }
}

/// Checks before training that an output file can be written: not a folder or device, the
/// right extension, a parent folder that exists or can be made, and permission to create it.
pub(crate) fn check_output_path(
    flag: &str,
    path: Option<&Path>,
    extension: Option<&str>,
) -> Result<(), Failure> {
    let Some(path) = path else { return Ok(()) };
    let bad = |why: String| {
        Err(Failure::new(
            FailureReason::InvalidInput,
            format!("{flag} {}: {why}", path.display()),
        ))
    };
    if let Some(ext) = extension {
        if path.extension().and_then(|e| e.to_str()) != Some(ext) {
            return bad(format!("the file name must end in .{ext}"));
        }
    }
    if path.exists() && !path.is_file() {
        return bad("exists and is not a regular file".into());
    }
    create_parent(path).or_else(|f| bad(f.message))?;
    let existed = path.exists();
    match std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        Ok(_) if !existed => {
            let _ = std::fs::remove_file(path);
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => bad(format!("cannot be written: {e}")),
    }
}

/// Checks the dataset's images against the network and the augmentation.
fn check_images(genotype: &Genotype, shape: Shape, config: &TrainConfig) -> Result<(), Failure> {
    let (h, w) = (shape.h, shape.w);
    if !(8..=4096).contains(&h) || !(8..=4096).contains(&w) {
        return Err(Failure::new(
            FailureReason::DataError,
            format!("the dataset's images are {w}x{h}; the networks take 8..=4096 pixels per side (--image-size resizes image folders)"),
        ));
    }
    if matches!(genotype, Genotype::Nb201(_)) && (h % 4 != 0 || w % 4 != 0) {
        return Err(Failure::new(
            FailureReason::DataError,
            format!("the dataset's images are {w}x{h}; the NB201 network halves them twice, so each side must divide by 4 (--image-size resizes image folders)"),
        ));
    }
    let side = h.min(w) as usize;
    if config.augment.crop_padding > side {
        return Err(Failure::new(
            FailureReason::InvalidInput,
            format!(
                "--crop-padding: {} is out of range; allowed: 0..={side} (the images are {w}x{h})",
                config.augment.crop_padding
            ),
        ));
    }
    if config.augment.cutout > side {
        return Err(Failure::new(
            FailureReason::InvalidInput,
            format!(
                "--cutout: {} is out of range; allowed: 0..={side} (the images are {w}x{h})",
                config.augment.cutout
            ),
        ));
    }
    Ok(())
}

/// Flags given that the genotype's network (or the dataset format) does not use.
fn inapplicable_flags(args: &TrainArgs, genotype: &Genotype) -> Vec<String> {
    let n = &args.net;
    let space = genotype.kind();
    let mut given = Vec::new();
    match genotype {
        Genotype::Nb201(_) => {
            given.extend(n.head_filters.map(|_| "--head-filters"));
            given.extend(n.aux_head.then_some("--aux-head"));
            given.extend(n.dropout.map(|_| "--dropout"));
            given.extend((args.drop_path > 0.0).then_some("--drop-path"));
        }
        Genotype::Mnasnet(_) => {
            given.extend(n.cells_per_stage.map(|_| "--cells-per-stage"));
            given.extend(n.filters.map(|_| "--filters"));
            given.extend(n.aux_head.then_some("--aux-head"));
            given.extend((args.drop_path > 0.0).then_some("--drop-path"));
        }
        Genotype::Nasnet(_) => given.extend(n.head_filters.map(|_| "--head-filters")),
    }
    let mut warnings: Vec<String> = given
        .into_iter()
        .map(|f| format!("{f} has no effect on {space} networks (ignored)"))
        .collect();
    if args.image_size.is_some() && args.dataset_format != DataFormat::ImageFolder {
        warnings.push(format!(
            "--image-size only resizes image folders; {} images keep their size (ignored)",
            args.dataset_format
        ));
    }
    warnings
}

/// A libtorch error as a short message: without tch's `unwrap` wrapper, the C++ stack frames
/// and the source locations libtorch appends.
pub fn clean_torch_message(message: &str) -> String {
    let mut m = message;
    for prefix in [
        "called `Result::unwrap()` on an `Err` value: ",
        "Torch(\"",
        "Internal torch error: ",
    ] {
        m = m.strip_prefix(prefix).unwrap_or(m);
    }
    let m = m.replace("\\n", "\n");
    let cut = ["\nframe #", "\nException raised from", "\nTensor:"]
        .iter()
        .filter_map(|k| m.find(k))
        .min()
        .unwrap_or(m.len());
    m[..cut].trim().trim_end_matches("\")").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn a_real_libtorch_allocation_failure_is_out_of_memory() {
        // 4 TiB: the allocator refuses at once, without touching memory.
        let err = Tensor::f_zeros([1 << 40], (Kind::Float, Device::Cpu))
            .unwrap_err()
            .to_string();
        assert_eq!(classify_panic(&err), FailureReason::OutOfMemory, "{err}");
        assert_eq!(
            classify_panic(
                "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.15 GiB total capacity)"
            ),
            FailureReason::OutOfMemory
        );
        let err = Tensor::f_zeros([2, 3], (Kind::Float, Device::Cpu))
            .unwrap()
            .f_matmul(&Tensor::zeros([4, 5], (Kind::Float, Device::Cpu)))
            .unwrap_err()
            .to_string();
        assert_eq!(classify_panic(&err), FailureReason::Internal, "{err}");
    }

    #[test]
    fn devices_parse_and_unknown_ones_are_named() {
        assert_eq!(select_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(select_device(" CPU ").unwrap(), Device::Cpu);
        let f = select_device("cuda:x").unwrap_err();
        assert_eq!(f.reason, FailureReason::InvalidInput);
        if !tch::Cuda::is_available() {
            assert_eq!(select_device("auto").unwrap(), Device::Cpu);
            assert_eq!(
                select_device("cuda:1").unwrap_err().reason,
                FailureReason::DeviceUnavailable
            );
        }
    }
}

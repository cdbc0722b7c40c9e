//! `nasop-trainer`: runs inside trainer and probe pods, and locally under `nasop run`.
#![forbid(unsafe_code)]

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Parser, Subcommand};
use nasop_crds::result::{FailureReason, ProbeOutcome, ProbeResult, TrainFailure};
use nasop_crds::result::{TrainOutcome, TrainResult};
use nasop_trainer::args::{parse_genotype, NetArgs};
use nasop_trainer::cli_probe::{self, ProbeArgs};
use nasop_trainer::cli_train::{self, TrainArgs};
use nasop_trainer::net::{Net, Shape};
use nasop_trainer::{info, probe};

/// The nasop trainer: builds child networks with libtorch and trains or probes them.
#[derive(Parser, Debug)]
// A flag given twice takes its last value: `nasop run` and trainer pods append the search's
// `trial.args` after the flags they set, so that users can override them.
#[command(name = "nasop-trainer", version, about, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the libtorch build this binary runs against (devices, threads) as JSON, after a
    /// small computation that proves libtorch loads and computes.
    Info,
    /// Train a child network on a dataset and report its validation accuracy (result JSON on
    /// stdout and in the termination message). Exit codes: 0 trained, 2 bad input or data,
    /// 3 out of memory, 4 device unavailable, 5 diverged, 1 other failure.
    Train(Box<TrainArgs>),
    /// Measure a child's inference latency on this device (batch 1 by default): warm-up runs,
    /// then timed runs; prints median, p90, mean, stddev, min as JSON (also to the termination
    /// message). Exit codes as `train`.
    Probe(Box<ProbeArgs>),
    /// Print a child network's parameters and multiply-adds as one JSON object.
    Summary {
        #[command(flatten)]
        net: NetArgs,
        /// Input height and width, pixels.
        #[arg(long, default_value_t = 32)]
        input_size: i64,
        /// Input channels.
        #[arg(long, default_value_t = 3)]
        channels: i64,
        /// Number of classes.
        #[arg(long, default_value_t = 10)]
        classes: i64,
        /// Include the layer table (name, kind, output shape, params, multiply-adds per layer).
        #[arg(long)]
        verbose: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let raw: Vec<String> = std::env::args().collect();
            if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                && matches!(raw.get(1).map(String::as_str), Some("train" | "probe"))
            {
                cli_train::write_parse_failure(&raw, &e.render().to_string());
            }
            e.exit()
        }
    };
    let result = match cli.command {
        Command::Train(args) => return train(&args),
        Command::Probe(args) => {
            reexec_with_probe_tunables();
            return probe(&args);
        }
        Command::Info => {
            info::collect().map(|i| serde_json::to_string_pretty(&i).expect("serializable"))
        }
        Command::Summary {
            net,
            input_size,
            channels,
            classes,
            verbose,
        } => summary(&net, input_size, channels, classes, verbose),
    };
    match result {
        Ok(text) => print_stdout(&text),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Restarts this process with [`probe::MALLOC_TUNABLES`] in `GLIBC_TUNABLES` (glibc reads them
/// only at start) unless they are set already or this is the restarted process. When the
/// restart fails the probe goes on with glibc's defaults and says so on stderr.
fn reexec_with_probe_tunables() {
    use std::os::unix::process::CommandExt;
    const MARK: &str = "NASOP_PROBE_TUNED";
    if std::env::var_os(MARK).is_some() {
        return;
    }
    let current = std::env::var("GLIBC_TUNABLES").ok();
    let Some(tunables) = probe::probe_tunables(current.as_deref()) else {
        return;
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("warning: probe runs with glibc's malloc defaults (no executable path: {e})");
            return;
        }
    };
    let e = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", tunables)
        .env(MARK, "1")
        .exec();
    eprintln!("warning: probe runs with glibc's malloc defaults (restart failed: {e})");
}

fn summary(
    net: &NetArgs,
    size: i64,
    channels: i64,
    classes: i64,
    verbose: bool,
) -> anyhow::Result<String> {
    let genotype = parse_genotype(&net.genotype)?;
    let config = net.config(
        Shape {
            c: channels,
            h: size,
            w: size,
        },
        classes,
        false,
    );
    let mut summary = Net::summarize(&genotype, &config)?;
    if !verbose {
        summary.layers.clear();
    }
    let mut value = serde_json::to_value(&summary)?;
    value["genotype"] = genotype.to_string().into();
    value["genotypeHash"] = genotype.hash().as_str().into();
    value["genotypeJson"] = serde_json::to_value(&genotype)?;
    Ok(serde_json::to_string_pretty(&value)?)
}

/// The last panic message (libtorch errors surface as panics in tch's infallible calls).
static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        *PANIC_MESSAGE.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }));
}

/// Runs `run`; a panic (a libtorch error in one of tch's infallible calls) becomes the failure
/// `failed(reason, message)`, classified as out of memory or internal, with libtorch's stack
/// frames removed.
fn catching<R>(run: impl FnOnce() -> R, failed: impl FnOnce(FailureReason, String) -> R) -> R {
    install_panic_hook();
    panic::catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| {
        let message = PANIC_MESSAGE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        failed(
            cli_train::classify_panic(&message),
            cli_train::clean_torch_message(&message),
        )
    })
}

/// Reports a failure on stderr, then the warnings of writing the result; the exit code of the
/// outcome (0 without a failure).
fn exit(failure: Option<&TrainFailure>, warnings: Vec<String>) -> ExitCode {
    if let Some(f) = failure {
        eprintln!("error ({:?}): {}", f.reason, f.message);
    }
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    ExitCode::from(failure.map_or(0, |f| f.reason.exit_code()))
}

fn probe(args: &ProbeArgs) -> ExitCode {
    let result = catching(|| cli_probe::run(args), ProbeResult::failed);
    let failure = match &result.outcome {
        ProbeOutcome::Succeeded(_) => None,
        ProbeOutcome::Failed(f) => Some(f),
    };
    exit(failure, cli_probe::write_outputs(args, &result))
}

fn train(args: &TrainArgs) -> ExitCode {
    let result = catching(|| cli_train::run(args), TrainResult::failed);
    let failure = match &result.outcome {
        TrainOutcome::Succeeded(_) => None,
        TrainOutcome::Failed(f) => Some(f),
    };
    exit(failure, cli_train::write_outputs(args, &result))
}

/// Prints `text` and a newline; a closed stdout (`| head`) is not an error.
fn print_stdout(text: &str) -> ExitCode {
    match cli_train::print_line(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

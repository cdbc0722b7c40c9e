//! The result a trainer reports: the contract between `nasop-trainer train` and the operator
//! (or `nasop run`), versioned by [`TRAIN_RESULT_SCHEMA`].
//!
//! The trainer writes it as one JSON object to its container's termination message (at most
//! [`TERMINATION_MESSAGE_MAX_BYTES`]; the learning curve is thinned to fit) and, in full, to an
//! optional file. Example (success):
//!
//! ```json
//! {"schema":"nasop.dev/train-result/v1","outcome":"Succeeded","genotypeHash":"af327c6e56e7e0c8",
//!  "space":"NB201","device":"cuda:0","seed":1,"params":1073466,"macs":153272960,
//!  "validationAccuracy":0.91,"validationLoss":0.29,"finalTrainLoss":0.12,"epochs":10,"steps":7030,
//!  "batchSize":64,"trainExamples":45000,"validationExamples":5000,"wallSeconds":812.4,
//!  "trainSeconds":790.1,"samplesPerSecond":569.5,"learningCurve":[{"epoch":1,...}]}
//! ```
//!
//! and on failure `{"schema":..., "outcome":"Failed","reason":"OutOfMemory","message":"..."}`.

use serde::{Deserialize, Serialize};

use crate::api::{DeviceIdentity, LatencySummary};
use crate::space::SpaceKind;

/// Schema identifier of the result JSON; a reader rejects any other.
pub const TRAIN_RESULT_SCHEMA: &str = "nasop.dev/train-result/v1";

/// Largest termination message the kubelet keeps, bytes (Kubernetes: "the termination message
/// ... is limited to 4096 bytes", Pod lifecycle documentation, `terminationMessagePath`).
pub const TERMINATION_MESSAGE_MAX_BYTES: usize = 4096;

/// Longest failure message kept in the termination message, characters.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// `message`, or its first `MAX_MESSAGE_CHARS - 3` characters and `...` when it is longer
/// than [`MAX_MESSAGE_CHARS`].
fn cut_message(message: &str) -> String {
    cut_to(message, MAX_MESSAGE_CHARS)
}

/// `text`, or its first `max_chars - 3` characters (none when `max_chars < 3`) and `...`
/// when it has more than `max_chars` characters.
fn cut_to(text: &str, max_chars: usize) -> String {
    if text.chars().count() > max_chars {
        text.chars()
            .take(max_chars.saturating_sub(3))
            .collect::<String>()
            + "..."
    } else {
        text.to_string()
    }
}

/// The JSON of `doc` in at most [`TERMINATION_MESSAGE_MAX_BYTES`] bytes: `set` puts
/// `message` cut to [`MAX_MESSAGE_CHARS`] characters into it, then to half as many until the
/// JSON fits (a character takes up to 6 bytes as a `\u` escape), at the end `...` alone.
fn fit_message<T: Serialize>(doc: &mut T, message: &str, set: impl Fn(&mut T, String)) -> String {
    let mut keep = MAX_MESSAGE_CHARS;
    loop {
        set(doc, cut_to(message, keep));
        let text = serde_json::to_string(doc).expect("result serializes");
        if text.len() <= TERMINATION_MESSAGE_MAX_BYTES || keep == 0 {
            return text;
        }
        keep /= 2;
    }
}

/// One epoch of training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Mean training loss over the epoch (cross-entropy, label smoothing included).
    pub train_loss: f64,
    /// Training accuracy over the epoch (augmented examples), fraction in `[0, 1]`.
    pub train_accuracy: f64,
    /// Validation loss after the epoch.
    pub validation_loss: f64,
    /// Validation accuracy after the epoch, fraction in `[0, 1]`.
    pub validation_accuracy: f64,
    /// Learning rate at the end of the epoch.
    pub learning_rate: f64,
    /// Wall seconds since training started, at the end of the epoch.
    pub seconds: f64,
}

/// A completed training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainReport {
    /// Hash of the trained genotype (the search's dedupe key).
    pub genotype_hash: String,
    /// Search space of the genotype.
    pub space: SpaceKind,
    /// Device trained on (`cpu`, `cuda:0`, ...).
    pub device: String,
    /// Seed of weights, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Trainable parameters (auxiliary head excluded).
    pub params: i64,
    /// Multiply-adds of one inference pass of one example.
    pub macs: i64,
    /// Validation accuracy after the last epoch, fraction in `[0, 1]` (the NASNet reward).
    pub validation_accuracy: f64,
    /// Validation cross-entropy after the last epoch.
    pub validation_loss: f64,
    /// Test accuracy, when the test set was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Mean training loss of the last epoch.
    pub final_train_loss: f64,
    /// Epochs trained.
    pub epochs: u32,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Examples per step.
    pub batch_size: u32,
    /// Training examples.
    pub train_examples: u64,
    /// Held-out validation examples.
    pub validation_examples: u64,
    /// Wall seconds of the whole run (data loading and evaluation included).
    pub wall_seconds: f64,
    /// Wall seconds spent in training steps.
    pub train_seconds: f64,
    /// Training throughput, examples per second of `train_seconds`.
    pub samples_per_second: f64,
    /// Per-epoch record (thinned in the termination message when it does not fit).
    #[serde(default)]
    pub learning_curve: Vec<EpochRecord>,
}

/// Why a training run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureReason {
    /// Bad arguments or genotype.
    InvalidInput,
    /// Missing or malformed dataset.
    DataError,
    /// The device ran out of memory.
    OutOfMemory,
    /// The requested device (CUDA) is not available.
    DeviceUnavailable,
    /// The loss became NaN or infinite: the child diverged.
    Diverged,
    /// Stopped by SIGTERM or SIGINT (eviction, preemption, Ctrl-C) before it finished.
    Terminated,
    /// Anything else (a libtorch error, an I/O error writing outputs).
    Internal,
    /// Operator-side: the result document was missing, unreadable or untrustworthy.
    BadResult,
    /// Operator-side: the pod ran past `trial.activeDeadlineSeconds`.
    DeadlineExceeded,
    /// Operator-side: the child's latency probe failed.
    ProbeFailed,
    /// Operator-side: the pod was evicted, preempted or lost with its node too many times.
    Disrupted,
    /// Operator-side: the container image cannot be pulled (a bad image reference at once;
    /// `ErrImagePull`, `ImagePullBackOff` and the like past the pending deadline).
    ImagePullFailed,
    /// Operator-side: the container cannot be created (`CreateContainerConfigError`, e.g. a
    /// missing Secret key, or `CreateContainerError`) past the pending deadline.
    ContainerCreateFailed,
    /// Operator-side: the pod stayed Pending (unscheduled, or its container not started) past
    /// `trial.pendingDeadlineSeconds`.
    PendingTimeout,
}

impl FailureReason {
    /// The trainer's exit code for this failure: 2 bad input or data, 3 out of memory,
    /// 4 device unavailable, 5 diverged, 143 terminated (128 + SIGTERM, the shell convention),
    /// 1 otherwise (the operator-side reasons never come from an exit code).
    pub const fn exit_code(self) -> u8 {
        match self {
            Self::InvalidInput | Self::DataError => 2,
            Self::OutOfMemory => 3,
            Self::DeviceUnavailable => 4,
            Self::Diverged => 5,
            Self::Terminated => 143,
            Self::Internal
            | Self::BadResult
            | Self::DeadlineExceeded
            | Self::ProbeFailed
            | Self::Disrupted
            | Self::ImagePullFailed
            | Self::ContainerCreateFailed
            | Self::PendingTimeout => 1,
        }
    }

    /// The reason an exit code stands for (`None` for 0 and unknown codes).
    pub const fn from_exit_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(Self::Internal),
            2 => Some(Self::InvalidInput),
            3 => Some(Self::OutOfMemory),
            4 => Some(Self::DeviceUnavailable),
            5 => Some(Self::Diverged),
            143 => Some(Self::Terminated),
            _ => None,
        }
    }

    /// Whether running the same trial again (elsewhere, later) may succeed: out of memory,
    /// device unavailable and internal errors; bad input, bad data and divergence repeat.
    pub const fn retryable(self) -> bool {
        matches!(
            self,
            Self::OutOfMemory | Self::DeviceUnavailable | Self::Internal
        )
    }

    /// Every reason, in declaration order.
    pub const ALL: [Self; 14] = [
        Self::InvalidInput,
        Self::DataError,
        Self::OutOfMemory,
        Self::DeviceUnavailable,
        Self::Diverged,
        Self::Terminated,
        Self::Internal,
        Self::BadResult,
        Self::DeadlineExceeded,
        Self::ProbeFailed,
        Self::Disrupted,
        Self::ImagePullFailed,
        Self::ContainerCreateFailed,
        Self::PendingTimeout,
    ];

    /// The CamelCase name (as serialized, and as a trial's `status.reason`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::InvalidInput => "InvalidInput",
            Self::DataError => "DataError",
            Self::OutOfMemory => "OutOfMemory",
            Self::DeviceUnavailable => "DeviceUnavailable",
            Self::Diverged => "Diverged",
            Self::Terminated => "Terminated",
            Self::Internal => "Internal",
            Self::BadResult => "BadResult",
            Self::DeadlineExceeded => "DeadlineExceeded",
            Self::ProbeFailed => "ProbeFailed",
            Self::Disrupted => "Disrupted",
            Self::ImagePullFailed => "ImagePullFailed",
            Self::ContainerCreateFailed => "ContainerCreateFailed",
            Self::PendingTimeout => "PendingTimeout",
        }
    }

    /// The reason named `name` (see [`Self::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// A failed training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainFailure {
    /// Category.
    pub reason: FailureReason,
    /// Human-readable detail (at most [`MAX_MESSAGE_CHARS`] in the termination message).
    pub message: String,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome")]
pub enum TrainOutcome {
    /// Trained and evaluated.
    Succeeded(TrainReport),
    /// Failed before producing a result.
    Failed(TrainFailure),
}

/// The result document: schema identifier and outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainResult {
    /// Always [`TRAIN_RESULT_SCHEMA`].
    pub schema: String,
    /// The outcome and its fields.
    #[serde(flatten)]
    pub outcome: TrainOutcome,
}

/// A result document that cannot be trusted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResultError {
    /// Not JSON of the result's shape.
    #[error("result is not a valid {TRAIN_RESULT_SCHEMA} document: {0}")]
    Malformed(String),
    /// Another schema version.
    #[error("result schema is {found:?}; expected {TRAIN_RESULT_SCHEMA:?}")]
    Schema {
        /// The schema found.
        found: String,
    },
    /// A metric is NaN, infinite or out of its range.
    #[error("result field {field} is {value}; allowed: {allowed}")]
    Value {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// The allowed range.
        allowed: &'static str,
    },
}

impl TrainResult {
    /// A success document.
    pub fn succeeded(report: TrainReport) -> Self {
        Self {
            schema: TRAIN_RESULT_SCHEMA.into(),
            outcome: TrainOutcome::Succeeded(report),
        }
    }

    /// A failure document.
    pub fn failed(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            schema: TRAIN_RESULT_SCHEMA.into(),
            outcome: TrainOutcome::Failed(TrainFailure {
                reason,
                message: message.into(),
            }),
        }
    }

    /// Parses and checks a result: the schema, that accuracies (the learning curve's too) are
    /// in `[0, 1]`, every other metric is finite and non-negative, and `epochs` fits an int32.
    ///
    /// # Errors
    /// [`ResultError`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, ResultError> {
        let result: Self =
            serde_json::from_str(text).map_err(|e| ResultError::Malformed(e.to_string()))?;
        if result.schema != TRAIN_RESULT_SCHEMA {
            return Err(ResultError::Schema {
                found: result.schema,
            });
        }
        if let TrainOutcome::Succeeded(r) = &result.outcome {
            let fraction = |field, v: f64| {
                if (0.0..=1.0).contains(&v) {
                    Ok(())
                } else {
                    Err(ResultError::Value {
                        field,
                        value: v.to_string(),
                        allowed: "a fraction in [0, 1]",
                    })
                }
            };
            fraction("validationAccuracy", r.validation_accuracy)?;
            if let Some(t) = r.test_accuracy {
                fraction("testAccuracy", t)?;
            }
            let non_negative = |field, v: f64| {
                if v.is_finite() && v >= 0.0 {
                    Ok(())
                } else {
                    Err(ResultError::Value {
                        field,
                        value: v.to_string(),
                        allowed: "a finite number >= 0",
                    })
                }
            };
            for (field, v) in [
                ("validationLoss", r.validation_loss),
                ("finalTrainLoss", r.final_train_loss),
                ("wallSeconds", r.wall_seconds),
                ("trainSeconds", r.train_seconds),
                ("samplesPerSecond", r.samples_per_second),
            ] {
                non_negative(field, v)?;
            }
            for (field, v) in [("params", r.params), ("macs", r.macs)] {
                if v < 0 {
                    return Err(ResultError::Value {
                        field,
                        value: v.to_string(),
                        allowed: "an integer >= 0",
                    });
                }
            }
            // The operator's status keeps epochs as a Kubernetes int32.
            if r.epochs > i32::MAX as u32 {
                return Err(ResultError::Value {
                    field: "epochs",
                    value: r.epochs.to_string(),
                    allowed: "an integer in [0, 2147483647]",
                });
            }
            for e in &r.learning_curve {
                fraction("learningCurve[].validationAccuracy", e.validation_accuracy)?;
                fraction("learningCurve[].trainAccuracy", e.train_accuracy)?;
                non_negative("learningCurve[].trainLoss", e.train_loss)?;
                non_negative("learningCurve[].validationLoss", e.validation_loss)?;
            }
        }
        Ok(result)
    }

    /// The compact JSON for the termination message: at most
    /// [`TERMINATION_MESSAGE_MAX_BYTES`] bytes, so that the kubelet never cuts it into
    /// unparsable JSON. A long learning curve is thinned (every k-th epoch and the last one
    /// kept, k = 2, 4, 8, ...) and then dropped; a failure message is cut to
    /// [`MAX_MESSAGE_CHARS`] characters, and further when its UTF-8 bytes and JSON escapes
    /// still do not fit; an over-long `device` or `genotypeHash` string is cut last.
    pub fn termination_message(&self) -> String {
        let fits = |r: &Self| {
            let text = serde_json::to_string(r).expect("result serializes");
            (text.len() <= TERMINATION_MESSAGE_MAX_BYTES).then_some(text)
        };
        let mut result = self.clone();
        match &self.outcome {
            TrainOutcome::Failed(full) => fit_message(&mut result, &full.message, |r, m| {
                if let TrainOutcome::Failed(f) = &mut r.outcome {
                    f.message = m;
                }
            }),
            TrainOutcome::Succeeded(full) => {
                let mut step = 1usize;
                loop {
                    if let Some(text) = fits(&result) {
                        return text;
                    }
                    let TrainOutcome::Succeeded(r) = &mut result.outcome else {
                        unreachable!("a clone has the same outcome")
                    };
                    if r.learning_curve.is_empty() {
                        // Only a pathological device name or hash can still be too long.
                        r.device = cut_to(&full.device, 64);
                        r.genotype_hash = cut_to(&full.genotype_hash, 64);
                        return serde_json::to_string(&result).expect("result serializes");
                    }
                    if r.learning_curve.len() == 1 {
                        r.learning_curve.clear();
                    } else {
                        // Every step-th epoch back from the last; at step >= len the last only.
                        step = step.saturating_mul(2);
                        let last = full.learning_curve.len() - 1;
                        r.learning_curve = full
                            .learning_curve
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| (last - i) % step == 0)
                            .map(|(_, e)| e.clone())
                            .collect();
                    }
                }
            }
        }
    }
}

/// Schema identifier of the probe result JSON.
pub const PROBE_RESULT_SCHEMA: &str = "nasop.dev/probe-result/v1";

/// Library versions a probe ran with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions {
    /// nasop-trainer.
    pub nasop: String,
    /// libtorch (PyTorch's version string, e.g. `2.11.0+cu130`).
    pub libtorch: String,
}

/// A completed latency measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    /// Hash of the measured genotype.
    pub genotype_hash: String,
    /// Its search space.
    pub space: SpaceKind,
    /// Device measured on (`cpu`, `cuda:0`).
    pub device: String,
    /// Latency statistics over the timed runs, ms.
    pub latency: LatencySummary,
    /// Untimed runs before the timed ones.
    pub warmup: i32,
    /// Input `[N, C, H, W]` (N = 1: batch-1 latency, as MnasNet measures).
    pub input_shape: [i64; 4],
    /// CPU threads libtorch used.
    pub threads: i32,
    /// Whether weights and input were in channels-last (NHWC) memory order.
    pub channels_last: bool,
    /// Node, CPU model, GPU name.
    pub identity: DeviceIdentity,
    /// Library versions.
    pub versions: Versions,
    /// Trainable parameters of the network.
    pub params: i64,
    /// Multiply-adds of one inference of one example.
    pub macs: i64,
    /// Where the weights came from: `random` or the checkpoint path.
    pub weights: String,
}

/// How a probe ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome")]
pub enum ProbeOutcome {
    /// Measured.
    Succeeded(Box<ProbeReport>),
    /// Failed (same reasons and exit codes as training).
    Failed(TrainFailure),
}

/// The probe result document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Always [`PROBE_RESULT_SCHEMA`].
    pub schema: String,
    /// The outcome and its fields.
    #[serde(flatten)]
    pub outcome: ProbeOutcome,
}

impl ProbeResult {
    /// A success document.
    pub fn succeeded(report: ProbeReport) -> Self {
        Self {
            schema: PROBE_RESULT_SCHEMA.into(),
            outcome: ProbeOutcome::Succeeded(Box::new(report)),
        }
    }

    /// A failure document (the message cut to [`MAX_MESSAGE_CHARS`]).
    pub fn failed(reason: FailureReason, message: impl Into<String>) -> Self {
        let message = cut_message(&message.into());
        Self {
            schema: PROBE_RESULT_SCHEMA.into(),
            outcome: ProbeOutcome::Failed(TrainFailure { reason, message }),
        }
    }

    /// The compact JSON for the termination message: a failure message is cut until the
    /// JSON fits in [`TERMINATION_MESSAGE_MAX_BYTES`] bytes (see
    /// [`TrainResult::termination_message`]); a success report is a few hundred bytes.
    pub fn termination_message(&self) -> String {
        let mut result = self.clone();
        match &self.outcome {
            ProbeOutcome::Failed(full) => fit_message(&mut result, &full.message, |r, m| {
                if let ProbeOutcome::Failed(f) = &mut r.outcome {
                    f.message = m;
                }
            }),
            ProbeOutcome::Succeeded(_) => {
                serde_json::to_string(&result).expect("result serializes")
            }
        }
    }

    /// Parses and checks a probe result: the schema, and positive finite latencies with
    /// min <= median <= p90.
    ///
    /// # Errors
    /// [`ResultError`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, ResultError> {
        let result: Self =
            serde_json::from_str(text).map_err(|e| ResultError::Malformed(e.to_string()))?;
        if result.schema != PROBE_RESULT_SCHEMA {
            return Err(ResultError::Schema {
                found: result.schema,
            });
        }
        if let ProbeOutcome::Succeeded(r) = &result.outcome {
            let l = &r.latency;
            for (field, v) in [
                ("latency.medianMs", l.median_ms),
                ("latency.p90Ms", l.p90_ms),
                ("latency.meanMs", l.mean_ms),
                ("latency.minMs", l.min_ms),
            ] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(ResultError::Value {
                        field,
                        value: v.to_string(),
                        allowed: "a positive number of ms",
                    });
                }
            }
            if !(l.min_ms <= l.median_ms && l.median_ms <= l.p90_ms) || l.repeats < 1 {
                return Err(ResultError::Value {
                    field: "latency",
                    value: format!("{l:?}"),
                    allowed: "minMs <= medianMs <= p90Ms and repeats >= 1",
                });
            }
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(epochs: u32) -> TrainReport {
        TrainReport {
            genotype_hash: "af327c6e56e7e0c8".into(),
            space: SpaceKind::Nb201,
            device: "cpu".into(),
            seed: 7,
            params: 1_073_466,
            macs: 153_272_960,
            validation_accuracy: 0.5,
            validation_loss: 1.4,
            test_accuracy: None,
            final_train_loss: 1.2,
            epochs,
            steps: 100,
            batch_size: 64,
            train_examples: 6400,
            validation_examples: 640,
            wall_seconds: 10.0,
            train_seconds: 9.0,
            samples_per_second: 711.1,
            learning_curve: (1..=epochs)
                .map(|e| EpochRecord {
                    epoch: e,
                    train_loss: 2.0 / f64::from(e),
                    train_accuracy: 0.1234567,
                    validation_loss: 1.9876543,
                    validation_accuracy: 0.4567891,
                    learning_rate: 0.0123456,
                    seconds: 12.345678 * f64::from(e),
                })
                .collect(),
        }
    }

    #[test]
    fn success_round_trips_with_schema_and_outcome() {
        let result = TrainResult::succeeded(report(3));
        let text = result.termination_message();
        assert!(
            text.starts_with(r#"{"schema":"nasop.dev/train-result/v1","outcome":"Succeeded""#),
            "{text}"
        );
        assert_eq!(TrainResult::parse(&text).unwrap(), result);
    }

    #[test]
    fn long_learning_curves_are_thinned_to_fit_and_keep_the_last_epoch() {
        let result = TrainResult::succeeded(report(600));
        let text = result.termination_message();
        assert!(
            text.len() <= TERMINATION_MESSAGE_MAX_BYTES,
            "{} bytes",
            text.len()
        );
        let TrainOutcome::Succeeded(r) = TrainResult::parse(&text).unwrap().outcome else {
            panic!()
        };
        assert!(!r.learning_curve.is_empty() && r.learning_curve.len() < 600);
        assert_eq!(r.learning_curve.last().unwrap().epoch, 600);
        // Kept entries are evenly spaced, counted back from the last epoch.
        let gaps: Vec<u32> = r
            .learning_curve
            .windows(2)
            .map(|w| w[1].epoch - w[0].epoch)
            .collect();
        assert!(gaps.windows(2).all(|g| g[0] == g[1]), "{gaps:?}");
    }

    #[test]
    fn failures_carry_reason_and_a_cut_message() {
        let result = TrainResult::failed(FailureReason::OutOfMemory, "x".repeat(10_000));
        let text = result.termination_message();
        assert!(text.len() < 1200);
        let parsed = TrainResult::parse(&text).unwrap();
        let TrainOutcome::Failed(f) = parsed.outcome else {
            panic!()
        };
        assert_eq!(f.reason, FailureReason::OutOfMemory);
        assert_eq!(f.message.chars().count(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn exit_codes_map_both_ways() {
        for reason in [
            FailureReason::InvalidInput,
            FailureReason::OutOfMemory,
            FailureReason::DeviceUnavailable,
            FailureReason::Diverged,
            FailureReason::Terminated,
            FailureReason::Internal,
        ] {
            assert_eq!(
                FailureReason::from_exit_code(i32::from(reason.exit_code())),
                Some(reason)
            );
        }
        assert_eq!(FailureReason::DataError.exit_code(), 2);
        assert_eq!(FailureReason::from_exit_code(0), None);
        assert!(FailureReason::OutOfMemory.retryable());
        assert!(!FailureReason::Diverged.retryable());
        for reason in FailureReason::ALL {
            assert_eq!(FailureReason::from_name(reason.name()), Some(reason));
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::json!(reason.name())
            );
        }
        assert_eq!(FailureReason::from_name("Evicted"), None);
    }

    #[test]
    fn untrustworthy_results_are_rejected_with_the_field() {
        let mut r = report(1);
        r.validation_accuracy = 1.5;
        let text = serde_json::to_string(&TrainResult::succeeded(r)).unwrap();
        assert!(matches!(
            TrainResult::parse(&text),
            Err(ResultError::Value {
                field: "validationAccuracy",
                ..
            })
        ));
        let text = text.replace("nasop.dev/train-result/v1", "nasop.dev/train-result/v9");
        assert!(matches!(
            TrainResult::parse(&text),
            Err(ResultError::Schema { .. })
        ));
        assert!(matches!(
            TrainResult::parse("{\"schema\":1"),
            Err(ResultError::Malformed(_))
        ));
        // NaN cannot be written in JSON; `null` for a number is malformed.
        let text = serde_json::to_string(&TrainResult::succeeded(report(1)))
            .unwrap()
            .replace("\"validationLoss\":1.4", "\"validationLoss\":null");
        assert!(matches!(
            TrainResult::parse(&text),
            Err(ResultError::Malformed(_))
        ));
    }
}

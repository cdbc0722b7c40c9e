//! Types, labels and condition vocabulary shared by the three resources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ImageVolumeSource, NFSVolumeSource, PersistentVolumeClaimVolumeSource,
    ResourceRequirements, Toleration,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::space::named_enum;

/// Label keys nasop puts on the objects it creates (DESIGN.md section 5), beside the standard
/// `app.kubernetes.io/*` labels (Kubernetes "Recommended Labels").
pub mod labels {
    /// Name of the owning `ArchitectureSearch`.
    pub const SEARCH: &str = "nasop.dev/search";
    /// Name of the owning `ChildTrial`.
    pub const TRIAL: &str = "nasop.dev/trial";
    /// [`crate::GenotypeHash`] of the child.
    pub const GENOTYPE_HASH: &str = "nasop.dev/genotype-hash";
    /// Device class of a latency probe.
    pub const DEVICE_CLASS: &str = "nasop.dev/device-class";
    /// What a latency probe measures (hash of its spec without the trial): probes with the
    /// same key share one measurement.
    pub const PROBE_KEY: &str = "nasop.dev/probe-key";
    /// Annotation on a `ChildTrial`: its genotype in the canonical text form
    /// (`nasop space check` reads it back), for `kubectl get ct -o custom-columns=...`.
    pub const GENOTYPE: &str = "nasop.dev/genotype";
    /// `app.kubernetes.io/name`: always `nasop`.
    pub const APP_NAME: &str = "app.kubernetes.io/name";
    /// `app.kubernetes.io/component`: `trainer` or `probe`.
    pub const APP_COMPONENT: &str = "app.kubernetes.io/component";
    /// `app.kubernetes.io/managed-by`: always `nasop-operator`.
    pub const APP_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// `app.kubernetes.io/part-of`: the search name.
    pub const APP_PART_OF: &str = "app.kubernetes.io/part-of";
}

/// Condition types and reasons (one vocabulary for all controllers; `../shared/STYLE.md`).
pub mod conditions {
    /// The search or trial has a result that users can read.
    pub const READY: &str = "Ready";
    /// Work is under way (trials running or being created).
    pub const PROGRESSING: &str = "Progressing";
    /// Something is wrong (invalid spec, repeated failures); the message says what.
    pub const DEGRADED: &str = "Degraded";

    /// Reason: the spec failed validation.
    pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
    /// Reason: `budget.maxTrials` trials finished.
    pub const REASON_MAX_TRIALS_REACHED: &str = "MaxTrialsReached";
    /// Reason: `budget.maxFailedTrials` was exceeded.
    pub const REASON_MAX_FAILED_TRIALS: &str = "MaxFailedTrialsExceeded";
    /// Reason: `budget.deadlineSeconds` or `budget.maxGpuHours` is spent.
    pub const REASON_BUDGET_SPENT: &str = "BudgetSpent";
    /// Reason: `spec.suspend` is true.
    pub const REASON_SUSPENDED: &str = "Suspended";
    /// Reason: trials are running.
    pub const REASON_TRIALS_RUNNING: &str = "TrialsRunning";
    /// Reason: the search space holds fewer new children than the budget asks for.
    pub const REASON_SPACE_EXHAUSTED: &str = "SearchSpaceExhausted";
}

/// CEL rule of `ChildTrial` and `LatencyProbe` specs: the genotype belongs to the search space
/// (both are one-key objects naming the space).
pub const GENOTYPE_IN_SPACE_RULE: &str = "has(self.genotype.nasnet) == has(self.searchSpace.nasnet) && has(self.genotype.mnasnet) == has(self.searchSpace.mnasnet) && has(self.genotype.nb201) == has(self.searchSpace.nb201)";

named_enum! {
    /// Format of a training dataset.
    pub enum DatasetFormat {
        /// CIFAR-10 binary batches (`cifar-10-batches-bin`: `data_batch_1.bin` ..
        /// `data_batch_5.bin`, `test_batch.bin`; Krizhevsky 2009).
        Cifar10 => "CIFAR10",
        /// Fashion-MNIST IDX files (`train-images-idx3-ubyte` etc.; Xiao et al. 2017).
        FashionMnist => "FashionMNIST",
        /// MNIST IDX files.
        Mnist => "MNIST",
        /// One folder per class of image files (`<path>/<class>/<image>`).
        ImageFolder => "ImageFolder",
    }
}

/// Where a trainer pod finds its dataset: exactly one volume source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DatasetVolume {
    /// An existing PersistentVolumeClaim (mounted read-only).
    PersistentVolumeClaim(PersistentVolumeClaimVolumeSource),
    /// A path on the node.
    HostPath(HostPathVolumeSource),
    /// An NFS export.
    Nfs(NFSVolumeSource),
    /// An OCI image or artifact holding the data (Kubernetes image volumes).
    Image(ImageVolumeSource),
}

/// The dataset a child is trained and validated on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSpec {
    /// File format.
    pub format: DatasetFormat,
    /// Directory holding the files: inside the pod (where `volume` is mounted) or, for
    /// `nasop run`, on the local machine (relative paths are relative to the manifest).
    #[schemars(length(min = 1))]
    pub path: String,
    /// Volume mounted read-only at `path` in trainer pods (none: the data is in the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<DatasetVolume>,
    /// Training examples used (first N of the training split; default: all but the validation
    /// examples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub train_examples: Option<i32>,
    /// Validation examples, held out from the end of the training split (default: the
    /// trainer's, 10% of the training split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub validation_examples: Option<i32>,
}

named_enum! {
    /// When the kubelet pulls an image (`Pod.spec.containers[].imagePullPolicy`).
    pub enum PullPolicy {
        /// Always pull.
        Always => "Always",
        /// Pull when the node lacks the image.
        IfNotPresent => "IfNotPresent",
        /// Never pull.
        Never => "Never",
    }
}

/// Where and how a pod runs: shared by trainer and probe pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Node labels the pod's node must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// CPU, memory and accelerator (`nvidia.com/gpu`) requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Metrics a trainer reports for a finished child.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrialMetrics {
    /// Validation accuracy after the last epoch, as a fraction in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Validation cross-entropy loss after the last epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Trainable parameters of the child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<i64>,
    /// Multiply-adds of one forward pass of one example.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macs: Option<i64>,
    /// Wall-clock training time, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_seconds: Option<f64>,
    /// Epochs trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<i32>,
    /// Validation accuracy after each epoch (fractions; at most 1000 entries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub learning_curve: Vec<f64>,
}

/// Batch-1 inference latency of a child on one device, milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencySummary {
    /// Median over the timed runs, ms.
    pub median_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Standard deviation, ms.
    pub stddev_ms: f64,
    /// Fastest run, ms.
    pub min_ms: f64,
    /// Timed runs (after warm-up).
    pub repeats: i32,
}

/// Identity of the device a probe ran on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceIdentity {
    /// Kubernetes node (or local host) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// CPU model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// GPU name, for CUDA probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_name: Option<String>,
}

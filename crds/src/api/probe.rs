//! `LatencyProbe`: one latency measurement of a child on a device class.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{DeviceIdentity, LatencySummary};
use super::search::ProbeTemplate;
use crate::space::{named_enum, Genotype, SearchSpaceSpec};

/// Measure the batch-1 inference latency of one child on one device class. Probes with the
/// same genotype hash and device class are cached: the operator measures a child once per
/// class. The spec is immutable.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "nasop.dev",
    version = "v1alpha1",
    kind = "LatencyProbe",
    namespaced,
    status = "LatencyProbeStatus",
    shortname = "lp",
    category = "nasop",
    doc = "One latency measurement of a child architecture on a device class of the device farm.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Device", type_ = "string", json_path = ".spec.deviceClass"),
    printcolumn(
        name = "Median (ms)",
        type_ = "number",
        json_path = ".status.latency.medianMs"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Node",
        type_ = "string",
        json_path = ".status.device.nodeName",
        priority = 1
    ),
    cel
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("LatencyProbe spec is immutable"))]
#[x_kube(validation = Rule::new(crate::api::GENOTYPE_IN_SPACE_RULE).message("genotype must belong to the space of searchSpace").field_path(".genotype"))]
pub struct LatencyProbeSpec {
    /// The search space (builds the network).
    pub search_space: SearchSpaceSpec,
    /// The child architecture.
    pub genotype: Genotype,
    /// Stable hash of the genotype (with `deviceClass`, the cache key).
    #[schemars(length(min = 16, max = 16))]
    pub genotype_hash: String,
    /// The device class measured on (a label value).
    #[schemars(
        length(min = 1, max = 63),
        pattern(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    )]
    pub device_class: String,
    /// The trial that asked for the measurement, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_name: Option<String>,
    /// Output classes of the network (its classifier width; 10 for CIFAR-10 and
    /// Fashion-MNIST).
    #[serde(default = "default_classes")]
    #[schemars(range(min = 1, max = 1000000))]
    pub classes: i32,
    /// Image, placement, repeats, warm-up, threads and input shape.
    #[serde(flatten)]
    pub settings: ProbeTemplate,
}

fn default_classes() -> i32 {
    10
}

named_enum! {
    /// Lifecycle of a probe.
    pub enum ProbePhase {
        /// Waiting for its turn on a device node.
        Pending => "Pending",
        /// Measuring.
        Running => "Running",
        /// Measured; `latency` is set.
        Succeeded => "Succeeded",
        /// Not measured: `reason` and `message` say why.
        Failed => "Failed",
    }
}

/// Observed state of a probe.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyProbeStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ProbePhase>,
    /// The measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
    /// Where it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceIdentity>,
    /// The probe pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Probe pods started (retries included).
    #[serde(default)]
    pub attempts: i32,
    /// Another probe of the same genotype and device class whose result was reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<String>,
    /// When measuring started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the probe reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Why the probe failed (a CamelCase reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Details of the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

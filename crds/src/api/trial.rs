//! `ChildTrial`: one child architecture to train.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{LatencySummary, TrialMetrics};
use super::search::{ObjectiveSpec, ProbeTemplate, TrialTemplate};
use crate::space::{named_enum, Genotype, SearchSpaceSpec};

// The parts copied from the search (`searchSpace`, `objective`, `trial`, `probe`) are held
// behind `Arc`s: they serialize as the values they point to (the schema and the JSON are those
// of the plain types), and a cache of many trials of one search can share one copy of each (the
// operator's does, see `nasop::runtime::TrialInterner`): about 1 KB less per cached trial,
// 20 MB at NASNet's 20,000 trials. (A plain comment: the docstring below is the CRD's
// description, which `kubectl explain` shows.)
/// One child of a search: its genotype and everything needed to train and reward it, copied
/// from the search so that the trial is self-describing. The spec is immutable.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "nasop.dev",
    version = "v1alpha1",
    kind = "ChildTrial",
    namespaced,
    status = "ChildTrialStatus",
    shortname = "ct",
    category = "nasop",
    doc = "One child architecture of an ArchitectureSearch: trained by a trainer pod, optionally measured by a LatencyProbe, and rewarded.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Accuracy",
        type_ = "number",
        json_path = ".status.metrics.accuracy"
    ),
    printcolumn(
        name = "Latency (ms)",
        type_ = "number",
        json_path = ".status.latency.medianMs"
    ),
    printcolumn(name = "Reward", type_ = "number", json_path = ".status.reward"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Search",
        type_ = "string",
        json_path = ".spec.searchName",
        priority = 1
    ),
    printcolumn(
        name = "Genotype",
        type_ = "string",
        json_path = ".spec.genotypeHash",
        priority = 1
    ),
    cel
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("ChildTrial spec is immutable"))]
#[x_kube(validation = Rule::new(crate::api::GENOTYPE_IN_SPACE_RULE).message("genotype must belong to the space of searchSpace").field_path(".genotype"))]
pub struct ChildTrialSpec {
    /// The owning search.
    #[schemars(length(min = 1, max = 253))]
    pub search_name: String,
    /// Position of the child in its search (0-based, in creation order).
    #[schemars(range(min = 0))]
    pub index: i64,
    /// The strategy's proposal this child answers (credits the reward to the right decisions).
    #[schemars(range(min = 0))]
    pub proposal_id: i64,
    /// The search space (copied from the search).
    pub search_space: Arc<SearchSpaceSpec>,
    /// The child architecture: exactly one of `nasnet`, `mnasnet`, `nb201`.
    pub genotype: Genotype,
    /// Stable hash of the genotype (the dedupe and probe-cache key).
    #[schemars(length(min = 16, max = 16))]
    pub genotype_hash: String,
    /// What the child is rewarded for (copied from the search).
    #[serde(default)]
    pub objective: Arc<ObjectiveSpec>,
    /// How the child is trained (copied from the search).
    pub trial: Arc<TrialTemplate>,
    /// How its latency is measured (copied from the search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Arc<ProbeTemplate>>,
}

named_enum! {
    /// Lifecycle of a child trial.
    pub enum TrialPhase {
        /// Created; the trainer pod is not running yet.
        Pending => "Pending",
        /// Training, or waiting for its latency probe.
        Running => "Running",
        /// Trained (and measured); `reward` is set.
        Succeeded => "Succeeded",
        /// No reward: `reason` and `message` say why.
        Failed => "Failed",
    }
}

/// Observed state of a child trial.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildTrialStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TrialPhase>,
    /// Trainer pods started (retries after preemption, eviction or node loss included).
    #[serde(default)]
    pub attempts: i32,
    /// Of `attempts`, those lost to eviction, preemption, node loss or pod deletion: they are
    /// retried and do not count against `trial.maxAttempts`.
    #[serde(default)]
    pub disruptions: i32,
    /// The current or last trainer pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The latency probe of this child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_name: Option<String>,
    /// When training started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the trial reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// What the trainer reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<TrialMetrics>,
    /// What the probe measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
    /// The reward derived from `metrics` and `latency` (recomputable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<f64>,
    /// Why the trial failed (a CamelCase reason).
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

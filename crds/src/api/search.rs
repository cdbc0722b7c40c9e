//! `ArchitectureSearch`: the resource users apply.

use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DatasetSpec, Placement, PullPolicy};
use crate::space::{named_enum, SearchSpaceSpec};

/// An architecture search: a controller policy samples children from `searchSpace`, each is
/// trained as a `ChildTrial` (and measured by a `LatencyProbe` when the objective has a latency
/// target), and the rewards update the policy until the budget is spent.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "nasop.dev",
    version = "v1alpha1",
    kind = "ArchitectureSearch",
    namespaced,
    status = "ArchitectureSearchStatus",
    shortname = "nas",
    shortname = "archsearch",
    category = "nasop",
    doc = "A neural architecture search: a controller samples child architectures from a search space, trains each as a ChildTrial, and learns from their rewards until the budget is spent.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Trials",
        type_ = "string",
        json_path = ".status.progress",
        description = "Succeeded trials / maxTrials"
    ),
    printcolumn(
        name = "Best Reward",
        type_ = "number",
        json_path = ".status.best.reward"
    ),
    printcolumn(
        name = "Best Acc",
        type_ = "number",
        json_path = ".status.best.accuracy"
    ),
    printcolumn(
        name = "Best Latency (ms)",
        type_ = "number",
        json_path = ".status.best.latencyMs"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Strategy",
        type_ = "string",
        json_path = ".spec.strategy.algorithm",
        priority = 1
    ),
    validation = Rule::new("self.metadata.name.size() <= 56").message("metadata.name must be at most 56 characters: trial names are <name>-<up to 6 digits>, and a trial name is a label value (at most 63 characters)"),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct ArchitectureSearchSpec {
    /// The search space and its parameters: exactly one of `nasnet`, `mnasnet`, `nb201`.
    /// Immutable (the policy's decisions are tied to it).
    #[x_kube(validation = Rule::new("self == oldSelf").message("searchSpace is immutable: the policy state is tied to it; create a new ArchitectureSearch instead"))]
    pub search_space: SearchSpaceSpec,
    /// How children are proposed.
    pub strategy: StrategySpec,
    /// What a child is rewarded for.
    #[serde(default)]
    pub objective: ObjectiveSpec,
    /// How many children, how many at once, and when to stop.
    pub budget: BudgetSpec,
    /// How each child is trained (the trainer pod).
    pub trial: TrialTemplate,
    /// How latency is measured (the probe pod); used when `objective.latency` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeTemplate>,
    /// While true, no new trials start; running ones finish (as `Job.spec.suspend`).
    #[serde(default)]
    pub suspend: bool,
}

named_enum! {
    /// The search strategy.
    pub enum Algorithm {
        /// NASNet's controller: an LSTM policy trained with PPO (1707.07012 App. A).
        Ppo => "PPO",
        /// The same controller trained with REINFORCE (Zoph & Le 2017).
        Reinforce => "REINFORCE",
        /// Regularized (aging) evolution (Real et al. 2019, arXiv 1802.01548).
        Evolution => "Evolution",
        /// Uniform random sampling.
        Random => "Random",
    }
}

/// How children are proposed.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.controller) || self.algorithm == 'PPO' || self.algorithm == 'REINFORCE'").message("strategy.controller applies only to algorithm PPO or REINFORCE").field_path(".controller"))]
#[x_kube(validation = Rule::new("!has(self.evolution) || self.algorithm == 'Evolution'").message("strategy.evolution applies only to algorithm Evolution").field_path(".evolution"))]
pub struct StrategySpec {
    /// The algorithm. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("strategy.algorithm is immutable"))]
    pub algorithm: Algorithm,
    /// Seed of every random choice of the search (default: from the search's UID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub seed: Option<i64>,
    /// Never propose a child whose genotype hash was already proposed in this search.
    #[serde(default = "yes")]
    pub dedupe: bool,
    /// Controller settings (PPO and REINFORCE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<ControllerSpec>,
    /// Evolution settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evolution: Option<EvolutionSpec>,
}

fn yes() -> bool {
    true
}

fn default_lstm_units() -> i32 {
    100
}
fn default_init_range() -> f64 {
    0.1
}
fn default_learning_rate() -> f64 {
    0.03
}
fn default_entropy_weight() -> f64 {
    0.05
}
fn default_baseline_decay() -> f64 {
    0.95
}
fn default_controller_batch() -> i32 {
    5
}
fn default_ppo_clip() -> f64 {
    0.1
}
fn default_update_epochs() -> i32 {
    4
}
fn default_replay_top() -> i32 {
    1
}

named_enum! {
    /// How a batch of rewards becomes the advantages of the policy update.
    #[derive(Default)]
    pub enum Advantage {
        /// Centered ranks within the batch, from -1 (worst) to +1 (best): robust to the
        /// reward's scale and to outliers such as children that do not learn at all
        /// (rank-based fitness shaping, Wierstra et al. 2014, JMLR 15 Sec. 3.1). The EMA
        /// baseline is still tracked and reported.
        #[default]
        BatchRank => "BatchRank",
        /// NASNet's: reward minus the EMA baseline, divided by the batch's reward spread.
        Baseline => "Baseline",
    }
}

/// The controller policy and its training. The structure is NASNet's (1707.07012 App. A);
/// the learning defaults are tuned for searches of hundreds of children (NASNet ran 20,000),
/// measured with `nasop bench-search` on NAS-Bench-201: learning rate 0.03 (paper 0.00035),
/// batches of 5 (paper 20), PPO clip 0.1 (paper 0.2), entropy weight 0.05 (paper 1e-5),
/// 4 PPO epochs, rank advantages, and the best child so far replayed in every update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControllerSpec {
    /// Hidden units of the one-layer LSTM (paper: 100).
    #[serde(default = "default_lstm_units")]
    #[schemars(range(min = 1, max = 4096))]
    pub lstm_units: i32,
    /// Weights start uniform in [-initRange, initRange] (paper: 0.1).
    #[serde(default = "default_init_range")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub init_range: f64,
    /// Adam learning rate (paper: 0.00035; default 0.03).
    #[serde(default = "default_learning_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub learning_rate: f64,
    /// Weight of the entropy bonus (paper: 1e-5; default 0.05, against advantages of about 1).
    #[serde(default = "default_entropy_weight")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub entropy_weight: f64,
    /// Decay of the exponential-moving-average reward baseline (paper: 0.95).
    #[serde(default = "default_baseline_decay")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub baseline_decay: f64,
    /// Completed children per policy update (paper: 20; default 5).
    #[serde(default = "default_controller_batch")]
    #[schemars(range(min = 1, max = 10000))]
    pub batch_size: i32,
    /// PPO clip range epsilon (paper: 0.2; default 0.1; ignored by REINFORCE).
    #[serde(default = "default_ppo_clip")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub ppo_clip: f64,
    /// PPO passes over each batch of results (REINFORCE makes one).
    #[serde(default = "default_update_epochs")]
    #[schemars(range(min = 1, max = 100))]
    pub update_epochs: i32,
    /// How rewards become advantages.
    #[serde(default)]
    pub advantage: Advantage,
    /// The best children so far replayed in every policy update (priority-queue training,
    /// Abolafia et al. 2018, arXiv 1801.03526; default 1, 0 for NASNet's plain updates).
    #[serde(default = "default_replay_top")]
    #[schemars(range(min = 0, max = 1000))]
    pub replay_top: i32,
}

impl Default for ControllerSpec {
    fn default() -> Self {
        Self {
            lstm_units: default_lstm_units(),
            init_range: default_init_range(),
            learning_rate: default_learning_rate(),
            entropy_weight: default_entropy_weight(),
            baseline_decay: default_baseline_decay(),
            batch_size: default_controller_batch(),
            ppo_clip: default_ppo_clip(),
            update_epochs: default_update_epochs(),
            advantage: Advantage::default(),
            replay_top: default_replay_top(),
        }
    }
}

fn default_population() -> i32 {
    20
}
fn default_sample() -> i32 {
    10
}

/// Regularized evolution settings (Real et al. 2019, who used P = 100, S = 25 for 20,000
/// children). Defaults P = 20, S = 10 are tuned for hundreds of children with `nasop
/// bench-search` on NAS-Bench-201.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.sampleSize <= self.populationSize").message("strategy.evolution.sampleSize must not exceed strategy.evolution.populationSize").field_path(".sampleSize"))]
pub struct EvolutionSpec {
    /// Population size P: the newest P children (default 20).
    #[serde(default = "default_population")]
    #[schemars(range(min = 2, max = 100000))]
    pub population_size: i32,
    /// Tournament size S: children drawn from the population to pick a parent (default 10).
    #[serde(default = "default_sample")]
    #[schemars(range(min = 1, max = 100000))]
    pub sample_size: i32,
}

impl Default for EvolutionSpec {
    fn default() -> Self {
        Self {
            population_size: default_population(),
            sample_size: default_sample(),
        }
    }
}

named_enum! {
    /// The quality metric of a child.
    #[derive(Default)]
    pub enum Metric {
        /// Accuracy on the held-out validation split (NASNet's reward).
        #[default]
        ValidationAccuracy => "ValidationAccuracy",
    }
}

/// What a child is rewarded for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectiveSpec {
    /// Quality metric (ACC in MnasNet's reward).
    #[serde(default)]
    pub metric: Metric,
    /// Latency objective: reward = ACC x (LAT / T)^w (1807.11626 Sec. 3, Eq. 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyObjective>,
}

named_enum! {
    /// Preset exponents of MnasNet's reward (1807.11626 Sec. 3).
    #[derive(Default)]
    pub enum LatencyConstraint {
        /// alpha = beta = -0.07: a smooth trade-off around T.
        #[default]
        Soft => "Soft",
        /// alpha = 0, beta = -1: no bonus below T, a steep penalty above.
        Hard => "Hard",
    }
}

/// MnasNet's latency objective: reward = ACC(m) x [LAT(m) / T]^w, w = alpha if LAT <= T,
/// else beta.
///
/// The CEL rule repeats the schema's minimum of `targetMs`: the API server's OpenAPI check
/// compares an integer value against a fractional minimum truncated to an integer (measured:
/// kube-apiserver 1.34 accepts `targetMs: 0` despite `minimum: 0.001`).
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.targetMs >= 0.001").message("objective.latency.targetMs must be at least 0.001 ms").field_path(".targetMs"))]
pub struct LatencyObjective {
    /// Target latency T, milliseconds (paper: 75 ms on a Pixel 1).
    #[schemars(range(min = 0.001, max = 1000000.0))]
    pub target_ms: f64,
    /// Preset exponents (default Soft).
    #[serde(default)]
    pub constraint: LatencyConstraint,
    /// Exponent when LAT <= T (overrides the preset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -10.0, max = 0.0))]
    pub alpha: Option<f64>,
    /// Exponent when LAT > T (overrides the preset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -10.0, max = 0.0))]
    pub beta: Option<f64>,
    /// The device class to measure on (a node class of the device farm; `probe` says where
    /// its nodes are). A label value: letters, digits, `-`, `_`, `.`, starting and ending
    /// alphanumeric.
    #[schemars(
        length(min = 1, max = 63),
        pattern(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    )]
    pub device_class: String,
}

fn default_parallelism() -> i32 {
    1
}

/// How many children, how many at once, and when to stop.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.parallelism <= self.maxTrials").message("budget.parallelism must not exceed budget.maxTrials").field_path(".parallelism"))]
#[x_kube(validation = Rule::new("!has(self.maxFailedTrials) || self.maxFailedTrials <= self.maxTrials").message("budget.maxFailedTrials must not exceed budget.maxTrials").field_path(".maxFailedTrials"))]
#[x_kube(validation = Rule::new("!has(self.maxGpuHours) || self.maxGpuHours >= 0.001").message("budget.maxGpuHours must be at least 0.001").field_path(".maxGpuHours"))]
pub struct BudgetSpec {
    /// Children to train in total (NASNet: 20,000; MnasNet: ~8,000).
    #[schemars(range(min = 1, max = 1000000))]
    pub max_trials: i32,
    /// Children trained at once (NASNet: 450).
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 10000))]
    pub parallelism: i32,
    /// Failed children after which the search fails (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_failed_trials: Option<i32>,
    /// GPU-hours after which no new child starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001))]
    pub max_gpu_hours: Option<f64>,
    /// Seconds after the search starts after which no new child starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub deadline_seconds: Option<i64>,
}

fn default_epochs() -> i32 {
    10
}
fn default_batch_size() -> i32 {
    64
}
fn default_max_attempts() -> i32 {
    3
}

/// How each child is trained: the trainer pod (`nasop-trainer train`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrialTemplate {
    /// Trainer image (runs `nasop-trainer`).
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Extra arguments appended to `nasop-trainer train`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Node selector, tolerations and resources (e.g. `nvidia.com/gpu: 1`).
    #[serde(flatten)]
    pub placement: Placement,
    /// The dataset.
    pub dataset: DatasetSpec,
    /// Training epochs per child.
    #[serde(default = "default_epochs")]
    #[schemars(range(min = 1, max = 10000))]
    pub epochs: i32,
    /// Minibatch size.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 65536))]
    pub batch_size: i32,
    /// Initial learning rate (default: the trainer's for the space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub learning_rate: Option<f64>,
    /// Seconds a trainer pod may run before it is stopped and the attempt fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Seconds a trainer pod may stay Pending before the trial fails: unscheduled (counted
    /// from creation) or not started (from scheduling) past it, reason `PendingTimeout`; an
    /// image that cannot be pulled, reason `ImagePullFailed`, or a container that cannot be
    /// created, reason `ContainerCreateFailed`, past it (from scheduling). Unset: image and
    /// container errors fail after 600 s (twice the kubelet's longest image-pull back-off,
    /// 300 s, Kubernetes "Images" documentation) and scheduling waits without limit (pods
    /// waiting for a free GPU is how trials queue). A bad image reference fails at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub pending_deadline_seconds: Option<i64>,
    /// Attempts per child when pods are preempted, evicted or lost (not counted as failures).
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 20))]
    pub max_attempts: i32,
}

named_enum! {
    /// Where a probe runs the child.
    #[derive(Default)]
    pub enum ProbeDevice {
        /// The node's CPU (MnasNet measured on one phone CPU core).
        #[default]
        Cpu => "CPU",
        /// The node's first CUDA GPU (timed with device synchronization).
        Cuda => "CUDA",
    }
}

fn default_repeats() -> i32 {
    50
}
fn default_warmup() -> i32 {
    10
}
fn default_threads() -> i32 {
    1
}
fn default_per_node() -> i32 {
    1
}

/// How latency is measured: the probe pod (`nasop-trainer probe`) on the device farm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeTemplate {
    /// Probe image (default: the trial image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Node selector, tolerations and resources of the device class's nodes.
    #[serde(flatten)]
    pub placement: Placement,
    /// CPU or CUDA.
    #[serde(default)]
    pub device: ProbeDevice,
    /// Timed runs after warm-up.
    #[serde(default = "default_repeats")]
    #[schemars(range(min = 1, max = 100000))]
    pub repeats: i32,
    /// Untimed warm-up runs.
    #[serde(default = "default_warmup")]
    #[schemars(range(min = 0, max = 100000))]
    pub warmup: i32,
    /// CPU threads (MnasNet: 1).
    #[serde(default = "default_threads")]
    #[schemars(range(min = 1, max = 1024))]
    pub threads: i32,
    /// Input shape N, C, H, W (default: batch 1 and the dataset's image shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 4, max = 4), inner(range(min = 1, max = 65536)))]
    pub input_shape: Option<Vec<i32>>,
    /// Probes running at once on one node (latency is disturbed by neighbours).
    #[serde(default = "default_per_node")]
    #[schemars(range(min = 1, max = 64))]
    pub max_concurrent_per_node: i32,
}

impl Default for ProbeTemplate {
    fn default() -> Self {
        Self {
            image: None,
            placement: Placement::default(),
            device: ProbeDevice::default(),
            repeats: default_repeats(),
            warmup: default_warmup(),
            threads: default_threads(),
            input_shape: None,
            max_concurrent_per_node: default_per_node(),
        }
    }
}

named_enum! {
    /// Lifecycle of a search.
    pub enum SearchPhase {
        /// Accepted, no trial started yet.
        Pending => "Pending",
        /// Trials are being created and trained.
        Running => "Running",
        /// `spec.suspend` is true: no new trials.
        Suspended => "Suspended",
        /// The budget is spent; results are final.
        Succeeded => "Succeeded",
        /// Stopped by `maxFailedTrials` or an invalid spec.
        Failed => "Failed",
    }
}

/// Trials by phase.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrialCounts {
    /// Created, not yet running.
    pub pending: i32,
    /// Training or being measured.
    pub running: i32,
    /// Finished with a reward.
    pub succeeded: i32,
    /// Finished without a reward.
    pub failed: i32,
    /// All trials created so far.
    pub total: i32,
}

/// One child's outcome as shown in the search status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrialOutcome {
    /// The `ChildTrial`'s name.
    pub trial_name: String,
    /// Canonical genotype string.
    pub genotype: String,
    /// Genotype hash.
    pub genotype_hash: String,
    /// Validation accuracy, fraction in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Median latency, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Reward.
    pub reward: f64,
}

/// The controller policy's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// ConfigMap holding the policy state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Policy updates done.
    pub updates: i64,
    /// Completed trials fed to the strategy.
    pub trials_consumed: i64,
}

/// Observed state of a search.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchitectureSearchStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SearchPhase>,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Trials by phase.
    #[serde(default)]
    pub trials: TrialCounts,
    /// `succeeded/maxTrials`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// The child with the highest reward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<TrialOutcome>,
    /// Children not dominated in (accuracy up, latency down); at most 32, by reward.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub pareto_front: Vec<TrialOutcome>,
    /// Controller policy progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyStatus>,
    /// When the first trial was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the search reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

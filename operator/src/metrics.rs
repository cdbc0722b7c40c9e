//! The operator's Prometheus metrics (the `prometheus` crate), served as text at `/metrics`.
//!
//! Names follow `../shared/STYLE.md` and the Prometheus naming guide
//! (prometheus.io/docs/practices/naming): `nasop_` prefix, units in the name, `_total` on
//! counters. Label values are bounded: controller names, error categories, phases, device
//! classes, and the namespace and name of each search (one series per search and phase).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use prometheus::{
    exponential_buckets, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramTimer, HistogramVec,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of the operator, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// `nasop_reconciles_total{controller}`: reconciles started.
    pub reconciles: IntCounterVec,
    /// `nasop_reconcile_errors_total{controller,error}`: failed reconciles by error category.
    pub reconcile_errors: IntCounterVec,
    /// `nasop_reconcile_duration_seconds{controller}`: reconcile wall time, seconds.
    pub reconcile_duration: HistogramVec,
    /// `nasop_search_step_seconds{step}`: wall time of each step of a search reconcile,
    /// seconds: `read` (policy state and trials), `tell` (results told to the strategy, with
    /// its policy updates), `launch` (new children sampled), `save` (policy state written),
    /// `create` (ChildTrials created), `status` (status and Events).
    pub search_steps: HistogramVec,
    /// `nasop_trials{namespace,search,phase}`: trials of a search by phase.
    pub trials: IntGaugeVec,
    /// `nasop_best_reward{namespace,search}`: best reward so far.
    pub best_reward: GaugeVec,
    /// `nasop_best_accuracy{namespace,search}`: validation accuracy of the best child.
    pub best_accuracy: GaugeVec,
    /// `nasop_best_latency_ms{namespace,search}`: latency of the best child, ms.
    pub best_latency_ms: GaugeVec,
    /// `nasop_gpu_seconds{namespace,search}`: GPU-seconds of training consumed (training
    /// seconds times GPUs requested, over finished trials).
    pub gpu_seconds: GaugeVec,
    /// `nasop_trial_duration_seconds`: training wall time of finished trials, seconds.
    pub trial_duration: Histogram,
    /// `nasop_probe_latency_ms{device_class}`: measured median latencies, ms.
    pub probe_latency: HistogramVec,
    /// `nasop_policy_updates_total{namespace,search}`: controller policy updates.
    pub policy_updates: IntCounterVec,
    /// `nasop_policy_updates_behind{namespace,search}`: updates the results told allow that
    /// the background learner has not made yet (at the search's last reconcile).
    pub policy_behind: IntGaugeVec,
    /// `nasop_probes_pending{device_class}`: probes waiting for a device node.
    pub probes_pending: IntGaugeVec,
    /// `nasop_leader`: 1 while this replica holds the leader lease.
    pub leader: IntGauge,
    /// `nasop_api_requests_total{method}`: requests sent to the API server, by HTTP method
    /// (a watch counts once, when it starts).
    pub api_requests: IntCounterVec,
    /// `nasop_api_request_duration_seconds{method}`: time from sending a request to the API
    /// server until its response headers arrive, seconds, by HTTP method (watches excluded):
    /// the share of a reconcile's time that is the API server's (and the network's).
    pub api_request_duration: HistogramVec,
    pending_probes: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

/// The metric names the operator exports (the dashboard and tests check against this).
pub const NAMES: [&str; 17] = [
    "nasop_reconciles_total",
    "nasop_reconcile_errors_total",
    "nasop_reconcile_duration_seconds",
    "nasop_search_step_seconds",
    "nasop_trials",
    "nasop_best_reward",
    "nasop_best_accuracy",
    "nasop_best_latency_ms",
    "nasop_gpu_seconds",
    "nasop_trial_duration_seconds",
    "nasop_probe_latency_ms",
    "nasop_policy_updates_total",
    "nasop_policy_updates_behind",
    "nasop_probes_pending",
    "nasop_leader",
    "nasop_api_requests_total",
    "nasop_api_request_duration_seconds",
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    /// Never in practice: the names and labels are constants that register once.
    pub fn new() -> Self {
        let registry = Registry::new();
        let search = &["namespace", "search"];
        let reconciles = IntCounterVec::new(
            Opts::new(
                "nasop_reconciles_total",
                "Reconciles started, by controller.",
            ),
            &["controller"],
        )
        .unwrap();
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "nasop_reconcile_errors_total",
                "Failed reconciles, by controller and error category.",
            ),
            &["controller", "error"],
        )
        .unwrap();
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "nasop_reconcile_duration_seconds",
                "Reconcile wall time, seconds.",
            )
            .buckets(exponential_buckets(0.001, 2.0, 15).unwrap()),
            &["controller"],
        )
        .unwrap();
        let search_steps = HistogramVec::new(
            HistogramOpts::new(
                "nasop_search_step_seconds",
                "Wall time of each step of a search reconcile, seconds.",
            )
            .buckets(exponential_buckets(0.001, 2.0, 15).unwrap()),
            &["step"],
        )
        .unwrap();
        let trials = IntGaugeVec::new(
            Opts::new("nasop_trials", "Trials of a search, by phase."),
            &["namespace", "search", "phase"],
        )
        .unwrap();
        let best_reward = GaugeVec::new(
            Opts::new("nasop_best_reward", "Best reward of a search so far."),
            search,
        )
        .unwrap();
        let best_accuracy = GaugeVec::new(
            Opts::new(
                "nasop_best_accuracy",
                "Validation accuracy (fraction) of the best child of a search.",
            ),
            search,
        )
        .unwrap();
        let best_latency_ms = GaugeVec::new(
            Opts::new(
                "nasop_best_latency_ms",
                "Latency of the best child of a search, ms.",
            ),
            search,
        )
        .unwrap();
        let gpu_seconds = GaugeVec::new(
            Opts::new(
                "nasop_gpu_seconds",
                "GPU-seconds of training consumed by a search's finished trials.",
            ),
            search,
        )
        .unwrap();
        let trial_duration = Histogram::with_opts(
            HistogramOpts::new(
                "nasop_trial_duration_seconds",
                "Training wall time of finished trials, seconds.",
            )
            .buckets(exponential_buckets(10.0, 2.0, 14).unwrap()),
        )
        .unwrap();
        let probe_latency = HistogramVec::new(
            HistogramOpts::new(
                "nasop_probe_latency_ms",
                "Measured batch-1 median latency of children, ms.",
            )
            .buckets(exponential_buckets(0.05, 2.0, 18).unwrap()),
            &["device_class"],
        )
        .unwrap();
        let policy_updates = IntCounterVec::new(
            Opts::new(
                "nasop_policy_updates_total",
                "Controller policy updates of a search.",
            ),
            search,
        )
        .unwrap();
        let policy_behind = IntGaugeVec::new(
            Opts::new(
                "nasop_policy_updates_behind",
                "Policy updates a search's results allow that its learner has not made yet.",
            ),
            search,
        )
        .unwrap();
        let probes_pending = IntGaugeVec::new(
            Opts::new(
                "nasop_probes_pending",
                "Latency probes waiting for a device node, by device class.",
            ),
            &["device_class"],
        )
        .unwrap();
        let leader = IntGauge::new(
            "nasop_leader",
            "1 while this replica holds the leader lease, else 0.",
        )
        .unwrap();
        let api_requests = IntCounterVec::new(
            Opts::new(
                "nasop_api_requests_total",
                "Requests sent to the API server, by HTTP method (a watch counts once).",
            ),
            &["method"],
        )
        .unwrap();
        let api_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "nasop_api_request_duration_seconds",
                "Time until the API server's response headers, seconds, by HTTP method (watches excluded).",
            )
            .buckets(exponential_buckets(0.001, 2.0, 15).unwrap()),
            &["method"],
        )
        .unwrap();
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(api_requests.clone()),
            Box::new(api_request_duration.clone()),
            Box::new(reconcile_errors.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(search_steps.clone()),
            Box::new(trials.clone()),
            Box::new(best_reward.clone()),
            Box::new(best_accuracy.clone()),
            Box::new(best_latency_ms.clone()),
            Box::new(gpu_seconds.clone()),
            Box::new(trial_duration.clone()),
            Box::new(probe_latency.clone()),
            Box::new(policy_updates.clone()),
            Box::new(policy_behind.clone()),
            Box::new(probes_pending.clone()),
            Box::new(leader.clone()),
        ] {
            registry.register(c).unwrap();
        }
        Self {
            registry,
            api_requests,
            api_request_duration,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            search_steps,
            trials,
            best_reward,
            best_accuracy,
            best_latency_ms,
            gpu_seconds,
            trial_duration,
            probe_latency,
            policy_updates,
            policy_behind,
            probes_pending,
            leader,
            pending_probes: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts a reconcile of `controller` and times it until the returned timer drops.
    pub fn reconcile(&self, controller: &str) -> HistogramTimer {
        self.reconciles.with_label_values(&[controller]).inc();
        self.reconcile_duration
            .with_label_values(&[controller])
            .start_timer()
    }

    /// Times the steps of one search reconcile from now (see [`StepTimer`]).
    pub fn search_steps(&self) -> StepTimer<'_> {
        StepTimer {
            metric: &self.search_steps,
            last: std::time::Instant::now(),
        }
    }

    /// Records whether probe `key` of `device_class` waits for a device node; the
    /// `nasop_probes_pending` gauge is the size of each class's set.
    pub fn probe_pending(&self, device_class: &str, key: &str, pending: bool) {
        let mut sets = self
            .pending_probes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let set = sets.entry(device_class.to_string()).or_default();
        let changed = if pending {
            set.insert(key.to_string())
        } else {
            set.remove(key)
        };
        if changed {
            self.probes_pending
                .with_label_values(&[device_class])
                .set(set.len() as i64);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Times consecutive steps into `nasop_search_step_seconds`: each [`StepTimer::done`] observes
/// the time since the previous one (or since the timer was made).
pub struct StepTimer<'a> {
    metric: &'a HistogramVec,
    last: std::time::Instant,
}

impl StepTimer<'_> {
    /// Ends step `step` (a constant: `read`, `tell`, `launch`, `save`, `create`; `status`,
    /// which runs alongside `create`, is observed on its own).
    pub fn done(&mut self, step: &str) {
        let now = std::time::Instant::now();
        self.metric
            .with_label_values(&[step])
            .observe(now.duration_since(self.last).as_secs_f64());
        self.last = now;
    }
}

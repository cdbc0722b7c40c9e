//! The `ArchitectureSearch` status computed from the search core's summary. Pure: the
//! controller writes what this returns (server-side apply of the status subresource).
//!
//! Conditions follow the Kubernetes API conventions
//! (github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#typical-status-properties):
//! `lastTransitionTime` changes only when a condition's status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use nasop_crds::api::{
    ArchitectureSearchStatus, PolicyStatus, SearchPhase, TrialCounts, TrialOutcome,
};

use super::{Phase, Summary, Trial, TrialState};
use crate::strategy::{ProposalId, StrategyCounts};

/// Condition types of a search (one vocabulary, see STYLE.md).
pub mod condition {
    /// The budget is spent and the results are final.
    pub const READY: &str = "Ready";
    /// Trials are being created and trained.
    pub const PROGRESSING: &str = "Progressing";
    /// The search stopped on failures or an invalid spec.
    pub const DEGRADED: &str = "Degraded";
}

/// Reasons of the conditions.
pub mod reason {
    /// Trials are running.
    pub const TRIALS_RUNNING: &str = "TrialsRunning";
    /// `maxTrials` trials finished.
    pub const BUDGET_SPENT: &str = "BudgetSpent";
    /// More than `maxFailedTrials` failed.
    pub const TOO_MANY_FAILURES: &str = "TooManyFailedTrials";
    /// Every child of the space was tried.
    pub const SPACE_EXHAUSTED: &str = "SearchSpaceExhausted";
    /// Nothing is wrong.
    pub const HEALTHY: &str = "Healthy";
}

/// The most Pareto-front entries the status holds (the CRD's limit; keeps the status small
/// at any number of trials).
pub const MAX_PARETO: usize = 32;

/// The name of a search's trial for a proposal: `<search>-<id, 5 digits>`.
pub fn trial_name(search: &str, id: ProposalId) -> String {
    format!("{search}-{id:05}")
}

/// What the status needs besides the summary.
pub struct StatusInputs<'a> {
    /// The search's name.
    pub search: &'a str,
    /// `spec.budget.maxTrials`.
    pub max_trials: i32,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The strategy's counters.
    pub strategy: StrategyCounts,
    /// The policy ConfigMap's name.
    pub config_map: Option<String>,
    /// Now (condition transitions, completion time).
    pub now: Time,
}

/// The status of a search, given the previous one (for transition times and the start time).
pub fn search_status(
    previous: Option<&ArchitectureSearchStatus>,
    summary: &Summary,
    trials: &[&Trial],
    inputs: &StatusInputs,
) -> ArchitectureSearchStatus {
    let phase = match summary.phase {
        Phase::Running if summary.counts.started == 0 => SearchPhase::Pending,
        Phase::Running => SearchPhase::Running,
        Phase::Succeeded | Phase::Exhausted | Phase::Stopped => SearchPhase::Succeeded,
        Phase::Failed => SearchPhase::Failed,
    };
    let finished = matches!(phase, SearchPhase::Succeeded | SearchPhase::Failed);
    let (ready_reason, progressing_reason, degraded_reason) = match summary.phase {
        Phase::Running => (
            reason::TRIALS_RUNNING,
            reason::TRIALS_RUNNING,
            reason::HEALTHY,
        ),
        Phase::Succeeded | Phase::Stopped => {
            (reason::BUDGET_SPENT, reason::BUDGET_SPENT, reason::HEALTHY)
        }
        Phase::Exhausted => (
            reason::SPACE_EXHAUSTED,
            reason::SPACE_EXHAUSTED,
            reason::HEALTHY,
        ),
        Phase::Failed => (
            reason::TOO_MANY_FAILURES,
            reason::TOO_MANY_FAILURES,
            reason::TOO_MANY_FAILURES,
        ),
    };
    let c = summary.counts;
    let conditions = vec![
        condition_of(
            previous,
            condition::READY,
            phase == SearchPhase::Succeeded,
            ready_reason,
            &format!(
                "{} of {} trials finished",
                c.succeeded + c.failed,
                inputs.max_trials
            ),
            inputs,
        ),
        condition_of(
            previous,
            condition::PROGRESSING,
            !finished,
            progressing_reason,
            &format!("{} running", c.running),
            inputs,
        ),
        condition_of(
            previous,
            condition::DEGRADED,
            phase == SearchPhase::Failed,
            degraded_reason,
            &format!("{} trials failed", c.failed),
            inputs,
        ),
    ];
    let outcome = |t: &Trial| -> Option<TrialOutcome> {
        match &t.state {
            TrialState::Succeeded {
                metrics,
                latency_ms,
                reward,
            } => Some(TrialOutcome {
                trial_name: trial_name(inputs.search, t.id),
                genotype: t.genotype.clone(),
                genotype_hash: t.hash.clone(),
                accuracy: Some(metrics.validation_accuracy),
                latency_ms: *latency_ms,
                reward: *reward,
            }),
            _ => None,
        }
    };
    let mut pareto: Vec<TrialOutcome> = summary
        .pareto
        .iter()
        .filter_map(|id| trials.iter().find(|t| t.id == *id))
        .filter_map(|t| outcome(t))
        .collect();
    pareto.sort_by(|a, b| b.reward.total_cmp(&a.reward));
    pareto.truncate(MAX_PARETO);
    ArchitectureSearchStatus {
        phase: Some(phase),
        conditions,
        observed_generation: inputs.generation,
        trials: TrialCounts {
            pending: 0,
            running: c.running as i32,
            succeeded: c.succeeded as i32,
            failed: c.failed as i32,
            total: c.started as i32,
        },
        progress: Some(format!("{}/{}", c.succeeded, inputs.max_trials)),
        best: summary.best.first().and_then(outcome),
        pareto_front: pareto,
        policy: Some(PolicyStatus {
            config_map: inputs.config_map.clone(),
            updates: inputs.strategy.updates as i64,
            trials_consumed: (inputs.strategy.told + inputs.strategy.failed) as i64,
        }),
        start_time: previous
            .and_then(|p| p.start_time.clone())
            .or_else(|| (c.started > 0).then(|| inputs.now.clone())),
        completion_time: if finished {
            previous
                .and_then(|p| p.completion_time.clone())
                .or_else(|| Some(inputs.now.clone()))
        } else {
            None
        },
    }
}

/// A condition whose `lastTransitionTime` is kept from `previous` unless its status flips.
fn condition_of(
    previous: Option<&ArchitectureSearchStatus>,
    type_: &str,
    on: bool,
    reason: &str,
    message: &str,
    inputs: &StatusInputs,
) -> Condition {
    let status = if on { "True" } else { "False" };
    let last = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| inputs.now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: last,
        observed_generation: inputs.generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{summarize, Metrics};
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn trial(id: u64, acc: f64, latency: f64) -> Trial {
        Trial {
            id,
            genotype: format!("g{id}"),
            hash: format!("h{id}"),
            state: TrialState::Succeeded {
                metrics: Metrics {
                    validation_accuracy: acc,
                    test_accuracy: None,
                    params: 1,
                    macs: 1,
                    wall_seconds: 1.0,
                },
                latency_ms: Some(latency),
                reward: acc,
            },
        }
    }

    fn inputs(now: i64) -> StatusInputs<'static> {
        StatusInputs {
            search: "s",
            max_trials: 4,
            generation: Some(3),
            strategy: StrategyCounts {
                told: 3,
                updates: 1,
                ..StrategyCounts::default()
            },
            config_map: Some("s-policy".into()),
            now: at(now),
        }
    }

    #[test]
    fn a_running_search_reports_counts_best_and_its_front() {
        let mut trials = vec![trial(0, 0.9, 10.0), trial(1, 0.8, 5.0), trial(2, 0.7, 7.0)];
        trials.push(Trial {
            id: 3,
            genotype: "g3".into(),
            hash: "h3".into(),
            state: TrialState::Running,
        });
        let refs: Vec<&Trial> = trials.iter().collect();
        let summary = summarize(trials.iter(), 5, Phase::Running);
        let st = search_status(None, &summary, &refs, &inputs(100));
        assert_eq!(st.phase, Some(SearchPhase::Running));
        assert_eq!(
            (st.trials.running, st.trials.succeeded, st.trials.total),
            (1, 3, 4)
        );
        assert_eq!(st.progress.as_deref(), Some("3/4"));
        let best = st.best.unwrap();
        assert_eq!((best.trial_name.as_str(), best.reward), ("s-00000", 0.9));
        // (0.7, 7 ms) is dominated by (0.8, 5 ms).
        let front: Vec<&str> = st
            .pareto_front
            .iter()
            .map(|t| t.trial_name.as_str())
            .collect();
        assert_eq!(front, ["s-00000", "s-00001"]);
        let cond = |t: &str| st.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(cond(condition::PROGRESSING).status, "True");
        assert_eq!(cond(condition::READY).status, "False");
        assert_eq!(st.policy.unwrap().trials_consumed, 3);
        assert_eq!(st.start_time, Some(at(100)));
        assert_eq!(st.completion_time, None);
    }

    #[test]
    fn transition_times_change_only_when_a_condition_flips() {
        let trials = [trial(0, 0.9, 1.0)];
        let refs: Vec<&Trial> = trials.iter().collect();
        let running = summarize(trials.iter(), 1, Phase::Running);
        let first = search_status(None, &running, &refs, &inputs(100));
        let again = search_status(Some(&first), &running, &refs, &inputs(200));
        assert!(again
            .conditions
            .iter()
            .all(|c| c.last_transition_time == at(100)));
        let done = summarize(trials.iter(), 1, Phase::Succeeded);
        let last = search_status(Some(&again), &done, &refs, &inputs(300));
        let time = |t: &str| {
            last.conditions
                .iter()
                .find(|c| c.type_ == t)
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(time(condition::READY), at(300), "flipped to True");
        assert_eq!(time(condition::PROGRESSING), at(300), "flipped to False");
        assert_eq!(time(condition::DEGRADED), at(100), "still False");
        assert_eq!(last.phase, Some(SearchPhase::Succeeded));
        assert_eq!(last.completion_time, Some(at(300)));
        assert_eq!(last.start_time, Some(at(100)));
    }

    #[test]
    fn the_front_is_bounded_at_any_size() {
        // 100 trials on a strict trade-off line: all Pareto-optimal.
        let trials: Vec<Trial> = (0..100)
            .map(|i| trial(i, 0.5 + i as f64 * 0.004, 1.0 + i as f64))
            .collect();
        let refs: Vec<&Trial> = trials.iter().collect();
        let summary = summarize(trials.iter(), 1, Phase::Running);
        assert_eq!(summary.pareto.len(), 100);
        let st = search_status(None, &summary, &refs, &inputs(1));
        assert_eq!(st.pareto_front.len(), MAX_PARETO);
        assert_eq!(st.pareto_front[0].trial_name, "s-00099", "by reward");
        assert!(serde_json::to_string(&st).unwrap().len() < 64 * 1024);
    }
}

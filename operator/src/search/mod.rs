//! The search core both drivers share (the operator and `nasop run`): which children to start,
//! how a finished child becomes a reward for the strategy, the budget and failure accounting,
//! and the summary. Pure: the drivers run trainers and probes and feed results in.

use std::collections::BTreeMap;

use nasop_crds::api::{ArchitectureSearchSpec, LatencyObjective};
use nasop_crds::result::FailureReason;
use nasop_crds::reward::{pareto_front, reward};
use nasop_crds::SearchSpace;
use serde::{Deserialize, Serialize};

use crate::strategy::{self, Proposal, ProposalId, Strategy, StrategyError};

/// What training reported for a child (from the trainer's result document).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Validation accuracy, fraction in [0, 1] (NASNet's and MnasNet's ACC).
    pub validation_accuracy: f64,
    /// Test accuracy, fraction, when evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Trainable parameters.
    pub params: i64,
    /// Multiply-adds of one inference of one example.
    pub macs: i64,
    /// Wall seconds of training.
    pub wall_seconds: f64,
}

/// Where a trial stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "PascalCase")]
pub enum TrialState {
    /// Training (or being probed).
    Running,
    /// Trained (and probed): the reward was given to the strategy.
    Succeeded {
        /// Training's metrics.
        metrics: Metrics,
        /// Measured latency, ms (latency objectives).
        #[serde(default, rename = "latencyMs", skip_serializing_if = "Option::is_none")]
        latency_ms: Option<f64>,
        /// The reward.
        reward: f64,
    },
    /// Failed; the strategy was told it will give no reward.
    Failed {
        /// Why.
        reason: FailureReason,
        /// Details.
        message: String,
    },
}

/// One child of the search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trial {
    /// The strategy's proposal id (trial names and the state directory use it).
    pub id: ProposalId,
    /// Canonical genotype string.
    pub genotype: String,
    /// Genotype hash.
    pub hash: String,
    /// State.
    pub state: TrialState,
}

impl Trial {
    /// The reward, when succeeded.
    pub fn reward(&self) -> Option<f64> {
        match &self.state {
            TrialState::Succeeded { reward, .. } => Some(*reward),
            _ => None,
        }
    }
}

/// Where the search stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Trials are running or will start.
    Running,
    /// `maxTrials` trials finished.
    Succeeded,
    /// More than `maxFailedTrials` trials failed; no new trial starts.
    Failed,
    /// The space has no unproposed child left; every proposed child finished.
    Exhausted,
    /// Stopped early ([`Search::stop`]: deadline or GPU hours spent); every started child
    /// finished.
    Stopped,
}

/// Trial counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Trials started (any state).
    pub started: usize,
    /// Running now.
    pub running: usize,
    /// Succeeded.
    pub succeeded: usize,
    /// Failed.
    pub failed: usize,
}

impl Counts {
    /// The counts of `trials` (one pass, nothing sorted).
    pub fn of<'a>(trials: impl Iterator<Item = &'a Trial>) -> Self {
        let mut counts = Counts::default();
        for t in trials {
            counts.started += 1;
            *counts.of_state(&t.state) += 1;
        }
        counts
    }

    /// The count of trials in `state` (running, succeeded or failed).
    fn of_state(&mut self, state: &TrialState) -> &mut usize {
        match state {
            TrialState::Running => &mut self.running,
            TrialState::Succeeded { .. } => &mut self.succeeded,
            TrialState::Failed { .. } => &mut self.failed,
        }
    }
}

/// Why the core refused a result.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SearchError {
    /// No running trial has this id.
    #[error("trial {0} is not running")]
    NotRunning(ProposalId),
    /// A latency objective without a usable latency, or an accuracy that is not a fraction.
    #[error("trial {id}: {message}")]
    BadResult {
        /// The trial.
        id: ProposalId,
        /// What is wrong.
        message: String,
    },
    /// The strategy refused.
    #[error(transparent)]
    Strategy(#[from] StrategyError),
}

/// The search: budget, strategy and trials.
pub struct Search {
    max_trials: usize,
    parallelism: usize,
    max_failed: Option<usize>,
    latency: Option<LatencyObjective>,
    strategy: Box<dyn Strategy>,
    trials: BTreeMap<ProposalId, Trial>,
    counts: Counts,
    exhausted: bool,
    stopped: bool,
}

impl Search {
    /// A new search of `spec` over `space` (built from it), strategy seeded with the spec's
    /// seed or `seed`.
    ///
    /// # Errors
    /// The strategy's settings out of range.
    pub fn new(
        spec: &ArchitectureSearchSpec,
        space: &SearchSpace,
        seed: u64,
    ) -> Result<Self, StrategyError> {
        let strategy = strategy::build(space, &spec.strategy, seed)?;
        Ok(Self::with_strategy(spec, strategy))
    }

    /// A search of `spec` driven by `strategy` (new or restored), with no trial recorded yet:
    /// [`resume`] records those of a search resumed from a saved state.
    pub fn with_strategy(spec: &ArchitectureSearchSpec, strategy: Box<dyn Strategy>) -> Self {
        Self {
            counts: Counts::default(),
            max_trials: spec.budget.max_trials.max(0) as usize,
            parallelism: spec.budget.parallelism.max(1) as usize,
            max_failed: spec.budget.max_failed_trials.map(|m| m.max(0) as usize),
            latency: spec.objective.latency.clone(),
            strategy,
            trials: BTreeMap::new(),
            exhausted: false,
            stopped: false,
        }
    }

    /// The search as its strategy and its trials, to keep between reconciles (see
    /// [`Search::from_parts`]).
    pub fn into_parts(self) -> (Box<dyn Strategy>, TrialBook) {
        (
            self.strategy,
            TrialBook {
                trials: self.trials,
                counts: self.counts,
            },
        )
    }

    /// The search of `spec` with `strategy` and the trials `book` kept from an earlier
    /// [`Search::into_parts`] of the same search: as [`Search::with_strategy`] with those
    /// trials recorded, without going through them (O(1)). The budget is read from `spec`
    /// again; the search is neither stopped nor exhausted until `stop` or `launch` says so,
    /// as when rebuilt.
    pub fn from_parts(
        spec: &ArchitectureSearchSpec,
        strategy: Box<dyn Strategy>,
        book: TrialBook,
    ) -> Self {
        let mut search = Self::with_strategy(spec, strategy);
        search.trials = book.trials;
        search.counts = book.counts;
        search
    }

    /// Records `t` as the record of its id, inserted or replacing the one there; counts kept.
    fn put(&mut self, t: Trial) {
        *self.counts.of_state(&t.state) += 1;
        match self.trials.insert(t.id, t) {
            Some(old) => *self.counts.of_state(&old.state) -= 1,
            None => self.counts.started += 1,
        }
    }

    /// Counts of the trials (kept as trials change: O(1)).
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Where the search stands.
    pub fn phase(&self) -> Phase {
        let c = self.counts();
        if self.max_failed.is_some_and(|m| c.failed > m) {
            Phase::Failed
        } else if c.started >= self.max_trials && c.running == 0 {
            Phase::Succeeded
        } else if self.exhausted && c.running == 0 {
            Phase::Exhausted
        } else if self.stopped && c.running == 0 {
            Phase::Stopped
        } else {
            Phase::Running
        }
    }

    /// Starts no more children (a budget other than `maxTrials` is spent); the running ones
    /// finish and are recorded.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Children to start now: up to `parallelism` running, `maxTrials` started in all; none
    /// once the search failed. Each is recorded as running.
    pub fn launch(&mut self) -> Vec<Proposal> {
        let c = self.counts();
        if self.stopped
            || self.phase() != Phase::Running
            || self.max_failed.is_some_and(|m| c.failed > m)
        {
            return Vec::new();
        }
        // Proposals made count even when their record is gone (a ChildTrial deleted by hand):
        // the budget is never exceeded.
        let started = c.started.max(self.strategy.counts().proposed as usize);
        let room = self
            .parallelism
            .saturating_sub(c.running)
            .min(self.max_trials.saturating_sub(started));
        if room == 0 {
            return Vec::new();
        }
        let proposals = self.strategy.ask(room);
        if proposals.len() < room {
            self.exhausted = true;
        }
        for p in &proposals {
            self.start(p);
        }
        proposals
    }

    /// Records `p` as a running trial (its id not recorded yet).
    fn start(&mut self, p: &Proposal) {
        self.counts.started += 1;
        self.counts.running += 1;
        self.trials.insert(
            p.id,
            Trial {
                id: p.id,
                genotype: p.genotype.to_string(),
                hash: p.genotype.hash().as_str().to_string(),
                state: TrialState::Running,
            },
        );
    }

    /// Records a trained (and, with a latency objective, probed) child: computes its reward
    /// and gives it to the strategy. Returns the reward.
    ///
    /// # Errors
    /// [`SearchError::NotRunning`]; [`SearchError::BadResult`] for an accuracy outside [0, 1]
    /// or a missing/invalid latency under a latency objective (record it as failed instead).
    pub fn succeed(
        &mut self,
        id: ProposalId,
        metrics: Metrics,
        latency_ms: Option<f64>,
    ) -> Result<f64, SearchError> {
        self.running(id)?;
        let r = self
            .check_result(&metrics, latency_ms)
            .map_err(|message| SearchError::BadResult { id, message })?;
        self.strategy.tell(id, r)?;
        self.counts.running -= 1;
        self.counts.succeeded += 1;
        let t = self.trials.get_mut(&id).expect("checked running");
        t.state = TrialState::Succeeded {
            metrics,
            latency_ms,
            reward: r,
        };
        Ok(r)
    }

    /// The reward a result would get, or why it would be refused (see [`Self::succeed`]).
    ///
    /// # Errors
    /// The reason, for an accuracy outside [0, 1] or a missing/invalid latency under a
    /// latency objective.
    pub fn check_result(&self, metrics: &Metrics, latency_ms: Option<f64>) -> Result<f64, String> {
        let acc = metrics.validation_accuracy;
        if !(0.0..=1.0).contains(&acc) {
            return Err(format!(
                "validation accuracy {acc} is not a fraction in [0, 1]"
            ));
        }
        reward(self.latency.as_ref(), acc, latency_ms).ok_or_else(|| {
            format!(
                "latency {latency_ms:?} ms is not a positive number (the latency objective needs one)"
            )
        })
    }

    /// Records a failed child; it counts against `maxFailedTrials`.
    ///
    /// # Errors
    /// [`SearchError::NotRunning`].
    pub fn fail(
        &mut self,
        id: ProposalId,
        reason: FailureReason,
        message: String,
    ) -> Result<(), SearchError> {
        self.running(id)?;
        self.strategy.fail(id)?;
        self.counts.running -= 1;
        self.counts.failed += 1;
        self.trials.get_mut(&id).expect("checked running").state =
            TrialState::Failed { reason, message };
        Ok(())
    }

    fn running(&self, id: ProposalId) -> Result<(), SearchError> {
        match self.trials.get(&id) {
            Some(Trial {
                state: TrialState::Running,
                ..
            }) => Ok(()),
            _ => Err(SearchError::NotRunning(id)),
        }
    }

    /// The trials, by id.
    pub fn trials(&self) -> impl Iterator<Item = &Trial> {
        self.trials.values()
    }

    /// The strategy (to save its state).
    pub fn strategy(&self) -> &dyn Strategy {
        self.strategy.as_ref()
    }

    /// The strategy, to change (mark a checkpoint when its state is stored).
    pub fn strategy_mut(&mut self) -> &mut dyn Strategy {
        self.strategy.as_mut()
    }

    /// Whether a latency objective is set.
    pub fn latency_objective(&self) -> Option<&LatencyObjective> {
        self.latency.as_ref()
    }

    /// The summary: counts, the best `top` trials by reward, and the Pareto front of
    /// (validation accuracy, latency) when latency was measured.
    pub fn summary(&self, top: usize) -> Summary {
        summarize(self.trials.values(), top, self.phase())
    }
}

/// The trials of a [`Search`] and their counts, kept apart from its strategy between
/// reconciles (see [`Search::into_parts`]).
pub struct TrialBook {
    trials: BTreeMap<ProposalId, Trial>,
    counts: Counts,
}

/// A search rebuilt from its saved strategy and the trials recorded outside it (the
/// `trials.jsonl` of `nasop run`, the ChildTrials of the operator).
pub struct Resumed {
    /// The search, every recorded result consumed exactly once.
    pub search: Search,
    /// Results the strategy had not seen and was given now, by id.
    pub told: Vec<ProposalId>,
    /// Proposals the strategy waits for that no record holds (the driver was stopped between
    /// saving the state and starting them): running in `search`; start them.
    pub missing: Vec<Proposal>,
    /// Recorded running trials the strategy does not wait for (never the case with the write
    /// order "save the state, then start"); left out of `search`.
    pub unknown: Vec<ProposalId>,
}

/// Resumes a search: the recorded trials whose proposals the strategy still waits for and
/// that finished are told now, in id order (a refused result is recorded as
/// [`FailureReason::BadResult`]); the others are taken as they are.
///
/// `recorded` is consumed as it is read (the operator passes an iterator over its cached
/// ChildTrials): no list of all the trials is built besides the search's own map.
///
/// # Errors
/// [`SearchError::Strategy`] when a pending proposal's decisions do not decode in `space`
/// (a state of another space).
pub fn resume(
    spec: &ArchitectureSearchSpec,
    space: &SearchSpace,
    strategy: Box<dyn Strategy>,
    recorded: impl IntoIterator<Item = Trial>,
) -> Result<Resumed, SearchError> {
    update(Search::with_strategy(spec, strategy), space, recorded, None)
}

/// Brings `search`, resumed earlier ([`resume`]) and since then only driven by this process,
/// up to date with the records that changed since: a record is taken as [`resume`] takes it
/// (a result the strategy waits for is told, in id order; a running trial it does not wait
/// for is left out; any other replaces the record of its id). The cost is that of `changed`,
/// not of all the trials.
///
/// `seen` says whether a proposal has a record outside the search (a ChildTrial): a pending
/// proposal without one is `missing` (to start), whether or not `search` holds it as running
/// already. Records removed outside the search are not noticed: [`resume`] again then.
///
/// # Errors
/// As [`resume`].
pub fn absorb(
    search: Search,
    space: &SearchSpace,
    changed: impl IntoIterator<Item = Trial>,
    seen: &dyn Fn(ProposalId) -> bool,
) -> Result<Resumed, SearchError> {
    update(search, space, changed, Some(seen))
}

/// [`resume`] (`seen`: `None`, the search holds no trial) and [`absorb`].
fn update(
    mut search: Search,
    space: &SearchSpace,
    recorded: impl IntoIterator<Item = Trial>,
    seen: Option<&dyn Fn(ProposalId) -> bool>,
) -> Result<Resumed, SearchError> {
    let pending: std::collections::BTreeSet<ProposalId> =
        search.strategy.pending().into_iter().collect();
    let mut replay = Vec::new();
    let mut unknown = Vec::new();
    for t in recorded {
        if pending.contains(&t.id) && t.state != TrialState::Running {
            replay.push(t.clone());
            search.put(Trial {
                state: TrialState::Running,
                ..t
            });
        } else if t.state == TrialState::Running && !pending.contains(&t.id) {
            unknown.push(t.id);
        } else {
            search.put(t);
        }
    }
    let mut missing = Vec::new();
    let mut start = Vec::new();
    for (id, p) in &search.strategy.core().pending {
        let held = search.trials.contains_key(id);
        if seen.map_or(held, |seen| seen(*id)) {
            continue;
        }
        let genotype = space
            .decode(&p.decisions)
            .map_err(|e| StrategyError::State(format!("pending proposal {id}: {e}")))?;
        let proposal = Proposal {
            id: *id,
            genotype,
            decisions: p.decisions.clone(),
            log_prob: p.log_prob,
        };
        if !held {
            start.push(missing.len());
        }
        missing.push(proposal);
    }
    for i in start {
        search.start(&missing[i]);
    }
    replay.sort_by_key(|t| t.id);
    let mut told = Vec::with_capacity(replay.len());
    for t in replay {
        match t.state {
            TrialState::Succeeded {
                metrics,
                latency_ms,
                ..
            } => match search.succeed(t.id, metrics, latency_ms) {
                Err(SearchError::BadResult { message, .. }) => {
                    search.fail(t.id, FailureReason::BadResult, message)?
                }
                other => {
                    other?;
                }
            },
            TrialState::Failed { reason, message } => search.fail(t.id, reason, message)?,
            TrialState::Running => continue,
        }
        told.push(t.id);
    }
    Ok(Resumed {
        search,
        told,
        missing,
        unknown,
    })
}

/// The summary of `trials` (see [`Search::summary`]), with the given phase.
pub fn summarize<'a>(trials: impl Iterator<Item = &'a Trial>, top: usize, phase: Phase) -> Summary {
    let trials: Vec<&Trial> = trials.collect();
    let counts = Counts::of(trials.iter().copied());
    let mut done: Vec<&Trial> = trials
        .iter()
        .copied()
        .filter(|t| t.reward().is_some())
        .collect();
    done.sort_by(|a, b| {
        b.reward()
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&a.reward().unwrap_or(f64::NEG_INFINITY))
            .then(a.id.cmp(&b.id))
    });
    let points: Vec<(ProposalId, f64, f64)> = trials
        .iter()
        .filter_map(|t| match &t.state {
            TrialState::Succeeded {
                metrics,
                latency_ms: Some(l),
                ..
            } => Some((t.id, metrics.validation_accuracy, *l)),
            _ => None,
        })
        .collect();
    let xy: Vec<(f64, f64)> = points.iter().map(|&(_, a, l)| (a, l)).collect();
    let mut rewards: Vec<f64> = done.iter().filter_map(|t| t.reward()).collect();
    rewards.sort_by(f64::total_cmp);
    let mut failures: Vec<FailureCount> = Vec::new();
    for t in &trials {
        if let TrialState::Failed { reason, message } = &t.state {
            match failures.iter_mut().find(|f| f.reason == *reason) {
                Some(f) => f.count += 1,
                None => failures.push(FailureCount {
                    reason: *reason,
                    count: 1,
                    trial: t.id,
                    message: message.clone(),
                }),
            }
        }
    }
    failures.sort_by(|a, b| b.count.cmp(&a.count).then(a.trial.cmp(&b.trial)));
    Summary {
        failures,
        counts,
        phase,
        best: done.iter().take(top).map(|t| (*t).clone()).collect(),
        median_reward: median(&rewards),
        pareto: pareto_front(&xy).into_iter().map(|i| points[i].0).collect(),
    }
}

fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    (n > 0).then(|| {
        if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        }
    })
}

/// What a search found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Trial counts.
    pub counts: Counts,
    /// Phase.
    pub phase: Phase,
    /// Best trials by reward, best first.
    pub best: Vec<Trial>,
    /// Median reward of the succeeded trials.
    pub median_reward: Option<f64>,
    /// Ids of the Pareto-optimal trials (accuracy up, latency down), by ascending latency.
    pub pareto: Vec<ProposalId>,
    /// Failed trials by reason, most frequent first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<FailureCount>,
}

/// How many trials failed for one reason, with the first such trial's message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureCount {
    /// The reason.
    pub reason: FailureReason,
    /// Trials that failed for it.
    pub count: usize,
    /// The first of them.
    pub trial: ProposalId,
    /// Its message.
    pub message: String,
}

pub mod children;
pub mod controller;
pub mod policy_store;
pub mod status;

#[cfg(test)]
mod tests;

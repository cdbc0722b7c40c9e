//! Between the search core and the API objects of a search: ChildTrials as trial records,
//! proposals as ChildTrials, the strategy seed, GPU time and the budget, and the status of a
//! spec that cannot run. Pure.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::ObjectMeta;
use kube::Resource;
use nasop_crds::api::{
    labels, ArchitectureSearch, ArchitectureSearchStatus, ChildTrial, ChildTrialSpec,
    ChildTrialStatus, SearchPhase, TrialPhase,
};
use nasop_crds::result::FailureReason;
use sha2::{Digest, Sha256};

use super::status::{condition, trial_name};
use super::{absorb, resume, Metrics, Resumed, Search, SearchError, Trial, TrialBook, TrialState};
use crate::strategy::{Proposal, ProposalId, Strategy};
use nasop_crds::api::ArchitectureSearchSpec;
use nasop_crds::SearchSpace;

/// The trial record of a ChildTrial: running until its status says Succeeded (with metrics
/// and reward) or Failed. A Succeeded trial without an accuracy reads as failed with
/// [`FailureReason::BadResult`].
pub fn record_of(child: &ChildTrial) -> Trial {
    let spec = &child.spec;
    // Read in place (no copy of the status): the search records every trial on every
    // reconcile. A default status allocates nothing.
    let none = ChildTrialStatus::default();
    let status = child.status.as_ref().unwrap_or(&none);
    let state = match status.phase {
        Some(TrialPhase::Succeeded) => {
            match status
                .metrics
                .as_ref()
                .and_then(|m| m.accuracy.map(|a| (m, a)))
            {
                Some((m, accuracy)) => TrialState::Succeeded {
                    metrics: Metrics {
                        validation_accuracy: accuracy,
                        test_accuracy: None,
                        params: m.params.unwrap_or(0),
                        macs: m.macs.unwrap_or(0),
                        wall_seconds: m.train_seconds.unwrap_or(0.0),
                    },
                    latency_ms: status.latency.as_ref().map(|l| l.median_ms),
                    reward: status.reward.unwrap_or(f64::NAN),
                },
                None => TrialState::Failed {
                    reason: FailureReason::BadResult,
                    message: "Succeeded without a validation accuracy".into(),
                },
            }
        }
        Some(TrialPhase::Failed) => TrialState::Failed {
            reason: status
                .reason
                .as_deref()
                .and_then(FailureReason::from_name)
                .unwrap_or(FailureReason::Internal),
            message: status.message.clone().unwrap_or_default(),
        },
        _ => TrialState::Running,
    };
    Trial {
        id: spec.proposal_id.max(0) as u64,
        genotype: spec.genotype.to_string(),
        hash: spec.genotype_hash.clone(),
        state,
    }
}

/// A search's trials as its last reconcile left them, with the resourceVersion of each
/// ChildTrial they were read from, by proposal id: the next reconcile reads only the
/// ChildTrials that changed since (see [`resume_children`]).
pub struct SeenTrials {
    book: TrialBook,
    versions: Versions,
}

impl SeenTrials {
    /// The trials of a search's last reconcile (`Search::into_parts`) and the versions of the
    /// ChildTrials they were read from ([`resume_children`]).
    pub fn new(book: TrialBook, versions: Versions) -> Self {
        Self { book, versions }
    }
}

/// The resourceVersion of each ChildTrial read, by proposal id.
pub struct Versions(HashMap<ProposalId, u64>);

/// A search resumed from its ChildTrials ([`resume_children`]).
pub struct ResumedChildren {
    /// The search, as [`crate::search::resume`] gives it.
    pub resumed: Resumed,
    /// The versions of the ChildTrials, to keep for the next reconcile with the search's
    /// trials ([`SeenTrials`]); `None` when a ChildTrial has no numeric resourceVersion (each
    /// reconcile then reads them all).
    pub versions: Option<Versions>,
    /// How many ChildTrials were read (made into trial records).
    pub read: usize,
}

/// The search of `spec` resumed from `strategy` and its ChildTrials (see
/// [`crate::search::resume`]).
///
/// With `kept` from the last reconcile, only the ChildTrials whose resourceVersion changed
/// since are read and absorbed ([`crate::search::absorb`]): a reconcile costs a hash lookup
/// per trial instead of a record built per trial (in `make bench-scale` the tell step took
/// 24 ms per reconcile at 20,000 trials, p50). When a ChildTrial is gone since (the ids read
/// no longer match the ChildTrials) the search is resumed from all of them, as without `kept`.
/// The resourceVersion is only compared for equality, as the API conventions allow.
///
/// # Errors
/// As [`crate::search::resume`].
pub fn resume_children(
    spec: &ArchitectureSearchSpec,
    space: &SearchSpace,
    strategy: Box<dyn Strategy>,
    children: &[Arc<ChildTrial>],
    kept: Option<SeenTrials>,
) -> Result<ResumedChildren, SearchError> {
    let id_of = |c: &ChildTrial| c.spec.proposal_id.max(0) as ProposalId;
    let version_of = |c: &ChildTrial| {
        c.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let Some(SeenTrials {
        book,
        versions: Versions(mut versions),
    }) = kept
    {
        let mut changed = Vec::new();
        let mut complete = true;
        for c in children {
            let Some(version) = version_of(c) else {
                complete = false;
                break;
            };
            if versions.insert(id_of(c), version) != Some(version) {
                changed.push(record_of(c));
            }
        }
        if complete && versions.len() == children.len() {
            let read = changed.len();
            let search = Search::from_parts(spec, strategy, book);
            let resumed = absorb(search, space, changed, &|id| versions.contains_key(&id))?;
            return Ok(ResumedChildren {
                resumed,
                versions: Some(Versions(versions)),
                read,
            });
        }
    }
    let mut versions = HashMap::with_capacity(children.len());
    let mut complete = true;
    let records = children.iter().map(|c| {
        match version_of(c) {
            Some(v) => {
                versions.insert(id_of(c), v);
            }
            None => complete = false,
        }
        record_of(c)
    });
    let resumed = resume(spec, space, strategy, records)?;
    let kept = (complete && versions.len() == children.len()).then_some(Versions(versions));
    Ok(ResumedChildren {
        resumed,
        versions: kept,
        read: children.len(),
    })
}

/// The ChildTrial of `proposal`: named `<search>-<id:05>`, owned by the search (controller
/// reference: deleted with it), labelled with the search and the genotype hash, annotated with
/// the genotype's text form ([`labels::GENOTYPE`]), its spec
/// copying what training and rewarding need from the search.
///
/// # Errors
/// A message for a search without name, namespace or uid (not read from the API server).
pub fn child_trial(
    search: &ArchitectureSearch,
    proposal: &Proposal,
) -> Result<ChildTrial, &'static str> {
    let name = search.metadata.name.as_deref().ok_or("metadata.name")?;
    let namespace = search
        .metadata
        .namespace
        .clone()
        .ok_or("metadata.namespace")?;
    let owner = search.controller_owner_ref(&()).ok_or("metadata.uid")?;
    let spec = &search.spec;
    let hash = proposal.genotype.hash().as_str().to_string();
    let trial = trial_name(name, proposal.id);
    let mut child = ChildTrial::new(
        &trial,
        ChildTrialSpec {
            search_name: name.to_string(),
            index: proposal.id as i64,
            proposal_id: proposal.id as i64,
            search_space: Arc::new(spec.search_space.clone()),
            genotype: proposal.genotype.clone(),
            genotype_hash: hash.clone(),
            objective: Arc::new(spec.objective.clone()),
            trial: Arc::new(spec.trial.clone()),
            probe: spec.probe.clone().map(Arc::new),
        },
    );
    child.metadata = ObjectMeta {
        name: Some(trial),
        namespace: Some(namespace),
        labels: Some(BTreeMap::from([
            (labels::SEARCH.to_string(), name.to_string()),
            (labels::GENOTYPE_HASH.to_string(), hash),
            (labels::APP_NAME.to_string(), "nasop".to_string()),
            (
                labels::APP_MANAGED_BY.to_string(),
                "nasop-operator".to_string(),
            ),
            (labels::APP_PART_OF.to_string(), name.to_string()),
        ])),
        annotations: Some(BTreeMap::from([(
            labels::GENOTYPE.to_string(),
            proposal.genotype.to_string(),
        )])),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    Ok(child)
}

/// The strategy seed of a search whose spec gives none: the first 8 bytes of the SHA-256 of
/// its uid, so that two searches differ and one search keeps its seed across restarts.
pub fn derived_seed(uid: &str) -> u64 {
    let d = Sha256::digest(uid.as_bytes());
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// GPUs one trial requests (`nvidia.com/gpu` limit, else request; 0 without).
pub fn gpus_per_trial(search: &ArchitectureSearch) -> f64 {
    let resources = search.spec.trial.placement.resources.as_ref();
    let get = |m: Option<&BTreeMap<String, Quantity>>| {
        m.and_then(|m| m.get("nvidia.com/gpu"))
            .and_then(|q| q.0.parse::<f64>().ok())
    };
    get(resources.and_then(|r| r.limits.as_ref()))
        .or_else(|| get(resources.and_then(|r| r.requests.as_ref())))
        .unwrap_or(0.0)
}

/// GPU-seconds consumed by finished trials: training seconds times GPUs per trial.
pub fn gpu_seconds<'a>(children: impl IntoIterator<Item = &'a ChildTrial>, gpus: f64) -> f64 {
    children
        .into_iter()
        .filter_map(|c| c.status.as_ref())
        .filter_map(|s| s.metrics.as_ref())
        .filter_map(|m| m.train_seconds)
        .sum::<f64>()
        * gpus
}

/// Why no more trials may start although `maxTrials` is not reached: the deadline
/// (`budget.deadlineSeconds` after `status.startTime`) or the GPU hours are spent.
pub fn budget_spent(search: &ArchitectureSearch, gpu_seconds: f64, now: &Time) -> Option<String> {
    let budget = &search.spec.budget;
    if let (Some(limit), Some(start)) = (
        budget.deadline_seconds,
        search.status.as_ref().and_then(|s| s.start_time.as_ref()),
    ) {
        if now.0.as_second() - start.0.as_second() >= limit {
            return Some(format!(
                "budget.deadlineSeconds ({limit} s) passed since the start"
            ));
        }
    }
    if let Some(hours) = budget.max_gpu_hours {
        if gpu_seconds >= hours * 3600.0 {
            return Some(format!(
                "budget.maxGpuHours ({hours}) spent: {:.3} GPU-hours",
                gpu_seconds / 3600.0
            ));
        }
    }
    None
}

/// The status of a search that cannot run (`reason`: a CamelCase reason such as
/// `InvalidSpec`): phase Failed, Degraded True with the message, no Ready, no Progressing.
/// Transition times are kept when a condition does not flip.
pub fn blocked_status(
    previous: Option<&ArchitectureSearchStatus>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> ArchitectureSearchStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let cond = |type_: &str, on: bool| {
        let s = if on { "True" } else { "False" };
        let last = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == s)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: type_.into(),
            status: s.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: last,
            observed_generation: generation,
        }
    };
    status.phase = Some(SearchPhase::Failed);
    status.conditions = vec![
        cond(condition::READY, false),
        cond(condition::PROGRESSING, false),
        cond(condition::DEGRADED, true),
    ];
    status.observed_generation = generation;
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{from_yaml, now};

    fn search() -> ArchitectureSearch {
        search_with(
            "{algorithm: Random, seed: 3}",
            "{maxTrials: 10, parallelism: 2, maxGpuHours: 1.0, deadlineSeconds: 3600}",
        )
    }

    fn search_with(strategy: &str, budget: &str) -> ArchitectureSearch {
        from_yaml(&format!(
            r#"
apiVersion: nasop.dev/v1alpha1
kind: ArchitectureSearch
metadata: {{name: cifar, namespace: nas, uid: 5f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f}}
spec:
  searchSpace: {{nb201: {{}}}}
  strategy: {strategy}
  budget: {budget}
  trial:
    image: trainer:1
    resources: {{limits: {{nvidia.com/gpu: "2"}}}}
    dataset: {{format: CIFAR10, path: /data}}
"#
        ))
    }

    #[test]
    fn a_proposal_becomes_an_owned_labelled_child_trial() {
        let s = search();
        let space = s.spec.search_space.build().unwrap();
        let mut strategy = crate::strategy::build(&space, &s.spec.strategy, 0).unwrap();
        let p = strategy.ask(1).remove(0);
        let c = child_trial(&s, &p).unwrap();
        assert_eq!(c.metadata.name.as_deref(), Some("cifar-00000"));
        let labels = c.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["nasop.dev/search"], "cifar");
        assert_eq!(
            labels["nasop.dev/genotype-hash"],
            p.genotype.hash().as_str()
        );
        let owner = &c.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("ArchitectureSearch", "cifar", Some(true))
        );
        assert_eq!(c.spec.genotype, p.genotype);
        let text = &c.metadata.annotations.as_ref().unwrap()["nasop.dev/genotype"];
        assert_eq!(
            text.parse::<nasop_crds::Genotype>().unwrap(),
            p.genotype,
            "the annotation reads back as the genotype: {text}"
        );
        assert_eq!(*c.spec.trial, s.spec.trial);
        // Back as a record: running, same id and genotype.
        let r = record_of(&c);
        assert_eq!((r.id, r.genotype.clone()), (0, p.genotype.to_string()));
        assert_eq!(r.state, TrialState::Running);
    }

    #[test]
    fn resuming_from_the_changed_child_trials_equals_resuming_from_all() {
        let s = search_with(
            "{algorithm: Evolution, seed: 3, evolution: {populationSize: 5, sampleSize: 2}}",
            "{maxTrials: 60, parallelism: 7, maxFailedTrials: 60}",
        );
        let space = s.spec.search_space.build().unwrap();
        let build = || crate::strategy::build(&space, &s.spec.strategy, 0).unwrap();
        // The cluster: ChildTrials by id, each change a new resourceVersion.
        let mut world: BTreeMap<ProposalId, Arc<ChildTrial>> = BTreeMap::new();
        let mut version = 100u64;
        let mut put = |world: &mut BTreeMap<ProposalId, Arc<ChildTrial>>, mut c: ChildTrial| {
            version += 1;
            c.metadata.resource_version = Some(version.to_string());
            world.insert(c.spec.proposal_id as ProposalId, Arc::new(c));
        };
        let mut rng = 12345u64;
        let mut next = move |n: u64| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        let (mut incremental, mut full) = (Some((build(), None)), Some(build()));
        let mut unborn: Vec<ChildTrial> = Vec::new();
        let mut rounds = (0, 0);
        let mut deleted = false;
        for round in 0..60 {
            let children: Vec<Arc<ChildTrial>> = world.values().cloned().collect();
            let (strategy, kept) = incremental.take().unwrap();
            let incremental_kept = kept.is_some();
            let ResumedChildren {
                resumed: mut a,
                versions,
                read,
            } = resume_children(&s.spec, &space, strategy, &children, kept).unwrap();
            let all =
                resume_children(&s.spec, &space, full.take().unwrap(), &children, None).unwrap();
            assert!(all.versions.is_some(), "all ChildTrials have versions");
            assert_eq!(all.read, children.len());
            let mut b = all.resumed;
            // The same results told, the same children to create, the same trials and counts.
            assert_eq!(a.told, b.told, "round {round}");
            let ids = |r: &Resumed| r.missing.iter().map(|p| p.id).collect::<Vec<_>>();
            assert_eq!(ids(&a), ids(&b), "round {round}");
            assert_eq!(a.unknown, b.unknown);
            assert_eq!(a.search.counts(), b.search.counts(), "round {round}");
            assert!(a.search.trials().eq(b.search.trials()), "round {round}");
            assert_eq!(a.search.phase(), b.search.phase());
            assert_eq!(a.search.strategy().pending(), b.search.strategy().pending());
            let (la, lb) = (a.search.launch(), b.search.launch());
            assert_eq!(
                la.iter().map(|p| p.id).collect::<Vec<_>>(),
                lb.iter().map(|p| p.id).collect::<Vec<_>>()
            );
            // Read: the ChildTrials changed since, or all of them after a deletion.
            if incremental_kept && read < children.len() {
                rounds.0 += 1;
            }
            if deleted {
                assert_eq!(read, children.len(), "round {round}");
            }
            // Children appear a round late (the watch lags the create), some never until
            // created again from `missing`.
            // A create of a name that exists changes nothing (409).
            for c in unborn.drain(..) {
                if !world.contains_key(&(c.spec.proposal_id as ProposalId)) {
                    put(&mut world, c);
                }
            }
            for p in a.missing.iter().chain(&la) {
                let c = child_trial(&s, p).unwrap();
                if next(4) != 0 {
                    unborn.push(c);
                } else if !world.contains_key(&p.id) {
                    put(&mut world, c);
                }
            }
            // Running children finish (succeed, fail, or succeed without an accuracy).
            let running: Vec<ProposalId> = world
                .iter()
                .filter(|(_, c)| c.status.is_none())
                .map(|(id, _)| *id)
                .collect();
            for id in running {
                let status = match next(5) {
                    // The reward the trial controller writes: the accuracy (no latency
                    // objective), as the search computes it when told.
                    0 | 1 => {
                        let accuracy = 0.3 + next(60) as f64 / 100.0;
                        serde_json::json!({"phase": "Succeeded", "reward": accuracy,
                            "metrics": {"accuracy": accuracy}})
                    }
                    2 => {
                        serde_json::json!({"phase": "Failed", "reason": "OutOfMemory", "message": "oom"})
                    }
                    3 => serde_json::json!({"phase": "Succeeded"}),
                    _ => continue,
                };
                let mut c = ChildTrial::clone(&world[&id]);
                c.status = Some(serde_json::from_value(status).unwrap());
                put(&mut world, c);
            }
            // A finished ChildTrial deleted by hand now and then.
            deleted = false;
            if round % 17 == 16 {
                let done = world
                    .iter()
                    .find(|(_, c)| c.status.is_some())
                    .map(|(id, _)| *id);
                if let Some(id) = done {
                    world.remove(&id);
                    rounds.1 += 1;
                    deleted = true;
                }
            }
            let (strategy, book) = a.search.into_parts();
            incremental = Some((strategy, versions.map(|v| SeenTrials::new(book, v))));
            full = Some(b.search.into_parts().0);
        }
        // Both paths were taken: the changed ChildTrials only, and all of them after a deletion.
        assert!(rounds.0 > 40, "{rounds:?}");
        assert!(rounds.1 >= 3, "{rounds:?}");
        let (strategy, _) = incremental.unwrap();
        assert_eq!(strategy.counts().proposed, 60);
        assert_eq!(strategy.counts().told, full.unwrap().counts().told);
    }

    #[test]
    fn finished_child_trials_read_as_results() {
        let mut c: ChildTrial = crate::testing::gpu_trial();
        c.status = Some(serde_json::from_value(serde_json::json!({
            "phase": "Succeeded", "reward": 0.9,
            "metrics": {"accuracy": 0.9, "params": 5, "macs": 7, "trainSeconds": 60.0},
            "latency": {"medianMs": 2.0, "p90Ms": 2.1, "meanMs": 2.0, "stddevMs": 0.1, "minMs": 1.9, "repeats": 50}
        })).unwrap());
        let r = record_of(&c);
        assert_eq!(r.id, 42);
        let TrialState::Succeeded {
            metrics,
            latency_ms,
            reward,
        } = r.state
        else {
            panic!("{:?}", r.state)
        };
        assert_eq!(
            (metrics.validation_accuracy, metrics.params, metrics.macs),
            (0.9, 5, 7)
        );
        assert_eq!((latency_ms, reward), (Some(2.0), 0.9));
        c.status = Some(
            serde_json::from_value(serde_json::json!({
            "phase": "Failed", "reason": "OutOfMemory", "message": "CUDA OOM"}))
            .unwrap(),
        );
        assert_eq!(
            record_of(&c).state,
            TrialState::Failed {
                reason: FailureReason::OutOfMemory,
                message: "CUDA OOM".into()
            }
        );
        c.status = Some(serde_json::from_value(serde_json::json!({"phase": "Succeeded"})).unwrap());
        assert!(matches!(
            record_of(&c).state,
            TrialState::Failed {
                reason: FailureReason::BadResult,
                ..
            }
        ));
    }

    #[test]
    fn gpu_hours_and_the_deadline_stop_the_search() {
        let mut s = search();
        assert_eq!(gpus_per_trial(&s), 2.0);
        let mut c = crate::testing::gpu_trial();
        c.status = Some(
            serde_json::from_value(serde_json::json!({
            "phase": "Succeeded", "metrics": {"accuracy": 0.5, "trainSeconds": 1000.0}}))
            .unwrap(),
        );
        let used = gpu_seconds(&[c.clone(), c], 2.0);
        assert_eq!(used, 4000.0);
        let msg = budget_spent(&s, used, &now()).unwrap();
        assert!(
            msg.contains("budget.maxGpuHours (1) spent: 1.111 GPU-hours"),
            "{msg}"
        );
        assert_eq!(budget_spent(&s, 3599.0, &now()), None, "no start time yet");
        s.status = Some(ArchitectureSearchStatus {
            start_time: Some(Time("2026-11-29T10:59:59Z".parse().unwrap())),
            ..ArchitectureSearchStatus::default()
        });
        assert!(budget_spent(&s, 0.0, &now())
            .unwrap()
            .contains("deadlineSeconds (3600 s)"));
    }

    #[test]
    fn seeds_differ_per_search_and_stay_per_uid() {
        assert_eq!(derived_seed("a"), derived_seed("a"));
        assert_ne!(derived_seed("a"), derived_seed("b"));
    }
}

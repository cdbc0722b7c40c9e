use nasop_crds::result::FailureReason;

use super::*;
use crate::manifest;

fn spec(extra: &str) -> (ArchitectureSearchSpec, SearchSpace) {
    let text = format!(
        r#"
apiVersion: nasop.dev/v1alpha1
kind: ArchitectureSearch
metadata: {{name: t}}
spec:
  searchSpace: {{nb201: {{}}}}
  strategy: {{algorithm: Evolution, seed: 1, evolution: {{populationSize: 4, sampleSize: 2}}}}
  budget: {{maxTrials: 7, parallelism: 3, maxFailedTrials: 2}}
  trial:
    image: x
    dataset: {{format: CIFAR10, path: /data}}
{extra}"#
    );
    let search = manifest::parse(&text).unwrap();
    let space = manifest::check(&search).unwrap();
    (search.spec, space)
}

fn metrics(acc: f64) -> Metrics {
    Metrics {
        validation_accuracy: acc,
        test_accuracy: None,
        params: 1000,
        macs: 2000,
        wall_seconds: 1.0,
    }
}

#[test]
fn parallelism_and_max_trials_bound_what_starts() {
    let (spec, space) = spec("");
    let mut s = Search::new(&spec, &space, 0).unwrap();
    let first = s.launch();
    assert_eq!(first.len(), 3);
    assert!(s.launch().is_empty(), "parallelism 3 reached");
    s.succeed(first[0].id, metrics(0.5), None).unwrap();
    assert_eq!(s.launch().len(), 1);
    let mut done = 1;
    while s.phase() == Phase::Running {
        let running: Vec<ProposalId> = s
            .trials()
            .filter(|t| t.state == TrialState::Running)
            .map(|t| t.id)
            .collect();
        for id in running {
            s.succeed(id, metrics(0.1 * (id % 7) as f64), None).unwrap();
            done += 1;
        }
        s.launch();
    }
    assert_eq!(s.phase(), Phase::Succeeded);
    assert_eq!(done, 7);
    let c = s.counts();
    assert_eq!((c.started, c.succeeded, c.running, c.failed), (7, 7, 0, 0));
    assert!(s.launch().is_empty());
    assert_eq!(s.strategy().counts().told, 7);
}

#[test]
fn too_many_failures_fail_the_search_and_stop_new_trials() {
    let (spec, space) = spec("");
    let mut s = Search::new(&spec, &space, 0).unwrap();
    let p = s.launch();
    for t in &p {
        s.fail(t.id, FailureReason::OutOfMemory, "oom".into())
            .unwrap();
    }
    assert_eq!(s.phase(), Phase::Failed);
    assert!(s.launch().is_empty());
    assert_eq!(s.counts().failed, 3);
    assert_eq!(
        s.fail(p[0].id, FailureReason::Internal, String::new()),
        Err(SearchError::NotRunning(p[0].id))
    );
    assert_eq!(s.strategy().counts().failed, 3);
}

#[test]
fn latency_objectives_reward_with_mnasnet_and_need_a_latency() {
    let (spec, space) =
        spec("  objective: {latency: {targetMs: 10, constraint: Hard, deviceClass: cpu}}\n");
    let mut s = Search::new(&spec, &space, 0).unwrap();
    let p = s.launch();
    // Hard: (LAT/T)^-1 above T, no bonus below.
    assert_eq!(s.succeed(p[0].id, metrics(0.8), Some(20.0)).unwrap(), 0.4);
    assert_eq!(s.succeed(p[1].id, metrics(0.6), Some(5.0)).unwrap(), 0.6);
    let e = s.succeed(p[2].id, metrics(0.9), None).unwrap_err();
    assert!(
        e.to_string().contains("the latency objective needs one"),
        "{e}"
    );
    assert_eq!(
        s.counts().running,
        1,
        "a refused result leaves the trial running"
    );
    let e = s.succeed(p[2].id, metrics(1.5), Some(3.0)).unwrap_err();
    assert!(e.to_string().contains("1.5 is not a fraction"), "{e}");
    s.succeed(p[2].id, metrics(0.9), Some(30.0)).unwrap();
    let summary = s.summary(2);
    assert_eq!(
        summary.best.iter().map(|t| t.id).collect::<Vec<_>>(),
        [p[1].id, p[0].id]
    );
    // Front by latency: (0.6, 5 ms), (0.8, 20 ms), (0.9, 30 ms) all Pareto-optimal.
    assert_eq!(summary.pareto, [p[1].id, p[0].id, p[2].id]);
    assert_eq!(summary.median_reward, Some(0.4));
}

#[test]
fn a_small_space_ends_exhausted() {
    let (mut spec, _) = spec("");
    spec.search_space =
        serde_json::from_str(r#"{"nb201": {"ops": ["none", "skip_connect"]}}"#).unwrap();
    spec.budget.max_trials = 100;
    let space = spec.search_space.build().unwrap();
    let mut s = Search::new(&spec, &space, 0).unwrap();
    let mut n = 0;
    loop {
        let p = s.launch();
        if p.is_empty() && s.counts().running == 0 {
            break;
        }
        for t in p {
            s.succeed(t.id, metrics(0.5), None).unwrap();
            n += 1;
        }
    }
    assert_eq!(n, 64);
    assert_eq!(s.phase(), Phase::Exhausted);
}

#[test]
fn a_stopped_search_lets_running_trials_finish_and_starts_none() {
    let (spec, space) = spec("");
    let mut s = Search::new(&spec, &space, 0).unwrap();
    let first = s.launch();
    assert_eq!(first.len(), 3);
    s.stop();
    assert_eq!(s.phase(), Phase::Running, "three still run");
    s.succeed(first[0].id, metrics(0.5), None).unwrap();
    assert!(s.launch().is_empty());
    s.fail(first[1].id, FailureReason::Internal, "x".into())
        .unwrap();
    s.succeed(first[2].id, metrics(0.7), None).unwrap();
    assert_eq!(s.phase(), Phase::Stopped);
    assert_eq!(s.counts().started, 3);
}

#[test]
fn resume_tells_each_recorded_result_once_and_finds_missing_children() {
    let (mut spec, space) = spec("");
    spec.budget.parallelism = 4;
    let mut s = Search::new(&spec, &space, 0).unwrap();
    let p = s.launch();
    s.succeed(p[0].id, metrics(0.5), None).unwrap();
    let saved = s.strategy().save();
    // After the save: p[1] succeeded, p[2] failed, p[3] never recorded (still running).
    let record = |t: &crate::strategy::Proposal, state: TrialState| Trial {
        id: t.id,
        genotype: t.genotype.to_string(),
        hash: t.genotype.hash().as_str().to_string(),
        state,
    };
    let recorded = vec![
        record(
            &p[2],
            TrialState::Failed {
                reason: FailureReason::OutOfMemory,
                message: "oom".into(),
            },
        ),
        record(
            &p[0],
            TrialState::Succeeded {
                metrics: metrics(0.5),
                latency_ms: None,
                reward: 0.5,
            },
        ),
        record(
            &p[1],
            TrialState::Succeeded {
                metrics: metrics(0.6),
                latency_ms: None,
                reward: 0.6,
            },
        ),
    ];
    let strategy = crate::strategy::restore(&space, &spec.strategy, &saved).unwrap();
    let r = resume(&spec, &space, strategy, recorded).unwrap();
    assert_eq!(
        r.told,
        vec![p[1].id, p[2].id],
        "p[0] was consumed before the save"
    );
    assert_eq!(r.missing.len(), 1);
    assert_eq!(r.missing[0].id, p[3].id);
    assert_eq!(r.missing[0].genotype, p[3].genotype);
    assert!(r.unknown.is_empty());
    let c = r.search.counts();
    assert_eq!((c.started, c.running, c.succeeded, c.failed), (4, 1, 2, 1));
    assert_eq!(r.search.strategy().pending(), vec![p[3].id]);
    let sc = r.search.strategy().counts();
    assert_eq!((sc.told, sc.failed), (2, 1));
}

#[test]
fn deleted_records_do_not_open_room_beyond_max_trials() {
    let (spec, space) = spec("");
    let mut s = Search::new(&spec, &space, 0).unwrap();
    let p = s.launch();
    for t in &p {
        s.succeed(t.id, metrics(0.5), None).unwrap();
    }
    let more = s.launch();
    assert_eq!(p.len() + more.len(), 6);
    // Resumed with the first three records gone: 6 proposals made, only 1 more may start.
    let saved = s.strategy().save();
    let kept: Vec<Trial> = s.trials().filter(|t| t.id >= 3).cloned().collect();
    let strategy = crate::strategy::restore(&space, &spec.strategy, &saved).unwrap();
    let mut r = resume(&spec, &space, strategy, kept).unwrap().search;
    assert_eq!(r.counts().started, 3);
    for t in &more {
        r.succeed(t.id, metrics(0.6), None).unwrap();
    }
    assert_eq!(r.launch().len(), 1, "maxTrials 7");
}

#[test]
fn counts_of_trials_match_their_states() {
    let trial = |id, state| Trial {
        id,
        genotype: String::new(),
        hash: String::new(),
        state,
    };
    let trials = [
        trial(1, TrialState::Running),
        trial(
            2,
            TrialState::Succeeded {
                metrics: metrics(0.9),
                latency_ms: None,
                reward: 0.9,
            },
        ),
        trial(
            3,
            TrialState::Failed {
                reason: FailureReason::OutOfMemory,
                message: "x".into(),
            },
        ),
        trial(4, TrialState::Running),
    ];
    let expected = Counts {
        started: 4,
        running: 2,
        succeeded: 1,
        failed: 1,
    };
    assert_eq!(Counts::of(trials.iter()), expected);
    assert_eq!(summarize(trials.iter(), 0, Phase::Running).counts, expected);
    assert_eq!(Counts::of([].iter()), Counts::default());
}

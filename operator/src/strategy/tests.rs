use std::collections::HashSet;

use nasop_crds::api::{Advantage, Algorithm, ControllerSpec, EvolutionSpec, StrategySpec};
use nasop_crds::space::mnasnet::MnasnetSpaceSpec;
use nasop_crds::space::nasnet::NasnetSpaceSpec;
use nasop_crds::space::nb201::{Nb201Op, Nb201SpaceSpec};
use nasop_crds::space::SearchSpaceSpec;
use nasop_crds::SearchSpace;

use super::*;

fn nb201() -> SearchSpace {
    SearchSpaceSpec::Nb201(Nb201SpaceSpec::default())
        .build()
        .unwrap()
}

/// NB201 with two ops per edge: 2^6 = 64 children.
fn tiny() -> SearchSpace {
    SearchSpaceSpec::Nb201(Nb201SpaceSpec {
        ops: vec![Nb201Op::NorConv3x3, Nb201Op::SkipConnect],
        ..Nb201SpaceSpec::default()
    })
    .build()
    .unwrap()
}

fn spec(algorithm: Algorithm) -> StrategySpec {
    StrategySpec {
        algorithm,
        seed: None,
        dedupe: true,
        controller: matches!(algorithm, Algorithm::Ppo | Algorithm::Reinforce).then(|| {
            ControllerSpec {
                batch_size: 3,
                learning_rate: 0.05,
                ..ControllerSpec::default()
            }
        }),
        evolution: (algorithm == Algorithm::Evolution).then_some(EvolutionSpec {
            population_size: 4,
            sample_size: 2,
        }),
    }
}

const ALL: [Algorithm; 4] = [
    Algorithm::Ppo,
    Algorithm::Reinforce,
    Algorithm::Evolution,
    Algorithm::Random,
];

/// A reward that depends on the child only: the share of 3x3 convolutions, plus a little of
/// the decision vector so that ties are rare.
fn reward(p: &Proposal) -> f64 {
    let convs = p.genotype.to_string().matches("nor_conv_3x3").count() as f64;
    convs / 6.0 + p.decisions.iter().sum::<usize>() as f64 * 1e-3
}

/// Drives a strategy: each round asks 3, fails the middle one every fourth round, and tells
/// the others in reverse order (results arrive out of order). Returns what was proposed.
fn drive(s: &mut dyn Strategy, rounds: usize) -> Vec<(ProposalId, String, Option<f64>)> {
    let mut seen = Vec::new();
    for round in 0..rounds {
        let batch = s.ask(3);
        for (i, p) in batch.iter().enumerate().rev() {
            if round % 4 == 3 && i == 1 {
                s.fail(p.id).unwrap();
            } else {
                s.tell(p.id, reward(p)).unwrap();
            }
        }
        seen.extend(
            batch
                .into_iter()
                .map(|p| (p.id, p.genotype.to_string(), p.log_prob)),
        );
    }
    seen
}

#[test]
fn a_restored_strategy_makes_exactly_the_same_proposals() {
    for space in [nb201(), tiny()] {
        for algorithm in ALL {
            let spec = spec(algorithm);
            let mut a = build(&space, &spec, 7).unwrap();
            drive(a.as_mut(), 5);
            // Some proposals are pending at the save.
            let open = a.ask(2);
            let bytes = a.save();
            let mut b = restore(&space, &spec, &bytes).unwrap();
            assert_eq!(b.pending(), a.pending(), "{algorithm:?}");
            assert_eq!(b.counts(), a.counts(), "{algorithm:?}");
            for p in &open {
                a.tell(p.id, reward(p)).unwrap();
                b.tell(p.id, reward(p)).unwrap();
            }
            let next_a = drive(a.as_mut(), 6);
            let next_b = drive(b.as_mut(), 6);
            assert_eq!(next_a, next_b, "{algorithm:?}");
            assert!(!next_a.is_empty());
            assert_eq!(a.save(), b.save(), "{algorithm:?}: same state after");
            if matches!(algorithm, Algorithm::Ppo | Algorithm::Reinforce) {
                assert!(a.counts().updates >= 5, "{:?}", a.counts());
            }
        }
    }
}

#[test]
fn a_background_learner_makes_the_same_updates_as_an_inline_one() {
    let space = nb201();
    for algorithm in [Algorithm::Ppo, Algorithm::Reinforce] {
        let mut spec = spec(algorithm);
        if let Some(c) = spec.controller.as_mut() {
            c.replay_top = 2;
        }
        let mut inline = build(&space, &spec, 5).unwrap();
        let mut background = build(&space, &spec, 5).unwrap();
        assert!(inline.learner().is_none());
        let learner = background.learn_in_background().unwrap();
        assert!(background.learner().is_some());
        for round in 0..6 {
            // Caught up before each ask: the same weights, so the same proposals.
            learner.wait_caught_up().unwrap();
            let (a, b) = (inline.ask(4), background.ask(4));
            assert_eq!(a, b, "{algorithm:?} round {round}");
            for p in a.iter().rev() {
                inline.tell(p.id, reward(p)).unwrap();
                background.tell(p.id, reward(p)).unwrap();
            }
        }
        learner.wait_caught_up().unwrap();
        assert_eq!(learner.behind(), Ok(0));
        assert_eq!(inline.counts().updates, 8, "24 results, batch 3");
        assert_eq!(background.counts(), inline.counts(), "{algorithm:?}");
        assert_eq!(
            background.save(),
            inline.save(),
            "{algorithm:?}: bit-identical weights, moments and state"
        );
    }
}

#[test]
fn a_journal_saved_while_the_learner_is_behind_restores_and_catches_up() {
    let space = nb201();
    let spec = spec(Algorithm::Ppo);
    let mut a = build(&space, &spec, 9).unwrap();
    let checkpoint = a.checkpoint();
    let learner = a.learn_in_background().unwrap();
    // 60 results told at once: 20 updates of about 10 ms each wait for the learner.
    let open = a.ask(60);
    for p in &open {
        a.tell(p.id, reward(p)).unwrap();
    }
    let journal = a.save_journal().unwrap();
    let recorded: serde_json::Value = serde_json::from_slice(&journal).unwrap();
    let recorded = recorded["core"]["counts"]["updates"].as_u64().unwrap();
    assert!(recorded < 20, "saved {recorded} of 20 updates made");
    let (wake, woken) = std::sync::mpsc::channel();
    learner.wake_when_behind_at_most(
        0,
        Box::new(move || {
            let _ = wake.send(());
        }),
    );
    learner.wait_caught_up().unwrap();
    woken
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("woken once caught up");
    assert_eq!(a.counts().updates, 20);

    // The restore makes the recorded updates; its own learner makes the rest, the same.
    let mut b = restore_journal(&space, &spec, &checkpoint, &journal).unwrap();
    assert_eq!(b.counts().updates, recorded);
    b.learn_in_background().unwrap().wait_caught_up().unwrap();
    assert_eq!(b.save(), a.save());
    // A journal that claims more updates than its results allow is refused.
    let mut edited: serde_json::Value = serde_json::from_slice(&journal).unwrap();
    edited["core"]["counts"]["updates"] = serde_json::json!(21);
    let edited = serde_json::to_vec(&edited).unwrap();
    let err = restore_journal(&space, &spec, &checkpoint, &edited)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("do not give its recorded baseline"), "{err}");
}

#[test]
fn a_checkpoint_and_its_journal_restore_exactly_the_same_controller() {
    let space = nb201();
    for algorithm in [Algorithm::Ppo, Algorithm::Reinforce] {
        let mut spec = spec(algorithm);
        if let Some(c) = spec.controller.as_mut() {
            c.replay_top = 2; // the elite joins every update
        }
        let mut a = build(&space, &spec, 11).unwrap();
        assert_eq!(a.journal_len(), None);
        assert_eq!(a.save_journal(), None, "no checkpoint yet");
        drive(a.as_mut(), 3);
        let checkpoint = a.checkpoint();
        assert_eq!(a.journal_len(), Some(0));
        let updates = a.counts().updates;
        // Results after the checkpoint, some while proposals are pending.
        drive(a.as_mut(), 7);
        let open = a.ask(2);
        let journal = a.save_journal().unwrap();
        assert_eq!(
            a.journal_len(),
            Some(20),
            "{algorithm:?}: 21 proposed, 1 failed"
        );
        assert!(a.counts().updates >= updates + 5, "{:?}", a.counts());
        assert!(
            journal.len() * 50 < checkpoint.len(),
            "{algorithm:?}: journal {} bytes, checkpoint {}",
            journal.len(),
            checkpoint.len()
        );
        let mut b = restore_journal(&space, &spec, &checkpoint, &journal).unwrap();
        assert_eq!(
            b.save(),
            a.save(),
            "{algorithm:?}: same weights, moments and state"
        );
        assert_eq!(b.pending(), a.pending());
        for p in &open {
            a.tell(p.id, reward(p)).unwrap();
            b.tell(p.id, reward(p)).unwrap();
        }
        assert_eq!(drive(a.as_mut(), 4), drive(b.as_mut(), 4), "{algorithm:?}");
        assert_eq!(b.save_journal(), a.save_journal());

        // Not its checkpoint: an older or a newer one.
        let err = |c: &[u8], j: &[u8]| {
            restore_journal(&space, &spec, c, j)
                .err()
                .unwrap()
                .to_string()
        };
        let older = build(&space, &spec, 11).unwrap().save();
        assert!(
            err(&older, &journal).contains("does not start at this checkpoint"),
            "{}",
            err(&older, &journal)
        );
        // A result changed after it was recorded: the replay does not reproduce the state.
        let mut edited: serde_json::Value = serde_json::from_slice(&journal).unwrap();
        let reward = &mut edited["journal"]["told"][0]["reward"];
        *reward = serde_json::json!(reward.as_f64().unwrap() + 0.5);
        let edited = serde_json::to_vec(&edited).unwrap();
        assert!(
            err(&checkpoint, &edited).contains("do not give its recorded baseline"),
            "{}",
            err(&checkpoint, &edited)
        );
        assert!(err(&checkpoint, b"{")
            .starts_with("strategy state cannot be restored: policy journal:"));
        // The spec names the other controller algorithm.
        let mut other = spec.clone();
        other.algorithm = if algorithm == Algorithm::Ppo {
            Algorithm::Reinforce
        } else {
            Algorithm::Ppo
        };
        let theirs = restore_journal(&space, &other, &checkpoint, &journal)
            .err()
            .unwrap()
            .to_string();
        assert!(theirs.contains("the spec says"), "{theirs}");
    }
    // Strategies without tensors keep no journal.
    for algorithm in [Algorithm::Evolution, Algorithm::Random] {
        let mut s = build(&space, &spec(algorithm), 1).unwrap();
        assert_eq!(s.checkpoint(), s.save());
        assert_eq!((s.journal_len(), s.save_journal()), (None, None));
        let saved = s.save();
        assert!(restore_journal(&space, &spec(algorithm), &saved, b"{}")
            .err()
            .unwrap()
            .to_string()
            .contains("kept by controllers (PPO, REINFORCE) only"));
    }
}

#[test]
fn without_dedupe_the_state_does_not_grow_with_each_proposal() {
    let space = nb201();
    let mut spec = spec(Algorithm::Random);
    spec.dedupe = false;
    let mut s = build(&space, &spec, 1).unwrap();
    let empty = s.save().len();
    drive(s.as_mut(), 100);
    assert_eq!(s.counts().proposed, 300);
    assert!(
        s.save().len() < empty + 100,
        "{} -> {}",
        empty,
        s.save().len()
    );
    spec.dedupe = true;
    let mut s = build(&space, &spec, 1).unwrap();
    drive(s.as_mut(), 100);
    assert!(
        s.save().len() > empty + 300 * 16,
        "the dedupe set holds 300 hashes"
    );
}

#[test]
fn the_same_seed_gives_the_same_search_and_another_seed_another() {
    for algorithm in ALL {
        let run = |seed| drive(build(&nb201(), &spec(algorithm), seed).unwrap().as_mut(), 4);
        assert_eq!(run(1), run(1), "{algorithm:?}");
        assert_ne!(run(1), run(2), "{algorithm:?}");
    }
}

#[test]
fn dedupe_proposes_every_child_once_then_reports_the_space_exhausted() {
    for algorithm in ALL {
        let mut s = build(&tiny(), &spec(algorithm), 3).unwrap();
        let mut hashes = HashSet::new();
        loop {
            let batch = s.ask(5);
            if batch.is_empty() {
                break;
            }
            for p in batch {
                assert!(
                    hashes.insert(p.genotype.hash()),
                    "{algorithm:?}: {}",
                    p.genotype
                );
                s.tell(p.id, reward(&p)).unwrap();
            }
        }
        assert_eq!(hashes.len(), 64, "{algorithm:?}");
        assert_eq!(s.counts().proposed, 64);
        assert!(s.ask(1).is_empty());
    }
    // Without dedupe the same child comes again.
    let mut s = build(
        &tiny(),
        &StrategySpec {
            dedupe: false,
            ..spec(Algorithm::Random)
        },
        3,
    )
    .unwrap();
    let proposals = s.ask(200);
    let distinct: HashSet<_> = proposals.iter().map(|p| p.genotype.hash()).collect();
    assert_eq!(proposals.len(), 200);
    assert!(distinct.len() <= 64);
}

#[test]
fn results_are_checked_and_nothing_is_credited_twice() {
    for algorithm in ALL {
        let mut s = build(&nb201(), &spec(algorithm), 0).unwrap();
        let p = s.ask(2);
        assert_eq!(p.iter().map(|p| p.id).collect::<Vec<_>>(), [0, 1]);
        assert!(matches!(
            s.tell(0, f64::NAN),
            Err(StrategyError::BadReward { id: 0, .. })
        ));
        assert_eq!(
            s.pending(),
            [0, 1],
            "a bad reward leaves the proposal pending"
        );
        s.tell(1, 0.5).unwrap();
        assert_eq!(s.tell(1, 0.5), Err(StrategyError::UnknownProposal(1)));
        assert_eq!(s.tell(9, 0.5), Err(StrategyError::UnknownProposal(9)));
        s.fail(0).unwrap();
        assert_eq!(s.fail(0), Err(StrategyError::UnknownProposal(0)));
        assert_eq!(s.tell(0, 0.5), Err(StrategyError::UnknownProposal(0)));
        let c = s.counts();
        assert_eq!((c.proposed, c.told, c.failed, c.pending), (2, 1, 1, 0));
        assert_eq!(
            StrategyError::BadReward {
                id: 3,
                reward: f64::INFINITY
            }
            .to_string(),
            "reward of proposal 3 is inf; allowed: a finite number"
        );
    }
}

#[test]
fn the_controller_learns_from_rewards_credited_out_of_order() {
    // Reward 1 when the first edge is a 3x3 convolution, else 0; results arrive reversed.
    for (algorithm, advantage) in [
        (Algorithm::Ppo, Advantage::BatchRank),
        (Algorithm::Ppo, Advantage::Baseline),
        (Algorithm::Reinforce, Advantage::BatchRank),
        (Algorithm::Reinforce, Advantage::Baseline),
    ] {
        let space = nb201();
        let conv = space.decisions()[0]
            .choices
            .iter()
            .position(|c| c == "nor_conv_3x3")
            .unwrap();
        let mut s = Controller::new(
            &space,
            ControllerSettings::from_spec(
                &ControllerSpec {
                    batch_size: 8,
                    learning_rate: 0.05,
                    advantage,
                    ..ControllerSpec::default()
                },
                if algorithm == Algorithm::Ppo {
                    PolicyGradient::Ppo
                } else {
                    PolicyGradient::Reinforce
                },
            )
            .unwrap(),
            false,
            11,
        )
        .unwrap();
        let (_, before) = s.greedy();
        let mut hits_late = 0;
        for round in 0..30 {
            let batch = s.ask(8);
            for p in batch.iter().rev() {
                s.tell(p.id, f64::from(u8::from(p.decisions[0] == conv)))
                    .unwrap();
            }
            if round >= 25 {
                hits_late += batch.iter().filter(|p| p.decisions[0] == conv).count();
            }
        }
        let (greedy, _) = s.greedy();
        assert_eq!(greedy[0], conv, "{algorithm:?} {advantage:?}");
        // Uniform would give 1 in 5 (8 of 40); the trained policy picks it nearly always.
        assert!(
            hits_late >= 30,
            "{algorithm:?} {advantage:?}: {hits_late} of 40"
        );
        assert!(s.baseline().unwrap() > 0.5, "{algorithm:?}");
        assert!(
            before < 0.01,
            "the initial policy is near uniform: {before}"
        );
    }
}

#[test]
fn evolution_mutates_one_decision_of_a_population_member() {
    let space = nb201();
    let mut s = Evolution::new(
        &space,
        &EvolutionSpec {
            population_size: 5,
            sample_size: 2,
        },
        true,
        4,
    )
    .unwrap();
    let mut told: Vec<Vec<usize>> = Vec::new();
    for _ in 0..40 {
        let p = s.ask(1).pop().unwrap();
        if told.len() >= 5 {
            let population = &told[told.len() - 5..];
            assert!(
                population.iter().any(|m| m
                    .iter()
                    .zip(&p.decisions)
                    .filter(|(a, b)| a != b)
                    .count()
                    == 1),
                "{:?} is no single mutant of {population:?}",
                p.decisions
            );
        }
        s.tell(p.id, reward(&p)).unwrap();
        told.push(p.decisions);
    }
}

#[test]
fn every_space_works_with_every_strategy() {
    let spaces = [
        SearchSpaceSpec::Nasnet(NasnetSpaceSpec::default()),
        SearchSpaceSpec::Mnasnet(MnasnetSpaceSpec::default()),
    ];
    for space in spaces.map(|s| s.build().unwrap()) {
        for algorithm in ALL {
            let mut s = build(&space, &spec(algorithm), 5).unwrap();
            let got = drive(s.as_mut(), 4);
            assert_eq!(got.len(), 12, "{algorithm:?} {:?}", space.kind());
            for (_, g, _) in &got {
                space.validate(&g.parse().unwrap()).unwrap();
            }
        }
    }
}

#[test]
fn bad_settings_and_bad_states_are_named() {
    let space = nb201();
    let err = |spec: StrategySpec| build(&space, &spec, 0).err().unwrap().to_string();
    assert_eq!(
        err(StrategySpec {
            evolution: Some(EvolutionSpec {
                population_size: 1,
                sample_size: 1
            }),
            ..spec(Algorithm::Evolution)
        }),
        "strategy.evolution.populationSize: 1 is out of range; allowed: 2..=100000"
    );
    assert_eq!(
        err(StrategySpec {
            evolution: Some(EvolutionSpec {
                population_size: 4,
                sample_size: 5
            }),
            ..spec(Algorithm::Evolution)
        }),
        "strategy.evolution.sampleSize: 5 is out of range; allowed: 1..=populationSize (4)"
    );
    assert_eq!(
        err(StrategySpec {
            controller: Some(ControllerSpec {
                learning_rate: f64::NAN,
                ..ControllerSpec::default()
            }),
            ..spec(Algorithm::Ppo)
        }),
        "strategy.controller.learningRate: NaN is out of range; allowed: 0..=1"
    );

    let saved = build(&space, &spec(Algorithm::Ppo), 0).unwrap().save();
    let state_err = |space: &SearchSpace, spec: &StrategySpec, bytes: &[u8]| {
        restore(space, spec, bytes).err().unwrap().to_string()
    };
    assert!(state_err(&space, &spec(Algorithm::Ppo), b"not a state")
        .starts_with("strategy state cannot be restored: not a safetensors state"));
    assert_eq!(
        state_err(&space, &spec(Algorithm::Evolution), &saved),
        "strategy state cannot be restored: saved by algorithm \"PPO\", the spec says \"Evolution\""
    );
    assert!(state_err(&tiny(), &spec(Algorithm::Ppo), &saved)
        .contains("saved for a space with choices per decision [5, 5, 5, 5, 5, 5]"));
    let wider = StrategySpec {
        controller: Some(ControllerSpec {
            lstm_units: 32,
            ..ControllerSpec::default()
        }),
        ..spec(Algorithm::Ppo)
    };
    assert!(state_err(&space, &wider, &saved).contains("lstmUnits or the space changed?"));
}

//! Property test (proptest) of how a ChildTrial reads its trainer's termination message: any
//! text either gives metrics inside every range of the ChildTrial status schema (so the status
//! write cannot be refused and the reward is a real number) or a failure reason with a message
//! (the trial fails, the search goes on).

use nasop::trial::plan::read_result;
use nasop_crds::result::{EpochRecord, FailureReason, TrainReport, TrainResult};
use nasop_crds::SpaceKind;
use proptest::prelude::*;

fn valid(epochs: usize) -> String {
    TrainResult::succeeded(TrainReport {
        genotype_hash: "af327c6e56e7e0c8".into(),
        space: SpaceKind::Nb201,
        device: "cpu".into(),
        seed: 1,
        params: 5_000,
        macs: 90_000,
        validation_accuracy: 0.75,
        validation_loss: 0.7,
        test_accuracy: None,
        final_train_loss: 0.6,
        epochs: epochs as u32,
        steps: 10,
        batch_size: 64,
        train_examples: 640,
        validation_examples: 64,
        wall_seconds: 3.0,
        train_seconds: 2.5,
        samples_per_second: 256.0,
        learning_curve: (1..=epochs)
            .map(|e| EpochRecord {
                epoch: e as u32,
                train_loss: 1.0,
                train_accuracy: 0.5,
                validation_loss: 1.0,
                validation_accuracy: 0.5,
                learning_rate: 0.1,
                seconds: 1.0,
            })
            .collect(),
    })
    .termination_message()
}

fn check(text: &str) {
    match read_result(Some(text)) {
        Ok(m) => {
            let fraction = |v: f64| (0.0..=1.0).contains(&v);
            assert!(m.accuracy.is_some_and(fraction), "{text}");
            assert!(m.loss.is_some_and(|l| l.is_finite() && l >= 0.0), "{text}");
            assert!(
                m.train_seconds.is_some_and(|s| s.is_finite() && s >= 0.0),
                "{text}"
            );
            assert!(
                m.params.is_some_and(|p| p >= 0) && m.macs.is_some_and(|p| p >= 0),
                "{text}"
            );
            assert!(m.epochs.is_some_and(|e| e >= 0), "{text}");
            assert!(m.learning_curve.len() <= 1000, "{text}");
            assert!(m.learning_curve.iter().all(|v| fraction(*v)), "{text}");
        }
        Err((reason, message)) => {
            assert!(!message.is_empty(), "{text}: {reason:?} without a message");
        }
    }
}

#[test]
fn the_kinds_of_bad_result_each_fail_the_trial_as_bad_result() {
    let good = valid(3);
    assert!(read_result(Some(&good)).is_ok());
    let cases = [
        ("missing", None),
        ("empty", Some(String::new())),
        (
            "truncated by the kubelet",
            Some(good[..good.len() / 2].to_string()),
        ),
        (
            "another schema",
            Some(good.replace("train-result/v1", "train-result/v9")),
        ),
        (
            "accuracy above 1",
            Some(good.replace("\"validationAccuracy\":0.75", "\"validationAccuracy\":1.75")),
        ),
        (
            "NaN written as a string",
            Some(good.replace("\"validationLoss\":0.7", "\"validationLoss\":\"NaN\"")),
        ),
        (
            "infinity overflowing f64",
            Some(good.replace("\"validationLoss\":0.7", "\"validationLoss\":1e999")),
        ),
        (
            "negative parameters",
            Some(good.replace("\"params\":5000", "\"params\":-5000")),
        ),
        (
            "epochs past int32",
            Some(good.replace("\"epochs\":3", "\"epochs\":4294967295")),
        ),
        ("oversized: 1 MB of junk", Some("x".repeat(1 << 20))),
    ];
    for (what, text) in cases {
        let (reason, message) = read_result(text.as_deref()).expect_err(what);
        assert_eq!(reason, FailureReason::BadResult, "{what}: {message}");
        assert!(
            message.len() < 1000,
            "{what}: a short message, got {} bytes",
            message.len()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        // A fixed seed: CI sees the same cases every run (a failure prints its minimal input).
        rng_seed: proptest::test_runner::RngSeed::Fixed(303),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_termination_message_gives_schema_safe_metrics_or_a_reason(text in ".{0,300}") {
        check(&text);
    }

    #[test]
    fn any_edit_of_a_real_message_gives_schema_safe_metrics_or_a_reason(
        epochs in 0..1500usize,
        at in any::<usize>(),
        insert in proptest::sample::select(vec![
            "", "-", "9", "99999999999999999999", "e308", ".5", "\"", "}", ",\"x\":1", "null",
        ]),
        delete in 0..6usize,
    ) {
        let good = valid(epochs);
        let mut chars: Vec<char> = good.chars().collect();
        let i = at % chars.len();
        let end = (i + delete).min(chars.len());
        chars.splice(i..end, insert.chars());
        check(&chars.into_iter().collect::<String>());
    }
}

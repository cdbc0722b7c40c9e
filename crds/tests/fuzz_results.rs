//! Property tests (proptest) of the result documents a trainer leaves in its termination
//! message: arbitrary text never panics the parsers; a document with any field replaced by any
//! JSON value either fails to parse or satisfies every range the operator relies on; a document
//! cut short never parses; and `termination_message` always fits the kubelet's 4096 bytes and
//! parses back, whatever the learning curve, device name or failure message.

use nasop_crds::result::{
    EpochRecord, FailureReason, ProbeOutcome, ProbeResult, TrainOutcome, TrainReport, TrainResult,
    MAX_MESSAGE_CHARS, TERMINATION_MESSAGE_MAX_BYTES,
};
use nasop_crds::SpaceKind;
use proptest::prelude::*;
use serde_json::{json, Value};

fn report(epochs: usize, device: String) -> TrainReport {
    TrainReport {
        genotype_hash: "af327c6e56e7e0c8".into(),
        space: SpaceKind::Nb201,
        device,
        seed: 7,
        params: 1_073_466,
        macs: 153_272_960,
        validation_accuracy: 0.5,
        validation_loss: 1.4,
        test_accuracy: Some(0.49),
        final_train_loss: 1.2,
        epochs: epochs as u32,
        steps: 100 * epochs as u64,
        batch_size: 64,
        train_examples: 6400,
        validation_examples: 640,
        wall_seconds: 12.5,
        train_seconds: 11.0,
        samples_per_second: 580.0,
        learning_curve: (1..=epochs)
            .map(|e| EpochRecord {
                epoch: e as u32,
                train_loss: 2.0 / e as f64,
                train_accuracy: 1.0 - 1.0 / (e as f64 + 1.0),
                validation_loss: 2.1 / e as f64,
                validation_accuracy: 1.0 - 1.0 / (e as f64 + 1.5),
                learning_rate: 0.1,
                seconds: e as f64,
            })
            .collect(),
    }
}

/// Every range the operator relies on (status schema, reward), for a parsed success.
fn assert_trustworthy(r: &TrainReport, text: &str) {
    let fraction = |v: f64| (0.0..=1.0).contains(&v);
    let non_negative = |v: f64| v.is_finite() && v >= 0.0;
    assert!(fraction(r.validation_accuracy), "{text}");
    assert!(r.test_accuracy.is_none_or(fraction), "{text}");
    for v in [
        r.validation_loss,
        r.final_train_loss,
        r.wall_seconds,
        r.train_seconds,
        r.samples_per_second,
    ] {
        assert!(non_negative(v), "{v} in {text}");
    }
    assert!(r.params >= 0 && r.macs >= 0, "{text}");
    assert!(i32::try_from(r.epochs).is_ok(), "{text}");
    for e in &r.learning_curve {
        assert!(
            fraction(e.validation_accuracy) && fraction(e.train_accuracy),
            "{text}"
        );
        assert!(
            non_negative(e.train_loss) && non_negative(e.validation_loss),
            "{text}"
        );
    }
}

/// Any JSON value, biased to the edges of numbers.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        proptest::sample::select(vec![
            json!(-1),
            json!(0),
            json!(1),
            json!(1.0000001),
            json!(-0.0),
            json!(2147483648u64),
            json!(4294967295u64),
            json!(1e308),
            json!(-1e308),
            json!(5e-324),
            json!(""),
            json!("NaN"),
            json!("Infinity"),
            json!("0.5"),
        ]),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Where to put the value: a top-level field (or a new one), or a field of an epoch record.
fn field() -> impl Strategy<Value = (bool, String)> {
    let top = proptest::sample::select(vec![
        "schema",
        "outcome",
        "genotypeHash",
        "space",
        "device",
        "seed",
        "params",
        "macs",
        "validationAccuracy",
        "validationLoss",
        "testAccuracy",
        "finalTrainLoss",
        "epochs",
        "steps",
        "batchSize",
        "trainExamples",
        "validationExamples",
        "wallSeconds",
        "trainSeconds",
        "samplesPerSecond",
        "learningCurve",
        "reason",
        "message",
        "extra",
    ]);
    let epoch = proptest::sample::select(vec![
        "epoch",
        "trainLoss",
        "trainAccuracy",
        "validationLoss",
        "validationAccuracy",
        "learningRate",
        "seconds",
    ]);
    prop_oneof![
        top.prop_map(|f| (false, f.to_string())),
        epoch.prop_map(|f| (true, f.to_string())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        // A fixed seed: CI sees the same cases every run (a failure prints its minimal input).
        rng_seed: proptest::test_runner::RngSeed::Fixed(202),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_text_never_panics_the_parsers(text in ".{0,200}") {
        let _ = TrainResult::parse(&text);
        let _ = ProbeResult::parse(&text);
    }

    #[test]
    fn a_document_with_any_field_replaced_is_rejected_or_trustworthy(
        (in_epoch, name) in field(),
        value in json_value(),
        remove in any::<bool>(),
    ) {
        let mut doc = serde_json::to_value(TrainResult::succeeded(report(3, "cpu".into()))).unwrap();
        let target = if in_epoch {
            &mut doc["learningCurve"][1]
        } else {
            &mut doc
        };
        let object = target.as_object_mut().unwrap();
        if remove {
            object.remove(&name);
        } else {
            object.insert(name, value);
        }
        let text = doc.to_string();
        if let Ok(TrainResult { outcome: TrainOutcome::Succeeded(r), .. }) = TrainResult::parse(&text) {
            assert_trustworthy(&r, &text);
        }
    }

    #[test]
    fn a_termination_message_cut_short_never_parses(epochs in 0..300usize, cut in 0.0..1.0f64) {
        let text = TrainResult::succeeded(report(epochs, "cuda:0".into())).termination_message();
        let mut end = (text.len() as f64 * cut) as usize;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        prop_assert!(TrainResult::parse(&text[..end]).is_err(), "{}", &text[..end]);
    }

    #[test]
    fn a_success_always_fits_and_reads_back(epochs in 0..3000usize, device in ".{0,3000}") {
        let full = report(epochs, device.clone());
        let text = TrainResult::succeeded(full.clone()).termination_message();
        prop_assert!(text.len() <= TERMINATION_MESSAGE_MAX_BYTES, "{} bytes", text.len());
        let Ok(TrainResult { outcome: TrainOutcome::Succeeded(r), .. }) = TrainResult::parse(&text) else {
            panic!("does not read back: {text}");
        };
        assert_trustworthy(&r, &text);
        // Everything but the curve (thinned) and an absurd device name (cut) is kept.
        prop_assert_eq!(
            (r.validation_accuracy, r.params, r.macs, r.epochs, r.seed),
            (full.validation_accuracy, full.params, full.macs, full.epochs, full.seed)
        );
        if device.len() <= 64 {
            prop_assert_eq!(&r.device, &device);
        }
        // The kept epochs are in order and end with the last one.
        let kept: Vec<u32> = r.learning_curve.iter().map(|e| e.epoch).collect();
        prop_assert!(kept.windows(2).all(|w| w[0] < w[1]));
        if let Some(last) = kept.last() {
            prop_assert_eq!(*last as usize, epochs);
        }
        if epochs <= 10 && device.len() <= 64 {
            prop_assert_eq!(kept.len(), epochs, "a short curve is kept whole");
        }
    }

    #[test]
    fn a_failure_always_fits_and_keeps_its_reason(
        reason in proptest::sample::select(FailureReason::ALL.to_vec()),
        message in prop_oneof![".{0,5000}", "[\u{0}-\u{1f}]{0,3000}", "[\u{1F600}-\u{1F64F}]{0,2000}"],
    ) {
        let text = TrainResult::failed(reason, message.clone()).termination_message();
        prop_assert!(text.len() <= TERMINATION_MESSAGE_MAX_BYTES, "{} bytes", text.len());
        let Ok(TrainResult { outcome: TrainOutcome::Failed(f), .. }) = TrainResult::parse(&text) else {
            panic!("does not read back: {text}");
        };
        prop_assert_eq!(f.reason, reason);
        prop_assert!(f.message.chars().count() <= MAX_MESSAGE_CHARS);
        match f.message.strip_suffix("...") {
            Some(head) if f.message != message => prop_assert!(message.starts_with(head)),
            _ => prop_assert_eq!(&f.message, &message),
        }

        let text = ProbeResult::failed(reason, message.clone()).termination_message();
        prop_assert!(text.len() <= TERMINATION_MESSAGE_MAX_BYTES, "{} bytes", text.len());
        let Ok(ProbeResult { outcome: ProbeOutcome::Failed(f), .. }) = ProbeResult::parse(&text) else {
            panic!("does not read back: {text}");
        };
        prop_assert_eq!(f.reason, reason);
    }
}

//! Test fixtures shared by the controllers' tests: objects as the API server hands them over,
//! trainer and probe result documents, and Pods in each phase.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use nasop_crds::api::{ChildTrial, DeviceIdentity, LatencySummary};
use nasop_crds::result::{
    EpochRecord, FailureReason, ProbeReport, ProbeResult, TrainReport, TrainResult, Versions,
};
use nasop_crds::space::SpaceKind;
use serde_json::json;

/// A YAML fixture read through JSON, as the API server hands objects over.
pub fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    let value: serde_json::Value = serde_yaml::from_str(text).unwrap();
    serde_json::from_value(value).unwrap()
}

/// The GPU trial fixture (no latency objective).
pub fn gpu_trial() -> ChildTrial {
    from_yaml(include_str!("trial/fixtures/trial-gpu.yaml"))
}

/// The GPU trial fixture with a soft latency objective of `target_ms` on device class `pixel`.
pub fn latency_trial(target_ms: f64) -> ChildTrial {
    let mut t = gpu_trial();
    t.spec.objective = serde_json::from_value(json!({
        "latency": {"targetMs": target_ms, "deviceClass": "pixel"}
    }))
    .unwrap();
    t
}

/// A fixed time.
pub fn now() -> Time {
    Time("2026-11-29T12:00:00Z".parse().unwrap())
}

/// A trainer's success document with validation accuracy `accuracy`.
pub fn train_success(accuracy: f64) -> String {
    TrainResult::succeeded(TrainReport {
        genotype_hash: "af327c6e56e7e0c8".into(),
        space: SpaceKind::Nb201,
        device: "cuda:0".into(),
        seed: 42,
        params: 1_073_466,
        macs: 153_272_960,
        validation_accuracy: accuracy,
        validation_loss: 0.9,
        test_accuracy: None,
        final_train_loss: 0.8,
        epochs: 2,
        steps: 100,
        batch_size: 256,
        train_examples: 45_000,
        validation_examples: 5_000,
        wall_seconds: 321.5,
        train_seconds: 300.0,
        samples_per_second: 300.0,
        learning_curve: (1..=2)
            .map(|e| EpochRecord {
                epoch: e,
                train_loss: 1.0,
                train_accuracy: 0.5,
                validation_loss: 1.0,
                validation_accuracy: accuracy - 0.1 / f64::from(e),
                learning_rate: 0.025,
                seconds: 150.0 * f64::from(e),
            })
            .collect(),
    })
    .termination_message()
}

/// A trainer's failure document.
pub fn train_failure(reason: FailureReason, message: &str) -> String {
    TrainResult::failed(reason, message).termination_message()
}

/// A probe's success document with median latency `median_ms`.
pub fn probe_success(median_ms: f64) -> String {
    serde_json::to_string(&ProbeResult::succeeded(ProbeReport {
        genotype_hash: "af327c6e56e7e0c8".into(),
        space: SpaceKind::Nb201,
        device: "cpu".into(),
        latency: LatencySummary {
            median_ms,
            p90_ms: median_ms * 1.1,
            mean_ms: median_ms * 1.02,
            stddev_ms: median_ms * 0.03,
            min_ms: median_ms * 0.95,
            repeats: 50,
        },
        warmup: 10,
        input_shape: [1, 3, 32, 32],
        threads: 1,
        channels_last: true,
        identity: DeviceIdentity {
            node_name: Some("pixel-node-1".into()),
            cpu_model: Some("Cortex-A76".into()),
            gpu_name: None,
        },
        versions: Versions {
            nasop: "0.1.0".into(),
            libtorch: "2.11.0".into(),
        },
        params: 1_073_466,
        macs: 153_272_960,
        weights: "random".into(),
    }))
    .unwrap()
}

/// A Pod named `name` in `phase` whose first container terminated with `exit_code` and
/// `message` (phases `Succeeded` and `Failed`), or has no container state (other phases).
pub fn pod(name: &str, phase: &str, exit_code: i32, message: Option<&str>) -> Pod {
    let mut status = json!({"phase": phase, "startTime": "2026-11-29T11:00:00Z"});
    if phase == "Succeeded" || phase == "Failed" {
        let mut t = json!({"exitCode": exit_code, "reason": if exit_code == 0 {"Completed"} else {"Error"}});
        if let Some(m) = message {
            t["message"] = json!(m);
        }
        status["containerStatuses"] = json!([{"name": "trainer", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": t}}]);
    }
    serde_json::from_value(
        json!({"metadata": {"name": name, "namespace": "nas"}, "status": status}),
    )
    .unwrap()
}

/// A Pod named `name` evicted by the kubelet.
pub fn evicted_pod(name: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "nas"},
        "status": {"phase": "Failed", "reason": "Evicted",
                   "message": "The node was low on resource: memory."}}))
    .unwrap()
}

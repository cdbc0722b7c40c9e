use super::*;
use crate::testing::{
    evicted_pod, gpu_trial, latency_trial, now, pod, probe_success, train_failure, train_success,
};
use nasop_crds::api::LatencyProbeStatus;

fn with_status(mut t: ChildTrial, status: ChildTrialStatus) -> ChildTrial {
    t.status = Some(status);
    t
}

fn attempt(n: i32, disruptions: i32) -> ChildTrialStatus {
    ChildTrialStatus {
        phase: Some(TrialPhase::Running),
        attempts: n,
        disruptions,
        pod_name: Some(pod_name("cifar-nb201-00042", n)),
        ..ChildTrialStatus::default()
    }
}

#[test]
fn a_new_trial_creates_attempt_one() {
    let p = plan(&gpu_trial(), None, None, &now());
    assert_eq!(p.create_pod, Some(1));
    assert_eq!(p.status.attempts, 1);
    assert_eq!(p.status.phase, Some(TrialPhase::Pending));
    assert_eq!(
        p.status.pod_name.as_deref(),
        Some("cifar-nb201-00042-train-1")
    );
    assert!(p.create_probe.is_none() && !p.delete_pods);
}

#[test]
fn a_completed_pod_gives_metrics_and_the_reward() {
    let t = with_status(gpu_trial(), attempt(1, 0));
    let done = pod("x", "Succeeded", 0, Some(&train_success(0.9123)));
    let p = plan(&t, Some(&done), None, &now());
    let s = &p.status;
    assert_eq!(s.phase, Some(TrialPhase::Succeeded));
    assert_eq!(s.reward, Some(0.9123));
    let m = s.metrics.as_ref().unwrap();
    assert_eq!(m.accuracy, Some(0.9123));
    assert_eq!(m.params, Some(1_073_466));
    assert_eq!(m.macs, Some(153_272_960));
    assert_eq!(m.train_seconds, Some(321.5));
    assert_eq!(m.epochs, Some(2));
    assert_eq!(m.learning_curve.len(), 2);
    assert_eq!(s.completion_time, Some(now()));
    assert_eq!(p.notes[0].reason, "TrialSucceeded");
    // The same plan drops the pod name and deletes the pods (after the status is written).
    assert!(p.delete_pods && p.create_pod.is_none());
    assert_eq!(s.pod_name, None);
    let clean = plan(
        &with_status(gpu_trial(), p.status.clone()),
        None,
        None,
        &now(),
    );
    assert!(!clean.delete_pods);
    assert_eq!(clean.status, p.status);
    // A trial finished with its pod still named (by an earlier version) is cleaned once.
    let mut named = p.status.clone();
    named.pod_name = Some(pod_name("cifar-nb201-00042", 1));
    let again = plan(&with_status(gpu_trial(), named), None, None, &now());
    assert!(again.delete_pods && again.create_pod.is_none());
    assert_eq!(again.status, p.status);
}

#[test]
fn a_running_pod_sets_the_start_time_once() {
    let t = with_status(gpu_trial(), attempt(1, 0));
    let p = plan(&t, Some(&pod("x", "Running", 0, None)), None, &now());
    assert_eq!(p.status.phase, Some(TrialPhase::Running));
    assert_eq!(
        p.status.start_time,
        Some(Time("2026-11-29T11:00:00Z".parse().unwrap()))
    );
    assert_eq!(p.create_pod, None);
}

#[test]
fn a_failing_pod_is_retried_until_max_attempts_then_fails() {
    // The fixture allows 3 attempts (the default).
    let failed = pod(
        "x",
        "Failed",
        1,
        Some(&train_failure(
            FailureReason::Internal,
            "CUDA error: unspecified launch failure",
        )),
    );
    let p1 = plan(
        &with_status(gpu_trial(), attempt(1, 0)),
        Some(&failed),
        None,
        &now(),
    );
    assert_eq!(p1.create_pod, Some(2));
    assert_eq!(p1.status.attempts, 2);
    assert_eq!(p1.notes[0].reason, "AttemptFailed");
    let p2 = plan(
        &with_status(gpu_trial(), p1.status),
        Some(&failed),
        None,
        &now(),
    );
    assert_eq!(p2.create_pod, Some(3));
    let p3 = plan(
        &with_status(gpu_trial(), p2.status),
        Some(&failed),
        None,
        &now(),
    );
    assert_eq!(p3.create_pod, None);
    assert_eq!(p3.status.phase, Some(TrialPhase::Failed));
    assert_eq!(p3.status.reason.as_deref(), Some("Internal"));
    assert_eq!(
        p3.status.message.as_deref(),
        Some("CUDA error: unspecified launch failure (after 3 failed attempts)")
    );
}

#[test]
fn failures_that_would_repeat_are_not_retried() {
    let diverged = pod(
        "x",
        "Failed",
        5,
        Some(&train_failure(
            FailureReason::Diverged,
            "loss is NaN at epoch 1",
        )),
    );
    let p = plan(
        &with_status(gpu_trial(), attempt(1, 0)),
        Some(&diverged),
        None,
        &now(),
    );
    assert_eq!(p.create_pod, None);
    assert_eq!(p.status.reason.as_deref(), Some("Diverged"));
    assert_eq!(p.status.message.as_deref(), Some("loss is NaN at epoch 1"));
}

#[test]
fn evictions_and_lost_pods_are_retried_without_counting_a_failure() {
    let t = with_status(gpu_trial(), attempt(3, 2));
    // 3 attempts, 2 disrupted: 1 failed attempt used; an eviction still retries.
    let p = plan(&t, Some(&evicted_pod("x")), None, &now());
    assert_eq!(p.create_pod, Some(4));
    assert_eq!((p.status.attempts, p.status.disruptions), (4, 3));
    assert_eq!(p.notes[0].reason, "PodDisrupted");
    let gone = plan(&with_status(gpu_trial(), p.status), None, None, &now());
    assert_eq!(gone.create_pod, Some(5));
    assert_eq!(gone.status.disruptions, 4);
    // Past the bound, the trial fails with Disrupted.
    let worn = with_status(gpu_trial(), attempt(12, MAX_DISRUPTIONS));
    let p = plan(&worn, Some(&evicted_pod("x")), None, &now());
    assert_eq!(p.status.reason.as_deref(), Some("Disrupted"));
    assert_eq!(p.create_pod, None);
}

#[test]
fn a_bad_result_fails_the_trial_with_a_reason() {
    let t = with_status(gpu_trial(), attempt(1, 0));
    let truncated = &train_success(0.9)[..40];
    let p = plan(
        &t,
        Some(&pod("x", "Succeeded", 0, Some(truncated))),
        None,
        &now(),
    );
    assert_eq!(p.status.phase, Some(TrialPhase::Failed));
    assert_eq!(p.status.reason.as_deref(), Some("BadResult"));
    assert!(
        p.status
            .message
            .as_deref()
            .unwrap()
            .starts_with("the trainer's result cannot be trusted"),
        "{:?}",
        p.status.message
    );
    let p = plan(&t, Some(&pod("x", "Succeeded", 0, None)), None, &now());
    assert_eq!(p.status.reason.as_deref(), Some("BadResult"));
    // Accuracy outside [0, 1] gets no reward.
    let p = plan(
        &t,
        Some(&pod("x", "Succeeded", 0, Some(&train_success(1.5)))),
        None,
        &now(),
    );
    assert_eq!(p.status.reason.as_deref(), Some("BadResult"));
}

#[test]
fn a_latency_objective_waits_for_the_probe_then_rewards_acc_times_latency() {
    let t = with_status(latency_trial(2.0), attempt(1, 0));
    let trained = pod("x", "Succeeded", 0, Some(&train_success(0.8)));
    let p = plan(&t, Some(&trained), None, &now());
    assert_eq!(p.status.phase, Some(TrialPhase::Running));
    assert!(p.status.metrics.is_some() && p.status.reward.is_none());
    let probe = p.create_probe.clone().unwrap();
    assert_eq!(
        probe.metadata.name.as_deref(),
        Some("cifar-nb201-00042-probe")
    );
    assert_eq!(probe.spec.device_class, "pixel");
    assert_eq!(probe.spec.classes, 10);
    assert_eq!(probe.spec.settings.input_shape, Some(vec![1, 3, 32, 32]));
    assert_eq!(
        probe.spec.settings.image.as_deref(),
        Some("ghcr.io/nasop-dev/nasop-trainer:0.1.0-cuda")
    );
    let owner = &probe.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("ChildTrial", Some(true))
    );
    assert_eq!(
        probe.metadata.labels.as_ref().unwrap()[labels::GENOTYPE_HASH],
        "af327c6e56e7e0c8"
    );
    // Measuring: still running; the trainer pod may be gone by now.
    let waiting = with_status(latency_trial(2.0), p.status.clone());
    let mut measuring = probe.clone();
    measuring.status = Some(LatencyProbeStatus {
        phase: Some(ProbePhase::Running),
        ..LatencyProbeStatus::default()
    });
    let p2 = plan(&waiting, None, Some(&measuring), &now());
    assert_eq!(p2.status.phase, Some(TrialPhase::Running));
    assert!(p2.create_probe.is_none() && p2.create_pod.is_none());
    // Measured at 4 ms against T = 2 ms: 0.8 * (4/2)^-0.07.
    let mut measured = probe;
    let report: nasop_crds::result::ProbeResult =
        serde_json::from_str(&probe_success(4.0)).unwrap();
    let nasop_crds::result::ProbeOutcome::Succeeded(r) = report.outcome else {
        panic!()
    };
    measured.status = Some(LatencyProbeStatus {
        phase: Some(ProbePhase::Succeeded),
        latency: Some(r.latency.clone()),
        ..LatencyProbeStatus::default()
    });
    let p3 = plan(&waiting, None, Some(&measured), &now());
    assert_eq!(p3.status.phase, Some(TrialPhase::Succeeded));
    let expected = 0.8 * 2f64.powf(-0.07);
    assert!((p3.status.reward.unwrap() - expected).abs() < 1e-12);
    assert_eq!(p3.status.latency.as_ref().unwrap().median_ms, 4.0);
    // A failed probe fails the trial.
    measured.status = Some(LatencyProbeStatus {
        phase: Some(ProbePhase::Failed),
        reason: Some("OutOfMemory".into()),
        message: Some("x".into()),
        ..LatencyProbeStatus::default()
    });
    let p4 = plan(&waiting, None, Some(&measured), &now());
    assert_eq!(p4.status.reason.as_deref(), Some("ProbeFailed"));
}

#[test]
fn a_probe_for_an_image_folder_needs_an_input_shape() {
    let mut t = latency_trial(2.0);
    std::sync::Arc::make_mut(&mut t.spec.trial).dataset.format =
        nasop_crds::api::DatasetFormat::ImageFolder;
    assert!(latency_probe(&t).unwrap_err().contains("probe.inputShape"));
    t.spec.probe =
        Some(serde_json::from_value(serde_json::json!({"inputShape": [1, 3, 64, 64]})).unwrap());
    assert_eq!(
        latency_probe(&t).unwrap().spec.settings.input_shape,
        Some(vec![1, 3, 64, 64])
    );
}

/// A Pending trainer pod created `age` seconds before [`now`], its container waiting with
/// `reason` (or unscheduled when `reason` is "Unschedulable").
fn pending_pod(age: i64, reason: &str) -> Pod {
    let created =
        Time(k8s_openapi::jiff::Timestamp::from_second(now().0.as_second() - age).unwrap());
    let status = if reason == "Unschedulable" {
        serde_json::json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable",
            "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]})
    } else {
        serde_json::json!({"phase": "Pending", "containerStatuses": [{"name": "trainer",
            "image": "reg.example/nasop-trainer:typo", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": reason,
            "message": "Back-off pulling image \"reg.example/nasop-trainer:typo\""}}}]})
    };
    let mut p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cifar-nb201-00042-train-1"}, "status": status}))
    .unwrap();
    p.metadata.creation_timestamp = Some(created);
    p
}

fn with_pending_deadline(seconds: Option<i64>) -> ChildTrial {
    let mut t = with_status(gpu_trial(), attempt(1, 0));
    std::sync::Arc::make_mut(&mut t.spec.trial).pending_deadline_seconds = seconds;
    t
}

#[test]
fn image_errors_fail_the_trial_after_the_pending_deadline_and_bad_names_at_once() {
    // Default: image errors may last 600 s; the plan asks to look again when they are due.
    let t = with_pending_deadline(None);
    let p = plan(
        &t,
        Some(&pending_pod(590, "ImagePullBackOff")),
        None,
        &now(),
    );
    assert_eq!(p.status.phase, Some(TrialPhase::Pending));
    assert_eq!(p.requeue_after, Some(10));
    let p = plan(
        &t,
        Some(&pending_pod(600, "ImagePullBackOff")),
        None,
        &now(),
    );
    assert_eq!(p.status.phase, Some(TrialPhase::Failed));
    assert_eq!(p.status.reason.as_deref(), Some("ImagePullFailed"));
    let message = p.status.message.as_deref().unwrap();
    assert!(
        message.starts_with(
            "the trainer pod cifar-nb201-00042-train-1 could not pull its image for 600 s after it was scheduled (the limit for image and container errors is 600 s by default; trial.pendingDeadlineSeconds sets it): ImagePullBackOff: Back-off pulling image"
        ),
        "{message}"
    );
    assert_eq!(
        p.create_pod, None,
        "not retried: the same image would fail again"
    );
    assert_eq!(p.notes[0].reason, "TrialFailed");
    // The failed trial's pod is deleted once its status is written.
    assert!(p.delete_pods);
    assert_eq!(p.status.pod_name, None);

    // Set deadline: 60 s.
    let t = with_pending_deadline(Some(60));
    let p = plan(&t, Some(&pending_pod(59, "ErrImagePull")), None, &now());
    assert_eq!(
        (p.status.phase, p.requeue_after),
        (Some(TrialPhase::Pending), Some(1))
    );
    let p = plan(
        &t,
        Some(&pending_pod(61, "CreateContainerConfigError")),
        None,
        &now(),
    );
    assert_eq!(p.status.reason.as_deref(), Some("ContainerCreateFailed"));
    assert!(p
        .status
        .message
        .as_deref()
        .unwrap()
        .contains("(trial.pendingDeadlineSeconds is 60)"));

    // A bad image reference: at once, whatever the deadline.
    let p = plan(&t, Some(&pending_pod(0, "InvalidImageName")), None, &now());
    assert_eq!(p.status.reason.as_deref(), Some("ImagePullFailed"));
    assert!(p
        .status
        .message
        .as_deref()
        .unwrap()
        .contains("has an image reference no retry can fix: InvalidImageName"));
}

#[test]
fn unscheduled_pods_wait_without_limit_unless_a_pending_deadline_is_set() {
    // Waiting for a free GPU is how trials queue: no deadline by default, no early requeue.
    let p = plan(
        &with_pending_deadline(None),
        Some(&pending_pod(86_400, "Unschedulable")),
        None,
        &now(),
    );
    assert_eq!(
        (p.status.phase, p.requeue_after),
        (Some(TrialPhase::Pending), None)
    );
    let p = plan(
        &with_pending_deadline(None),
        Some(&pending_pod(86_400, "ContainerCreating")),
        None,
        &now(),
    );
    assert_eq!(p.status.phase, Some(TrialPhase::Pending));

    let t = with_pending_deadline(Some(1800));
    let p = plan(&t, Some(&pending_pod(1000, "Unschedulable")), None, &now());
    assert_eq!(p.requeue_after, Some(800));
    let p = plan(&t, Some(&pending_pod(1800, "Unschedulable")), None, &now());
    assert_eq!(p.status.reason.as_deref(), Some("PendingTimeout"));
    assert_eq!(
        p.status.message.as_deref(),
        Some("the trainer pod cifar-nb201-00042-train-1 stayed unscheduled for 1800 s (trial.pendingDeadlineSeconds is 1800): Unschedulable: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu.")
    );
    let p = plan(
        &t,
        Some(&pending_pod(1800, "ContainerCreating")),
        None,
        &now(),
    );
    assert_eq!(p.status.reason.as_deref(), Some("PendingTimeout"));
    assert!(p
        .status
        .message
        .as_deref()
        .unwrap()
        .contains("did not start for 1800 s after it was scheduled"));
}

#[test]
fn image_errors_count_from_scheduling_not_from_the_gpu_queue() {
    // Two hours queued for a GPU, scheduled 100 s ago, now failing to pull: not failed yet.
    let mut queued = pending_pod(7200, "ImagePullBackOff");
    let scheduled =
        Time(k8s_openapi::jiff::Timestamp::from_second(now().0.as_second() - 100).unwrap());
    queued.status.as_mut().unwrap().conditions =
        Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(scheduled),
            ..Default::default()
        }]);
    let p = plan(&with_pending_deadline(None), Some(&queued), None, &now());
    assert_eq!(p.status.phase, Some(TrialPhase::Pending));
    assert_eq!(p.requeue_after, Some(500));
}

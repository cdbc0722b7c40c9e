//! Mock-API tests of the ChildTrial reconciler: one scenario per path.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::Event;
use nasop_crds::api::{ChildTrial, ChildTrialStatus, TrialPhase};
use nasop_crds::result::FailureReason;
use serde_json::{json, Value};

use super::reconcile;
use crate::mock::{self, ApiServer};
use crate::testing::{evicted_pod, gpu_trial, latency_trial, pod, train_failure, train_success};

const PODS: &str = "/api/v1/namespaces/nas/pods";
const TRIAL: &str = "/apis/nasop.dev/v1alpha1/namespaces/nas/childtrials/cifar-nb201-00042";

fn with(mut t: ChildTrial, status: Value) -> ChildTrial {
    t.status = Some(serde_json::from_value(status).unwrap());
    t
}

fn running(attempts: i32, disruptions: i32) -> Value {
    json!({"phase": "Running", "attempts": attempts, "disruptions": disruptions,
           "podName": format!("cifar-nb201-00042-train-{attempts}")})
}

/// Trainer Pod `attempt` of the test trial (labelled as the operator labels it).
fn trainer(attempt: i32, phase: &str, exit_code: i32, message: Option<&str>) -> Pod {
    let mut p = pod(
        &format!("cifar-nb201-00042-train-{attempt}"),
        phase,
        exit_code,
        message,
    );
    p.metadata.labels = Some(
        [
            (
                "nasop.dev/trial".to_string(),
                "cifar-nb201-00042".to_string(),
            ),
            ("nasop.dev/role".to_string(), "trainer".to_string()),
        ]
        .into(),
    );
    p
}

/// A Pod cache that has listed `pods`.
fn pod_cache(pods: &[Pod]) -> (Store<Pod>, Writer<Pod>) {
    let (store, mut writer) = kube::runtime::reflector::store::<Pod>();
    writer.apply_watcher_event(&Event::Init);
    for p in pods {
        writer.apply_watcher_event(&Event::InitApply(p.clone()));
    }
    writer.apply_watcher_event(&Event::InitDone);
    (store, writer)
}

/// Reconciles `trial` once with `pods` in the Pod cache, against `script`.
async fn reconciled_with_pods(
    trial: ChildTrial,
    pods: &[Pod],
    script: impl FnOnce(ApiServer, Value) -> futures::future::BoxFuture<'static, ApiServer>,
) -> kube::runtime::controller::Action {
    let (ctx, server) = mock::context();
    ctx.use_pod_store("nas", pod_cache(pods).0);
    let object = serde_json::to_value(&trial).unwrap();
    mock::run(
        async move { reconcile(Arc::new(trial), ctx).await.unwrap() },
        script(server, object),
    )
    .await
}

async fn reconciled(
    trial: ChildTrial,
    script: impl FnOnce(ApiServer, Value) -> futures::future::BoxFuture<'static, ApiServer>,
) -> kube::runtime::controller::Action {
    let (ctx, server) = mock::context();
    let object = serde_json::to_value(&trial).unwrap();
    mock::run(
        async move { reconcile(Arc::new(trial), ctx).await.unwrap() },
        script(server, object),
    )
    .await
}

fn status_of(seen: &mock::Seen) -> ChildTrialStatus {
    serde_json::from_value(seen.body["status"].clone()).unwrap()
}

/// Expects the DELETE of the trial's first trainer Pod (by name).
async fn expect_pods_deleted(s: &mut ApiServer) {
    s.expect(
        "DELETE",
        &format!("{PODS}/cifar-nb201-00042-train-1"),
        &[],
        |_| {
            let gone = serde_json::to_value(trainer(1, "Succeeded", 0, None)).unwrap();
            (200, gone)
        },
    )
    .await;
}

#[tokio::test]
async fn a_new_trial_gets_its_trainer_pod_then_a_pending_status() {
    // The Pod first, alone: its watch event wakes the trial.
    let action = reconciled_with_pods(gpu_trial(), &[], |mut s, _| {
        Box::pin(async move {
            let pod = s
                .expect_create(&format!("{PODS}/cifar-nb201-00042-train-1?"))
                .await;
            assert_eq!(pod.body["kind"], "Pod");
            assert_eq!(
                pod.body["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
                "1"
            );
            assert_eq!(pod.body["spec"]["automountServiceAccountToken"], false);
            assert_eq!(
                pod.body["metadata"]["ownerReferences"][0]["kind"],
                "ChildTrial"
            );
            s
        })
    })
    .await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(super::RESYNC)
    );
    // With the Pod in the cache: the status that names it, and no second create.
    let waiting = trainer(1, "Pending", 0, None);
    reconciled_with_pods(gpu_trial(), &[waiting], |mut s, object| {
        Box::pin(async move {
            let st = status_of(&s.expect_status(&format!("{TRIAL}/status?"), &object).await);
            assert_eq!((st.phase, st.attempts), (Some(TrialPhase::Pending), 1));
            assert_eq!(st.pod_name.as_deref(), Some("cifar-nb201-00042-train-1"));
            s
        })
    })
    .await;
}

#[tokio::test]
async fn a_completed_pod_makes_the_trial_succeed_with_parsed_metrics() {
    let trial = with(gpu_trial(), running(1, 0));
    reconciled(trial, |mut s, object| {
        Box::pin(async move {
            let done = pod(
                "cifar-nb201-00042-train-1",
                "Succeeded",
                0,
                Some(&train_success(0.9375)),
            );
            s.expect_get(
                &format!("{PODS}/cifar-nb201-00042-train-1"),
                Some(serde_json::to_value(done).unwrap()),
            )
            .await;
            // The result, without the pod name (the reconcile it wakes deletes the pod).
            let st = status_of(&s.expect_status(&format!("{TRIAL}/status?"), &object).await);
            assert_eq!(st.phase, Some(TrialPhase::Succeeded));
            assert_eq!(st.pod_name, None);
            assert_eq!(st.reward, Some(0.9375));
            let m = st.metrics.unwrap();
            assert_eq!(
                (m.accuracy, m.params, m.train_seconds),
                (Some(0.9375), Some(1_073_466), Some(321.5))
            );
            s.expect_event("nas", "TrialSucceeded").await;
            s
        })
    })
    .await;
}

#[tokio::test]
async fn a_failed_pod_is_retried_then_the_trial_fails() {
    let crash = trainer(
        1,
        "Failed",
        1,
        Some(&train_failure(FailureReason::Internal, "CUDA error")),
    );
    // Attempt 2's Pod first; then, with it in the cache, the status and the Event.
    reconciled_with_pods(
        with(gpu_trial(), running(1, 0)),
        std::slice::from_ref(&crash),
        |mut s, _| {
            Box::pin(async move {
                s.expect_create(&format!("{PODS}/cifar-nb201-00042-train-2?"))
                    .await;
                s
            })
        },
    )
    .await;
    let next = trainer(2, "Pending", 0, None);
    reconciled_with_pods(
        with(gpu_trial(), running(1, 0)),
        &[crash.clone(), next],
        |mut s, object| {
            Box::pin(async move {
                let st = status_of(&s.expect_status(&format!("{TRIAL}/status?"), &object).await);
                assert_eq!(
                    (st.attempts, st.disruptions, st.phase),
                    (2, 0, Some(TrialPhase::Pending))
                );
                assert_eq!(st.pod_name.as_deref(), Some("cifar-nb201-00042-train-2"));
                s.expect_event("nas", "AttemptFailed").await;
                s
            })
        },
    )
    .await;
    // The third failed attempt (maxAttempts 3) fails the trial; no new pod.
    let crash = serde_json::to_value(pod(
        "cifar-nb201-00042-train-3",
        "Failed",
        1,
        Some(&train_failure(FailureReason::Internal, "CUDA error")),
    ))
    .unwrap();
    reconciled(with(gpu_trial(), running(3, 0)), move |mut s, object| {
        Box::pin(async move {
            s.expect_get(&format!("{PODS}/cifar-nb201-00042-train-3"), Some(crash))
                .await;
            let st = status_of(&s.expect_status(&format!("{TRIAL}/status?"), &object).await);
            assert_eq!(st.phase, Some(TrialPhase::Failed));
            assert_eq!(st.reason.as_deref(), Some("Internal"));
            s.expect_event("nas", "TrialFailed").await;
            s
        })
    })
    .await;
}

#[tokio::test]
async fn an_evicted_pod_is_retried_without_counting_a_failure() {
    // Attempts exhausted by failures would fail the trial; an eviction does not count.
    let mut evicted = evicted_pod("cifar-nb201-00042-train-3");
    evicted.metadata.labels = trainer(3, "Failed", 0, None).metadata.labels;
    reconciled_with_pods(
        with(gpu_trial(), running(3, 1)),
        std::slice::from_ref(&evicted),
        |mut s, _| {
            Box::pin(async move {
                s.expect_create(&format!("{PODS}/cifar-nb201-00042-train-4?"))
                    .await;
                s
            })
        },
    )
    .await;
    reconciled_with_pods(
        with(gpu_trial(), running(3, 1)),
        &[evicted, trainer(4, "Pending", 0, None)],
        |mut s, object| {
            Box::pin(async move {
                let st = status_of(&s.expect_status(&format!("{TRIAL}/status?"), &object).await);
                assert_eq!((st.attempts, st.disruptions), (4, 2));
                s.expect_event("nas", "PodDisrupted").await;
                s
            })
        },
    )
    .await;
}

#[tokio::test]
async fn a_bad_result_fails_the_trial_with_a_reason() {
    reconciled(with(gpu_trial(), running(1, 0)), |mut s, object| {
        Box::pin(async move {
            let garbage = pod(
                "cifar-nb201-00042-train-1",
                "Succeeded",
                0,
                Some("{\"schema\": \"nasop.dev/train-result/v1\", \"outcome\": \"Succeeded\"}"),
            );
            s.expect_get(
                &format!("{PODS}/cifar-nb201-00042-train-1"),
                Some(serde_json::to_value(garbage).unwrap()),
            )
            .await;
            let st = status_of(&s.expect_status(&format!("{TRIAL}/status?"), &object).await);
            assert_eq!(st.phase, Some(TrialPhase::Failed));
            assert_eq!(st.reason.as_deref(), Some("BadResult"));
            s.expect_event("nas", "TrialFailed").await;
            s
        })
    })
    .await;
}

#[tokio::test]
async fn a_trained_child_with_a_latency_objective_gets_a_probe() {
    reconciled(with(latency_trial(2.0), running(1, 0)), |mut s, object| {
        Box::pin(async move {
            let done = pod("cifar-nb201-00042-train-1", "Succeeded", 0, Some(&train_success(0.8)));
            s.expect_get(&format!("{PODS}/cifar-nb201-00042-train-1"), Some(serde_json::to_value(done).unwrap()))
                .await;
            let probe = s
                .expect_create("/apis/nasop.dev/v1alpha1/namespaces/nas/latencyprobes/cifar-nb201-00042-probe?")
                .await;
            assert_eq!(probe.body["spec"]["deviceClass"], "pixel");
            assert_eq!(probe.body["spec"]["inputShape"], json!([1, 3, 32, 32]));
            let st = status_of(&s.expect_status(&format!("{TRIAL}/status?"), &object).await);
            assert_eq!(st.phase, Some(TrialPhase::Running));
            assert_eq!(st.probe_name.as_deref(), Some("cifar-nb201-00042-probe"));
            assert!(st.metrics.is_some() && st.reward.is_none());
            s
        })
    })
    .await;
}

#[tokio::test]
async fn a_trial_finished_with_a_pod_named_cleans_its_pods_once_and_keeps_its_result() {
    let done = with(
        gpu_trial(),
        json!({"phase": "Succeeded", "attempts": 1, "podName": "cifar-nb201-00042-train-1",
               "reward": 0.9, "metrics": {"accuracy": 0.9}}),
    );
    let left = trainer(1, "Succeeded", 0, None);
    reconciled_with_pods(done, std::slice::from_ref(&left), |mut s, object| {
        Box::pin(async move {
            let st = status_of(&s.expect_status(&format!("{TRIAL}/status?"), &object).await);
            assert_eq!((st.pod_name, st.reward), (None, Some(0.9)));
            s
        })
    })
    .await;
    // The reconcile that write wakes deletes the pod.
    let clean = with(
        gpu_trial(),
        json!({"phase": "Succeeded", "attempts": 1, "reward": 0.9}),
    );
    let action = reconciled_with_pods(clean.clone(), &[left], |mut s, _| {
        Box::pin(async move {
            expect_pods_deleted(&mut s).await;
            s
        })
    })
    .await;
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    // Clean and finished: no request at all.
    let action = reconciled_with_pods(clean, &[], |s, _| Box::pin(async move { s })).await;
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn a_pod_created_before_a_reconcile_stopped_counts_as_created() {
    // The pod was created, then the reconcile stopped before the status named it: the create
    // is repeated and finds it (409 AlreadyExists), which is no error.
    reconciled(gpu_trial(), |mut s, object| {
        Box::pin(async move {
            s.expect("POST", &format!("{PODS}?"), &[], |_| {
                (
                    409,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": "pods \"cifar-nb201-00042-train-1\" already exists",
                           "reason": "AlreadyExists", "code": 409}),
                )
            })
            .await;
            let st = status_of(&s.expect_status(&format!("{TRIAL}/status?"), &object).await);
            assert_eq!((st.phase, st.attempts), (Some(TrialPhase::Pending), 1));
            assert_eq!(st.pod_name.as_deref(), Some("cifar-nb201-00042-train-1"));
            s
        })
    })
    .await;
}

#[tokio::test]
async fn a_pod_the_api_server_refuses_fails_the_trial_instead_of_retrying_forever() {
    reconciled(gpu_trial(), |mut s, object| {
        Box::pin(async move {
            s.expect("POST", &format!("{PODS}?"), &[], |_| {
                (
                    422,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": "Pod \"cifar-nb201-00042-train-1\" is invalid: spec.containers[0].resources.limits: Invalid value",
                           "reason": "Invalid", "code": 422}),
                )
            })
            .await;
            let st = status_of(&s.expect_status(&format!("{TRIAL}/status?"), &object).await);
            assert_eq!(st.phase, Some(TrialPhase::Failed));
            assert_eq!(st.reason.as_deref(), Some("InvalidInput"));
            assert!(st.message.unwrap().contains("resources.limits: Invalid value"));
            s.expect_event("nas", "TrialFailed").await;
            s
        })
    })
    .await;
}

#[tokio::test]
async fn a_trial_read_from_before_its_finished_write_is_not_started_again() {
    // The reconcile woken by the deletion of the pod can read the trial from the cache as it
    // was before the status write (running, its pod named): the pod is gone, which would count
    // as a disruption and start attempt 2. The written trial is used instead: no request.
    let (ctx, server) = mock::context();
    let stale = with(gpu_trial(), running(1, 0));
    let object = serde_json::to_value(&stale).unwrap();
    let first = ctx.clone();
    let trial = Arc::new(stale.clone());
    let (_, server) = mock::run_keeping(
        async move { reconcile(trial, first).await.unwrap() },
        async move {
            let mut s = server;
            let done = pod(
                "cifar-nb201-00042-train-1",
                "Succeeded",
                0,
                Some(&train_success(0.9)),
            );
            s.expect_get(
                &format!("{PODS}/cifar-nb201-00042-train-1"),
                Some(serde_json::to_value(done).unwrap()),
            )
            .await;
            s.expect_status(&format!("{TRIAL}/status?"), &object).await;
            s.expect_event("nas", "TrialSucceeded").await;
            s
        },
    )
    .await;
    let newest = ctx.newest_trial(Arc::new(stale.clone()));
    let st = newest.status.clone().unwrap();
    assert_eq!(
        (st.phase, st.reward),
        (Some(TrialPhase::Succeeded), Some(0.9))
    );
    // The stale trial again: no GET of the pod, no new pod, no status write.
    // No request: the same server sees none.
    let action = mock::run(
        async move { reconcile(Arc::new(stale), ctx).await.unwrap() },
        async move { server },
    )
    .await;
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn a_finished_trials_pods_are_deleted_once_and_again_only_after_the_grace() {
    let (store, mut writer) = pod_cache(&[trainer(1, "Succeeded", 0, None)]);
    let (ctx, server) = mock::context();
    ctx.use_pod_store("nas", store);
    let done = with(
        gpu_trial(),
        json!({"phase": "Succeeded", "attempts": 1, "reward": 0.9}),
    );
    let run = |ctx: Arc<crate::runtime::Context>, server: ApiServer, deletes: bool| {
        let trial = Arc::new(done.clone());
        mock::run_keeping(
            async move { reconcile(trial, ctx).await.unwrap() },
            async move {
                let mut s = server;
                if deletes {
                    expect_pods_deleted(&mut s).await;
                }
                s
            },
        )
    };
    // Finished with its pod in the cache (just finished, or left by a stopped process).
    let (action, server) = run(ctx.clone(), server, true).await;
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    // Woken again before the cache shows the deletion: no second DELETE; a look at the end
    // of the grace.
    let (action, server) = run(ctx.clone(), server, false).await;
    match action {
        a if a == kube::runtime::controller::Action::await_change() => {
            panic!("expected a requeue within the grace")
        }
        a => {
            let debug = format!("{a:?}");
            assert!(debug.contains("requeue_after: Some("), "{debug}");
        }
    }
    let left = ctx.pods_deleted_within(&crate::runtime::key(&done), super::LEFTOVER_GRACE);
    assert!(
        left.is_some_and(|w| w > std::time::Duration::from_secs(25) && w <= super::LEFTOVER_GRACE),
        "{left:?}"
    );
    // Two attempts' pods left by a process stopped before it deleted them: each by name.
    {
        let (ctx, server) = mock::context();
        let (store, _two) = pod_cache(&[
            trainer(1, "Failed", 1, None),
            trainer(2, "Succeeded", 0, None),
        ]);
        ctx.use_pod_store("nas", store);
        let trial = Arc::new(done.clone());
        let action = mock::run(
            async move { reconcile(trial, ctx).await.unwrap() },
            async move {
                let mut s = server;
                let mut deleted = Vec::new();
                for _ in 0..2 {
                    let seen = s
                        .expect(
                            "DELETE",
                            &format!("{PODS}/cifar-nb201-00042-train-"),
                            &[],
                            |_| {
                                (
                                    200,
                                    serde_json::to_value(trainer(1, "Failed", 1, None)).unwrap(),
                                )
                            },
                        )
                        .await;
                    let name = seen.uri.rsplit('/').next().unwrap();
                    deleted.push(name.trim_end_matches('?').to_string());
                }
                deleted.sort();
                assert_eq!(
                    deleted,
                    ["cifar-nb201-00042-train-1", "cifar-nb201-00042-train-2"]
                );
                s
            },
        )
        .await;
        assert_eq!(action, kube::runtime::controller::Action::await_change());
    }
    // A pod being deleted is not a leftover: no request, nothing to wait for.
    let mut deleting = trainer(1, "Succeeded", 0, None);
    deleting.metadata.deletion_timestamp = Some(crate::runtime::now());
    writer.apply_watcher_event(&Event::Apply(deleting));
    let (action, server) = run(ctx.clone(), server, false).await;
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    server.done();
}

#[tokio::test]
async fn deleted_pods_are_remembered_for_the_grace_only() {
    let (ctx, _server) = mock::context();
    let grace = std::time::Duration::from_millis(200);
    assert_eq!(ctx.pods_deleted_within("ChildTrial/nas/a", grace), None);
    ctx.deleted_pods("ChildTrial/nas/a", grace);
    let left = ctx.pods_deleted_within("ChildTrial/nas/a", grace);
    assert!(
        left.is_some_and(|w| w > std::time::Duration::from_millis(100) && w <= grace),
        "{left:?}"
    );
    assert_eq!(ctx.pods_deleted_within("ChildTrial/nas/b", grace), None);
    tokio::time::sleep(grace).await;
    assert_eq!(ctx.pods_deleted_within("ChildTrial/nas/a", grace), None);
}

#[tokio::test]
async fn a_trial_read_from_before_its_pending_write_does_not_create_its_pod_again() {
    // The Pod's creation wakes the trial, which writes the status naming it. A reconcile woken
    // next (by the Pod's next change) may still read the trial from the cache as it was
    // before that write. The written status is used: the pod is read from the cache, not
    // created again (409) and the status not written again.
    let (store, mut writer) = pod_cache(&[]);
    let (ctx, server) = mock::context();
    ctx.use_pod_store("nas", store);
    let new = gpu_trial();
    let object = serde_json::to_value(&new).unwrap();
    let (trial, first) = (Arc::new(new.clone()), ctx.clone());
    let (_, server) = mock::run_keeping(
        async move { reconcile(trial, first).await.unwrap() },
        async move {
            let mut s = server;
            s.expect_create(&format!("{PODS}/cifar-nb201-00042-train-1?"))
                .await;
            s
        },
    )
    .await;
    writer.apply_watcher_event(&Event::Apply(trainer(1, "Pending", 0, None)));
    let (trial, second) = (Arc::new(new.clone()), ctx.clone());
    let written = object.clone();
    let (_, server) = mock::run_keeping(
        async move { reconcile(trial, second).await.unwrap() },
        async move {
            let mut s = server;
            s.expect_status(&format!("{TRIAL}/status?"), &written).await;
            s
        },
    )
    .await;
    writer.apply_watcher_event(&Event::Apply(trainer(1, "Running", 0, None)));
    let action = mock::run(
        async move { reconcile(Arc::new(new), ctx).await.unwrap() },
        async move {
            let mut s = server;
            // Running now: the status says so (over the written version, not the stale one).
            let seen = s.expect_status(&format!("{TRIAL}/status?"), &object).await;
            assert_eq!(seen.body["status"]["phase"], "Running");
            assert_eq!(seen.body["status"]["attempts"], 1);
            assert_eq!(seen.body["metadata"]["resourceVersion"], "1");
            s
        },
    )
    .await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(super::RESYNC)
    );
}

#[tokio::test]
async fn a_vanished_pod_is_a_disruption_only_if_the_api_server_agrees() {
    let mut stale = with(gpu_trial(), running(1, 0));
    stale.metadata.resource_version = Some("10".into());
    // The API server's trial has moved on (finished; its pods deleted): no new attempt.
    let mut finished = with(
        gpu_trial(),
        json!({"phase": "Succeeded", "attempts": 1, "reward": 0.9}),
    );
    finished.metadata.resource_version = Some("11".into());
    let (ctx, server) = mock::context();
    let first = ctx.clone();
    let trial = Arc::new(stale.clone());
    let newer = serde_json::to_value(&finished).unwrap();
    let action = mock::run(
        async move { reconcile(trial, first).await.unwrap() },
        async move {
            let mut s = server;
            s.expect_get(&format!("{PODS}/cifar-nb201-00042-train-1"), None)
                .await;
            s.expect_get(TRIAL, Some(newer)).await;
            s
        },
    )
    .await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(1))
    );
    // The next reconcile of the stale trial uses the API server's copy.
    let st = ctx.newest_trial(Arc::new(stale.clone())).status.clone();
    assert_eq!(st.and_then(|s| s.phase), Some(TrialPhase::Succeeded));
    // The API server's trial is the one read: the pod was lost, and attempt 2 starts (its
    // pod first).
    let object = serde_json::to_value(&stale).unwrap();
    let same = object.clone();
    reconciled_with_pods(stale.clone(), &[], move |mut s, _| {
        Box::pin(async move {
            s.expect_get(&format!("{PODS}/cifar-nb201-00042-train-1"), None)
                .await;
            s.expect_get(TRIAL, Some(same)).await;
            s.expect_create(&format!("{PODS}/cifar-nb201-00042-train-2?"))
                .await;
            s
        })
    })
    .await;
    // With attempt 2's pod in the cache, its status is written over version 10 only.
    let same = object.clone();
    reconciled_with_pods(
        stale,
        &[trainer(2, "Pending", 0, None)],
        move |mut s, object_again| {
            Box::pin(async move {
                assert_eq!(object_again, object);
                s.expect_get(&format!("{PODS}/cifar-nb201-00042-train-1"), None)
                    .await;
                s.expect_get(TRIAL, Some(same)).await;
                let seen = s.expect_status(&format!("{TRIAL}/status?"), &object).await;
                assert_eq!(seen.body["metadata"]["resourceVersion"], "10");
                let st = status_of(&seen);
                assert_eq!((st.attempts, st.disruptions), (2, 1));
                s.expect_event("nas", "PodDisrupted").await;
                s
            })
        },
    )
    .await;
}

#[tokio::test]
async fn a_refused_status_write_forgets_the_kept_copy() {
    // A copy (version 10, Pending) kept over the cache's version 9; the status planned from
    // it is written over version 10 only, and the API server refuses it (the trial changed).
    let (ctx, server) = mock::context();
    let mut old = gpu_trial();
    old.metadata.resource_version = Some("9".into());
    let mut pending = with(
        gpu_trial(),
        json!({"phase": "Pending", "attempts": 1, "podName": "cifar-nb201-00042-train-1"}),
    );
    pending.metadata.resource_version = Some("10".into());
    ctx.newer_trial(&old, pending);
    let reconciling = ctx.clone();
    let trial = Arc::new(old.clone());
    let result = mock::run(
        async move { reconcile(trial, reconciling).await },
        async move {
            let mut s = server;
            let up = pod("cifar-nb201-00042-train-1", "Running", 0, None);
            s.expect_get(
                &format!("{PODS}/cifar-nb201-00042-train-1"),
                Some(serde_json::to_value(up).unwrap()),
            )
            .await;
            s.expect("PATCH", &format!("{TRIAL}/status?"), &[], |seen| {
                assert_eq!(seen.body["metadata"]["resourceVersion"], "10");
                (
                    409,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": "the object has been modified", "reason": "Conflict", "code": 409}),
                )
            })
            .await;
            s
        },
    )
    .await;
    assert!(result.is_err());
    // The retry plans from the cache's version.
    let again = ctx.newest_trial(Arc::new(old));
    assert_eq!(again.metadata.resource_version.as_deref(), Some("9"));
}

#[tokio::test]
async fn a_finished_trial_waits_for_the_pod_cache_before_looking_for_leftovers() {
    let (store, _writer) = kube::runtime::reflector::store::<k8s_openapi::api::core::v1::Pod>();
    let (ctx, server) = mock::context();
    ctx.use_pod_store("nas", store);
    let done = with(
        gpu_trial(),
        json!({"phase": "Succeeded", "attempts": 1, "reward": 0.9}),
    );
    let action = mock::run(
        async move { reconcile(Arc::new(done), ctx).await.unwrap() },
        async move { server },
    )
    .await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(super::LEFTOVER_GRACE)
    );
}

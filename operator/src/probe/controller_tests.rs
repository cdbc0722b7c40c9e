//! Mock-API tests of the LatencyProbe reconciler.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use nasop_crds::api::{LatencyProbe, LatencyProbeStatus, ProbePhase};
use serde_json::{json, Value};

use super::reconcile;
use crate::mock::{self, ApiServer};
use crate::testing::{latency_trial, pod, probe_success};
use crate::trial::plan::latency_probe;

const PODS: &str = "/api/v1/namespaces/nas/pods";
const PROBES: &str = "/apis/nasop.dev/v1alpha1/namespaces/nas/latencyprobes";

fn selector(p: &LatencyProbe) -> String {
    format!(
        "nasop.dev%2Fprobe-key%3D{}",
        crate::probe::plan::probe_key(&p.spec)
    )
}

fn probe(name: &str, created: &str) -> LatencyProbe {
    let mut p = latency_probe(&latency_trial(2.0)).unwrap();
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
    p
}

async fn reconciled(
    p: LatencyProbe,
    script: impl FnOnce(ApiServer, Value) -> futures::future::BoxFuture<'static, ApiServer>,
) -> kube::runtime::controller::Action {
    let (ctx, server) = mock::context();
    let object = serde_json::to_value(&p).unwrap();
    mock::run(
        async move { reconcile(Arc::new(p), ctx).await.unwrap() },
        script(server, object),
    )
    .await
}

fn status_of(seen: &mock::Seen) -> LatencyProbeStatus {
    serde_json::from_value(seen.body["status"].clone()).unwrap()
}

#[tokio::test]
async fn a_new_probe_starts_its_pod_on_the_device_class() {
    let p = probe("a-probe", "2026-11-29T10:00:00Z");
    let me = serde_json::to_value(&p).unwrap();
    let sel = selector(&p);
    reconciled(p, move |mut api, object| {
        Box::pin(async move {
            api.expect_list(PROBES, &sel, vec![me]).await;
            let pod = api.expect_create(&format!("{PODS}/a-probe-1?")).await;
            assert_eq!(
                pod.body["spec"]["nodeSelector"]["nasop.dev/device-class"],
                "pixel"
            );
            assert_eq!(
                pod.body["metadata"]["ownerReferences"][0]["kind"],
                "LatencyProbe"
            );
            let st = status_of(
                &api.expect_status(&format!("{PROBES}/a-probe/status?"), &object)
                    .await,
            );
            assert_eq!((st.phase, st.attempts), (Some(ProbePhase::Pending), 1));
            api
        })
    })
    .await;
}

#[tokio::test]
async fn a_measured_child_is_not_measured_again() {
    let mut old = probe("old-probe", "2026-11-29T09:00:00Z");
    old.status = Some(serde_json::from_value(json!({"phase": "Succeeded", "attempts": 1,
        "latency": {"medianMs": 1.25, "p90Ms": 1.3, "meanMs": 1.26, "stddevMs": 0.02, "minMs": 1.2, "repeats": 50},
        "device": {"nodeName": "pixel-node-2"}})).unwrap());
    let sel = selector(&old);
    let old = serde_json::to_value(&old).unwrap();
    reconciled(
        probe("new-probe", "2026-11-29T10:00:00Z"),
        move |mut api, object| {
            Box::pin(async move {
                api.expect_list(PROBES, &sel, vec![old]).await;
                // A pod of attempt 1 left by a stale read is removed (none here).
                api.expect("DELETE", &format!("{PODS}/new-probe-1"), &[], |_| {
                    (404, mock::not_found())
                })
                .await;
                let st = status_of(
                    &api.expect_status(&format!("{PROBES}/new-probe/status?"), &object)
                        .await,
                );
                assert_eq!(st.phase, Some(ProbePhase::Succeeded));
                assert_eq!(st.cached_from.as_deref(), Some("old-probe"));
                assert_eq!(st.latency.unwrap().median_ms, 1.25);
                assert_eq!(st.attempts, 0, "no pod ran");
                api.expect_event("nas", "CachedResult").await;
                api
            })
        },
    )
    .await;
}

#[tokio::test]
async fn a_finished_probe_pod_gives_the_latency() {
    let mut p = probe("a-probe", "2026-11-29T10:00:00Z");
    p.status = Some(
        serde_json::from_value(json!({"phase": "Running", "attempts": 1, "podName": "a-probe-1"}))
            .unwrap(),
    );
    reconciled(p, |mut api, object| {
        Box::pin(async move {
            let done = pod("a-probe-1", "Succeeded", 0, Some(&probe_success(0.42)));
            api.expect_get(
                &format!("{PODS}/a-probe-1"),
                Some(serde_json::to_value(done).unwrap()),
            )
            .await;
            let st = status_of(
                &api.expect_status(&format!("{PROBES}/a-probe/status?"), &object)
                    .await,
            );
            assert_eq!(st.phase, Some(ProbePhase::Succeeded));
            assert_eq!(st.latency.unwrap().median_ms, 0.42);
            assert_eq!(st.device.unwrap().cpu_model.as_deref(), Some("Cortex-A76"));
            api.expect_event("nas", "Measured").await;
            api
        })
    })
    .await;
}

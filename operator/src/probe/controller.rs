//! The `LatencyProbe` reconciler: reads the probe's current Pod (and, before its first
//! attempt, the other probes of the same child and device class), asks
//! [`super::plan::plan`] what to do, and does it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use nasop_crds::api::{labels, LatencyProbe, ProbePhase};
use nasop_crds::result::FailureReason;

use super::plan::{plan, probe_key};
use super::pod::{pod_name, probe_pod};
use crate::runtime::{apply_status, create, key, now, Context, Error, Result};
use crate::trial::plan::Note;

/// The controller name (metrics label).
pub const CONTROLLER: &str = "latencyprobe";

/// How soon a probe waiting for an earlier probe of the same child looks again.
pub const WAIT: Duration = Duration::from_secs(10);

/// Reconciles one LatencyProbe.
///
/// # Errors
/// API errors (retried with backoff by the error policy) and Pods that cannot be built.
pub async fn reconcile(probe: Arc<LatencyProbe>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let namespace = probe
        .namespace()
        .ok_or(Error::Missing("metadata.namespace"))?;
    let name = probe.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let probes: Api<LatencyProbe> = Api::namespaced(ctx.client.clone(), &namespace);
    let status = probe.status.clone().unwrap_or_default();
    let finished = matches!(
        status.phase,
        Some(ProbePhase::Succeeded) | Some(ProbePhase::Failed)
    );
    let object_key = key(probe.as_ref());
    if finished && status.pod_name.is_none() {
        ctx.metrics
            .probe_pending(&probe.spec.device_class, &object_key, false);
        ctx.succeeded(&object_key);
        return Ok(Action::await_change());
    }
    let pod = match (&status.pod_name, finished) {
        // A GET, not the Pod cache: that cache is fed by the ChildTrial controller's watch,
        // so when this probe is woken by its own watch the cache may not hold the change
        // yet, and nothing would wake the probe again (seen as a probe stuck Running).
        (Some(p), false) => pods.get_opt(p).await?,
        _ => None,
    };
    let same_key = if status.attempts == 0 {
        probes
            .list(&ListParams::default().labels(&format!(
                "{}={}",
                labels::PROBE_KEY,
                probe_key(&probe.spec)
            )))
            .await?
            .items
    } else {
        Vec::new()
    };
    let mut plan = plan(&probe, pod.as_ref(), &same_key, &now());
    if let Some(attempt) = plan.create_pod {
        if let Err(e) = create(&pods, &probe_pod(&probe, attempt)?).await {
            // A pod the API server refuses as invalid fails the probe; anything else retries.
            let message = format!(
                "the API server refused the probe pod: {}",
                e.rejection().ok_or(e)?
            );
            let s = &mut plan.status;
            s.phase = Some(ProbePhase::Failed);
            s.reason = Some(FailureReason::InvalidInput.name().to_string());
            s.message = Some(message.clone());
            s.completion_time = Some(now());
            plan.notes.push(Note {
                warning: true,
                reason: "ProbeFailed",
                message,
            });
        }
    }
    if plan.delete_pods {
        // By name: other probes of the same child may be measuring on other classes.
        for attempt in 1..=status.attempts.max(1) {
            crate::runtime::delete(&pods, &pod_name(&name, attempt)).await?;
        }
    }
    if probe.status.as_ref() != Some(&plan.status) {
        apply_status(&probes, probe.as_ref(), &plan.status).await?;
        if !finished
            && plan.status.phase == Some(ProbePhase::Succeeded)
            && plan.status.cached_from.is_none()
        {
            if let Some(l) = &plan.status.latency {
                ctx.metrics
                    .probe_latency
                    .with_label_values(&[probe.spec.device_class.as_str()])
                    .observe(l.median_ms);
            }
        }
    }
    ctx.metrics.probe_pending(
        &probe.spec.device_class,
        &object_key,
        plan.status.phase == Some(ProbePhase::Pending),
    );
    ctx.publish(probe.as_ref(), "Reconcile", &plan.notes);
    ctx.succeeded(&object_key);
    let resync = crate::trial::controller::RESYNC;
    Ok(if plan.wait {
        Action::requeue(WAIT)
    } else if let Some(s) = plan.requeue_after {
        Action::requeue(Duration::from_secs(s.max(1)).min(resync))
    } else {
        Action::requeue(resync)
    })
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;

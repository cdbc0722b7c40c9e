//! The `ChildTrial` reconciler: reads the trial's current Pod and probe, asks
//! [`super::plan::plan`] what to do, and does it: create the trainer Pod and the LatencyProbe
//! (one of that name there already counts as created), write the status, delete the Pods of
//! a finished trial, record Events and metrics.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use nasop_crds::api::{ChildTrial, LatencyProbe, TrialPhase};
use nasop_crds::result::FailureReason;

use super::plan::{finished, plan, Note, TrialPlan};
use super::pod::{trainer_pod, ROLE_LABEL, TRIAL_LABEL};
use crate::runtime::{apply_status_at, create, now, Context, Error, Result};

/// The controller name (metrics label).
pub const CONTROLLER: &str = "childtrial";

/// How often an unfinished trial is looked at without a change (a safety net for missed
/// watch events; Pod and probe changes trigger reconciles at once).
pub const RESYNC: Duration = Duration::from_secs(300);

/// Reconciles one ChildTrial.
///
/// # Errors
/// API errors (retried with backoff by the error policy) and Pods that cannot be built.
pub async fn reconcile(trial: Arc<ChildTrial>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    // The cache may not show this process's last status write yet (see `newest_trial`).
    let trial = ctx.newest_trial(trial);
    let namespace = trial
        .namespace()
        .ok_or(Error::Missing("metadata.namespace"))?;
    let name = trial.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let probes: Api<LatencyProbe> = Api::namespaced(ctx.client.clone(), &namespace);
    let trials: Api<ChildTrial> = Api::namespaced(ctx.client.clone(), &namespace);
    let status = trial.status.clone().unwrap_or_default();
    let was_finished = finished(&status);
    if was_finished && status.pod_name.is_none() {
        let action = clean_leftovers(&ctx, &pods, &trial, &namespace, &name).await?;
        ctx.succeeded(&crate::runtime::key(trial.as_ref()));
        return Ok(action);
    }
    let pod = match (&status.pod_name, was_finished, status.metrics.is_some()) {
        (Some(p), false, false) => ctx.pod(&pods, &namespace, p).await?,
        _ => None,
    };
    if pod.is_none() && status.pod_name.is_some() && !was_finished && status.metrics.is_none() {
        // The pod this trial names is gone: a disruption, unless the trial moved on and the
        // cache does not show it yet (its result written and its pods deleted by another
        // reconcile). Asked of the API server first; this path is rare.
        match trials.get_opt(&name).await? {
            None => return Ok(Action::await_change()),
            Some(fresh) if fresh.metadata.resource_version != trial.metadata.resource_version => {
                ctx.newer_trial(&trial, fresh);
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Some(_) => {}
        }
    }
    let probe = match (&status.probe_name, was_finished) {
        (Some(p), false) => probes.get_opt(p).await?,
        _ => None,
    };
    let mut plan = plan(&trial, pod.as_ref(), probe.as_ref(), &now());
    let mut created = Ok(());
    if let Some(attempt) = plan.create_pod {
        created = create(&pods, &trainer_pod(&trial, attempt)?).await;
    }
    if let (Ok(()), Some(p)) = (&created, &plan.create_probe) {
        created = create(&probes, p).await;
    }
    if let Err(e) = created {
        // An object the API server refuses as invalid fails the trial; anything else retries.
        let message = e.rejection().ok_or(e)?;
        reject(
            &mut plan,
            format!("the API server refused an object of the trial: {message}"),
        );
    }
    if trial.status.as_ref() != Some(&plan.status) {
        // Written only over the version read: a status planned from a stale read (the cache
        // behind a change) is refused with 409 and planned again from a newer one.
        let version = trial.metadata.resource_version.as_deref();
        let written = match apply_status_at(&trials, trial.as_ref(), &plan.status, version).await {
            Ok(written) => written,
            Err(e) => {
                ctx.forget_newer_trial(&trial);
                return Err(e);
            }
        };
        ctx.newer_trial(&trial, written);
        if !was_finished && finished(&plan.status) {
            if let Some(seconds) = plan.status.metrics.as_ref().and_then(|m| m.train_seconds) {
                ctx.metrics.trial_duration.observe(seconds);
            }
        }
    }
    ctx.publish(trial.as_ref(), "Reconcile", &plan.notes);
    // After the status: the result is stored before the Pod that holds it goes.
    if plan.delete_pods {
        delete_trainer_pods(&pods, &name).await?;
    }
    ctx.succeeded(&crate::runtime::key(trial.as_ref()));
    if finished(&plan.status) {
        // Its Pods' deletion wakes it again (see `clean_leftovers`).
        return Ok(Action::await_change());
    }
    // A pending deadline may fall due before the next pod event (or the resync).
    let due = plan
        .requeue_after
        .map(|s| std::time::Duration::from_secs(s.max(1)));
    Ok(Action::requeue(due.map_or(RESYNC, |d| d.min(RESYNC))))
}

/// How long after a trial finished its trainer Pods may still be in the Pod cache because
/// their deletion is in flight (the cache lags the DELETE). A finished trial with Pods in the
/// cache is looked at again after this; Pods still there then were left by a reconcile cut
/// short between the status write and the delete (a crash, a failed request), and are deleted.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(30);

/// Deletes the trainer Pods of trial `name` (all attempts).
async fn delete_trainer_pods(pods: &Api<Pod>, name: &str) -> Result<()> {
    pods.delete_collection(
        &DeleteParams::background(),
        &ListParams::default().labels(&format!("{TRIAL_LABEL}={name},{ROLE_LABEL}=trainer")),
    )
    .await?;
    Ok(())
}

/// For a finished trial that names no Pod: deletes trainer Pods the Pod cache still holds
/// [`LEFTOVER_GRACE`] after the trial finished, and looks again when that falls due (or
/// when the Pod cache has listed the Pods, at start-up). No API request while the cache holds
/// none (the usual case).
async fn clean_leftovers(
    ctx: &Context,
    pods: &Api<Pod>,
    trial: &ChildTrial,
    namespace: &str,
    name: &str,
) -> Result<Action> {
    match ctx.cached_trainer_pods(namespace, name) {
        Some(0) => return Ok(Action::await_change()),
        // The Pod cache has not listed the Pods yet (start-up): look again later.
        None => return Ok(Action::requeue(LEFTOVER_GRACE)),
        Some(_) => {}
    }
    let finished_at = trial
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .map(|t| t.0);
    match leftover_wait(finished_at, now().0) {
        Some(wait) => Ok(Action::requeue(wait)),
        None => {
            delete_trainer_pods(pods, name).await?;
            Ok(Action::await_change())
        }
    }
}

/// How long to wait before Pods of a trial that finished at `finished_at` count as left
/// behind, at `now`; `None`: they do (also without a completion time).
pub fn leftover_wait(
    finished_at: Option<k8s_openapi::jiff::Timestamp>,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<Duration> {
    let since = now.duration_since(finished_at?);
    let since = Duration::try_from(since).unwrap_or(Duration::ZERO);
    LEFTOVER_GRACE
        .checked_sub(since)
        .filter(|w| !w.is_zero())
        // Whole seconds, rounded up: never before the grace ends.
        .map(|w| Duration::from_secs(w.as_secs() + u64::from(w.subsec_nanos() > 0)))
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;

/// Marks the plan's trial failed with [`FailureReason::InvalidInput`]: the API server refused
/// its pod or probe.
fn reject(plan: &mut TrialPlan, message: String) {
    let s = &mut plan.status;
    s.phase = Some(TrialPhase::Failed);
    s.reason = Some(FailureReason::InvalidInput.name().to_string());
    s.message = Some(message.clone());
    s.completion_time = Some(now());
    plan.notes.push(Note {
        warning: true,
        reason: "TrialFailed",
        message,
    });
}

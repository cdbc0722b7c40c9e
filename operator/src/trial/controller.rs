//! The `ChildTrial` reconciler: reads the trial's current Pod and probe, asks
//! [`super::plan::plan`] what to do, and does it: create the trainer Pod and the LatencyProbe
//! (one of that name there already counts as created), write the status, delete the Pods of
//! a finished trial, record Events and metrics. A trial's usual reconciles make one API
//! request each: create the Pod; write the status that names it; write the result; delete
//! the Pod (each woken by the watch event of the one before).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use nasop_crds::api::{ChildTrial, LatencyProbe, TrialPhase};
use nasop_crds::result::FailureReason;

use super::plan::{finished, plan, Note, TrialPlan};
use super::pod::{pod_name, trainer_pod};
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
    // One request per reconcile where it can be (each waits on the API server): a new trainer
    // Pod is created, and the status that names it is written by the reconcile that the
    // Pod's watch event wakes (the Pod cache then holds it, and the plan is the same). A Pod
    // that exists already (in the cache, or 409) gets its status written at once. The order
    // stays Pod first: a status never names a Pod that was not created, which would look
    // like a lost one (a disruption). A probe is created and named in one reconcile (its
    // trial reads it with a GET, not from a cache).
    let mut created = Ok(false);
    if let Some(attempt) = plan.create_pod {
        if ctx
            .cached_pod(&namespace, &pod_name(&name, attempt))
            .is_none()
        {
            created = create(&pods, &trainer_pod(&trial, attempt)?).await;
        }
    }
    if let Ok(true) = created {
        // Its watch event wakes the trial.
        ctx.succeeded(&crate::runtime::key(trial.as_ref()));
        return Ok(Action::requeue(RESYNC));
    }
    if let (Ok(_), Some(p)) = (&created, &plan.create_probe) {
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
    ctx.succeeded(&crate::runtime::key(trial.as_ref()));
    if finished(&plan.status) {
        // The status write wakes the trial again, and that reconcile deletes its Pods
        // (`plan.delete_pods`; see `clean_leftovers`): the result is stored before the Pod
        // that holds it goes.
        return Ok(Action::await_change());
    }
    // A pending deadline may fall due before the next pod event (or the resync).
    let due = plan
        .requeue_after
        .map(|s| std::time::Duration::from_secs(s.max(1)));
    Ok(Action::requeue(due.map_or(RESYNC, |d| d.min(RESYNC))))
}

/// How long the Pod cache may still show trainer Pods that this process deleted (the cache
/// lags the DELETE). Pods still there after this were not deleted (a DELETE lost with its
/// process), and are deleted again.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(30);

/// For a finished trial that names no Pod: deletes the trainer Pods the Pod cache holds
/// (those of a trial that just finished, or left by a process stopped before it deleted
/// them), unless this process deleted them less than [`LEFTOVER_GRACE`] ago (then it looks
/// again when that ends). No API request while the cache holds none (the usual case), or
/// before the Pod cache has listed the Pods (start-up: it looks again later). Each Pod is
/// deleted by name: a DELETE of the collection by label took the API server 43 / 273 ms
/// (p50 / p99) in `make bench-scale`, against 16 / 88 ms for a status write.
async fn clean_leftovers(
    ctx: &Context,
    pods: &Api<Pod>,
    trial: &ChildTrial,
    namespace: &str,
    name: &str,
) -> Result<Action> {
    let left = match ctx.cached_trainer_pods(namespace, name) {
        Some(left) if left.is_empty() => return Ok(Action::await_change()),
        Some(left) => left,
        None => return Ok(Action::requeue(LEFTOVER_GRACE)),
    };
    let key = crate::runtime::key(trial);
    if let Some(wait) = ctx.pods_deleted_within(&key, LEFTOVER_GRACE) {
        return Ok(Action::requeue(wait));
    }
    let deletes = left.iter().map(|pod| crate::runtime::delete(pods, pod));
    futures::future::try_join_all(deletes).await?;
    ctx.deleted_pods(&key, LEFTOVER_GRACE);
    Ok(Action::await_change())
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

//! What a `ChildTrial` needs next, from the trial, the Pod of its current attempt and its
//! `LatencyProbe`. Pure: the controller reads those objects, calls [`plan`], and carries out
//! the plan (create the Pod or the probe, write the status, delete finished Pods).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;
use kube::Resource;
use nasop_crds::api::{
    labels, ChildTrial, ChildTrialStatus, LatencyProbe, LatencyProbeSpec, ProbePhase, TrialMetrics,
    TrialPhase,
};
use nasop_crds::result::{FailureReason, TrainOutcome, TrainResult};
use nasop_crds::reward::reward;

use super::pod::pod_name;
use crate::commands::probe_input;
use crate::pods::{pending_verdict, pod_state, PendingVerdict, PodState};

/// Disrupted attempts (evictions, preemptions, lost nodes) after which a trial fails with
/// [`FailureReason::Disrupted`]: a bound on retries that are not the trial's fault.
pub const MAX_DISRUPTIONS: i32 = 10;

/// An Event to record on the trial.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// What to do for a trial.
#[derive(Clone, Debug)]
pub struct TrialPlan {
    /// The status to write (written only when it differs from the current one).
    pub status: ChildTrialStatus,
    /// Create the trainer Pod of this attempt (1-based).
    pub create_pod: Option<i32>,
    /// Create this LatencyProbe.
    pub create_probe: Option<LatencyProbe>,
    /// The trial finishes in this plan (or finished before with a pod still named): its
    /// status is written first (the result, no pod name), and its trainer Pods are deleted
    /// by the reconcile that the write wakes (see `crate::trial::controller::clean_leftovers`).
    /// In that order the result is stored before the Pod that holds it goes.
    pub delete_pods: bool,
    /// Events to record.
    pub notes: Vec<Note>,
    /// Reconcile again after this many seconds at the latest (a pending deadline falls due
    /// then, and no pod event may come before it).
    pub requeue_after: Option<u64>,
}

/// The name of a trial's latency probe.
pub fn probe_name(trial: &str) -> String {
    format!("{trial}-probe")
}

/// Reads a trainer result document: the metrics of a success, or the failure.
///
/// # Errors
/// A failure reason and message: the trainer's own, or [`FailureReason::BadResult`] for a
/// missing or untrustworthy document.
pub fn read_result(message: Option<&str>) -> Result<TrialMetrics, (FailureReason, String)> {
    let text = message.ok_or((
        FailureReason::BadResult,
        "the trainer exited 0 but left no termination message".to_string(),
    ))?;
    match TrainResult::parse(text.trim()) {
        Ok(TrainResult {
            outcome: TrainOutcome::Succeeded(r),
            ..
        }) => Ok(TrialMetrics {
            accuracy: Some(r.validation_accuracy),
            loss: Some(r.validation_loss),
            params: Some(r.params),
            macs: Some(r.macs),
            train_seconds: Some(r.wall_seconds),
            epochs: Some(r.epochs as i32),
            learning_curve: r
                .learning_curve
                .iter()
                .map(|e| e.validation_accuracy)
                .take(1000)
                .collect(),
        }),
        Ok(TrainResult {
            outcome: TrainOutcome::Failed(f),
            ..
        }) => Err((f.reason, f.message)),
        Err(e) => Err((
            FailureReason::BadResult,
            format!("the trainer's result cannot be trusted: {e}"),
        )),
    }
}

/// The failure inside a termination message, if it holds a failure document.
pub fn failure_of(message: &str) -> Option<(FailureReason, String)> {
    match TrainResult::parse(message.trim()) {
        Ok(TrainResult {
            outcome: TrainOutcome::Failed(f),
            ..
        }) => Some((f.reason, f.message)),
        _ => None,
    }
}

/// The LatencyProbe of a trained trial: owned by the trial, on the latency objective's device
/// class, with the trial's probe template, its image defaulting to the trial's, and the input
/// shape resolved from the dataset.
///
/// # Errors
/// A message when the trial has no latency objective, no name/uid, or an input shape that
/// cannot be known (an image folder without `probe.inputShape`).
pub fn latency_probe(trial: &ChildTrial) -> Result<LatencyProbe, String> {
    let spec = &trial.spec;
    let objective = spec
        .objective
        .latency
        .as_ref()
        .ok_or("the trial has no latency objective")?;
    let name = trial.metadata.name.clone().ok_or("the trial has no name")?;
    let owner = trial
        .controller_owner_ref(&())
        .ok_or("the trial has no uid")?;
    let (shape, classes) = probe_input(spec).ok_or(
        "probe.inputShape must be set (square images) for a dataset whose image shape is not fixed",
    )?;
    let mut settings = spec.probe.as_deref().cloned().unwrap_or_default();
    settings.image = settings.image.or_else(|| Some(spec.trial.image.clone()));
    settings.input_shape = Some(shape.iter().map(|&d| d as i32).collect());
    let mut probe = LatencyProbe::new(
        &probe_name(&name),
        LatencyProbeSpec {
            search_space: (*spec.search_space).clone(),
            genotype: spec.genotype.clone(),
            genotype_hash: spec.genotype_hash.clone(),
            device_class: objective.device_class.clone(),
            trial_name: Some(name.clone()),
            classes: classes as i32,
            settings,
        },
    );
    probe.metadata = ObjectMeta {
        name: Some(probe_name(&name)),
        namespace: trial.metadata.namespace.clone(),
        labels: Some(BTreeMap::from([
            (labels::SEARCH.to_string(), spec.search_name.clone()),
            (labels::TRIAL.to_string(), name),
            (
                labels::GENOTYPE_HASH.to_string(),
                spec.genotype_hash.clone(),
            ),
            (
                labels::DEVICE_CLASS.to_string(),
                objective.device_class.clone(),
            ),
            (
                labels::PROBE_KEY.to_string(),
                crate::probe::plan::probe_key(&probe.spec),
            ),
            (labels::APP_NAME.to_string(), "nasop".to_string()),
            (
                labels::APP_MANAGED_BY.to_string(),
                "nasop-operator".to_string(),
            ),
        ])),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    Ok(probe)
}

/// The plan for `trial`, given the Pod of its current attempt (`None`: not found) and its
/// probe (`None`: not found), at time `now`.
pub fn plan(
    trial: &ChildTrial,
    pod: Option<&Pod>,
    probe: Option<&LatencyProbe>,
    now: &Time,
) -> TrialPlan {
    let mut status = trial.status.clone().unwrap_or_default();
    let mut out = TrialPlan {
        status: status.clone(),
        create_pod: None,
        create_probe: None,
        delete_pods: false,
        notes: Vec::new(),
        requeue_after: None,
    };
    if finished(&status) {
        // Finished with a pod still named (written so by an earlier version, which deleted
        // the pods in a later pass): drop the name and clean the pods.
        release_pods(&mut status, &mut out);
        out.status = status;
        return out;
    }
    let name = trial.metadata.name.clone().unwrap_or_default();
    let max_attempts = trial.spec.trial.max_attempts.max(1);
    if status.metrics.is_some() {
        // Trained; only the latency is missing.
        finish_with_probe(trial, &mut status, probe, now, &mut out);
        release_pods(&mut status, &mut out);
        out.status = status;
        return out;
    }
    if status.attempts == 0 {
        start_attempt(&name, &mut status, 1, &mut out);
        out.status = status;
        return out;
    }
    let state = match pod {
        None => PodState::Disrupted(format!(
            "the pod {} is gone (deleted, or garbage-collected with its node)",
            status.pod_name.clone().unwrap_or_default()
        )),
        Some(p) => pod_state(p, failure_of),
    };
    match state {
        PodState::Pending(wait, message) => {
            status.phase = Some(TrialPhase::Pending);
            let verdict = pod.map(|p| {
                pending_verdict(
                    p,
                    "trainer",
                    wait,
                    message,
                    trial.spec.trial.pending_deadline_seconds,
                    "trial.pendingDeadlineSeconds",
                    now,
                )
            });
            match verdict {
                Some(PendingVerdict::Fail(reason, message)) => {
                    fail(&mut status, reason, message, now, &mut out)
                }
                Some(PendingVerdict::WaitAtMost(s)) => out.requeue_after = Some(s),
                Some(PendingVerdict::Wait) | None => {}
            }
        }
        PodState::Running => {
            status.phase = Some(TrialPhase::Running);
            if status.start_time.is_none() {
                let started = pod
                    .and_then(|p| p.status.as_ref())
                    .and_then(|s| s.start_time.clone());
                status.start_time = Some(started.unwrap_or_else(|| now.clone()));
            }
        }
        PodState::Succeeded(message) => match read_result(message.as_deref()) {
            Ok(metrics) => {
                status.metrics = Some(metrics);
                if status.start_time.is_none() {
                    status.start_time = Some(now.clone());
                }
                finish_with_probe(trial, &mut status, probe, now, &mut out);
            }
            Err((reason, message)) => fail(&mut status, reason, message, now, &mut out),
        },
        PodState::Disrupted(message) => {
            status.disruptions += 1;
            if status.disruptions > MAX_DISRUPTIONS {
                fail(
                    &mut status,
                    FailureReason::Disrupted,
                    format!("{MAX_DISRUPTIONS} attempts were disrupted; the last: {message}"),
                    now,
                    &mut out,
                );
            } else {
                out.notes.push(Note {
                    warning: true,
                    reason: "PodDisrupted",
                    message: format!(
                        "attempt {} disrupted ({message}); starting it again (not counted as a failure)",
                        status.attempts
                    ),
                });
                let next = status.attempts + 1;
                start_attempt(&name, &mut status, next, &mut out);
            }
        }
        PodState::Failed(reason, message) => {
            let failed_attempts = status.attempts - status.disruptions;
            if reason.retryable() && failed_attempts < max_attempts {
                out.notes.push(Note {
                    warning: true,
                    reason: "AttemptFailed",
                    message: format!(
                        "attempt {} failed ({}: {message}); retrying ({failed_attempts} of {max_attempts} attempts used)",
                        status.attempts,
                        reason.name()
                    ),
                });
                let next = status.attempts + 1;
                start_attempt(&name, &mut status, next, &mut out);
            } else {
                let message = if reason.retryable() {
                    format!("{message} (after {failed_attempts} failed attempts)")
                } else {
                    message
                };
                fail(&mut status, reason, message, now, &mut out);
            }
        }
    }
    release_pods(&mut status, &mut out);
    out.status = status;
    out
}

/// A finished trial names no pod and has its trainer Pods deleted (after its status is
/// written: [`TrialPlan::delete_pods`]).
fn release_pods(status: &mut ChildTrialStatus, out: &mut TrialPlan) {
    if finished(status) && status.pod_name.is_some() {
        status.pod_name = None;
        out.delete_pods = true;
    }
}

/// Whether the status is final (Succeeded or Failed).
pub fn finished(status: &ChildTrialStatus) -> bool {
    matches!(
        status.phase,
        Some(TrialPhase::Succeeded) | Some(TrialPhase::Failed)
    )
}

fn start_attempt(name: &str, status: &mut ChildTrialStatus, attempt: i32, out: &mut TrialPlan) {
    status.attempts = attempt;
    status.pod_name = Some(pod_name(name, attempt));
    status.phase = Some(TrialPhase::Pending);
    out.create_pod = Some(attempt);
}

fn fail(
    status: &mut ChildTrialStatus,
    reason: FailureReason,
    message: String,
    now: &Time,
    out: &mut TrialPlan,
) {
    status.phase = Some(TrialPhase::Failed);
    status.reason = Some(reason.name().to_string());
    status.message = Some(message.clone());
    status.completion_time = Some(now.clone());
    out.notes.push(Note {
        warning: true,
        reason: "TrialFailed",
        message: format!("{}: {message}", reason.name()),
    });
}

/// With metrics in `status`: the reward now (no latency objective), or after the probe.
fn finish_with_probe(
    trial: &ChildTrial,
    status: &mut ChildTrialStatus,
    probe: Option<&LatencyProbe>,
    now: &Time,
    out: &mut TrialPlan,
) {
    let accuracy = status
        .metrics
        .as_ref()
        .and_then(|m| m.accuracy)
        .unwrap_or(f64::NAN);
    let objective = trial.spec.objective.latency.as_ref();
    let latency = if objective.is_none() {
        None
    } else {
        match probe.and_then(|p| p.status.as_ref().map(|s| (p, s))) {
            None if probe.is_none() => {
                match latency_probe(trial) {
                    Ok(p) => {
                        status.probe_name = p.metadata.name.clone();
                        out.create_probe = Some(p);
                    }
                    Err(m) => fail(status, FailureReason::InvalidInput, m, now, out),
                }
                if status.phase != Some(TrialPhase::Failed) {
                    status.phase = Some(TrialPhase::Running);
                }
                return;
            }
            Some((_, s)) if s.phase == Some(ProbePhase::Succeeded) => match s.latency.clone() {
                Some(l) => {
                    status.latency = Some(l.clone());
                    Some(l.median_ms)
                }
                None => None,
            },
            Some((_, s)) if s.phase == Some(ProbePhase::Failed) => {
                fail(
                    status,
                    FailureReason::ProbeFailed,
                    format!(
                        "latency probe {}: {}: {}",
                        status.probe_name.clone().unwrap_or_default(),
                        s.reason.clone().unwrap_or_default(),
                        s.message.clone().unwrap_or_default()
                    ),
                    now,
                    out,
                );
                return;
            }
            _ => {
                status.phase = Some(TrialPhase::Running);
                return;
            }
        }
    };
    match reward(objective, accuracy, latency) {
        Some(r) if (0.0..=1.0).contains(&accuracy) => {
            status.reward = Some(r);
            status.phase = Some(TrialPhase::Succeeded);
            status.completion_time = Some(now.clone());
            out.notes.push(Note {
                warning: false,
                reason: "TrialSucceeded",
                message: match latency {
                    Some(l) => format!("accuracy {accuracy:.4}, latency {l:.3} ms, reward {r:.4}"),
                    None => format!("accuracy {accuracy:.4}, reward {r:.4}"),
                },
            });
        }
        _ => fail(
            status,
            FailureReason::BadResult,
            format!("no reward from accuracy {accuracy} and latency {latency:?} ms"),
            now,
            out,
        ),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

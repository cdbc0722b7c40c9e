//! What a `LatencyProbe` needs next, from the probe, the Pod of its current attempt, and the
//! other probes of the same (genotype hash, device class). Pure.
//!
//! Cache: a child is measured once per measurement setting. The key ([`probe_key`]) hashes
//! the whole probe spec but the trial: space parameters, genotype, device class, input shape,
//! classes, image, device, threads, repeats. A probe whose key already has a Succeeded probe
//! copies its result (`cachedFrom`); while an earlier probe of the key (by creation time,
//! then name) is unfinished, it waits instead of measuring the same thing twice.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use nasop_crds::api::{LatencyProbe, LatencyProbeSpec, LatencyProbeStatus, ProbePhase};
use nasop_crds::result::{FailureReason, ProbeOutcome, ProbeResult};
use sha2::{Digest, Sha256};

use super::pod::pod_name;
use crate::pods::{pending_verdict, pod_state, PendingVerdict, PodState};
use crate::trial::plan::{Note, MAX_DISRUPTIONS};

/// Probe attempts that failed on their own (retryable reasons) before the probe fails.
pub const MAX_PROBE_ATTEMPTS: i32 = 3;

/// What to do for a probe.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbePlan {
    /// The status to write (written only when it differs from the current one).
    pub status: LatencyProbeStatus,
    /// Create the probe Pod of this attempt (1-based).
    pub create_pod: Option<i32>,
    /// The probe finished before this reconcile: delete its Pods, then write the status
    /// (which no longer names a pod).
    pub delete_pods: bool,
    /// Waiting for an earlier probe of the same child: look again later.
    pub wait: bool,
    /// Events to record.
    pub notes: Vec<Note>,
    /// Reconcile again after this many seconds at the latest (an image-error deadline falls
    /// due then).
    pub requeue_after: Option<u64>,
}

/// The failure inside a probe's termination message, if it holds a failure document.
pub fn probe_failure_of(message: &str) -> Option<(FailureReason, String)> {
    match ProbeResult::parse(message.trim()) {
        Ok(ProbeResult {
            outcome: ProbeOutcome::Failed(f),
            ..
        }) => Some((f.reason, f.message)),
        _ => None,
    }
}

/// The cache key of a probe spec: the first 16 hex digits of the SHA-256 of its JSON without
/// `trialName` (a label value).
pub fn probe_key(spec: &LatencyProbeSpec) -> String {
    let mut spec = spec.clone();
    spec.trial_name = None;
    let json = serde_json::to_vec(&spec).expect("a probe spec serializes");
    Sha256::digest(&json)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn finished(p: &LatencyProbe) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase),
        Some(ProbePhase::Succeeded) | Some(ProbePhase::Failed)
    )
}

fn order_key(p: &LatencyProbe) -> (Option<Time>, Option<String>) {
    (
        p.metadata.creation_timestamp.clone(),
        p.metadata.name.clone(),
    )
}

/// The plan for `probe`, given the Pod of its current attempt (`None`: not found) and the
/// probes that may share its key (`same_key`; others and `probe` itself are skipped), at time
/// `now`.
pub fn plan(
    probe: &LatencyProbe,
    pod: Option<&Pod>,
    same_key: &[LatencyProbe],
    now: &Time,
) -> ProbePlan {
    let mut status = probe.status.clone().unwrap_or_default();
    let mut out = ProbePlan {
        status: status.clone(),
        create_pod: None,
        delete_pods: false,
        wait: false,
        notes: Vec::new(),
        requeue_after: None,
    };
    if finished(probe) {
        // Finished: clean the pods once, then drop the pod name from the status.
        if status.pod_name.is_some() {
            status.pod_name = None;
            out.status = status;
            out.delete_pods = true;
        }
        return out;
    }
    let name = probe.metadata.name.clone().unwrap_or_default();
    if status.attempts == 0 {
        let key = probe_key(&probe.spec);
        let others = same_key.iter().filter(|p| {
            p.metadata.name.as_deref() != Some(name.as_str()) && probe_key(&p.spec) == key
        });
        let cached = others.clone().find(|p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.phase == Some(ProbePhase::Succeeded) && s.latency.is_some())
        });
        if let Some(source) = cached {
            let s = source.status.as_ref().expect("checked");
            status.phase = Some(ProbePhase::Succeeded);
            status.latency = s.latency.clone();
            status.device = s.device.clone();
            status.cached_from = source.metadata.name.clone();
            status.completion_time = Some(now.clone());
            // A pod of attempt 1 may exist when this reconcile read a stale probe: remove it.
            out.delete_pods = true;
            out.notes.push(Note {
                warning: false,
                reason: "CachedResult",
                message: format!(
                    "measured before by {} on this device class",
                    source.metadata.name.clone().unwrap_or_default()
                ),
            });
            out.status = status;
            return out;
        }
        let mine = order_key(probe);
        if let Some(earlier) = others.clone().find(|p| !finished(p) && order_key(p) < mine) {
            status.phase = Some(ProbePhase::Pending);
            status.message = Some(format!(
                "waiting for {} (the same child on the same device class)",
                earlier.metadata.name.clone().unwrap_or_default()
            ));
            out.wait = true;
            out.status = status;
            return out;
        }
        start_attempt(&name, &mut status, 1, &mut out);
        out.status = status;
        return out;
    }
    let state = match pod {
        None => PodState::Disrupted(format!(
            "the pod {} is gone",
            status.pod_name.clone().unwrap_or_default()
        )),
        Some(p) => pod_state(p, probe_failure_of),
    };
    match state {
        PodState::Pending(wait, message) => {
            status.phase = Some(ProbePhase::Pending);
            status.message = message.clone();
            // Image and container errors end the probe (and so the trial, ProbeFailed); waiting
            // for a free device node has no limit (probes of a class queue for its nodes).
            match pod.map(|p| pending_verdict(p, "probe", wait, message, None, "", now)) {
                Some(PendingVerdict::Fail(reason, message)) => {
                    fail(&mut status, reason, message, now, &mut out)
                }
                Some(PendingVerdict::WaitAtMost(s)) => out.requeue_after = Some(s),
                Some(PendingVerdict::Wait) | None => {}
            }
        }
        PodState::Running => {
            status.phase = Some(ProbePhase::Running);
            status.message = None;
            if status.start_time.is_none() {
                let started = pod
                    .and_then(|p| p.status.as_ref())
                    .and_then(|s| s.start_time.clone());
                status.start_time = Some(started.unwrap_or_else(|| now.clone()));
            }
        }
        PodState::Succeeded(message) => {
            match message.as_deref().map(|m| ProbeResult::parse(m.trim())) {
                Some(Ok(ProbeResult {
                    outcome: ProbeOutcome::Succeeded(r),
                    ..
                })) => {
                    status.phase = Some(ProbePhase::Succeeded);
                    status.message = None;
                    status.latency = Some(r.latency.clone());
                    status.device = Some(r.identity.clone());
                    status.completion_time = Some(now.clone());
                    out.notes.push(Note {
                        warning: false,
                        reason: "Measured",
                        message: format!(
                            "median {:.3} ms over {} runs on {}",
                            r.latency.median_ms,
                            r.latency.repeats,
                            r.identity.node_name.clone().unwrap_or_default()
                        ),
                    });
                }
                Some(Ok(ProbeResult {
                    outcome: ProbeOutcome::Failed(f),
                    ..
                })) => fail(&mut status, f.reason, f.message, now, &mut out),
                Some(Err(e)) => fail(
                    &mut status,
                    FailureReason::BadResult,
                    format!("the probe's result cannot be trusted: {e}"),
                    now,
                    &mut out,
                ),
                None => fail(
                    &mut status,
                    FailureReason::BadResult,
                    "the probe exited 0 but left no termination message".into(),
                    now,
                    &mut out,
                ),
            }
        }
        PodState::Disrupted(message) => {
            if status.attempts > MAX_DISRUPTIONS + MAX_PROBE_ATTEMPTS {
                fail(
                    &mut status,
                    FailureReason::Disrupted,
                    format!("too many attempts; the last: {message}"),
                    now,
                    &mut out,
                );
            } else {
                let next = status.attempts + 1;
                out.notes.push(Note {
                    warning: true,
                    reason: "PodDisrupted",
                    message: format!(
                        "attempt {} disrupted ({message}); measuring again",
                        next - 1
                    ),
                });
                start_attempt(&name, &mut status, next, &mut out);
            }
        }
        PodState::Failed(reason, message) => {
            if reason.retryable() && status.attempts < MAX_PROBE_ATTEMPTS {
                let next = status.attempts + 1;
                out.notes.push(Note {
                    warning: true,
                    reason: "AttemptFailed",
                    message: format!(
                        "attempt {} failed ({}: {message}); retrying",
                        next - 1,
                        reason.name()
                    ),
                });
                start_attempt(&name, &mut status, next, &mut out);
            } else {
                fail(&mut status, reason, message, now, &mut out);
            }
        }
    }
    out.status = status;
    out
}

fn start_attempt(name: &str, status: &mut LatencyProbeStatus, attempt: i32, out: &mut ProbePlan) {
    status.attempts = attempt;
    status.pod_name = Some(pod_name(name, attempt));
    status.phase = Some(ProbePhase::Pending);
    status.message = None;
    out.create_pod = Some(attempt);
}

fn fail(
    status: &mut LatencyProbeStatus,
    reason: FailureReason,
    message: String,
    now: &Time,
    out: &mut ProbePlan,
) {
    status.phase = Some(ProbePhase::Failed);
    status.reason = Some(reason.name().to_string());
    status.message = Some(message.clone());
    status.completion_time = Some(now.clone());
    out.notes.push(Note {
        warning: true,
        reason: "ProbeFailed",
        message: format!("{}: {message}", reason.name()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{latency_trial, now, pod, probe_success};
    use crate::trial::plan::latency_probe;
    use k8s_openapi::api::core::v1::Pod;

    fn probe(name: &str, created: &str) -> LatencyProbe {
        let mut p = latency_probe(&latency_trial(2.0)).unwrap();
        p.metadata.name = Some(name.into());
        p.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        p
    }

    #[test]
    fn a_new_probe_measures_and_reads_the_result() {
        let p = probe("a-probe", "2026-11-29T10:00:00Z");
        let first = plan(&p, None, std::slice::from_ref(&p), &now());
        assert_eq!(first.create_pod, Some(1));
        assert_eq!(first.status.pod_name.as_deref(), Some("a-probe-1"));
        let mut running = p.clone();
        running.status = Some(first.status);
        let done = pod("a-probe-1", "Succeeded", 0, Some(&probe_success(3.25)));
        let measured = plan(&running, Some(&done), &[], &now());
        let s = &measured.status;
        assert_eq!(s.phase, Some(ProbePhase::Succeeded));
        assert_eq!(s.latency.as_ref().unwrap().median_ms, 3.25);
        assert_eq!(
            s.device.as_ref().unwrap().node_name.as_deref(),
            Some("pixel-node-1")
        );
        let mut finished = running.clone();
        finished.status = Some(measured.status.clone());
        let cleaned = plan(&finished, None, &[], &now());
        assert!(cleaned.delete_pods);
        assert_eq!(cleaned.status.pod_name, None);
        // A broken result fails with BadResult; a failure document keeps its reason.
        let broken = pod("a-probe-1", "Succeeded", 0, Some("{\"schema\":"));
        let p2 = plan(&running, Some(&broken), &[], &now());
        assert_eq!(p2.status.reason.as_deref(), Some("BadResult"));
    }

    #[test]
    fn the_same_child_on_the_same_device_class_is_measured_once() {
        let old = probe("old-probe", "2026-11-29T09:00:00Z");
        let new = probe("new-probe", "2026-11-29T10:00:00Z");
        // The older one is measuring: the newer waits.
        let mut measuring = old.clone();
        measuring.status = Some(LatencyProbeStatus {
            phase: Some(ProbePhase::Running),
            attempts: 1,
            ..LatencyProbeStatus::default()
        });
        let waits = plan(&new, None, &[measuring.clone(), new.clone()], &now());
        assert!(waits.wait && waits.create_pod.is_none());
        assert_eq!(waits.status.phase, Some(ProbePhase::Pending));
        // The older one does not wait for the newer.
        let goes = plan(&old, None, &[old.clone(), new.clone()], &now());
        assert_eq!(goes.create_pod, Some(1));
        // Once measured, the newer copies the result.
        let mut measured = old.clone();
        measured.status = Some(LatencyProbeStatus {
            phase: Some(ProbePhase::Succeeded),
            latency: Some(nasop_crds::api::LatencySummary {
                median_ms: 1.5,
                p90_ms: 1.6,
                mean_ms: 1.55,
                stddev_ms: 0.05,
                min_ms: 1.4,
                repeats: 50,
            }),
            ..LatencyProbeStatus::default()
        });
        let mut other_shape = measured.clone();
        other_shape.spec.settings.input_shape = Some(vec![1, 3, 224, 224]);
        let not_shared = plan(&new, None, &[other_shape], &now());
        assert_eq!(
            not_shared.create_pod,
            Some(1),
            "another input shape is another measurement"
        );
        let cached = plan(&new, None, &[measured], &now());
        assert_eq!(cached.create_pod, None);
        assert_eq!(cached.status.phase, Some(ProbePhase::Succeeded));
        assert_eq!(cached.status.cached_from.as_deref(), Some("old-probe"));
        assert_eq!(cached.status.latency.unwrap().median_ms, 1.5);
    }

    #[test]
    fn failed_probes_retry_retryable_reasons_then_fail() {
        let mut p = probe("a-probe", "2026-11-29T10:00:00Z");
        p.status = Some(LatencyProbeStatus {
            phase: Some(ProbePhase::Running),
            attempts: 1,
            pod_name: Some("a-probe-1".into()),
            ..LatencyProbeStatus::default()
        });
        let crashed = pod("a-probe-1", "Failed", 1, None);
        let retry = plan(&p, Some(&crashed), &[], &now());
        assert_eq!(retry.create_pod, Some(2));
        p.status.as_mut().unwrap().attempts = MAX_PROBE_ATTEMPTS;
        let gave_up = plan(&p, Some(&crashed), &[], &now());
        assert_eq!(gave_up.status.phase, Some(ProbePhase::Failed));
        assert_eq!(gave_up.status.reason.as_deref(), Some("Internal"));
        let bad_input = pod("a-probe-1", "Failed", 2, None);
        let p1 = {
            let mut q = p.clone();
            q.status.as_mut().unwrap().attempts = 1;
            q
        };
        assert_eq!(
            plan(&p1, Some(&bad_input), &[], &now())
                .status
                .reason
                .as_deref(),
            Some("InvalidInput")
        );
    }

    #[test]
    fn a_probe_image_that_cannot_be_pulled_fails_the_probe_instead_of_waiting_forever() {
        let mut p = probe("a-probe", "2026-11-29T10:00:00Z");
        p.status = Some(LatencyProbeStatus {
            phase: Some(ProbePhase::Pending),
            attempts: 1,
            pod_name: Some("a-probe-1".into()),
            ..LatencyProbeStatus::default()
        });
        let waiting = |reason: &str, created: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "a-probe-1", "creationTimestamp": created},
                "status": {"phase": "Pending", "containerStatuses": [{"name": "probe",
                    "image": "reg/typo:1", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": "m"}}}]}}))
            .unwrap()
        };
        // now() is 12:00: pulling has failed for 10 minutes, the default limit.
        let failed = plan(
            &p,
            Some(&waiting("ImagePullBackOff", "2026-11-29T11:50:00Z")),
            &[],
            &now(),
        );
        assert_eq!(failed.status.phase, Some(ProbePhase::Failed));
        assert_eq!(failed.status.reason.as_deref(), Some("ImagePullFailed"));
        assert_eq!(
            failed.status.message.as_deref(),
            Some("the probe pod a-probe-1 could not pull its image for 600 s after it was scheduled (the limit for image and container errors is 600 s): ImagePullBackOff: m")
        );
        let early = plan(
            &p,
            Some(&waiting("ErrImagePull", "2026-11-29T11:59:00Z")),
            &[],
            &now(),
        );
        assert_eq!(
            (early.status.phase, early.requeue_after),
            (Some(ProbePhase::Pending), Some(540))
        );
        let bad = plan(
            &p,
            Some(&waiting("InvalidImageName", "2026-11-29T11:59:59Z")),
            &[],
            &now(),
        );
        assert_eq!(bad.status.reason.as_deref(), Some("ImagePullFailed"));
    }
}

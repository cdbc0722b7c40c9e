//! What trainer and probe Pods share: their security settings, scratch space and node-name
//! variable, and how a Pod's status reads as an outcome. Pure.
//!
//! Security follows the Kubernetes "restricted" Pod Security Standard
//! (kubernetes.io/docs/concepts/security/pod-security-standards): non-root, no privilege
//! escalation, all capabilities dropped, RuntimeDefault seccomp, plus a read-only root file
//! system and no service-account token (trainers and probes never call the API).

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerStateTerminated, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, Pod, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use nasop_crds::result::FailureReason;

/// The user and group trainer and probe containers run as (the images' non-root user).
pub const TRAINER_UID: i64 = 65532;
/// Writable scratch space (the root file system is read-only).
pub const SCRATCH: &str = "/tmp";
/// The container's termination message path, where the trainer writes its result JSON
/// (Kubernetes' default path; the kubelet keeps at most 4096 bytes).
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// Name, namespace and controller owner reference of the object a Pod is built for.
///
/// # Errors
/// [`crate::trial::pod::PodError::Missing`] naming the absent field (an object not read from
/// the API server).
pub fn owner_of<K: kube::Resource<DynamicType = ()>>(
    obj: &K,
) -> Result<
    (
        String,
        String,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ),
    crate::trial::pod::PodError,
> {
    use crate::trial::pod::PodError::Missing;
    let meta = obj.meta();
    let name = meta.name.clone().ok_or(Missing("metadata.name"))?;
    let namespace = meta
        .namespace
        .clone()
        .ok_or(Missing("metadata.namespace"))?;
    let owner = obj
        .controller_owner_ref(&())
        .ok_or(Missing("metadata.uid"))?;
    Ok((name, namespace, owner))
}

/// A trainer or probe Pod around its one `container`: `restartPolicy: Never`, no
/// service-account token, no service links, the restricted security contexts, and the
/// termination message at [`TERMINATION_LOG`] (file policy); `spec` and `container` carry the
/// rest.
pub fn restricted_pod(
    metadata: kube::api::ObjectMeta,
    mut spec: PodSpec,
    mut container: Container,
) -> Pod {
    container.termination_message_path = Some(TERMINATION_LOG.into());
    container.termination_message_policy = Some("File".into());
    container.security_context = Some(container_security());
    spec.restart_policy = Some("Never".into());
    spec.automount_service_account_token = Some(false);
    spec.enable_service_links = Some(false);
    spec.security_context = Some(pod_security());
    spec.containers = vec![container];
    Pod {
        metadata,
        spec: Some(spec),
        status: None,
    }
}

/// The Pod-level security context: non-root as [`TRAINER_UID`], RuntimeDefault seccomp.
pub fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(TRAINER_UID),
        run_as_group: Some(TRAINER_UID),
        fs_group: Some(TRAINER_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// The container security context: no privilege escalation, read-only root file system,
/// non-root, all capabilities dropped.
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// The `scratch` emptyDir volume and its mount at [`SCRATCH`].
pub fn scratch() -> (Volume, VolumeMount) {
    (
        Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        VolumeMount {
            name: "scratch".into(),
            mount_path: SCRATCH.into(),
            ..VolumeMount::default()
        },
    )
}

/// `NODE_NAME` from the downward API (`spec.nodeName`): results name the node they ran on.
pub fn node_name_env() -> EnvVar {
    EnvVar {
        name: "NODE_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "spec.nodeName".into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Pod `status.reason` values of a pod that stopped for reasons outside it: eviction (kubelet
/// node pressure or the Eviction API), preemption, node loss or shutdown
/// (kubernetes.io/docs/concepts/workloads/pods/disruptions and
/// kubernetes.io/docs/concepts/scheduling-eviction/node-pressure-eviction).
pub const DISRUPTION_REASONS: [&str; 6] = [
    "Evicted",
    "Preempting",
    "NodeLost",
    "NodeShutdown",
    "Shutdown",
    "Terminated",
];

/// Container `waiting` reasons of an image that cannot be pulled yet: the kubelet retries
/// with back-off (Kubernetes "Images" documentation).
pub const IMAGE_ERROR_REASONS: [&str; 5] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageInspect",
    "RegistryUnavailable",
    "SignatureValidationFailed",
];

/// Container `waiting` reasons of a container that cannot be created (e.g. an env
/// `valueFrom` naming a missing Secret or ConfigMap key): retried by the kubelet.
pub const CONTAINER_ERROR_REASONS: [&str; 3] = [
    "CreateContainerConfigError",
    "CreateContainerError",
    "PreCreateHookError",
];

/// Container `waiting` reasons that no retry can fix: the image reference itself is wrong,
/// or the pull policy `Never` names an image absent from the node.
pub const BAD_IMAGE_REASONS: [&str; 2] = ["InvalidImageName", "ErrImageNeverPull"];

/// Seconds an image or container-creation error may last when no pending deadline is set:
/// twice the kubelet's longest image-pull back-off (300 s, Kubernetes "Images"
/// documentation), so the pull is retried at least twice at that back-off.
pub const IMAGE_ERROR_DEADLINE_SECONDS: i64 = 600;

/// Why a Pending pod waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Scheduled (or no condition yet), its container being created (image pulling): normal.
    Starting,
    /// Not scheduled (`PodScheduled` False): no node fits yet, e.g. all GPUs busy.
    Unscheduled,
    /// The image cannot be pulled ([`IMAGE_ERROR_REASONS`]).
    ImageError,
    /// The container cannot be created ([`CONTAINER_ERROR_REASONS`]).
    ContainerError,
    /// A bad image reference ([`BAD_IMAGE_REASONS`]).
    BadImage,
}

/// What to do about a Pending pod.
#[derive(Clone, Debug, PartialEq)]
pub enum PendingVerdict {
    /// Keep waiting; look again after this many seconds at the latest (a deadline falls due).
    WaitAtMost(u64),
    /// Keep waiting without a deadline.
    Wait,
    /// Give up: the reason and a message naming the pod, the wait and the limit.
    Fail(FailureReason, String),
}

/// The verdict on `pod` (its `role`: "trainer" or "probe"), Pending for `wait` with the
/// kubelet's or scheduler's `message`, at `now`. A bad image fails at once; image and
/// container errors fail after `deadline` (`deadline_field`, e.g.
/// `trial.pendingDeadlineSeconds`; empty when none can be set) or, unset,
/// [`IMAGE_ERROR_DEADLINE_SECONDS`], counted from
/// when the pod was scheduled (a pod that queued for a GPU first is not blamed for that
/// time); an unscheduled or not-yet-started pod fails only with a `deadline`, counted from
/// its creation or its scheduling.
pub fn pending_verdict(
    pod: &Pod,
    role: &str,
    wait: Wait,
    message: Option<String>,
    deadline: Option<i64>,
    deadline_field: &str,
    now: &Time,
) -> PendingVerdict {
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now.0.as_second(), |t| t.0.as_second());
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "True")
        })
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0.as_second());
    let since = match wait {
        Wait::Unscheduled => created,
        _ => scheduled.unwrap_or(created),
    };
    let waited = (now.0.as_second() - since).max(0);
    let limit = match wait {
        Wait::BadImage => 0,
        Wait::ImageError | Wait::ContainerError => deadline.unwrap_or(IMAGE_ERROR_DEADLINE_SECONDS),
        Wait::Unscheduled | Wait::Starting => match deadline {
            Some(d) => d,
            None => return PendingVerdict::Wait,
        },
    };
    if waited < limit {
        return PendingVerdict::WaitAtMost((limit - waited) as u64);
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    let (reason, what) = match wait {
        Wait::BadImage => (
            FailureReason::ImagePullFailed,
            "has an image reference no retry can fix".to_string(),
        ),
        Wait::ImageError => (
            FailureReason::ImagePullFailed,
            format!("could not pull its image for {waited} s after it was scheduled"),
        ),
        Wait::ContainerError => (
            FailureReason::ContainerCreateFailed,
            format!("could not create its container for {waited} s after it was scheduled"),
        ),
        Wait::Unscheduled => (
            FailureReason::PendingTimeout,
            format!("stayed unscheduled for {waited} s"),
        ),
        Wait::Starting => (
            FailureReason::PendingTimeout,
            format!("did not start for {waited} s after it was scheduled"),
        ),
    };
    let limit_text = match (wait, deadline) {
        (Wait::BadImage, _) => String::new(),
        (_, Some(d)) => format!(" ({deadline_field} is {d})"),
        (_, None) if deadline_field.is_empty() => {
            format!(" (the limit for image and container errors is {IMAGE_ERROR_DEADLINE_SECONDS} s)")
        }
        (_, None) => format!(
            " (the limit for image and container errors is {IMAGE_ERROR_DEADLINE_SECONDS} s by default; {deadline_field} sets it)"
        ),
    };
    let detail = message.unwrap_or_else(|| "no reason reported".into());
    PendingVerdict::Fail(
        reason,
        format!("the {role} pod {name} {what}{limit_text}: {detail}"),
    )
}

/// How a trainer or probe Pod stands.
#[derive(Clone, Debug, PartialEq)]
pub enum PodState {
    /// Not running yet (scheduling, pulling the image): why, and a message when known.
    Pending(Wait, Option<String>),
    /// Running (or in an unknown phase: the node may come back).
    Running,
    /// Exited 0; the container's termination message (the result document), if any.
    Succeeded(Option<String>),
    /// Stopped by eviction, preemption, node loss or SIGTERM: run it again, not a failure.
    Disrupted(String),
    /// Failed on its own: the reason (from the result document, the exit code, or the pod)
    /// and a message.
    Failed(FailureReason, String),
}

/// The state of `pod` (of its first container). `parse_failure` reads a failure reason and
/// message out of a termination message (the trainer's result document), when it holds one.
pub fn pod_state(
    pod: &Pod,
    parse_failure: impl Fn(&str) -> Option<(FailureReason, String)>,
) -> PodState {
    let Some(status) = &pod.status else {
        return PodState::Pending(Wait::Starting, None);
    };
    let terminated: Option<&ContainerStateTerminated> = status
        .container_statuses
        .as_ref()
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    let message = terminated.and_then(|t| t.message.clone());
    match status.phase.as_deref() {
        Some("Succeeded") => PodState::Succeeded(message),
        Some("Failed") => {
            let reason = status.reason.as_deref().unwrap_or_default();
            let disruption_condition = status.conditions.iter().flatten().any(|c| {
                c.type_ == "DisruptionTarget" && c.status == "True" && reason != "DeadlineExceeded"
            });
            if DISRUPTION_REASONS.contains(&reason) || disruption_condition {
                return PodState::Disrupted(format!(
                    "{}: {}",
                    if reason.is_empty() {
                        "Disrupted"
                    } else {
                        reason
                    },
                    status.message.clone().unwrap_or_default()
                ));
            }
            if reason == "DeadlineExceeded" {
                return PodState::Failed(
                    FailureReason::DeadlineExceeded,
                    status
                        .message
                        .clone()
                        .unwrap_or_else(|| "the pod ran past activeDeadlineSeconds".into()),
                );
            }
            if let Some(found) = message.as_deref().and_then(&parse_failure) {
                return match found {
                    (FailureReason::Terminated, m) => {
                        PodState::Disrupted(format!("Terminated: {m}"))
                    }
                    other => PodState::Failed(other.0, other.1),
                };
            }
            let code = terminated.map(|t| t.exit_code);
            let oom = terminated.and_then(|t| t.reason.as_deref()) == Some("OOMKilled");
            let reason = if oom {
                FailureReason::OutOfMemory
            } else {
                code.and_then(FailureReason::from_exit_code)
                    .unwrap_or(FailureReason::Internal)
            };
            if reason == FailureReason::Terminated {
                return PodState::Disrupted("Terminated: the container got SIGTERM".into());
            }
            let detail = terminated
                .and_then(|t| t.reason.clone())
                .unwrap_or_else(|| "no container state".into());
            PodState::Failed(
                reason,
                match code {
                    Some(c) => format!("the container exited with code {c} ({detail})"),
                    None => format!("the pod failed ({detail})"),
                },
            )
        }
        Some("Running") | Some("Unknown") => PodState::Running,
        _ => {
            let waiting = status
                .container_statuses
                .as_ref()
                .and_then(|c| c.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref());
            let wait_reason = waiting
                .and_then(|w| w.reason.as_deref())
                .unwrap_or_default();
            let waiting = waiting.map(|w| {
                format!(
                    "{}: {}",
                    w.reason.clone().unwrap_or_default(),
                    w.message.clone().unwrap_or_default()
                )
            });
            let unschedulable = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                .map(|c| {
                    format!(
                        "{}: {}",
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default()
                    )
                });
            let wait = if BAD_IMAGE_REASONS.contains(&wait_reason) {
                Wait::BadImage
            } else if IMAGE_ERROR_REASONS.contains(&wait_reason) {
                Wait::ImageError
            } else if CONTAINER_ERROR_REASONS.contains(&wait_reason) {
                Wait::ContainerError
            } else if unschedulable.is_some() {
                Wait::Unscheduled
            } else {
                Wait::Starting
            };
            PodState::Pending(wait, waiting.or(unschedulable))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    fn terminated(phase: &str, code: i32, reason: &str, message: Option<&str>) -> Pod {
        let mut t = json!({"exitCode": code, "reason": reason});
        if let Some(m) = message {
            t["message"] = json!(m);
        }
        pod(json!({"phase": phase, "containerStatuses": [{
            "name": "trainer", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": t}}]}))
    }

    fn no_result(_: &str) -> Option<(FailureReason, String)> {
        None
    }

    #[test]
    fn pod_phases_read_as_states() {
        assert_eq!(
            pod_state(&pod(json!({})), no_result),
            PodState::Pending(Wait::Starting, None)
        );
        let waiting = |reason: &str| {
            pod(json!({"phase": "Pending", "containerStatuses": [{
                "name": "trainer", "image": "reg/x:1", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": reason, "message": "m"}}}]}))
        };
        for (reason, wait) in [
            ("ContainerCreating", Wait::Starting),
            ("ErrImagePull", Wait::ImageError),
            ("ImagePullBackOff", Wait::ImageError),
            ("CreateContainerConfigError", Wait::ContainerError),
            ("InvalidImageName", Wait::BadImage),
            ("ErrImageNeverPull", Wait::BadImage),
        ] {
            assert_eq!(
                pod_state(&waiting(reason), no_result),
                PodState::Pending(wait, Some(format!("{reason}: m"))),
                "{reason}"
            );
        }
        let unschedulable = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/3 nodes have nvidia.com/gpu"}]}),
        );
        assert_eq!(
            pod_state(&unschedulable, no_result),
            PodState::Pending(
                Wait::Unscheduled,
                Some("Unschedulable: 0/3 nodes have nvidia.com/gpu".into())
            )
        );
        assert_eq!(
            pod_state(&pod(json!({"phase": "Running"})), no_result),
            PodState::Running
        );
        assert_eq!(
            pod_state(
                &terminated("Succeeded", 0, "Completed", Some("{}")),
                no_result
            ),
            PodState::Succeeded(Some("{}".into()))
        );
    }

    #[test]
    fn evictions_preemptions_and_sigterm_are_disruptions() {
        let evicted = pod(json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."}));
        assert_eq!(
            pod_state(&evicted, no_result),
            PodState::Disrupted("Evicted: The node was low on resource: memory.".into())
        );
        let preempted = pod(
            json!({"phase": "Failed", "conditions": [{"type": "DisruptionTarget",
            "status": "True", "reason": "PreemptionByScheduler"}]}),
        );
        assert!(matches!(
            pod_state(&preempted, no_result),
            PodState::Disrupted(_)
        ));
        assert!(matches!(
            pod_state(&terminated("Failed", 143, "Error", None), no_result),
            PodState::Disrupted(_)
        ));
        let sigterm_result = |_: &str| Some((FailureReason::Terminated, "SIGTERM".to_string()));
        assert_eq!(
            pod_state(
                &terminated("Failed", 143, "Error", Some("x")),
                sigterm_result
            ),
            PodState::Disrupted("Terminated: SIGTERM".into())
        );
    }

    #[test]
    fn failures_carry_the_result_reason_or_the_exit_code() {
        let oom_result = |_: &str| Some((FailureReason::OutOfMemory, "CUDA OOM".to_string()));
        assert_eq!(
            pod_state(&terminated("Failed", 3, "Error", Some("{..}")), oom_result),
            PodState::Failed(FailureReason::OutOfMemory, "CUDA OOM".into())
        );
        assert_eq!(
            pod_state(&terminated("Failed", 137, "OOMKilled", None), no_result),
            PodState::Failed(
                FailureReason::OutOfMemory,
                "the container exited with code 137 (OOMKilled)".into()
            )
        );
        assert_eq!(
            pod_state(&terminated("Failed", 2, "Error", None), no_result),
            PodState::Failed(
                FailureReason::InvalidInput,
                "the container exited with code 2 (Error)".into()
            )
        );
        assert_eq!(
            pod_state(&terminated("Failed", 9, "Error", None), no_result),
            PodState::Failed(
                FailureReason::Internal,
                "the container exited with code 9 (Error)".into()
            )
        );
        let deadline = pod(json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline"}));
        assert_eq!(
            pod_state(&deadline, no_result),
            PodState::Failed(
                FailureReason::DeadlineExceeded,
                "Pod was active on the node longer than the specified deadline".into()
            )
        );
    }
}

//! The trainer Pod of a `ChildTrial` attempt. Pure: built from the trial alone, compared in
//! full by the tests. Security settings: [`crate::pods`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Volume, VolumeMount};
use kube::api::ObjectMeta;
use nasop_crds::api::{ChildTrial, DatasetVolume};

use crate::commands::{train_args, Outputs};
use crate::pods::{node_name_env, restricted_pod, scratch};
pub use crate::pods::{SCRATCH, TERMINATION_LOG, TRAINER_UID};

/// Label of the owning search (also on the ChildTrial).
pub const SEARCH_LABEL: &str = "nasop.dev/search";
/// Label of the owning trial.
pub const TRIAL_LABEL: &str = "nasop.dev/trial";
/// Label of the attempt number.
pub const ATTEMPT_LABEL: &str = "nasop.dev/attempt";
/// Label naming the pod's role: `trainer` or `probe`.
pub const ROLE_LABEL: &str = "nasop.dev/role";

/// Why a Pod cannot be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PodError {
    /// The trial has no name or namespace (not read from the API server).
    #[error("the ChildTrial has no {0}")]
    Missing(&'static str),
}

/// The name of a trial's trainer pod for `attempt` (from 1).
pub fn pod_name(trial: &str, attempt: i32) -> String {
    format!("{trial}-train-{attempt}")
}

/// The trainer Pod of attempt `attempt` of `trial`: owned by the trial (controller reference,
/// so it is deleted with it), labelled with search, trial, role and attempt, `restartPolicy:
/// Never`, the trial template's image, resources, node selector, tolerations, environment and
/// deadline, the dataset volume mounted read-only at the dataset path, and `nasop-trainer
/// train` writing its result to the termination message.
///
/// # Errors
/// [`PodError::Missing`] for a trial without name or namespace.
pub fn trainer_pod(trial: &ChildTrial, attempt: i32) -> Result<Pod, PodError> {
    let (name, namespace, owner) = crate::pods::owner_of(trial)?;
    let spec = &trial.spec;
    let t = &spec.trial;
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "nasop-trainer".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "nasop".to_string(),
        ),
        (SEARCH_LABEL.to_string(), spec.search_name.clone()),
        (TRIAL_LABEL.to_string(), name.clone()),
        (ROLE_LABEL.to_string(), "trainer".to_string()),
        (ATTEMPT_LABEL.to_string(), attempt.to_string()),
    ]);
    let args = train_args(
        spec,
        &spec.genotype.to_string(),
        &t.dataset.path,
        spec.proposal_id.max(0) as u64,
        None,
        &Outputs {
            result: format!("{SCRATCH}/result.json"),
            termination_log: TERMINATION_LOG.into(),
            checkpoint: None,
        },
    );
    let mut env = vec![node_name_env()];
    env.extend(t.env.iter().cloned());
    let (scratch_volume, scratch_mount) = scratch();
    let mut mounts = vec![scratch_mount];
    let mut volumes = vec![scratch_volume];
    if let Some(source) = &t.dataset.volume {
        mounts.push(VolumeMount {
            name: "dataset".into(),
            mount_path: t.dataset.path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        let mut v = Volume {
            name: "dataset".into(),
            ..Volume::default()
        };
        match source {
            DatasetVolume::PersistentVolumeClaim(pvc) => {
                let mut pvc = pvc.clone();
                pvc.read_only = Some(true);
                v.persistent_volume_claim = Some(pvc);
            }
            DatasetVolume::HostPath(h) => v.host_path = Some(h.clone()),
            DatasetVolume::Nfs(n) => {
                let mut n = n.clone();
                n.read_only = Some(true);
                v.nfs = Some(n);
            }
            DatasetVolume::Image(i) => v.image = Some(i.clone()),
        }
        volumes.push(v);
    }
    Ok(restricted_pod(
        ObjectMeta {
            name: Some(pod_name(&name, attempt)),
            namespace: Some(namespace),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        PodSpec {
            active_deadline_seconds: t.active_deadline_seconds,
            node_selector: (!t.placement.node_selector.is_empty())
                .then(|| t.placement.node_selector.clone()),
            tolerations: (!t.placement.tolerations.is_empty())
                .then(|| t.placement.tolerations.clone()),
            volumes: Some(volumes),
            ..PodSpec::default()
        },
        Container {
            name: "trainer".into(),
            image: Some(t.image.clone()),
            image_pull_policy: t.image_pull_policy.map(|p| p.name().to_string()),
            command: Some(vec!["nasop-trainer".into()]),
            args: Some(args),
            env: Some(env),
            resources: t.placement.resources.clone(),
            volume_mounts: Some(mounts),
            ..Container::default()
        },
    ))
}

#[cfg(test)]
mod tests;

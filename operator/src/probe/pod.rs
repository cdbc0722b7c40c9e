//! The probe Pod of a `LatencyProbe` attempt. Pure: built from the probe alone.
//!
//! Placement: the probe template's node selector, or `nasop.dev/device-class: <class>` when it
//! sets none (device-farm nodes carry that label), and its tolerations. With
//! `maxConcurrentPerNode: 1` (the default) a required pod anti-affinity on
//! `kubernetes.io/hostname` keeps two probes of a device class off one node at once: a
//! neighbour's load disturbs latency. Security settings: [`crate::pods`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, Pod, PodAffinityTerm, PodAntiAffinity, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;
use nasop_crds::api::{labels, LatencyProbe};

use crate::commands::{probe_command, Outputs};
use crate::pods::{node_name_env, owner_of, restricted_pod, scratch, SCRATCH, TERMINATION_LOG};
use crate::trial::pod::{PodError, ATTEMPT_LABEL, ROLE_LABEL, TRIAL_LABEL};

/// Seconds a probe pod may run before the kubelet stops it (`activeDeadlineSeconds`): far
/// above any batch-1 measurement of 50 repeats, short enough to free a device node.
pub const PROBE_DEADLINE_SECONDS: i64 = 1800;

/// The node label `kubernetes.io/hostname` (kubernetes.io/docs/reference/labels-annotations-taints).
pub const HOSTNAME_TOPOLOGY: &str = "kubernetes.io/hostname";

/// The name of a probe's pod for `attempt` (from 1).
pub fn pod_name(probe: &str, attempt: i32) -> String {
    format!("{probe}-{attempt}")
}

/// The probe Pod of attempt `attempt` of `probe`: owned by the probe, labelled with role
/// `probe`, device class, genotype hash, trial and attempt; `nasop-trainer probe` with the
/// probe's settings and random weights, writing its result to the termination message.
///
/// # Errors
/// [`PodError::Missing`] for a probe without name, namespace, uid, image or input shape.
pub fn probe_pod(probe: &LatencyProbe, attempt: i32) -> Result<Pod, PodError> {
    let (name, namespace, owner) = owner_of(probe)?;
    let spec = &probe.spec;
    let settings = &spec.settings;
    let image = settings
        .image
        .clone()
        .ok_or(PodError::Missing("spec.image"))?;
    let shape = match settings.input_shape.as_deref() {
        Some([n, c, h, w]) if h == w => [*n, *c, *h, *w].map(i64::from),
        _ => {
            return Err(PodError::Missing(
                "spec.inputShape (4 dimensions, square images)",
            ))
        }
    };
    let mut pod_labels = BTreeMap::from([
        (labels::APP_NAME.to_string(), "nasop-probe".to_string()),
        (labels::APP_MANAGED_BY.to_string(), "nasop".to_string()),
        (ROLE_LABEL.to_string(), "probe".to_string()),
        (labels::DEVICE_CLASS.to_string(), spec.device_class.clone()),
        (
            labels::GENOTYPE_HASH.to_string(),
            spec.genotype_hash.clone(),
        ),
        (ATTEMPT_LABEL.to_string(), attempt.to_string()),
    ]);
    if let Some(trial) = spec.trial_name.as_ref().filter(|t| t.len() <= 63) {
        pod_labels.insert(TRIAL_LABEL.to_string(), trial.clone());
    }
    let args = probe_command(
        &spec.search_space,
        settings,
        shape,
        i64::from(spec.classes),
        &spec.genotype.to_string(),
        None,
        &Outputs {
            result: format!("{SCRATCH}/probe.json"),
            termination_log: TERMINATION_LOG.into(),
            checkpoint: None,
        },
    );
    let node_selector = if settings.placement.node_selector.is_empty() {
        BTreeMap::from([(labels::DEVICE_CLASS.to_string(), spec.device_class.clone())])
    } else {
        settings.placement.node_selector.clone()
    };
    let affinity = (settings.max_concurrent_per_node == 1).then(|| Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([
                        (ROLE_LABEL.to_string(), "probe".to_string()),
                        (labels::DEVICE_CLASS.to_string(), spec.device_class.clone()),
                    ])),
                    ..LabelSelector::default()
                }),
                topology_key: HOSTNAME_TOPOLOGY.into(),
                // Probes of every namespace share the device nodes.
                namespace_selector: Some(LabelSelector::default()),
                ..PodAffinityTerm::default()
            }]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    });
    let (scratch_volume, scratch_mount) = scratch();
    Ok(restricted_pod(
        ObjectMeta {
            name: Some(pod_name(&name, attempt)),
            namespace: Some(namespace),
            labels: Some(pod_labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        PodSpec {
            active_deadline_seconds: Some(PROBE_DEADLINE_SECONDS),
            node_selector: Some(node_selector),
            tolerations: (!settings.placement.tolerations.is_empty())
                .then(|| settings.placement.tolerations.clone()),
            affinity,
            volumes: Some(vec![scratch_volume]),
            ..PodSpec::default()
        },
        Container {
            name: "probe".into(),
            image: Some(image),
            command: Some(vec!["nasop-trainer".into()]),
            args: Some(args),
            env: Some(vec![node_name_env()]),
            resources: settings.placement.resources.clone(),
            volume_mounts: Some(vec![scratch_mount]),
            ..Container::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::latency_trial;
    use crate::trial::plan::latency_probe;

    fn probe() -> LatencyProbe {
        let mut p = latency_probe(&latency_trial(2.0)).unwrap();
        p.metadata.uid = Some("0b6c4b8e-1d2f-4a3b-9c8d-7e6f5a4b3c2d".into());
        p
    }

    #[test]
    fn the_probe_pod_runs_one_per_device_node_with_the_restricted_profile() {
        let pod = probe_pod(&probe(), 2).unwrap();
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["name"], "cifar-nb201-00042-probe-2");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "LatencyProbe");
        assert_eq!(v["metadata"]["labels"]["nasop.dev/role"], "probe");
        assert_eq!(
            v["metadata"]["labels"]["nasop.dev/trial"],
            "cifar-nb201-00042"
        );
        let spec = &v["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(
            spec["nodeSelector"],
            serde_json::json!({"nasop.dev/device-class": "pixel"})
        );
        let term = &spec["affinity"]["podAntiAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(
            term["namespaceSelector"],
            serde_json::json!({}),
            "all namespaces"
        );
        assert_eq!(
            term["labelSelector"]["matchLabels"],
            serde_json::json!({"nasop.dev/role": "probe", "nasop.dev/device-class": "pixel"})
        );
        let c = &spec["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            c["securityContext"]["capabilities"]["drop"],
            serde_json::json!(["ALL"])
        );
        assert_eq!(
            spec["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let args: Vec<String> = serde_json::from_value(c["args"].clone()).unwrap();
        assert_eq!(
            args.join(" "),
            "probe --genotype |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2| \
             --cells-per-stage 5 --filters 16 --batch 1 --channels 3 --input-size 32 --classes 10 \
             --repeats 50 --warmup 10 --threads 1 --device cpu --result /tmp/probe.json \
             --termination-log /dev/termination-log"
        );
    }

    #[test]
    fn several_probes_per_node_drop_the_anti_affinity_and_a_node_selector_wins() {
        let mut p = probe();
        p.spec.settings.max_concurrent_per_node = 4;
        p.spec.settings.placement.node_selector =
            BTreeMap::from([("farm/class".to_string(), "a76".to_string())]);
        let pod = probe_pod(&p, 1).unwrap();
        let spec = pod.spec.unwrap();
        assert!(spec.affinity.is_none());
        assert_eq!(spec.node_selector.unwrap()["farm/class"], "a76");
        p.spec.settings.input_shape = None;
        assert!(matches!(probe_pod(&p, 1), Err(PodError::Missing(_))));
    }
}

use super::*;

fn fixture() -> ChildTrial {
    // Through JSON, as the API server hands objects over (externally tagged enums).
    let value: serde_json::Value =
        serde_yaml::from_str(include_str!("../fixtures/trial-gpu.yaml")).unwrap();
    serde_json::from_value(value).unwrap()
}

#[test]
fn the_trainer_pod_is_built_in_full() {
    let pod = trainer_pod(&fixture(), 2).unwrap();
    let got = serde_json::to_value(&pod).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/trainer-pod.json")).unwrap();
    assert_eq!(
        got,
        expected,
        "got:\n{}",
        serde_json::to_string_pretty(&got).unwrap()
    );
}

#[test]
fn a_trial_without_name_namespace_or_uid_is_refused() {
    let mut t = fixture();
    t.metadata.uid = None;
    assert_eq!(
        trainer_pod(&t, 1).unwrap_err(),
        PodError::Missing("metadata.uid")
    );
    t.metadata.namespace = None;
    assert_eq!(
        trainer_pod(&t, 1).unwrap_err().to_string(),
        "the ChildTrial has no metadata.namespace"
    );
}

#[test]
fn without_a_dataset_volume_only_scratch_is_mounted() {
    let mut t = fixture();
    std::sync::Arc::make_mut(&mut t.spec.trial).dataset.volume = None;
    let pod = trainer_pod(&t, 1).unwrap();
    let spec = pod.spec.unwrap();
    let volumes: Vec<String> = spec.volumes.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(volumes, ["scratch"]);
    assert_eq!(
        pod.metadata.name.as_deref(),
        Some("cifar-nb201-00042-train-1")
    );
}

#[test]
fn every_trainer_pod_is_locked_down_whatever_the_template_holds() {
    // The fixture asks for a GPU, tolerations, env and a dataset volume; none of it may loosen
    // the pod: no service-account token, non-root, read-only root file system, no privilege
    // escalation, every capability dropped, RuntimeDefault seccomp, no host namespaces.
    for attempt in [1, 2, 5] {
        let v = serde_json::to_value(trainer_pod(&fixture(), attempt).unwrap()).unwrap();
        let spec = &v["spec"];
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(spec["enableServiceLinks"], false);
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            assert!(spec.get(host).is_none_or(|h| h == false), "{host}");
        }
        let pod_sc = &spec["securityContext"];
        assert_eq!(pod_sc["runAsNonRoot"], true);
        assert_eq!(pod_sc["runAsUser"], 65532);
        assert_eq!(pod_sc["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
        let sc = &spec["containers"][0]["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert!(sc["capabilities"].get("add").is_none());
        assert!(sc.get("privileged").is_none_or(|p| p == false));
        // Writable space is the scratch emptyDir only; the dataset is mounted read-only.
        for m in spec["containers"][0]["volumeMounts"].as_array().unwrap() {
            if m["name"] != "scratch" {
                assert_eq!(m["readOnly"], true, "{m}");
            }
        }
    }
}

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
    t.spec.trial.dataset.volume = None;
    let pod = trainer_pod(&t, 1).unwrap();
    let spec = pod.spec.unwrap();
    let volumes: Vec<String> = spec.volumes.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(volumes, ["scratch"]);
    assert_eq!(
        pod.metadata.name.as_deref(),
        Some("cifar-nb201-00042-train-1")
    );
}

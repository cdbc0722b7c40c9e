//! Every manifest in `examples/` parses into the API types and passes the CRD rules.

use nasop::manifest;
use nasop_crds::api::{Algorithm, DatasetFormat, LatencyConstraint};
use nasop_crds::SpaceKind;
use nasop_tests::example_manifests;

#[test]
fn every_example_loads_and_passes_the_rules() {
    let files = example_manifests();
    assert!(files.len() >= 3, "{files:?}");
    for path in files {
        let (search, space) = manifest::load(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert!(search.metadata.name.is_some(), "{path:?}");
        assert!(space.size() > num_bigint::BigUint::from(1u32), "{path:?}");
    }
}

fn load(name: &str) -> nasop_crds::api::ArchitectureSearch {
    let path = nasop_tests::workspace_root().join("examples").join(name);
    manifest::load(&path)
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
        .0
}

#[test]
fn nasnet_example_is_ppo_on_cifar10() {
    let s = load("nasnet-cifar10.yaml");
    assert_eq!(s.spec.search_space.kind(), SpaceKind::Nasnet);
    assert_eq!(s.spec.strategy.algorithm, Algorithm::Ppo);
    let controller = s.spec.strategy.controller.unwrap();
    assert_eq!(controller.lstm_units, 100);
    assert!((controller.learning_rate - 0.00035).abs() < 1e-12);
    assert_eq!(s.spec.trial.dataset.format, DatasetFormat::Cifar10);
    assert!(s.spec.objective.latency.is_none());
}

#[test]
fn mnasnet_example_targets_75_ms() {
    let s = load("mnasnet-latency.yaml");
    assert_eq!(s.spec.search_space.kind(), SpaceKind::Mnasnet);
    let latency = s.spec.objective.latency.unwrap();
    assert_eq!(latency.target_ms, 75.0);
    assert_eq!(latency.constraint, LatencyConstraint::Soft);
    assert_eq!(latency.device_class, "pixel-1");
    let probe = s.spec.probe.unwrap();
    assert_eq!(probe.threads, 1);
    assert_eq!(probe.input_shape, Some(vec![1, 3, 224, 224]));
    assert_eq!(
        probe
            .placement
            .node_selector
            .get("nasop.dev/device-class")
            .map(String::as_str),
        Some("pixel-1")
    );
}

#[test]
fn nb201_example_is_regularized_evolution() {
    let s = load("nb201-evolution.yaml");
    assert_eq!(s.spec.search_space.kind(), SpaceKind::Nb201);
    assert_eq!(s.spec.strategy.algorithm, Algorithm::Evolution);
    let evolution = s.spec.strategy.evolution.unwrap();
    assert_eq!((evolution.population_size, evolution.sample_size), (20, 10));
    assert_eq!(s.spec.budget.max_trials, 200);
}

//! The committed `crds/*.yaml` are exactly what `nasop crds` generates.

use nasop_crds::api::crd_files;
use nasop_tests::workspace_root;

#[test]
fn committed_crds_are_current() {
    let dir = workspace_root().join("crds");
    let generated = crd_files().unwrap();
    for (name, yaml) in &generated {
        let committed = std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("crds/{name}: {e}; run `make crds`"));
        assert!(
            committed == *yaml,
            "crds/{name} is stale: run `make crds` (nasop crds --out-dir crds) and commit it"
        );
    }
    let mut committed: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    committed.sort();
    let expected: Vec<String> = generated.into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        committed, expected,
        "crds/ holds exactly the generated files"
    );
}

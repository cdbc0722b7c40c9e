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

#[test]
fn the_chart_carries_the_same_crds() {
    for (name, yaml) in crd_files().unwrap() {
        let chart = workspace_root().join("charts/nasop/crds").join(&name);
        let text =
            std::fs::read_to_string(&chart).unwrap_or_else(|e| panic!("{}: {e}", chart.display()));
        assert!(
            text == yaml,
            "charts/nasop/crds/{name} differs from crds/{name}: copy it (cp crds/*.yaml charts/nasop/crds/)"
        );
    }
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let text = std::fs::read_to_string(workspace_root().join("charts/nasop/files/dashboard.json"))
        .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queried = std::collections::BTreeSet::new();
    fn walk(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if (k == "expr" || k == "query" || k == "definition") && v.is_string() {
                        let s = v.as_str().unwrap();
                        let bytes = s.as_bytes();
                        let mut i = 0;
                        while let Some(p) = s[i..].find("nasop_") {
                            let start = i + p;
                            let mut end = start;
                            while end < bytes.len()
                                && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_')
                            {
                                end += 1;
                            }
                            out.insert(s[start..end].to_string());
                            i = end;
                        }
                    } else {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut queried);
    assert!(queried.len() >= 10, "{queried:?}");
    for q in &queried {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| q.strip_suffix(s))
            .filter(|b| nasop::metrics::NAMES.contains(b))
            .unwrap_or(q);
        assert!(
            nasop::metrics::NAMES.contains(&base),
            "the dashboard queries {q}, which the operator does not export"
        );
    }
}

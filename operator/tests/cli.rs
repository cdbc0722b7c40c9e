//! The `nasop` binary as users run it.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    manifest_dir().parent().unwrap().to_path_buf()
}

fn nasop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nasop"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("nasop runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn crds_output_equals_the_committed_files() {
    let out = nasop(&["crds"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let committed: Vec<String> = ["architecturesearches", "childtrials", "latencyprobes"]
        .iter()
        .map(|n| std::fs::read_to_string(root().join(format!("crds/{n}.yaml"))).unwrap())
        .collect();
    assert_eq!(text(&out.stdout), committed.join("---\n"));

    let dir = std::env::temp_dir().join(format!("nasop-crds-{}", std::process::id()));
    let out = nasop(&["crds", "--out-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (i, n) in ["architecturesearches", "childtrials", "latencyprobes"]
        .iter()
        .enumerate()
    {
        let written = std::fs::read_to_string(dir.join(format!("{n}.yaml"))).unwrap();
        assert_eq!(written, committed[i], "{n}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn validate_accepts_the_examples() {
    let out = nasop(&[
        "validate",
        "examples/nasnet-cifar10.yaml",
        "examples/mnasnet-latency.yaml",
        "examples/nb201-evolution.yaml",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("NB201 space of 1.56e4 children, Evolution"),
        "{stdout}"
    );
    assert!(
        stdout.contains("NASNet space of 5.11e33 children, PPO"),
        "{stdout}"
    );
}

#[test]
fn validate_rejects_a_bad_manifest_naming_the_field() {
    let example = std::fs::read_to_string(root().join("examples/nb201-evolution.yaml")).unwrap();
    let cases = [
        (
            "parallelism: 8",
            "parallelism: 500",
            "budget.parallelism must not exceed budget.maxTrials",
        ),
        (
            "parallelism: 8",
            "parallelism: 0",
            "spec.budget.parallelism: 0 is less than the minimum of 1",
        ),
        (
            "algorithm: Evolution",
            "algorithm: Hyperband",
            "spec.strategy.algorithm: \"Hyperband\" is not allowed; allowed values: \"PPO\"",
        ),
        (
            "format: CIFAR10",
            "format: SVHN",
            "spec.trial.dataset.format: \"SVHN\" is not allowed",
        ),
        (
            "populationSize: 20",
            "populationSize: 2",
            "sampleSize must not exceed",
        ),
        (
            "channels: 16",
            "channels: 0",
            "spec.searchSpace.nb201.channels: 0 is less than the minimum of 1",
        ),
        ("channels: 16", "chanels: 16", "'chanels' was unexpected"),
        (
            "maxTrials: 200",
            "maxTrials: 200\n    maxTrials: 1",
            "duplicate entry with key \"maxTrials\"",
        ),
        (
            "name: nb201-evolution",
            "name: NB201_Evolution",
            "metadata.name: \"NB201_Evolution\" is not allowed",
        ),
        (
            "claimName: cifar10\n",
            "",
            "spec.trial.dataset.volume.persistentVolumeClaim: \"claimName\" is a required property",
        ),
    ];
    let dir = std::env::temp_dir().join(format!("nasop-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (from, to, expected)) in cases.iter().enumerate() {
        assert!(example.contains(from), "{from}");
        let path = dir.join(format!("bad-{i}.yaml"));
        std::fs::write(&path, example.replace(from, to)).unwrap();
        let out = nasop(&["validate", path.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{to} accepted");
        assert!(stderr.contains(expected), "{to}: {stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn space_tool_reports_sizes_and_checks_genotypes() {
    let out = nasop(&["space", "info", "--space", "nb201"]);
    assert!(text(&out.stdout).contains("size:      15625 (1.56e4)"));
    let out = nasop(&["space", "check", "nb201-optimum", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["decisions"], serde_json::json!([3, 3, 3, 1, 3, 2]));
    let out = nasop(&[
        "space",
        "check",
        "|nor_conv_3x3~0|+|bad~0|none~1|+|none~0|none~1|none~2|",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("node 2, edge from node 0: op = bad is not allowed"),
        "{}",
        text(&out.stderr)
    );
    let out = nasop(&[
        "space",
        "sample",
        "--manifest",
        "examples/nasnet-cifar10.yaml",
        "-n",
        "2",
        "--seed",
        "4",
    ]);
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains(" normal=|")), "{lines:?}");
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nasop"))
        .args(["crds"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The additive per-op latency table fit on 100 measured NB201 cells ranks all 15,625 of each
/// device of the table with Spearman >= 0.9 (measured: raspi4 0.932, pixel3 0.936,
/// 1080ti_1 0.985, gold_6240 0.945 with seed 0).
#[test]
fn latency_model_ranks_every_nb201_cell_from_100_measurements() {
    let table = nasop_tests_data().join("nb201/nb201_latency_ms.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_nasop"))
        .args(["latency-model", "--fit", "100", "--seed", "0", "--table"])
        .arg(&table)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let columns = last["columns"].as_array().unwrap();
    let names: Vec<&str> = columns
        .iter()
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["raspi4", "pixel3", "1080ti_1", "gold_6240"]);
    for c in columns {
        assert!(c["spearman"].as_f64().unwrap() >= 0.9, "{c}");
        assert!(c["heldOutSpearman"].as_f64().unwrap() >= 0.9, "{c}");
        assert_eq!(c["predicted"], 15_625);
    }
    // The model's own estimate (from its 100 fit rows) tracks the true error where it is small,
    // and flags the devices where absolute predictions cannot be trusted.
    for c in &columns[2..] {
        let (cv, true_mape) = (c["cvMape"].as_f64().unwrap(), c["mape"].as_f64().unwrap());
        assert!(cv < 0.15 && (cv / true_mape - 1.0).abs() < 0.2, "{c}");
    }
    assert!(
        columns[0]["cvMape"].as_f64().unwrap() > 0.5,
        "{}",
        columns[0]
    );
    assert!(
        (last["spearman"].as_f64().unwrap() - 0.932).abs() < 0.001,
        "{last}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_nasop"))
        .args(["latency-model", "--fit", "0", "--table"])
        .arg(&table)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("--fit: 0 is out of range; allowed: 1..=15625"));
    let bad = Command::new(env!("CARGO_BIN_EXE_nasop"))
        .args(["latency-model", "--column", "tpu", "--table"])
        .arg(&table)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("no column \"tpu\"; columns: index, arch_str, raspi4"));
}

/// `../shared/data` (or `$NASOP_SHARED_DATA`), as the tests crate finds it.
fn nasop_tests_data() -> std::path::PathBuf {
    std::env::var_os("NASOP_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain([
            manifest_dir().join("../../shared/data"),
            std::path::PathBuf::from("/work/shared/data"),
        ])
        .find(|p| p.join("nb201").is_dir())
        .expect("shared test data (set NASOP_SHARED_DATA)")
}

#[test]
fn bench_search_ranks_evolution_above_random_on_nas_bench_201() {
    let table = nasop_tests_data().join("nb201/nb201_cifar10.csv");
    let out = nasop(&[
        "bench-search",
        "--table",
        table.to_str().unwrap(),
        "--strategy",
        "evolution",
        "--strategy",
        "Random",
        "--strategy",
        "ppo",
        "--budget",
        "300",
        "--budget",
        "50",
        "--runs",
        "6",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let key = |r: &serde_json::Value| {
        (
            r["strategy"].as_str().unwrap().to_string(),
            r["budget"].as_u64().unwrap(),
        )
    };
    assert_eq!(
        rows.iter().map(key).collect::<Vec<_>>(),
        [
            ("Evolution".into(), 50),
            ("Evolution".into(), 300),
            ("Random".into(), 50),
            ("Random".into(), 300),
            ("PPO".into(), 50),
            ("PPO".into(), 300),
        ]
    );
    let mean = |i: usize| rows[i]["mean"].as_f64().unwrap();
    for r in &rows {
        assert_eq!(r["runs"], 6);
        let m = r["mean"].as_f64().unwrap();
        // Test accuracies of NB201 cells: the optimum is 94.37.
        assert!((85.0..=94.373334).contains(&m), "{r}");
        assert!(r["optimum_hits"].as_u64().unwrap() <= 6);
    }
    // More queries never lose the best; the searches beat random search at 300 queries.
    assert!(mean(1) >= mean(0) && mean(3) >= mean(2) && mean(5) >= mean(4));
    assert!(
        mean(1) > mean(3) + 0.2 && mean(5) > mean(3) + 0.2,
        "{rows:?}"
    );

    let bad = nasop(&[
        "bench-search",
        "--table",
        table.to_str().unwrap(),
        "--strategy",
        "hillclimb",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains(
            "--strategy \"hillclimb\" is not a strategy; allowed: PPO, REINFORCE, Evolution, Random"
        ),
        "{}",
        text(&bad.stderr)
    );
    let bad = nasop(&[
        "bench-search",
        "--table",
        table.to_str().unwrap(),
        "--budget",
        "20000",
    ]);
    assert!(
        text(&bad.stderr)
            .contains("--budget: 20000 is out of range; allowed: 1..=15625 (the table's children)"),
        "{}",
        text(&bad.stderr)
    );
    let bad = nasop(&[
        "bench-search",
        "--table",
        table.to_str().unwrap(),
        "--strategy",
        "PPO",
        "--controller",
        r#"{"learnignRate": 0.1}"#,
    ]);
    assert!(
        text(&bad.stderr).contains(
            "--controller: unknown field \"learnignRate\"; allowed: advantage, baselineDecay"
        ),
        "{}",
        text(&bad.stderr)
    );
    let bad = nasop(&[
        "bench-search",
        "--table",
        table.to_str().unwrap(),
        "--signal",
        "c100",
    ]);
    assert!(
        text(&bad.stderr).contains("no column \"c100\"; columns: index, arch_str, c10_test_200"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn bench_search_latency_mode_reports_hypervolume() {
    let data = nasop_tests_data().join("nb201");
    let out = nasop(&[
        "bench-search",
        "--table",
        data.join("nb201_cifar10.csv").to_str().unwrap(),
        "--latency-table",
        data.join("nb201_latency_ms.csv").to_str().unwrap(),
        "--latency-column",
        "pixel3",
        "--target-ms",
        "20",
        "--strategy",
        "Evolution",
        "--strategy",
        "Random",
        "--budget",
        "200",
        "--runs",
        "4",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert!(r["hypervolume"].as_f64().unwrap() > 0.0, "{r}");
    }
    let bad = nasop(&[
        "bench-search",
        "--table",
        data.join("nb201_cifar10.csv").to_str().unwrap(),
        "--latency-table",
        data.join("nb201_latency_ms.csv").to_str().unwrap(),
        "--latency-column",
        "pixel3",
        "--target-ms=-3",
    ]);
    assert!(
        text(&bad.stderr)
            .contains("--target-ms: -3 is out of range; allowed: a positive number of ms"),
        "{}",
        text(&bad.stderr)
    );
}

/// The operator and the CLI run the controller policy on the CPU and start trainers as processes
/// or pods, so `nasop` does not load libtorch_cuda: with PyPI's CUDA build of torch that library
/// and the CUDA libraries it pulls in cost about 235 MB of resident memory at start.
#[test]
fn the_nasop_binary_does_not_load_libtorch_cuda() {
    let out = Command::new("objdump")
        .arg("-p")
        .arg(env!("CARGO_BIN_EXE_nasop"))
        .output()
        .expect("objdump (binutils) runs");
    let dump = text(&out.stdout);
    let needed: Vec<&str> = dump
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        .map(str::trim)
        .collect();
    assert!(needed.contains(&"libtorch_cpu.so"), "NEEDED: {needed:?}");
    assert!(!needed.contains(&"libtorch_cuda.so"), "NEEDED: {needed:?}");
    // And it still runs the policy: `--version` starts with the libraries resolved.
    let version = nasop(&["--version"]);
    assert!(version.status.success(), "{}", text(&version.stderr));
}

/// This package's directory: cargo's `CARGO_MANIFEST_DIR` when it runs the test (right even
/// when the test binary was built from another checkout sharing the target directory), else
/// the one it was built with.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

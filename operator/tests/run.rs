//! `nasop run`: real searches on the shipped Fashion-MNIST subset, with real trainer processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    manifest_dir().parent().unwrap().to_path_buf()
}

/// `nasop-trainer` from the same build (cargo builds every binary of the workspace's members
/// for integration tests only of this package, so it is built here on demand).
fn trainer() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_nasop"));
    let path = exe.parent().unwrap().join("nasop-trainer");
    if !path.is_file() {
        let profile = if exe.to_string_lossy().contains("/release/") {
            vec!["--release"]
        } else {
            vec![]
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "nasop-trainer", "--bin", "nasop-trainer"])
            .args(profile)
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

fn manifest(dir: &Path, name: &str, max_trials: u32, parallelism: u32, extra: &str) -> PathBuf {
    let text = format!(
        r#"apiVersion: nasop.dev/v1alpha1
kind: ArchitectureSearch
metadata:
  name: {name}
spec:
  searchSpace:
    nb201: {{channels: 4, cellsPerStage: 1}}
  strategy: {{algorithm: Evolution, seed: 5, evolution: {{populationSize: 2, sampleSize: 2}}}}
  budget: {{maxTrials: {max_trials}, parallelism: {parallelism}, maxFailedTrials: 2}}
  trial:
    image: local
    epochs: 1
    learningRate: 0.05
    batchSize: 64
    args: ["--max-steps", "4"]
    dataset:
      format: FashionMNIST
      path: {data}
      trainExamples: 256
      validationExamples: 128
{extra}"#,
        data = root().join("data/fashion-mnist").display()
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn nasop(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nasop"))
        .args(args)
        .env("NASOP_TRAINER", trainer())
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("trials.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn results_per_id(events: &[serde_json::Value]) -> std::collections::BTreeMap<u64, usize> {
    let mut m = std::collections::BTreeMap::new();
    for e in events {
        if e["event"] != "started" {
            *m.entry(e["id"].as_u64().unwrap()).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn a_real_search_runs_and_its_state_summary_and_results_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(
        tmp.path(),
        "tiny",
        4,
        2,
        "  objective: {latency: {targetMs: 5, deviceClass: local}}\n  probe: {repeats: 3, warmup: 1}\n",
    );
    let out = nasop(
        &["run", m.to_str().unwrap(), "--quiet", "--threads", "2"],
        tmp.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tmp.path().join("nasop-runs/tiny");
    for f in [
        "search.yaml",
        "trials.jsonl",
        "strategy.safetensors",
        "summary.json",
        "best-genotype.txt",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let ev = events(&dir);
    assert_eq!(ev.iter().filter(|e| e["event"] == "started").count(), 4);
    assert_eq!(
        ev.iter().filter(|e| e["event"] == "succeeded").count(),
        4,
        "{ev:?}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["phase"], "Succeeded");
    assert_eq!(summary["counts"]["succeeded"], 4);
    let best = &summary["best"][0];
    assert_eq!(
        std::fs::read_to_string(dir.join("best-genotype.txt"))
            .unwrap()
            .trim(),
        best["genotype"].as_str().unwrap()
    );
    // The reward is MnasNet's: accuracy x (latency / 5 ms)^-0.07.
    let s = &best["state"];
    let (acc, lat, reward) = (
        s["metrics"]["validationAccuracy"].as_f64().unwrap(),
        s["latencyMs"].as_f64().unwrap(),
        s["reward"].as_f64().unwrap(),
    );
    assert!(lat > 0.0);
    assert!((reward - acc * (lat / 5.0).powf(-0.07)).abs() < 1e-9, "{s}");
    for e in ev.iter().filter(|e| e["event"] == "succeeded") {
        let id = e["id"].as_u64().unwrap();
        assert!(dir
            .join(format!("children/{id}/child.safetensors"))
            .is_file());
        assert!(dir.join(format!("children/{id}/probe.json")).is_file());
    }
    assert!(
        stdout.contains("phase Succeeded: 4 trials (4 succeeded, 0 failed, 0 running)"),
        "{stdout}"
    );
    // The plots: PNG where a font exists (Debian's DejaVu), SVG otherwise.
    for plot in ["reward", "pareto"] {
        let png = dir.join(format!("{plot}.png"));
        let svg = dir.join(format!("{plot}.svg"));
        let bytes = std::fs::read(&png)
            .or_else(|_| std::fs::read(&svg))
            .unwrap();
        assert!(bytes.len() > 1000, "{plot}: {} bytes", bytes.len());
    }

    let later = nasop(&["results", dir.to_str().unwrap(), "--json"], tmp.path());
    assert!(later.status.success());
    let again: serde_json::Value = serde_json::from_slice(&later.stdout).unwrap();
    assert_eq!(again, summary);

    // Another manifest into the same state directory is refused.
    let other = manifest(tmp.path(), "tiny2", 5, 2, "");
    let refused = nasop(
        &[
            "run",
            other.to_str().unwrap(),
            "--quiet",
            "--state-dir",
            dir.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("holds another search"));
}

#[test]
fn a_killed_run_resumes_without_running_a_finished_trial_twice() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(tmp.path(), "resume", 6, 1, "");
    let dir = tmp.path().join("nasop-runs/resume");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nasop"))
        .args(["run", m.to_str().unwrap(), "--quiet", "--threads", "1"])
        .env("NASOP_TRAINER", trainer())
        .current_dir(tmp.path())
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while results_per_id(&events(&dir)).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL the whole process group: nasop and its running trainer.
    let pgid = child.id();
    Command::new("kill")
        .args(["-9", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    let _ = child.wait();
    let before = results_per_id(&events(&dir));
    assert!(before.len() >= 2 && before.len() < 6, "{before:?}");

    let out = nasop(
        &["run", m.to_str().unwrap(), "--json", "--threads", "1"],
        tmp.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // JSON lines: the events of this run, then the summary.
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (summary_line, event_lines) = lines.split_last().unwrap();
    assert_eq!(summary_line["counts"]["succeeded"], 6);
    let printed = results_per_id(event_lines);
    assert_eq!(printed.len(), 6 - before.len(), "{printed:?}");
    let after = results_per_id(&events(&dir));
    assert_eq!(after.len(), 6, "{after:?}");
    assert!(
        after.values().all(|&n| n == 1),
        "a trial finished twice: {after:?}"
    );
    assert_eq!(
        after.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["counts"]["started"], 6);
    assert_eq!(summary["phase"], "Succeeded");
}

#[test]
fn failing_trials_are_recorded_with_their_reason_and_fail_the_search() {
    let tmp = tempfile::tempdir().unwrap();
    // A learning rate the trainer refuses: every trial fails at once (exit 2, InvalidInput).
    // The flag comes after the runner's own `--learning-rate`: the last one counts.
    let m = manifest(tmp.path(), "failing", 6, 2, "");
    let text = std::fs::read_to_string(&m).unwrap().replace(
        r#"args: ["--max-steps", "4"]"#,
        r#"args: ["--learning-rate=-1"]"#,
    );
    std::fs::write(&m, text).unwrap();
    let out = nasop(&["run", m.to_str().unwrap(), "--quiet"], tmp.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed search fails the command"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("the search failed"));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("trial(s) InvalidInput, e.g. trial 0: --learning-rate"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let dir = tmp.path().join("nasop-runs/failing");
    let ev = events(&dir);
    let failed: Vec<&serde_json::Value> = ev.iter().filter(|e| e["event"] == "failed").collect();
    // maxFailedTrials 2: the third failure fails the search; with parallelism 2 at most 4 ran.
    assert!((3..=4).contains(&failed.len()), "{ev:?}");
    for f in &failed {
        assert_eq!(f["reason"], "InvalidInput");
        assert!(
            f["message"].as_str().unwrap().contains("--learning-rate"),
            "{f}"
        );
    }
    let summary = nasop(&["results", m.to_str().unwrap()], tmp.path());
    assert!(
        String::from_utf8_lossy(&summary.stdout).starts_with("phase Failed:"),
        "{}",
        String::from_utf8_lossy(&summary.stdout)
    );
    // A bad manifest is refused before anything runs, naming the field.
    let bad = manifest(tmp.path(), "bad", 6, 9, "");
    let out = nasop(&["run", bad.to_str().unwrap(), "--quiet"], tmp.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("budget.parallelism"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!tmp.path().join("nasop-runs/bad").exists());
}

#[test]
fn mistakes_that_would_fail_every_trial_are_refused_before_any_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let check = |name: &str, edit: &dyn Fn(String) -> String, extra: &[&str], expected: &str| {
        let m = manifest(tmp.path(), name, 3, 1, "");
        std::fs::write(&m, edit(std::fs::read_to_string(&m).unwrap())).unwrap();
        let mut args = vec!["run", m.to_str().unwrap(), "--quiet"];
        args.extend(extra);
        let out = nasop(&args, tmp.path());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success() && err.contains(expected),
            "{name}: {err}"
        );
        assert!(!tmp.path().join("nasop-runs").join(name).exists(), "{name}");
    };
    check(
        "nodata",
        &|t| t.replace("data/fashion-mnist", "data/nowhere"),
        &[],
        "spec.trial.dataset.path:",
    );
    check(
        "reserved",
        &|t| {
            t.replace(
                r#"args: ["--max-steps", "4"]"#,
                r#"args: ["--result=/tmp/x"]"#,
            )
        },
        &[],
        "spec.trial.args: --result is set by nasop for every child",
    );
    if !Path::new("/proc/driver/nvidia/gpus").exists() {
        check(
            "gpus",
            &|t| t,
            &["--gpus", "1"],
            "--gpus: 1 is more than the 0 GPUs",
        );
    }
    check(
        "threads",
        &|t| t,
        &["--threads", "0"],
        "--threads: 0 is out of range",
    );
}

#[test]
fn a_state_directory_in_use_or_damaged_is_refused_and_a_torn_log_line_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(tmp.path(), "state", 2, 1, "");
    let dir = tmp.path().join("nasop-runs/state");
    let run = || nasop(&["run", m.to_str().unwrap(), "--quiet"], tmp.path());
    // In use: a lock held by a live process (this test).
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lock"), format!("{}\n", std::process::id())).unwrap();
    let out = run();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is in use by nasop run"));
    // A stale lock (no such process) is taken over.
    std::fs::write(dir.join("lock"), "4000000000\n").unwrap();
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("lock").exists(), "the lock is released");
    // A torn last line is dropped with a warning; the log stays readable.
    let log = dir.join("trials.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str(r#"{"event":"started","id":7,"geno"#);
    std::fs::write(&log, &text).unwrap();
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("dropping a partly written last line"));
    assert_eq!(results_per_id(&events(&dir)).len(), 2);
    assert!(std::fs::read_to_string(&log).unwrap().ends_with('\n'));
    // Trials without their search.yaml: damaged, refused.
    std::fs::remove_file(dir.join("search.yaml")).unwrap();
    let out = run();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("search.yaml is missing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// This package's directory: cargo's `CARGO_MANIFEST_DIR` when it runs the test (right even
/// when the test binary was built from another checkout sharing the target directory), else
/// the one it was built with.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

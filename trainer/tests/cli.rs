//! `nasop-trainer` starts against libtorch without LD_LIBRARY_PATH (run path baked in).

use std::process::Command;

#[test]
fn info_runs_without_ld_library_path_and_computes() {
    let out = Command::new(env!("CARGO_BIN_EXE_nasop-trainer"))
        .arg("info")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("nasop-trainer starts");
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["selftest_sum"], 4096.0);
    assert!(info["cpu_threads"].as_i64().unwrap() >= 1);
    assert_eq!(info["nasop_version"], env!("CARGO_PKG_VERSION"));
}

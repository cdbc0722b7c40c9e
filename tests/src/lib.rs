//! Helpers shared by nasop's integration tests (`tests/tests/*.rs`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::PathBuf;

pub mod apiserver;
pub mod kubelet;

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    manifest_dir()
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The shared test data (`../shared/data` beside the checkout; see its README).
///
/// Looked up in order: `$NASOP_SHARED_DATA`, `<workspace>/../shared/data`, `/work/shared/data`.
///
/// # Panics
/// When none exists: the tests that need real data cannot run without it, and must not pass
/// silently.
pub fn shared_data_dir() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("NASOP_SHARED_DATA")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            workspace_root().join("../shared/data"),
            PathBuf::from("/work/shared/data"),
        ])
        .collect();
    candidates
        .iter()
        .find(|p| p.join("nb201").is_dir())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "shared test data not found (looked in {candidates:?}); set NASOP_SHARED_DATA to the \
                 directory holding nb201/ and cifar10/"
            )
        })
}

/// All `*.yaml` files of `examples/`, sorted.
pub fn example_manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("examples"))
        .expect("examples/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// This package's directory: cargo's `CARGO_MANIFEST_DIR` when it runs the test (right even
/// when the test binary was built from another checkout sharing the target directory), else
/// the one it was built with.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

//! Build script of the crates that link libtorch (through tch / torch-sys).
//!
//! - Bakes libtorch's library directory into the binaries' run path, so that `nasop-trainer` and
//!   `nasop` start without `LD_LIBRARY_PATH` (torch-sys passes its rpath only to its own C++
//!   objects, not to downstream binaries).
//! - Keeps `libtorch_cuda` linked where it exists: nothing references its symbols directly, so
//!   the linker's `--as-needed` would drop it and CUDA would be unavailable at run time.
//!
//! The directory comes from torch-sys (`links = "tch"`, exported as `DEP_TCH_LIBTORCH_LIB`), which
//! finds it from `LIBTORCH` or, with `LIBTORCH_USE_PYTORCH=1`, from the active Python's torch.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // Declaring rerun conditions replaces cargo's default (rerun on any change of the package):
    // name this script too, so that a new version of it runs.
    println!("cargo:rerun-if-changed=../build/libtorch_rpath.rs");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:rustc-env=NASOP_LIBTORCH_LIB_DIR=");
        println!("cargo:rustc-env=NASOP_LIBTORCH_VERSION=unknown");
        return;
    };
    let lib = Path::new(&lib);
    // For tests that inspect the link (`env!("NASOP_LIBTORCH_LIB_DIR")`).
    println!("cargo:rustc-env=NASOP_LIBTORCH_LIB_DIR={}", lib.display());
    // PyTorch's `torch/version.py` beside `torch/lib` (`__version__ = '2.11.0+cu130'`), for the
    // versions a probe reports.
    let version = std::fs::read_to_string(lib.join("../version.py"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("__version__"))
                .map(|v| {
                    v.trim_start_matches([' ', '='])
                        .trim()
                        .trim_matches(['\'', '"'])
                        .to_string()
                })
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NASOP_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

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
        return;
    };
    let lib = Path::new(&lib);
    // For tests that inspect the link (`env!("NASOP_LIBTORCH_LIB_DIR")`).
    println!("cargo:rustc-env=NASOP_LIBTORCH_LIB_DIR={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

//! Build script of the crates that link libtorch (through tch / torch-sys).
//!
//! - Bakes libtorch's library directory into the binaries' run path, so that `nasop-trainer` and
//!   `nasop` start without `LD_LIBRARY_PATH` (torch-sys passes its rpath only to its own C++
//!   objects, not to downstream binaries).
//! - Keeps `libtorch_cuda` linked into `nasop-trainer` where it exists: nothing references its
//!   symbols directly, so the linker's `--as-needed` would drop it and CUDA would be unavailable
//!   at run time. Only the trainer gets it: the operator and the CLI run the controller policy on
//!   the CPU and start trainers as processes or pods, and loading libtorch_cuda with the CUDA
//!   libraries costs about 235 MB of resident memory (measured with PyPI's torch 2.11.0: 126 MB
//!   resident after loading `libtorch_cpu.so`, 361 MB after `libtorch_cuda.so`).
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
    let trains_on_gpus = std::env::var("CARGO_PKG_NAME").as_deref() == Ok("nasop-trainer");
    if trains_on_gpus && lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

//! Builds the runtime (`runtime/src/lib.rs`) as a `panic=abort` static library in `OUT_DIR`,
//! which `tcc-codegen` embeds with `include_bytes!` so that `tcc compile` is self-contained.
//!
//! The runtime depends on nothing but `std`, so plain `rustc` builds it; a nested `cargo` would
//! fight the outer one for the build lock. Besides the flags the model library needs
//! (`panic=abort`, position-independent code, `-O3`), the build uses fat LTO with one codegen
//! unit, which folds the runtime and the parts of `std` it uses into one object (22 MB of
//! archive becomes about 8 MB), and then strips debug information with `strip` when binutils
//! has it (about 3 MB). The archive is built for `TARGET`, the target `tcc` itself is built
//! for, whose `std` rustup installs.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let runtime = manifest.join("../../runtime");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets it");

    // A directory makes cargo rerun when any file under it changes.
    println!("cargo:rerun-if-changed={}", runtime.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        runtime.join("include/tcc_model.h").display()
    );
    println!("cargo:rerun-if-env-changed=STRIP");

    let archive = out_dir.join("libtcc_runtime.a");
    let output = Command::new(&rustc)
        .args(["--crate-name", "tcc_runtime", "--crate-type", "staticlib"])
        .args(["--edition", "2021", "--target", &target])
        .args(["-C", "panic=abort", "-C", "opt-level=3"])
        .args(["-C", "relocation-model=pic", "-C", "debuginfo=0"])
        .args(["-C", "lto=fat", "-C", "codegen-units=1"])
        .args(["--cap-lints", "warn"])
        .arg("-o")
        .arg(&archive)
        .arg(runtime.join("src/lib.rs"))
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", Path::new(&rustc).display()));
    if !output.status.success() {
        panic!(
            "building the runtime static library failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // Debug information of `std` survives LTO; the model library has no use for it.
    let strip = env::var_os("STRIP").unwrap_or_else(|| "strip".into());
    match Command::new(&strip)
        .arg("--strip-debug")
        .arg(&archive)
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => println!(
            "cargo:warning=`strip --strip-debug` on the runtime failed ({status}); \
             it stays larger but works"
        ),
        Err(e) => println!(
            "cargo:warning=could not run `strip` ({e}); the embedded runtime stays larger but works"
        ),
    }
}

//! Linking a model library: the model's objects and the embedded runtime into one `.so` that
//! needs only libc, libm and libpthread and exports only `PREFIX_*`.
//!
//! [`link_model`] runs the system C compiler as linker:
//!
//! ```text
//! cc -shared -o OUT OBJECTS... libtcc_runtime.a -Wl,--version-script=PREFIX.map
//!    -Wl,--gc-sections -Wl,--no-undefined -Wl,--strip-debug -Wl,-z,noexecstack
//!    -static-libgcc -Wl,--as-needed -lm -lpthread
//! ```
//!
//! - The version script (`{ global: PREFIX_*; local: *; };`) keeps every other symbol, the
//!   runtime's and Rust `std`'s included, local to the library, so two models with different
//!   prefixes link into one program without clashing.
//! - `--gc-sections` drops the parts of the runtime and `std` nothing reaches.
//! - `-static-libgcc` links the unwinder `std` refers to statically, so there is no
//!   `libgcc_s.so` dependency; `--no-undefined` turns a missing symbol into a link error
//!   rather than a load-time one; `--as-needed` keeps `libm` and `libpthread` out of the
//!   library's needs when nothing uses them (glibc 2.34 merged libpthread into libc).
//!
//! The runtime static library is built by `build.rs` and embedded in this crate
//! ([`RUNTIME_STATICLIB`]); it is written to a scratch directory for the link. The library
//! appears whole or not at all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::abi::is_valid_prefix;
use crate::emit::write_atomically;
use crate::error::{Error, Result};

/// The runtime (`runtime/src/lib.rs`) as a `panic=abort`, position-independent static
/// library, built by `build.rs` for the target `tcc` is built for.
pub const RUNTIME_STATICLIB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libtcc_runtime.a"));

/// The linker version script that exports `PREFIX_*` and makes everything else local.
pub fn version_script(prefix: &str) -> String {
    format!("{{\n  global:\n    {prefix}_*;\n  local:\n    *;\n}};\n")
}

/// Links the model's object files and the runtime into the shared library `out`, exporting
/// only `PREFIX_*`, with the system C compiler `cc`. See the module documentation.
pub fn link_model<P: AsRef<Path>>(objects: &[P], prefix: &str, out: &Path) -> Result<()> {
    link_model_with("cc", objects, prefix, out)
}

/// [`link_model`] with another C compiler driver as linker, such as `gcc` or `clang`.
pub fn link_model_with<P: AsRef<Path>>(
    linker: &str,
    objects: &[P],
    prefix: &str,
    out: &Path,
) -> Result<()> {
    if !is_valid_prefix(prefix) {
        return Err(Error::Internal {
            function: prefix.to_owned(),
            message: "the prefix is not a C identifier",
        });
    }
    let scratch = Scratch::new()?;
    let runtime = scratch.path().join("libtcc_runtime.a");
    std::fs::write(&runtime, RUNTIME_STATICLIB).map_err(Error::io(&runtime))?;
    let script = scratch.path().join(format!("{prefix}.map"));
    std::fs::write(&script, version_script(prefix)).map_err(Error::io(&script))?;

    write_atomically(out, |tmp| {
        let mut command = Command::new(linker);
        command.arg("-shared").arg("-o").arg(tmp);
        command.args(objects.iter().map(AsRef::as_ref));
        command.arg(&runtime);
        let mut version = std::ffi::OsString::from("-Wl,--version-script=");
        version.push(&script);
        command.arg(version);
        command.args([
            "-Wl,--gc-sections",
            "-Wl,--no-undefined",
            "-Wl,--strip-debug",
            "-Wl,-z,noexecstack",
            "-static-libgcc",
            "-Wl,--as-needed",
            "-lm",
            "-lpthread",
        ]);
        run_linker(&mut command, linker, out)
    })
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "tcc-link-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // The name is unique while this process lives; a directory left by a dead process that
        // had the same id is stale.
        if path.exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
        std::fs::create_dir(&path).map_err(Error::io(&path))?;
        Ok(Scratch(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover scratch directory in /tmp is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a prepared linker command for the output `out`: a linker that cannot be started is
/// [`Error::LinkerNotFound`], a failing one [`Error::LinkFailed`] with its stderr.
pub(crate) fn run_linker(command: &mut Command, linker: &str, out: &Path) -> Result<()> {
    let output = command.output().map_err(|source| Error::LinkerNotFound {
        linker: linker.to_owned(),
        source,
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::LinkFailed {
            linker: linker.to_owned(),
            out: out.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr)
                .trim_end()
                .to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_runtime_is_an_archive_with_the_api() {
        assert!(RUNTIME_STATICLIB.starts_with(b"!<arch>\n"));
        let has = |needle: &[u8]| RUNTIME_STATICLIB.windows(needle.len()).any(|w| w == needle);
        for symbol in ["tcc_rt_run", "tcc_rt_session_create", "tcc_rt_parallel_for"] {
            assert!(has(symbol.as_bytes()), "{symbol} is missing");
        }
    }

    #[test]
    fn the_version_script_exports_only_the_prefix() {
        assert_eq!(
            version_script("m1"),
            "{\n  global:\n    m1_*;\n  local:\n    *;\n};\n"
        );
    }

    #[test]
    fn a_failed_link_reports_the_linker_and_writes_nothing() {
        let dir = Scratch::new().unwrap();
        let object = dir.path().join("model.o");
        std::fs::write(&object, b"not an object").unwrap();
        let out = dir.path().join("libmodel.so");
        let err = link_model(&[&object], "model", &out).unwrap_err();
        assert!(
            matches!(&err, Error::LinkFailed { stderr, .. } if !stderr.is_empty()),
            "{err:?}"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["model.o"], "the failed link left files behind");
    }

    #[test]
    fn a_bad_prefix_is_refused_before_linking() {
        let dir = std::env::temp_dir();
        let err = link_model::<&Path>(&[], "a*b", &dir.join("never.so")).unwrap_err();
        assert!(matches!(err, Error::Internal { .. }), "{err:?}");
        assert!(!dir.join("never.so").exists());
    }
}

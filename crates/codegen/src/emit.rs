//! From an LLVM module to bytes on disk: verify, optimise at -O3, emit, and link a shared library.
//!
//! [`emit`] turns a module into object code, assembly text or LLVM IR text (the three kinds of
//! `--emit obj|asm|llvm`). [`link_shared`] links object files into a shared library with the
//! system C compiler. Every file is written whole or not at all: into a temporary file beside
//! the destination, then renamed over it.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::FileType;

use crate::error::{Error, Result};
use crate::target::Target;

/// The LLVM pass pipeline [`emit`] runs before code generation.
pub const PIPELINE: &str = "default<O3>";

/// What [`emit`] produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmitKind {
    /// A relocatable object file (`obj`, `.o`).
    Object,
    /// Target assembly text (`asm`, `.s`).
    Assembly,
    /// LLVM IR text after optimisation (`llvm`, `.ll`).
    LlvmIr,
}

impl EmitKind {
    /// Every kind, in the order `--emit` lists them.
    pub const ALL: [EmitKind; 3] = [EmitKind::Object, EmitKind::Assembly, EmitKind::LlvmIr];

    /// The name `--emit` takes: `obj`, `asm` or `llvm`.
    pub fn name(self) -> &'static str {
        match self {
            EmitKind::Object => "obj",
            EmitKind::Assembly => "asm",
            EmitKind::LlvmIr => "llvm",
        }
    }

    /// The usual file extension, without the dot: `o`, `s` or `ll`.
    pub fn extension(self) -> &'static str {
        match self {
            EmitKind::Object => "o",
            EmitKind::Assembly => "s",
            EmitKind::LlvmIr => "ll",
        }
    }
}

impl fmt::Display for EmitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EmitKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        EmitKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| format!("unknown emit kind `{s}` (expected obj, asm or llvm)"))
    }
}

/// Sets the module's triple and data layout to the target's, as code generation expects.
pub fn prepare(module: &Module<'_>, target: &Target) {
    let machine = target.machine();
    module.set_triple(&machine.get_triple());
    module.set_data_layout(&machine.get_target_data().get_data_layout());
}

/// Runs LLVM's verifier on the module.
pub fn verify(module: &Module<'_>) -> Result<()> {
    module.verify().map_err(|message| Error::Verify {
        module: module_name(module),
        message: message.to_string(),
    })
}

/// Prepares, verifies and optimises the module in place with the [`PIPELINE`] for the target.
pub fn optimize(module: &Module<'_>, target: &Target) -> Result<()> {
    prepare(module, target);
    verify(module)?;
    let options = PassBuilderOptions::create();
    // Verifying after the pipeline catches a miscompiling pass close to the fault.
    options.set_verify_each(cfg!(debug_assertions));
    module
        .run_passes(PIPELINE, target.machine(), options)
        .map_err(|message| Error::Passes {
            module: module_name(module),
            pipeline: PIPELINE.to_owned(),
            message: message.to_string(),
        })
}

/// Verifies and optimises the module for the target, then returns it as `kind`.
///
/// The module is changed in place (triple, data layout, optimisation); emitting it again
/// optimises it again, which is harmless but wasted work.
pub fn emit(module: &Module<'_>, target: &Target, kind: EmitKind) -> Result<Vec<u8>> {
    optimize(module, target)?;
    let file_type = match kind {
        EmitKind::LlvmIr => return Ok(module.print_to_string().to_bytes().to_vec()),
        EmitKind::Object => FileType::Object,
        EmitKind::Assembly => FileType::Assembly,
    };
    // Emitting to memory, not with `write_to_file`, keeps writes atomic and avoids inkwell's
    // panic on paths that are not UTF-8.
    let buffer = target
        .machine()
        .write_to_memory_buffer(module, file_type)
        .map_err(|message| Error::Emit {
            kind: kind.name(),
            module: module_name(module),
            message: message.to_string(),
        })?;
    Ok(buffer.as_slice().to_vec())
}

/// [`emit`]s the module and writes it to `path`, whole or not at all.
pub fn emit_to_file(
    module: &Module<'_>,
    target: &Target,
    kind: EmitKind,
    path: &Path,
) -> Result<()> {
    let bytes = emit(module, target, kind)?;
    write_file(path, &bytes)
}

/// Links object files into the shared library `out` with the system C compiler, `cc`.
///
/// Runs `cc -shared -o OUT OBJECTS... -lm -lpthread`. The library appears whole or not at all.
pub fn link_shared<P: AsRef<Path>>(objects: &[P], out: &Path) -> Result<()> {
    link_shared_with("cc", objects, out)
}

/// [`link_shared`] with another C compiler driver as linker, such as `gcc` or `clang`.
pub fn link_shared_with<P: AsRef<Path>>(linker: &str, objects: &[P], out: &Path) -> Result<()> {
    write_atomically(out, |tmp| {
        let mut command = Command::new(linker);
        command.arg("-shared").arg("-o").arg(tmp);
        command.args(objects.iter().map(AsRef::as_ref));
        command.args(["-lm", "-lpthread"]);
        crate::link::run_linker(&mut command, linker, out)
    })
}

/// Has `write` fill a fresh temporary file beside `path`, then renames it to `path`.
///
/// On failure the temporary file is removed and `path` is left as it was.
pub(crate) fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temporary_sibling(path);
    let result = write(&tmp).and_then(|()| {
        // Flush the data to disk before the rename makes it visible under its final name.
        std::fs::File::open(&tmp)
            .and_then(|file| file.sync_all())
            .map_err(Error::io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(Error::io(path))
    });
    if result.is_err() {
        // The temporary file may not exist (the writer failed early); nothing else to do then.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A name beside `path` that no other writer in this or another process uses.
fn temporary_sibling(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_else(|| "out".as_ref()));
    name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}

/// The module's name, for error messages.
fn module_name(module: &Module<'_>) -> String {
    module.get_name().to_string_lossy().into_owned()
}

/// Writes `bytes` to `path`, whole or not at all (for callers that emit several kinds at once).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(Error::io(tmp))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_kind_round_trips_through_its_name() {
        for kind in EmitKind::ALL {
            assert_eq!(kind.name().parse::<EmitKind>(), Ok(kind));
        }
        assert!("exe".parse::<EmitKind>().unwrap_err().contains("exe"));
    }

    #[test]
    fn temporary_siblings_are_hidden_distinct_and_beside_the_target() {
        let a = temporary_sibling(Path::new("/some/dir/model.so"));
        let b = temporary_sibling(Path::new("/some/dir/model.so"));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/some/dir")));
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".model.so.") && name.ends_with(".tmp"),
            "{name}"
        );
    }
}

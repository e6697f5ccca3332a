//! File IO for the subcommands: loading models and npz archives, writing
//! results whole or not at all, and the temporaries of `tcc compile` (written
//! beside the output, removed on failure, and removed by the next compile of
//! the same output if a killed one left them). Every error names the file at
//! fault.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tcc_ir::{Graph, Tensor};
use tcc_onnx::proto::ModelProto;
use tcc_onnx::ImportOptions;

/// Reads and decodes an ONNX file.
pub fn load_model(path: &Path) -> Result<ModelProto> {
    if !path.exists() {
        bail!("model file `{}` does not exist", path.display());
    }
    if path.is_dir() {
        bail!(
            "`{}` is a directory, not an ONNX model file",
            path.display()
        );
    }
    // The loader's errors name the file.
    tcc_onnx::load_model(path).context("cannot load the model")
}

/// Lowers a decoded model into the IR; external data is looked up beside `path`.
pub fn import(model: &ModelProto, path: &Path, options: &ImportOptions) -> Result<Graph> {
    let base_dir = path.parent().unwrap_or(Path::new("."));
    tcc_onnx::import_model_with(model, base_dir, options)
        .with_context(|| format!("cannot import `{}` into the IR", path.display()))
}

/// Loads and imports an ONNX file, and says how long that took.
pub fn load_graph(path: &Path, options: &ImportOptions) -> Result<(Graph, Duration)> {
    let start = Instant::now();
    let model = load_model(path)?;
    let graph = import(&model, path, options)?;
    Ok((graph, start.elapsed()))
}

/// Reads every array of an npz archive; `what` says what the arrays are for.
pub fn read_npz(path: &Path, what: &str) -> Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        bail!("npz file `{}` does not exist", path.display());
    }
    // The npz crate's errors name the file and the array.
    tcc_npz::read_npz(path).with_context(|| format!("cannot read {what}"))
}

/// Writes arrays to an npz archive, whole or not at all; `what` says what the
/// arrays are.
pub fn write_npz(path: &Path, arrays: &[(String, Tensor)], what: &str) -> Result<()> {
    tcc_npz::write_npz(path, arrays).with_context(|| format!("cannot write {what}"))
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file beside
/// it, then renamed over it. A `path` that exists and is not a regular file
/// (`/dev/null`, a FIFO, a terminal) is written in place: a rename would
/// replace the device or pipe itself.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if is_special(path) {
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(bytes))
            .with_context(|| format!("cannot write `{}`", path.display()));
    }
    let tmp = temp_beside(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // The temporary file is ours; the write error is what matters.
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write `{}`", path.display()))
}

/// True if `path` exists (through symlinks) and is neither a regular file nor a directory:
/// a device, a FIFO or a socket, which output is written into in place.
pub fn is_special(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

fn temp_beside(path: &Path) -> PathBuf {
    path.with_file_name(format!(".{}.{}.tmp", file_name(path), std::process::id()))
}

/// The temporary names under which `tcc compile` writes a library `out` and its header,
/// beside `out` (so the renames that install them stay on one file system). Both start with
/// `.OUT.tcc-PID.`, as do the temporaries that the linker and the header writer make from
/// them, so that [`remove_stale_temporaries`] can recognise them all. Dropping the value
/// removes whichever of them still exist: a failed compile leaves nothing behind.
pub struct LibraryTemporaries {
    /// The library, linked here first.
    pub library: PathBuf,
    /// The header, written here first.
    pub header: PathBuf,
    /// A hard link to the header being replaced, to put back if the library cannot be.
    backup: PathBuf,
}

impl LibraryTemporaries {
    /// The temporaries for the library `out`.
    pub fn new(out: &Path) -> LibraryTemporaries {
        let tag = format!(".{}.tcc-{}", file_name(out), std::process::id());
        LibraryTemporaries {
            library: out.with_file_name(format!("{tag}.so")),
            header: out.with_file_name(format!("{tag}.h")),
            backup: out.with_file_name(format!("{tag}.old.h")),
        }
    }

    /// Installs the written temporaries as `header` and `library`: the header is renamed into
    /// place first, the library second. If the header cannot be renamed, both old files stay;
    /// if the library cannot be, the old header is put back (or the new one removed if there
    /// was none), so a failure leaves the old pair. Only an interruption between the two
    /// renames leaves the new header beside the old library.
    pub fn install(self, library: &Path, header: &Path) -> Result<()> {
        // A hard link keeps the old header whole while the new one is renamed over it. Without
        // one (a file system without hard links), a failed library rename removes the header.
        let backed_up = header.is_file() && std::fs::hard_link(header, &self.backup).is_ok();
        std::fs::rename(&self.header, header)
            .with_context(|| format!("cannot write `{}`", header.display()))?;
        if let Err(e) = std::fs::rename(&self.library, library) {
            let _ = if backed_up {
                std::fs::rename(&self.backup, header)
            } else {
                std::fs::remove_file(header)
            };
            return Err(
                anyhow::Error::new(e).context(format!("cannot write `{}`", library.display()))
            );
        }
        Ok(())
    }
}

impl Drop for LibraryTemporaries {
    fn drop(&mut self) {
        // After a successful install only the backup is left; after a failure, any of them.
        for path in [&self.library, &self.header, &self.backup] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The file name of `path`, or `out` if it has none.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into())
}

/// Removes what killed runs of `tcc compile` left beside the outputs `outputs` (a library
/// and its header, or one emitted file): the files, in the outputs' directory, named
/// `.NAME.tcc-PID.*` or `..NAME.tcc-PID.*` (the library's temporaries and those made from
/// them) or `.NAME.PID.tmp`, `.NAME.PID.N.tmp` (a file written whole, and those of earlier
/// versions of tcc), for an output NAME and a process PID that is no longer running; and
/// the linker's scratch directories `tcc-link-PID-N` of such processes in the system's
/// temporary directory. Whether a process runs is read from `/proc`; without it nothing is
/// removed. A compile that is still running keeps its files, whoever its user. Removal is
/// best effort: a file that cannot be removed is left as it is.
pub fn remove_stale_temporaries(outputs: &[&Path]) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let me = std::process::id();
    let dead = |pid: u32| pid == me || !Path::new("/proc").join(pid.to_string()).exists();
    for out in outputs {
        let dir = match out.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = file_name(out);
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(file) = entry.file_name().into_string() else {
                continue;
            };
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_file && temporary_of(&file, &name).is_some_and(dead) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(file) = entry.file_name().into_string() else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && link_scratch_of(&file).is_some_and(dead) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The process id in `file` if it names a temporary of the output named `out` (see
/// [`remove_stale_temporaries`]).
fn temporary_of(file: &str, out: &str) -> Option<u32> {
    let rest = file
        .strip_prefix('.')
        .and_then(|f| {
            f.strip_prefix(out)
                .or_else(|| f.strip_prefix('.')?.strip_prefix(out))
        })?
        .strip_prefix('.')?;
    let digits = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if let Some(tagged) = rest.strip_prefix("tcc-") {
        let (pid, _) = tagged.split_once('.')?;
        return digits(pid);
    }
    // `PID.tmp` or `PID.N.tmp`.
    let body = rest.strip_suffix(".tmp")?;
    let (pid, counter) = body.split_once('.').unwrap_or((body, "0"));
    digits(counter)?;
    digits(pid)
}

/// The process id in the name of the linker's scratch directory `tcc-link-PID-N` (made by
/// `tcc_codegen::link`, removed when the link ends).
fn link_scratch_of(dir: &str) -> Option<u32> {
    let (pid, counter) = dir.strip_prefix("tcc-link-")?.split_once('-')?;
    counter.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Milliseconds, for one-line summaries.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Writes `text` to stdout. A closed pipe (`tcc ... | head`) ends the output
/// quietly instead of panicking as `print!` would.
pub fn print_stdout(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_of_an_output_are_recognised_with_their_process() {
        let out = "libm.so";
        for (file, pid) in [
            (".libm.so.tcc-42.so", Some(42)),
            (".libm.so.tcc-42.h", Some(42)),
            (".libm.so.tcc-42.old.h", Some(42)),
            ("..libm.so.tcc-42.so.tcc-42.o", Some(42)),
            ("..libm.so.tcc-42.so.42.0.tmp", Some(42)),
            ("..libm.so.tcc-42.h.42.1.tmp", Some(42)),
            (".libm.so.tcc-7.o", Some(7)),
            (".libm.so.7.3.tmp", Some(7)),
            (".libm.so.7.tmp", Some(7)),
            // Not temporaries of this output.
            ("libm.so", None),
            (".libm.so", None),
            (".libm.so.bak", None),
            (".libm.so.tcc-x.so", None),
            (".libm.so.tcc-42", None),
            (".libm.so.7.x.tmp", None),
            (".libm.sox.tcc-42.so", None),
            (".other.so.tcc-42.so", None),
            ("libm.so.tcc-42.so", None),
        ] {
            assert_eq!(temporary_of(file, out), pid, "{file}");
        }
    }

    #[test]
    fn link_scratch_directories_are_recognised() {
        assert_eq!(link_scratch_of("tcc-link-123-0"), Some(123));
        assert_eq!(link_scratch_of("tcc-link-123"), None);
        assert_eq!(link_scratch_of("tcc-link-x-0"), None);
        assert_eq!(link_scratch_of("tcc-cli-123-0"), None);
    }
}

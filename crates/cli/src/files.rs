//! File IO for the subcommands: loading models and npz archives, and writing
//! results whole or not at all. Every error names the file at fault.

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
/// it, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
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

fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
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

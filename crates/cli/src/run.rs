//! `tcc run`: runs a compiled model library on inputs from an npz archive and writes its
//! outputs to another, through the library's public C API only.

use crate::expected::ExpectedArgs;
use crate::files;
use crate::model_lib;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Instant;

const LONG_ABOUT: &str = "\
Runs a model library made by `tcc compile` on the arrays of an npz archive
(keyed by input name, as numpy.savez writes them), and writes every output, by
name, to another npz archive. The library is loaded and used through its public
C API only; its input checks and error messages are reported as they are.

The prefix of the library's functions is found in the library itself (it
exports exactly one model API); --prefix names it explicitly, which is needed
only for a library with several models linked in.

With --expected REF.npz the outputs are compared with the arrays of the same
names in REF.npz, as `tcc interpret --expected` does: each element within
TOL * max(1, max|ref|), TOL 1e-4 unless --tolerance says otherwise.";

/// Arguments of `tcc run`.
#[derive(clap::Args, Debug)]
#[command(about = "Run a compiled model library on npz inputs", long_about = LONG_ABOUT)]
pub struct Args {
    /// The model library (`tcc compile MODEL.onnx -o MODEL.so`).
    #[arg(value_name = "MODEL.so")]
    pub library: PathBuf,

    /// The inputs, an npz archive keyed by input name.
    #[arg(long, value_name = "IN.npz")]
    pub inputs: PathBuf,

    /// Where to write the outputs (an npz archive, whole or not at all).
    #[arg(long, value_name = "OUT.npz")]
    pub output: PathBuf,

    /// Threads of the session (default: TCC_NUM_THREADS or the physical cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<i32>,

    /// The prefix of the library's functions (default: found in the library).
    #[arg(long, value_name = "NAME")]
    pub prefix: Option<String>,

    #[command(flatten)]
    pub expected: ExpectedArgs,
}

/// The session's threads from `--threads` (0 or none: the library's default).
fn threads(given: Option<i32>) -> Result<usize> {
    match given {
        None => Ok(0),
        Some(n) => usize::try_from(n).with_context(|| {
            format!("--threads must be 0 (the library's default) or more, not {n}")
        }),
    }
}

/// Runs `tcc run`.
pub fn run(args: Args) -> Result<()> {
    let reference = args.expected.read()?;
    let model = tcc_model::Model::load_with_prefix(&args.library, args.prefix.as_deref())?;
    let arrays = files::read_npz(&args.inputs, "the inputs")?;
    let inputs = model_lib::bind(&model, &arrays, &args.inputs)?;
    let mut session = model.session(threads(args.threads)?)?;
    let threads = session.num_threads();
    let start = Instant::now();
    let outputs = session.run(&inputs)?;
    let took = start.elapsed();
    let outputs = model_lib::tensors(&outputs)?;
    files::write_npz(&args.output, &outputs, "the outputs")?;
    eprintln!(
        "tcc: ran {} on {threads} thread(s) in {}",
        args.library.display(),
        files::ms(took)
    );
    args.expected.check(&outputs, reference)
}

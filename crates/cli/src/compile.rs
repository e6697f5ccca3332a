//! `tcc compile`: optimises a model and emits it. Today the only thing it can
//! emit is the IR text; native code generation is the next stage.

use crate::files;
use crate::import_args::ImportArgs;
use crate::pipeline::{self, PipelineArgs};
use crate::NotYet;
use anyhow::Result;
use std::path::PathBuf;

const LONG_ABOUT: &str = "\
Compiles an ONNX model: imports it into tcc's IR, runs the default pass
pipeline and emits the result.

With `--emit ir` it prints the IR in its text form (the form that `tcc` and
its tests read back) to stdout, or writes it to the file given with -o, whole
or not at all. Large weights are elided from the text by name.

The pass pipeline can be taken apart:
  --no-opt            print the graph as imported, before any pass;
  --disable-pass P    leave pass P out (repeatable);
  --dump-after P      print the IR to stderr after pass P (repeatable);
  --time-passes       print each pass's time to stderr.
An unknown pass name is refused with the list of valid ones.

Native code generation (a shared library per model, through LLVM) is not
there yet: without `--emit ir`, compile stops with exit code 2.";

const AFTER_HELP: &str = "\
Examples:
  tcc compile examples/tiny-encoder/model.onnx --emit ir
  tcc compile examples/tiny-encoder/model.onnx --emit ir --no-opt -o /tmp/imported.tir
  tcc compile examples/tiny-encoder/model.onnx --emit ir --time-passes > /dev/null";

/// What `tcc compile` produces.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// The IR in its text form.
    Ir,
    /// A shared library with the compiled model (not implemented yet).
    Lib,
}

/// Arguments of `tcc compile`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Optimise a model and emit its IR (native code is coming)",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct Args {
    /// The ONNX model file (external data is read from beside it).
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,

    /// What to emit.
    #[arg(long, value_enum, default_value_t = Emit::Lib)]
    pub emit: Emit,

    /// Write the output to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub import: ImportArgs,

    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// Runs `tcc compile`.
pub fn run(args: Args) -> Result<()> {
    if args.emit != Emit::Ir {
        return Err(NotYet(
            "native code generation is not implemented yet; use `--emit ir` to print the optimised IR"
                .into(),
        )
        .into());
    }
    let (mut graph, _) = files::load_graph(&args.model, &args.import.options())?;
    pipeline::optimize(&mut graph, &args.pipeline)?;
    let text = tcc_ir::text::print(&graph);
    match &args.output {
        Some(path) => files::write_atomic(path, text.as_bytes())?,
        None => files::print_stdout(&text)?,
    }
    Ok(())
}

//! The `tcc` binary: an ahead-of-time compiler for transformer models.
//!
//! One file per subcommand (`inspect.rs`, `interpret.rs`, `compile.rs`);
//! `pipeline.rs` holds the pass-manager flags they share and `files.rs` the
//! file IO helpers. This crate is the only one that parses arguments, and,
//! with `tcc-npz`, the only one that reads and writes files; it is the only
//! user of `anyhow`. Every failure ends as `error: ...` with its causes on
//! stderr and a non-zero exit code, never as a panic.

mod bench;
mod compile;
mod expected;
mod files;
mod import_args;
mod inspect;
mod interpret;
mod model_lib;
mod pipeline;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The exit code of a request for something tcc cannot do yet (native code).
pub const EXIT_NOT_YET: u8 = 2;

/// An error that asks for [`EXIT_NOT_YET`] instead of the usual exit code 1.
#[derive(Debug)]
pub struct NotYet(pub String);

impl std::fmt::Display for NotYet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotYet {}

const LONG_ABOUT: &str = "\
tcc compiles transformer models from ONNX ahead of time. It imports an ONNX
model into a typed tensor IR with symbolic shapes (batch, seq), optimises it
with a pipeline of passes whose heart is an e-graph optimiser (fused GEMM
epilogues, attention and layer norms, chosen by a cost model), and compiles
it through LLVM into a self-contained shared library with a C API, one kernel
per IR op; it can also run the IR in a reference interpreter or print it.

Inputs and outputs of a run are numpy .npz archives keyed by the ONNX input and
output names, as numpy.savez writes them.";

const AFTER_HELP: &str = "\
Examples:
  tcc inspect examples/tiny-encoder/model.onnx
  tcc interpret examples/tiny-encoder/model.onnx \\
      --inputs examples/tiny-encoder/inputs.npz --output out.npz
  tcc compile examples/tiny-encoder/model.onnx -o model.so
  tcc compile examples/tiny-encoder/model.onnx --emit ir --explain

Run `tcc help <COMMAND>` for the options of one command.";

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "tcc",
    version,
    about = "An ahead-of-time compiler for transformer models: ONNX in, native code out",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Inspect(inspect::Args),
    Interpret(interpret::Args),
    Compile(compile::Args),
    Run(run::Args),
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Interpret(args) => interpret::run(args),
        Command::Compile(args) => compile::run(args),
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            if err.downcast_ref::<NotYet>().is_some() {
                ExitCode::from(EXIT_NOT_YET)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Prints an error and its chain of causes to stderr.
fn report(err: &anyhow::Error) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

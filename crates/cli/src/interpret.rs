//! `tcc interpret`: runs a model in the reference interpreter on npz inputs.

use crate::expected::ExpectedArgs;
use crate::files;
use crate::import_args::ImportArgs;
use crate::pipeline::{self, PipelineArgs};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;
use tcc_ir::{Graph, Op, Tensor};

const LONG_ABOUT: &str = "\
Runs a model in tcc's reference interpreter: imports the ONNX model, runs the
default pass pipeline (unless --no-opt), binds the symbolic dims (batch, seq)
from the inputs' sizes, evaluates every node and writes the outputs.

The inputs come from an npz archive keyed by the model's input names, as
`numpy.savez(path, input_ids=..., attention_mask=...)` writes it. Arrays that
are not inputs of the model are ignored, so an ONNX Runtime reference archive
that also holds the expected outputs can be passed as it is. A missing input is
an error that lists what the archive holds; an input of the wrong dtype or
rank is an error that names it.

The outputs are written to an npz archive keyed by the model's output names,
whole or not at all. A one-line summary (outputs, shapes, time) goes to stderr.

With --expected REF.npz the outputs are also compared with the arrays of the
same names in REF.npz (an ONNX Runtime reference, say): each must have the
same dtype and shape, and every element must be within TOL * max(1, max|ref|)
of the reference. A mismatch is an error (exit code 1), after the outputs
have been written.

The interpreter is plainly correct rather than fast: it is the oracle that
tcc's rewrites and kernels are checked against.";

const AFTER_HELP: &str = "\
Examples:
  tcc interpret examples/tiny-encoder/model.onnx \\
      --inputs examples/tiny-encoder/inputs.npz --output out.npz
  # Check the outputs against ONNX Runtime's:
  tcc interpret examples/tiny-encoder/model.onnx \\
      --inputs examples/tiny-encoder/inputs.npz --output out.npz \\
      --expected examples/tiny-encoder/expected.npz
  # Run the graph as imported, to tell an import bug from a pass bug:
  tcc interpret model.onnx --inputs in.npz --output out.npz --no-opt
  # Leave one pass out:
  tcc interpret model.onnx --inputs in.npz --output out.npz --disable-pass PASS";

/// Arguments of `tcc interpret`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Run a model in the reference interpreter on npz inputs",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct Args {
    /// The ONNX model file (external data is read from beside it).
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,

    /// An npz archive holding an array for every model input, by name.
    #[arg(long, short = 'i', value_name = "IN.npz")]
    pub inputs: PathBuf,

    /// Where to write the outputs, as an npz archive keyed by output name.
    #[arg(long, short = 'o', value_name = "OUT.npz")]
    pub output: PathBuf,

    #[command(flatten)]
    pub expected: ExpectedArgs,

    #[command(flatten)]
    pub import: ImportArgs,

    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// Runs `tcc interpret`.
pub fn run(args: Args) -> Result<()> {
    let reference = args.expected.read()?;
    let start = Instant::now();
    let (mut graph, import_time) = files::load_graph(&args.model, &args.import.options())?;
    let arrays = files::read_npz(&args.inputs, "the inputs")?;
    let inputs = pick_inputs(&graph, arrays, &args.inputs)?;

    let t = Instant::now();
    pipeline::optimize(&mut graph, &args.pipeline)?;
    let pass_time = t.elapsed();

    let t = Instant::now();
    let outputs = tcc_ir::interp::run(&graph, &inputs).with_context(|| {
        format!(
            "cannot run `{}` on the inputs in `{}`",
            args.model.display(),
            args.inputs.display()
        )
    })?;
    let run_time = t.elapsed();
    files::write_npz(&args.output, &outputs, "the outputs")?;

    let shapes: Vec<String> = outputs
        .iter()
        .map(|(name, t)| format!("{name} {}{:?}", t.dtype(), t.shape()))
        .collect();
    eprintln!(
        "tcc: wrote {} to {} in {} (import {}, passes {}, interpreter {})",
        shapes.join(", "),
        args.output.display(),
        files::ms(start.elapsed()),
        files::ms(import_time),
        files::ms(pass_time),
        files::ms(run_time),
    );
    args.expected.check(&outputs, reference)?;
    Ok(())
}

/// Picks the graph's inputs out of an npz's arrays, by name. Arrays that are
/// not inputs are ignored; a missing input, or one whose dtype or rank cannot
/// be the input's, is an error naming it.
fn pick_inputs(
    graph: &Graph,
    arrays: Vec<(String, Tensor)>,
    npz: &std::path::Path,
) -> Result<HashMap<String, Tensor>> {
    let held: Vec<String> = arrays
        .iter()
        .map(|(n, t)| format!("{n} {}{:?}", t.dtype(), t.shape()))
        .collect();
    let mut by_name: HashMap<String, Tensor> = arrays.into_iter().collect();
    let mut picked = HashMap::new();
    for &id in graph.inputs() {
        let Op::Input { name } = graph.op(id) else {
            continue;
        };
        let ty = graph.ty(id);
        let Some(t) = by_name.remove(name) else {
            bail!(
                "the model's input `{name}` ({ty}) is not in `{}`; it holds: {}",
                npz.display(),
                if held.is_empty() {
                    "no arrays".to_string()
                } else {
                    held.join(", ")
                }
            );
        };
        if t.dtype() != ty.dtype || t.shape().len() != ty.rank() {
            bail!(
                "input `{name}` in `{}` is {}{:?}, but the model takes {ty}",
                npz.display(),
                t.dtype(),
                t.shape()
            );
        }
        picked.insert(name.clone(), t);
    }
    Ok(picked)
}

//! `tcc inspect`: what a model is made of, as tcc sees it.

use crate::files;
use crate::import_args::ImportArgs;
use anyhow::Result;
use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use tcc_ir::{Graph, Op};
use tcc_onnx::proto::ModelProto;

const LONG_ABOUT: &str = "\
Imports an ONNX model and prints what it is made of:

  - the producer (the exporter that wrote it) and the opsets it imports;
  - its inputs and outputs with their dtypes and shapes, as tcc infers them,
    with symbolic dims such as `batch` and `seq`;
  - its parameters: the ONNX initializers (weights) that the imported graph
    keeps as constants, their element count and bytes, and every constant of
    the imported graph, including small ones the importer made;
  - a histogram of the ONNX node op types, most frequent first;
  - the number of nodes of the imported IR graph.

A model that tcc cannot import fails here with the node and op at fault, so
`inspect` is also the quickest check of whether tcc supports a model.";

const AFTER_HELP: &str = "\
Examples:
  tcc inspect examples/tiny-encoder/model.onnx
  tcc inspect ../shared/models/bert-tiny/model.onnx";

/// Arguments of `tcc inspect`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Print a model's inputs, outputs, parameters and op histogram",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct Args {
    /// The ONNX model file (external data is read from beside it).
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,

    #[command(flatten)]
    pub import: ImportArgs,
}

/// Runs `tcc inspect`.
///
/// A model that decodes but does not import still gets the ONNX part of the
/// report (producer, opsets, op histogram with unsupported ops marked) before
/// the import error.
pub fn run(args: Args) -> Result<()> {
    let model = files::load_model(&args.model)?;
    let imported = files::import(&model, &args.model, &args.import.options());
    files::print_stdout(&summary(&args.model, &model, imported.as_ref().ok()))?;
    imported.map(|_| ())
}

/// The report, as text; `graph` is `None` when the import failed.
fn summary(path: &Path, model: &ModelProto, graph: Option<&Graph>) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_header(&mut out, path, model);
    let _ = match graph {
        Some(graph) => write_graph(&mut out, model, graph),
        None => writeln!(
            out,
            "inputs, outputs, parameters: unknown, the model does not import (see the error)"
        ),
    };
    let _ = write_histogram(&mut out, model);
    if let Some(graph) = graph {
        let _ = writeln!(out, "ir nodes: {}", graph.node_count());
    }
    out
}

/// The file, producer, opsets and IR version.
fn write_header(out: &mut String, path: &Path, model: &ModelProto) -> fmt::Result {
    writeln!(out, "model: {}", path.display())?;
    let producer = match (model.producer_name(), model.producer_version()) {
        ("", _) => "(not recorded)".to_string(),
        (name, "") => name.to_string(),
        (name, version) => format!("{name} {version}"),
    };
    writeln!(out, "producer: {producer}")?;
    let opsets: Vec<String> = model
        .opset_import
        .iter()
        .map(|o| {
            let domain = match o.domain() {
                "" => "ai.onnx",
                d => d,
            };
            format!("{domain} {}", o.version())
        })
        .collect();
    writeln!(out, "opset: {}", opsets.join(", "))?;
    writeln!(out, "ir_version: {}", model.ir_version())
}

/// Inputs, outputs, parameters and constants, from the imported graph.
fn write_graph(out: &mut String, model: &ModelProto, graph: &Graph) -> fmt::Result {
    writeln!(out, "inputs:")?;
    let inputs: Vec<(String, String)> = graph
        .inputs()
        .iter()
        .map(|&id| {
            let name = match graph.op(id) {
                Op::Input { name } => name.clone(),
                other => format!("({})", other.name()),
            };
            (name, graph.ty(id).to_string())
        })
        .collect();
    write_table(out, &inputs)?;
    writeln!(out, "outputs:")?;
    let outputs: Vec<(String, String)> = graph
        .outputs()
        .iter()
        .map(|(name, id)| (name.clone(), graph.ty(*id).to_string()))
        .collect();
    write_table(out, &outputs)?;
    let c = count_constants(model, graph);
    writeln!(
        out,
        "parameters: {} in {} tensors, {} bytes ({})",
        c.param_elems,
        c.param_tensors,
        c.param_bytes,
        human_bytes(c.param_bytes)
    )?;
    writeln!(
        out,
        "constants: {} elements in {} tensors, {} bytes ({})",
        c.all_elems,
        c.all_tensors,
        c.all_bytes,
        human_bytes(c.all_bytes)
    )
}

/// The ONNX node count and op histogram, most frequent first; op types that
/// the importer has no entry for are marked.
fn write_histogram(out: &mut String, model: &ModelProto) -> fmt::Result {
    let nodes = model
        .graph
        .as_ref()
        .map(|g| g.node.as_slice())
        .unwrap_or(&[]);
    writeln!(out, "onnx nodes: {}", nodes.len())?;
    let mut hist: BTreeMap<String, usize> = BTreeMap::new();
    for n in nodes {
        let key = match n.domain() {
            "" | "ai.onnx" => n.op_type().to_string(),
            domain => format!("{domain}::{}", n.op_type()),
        };
        *hist.entry(key).or_default() += 1;
    }
    let mut hist: Vec<(String, usize)> = hist.into_iter().collect();
    // Most frequent first; ties by name, so the order is stable.
    hist.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let supported = tcc_onnx::supported_ops();
    let rows: Vec<(String, String)> = hist
        .into_iter()
        .map(|(op, n)| {
            let op_type = op.rsplit("::").next().unwrap_or(&op);
            let note = if supported.contains(&op_type) {
                ""
            } else {
                "  (not supported by tcc)"
            };
            (op, format!("{n}{note}"))
        })
        .collect();
    write_table(out, &rows)
}

/// Two aligned columns, indented by two spaces.
fn write_table(out: &mut String, rows: &[(String, String)]) -> fmt::Result {
    let width = rows.iter().map(|(a, _)| a.len()).max().unwrap_or(0);
    for (a, b) in rows {
        writeln!(out, "  {a:<width$}  {b}")?;
    }
    Ok(())
}

/// Counts of the constants of an imported graph.
#[derive(Debug, Default, PartialEq)]
struct ConstantCounts {
    /// Elements of the constants that are ONNX initializers (the weights),
    /// each name counted once.
    param_elems: usize,
    /// How many distinct initializers the graph keeps.
    param_tensors: usize,
    /// Bytes of those.
    param_bytes: usize,
    /// Elements of every constant node of the graph.
    all_elems: usize,
    /// Every constant node.
    all_tensors: usize,
    /// Bytes of every constant node.
    all_bytes: usize,
}

fn count_constants(model: &ModelProto, graph: &Graph) -> ConstantCounts {
    let initializers: HashSet<&str> = model
        .graph
        .as_ref()
        .map(|g| g.initializer.iter().map(|t| t.name()).collect())
        .unwrap_or_default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut c = ConstantCounts::default();
    for id in graph.node_ids() {
        if let Op::Const(k) = graph.op(id) {
            c.all_elems += k.value.len();
            c.all_tensors += 1;
            c.all_bytes += k.value.size_bytes();
            if let Some(name) = &k.name {
                if initializers.contains(name.as_str()) && seen.insert(name.clone()) {
                    c.param_elems += k.value.len();
                    c.param_tensors += 1;
                    c.param_bytes += k.value.size_bytes();
                }
            }
        }
    }
    c
}

/// `55424` as `54.1 KiB`.
fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(human_bytes(55424), "54.1 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}

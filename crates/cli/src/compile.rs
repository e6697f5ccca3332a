//! `tcc compile`: imports a model, optimises it and compiles it to a shared library (or emits
//! the IR, LLVM IR, assembly, an object file or the C header).

use crate::files;
use crate::import_args::ImportArgs;
use crate::pipeline::{self, PipelineArgs};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tcc_codegen::lower::{self, CompileOptions};
use tcc_codegen::{EmitKind, Target};

const LONG_ABOUT: &str = "\
Compiles an ONNX model ahead of time: imports it into tcc's IR, runs the default
pass pipeline, lowers the graph to LLVM kernels with a memory plan, and links the
result with tcc's runtime into one self-contained shared library.

By default (`--emit lib`) it writes MODEL.so (the -o path) and MODEL.h beside it,
each whole or not at all: both are written under temporary names beside MODEL.so,
then the header is renamed into place and the library after it. A failure leaves
the old pair (and removes the temporaries); only a kill between the two renames
leaves the new header beside the old library. Temporaries that a killed compile
left are removed by the next compile of the same output.

The library needs only libc, libm and libpthread and exports only PREFIX_*
functions (see the header). The prefix defaults to the output file's name
without its extension, made a C identifier (characters other than letters,
digits and `_` become `_`; a leading digit gets a `_` before it): `-o bert.so`
gives `bert_run`, `bert_session_create`, ...

Other outputs: `--emit ir` prints the optimised IR (to stdout or -o): exactly
the kernels that will run, one per op, fused ops included; `--emit dot` Graphviz
of the graph as imported and as optimised, fused ops filled; `llvm`, `asm` and
`obj` the optimised LLVM IR, assembly or object code, `header` the C header only. Progress lines with each stage's time and the memory plan go to
stderr; `--shape batch=1,seq=128` evaluates the plan's sizes for those symbol
values.

The pass pipeline (fold-shapes, fold-constants, simplify, dead-code, egraph,
fuse-elementwise) can be taken apart with --no-opt, --disable-pass P,
--dump-after P and --time-passes. The egraph pass is the optimiser: it rewrites
the graph by equality saturation (GEMM bias and activation epilogues, attention,
residual layer norm, transposes read in place) and keeps the cheapest form by a
cost model evaluated at --hint sizes; --explain shows what it did and
--no-reassociate keeps only the rules that never change rounding.";

const AFTER_HELP: &str = "\
Examples:
  tcc compile model.onnx -o model.so
  tcc compile model.onnx -o bert.so --target-cpu x86-64-v3 --shape batch=1,seq=128
  tcc compile model.onnx --emit ir --explain
  tcc compile model.onnx --emit dot -o model.dot && dot -Tsvg model.dot > model.svg
  tcc compile model.onnx -o model.so --disable-pass egraph
  tcc compile model.onnx --emit asm -o model.s";

/// What `tcc compile` produces.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// A shared library and its C header (the default).
    Lib,
    /// The optimised IR in its text form.
    Ir,
    /// The optimised LLVM IR.
    Llvm,
    /// Target assembly.
    Asm,
    /// An object file (not linked).
    Obj,
    /// The C header only.
    Header,
    /// Graphviz of the graph before and after optimisation, fused ops filled.
    Dot,
}

/// Arguments of `tcc compile`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Compile a model to a shared library (or emit its IR, LLVM IR, assembly or header)",
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

    /// The output file (required for lib, llvm, asm and obj; ir and header go to stdout
    /// without it).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// The CPU to compile for: `host` (the default) or an x86-64 level such as x86-64-v3.
    #[arg(long, value_name = "NAME", default_value = "host")]
    pub target_cpu: String,

    /// The prefix of the exported C functions; default: from the output file's name.
    #[arg(long, value_name = "NAME")]
    pub prefix: Option<String>,

    /// Symbol values for the memory-plan report, such as `batch=1,seq=128`.
    #[arg(long, value_name = "SYM=N,...")]
    pub shape: Option<String>,

    /// Compile only the forms the cost model picks at the --hint sizes. By default, when
    /// its choice depends on a symbol's value (linear attention's KV-first form pays off
    /// only for long sequences), the library holds the forms of each side of the crossover
    /// and picks one per call by the actual size; --explain and the header say where.
    #[arg(long)]
    pub one_form: bool,

    #[command(flatten)]
    pub import: ImportArgs,

    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// The prefix derived from a file name: its stem made a C identifier.
pub fn prefix_from_path(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut p: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if p.is_empty() || p.starts_with(|c: char| c.is_ascii_digit()) {
        p.insert(0, '_');
    }
    p
}

/// Parses `batch=1,seq=128`, the value of the option `flag` (`--shape`, `--hint`).
pub fn parse_sizes(text: &str, flag: &str) -> Result<Vec<(String, i64)>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("`{kv}` in {flag} is not SYMBOL=SIZE"))?;
            let v: i64 = v.trim().parse().with_context(|| {
                format!("the size of `{}` in {flag} is not an integer", k.trim())
            })?;
            if v < 1 {
                bail!("the size of `{}` in {flag} must be at least 1", k.trim());
            }
            Ok((k.trim().to_owned(), v))
        })
        .collect()
}

fn stage(name: &str, start: Instant) {
    eprintln!("tcc: {name:<40} {}", files::ms(start.elapsed()));
}

/// Runs `tcc compile`.
pub fn run(args: Args) -> Result<()> {
    let shape = args
        .shape
        .as_deref()
        .map(|s| parse_sizes(s, "--shape"))
        .transpose()?;
    if let Some(out) = &args.output {
        prepare_output(out, args.emit)?;
    }
    let start = Instant::now();
    let (graph, _) = files::load_graph(&args.model, &args.import.options())?;
    if args.emit != Emit::Ir {
        stage("import", start);
    }
    let start = Instant::now();
    let before = (args.emit == Emit::Dot).then(|| graph.clone());
    // One form for the IR and dot outputs, which show the hinted sizes' graph.
    let one_form = args.one_form || matches!(args.emit, Emit::Ir | Emit::Dot);
    let forms = pipeline::optimize_forms(graph, &args.pipeline, one_form)?;
    let graph = &forms.graphs[forms.main];
    if let Some(before) = before {
        let dot = format!(
            "digraph tcc {{\n  rankdir=TB;\n{}{}}}\n",
            tcc_ir::text::dot_cluster(&before, "before", "as imported"),
            tcc_ir::text::dot_cluster(graph, "after", "optimised")
        );
        return match &args.output {
            Some(path) => files::write_atomic(path, dot.as_bytes()),
            None => files::print_stdout(&dot),
        };
    }
    if args.emit == Emit::Ir {
        let text = tcc_ir::text::print(graph);
        return match &args.output {
            Some(path) => files::write_atomic(path, text.as_bytes()),
            None => files::print_stdout(&text),
        };
    }
    stage("passes", start);
    if let Some(d) = &forms.dispatch {
        let ranges: Vec<String> = (0..forms.graphs.len())
            .map(|k| format!("form {k} for {}", d.range(k)))
            .collect();
        eprintln!(
            "tcc: the cost model's choice depends on `{}`: the library holds {} forms and \
             picks one per call ({}); --one-form keeps only the hinted sizes' form",
            d.symbol,
            forms.graphs.len(),
            ranges.join(", ")
        );
    }
    let target = if args.target_cpu == "host" {
        Target::host()
    } else {
        Target::named(&args.target_cpu)
    }
    .context("cannot set up the target")?;
    let prefix = match (&args.prefix, &args.output) {
        (Some(p), _) => p.clone(),
        (None, Some(out)) => prefix_from_path(out),
        (None, None) => prefix_from_path(&args.model),
    };
    if !tcc_codegen::abi::is_valid_prefix(&prefix) {
        bail!("the prefix `{prefix}` is not a C identifier (letters, digits and `_`, not starting with a digit)");
    }
    if args.emit == Emit::Header {
        let graphs: Vec<&tcc_ir::Graph> = forms.graphs.iter().collect();
        let (interface, _) = lower::forms_interface(&graphs, forms.dispatch.as_ref())?;
        let header = tcc_codegen::abi::header(&prefix, &interface)?;
        return match &args.output {
            Some(path) => files::write_atomic(path, header.as_bytes()),
            None => files::print_stdout(&header),
        };
    }
    let kind = match args.emit {
        Emit::Llvm => EmitKind::LlvmIr,
        Emit::Asm => EmitKind::Assembly,
        _ => EmitKind::Object,
    };
    let Some(out) = args.output.clone() else {
        bail!(
            "`--emit {}` needs an output file: give it with -o",
            emit_name(args.emit)
        );
    };
    let opts = CompileOptions {
        target,
        prefix: prefix.clone(),
        emit: kind,
    };
    let graphs: Vec<&tcc_ir::Graph> = forms.graphs.iter().collect();
    let compiled = lower::compile_forms(&graphs, forms.dispatch.as_ref(), &opts)
        .with_context(|| format!("cannot compile `{}`", args.model.display()))?;
    let lowered = match compiled.forms.len() {
        1 => format!("lowering ({} kernels)", compiled.steps()),
        n => format!("lowering ({n} forms, {} kernels)", compiled.steps()),
    };
    eprintln!("tcc: {lowered:<40} {}", files::ms(compiled.lowering));
    eprintln!(
        "tcc: {:<40} {}",
        "LLVM optimisation and code generation",
        files::ms(compiled.codegen)
    );
    report_plan(&compiled, shape.as_deref())?;
    if args.emit == Emit::Lib {
        let start = Instant::now();
        let header = out.with_extension("h");
        // Both are written under temporary names beside `out` and then renamed into place,
        // the header first (see `LibraryTemporaries::install`); dropped on failure, the
        // temporaries are removed.
        let temporaries = files::LibraryTemporaries::new(&out);
        lower::link_library(
            &compiled,
            &prefix,
            &temporaries.library,
            &temporaries.header,
        )
        .with_context(|| format!("cannot write `{}`", out.display()))?;
        temporaries.install(&out, &header)?;
        stage("link", start);
        eprintln!(
            "tcc: wrote {} and {} (prefix `{prefix}`)",
            out.display(),
            header.display()
        );
    } else {
        files::write_atomic(&out, &compiled.bytes)?;
    }
    Ok(())
}

/// Checks, before any work, that the output `out` can be written (its directory exists; a
/// library and its header are two files), and removes the temporaries that killed compiles
/// of the same output left beside it.
fn prepare_output(out: &Path, emit: Emit) -> Result<()> {
    if let Some(dir) = out.parent() {
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            bail!(
                "cannot write `{}`: the directory `{}` does not exist",
                out.display(),
                dir.display()
            );
        }
    }
    if emit == Emit::Lib {
        let header = out.with_extension("h");
        for path in [out, header.as_path()] {
            if files::is_special(path) {
                bail!(
                    "cannot write the library `{}`: `{}` is not a regular file (a device or \
                     a pipe); a library and its header are written as files, renamed into \
                     place (to compile without keeping the result, write into a temporary \
                     directory)",
                    out.display(),
                    path.display()
                );
            }
        }
        if header == out {
            bail!(
                "the library `{}` and its header would be the same file: give the library \
                 another extension, such as `.so`",
                out.display()
            );
        }
        files::remove_stale_temporaries(&[out, &header]);
    } else {
        files::remove_stale_temporaries(&[out]);
    }
    Ok(())
}

fn emit_name(e: Emit) -> &'static str {
    match e {
        Emit::Lib => "lib",
        Emit::Ir => "ir",
        Emit::Llvm => "llvm",
        Emit::Asm => "asm",
        Emit::Obj => "obj",
        Emit::Header => "header",
        Emit::Dot => "dot",
    }
}

fn report_plan(compiled: &lower::Compiled, shape: Option<&[(String, i64)]>) -> Result<()> {
    match shape {
        Some(values) => {
            let env = |s: &str| values.iter().find(|(k, _)| k == s).map(|(_, v)| *v);
            let r = compiled
                .plan_report(&env)
                .map_err(|e| anyhow::anyhow!("cannot evaluate the memory plan for --shape: {e}"))?;
            let shown: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let form = match &compiled.dispatch {
                Some(d) => format!(" (form {})", env(&d.symbol).map_or(0, |v| d.form(v))),
                None => String::new(),
            };
            eprintln!(
                "tcc: memory plan at {}{form}: peak activations {} bytes ({:.2} MiB) in {} slots \
                 (without reuse: {} bytes)",
                shown.join(","),
                r.arena_bytes,
                r.arena_bytes as f64 / (1 << 20) as f64,
                r.slots,
                r.unshared_bytes
            );
        }
        None => {
            for (k, form) in compiled.forms.iter().enumerate() {
                let plan = &form.plan;
                let which = match &compiled.dispatch {
                    Some(d) => format!(" of form {k} ({})", d.range(k)),
                    None => String::new(),
                };
                match plan.arena_bytes.as_const() {
                    Some(bytes) => eprintln!(
                        "tcc: memory plan{which}: peak activations {bytes} bytes in {} slots",
                        plan.slot_sizes.len()
                    ),
                    None => {
                        let symbols: Vec<String> = plan
                            .arena_bytes
                            .symbols()
                            .iter()
                            .map(|s| format!("{s}=N"))
                            .collect();
                        eprintln!(
                            "tcc: memory plan{which}: {} slots; the peak depends on the sizes \
                             (--shape {} gives it in bytes)",
                            plan.slot_sizes.len(),
                            symbols.join(",")
                        )
                    }
                }
            }
        }
    }
    Ok(())
}

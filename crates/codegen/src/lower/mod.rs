//! Lowering an optimised [`Graph`] to native code: the heart of `tcc compile`.
//!
//! [`compile`] runs the stages in order:
//! 1. [`schedule`]: group the graph's nodes into kernels (fused elementwise loops, GEMMs with
//!    their bias and activation folded in, fused attention, one kernel per fused op and per
//!    other op), in dependency order;
//! 2. [`plan`]: the memory plan, with symbolic sizes: inputs and outputs in the caller's
//!    buffers, constants as globals, everything else in arena slots reused after their last use;
//! 3. [`ops`]: one LLVM function per step, `void step(void *ctx, int64_t task)`, working on
//!    a range of rows so the runtime's thread pool can split it;
//! 4. [`run`]: the descriptor's entry points, `run` calling the steps in order, and
//!    [`checks`]: `check_sizes`, the relations between sizes that the graph's types leave to
//!    run time, which the runtime checks before every run;
//! 5. the model ABI ([`crate::abi`]): the descriptor and the exported `PREFIX_*` wrappers;
//! 6. LLVM optimisation and code generation ([`crate::emit`]).
//!
//! [`compile_library`] links the object with the runtime into a `.so` and writes the header.
//!
//! Numerics follow the interpreter (`tcc_ir::interp`), the oracle of the tests: elementwise
//! ops round once per op (transcendental functions in `f64` from the C library), reductions,
//! softmax and layer normalisation accumulate in `f64`, except the softmax of contiguous `f32`
//! rows (attention's), which runs in the target's vectors with tcc's vector exp on an exact
//! `x - max` and an f64 sum (within about 3 ulp, see `softmax_rows_f32`); GEMMs accumulate in
//! `f32` in order of `k` (as the interpreter's f32 matmul does) with a fused bias, and a GELU
//! folded into a GEMM uses tcc's vector `erf` (about 3e-7 relative; the vector math is
//! [`crate::kernels::vmath`]). The fused ops compute what their expansions mean with the
//! kernels above; `rms_norm` computes in f64 and rounds once where its expansion rounds every
//! op to f32 (within 5.5 ulp, see `rms_norm_rows_f32`).
//!
//! Deviation from the design brief: [`Compiled`] holds the emitted bytes of the asked
//! [`EmitKind`] rather than the inkwell module, since a module borrows its LLVM context and
//! cannot outlive [`compile`]; `--emit llvm|asm|obj` ask for that kind up front. The runtime-B
//! GEMM's packing scratch is one region per batch matrix (in the arena, planned like any other
//! buffer), not one per thread: tasks do not know which thread runs them. A convolution's
//! scratch is likewise one packed block per row of its task split, at most 64 rows per image.

pub mod checks;
pub mod dims;
pub mod ops;
pub mod plan;
pub mod run;
pub mod scalar;
pub mod schedule;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inkwell::context::Context;
use tcc_ir::{Graph, Op};

use crate::abi::{self, Interface, TensorSpec};
use crate::emit::EmitKind;
use crate::error::{Error, Result};
use crate::kernels::gemm;
use crate::target::Target;

pub use plan::{Plan, PlanReport};

/// What to compile for.
#[derive(Debug)]
pub struct CompileOptions {
    /// The machine.
    pub target: Target,
    /// The prefix of the exported functions (a C identifier).
    pub prefix: String,
    /// What to emit: object code (for a library), assembly or LLVM IR.
    pub emit: EmitKind,
}

/// Where a library that holds several forms of its model (graphs the optimiser chose for
/// different sizes, such as linear attention's `n x n` and KV-first forms) picks one per
/// call: form `k` runs when `bounds[k - 1] <= symbol < bounds[k]`, form 0 below the first
/// bound and the last form from the last bound up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// The input symbol whose value decides.
    pub symbol: String,
    /// The bounds, increasing: one fewer than the forms.
    pub bounds: Vec<i64>,
    /// What distinguishes each form, for the header (such as the cost model's reason), one
    /// per form or none.
    pub notes: Vec<String>,
}

impl Dispatch {
    /// The form that runs when the symbol has the value `value`.
    pub fn form(&self, value: i64) -> usize {
        self.bounds.iter().take_while(|&&b| value >= b).count()
    }

    /// The sizes at which form `k` runs, such as `seq < 114` or `seq >= 114`.
    pub fn range(&self, k: usize) -> String {
        let s = &self.symbol;
        match (k.checked_sub(1).map(|j| self.bounds[j]), self.bounds.get(k)) {
            (None, Some(hi)) => format!("{s} < {hi}"),
            (Some(lo), None) => format!("{s} >= {lo}"),
            (Some(lo), Some(hi)) => format!("{lo} <= {s} < {hi}"),
            (None, None) => "every size".to_string(),
        }
    }
}

/// One form of a compiled model.
#[derive(Debug)]
pub struct CompiledForm {
    /// The memory plan.
    pub plan: Plan,
    /// The number of kernels (steps) of the schedule.
    pub steps: usize,
    /// The size checks its `check_sizes` evaluates before every run, in order.
    pub size_checks: Vec<checks::SizeCheck>,
}

/// The result of [`compile`] and [`compile_forms`].
#[derive(Debug)]
pub struct Compiled {
    /// The emitted bytes, of kind [`CompileOptions::emit`].
    pub bytes: Vec<u8>,
    /// The C header of the model library.
    pub header: String,
    /// The model's interface.
    pub interface: Interface,
    /// The forms, one unless the library picks one per call by [`Compiled::dispatch`].
    pub forms: Vec<CompiledForm>,
    /// How the library picks a form, when it holds several.
    pub dispatch: Option<Dispatch>,
    /// Time spent scheduling, planning and building LLVM IR.
    pub lowering: Duration,
    /// Time spent in LLVM optimisation and code generation.
    pub codegen: Duration,
}

impl Compiled {
    /// The number of kernels (steps) of all forms together.
    pub fn steps(&self) -> usize {
        self.forms.iter().map(|f| f.steps).sum()
    }

    /// The form that runs for symbol values given by name (the first when the dispatch
    /// symbol has no value).
    pub fn form_at(&self, env: &dyn Fn(&str) -> Option<i64>) -> &CompiledForm {
        let k = self
            .dispatch
            .as_ref()
            .and_then(|d| env(&d.symbol).map(|v| d.form(v)))
            .unwrap_or(0);
        &self.forms[k]
    }

    /// The memory-plan report for symbol values given by name, of the form that runs at
    /// them.
    pub fn plan_report(
        &self,
        env: &dyn Fn(&str) -> Option<i64>,
    ) -> std::result::Result<PlanReport, String> {
        self.form_at(env).plan.report(env)
    }
}

/// The model's interface: inputs (dims fixed or plain symbols), outputs, symbols and the
/// messages of its size checks ([`checks::size_checks`]). Fails, naming the node, on an op
/// code generation has no kernel for ([`schedule::check_supported`]).
pub fn interface(graph: &Graph) -> Result<Interface> {
    schedule::check_supported(graph)?;
    interface_with(graph, &checks::size_checks(graph))
}

/// The derived symbols of `graph` (each `pack`'s token count, which only the run knows), in
/// the order the packs run, with their bounds: the number of their mask's entries, which the
/// memory plan and the size checks use for them.
pub fn derived_symbols(graph: &Graph) -> Vec<(Arc<str>, tcc_ir::Dim)> {
    let mut out: Vec<(Arc<str>, tcc_ir::Dim)> = Vec::new();
    for id in graph.topo_order() {
        if let Op::Pack { tokens } = graph.op(id) {
            if !out.iter().any(|(n, _)| n == tokens) {
                let mask = graph.operands(id)[1];
                out.push((tokens.clone(), graph.ty(mask).shape.numel()));
            }
        }
    }
    out
}

/// `d` with each derived symbol replaced by its bound (see [`derived_symbols`]).
pub fn bounded(d: &tcc_ir::Dim, bounds: &[(Arc<str>, tcc_ir::Dim)]) -> tcc_ir::Dim {
    if bounds.is_empty() {
        d.clone()
    } else {
        d.substitute(&|s| {
            bounds
                .iter()
                .find(|(n, _)| **n == *s)
                .map(|(_, b)| b.clone())
        })
    }
}

/// The header's note on padding elimination, if outputs are unpacked by a mask input: their
/// values at the mask's padded positions are 0, and the mask must hold 0 and 1 only.
fn padding_notes(graph: &Graph) -> Vec<String> {
    let mut masks: Vec<String> = Vec::new();
    let mut outputs: Vec<String> = Vec::new();
    for (name, id) in graph.outputs() {
        if let Op::Unpack = graph.op(*id) {
            if let Op::Input { name: m } = graph.op(graph.operands(*id)[1]) {
                outputs.push(format!("`{name}`"));
                if !masks.contains(m) {
                    masks.push(m.clone());
                }
            }
        }
    }
    if outputs.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "Padding elimination (tcc compile --remove-padding): the model runs the real tokens \
         only, those where {} is nonzero. The outputs {} are 0 at the padded positions (where \
         ONNX Runtime leaves values that no caller should read). The mask must hold 0 and 1 \
         only, as tokenizers make it.",
        masks
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(" and "),
        outputs.join(", ")
    )]
}

/// [`interface`] with the size checks already listed.
fn interface_with(graph: &Graph, size_checks: &[checks::SizeCheck]) -> Result<Interface> {
    let symbols: Vec<String> = graph
        .input_symbols()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut inputs = Vec::new();
    for &id in graph.inputs() {
        let name = match graph.op(id) {
            Op::Input { name } => name.clone(),
            _ => format!("%{}", id.index()),
        };
        let ty = graph.ty(id);
        let mut dims = Vec::new();
        for d in ty.shape.dims() {
            dims.push(if let Some(c) = d.as_const() {
                abi::Dim::Fixed(c.max(0) as u64)
            } else if let Some(s) = d.as_sym() {
                abi::Dim::Symbol(s.to_owned())
            } else {
                return Err(Error::Unsupported {
                    node: name.clone(),
                    op: "input".into(),
                    why: format!("input dim `{d}` is an expression; inputs need fixed sizes or plain symbols"),
                });
            });
        }
        inputs.push(TensorSpec {
            name,
            dtype: ty.dtype,
            dims,
        });
    }
    let mut outputs = Vec::new();
    for (name, id) in graph.outputs() {
        let ty = graph.ty(*id);
        let dims = ty
            .shape
            .dims()
            .iter()
            .map(|d| {
                if let Some(c) = d.as_const() {
                    abi::Dim::Fixed(c.max(0) as u64)
                } else if let Some(s) = d.as_sym() {
                    abi::Dim::Symbol(s.to_owned())
                } else {
                    abi::Dim::Computed(d.to_string())
                }
            })
            .collect();
        outputs.push(TensorSpec {
            name: name.clone(),
            dtype: ty.dtype,
            dims,
        });
    }
    Ok(Interface {
        inputs,
        outputs,
        symbols,
        size_checks: size_checks.iter().map(|c| c.message.clone()).collect(),
        forms: Vec::new(),
        notes: padding_notes(graph),
    })
}

/// Compiles a graph: schedule, memory plan, kernels, entry points, ABI, then LLVM.
pub fn compile(graph: &Graph, opts: &CompileOptions) -> Result<Compiled> {
    compile_forms(&[graph], None, opts)
}

/// The interface of a library of the forms `graphs` picked by `dispatch` (see
/// [`compile_forms`]), and each form's size checks: the forms' inputs, outputs and symbols
/// must agree; the size checks are concatenated, form by form. Fails, naming the node, on an
/// op code generation has no kernel for ([`schedule::check_supported`]).
pub fn forms_interface(
    graphs: &[&Graph],
    dispatch: Option<&Dispatch>,
) -> Result<(Interface, Vec<Vec<checks::SizeCheck>>)> {
    let Some(&first) = graphs.first() else {
        return Err(Error::Forms {
            why: "no graph to compile".into(),
        });
    };
    for g in graphs {
        schedule::check_supported(g)?;
    }
    let multi = graphs.len() > 1;
    let form_checks: Vec<Vec<checks::SizeCheck>> =
        graphs.iter().map(|g| checks::size_checks(g)).collect();
    let all_checks: Vec<checks::SizeCheck> = form_checks.iter().flatten().cloned().collect();
    let mut interface = interface_with(first, &all_checks)?;
    for (k, g) in graphs.iter().enumerate().skip(1) {
        let other = interface_with(g, &[])?;
        let same = other.inputs == interface.inputs
            && other.symbols == interface.symbols
            && other.outputs.len() == interface.outputs.len()
            && other.outputs.iter().zip(&interface.outputs).all(|(a, b)| {
                a.name == b.name && a.dtype == b.dtype && a.dims.len() == b.dims.len()
            });
        if !same {
            return Err(Error::Forms {
                why: format!("form {k}'s inputs, outputs or symbols differ from form 0's"),
            });
        }
    }
    if let Some(d) = dispatch.filter(|_| multi) {
        interface.forms = (0..graphs.len())
            .map(|k| match d.notes.get(k) {
                Some(note) => format!("{}: {note}", d.range(k)),
                None => d.range(k),
            })
            .collect();
    }
    Ok((interface, form_checks))
}

/// Compiles several forms of one model into one library that picks a form per call by
/// `dispatch` (which must be given when there are several forms, with one bound fewer than
/// forms). The forms must have the same interface (inputs, outputs, symbols); their size
/// checks are concatenated, form by form. Equal constants of several forms are stored once
/// (LLVM merges them).
pub fn compile_forms(
    graphs: &[&Graph],
    dispatch: Option<&Dispatch>,
    opts: &CompileOptions,
) -> Result<Compiled> {
    let start = Instant::now();
    let Some(&first) = graphs.first() else {
        return Err(Error::Internal {
            function: opts.prefix.clone(),
            message: "no graph to compile",
        });
    };
    let multi = graphs.len() > 1;
    let symbol = match (multi, dispatch) {
        (false, None) => None,
        (true, Some(d))
            if d.bounds.len() + 1 == graphs.len() && d.bounds.windows(2).all(|w| w[0] < w[1]) =>
        {
            let k = first.input_symbols().iter().position(|s| **s == *d.symbol);
            Some(k.ok_or_else(|| Error::Forms {
                why: format!("the dispatch symbol `{}` is not an input symbol", d.symbol),
            })?)
        }
        _ => {
            return Err(Error::Forms {
                why: format!(
                    "{} forms need {} increasing bounds; the dispatch is {dispatch:?}",
                    graphs.len(),
                    graphs.len() - 1
                ),
            })
        }
    };
    let (interface, form_checks) = forms_interface(graphs, dispatch)?;
    abi::check_interface(&opts.prefix, &interface)?;
    let header = abi::header(&opts.prefix, &interface)?;
    let target = &opts.target;
    let context = Context::create();
    let module = context.create_module(&opts.prefix);
    crate::emit::prepare(&module, target);
    let mut forms = Vec::new();
    let mut entries = Vec::new();
    let mut offsets = Vec::new();
    let mut offset = 0u32;
    for (k, (graph, size_checks)) in graphs.iter().zip(form_checks).enumerate() {
        let tag = if multi {
            format!(".form{k}")
        } else {
            String::new()
        };
        let (entry, form) = lower_form(&module, graph, size_checks, target, &tag)?;
        offsets.push(offset);
        offset += form.size_checks.len() as u32;
        entries.push(entry);
        forms.push(form);
    }
    let entry = match (symbol, dispatch) {
        (Some(symbol), Some(d)) => {
            run::emit_dispatch(&module, symbol, &d.bounds, &entries, &offsets)?
        }
        _ => entries[0],
    };
    abi::emit_model_abi(&module, &opts.prefix, &interface, &entry)?;
    let lowering = start.elapsed();
    let start = Instant::now();
    let bytes = crate::emit::emit(&module, target, opts.emit)?;
    let codegen = start.elapsed();
    Ok(Compiled {
        bytes,
        header,
        interface,
        forms,
        dispatch: dispatch.filter(|_| multi).cloned(),
        lowering,
        codegen,
    })
}

/// Lowers one form into `module`: its steps, `check_sizes` and entry points, their names
/// tagged with `tag` (empty for a library of one form).
fn lower_form<'ctx>(
    module: &inkwell::module::Module<'ctx>,
    graph: &Graph,
    size_checks: Vec<checks::SizeCheck>,
    target: &Target,
    tag: &str,
) -> Result<(abi::EntryPoints<'ctx>, CompiledForm)> {
    // The input symbols (the caller's), then the derived ones (each pack's token count),
    // which the run computes into its own copy of the symbols.
    let inputs: Vec<Arc<str>> = graph.input_symbols();
    let mut names = inputs.clone();
    names.extend(derived_symbols(graph).into_iter().map(|(name, _)| name));
    let mut steps = schedule::schedule(graph)?;
    let direct = schedule::add_output_copies(graph, &mut steps);
    // Documented in ARCHITECTURE.md (Code generation): the schedule, one line per step, and
    // the size checks.
    if std::env::var_os("TCC_DEBUG_SCHEDULE").is_some() {
        if !tag.is_empty() {
            eprintln!("form{tag}:");
        }
        for (k, s) in steps.iter().enumerate() {
            let kind = match &s.kernel {
                schedule::Kernel::Fused(e) => format!("fused {e:?}"),
                schedule::Kernel::GemmConstB {
                    activation, bias, ..
                } => format!("gemm {activation:?} bias={}", bias.is_some()),
                schedule::Kernel::Attention {
                    scores,
                    alpha,
                    expr,
                    post,
                    perms,
                    out_perm,
                    ..
                } => format!(
                    "attention scores={scores} alpha={alpha} f={expr:?} g={post:?} \
                     perms={perms:?} out_perm={out_perm:?}"
                ),
                schedule::Kernel::MatMul {
                    product,
                    perms,
                    out_perm,
                } => {
                    format!("matmul product={product} perms={perms:?} out_perm={out_perm:?}")
                }
                schedule::Kernel::Copy => "copy".into(),
                schedule::Kernel::Op(op) => op.name().into(),
            };
            eprintln!(
                "step {k}: {:?} <- {:?}: {}",
                s.dest,
                s.inputs,
                kind.chars().take(200).collect::<String>()
            );
        }
        for (k, c) in size_checks.iter().enumerate() {
            eprintln!("size check {k}: {:?}: {}", c.relation, c.message);
        }
    }
    let plan = plan::plan(graph, &steps, &direct, &|s| {
        ops::scratch_bytes(graph, s, target)
    });
    let step_name = |k: usize| format!("tcc{tag}.step{k}");
    // Each GEMM with constant f32 weights and the one after it (see `NextGemm`).
    let const_b = |k: usize| -> Option<(String, &[f32], usize, usize)> {
        match &steps[k].kernel {
            schedule::Kernel::GemmConstB { b, .. } if b.shape().len() == 2 => {
                b.as_slice::<f32>().map(|v| {
                    (
                        format!("{}.gemm", step_name(k)),
                        v,
                        b.shape()[0],
                        b.shape()[1],
                    )
                })
            }
            _ => None,
        }
    };
    let gemms: Vec<_> = (0..steps.len()).map(const_b).collect();
    let mut functions = Vec::new();
    for (k, step) in steps.iter().enumerate() {
        let n_buffers = step.inputs.len() as u32 + 1;
        let has_scratch = plan.scratch.contains_key(&k);
        let next_gemm = match gemms[k] {
            Some(_) => gemms[k + 1..]
                .iter()
                .flatten()
                .next()
                .map(|(name, b, rows, cols)| gemm::NextGemm {
                    name,
                    b,
                    k: *rows,
                    n: *cols,
                }),
            None => None,
        };
        let (function, parallel) = ops::emit_step(
            module,
            target,
            graph,
            &names,
            step,
            n_buffers,
            has_scratch,
            &step_name(k),
            next_gemm,
        )?;
        functions.push(run::StepFunction { function, parallel });
    }
    // Size checks run before any step: they can read input symbols only.
    if let Some(c) = size_checks
        .iter()
        .find(|c| checks::reads_derived(&c.relation, &inputs))
    {
        return Err(Error::Forms {
            why: format!(
                "a size relation depends on a pack's token count, which only the run knows: {}",
                c.message
            ),
        });
    }
    let check_sizes = checks::emit_check_sizes(
        module,
        &inputs,
        &size_checks,
        &format!("tcc_check_sizes{tag}"),
    )?;
    let entry = run::emit_entry_points(
        module,
        graph,
        &names,
        inputs.len(),
        &steps,
        &functions,
        &plan,
        check_sizes,
        tag,
    )?;
    Ok((
        entry,
        CompiledForm {
            plan,
            steps: steps.len(),
            size_checks,
        },
    ))
}

/// Writes an object, links it with the runtime into the library `out` and writes the header
/// `header` (both whole or not at all; if the header cannot be written the library is removed).
pub fn link_library(compiled: &Compiled, prefix: &str, out: &Path, header: &Path) -> Result<()> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let object = dir.join(format!(
        ".{}.tcc-{}.o",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&object, &compiled.bytes).map_err(Error::io(&object))?;
    let linked = crate::link::link_model(&[&object], prefix, out);
    let _ = std::fs::remove_file(&object);
    linked?;
    if let Err(e) = crate::emit::write_atomically(header, |tmp| {
        std::fs::write(tmp, compiled.header.as_bytes()).map_err(Error::io(tmp))
    }) {
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    Ok(())
}

/// [`compile`] for a library and [`link_library`]: `out` (the `.so`) and `header`.
pub fn compile_library(
    graph: &Graph,
    opts: &CompileOptions,
    out: &Path,
    header: &Path,
) -> Result<Compiled> {
    if opts.emit != EmitKind::Object {
        return Err(Error::Internal {
            function: opts.prefix.clone(),
            message: "a library needs object code",
        });
    }
    let compiled = compile(graph, opts)?;
    link_library(&compiled, &opts.prefix, out, header)?;
    Ok(compiled)
}

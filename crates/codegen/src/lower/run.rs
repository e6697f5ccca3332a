//! The model's entry points: `run`, `output_dims` and `arena_bytes`, with the descriptor's
//! signatures.
//!
//! `run` walks the schedule: for each step it fills one context array on its stack (symbols,
//! the error flag, the row split, the buffer pointers from the memory plan), then calls the
//! step's function once on the calling thread when the work is small (below
//! [`PARALLEL_WORK`] elements or multiply-adds, or one thread), else hands it to
//! `tcc_rt_parallel_for` with about four tasks per thread (chunks rounded to the kernel's
//! alignment, such as the GEMM's register tile rows). It returns the error flag: 0, or 1 if a
//! kernel met bad data (an index out of range). The sizes the graph's types assume fit are
//! checked before it, by `check_sizes` (see [`super::checks`]), which the runtime calls first.

use std::collections::HashMap;
use std::sync::Arc;

use inkwell::module::{Linkage, Module};
use inkwell::values::{FunctionValue, IntValue, PointerValue};
use inkwell::{AddressSpace, IntPredicate};
use tcc_ir::{Graph, NodeId};

use super::dims::DimEmitter;
use super::ops::{CtxSlot, Parallel};
use super::plan::{Plan, Storage};
use super::schedule::{Dest, Step};
use crate::abi::{self, EntryPoints};
use crate::error::{Error, Result};

/// Below this much work per step (rows times work per row) a step runs on the calling thread.
pub const PARALLEL_WORK: i64 = 1 << 15;

/// A step's emitted function and how it splits.
pub struct StepFunction<'ctx> {
    /// The task function.
    pub function: FunctionValue<'ctx>,
    /// Its row split.
    pub parallel: Parallel,
}

/// Emits `run`, `output_dims` and `arena_bytes`, named `tcc_run{tag}` and so on (`tag` is
/// empty, or names the form when a library holds several); `check_sizes` is the already
/// emitted [`super::checks::emit_check_sizes`]. `names` numbers the symbols: the first
/// `n_inputs` are the caller's (the only ones `output_dims` and `arena_bytes` may read), the
/// others derived, computed by the run's steps into its own copy of the array.
#[allow(clippy::too_many_arguments)]
pub fn emit_entry_points<'ctx>(
    module: &Module<'ctx>,
    graph: &Graph,
    names: &[Arc<str>],
    n_inputs: usize,
    steps: &[Step],
    functions: &[StepFunction<'ctx>],
    plan: &Plan,
    check_sizes: FunctionValue<'ctx>,
    tag: &str,
) -> Result<EntryPoints<'ctx>> {
    let context = module.get_context();
    let ptr_t = context.ptr_type(AddressSpace::default());
    let i64t = context.i64_type();
    let i32t = context.i32_type();
    let (od_name, ab_name, run_name) = (
        format!("tcc_output_dims{tag}"),
        format!("tcc_arena_bytes{tag}"),
        format!("tcc_run{tag}"),
    );

    // output_dims
    let output_dims = module.add_function(&od_name, abi::output_dims_fn_type(context), None);
    {
        let b = context.create_builder();
        b.position_at_end(context.append_basic_block(output_dims, "entry"));
        let symbols = param_ptr(output_dims, 0)?;
        let dims_out = param_ptr(output_dims, 1)?;
        let d = DimEmitter::new(&b, symbols, &names[..n_inputs], &od_name);
        let mut k = 0u64;
        for (_, id) in graph.outputs() {
            for dim in graph.ty(*id).shape.dims() {
                let v = d.dim(dim)?;
                // SAFETY: the runtime passes room for every output dim.
                let p = unsafe {
                    b.build_in_bounds_gep(i64t, dims_out, &[i64t.const_int(k, false)], "d")
                        .map_err(Error::builder(&od_name))?
                };
                b.build_store(p, v).map_err(Error::builder(&od_name))?;
                k += 1;
            }
        }
        b.build_return(None).map_err(Error::builder(&od_name))?;
    }

    // arena_bytes
    let arena_bytes = module.add_function(&ab_name, abi::arena_bytes_fn_type(context), None);
    {
        let b = context.create_builder();
        b.position_at_end(context.append_basic_block(arena_bytes, "entry"));
        let symbols = param_ptr(arena_bytes, 0)?;
        let d = DimEmitter::new(&b, symbols, &names[..n_inputs], &ab_name);
        let v = d.dim(&plan.arena_bytes)?;
        b.build_return(Some(&v)).map_err(Error::builder(&ab_name))?;
    }

    // run
    let run = module.add_function(&run_name, abi::run_fn_type(context), None);
    let b = context.create_builder();
    b.position_at_end(context.append_basic_block(run, "entry"));
    let pool = param_ptr(run, 0)?;
    let caller_symbols = param_ptr(run, 1)?;
    let inputs = param_ptr(run, 2)?;
    let outputs = param_ptr(run, 3)?;
    let arena = param_ptr(run, 4)?;
    let e = || Error::builder(&run_name);
    // With derived symbols, the run's own copy of the symbols, the caller's first.
    let symbols = if names.len() > n_inputs {
        let local = b
            .build_array_alloca(i64t, i64t.const_int(names.len() as u64, false), "symbols")
            .map_err(e())?;
        if n_inputs > 0 {
            b.build_memcpy(
                local,
                8,
                caller_symbols,
                8,
                i64t.const_int(8 * n_inputs as u64, false),
            )
            .map_err(e())?;
        }
        local
    } else {
        caller_symbols
    };
    let d = DimEmitter::new(&b, symbols, names, &run_name);
    let error = b.build_alloca(i32t, "error").map_err(e())?;
    b.build_store(error, i32t.const_zero()).map_err(e())?;
    let max_buffers = steps.iter().map(|s| s.inputs.len() + 2).max().unwrap_or(1);
    let n_slots = CtxSlot::FIRST_BUFFER as usize + max_buffers;
    let ctx = b
        .build_array_alloca(i64t, i64t.const_int(n_slots as u64, false), "ctx")
        .map_err(e())?;
    let parallel_for = abi::declare_parallel_for(module);
    let num_threads = abi::declare_num_threads(module);
    let threads = b
        .build_call(num_threads, &[pool.into()], "threads")
        .map_err(e())?
        .try_as_basic_value()
        .basic()
        .ok_or_else(|| Error::Internal {
            function: run_name.clone(),
            message: "tcc_rt_num_threads returned void",
        })?
        .into_int_value();
    let threads = b.build_int_s_extend(threads, i64t, "t64").map_err(e())?;
    let slot = |k: u32| -> Result<PointerValue<'ctx>> {
        // SAFETY: k < n_slots.
        unsafe {
            b.build_in_bounds_gep(i64t, ctx, &[i64t.const_int(u64::from(k), false)], "slot")
                .map_err(e())
        }
    };
    let indexed = |base: PointerValue<'ctx>, i: usize| -> Result<PointerValue<'ctx>> {
        // SAFETY: the runtime passes one pointer per input and output.
        let p = unsafe {
            b.build_in_bounds_gep(ptr_t, base, &[i64t.const_int(i as u64, false)], "io")
                .map_err(e())?
        };
        Ok(b.build_load(ptr_t, p, "buf")
            .map_err(e())?
            .into_pointer_value())
    };
    let mut globals: HashMap<NodeId, PointerValue<'ctx>> = HashMap::new();
    let unreachable_storage = |id: NodeId| -> Error {
        Error::Internal {
            function: format!("{run_name} (node %{}, {})", id.index(), graph.op(id).name()),
            message: "a value has no storage in the memory plan",
        }
    };
    #[allow(clippy::type_complexity)]
    let mut buffer_of_impl: Box<
        dyn FnMut(
            NodeId,
            Option<Storage>,
            &inkwell::builder::Builder<'ctx>,
        ) -> Result<PointerValue<'ctx>>,
    > = Box::new(|id, storage, b| match storage {
        Some(Storage::Input(i)) => indexed(inputs, i),
        Some(Storage::Output(j)) => indexed(outputs, j),
        Some(Storage::Arena(s)) => {
            let off = d.dim(&plan.slot_offsets[s])?;
            // SAFETY: the arena holds arena_bytes(symbols) bytes, past every slot's end.
            unsafe {
                b.build_in_bounds_gep(context.i8_type(), arena, &[off], "slot")
                    .map_err(e())
            }
        }
        Some(Storage::Const) => {
            if let Some(p) = globals.get(&id) {
                return Ok(*p);
            }
            let t = graph
                .const_value(id)
                .ok_or_else(|| unreachable_storage(id))?;
            let bytes = t.data().to_le_bytes();
            let value = context.const_string(&bytes, false);
            let g = module.add_global(
                value.get_type(),
                None,
                &format!("tcc.const{tag}.{}", id.index()),
            );
            g.set_initializer(&value);
            g.set_constant(true);
            // No address is compared: LLVM may merge equal constants (of several forms).
            g.set_unnamed_addr(true);
            g.set_linkage(Linkage::Private);
            g.set_alignment(64);
            let p = g.as_pointer_value();
            globals.insert(id, p);
            Ok(p)
        }
        _ => Err(unreachable_storage(id)),
    });
    let mut buffer_of =
        |id: NodeId, storage: Option<Storage>, b: &inkwell::builder::Builder<'ctx>| {
            buffer_of_impl(id, storage, b)
        };
    for (s, (step, f)) in steps.iter().zip(functions).enumerate() {
        let dest = match step.dest {
            Dest::Output(j) => indexed(outputs, j)?,
            Dest::Node(id) => {
                let st = plan.storage.get(&id).cloned();
                buffer_of(id, st, &b)?
            }
        };
        let mut ptrs = vec![dest];
        for &input in &step.inputs {
            let mut st = plan.storage.get(&input).cloned();
            let mut id = input;
            if let Some(Storage::View(root)) = st {
                st = plan.storage.get(&root).cloned();
                id = root;
            }
            ptrs.push(buffer_of(id, st, &b)?);
        }
        if let Some(&scratch) = plan.scratch.get(&s) {
            ptrs.push(buffer_of(step.node, Some(Storage::Arena(scratch)), &b)?);
        }
        b.build_store(slot(CtxSlot::SYMBOLS)?, symbols)
            .map_err(e())?;
        b.build_store(slot(CtxSlot::ERROR)?, error).map_err(e())?;
        for (k, p) in ptrs.iter().enumerate() {
            b.build_store(slot(CtxSlot::FIRST_BUFFER + k as u32)?, *p)
                .map_err(e())?;
        }
        let rows = d.dim(&f.parallel.rows)?;
        let work = d.dim(&f.parallel.work)?;
        let (chunk, tasks, groups, col_chunk) = split(&b, rows, work, threads, &f.parallel)?;
        b.build_store(slot(CtxSlot::CHUNK)?, chunk).map_err(e())?;
        b.build_store(slot(CtxSlot::COL_GROUPS)?, groups)
            .map_err(e())?;
        b.build_store(slot(CtxSlot::COL_CHUNK)?, col_chunk)
            .map_err(e())?;
        b.build_store(slot(CtxSlot::ROWS)?, rows).map_err(e())?;
        let one = i64t.const_int(1, false);
        let many = b
            .build_int_compare(IntPredicate::SGT, tasks, one, "many")
            .map_err(e())?;
        let par = context.append_basic_block(run, &format!("step{s}.par"));
        let ser = context.append_basic_block(run, &format!("step{s}.ser"));
        let next = context.append_basic_block(run, &format!("step{s}.done"));
        b.build_conditional_branch(many, par, ser).map_err(e())?;
        b.position_at_end(par);
        b.build_call(
            parallel_for,
            &[
                pool.into(),
                tasks.into(),
                f.function.as_global_value().as_pointer_value().into(),
                ctx.into(),
            ],
            "",
        )
        .map_err(e())?;
        b.build_unconditional_branch(next).map_err(e())?;
        b.position_at_end(ser);
        b.build_call(f.function, &[ctx.into(), i64t.const_zero().into()], "")
            .map_err(e())?;
        b.build_unconditional_branch(next).map_err(e())?;
        b.position_at_end(next);
    }
    let status = b.build_load(i32t, error, "status").map_err(e())?;
    b.build_return(Some(&status)).map_err(e())?;
    Ok(EntryPoints {
        run,
        output_dims,
        arena_bytes,
        check_sizes,
    })
}

/// How a step of `rows` rows of `work` each, and `cols` column units, splits on `threads`
/// threads: `(chunk, tasks, groups, col_chunk)`, rows per task, tasks, column groups and column
/// units per group.
///
/// Small steps (below [`PARALLEL_WORK`]) and one thread run as one task. A step that splits
/// along its columns (a GEMM's panels) into a multiple of the thread count, or into at least
/// eight units per thread, and has at most [`Parallel::col_max_rows`] rows, gives each thread
/// one column group and every row: each thread then reads only its share of the GEMM's
/// weights, once, and the threads' shares are equal (or within an eighth). Otherwise rows split into about four chunks per thread, rounded to
/// `align`, and the pool balances them.
fn split<'ctx>(
    b: &inkwell::builder::Builder<'ctx>,
    rows: IntValue<'ctx>,
    work: IntValue<'ctx>,
    threads: IntValue<'ctx>,
    parallel: &Parallel,
) -> Result<(
    IntValue<'ctx>,
    IntValue<'ctx>,
    IntValue<'ctx>,
    IntValue<'ctx>,
)> {
    let (align, cols) = (parallel.align, parallel.cols);
    let e = || Error::builder("tcc_run");
    let i64t = rows.get_type();
    let c = |v: i64| i64t.const_int(v as u64, true);
    let sel =
        |cond: IntValue<'ctx>, x: IntValue<'ctx>, y: IntValue<'ctx>| -> Result<IntValue<'ctx>> {
            Ok(b.build_select(cond, x, y, "s")
                .map_err(e())?
                .into_int_value())
        };
    let total = b.build_int_mul(rows, work, "total").map_err(e())?;
    let small = b
        .build_int_compare(IntPredicate::SLT, total, c(PARALLEL_WORK), "small")
        .map_err(e())?;
    let single = b
        .build_int_compare(IntPredicate::SLE, threads, c(1), "single")
        .map_err(e())?;
    let serial = b.build_or(small, single, "serial").map_err(e())?;
    let rows1 = sel(
        b.build_int_compare(IntPredicate::SLT, rows, c(1), "r0")
            .map_err(e())?,
        c(1),
        rows,
    )?;
    // Chunks per thread: four, for the pool to balance; one for a GEMM (a step with column
    // units), since each chunk reads all of B again.
    let per_thread = if cols >= 2 { 1 } else { 4 };
    let target = b
        .build_int_mul(threads, c(per_thread), "target")
        .map_err(e())?;
    let target = sel(
        b.build_int_compare(IntPredicate::SLT, rows1, target, "few")
            .map_err(e())?,
        rows1,
        target,
    )?;
    // chunk = ceil(rows / target), rounded up to a multiple of align.
    let chunk = b
        .build_int_signed_div(
            b.build_int_add(
                rows1,
                b.build_int_sub(target, c(1), "t1").map_err(e())?,
                "n",
            )
            .map_err(e())?,
            target,
            "chunk",
        )
        .map_err(e())?;
    let chunk = b
        .build_int_mul(
            b.build_int_signed_div(
                b.build_int_add(chunk, c(align - 1), "ca").map_err(e())?,
                c(align),
                "cq",
            )
            .map_err(e())?,
            c(align),
            "chunk.a",
        )
        .map_err(e())?;
    let tasks = b
        .build_int_signed_div(
            b.build_int_add(rows1, b.build_int_sub(chunk, c(1), "c1").map_err(e())?, "n")
                .map_err(e())?,
            chunk,
            "tasks",
        )
        .map_err(e())?;
    let chunk = sel(serial, rows1, chunk)?;
    let tasks = sel(serial, c(1), tasks)?;
    // Everything in one column group unless the columns split well.
    let all_cols = c(cols.max(1));
    if cols < 2 {
        return Ok((chunk, tasks, c(1), all_cols));
    }
    let even = b
        .build_int_compare(
            IntPredicate::EQ,
            b.build_int_signed_rem(c(cols), threads, "rem")
                .map_err(e())?,
            c(0),
            "even",
        )
        .map_err(e())?;
    let many = b
        .build_int_compare(
            IntPredicate::SGE,
            c(cols),
            b.build_int_mul(threads, c(8), "t8").map_err(e())?,
            "many",
        )
        .map_err(e())?;
    let fits = b
        .build_and(
            b.build_int_compare(IntPredicate::SLE, threads, c(cols), "fits")
                .map_err(e())?,
            b.build_int_compare(IntPredicate::SLE, rows, c(parallel.col_max_rows), "short")
                .map_err(e())?,
            "fits",
        )
        .map_err(e())?;
    let by_cols = b
        .build_and(
            b.build_and(fits, b.build_or(even, many, "ok").map_err(e())?, "f")
                .map_err(e())?,
            b.build_not(serial, "par").map_err(e())?,
            "by.cols",
        )
        .map_err(e())?;
    // Guard the division for the case that does not use it (threads may exceed cols).
    let groups = sel(by_cols, threads, c(1))?;
    let col_chunk = b
        .build_int_signed_div(
            b.build_int_add(
                c(cols),
                b.build_int_sub(groups, c(1), "g1").map_err(e())?,
                "n",
            )
            .map_err(e())?,
            groups,
            "col.chunk",
        )
        .map_err(e())?;
    let chunk = sel(by_cols, rows1, chunk)?;
    let tasks = sel(by_cols, threads, tasks)?;
    Ok((chunk, tasks, groups, col_chunk))
}

fn param_ptr<'ctx>(f: FunctionValue<'ctx>, n: u32) -> Result<PointerValue<'ctx>> {
    f.get_nth_param(n)
        .map(|p| p.into_pointer_value())
        .ok_or_else(|| Error::Internal {
            function: f.get_name().to_string_lossy().into_owned(),
            message: "missing parameter",
        })
}

/// Emits the entry points of a library that holds several forms of its model (see
/// [`super::Dispatch`]): `tcc_run`, `tcc_output_dims`, `tcc_arena_bytes` and
/// `tcc_check_sizes` each read the value of the symbol numbered `symbol` and call form `k`'s
/// own function when `bounds[k - 1] <= value < bounds[k]` (form 0 below `bounds[0]`, the last
/// form from the last bound up); `tcc_check_sizes` adds `check_offsets[k]`, the number of the
/// earlier forms' checks, to the index of a failing check, so that indices number the
/// concatenated messages. The forms' own functions become internal (and inline).
pub fn emit_dispatch<'ctx>(
    module: &Module<'ctx>,
    symbol: usize,
    bounds: &[i64],
    forms: &[EntryPoints<'ctx>],
    check_offsets: &[u32],
) -> Result<EntryPoints<'ctx>> {
    let context = module.get_context();
    let i64t = context.i64_type();
    if forms.len() != bounds.len() + 1 || check_offsets.len() != forms.len() {
        return Err(Error::Internal {
            function: "tcc_run".into(),
            message: "a dispatch needs one bound fewer than forms",
        });
    }
    for f in forms {
        for g in [f.run, f.output_dims, f.arena_bytes, f.check_sizes] {
            g.set_linkage(Linkage::Internal);
        }
    }
    // (name, type, index of the symbols parameter, the form's function, whether it is
    // check_sizes)
    type Pick<'ctx> = fn(&EntryPoints<'ctx>) -> FunctionValue<'ctx>;
    let entries: [(&str, _, u32, Pick<'ctx>, bool); 4] = [
        ("tcc_run", abi::run_fn_type(context), 1, |f| f.run, false),
        (
            "tcc_output_dims",
            abi::output_dims_fn_type(context),
            0,
            |f| f.output_dims,
            false,
        ),
        (
            "tcc_arena_bytes",
            abi::arena_bytes_fn_type(context),
            0,
            |f| f.arena_bytes,
            false,
        ),
        (
            "tcc_check_sizes",
            abi::check_sizes_fn_type(context),
            0,
            |f| f.check_sizes,
            true,
        ),
    ];
    let mut made = Vec::new();
    for (name, ty, sym_param, pick, is_check) in entries {
        let e = || Error::builder(name);
        let function = module.add_function(name, ty, None);
        let b = context.create_builder();
        b.position_at_end(context.append_basic_block(function, "entry"));
        let symbols = param_ptr(function, sym_param)?;
        // SAFETY: the runtime passes one value per symbol; `symbol` is one of them.
        let at = unsafe {
            b.build_in_bounds_gep(i64t, symbols, &[i64t.const_int(symbol as u64, false)], "s")
                .map_err(e())?
        };
        let value = b
            .build_load(i64t, at, "value")
            .map_err(e())?
            .into_int_value();
        let args: Vec<inkwell::values::BasicMetadataValueEnum> =
            function.get_param_iter().map(|p| p.into()).collect();
        // A chain of comparisons: form k below bound k, the last form after them all.
        for (k, form) in forms.iter().enumerate() {
            let call = context.append_basic_block(function, &format!("form{k}"));
            let next = match bounds.get(k) {
                Some(&bound) => {
                    let next = context.append_basic_block(function, &format!("above{k}"));
                    let below = b
                        .build_int_compare(
                            IntPredicate::SLT,
                            value,
                            i64t.const_int(bound as u64, true),
                            "below",
                        )
                        .map_err(e())?;
                    b.build_conditional_branch(below, call, next).map_err(e())?;
                    Some(next)
                }
                None => {
                    b.build_unconditional_branch(call).map_err(e())?;
                    None
                }
            };
            b.position_at_end(call);
            emit_form_call(
                &b,
                pick(form),
                &args,
                is_check.then_some(check_offsets[k]),
                name,
            )?;
            if let Some(next) = next {
                b.position_at_end(next);
            }
        }
        made.push(function);
    }
    Ok(EntryPoints {
        run: made[0],
        output_dims: made[1],
        arena_bytes: made[2],
        check_sizes: made[3],
    })
}

/// Calls a form's `target` with the dispatcher's arguments and returns its result; a
/// `check_sizes` result that names a failing check (non-negative) is moved by `offset`.
fn emit_form_call<'ctx>(
    b: &inkwell::builder::Builder<'ctx>,
    target: FunctionValue<'ctx>,
    args: &[inkwell::values::BasicMetadataValueEnum<'ctx>],
    offset: Option<u32>,
    name: &str,
) -> Result<()> {
    let e = || Error::builder(name);
    let result = b
        .build_call(target, args, "r")
        .map_err(e())?
        .try_as_basic_value()
        .basic();
    match (result, offset) {
        (None, _) => {
            b.build_return(None).map_err(e())?;
        }
        (Some(r), None) => {
            b.build_return(Some(&r)).map_err(e())?;
        }
        (Some(r), Some(offset)) => {
            let r = r.into_int_value();
            let t = r.get_type();
            let failed = b
                .build_int_compare(IntPredicate::SGE, r, t.const_zero(), "failed")
                .map_err(e())?;
            let moved = b
                .build_int_add(r, t.const_int(u64::from(offset), false), "moved")
                .map_err(e())?;
            let r = b.build_select(failed, moved, r, "k").map_err(e())?;
            b.build_return(Some(&r)).map_err(e())?;
        }
    }
    Ok(())
}

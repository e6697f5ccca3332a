//! Padding elimination's moves: `pack` (the real tokens' rows of `[b, s, r..]`, stacked into
//! `[T, r..]`) and `unpack` (them scattered back, zeros at the padding).
//!
//! Both split by sequence (a row per `i` of the mask `[b, s]`): a task finds where its first
//! sequence's tokens start by counting the mask's nonzero entries before it (`b * s` loads,
//! small next to the rows it copies), then walks its sequences' positions, copying each real
//! token's row whole. The task of sequence 0 of `pack` also counts the whole mask and stores
//! the count as the token symbol `T` in the run's symbols, which every later step reads (the
//! run's steps are ordered by the pool's join, and nothing before the pack uses `T`).

use inkwell::values::{IntValue, PointerValue};
use inkwell::IntPredicate;
use tcc_ir::{DType, Graph};

use super::{product, unsupported, Ctx, Parallel};
use crate::error::Result;
use crate::lower::scalar::{self, load};
use crate::lower::schedule::Step;

/// The number of nonzero mask entries in `[from, to)`.
pub(super) fn count<'ctx>(
    c: &Ctx<'_, 'ctx>,
    mask: PointerValue<'ctx>,
    dtype: DType,
    from: IntValue<'ctx>,
    to: IntValue<'ctx>,
) -> Result<IntValue<'ctx>> {
    let n = c.var(c.kb.i64_const(0).into())?;
    c.for_range(from, to, "cnt", |c, p| {
        let real = is_real(c, mask, dtype, p)?;
        let one = c
            .b()
            .build_int_z_extend(real, c.kb.context().i64_type(), "one")
            .map_err(c.kb.err())?;
        let v = c.get(n, c.kb.i64_const(0).into())?.into_int_value();
        c.set(n, c.add(v, one)?.into())
    })?;
    Ok(c.get(n, c.kb.i64_const(0).into())?.into_int_value())
}

/// Whether mask entry `p` is nonzero (an `i1`).
fn is_real<'ctx>(
    c: &Ctx<'_, 'ctx>,
    mask: PointerValue<'ctx>,
    dtype: DType,
    p: IntValue<'ctx>,
) -> Result<IntValue<'ctx>> {
    let v = load(&c.kb, dtype, mask, p)?.into_int_value();
    c.b()
        .build_int_compare(IntPredicate::NE, v, v.get_type().const_zero(), "real")
        .map_err(c.kb.err())
}

/// The sizes both kernels use: `(b, s, bytes per row)` and the mask's dtype.
fn sizes<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    padded: tcc_ir::NodeId,
) -> Result<(IntValue<'ctx>, IntValue<'ctx>, IntValue<'ctx>, DType)> {
    let mask = graph.ty(step.inputs[1]);
    if !(mask.dtype == DType::Bool || mask.dtype.is_int()) || mask.rank() != 2 {
        return Err(unsupported(
            graph,
            step,
            "the mask must be [b, s] of bool or integers",
        ));
    }
    let ty = graph.ty(padded);
    let row = product(&ty.shape.dims()[2..]);
    let bytes = c.mul(c.dim(&row)?, c.kb.i64_const(ty.dtype.size_bytes() as i64))?;
    let (b, s) = (c.dim(&mask.shape.dims()[0])?, c.dim(&mask.shape.dims()[1])?);
    Ok((b, s, bytes, mask.dtype))
}

/// `Op::Pack`: writes the token count to symbol `tokens` (its index in the run's symbols).
pub(super) fn pack<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    tokens: usize,
) -> Result<Parallel> {
    let x = step.inputs[0];
    let (b, s, bytes, mdt) = sizes(c, graph, step, x)?;
    let mask = c.inputs[1];
    let zero = c.kb.i64_const(0);
    // The task of sequence 0 publishes the count.
    let first = c
        .b()
        .build_int_compare(IntPredicate::EQ, c.r0, zero, "first")
        .map_err(c.kb.err())?;
    c.if_then(first, |c| {
        let total = count(c, mask, mdt, zero, c.mul(b, s)?)?;
        c.store_symbol(tokens, total)
    })?;
    let t = c.var(count(c, mask, mdt, zero, c.mul(c.r0, s)?)?.into())?;
    c.for_range(c.r0, c.r1, "seq", |c, i| {
        c.for_range(zero, s, "pos", |c, j| {
            let p = c.add(c.mul(i, s)?, j)?;
            let real = is_real(c, mask, mdt, p)?;
            c.if_then(real, |c| {
                let k = c.get(t, zero.into())?.into_int_value();
                let src = scalar::element_ptr(&c.kb, DType::U8, c.inputs[0], c.mul(p, bytes)?)?;
                let dst = scalar::element_ptr(&c.kb, DType::U8, c.dest, c.mul(k, bytes)?)?;
                c.b()
                    .build_memcpy(dst, 1, src, 1, bytes)
                    .map_err(c.kb.err())?;
                c.set(t, c.add(k, c.kb.i64_const(1))?.into())
            })
        })
    })?;
    let ty = graph.ty(x);
    Ok(Parallel::rows(
        graph.ty(step.inputs[1]).shape.dims()[0].clone(),
        product(&ty.shape.dims()[1..]),
    ))
}

/// `Op::Unpack`. Row `k` of `y` is read only if `y` has it: a `y` of fewer rows than the mask
/// has real tokens (possible only when `y` does not come from a `pack` over the mask) sets
/// the step's error flag, and its missing rows are left 0.
pub(super) fn unpack<'ctx>(c: &Ctx<'_, 'ctx>, graph: &Graph, step: &Step) -> Result<Parallel> {
    let (_, s, bytes, mdt) = sizes(c, graph, step, step.node)?;
    let mask = c.inputs[1];
    let zero = c.kb.i64_const(0);
    let y_rows = c.dim(&graph.ty(step.inputs[0]).shape.dims()[0])?;
    let t = c.var(count(c, mask, mdt, zero, c.mul(c.r0, s)?)?.into())?;
    let byte0 = c.kb.context().i8_type().const_zero();
    c.for_range(c.r0, c.r1, "seq", |c, i| {
        c.for_range(zero, s, "pos", |c, j| {
            let p = c.add(c.mul(i, s)?, j)?;
            let dst = scalar::element_ptr(&c.kb, DType::U8, c.dest, c.mul(p, bytes)?)?;
            let real = is_real(c, mask, mdt, p)?;
            let copy = c.kb.append_block("copy");
            let fill = c.kb.append_block("fill");
            let done = c.kb.append_block("done");
            c.b()
                .build_conditional_branch(real, copy, fill)
                .map_err(c.kb.err())?;
            c.b().position_at_end(copy);
            let k = c.get(t, zero.into())?.into_int_value();
            let have = c
                .b()
                .build_int_compare(IntPredicate::SLT, k, y_rows, "have")
                .map_err(c.kb.err())?;
            let read = c.kb.append_block("read");
            c.b()
                .build_conditional_branch(have, read, fill)
                .map_err(c.kb.err())?;
            c.b().position_at_end(read);
            let src = scalar::element_ptr(&c.kb, DType::U8, c.inputs[0], c.mul(k, bytes)?)?;
            c.b()
                .build_memcpy(dst, 1, src, 1, bytes)
                .map_err(c.kb.err())?;
            c.set(t, c.add(k, c.kb.i64_const(1))?.into())?;
            c.b().build_unconditional_branch(done).map_err(c.kb.err())?;
            c.b().position_at_end(fill);
            // A real token without a row of y: an error (the fill keeps the output defined).
            let missing = c
                .b()
                .build_and(
                    real,
                    c.b()
                        .build_int_compare(
                            IntPredicate::SGE,
                            c.get(t, zero.into())?.into_int_value(),
                            y_rows,
                            "past",
                        )
                        .map_err(c.kb.err())?,
                    "missing",
                )
                .map_err(c.kb.err())?;
            c.if_then(missing, |c| c.set_error())?;
            c.b()
                .build_memset(dst, 1, byte0, bytes)
                .map_err(c.kb.err())?;
            c.b().build_unconditional_branch(done).map_err(c.kb.err())?;
            c.b().position_at_end(done);
            Ok(())
        })
    })?;
    let ty = graph.ty(step.node);
    Ok(Parallel::rows(
        ty.shape.dims()[0].clone(),
        product(&ty.shape.dims()[1..]),
    ))
}

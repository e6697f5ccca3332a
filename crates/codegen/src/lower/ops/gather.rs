//! Gathers by runtime indices (`gather`, `gather_elements`, `gather_nd`): every index is
//! resolved (negative counts from the end) and checked, and one out of range sets the step's
//! error flag instead of reading out of bounds.

use inkwell::values::IntValue;
use inkwell::IntPredicate;
use tcc_ir::Graph;

use super::{lines, product, split_axis, strides, unsupported, Ctx, Parallel};
use crate::error::Result;
use crate::lower::scalar::{self, load, store};
use crate::lower::schedule::Step;

/// The resolved index `i` (negative counts from the end) on an axis of size `d`, and whether
/// it is in range.
fn resolve<'ctx>(
    c: &Ctx<'_, 'ctx>,
    i: IntValue<'ctx>,
    d: IntValue<'ctx>,
) -> Result<(IntValue<'ctx>, IntValue<'ctx>)> {
    let b = c.b();
    let zero = c.kb.i64_const(0);
    let neg = b
        .build_int_compare(IntPredicate::SLT, i, zero, "neg")
        .map_err(c.kb.err())?;
    let plus = c.add(i, d)?;
    let j = b
        .build_select(neg, plus, i, "j")
        .map_err(c.kb.err())?
        .into_int_value();
    let ge = b
        .build_int_compare(IntPredicate::SGE, j, zero, "ge")
        .map_err(c.kb.err())?;
    let lt = b
        .build_int_compare(IntPredicate::SLT, j, d, "lt")
        .map_err(c.kb.err())?;
    let ok = b.build_and(ge, lt, "ok").map_err(c.kb.err())?;
    Ok((j, ok))
}

/// `Op::Gather` along `axis`: a row per (outer position, index), copied whole.
pub(super) fn gather<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    axis: usize,
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let dtype = out_ty.dtype;
    let in_ty = |k: usize| graph.ty(step.inputs[k]);
    let dshape = &in_ty(0).shape;
    let ity = in_ty(1);
    let (_, d, inner) = split_axis(dshape, axis);
    let nidx = ity.shape.numel();
    let rows = product(&dshape.dims()[..axis]).mul(&nidx);
    let (dv, innerv, nidxv) = (c.dim(&d)?, c.dim(&inner)?, c.dim(&nidx)?);
    let idt = ity.dtype;
    c.for_range(c.r0, c.r1, "row", |c, r| {
        let o = c.div(r, nidxv)?;
        let q = c.rem(r, nidxv)?;
        let i = load(&c.kb, idt, c.inputs[1], q)?.into_int_value();
        let (j, ok) = resolve(c, i, dv)?;
        let bad = c.b().build_not(ok, "bad").map_err(c.kb.err())?;
        c.if_then(bad, |c| c.set_error())?;
        c.if_then(ok, |c| {
            let src = c.mul(c.add(c.mul(o, dv)?, j)?, innerv)?;
            let dst = c.mul(r, innerv)?;
            let bytes = c.mul(innerv, c.kb.i64_const(dtype.size_bytes() as i64))?;
            let s = scalar::element_ptr(&c.kb, dtype, c.inputs[0], src)?;
            let t = scalar::element_ptr(&c.kb, dtype, c.dest, dst)?;
            c.b().build_memcpy(t, 1, s, 1, bytes).map_err(c.kb.err())?;
            Ok(())
        })
    })?;
    Ok(Parallel::rows(rows, inner))
}

/// `Op::GatherElements` along `axis`: each element of the result from the input at its own
/// index, with the index tensor's value on `axis`.
pub(super) fn gather_elements<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    axis: usize,
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let dtype = out_ty.dtype;
    let zero = c.kb.i64_const(0);
    let in_ty = |k: usize| graph.ty(step.inputs[k]);
    let dshape = &in_ty(0).shape;
    let ity = in_ty(1);
    let dst = c.dim_list(&strides(dshape))?;
    let dd = c.dim(&dshape.dims()[axis])?;
    let dims = c.dim_list(out_shape.dims())?;
    let os = c.dim_list(&strides(out_shape))?;
    let acc = vec![(zero, os)];
    c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, idx| {
        let i = load(&c.kb, ity.dtype, c.inputs[1], offs[0])?.into_int_value();
        let (j, ok) = resolve(c, i, dd)?;
        let bad = c.b().build_not(ok, "bad").map_err(c.kb.err())?;
        c.if_then(bad, |c| c.set_error())?;
        c.if_then(ok, |c| {
            let mut off = c.kb.i64_const(0);
            for a in 0..idx.len() {
                let x = if a == axis { j } else { idx[a] };
                off = c.add(off, c.mul(x, dst[a])?)?;
            }
            let v = load(&c.kb, dtype, c.inputs[0], off)?;
            store(&c.kb, dtype, c.dest, offs[0], v)
        })
    })?;
    Ok(lines(out_shape))
}

/// `Op::GatherNd` with `batch_dims` leading batch axes: a row per index tuple, its slice
/// copied whole.
pub(super) fn gather_nd<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    batch_dims: usize,
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let dtype = out_ty.dtype;
    let zero = c.kb.i64_const(0);
    let in_ty = |k: usize| graph.ty(step.inputs[k]);
    let dshape = &in_ty(0).shape;
    let ishape = &in_ty(1).shape;
    let ir = ishape.rank();
    let q = ishape.dims()[ir - 1]
        .as_const()
        .ok_or_else(|| unsupported(graph, step, "the index depth is symbolic"))?
        as usize;
    let b = batch_dims;
    let rows = product(&ishape.dims()[..ir - 1]);
    let per_batch = product(&ishape.dims()[b..ir - 1]);
    let slice = product(&dshape.dims()[b + q..]);
    let batch_size = product(&dshape.dims()[b..]);
    let ds = c.dim_list(&strides(dshape))?;
    let ddims = c.dim_list(dshape.dims())?;
    let (pbv, slv, bsv) = (c.dim(&per_batch)?, c.dim(&slice)?, c.dim(&batch_size)?);
    let idt = in_ty(1).dtype;
    let qv = c.kb.i64_const(q as i64);
    c.for_range(c.r0, c.r1, "row", |c, r| {
        let bi = c.div(r, pbv)?;
        let okv = c.var(c.kb.context().bool_type().const_int(1, false).into())?;
        let mut off = c.mul(bi, bsv)?;
        for t in 0..q {
            let at = c.add(c.mul(r, qv)?, c.kb.i64_const(t as i64))?;
            let i = load(&c.kb, idt, c.inputs[1], at)?.into_int_value();
            let (j, ok) = resolve(c, i, ddims[b + t])?;
            let prev = c.get(okv, ok.into())?.into_int_value();
            let both = c.b().build_and(prev, ok, "ok").map_err(c.kb.err())?;
            c.set(okv, both.into())?;
            let jj = c
                .b()
                .build_select(ok, j, zero, "jj")
                .map_err(c.kb.err())?
                .into_int_value();
            off = c.add(off, c.mul(jj, ds[b + t])?)?;
        }
        let ok = c
            .get(okv, c.kb.context().bool_type().const_zero().into())?
            .into_int_value();
        let bad = c.b().build_not(ok, "bad").map_err(c.kb.err())?;
        c.if_then(bad, |c| c.set_error())?;
        c.if_then(ok, |c| {
            let s = scalar::element_ptr(&c.kb, dtype, c.inputs[0], off)?;
            let t = scalar::element_ptr(&c.kb, dtype, c.dest, c.mul(r, slv)?)?;
            let bytes = c.mul(slv, c.kb.i64_const(dtype.size_bytes() as i64))?;
            c.b().build_memcpy(t, 1, s, 1, bytes).map_err(c.kb.err())?;
            Ok(())
        })
    })?;
    Ok(Parallel::rows(rows, slice))
}

//! Ops whose values are sizes or index sequences computed from dims: `shape_of`, `dims` and
//! `range`.

use tcc_ir::{DType, Dim, Graph};

use super::{lines, serial, Ctx, Parallel};
use crate::error::Result;
use crate::lower::scalar::{self, store};
use crate::lower::schedule::Step;

/// `Op::Range`: `start + i * delta` for each index `i` of the result.
pub(super) fn range<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    start: &Dim,
    delta: i64,
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let dtype = out_ty.dtype;
    let zero = c.kb.i64_const(0);
    let one = c.kb.i64_const(1);
    let dims = c.dim_list(out_shape.dims())?;
    let acc = vec![(zero, vec![one])];
    let s = c.dim(start)?;
    let d = c.kb.i64_const(delta);
    c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, idx| {
        let v = c.add(s, c.mul(idx[0], d)?)?;
        let v = scalar::cast(&c.kb, DType::I64, dtype, v.into())?;
        store(&c.kb, dtype, c.dest, offs[0], v)
    })?;
    Ok(lines(out_shape))
}

/// `Op::Dims`: the values of `values`, in one task.
pub(super) fn dims<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    values: &[Dim],
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let dtype = out_ty.dtype;
    for (k, d) in values.iter().enumerate() {
        let v = c.dim(d)?;
        let v = scalar::cast(&c.kb, DType::I64, dtype, v.into())?;
        store(&c.kb, dtype, c.dest, c.kb.i64_const(k as i64), v)?;
    }
    Ok(serial(Dim::constant(values.len() as i64)))
}

/// `Op::ShapeOf`: the input's dims `start..end`, in one task.
pub(super) fn shape_of<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    start: usize,
    end: usize,
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let dtype = out_ty.dtype;
    let in_ty = |k: usize| graph.ty(step.inputs[k]);
    let shape = &in_ty(0).shape;
    for (k, a) in (start..end).enumerate() {
        let v = c.dim(&shape.dims()[a])?;
        let v = scalar::cast(&c.kb, DType::I64, dtype, v.into())?;
        store(&c.kb, dtype, c.dest, c.kb.i64_const(k as i64), v)?;
    }
    Ok(serial(Dim::constant(1)))
}

//! Convolution (`conv`), N-dimensional, grouped, strided and dilated, in a scalar loop per
//! output channel.

use inkwell::IntPredicate;
use tcc_ir::{Dim, Graph};

use super::{product, strides, Ctx, Parallel};
use crate::error::Result;
use crate::lower::scalar::{self, load, store};
use crate::lower::schedule::Step;

/// `Op::Conv`: a row per (image, output channel); each output position sums its taps over the
/// group's input channels in the dtype, taps in the padding skipped.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    st: &[usize],
    pads_begin: &[Dim],
    dil: &[usize],
    group: usize,
) -> Result<Parallel> {
    let out = &graph.ty(step.node).shape;
    let dtype = graph.ty(step.node).dtype;
    let xs = &graph.ty(step.inputs[0]).shape;
    let ws = &graph.ty(step.inputs[1]).shape;
    let sp = out.rank() - 2;
    let xd = c.dim_list(xs.dims())?;
    let wd = c.dim_list(ws.dims())?;
    let od = c.dim_list(out.dims())?;
    let xst = c.dim_list(&strides(xs))?;
    let wst = c.dim_list(&strides(ws))?;
    let pb = c.dim_list(pads_begin)?;
    let out_sp = product(&out.dims()[2..]);
    let k_sp = product(&ws.dims()[2..]);
    let (osv, ksv) = (c.dim(&out_sp)?, c.dim(&k_sp)?);
    let m = c.dim(&out.dims()[1])?;
    let cg = wd[1];
    let mg = c.div(m, c.kb.i64_const(group as i64))?;
    let zero = c.kb.i64_const(0);
    c.for_range(c.r0, c.r1, "row", |c, row| {
        let ni = c.div(row, m)?;
        let o = c.rem(row, m)?;
        let g = c.div(o, mg)?;
        let cbase = c.mul(g, cg)?;
        c.for_range(zero, osv, "pos", |c, p| {
            let opos = c.unflatten(p, &od[2..])?;
            let acc = c.var(scalar::zero(&c.kb, dtype))?;
            c.for_range(zero, cg, "ci", |c, ci| {
                c.for_range(zero, ksv, "tap", |c, t| {
                    let kpos = c.unflatten(t, &wd[2..])?;
                    let mut ok = c.kb.context().bool_type().const_int(1, false);
                    let mut xoff = c.add(c.mul(ni, xst[0])?, c.mul(c.add(cbase, ci)?, xst[1])?)?;
                    for a in 0..sp {
                        let pos = c.add(
                            c.mul(opos[a], c.kb.i64_const(st[a] as i64))?,
                            c.mul(kpos[a], c.kb.i64_const(dil[a] as i64))?,
                        )?;
                        let pos = c.b().build_int_sub(pos, pb[a], "pos").map_err(c.kb.err())?;
                        let ge = c
                            .b()
                            .build_int_compare(IntPredicate::SGE, pos, zero, "ge")
                            .map_err(c.kb.err())?;
                        let lt = c
                            .b()
                            .build_int_compare(IntPredicate::SLT, pos, xd[2 + a], "lt")
                            .map_err(c.kb.err())?;
                        ok = c
                            .b()
                            .build_and(ok, c.b().build_and(ge, lt, "in").map_err(c.kb.err())?, "ok")
                            .map_err(c.kb.err())?;
                        xoff = c.add(xoff, c.mul(pos, xst[2 + a])?)?;
                    }
                    c.if_then(ok, |c| {
                        let woff = c.add(c.add(c.mul(o, wst[0])?, c.mul(ci, wst[1])?)?, t)?;
                        let x = load(&c.kb, dtype, c.inputs[0], xoff)?;
                        let w = load(&c.kb, dtype, c.inputs[1], woff)?;
                        let pr = scalar::binary(c.m, &c.kb, tcc_ir::BinaryOp::Mul, dtype, x, w)?;
                        let a = c.get(acc, pr)?;
                        c.set(
                            acc,
                            scalar::binary(c.m, &c.kb, tcc_ir::BinaryOp::Add, dtype, a, pr)?,
                        )
                    })
                })
            })?;
            let v = c.get(acc, scalar::zero(&c.kb, dtype))?;
            store(&c.kb, dtype, c.dest, c.add(c.mul(row, osv)?, p)?, v)
        })
    })?;
    let _ = wst;
    Ok(Parallel::rows(
        out.dims()[0].mul(&out.dims()[1]),
        out_sp.mul(&k_sp).mul(&ws.dims()[1]),
    ))
}

//! Integer matrix products (`matmul_integer`) of dynamic int8 quantisation: the vector kernel
//! of [`crate::kernels::int8`] for a `u8` `A` by constant `i8` weights, a scalar loop for every
//! other form; both honour `saturate_pairs`.

use inkwell::values::IntValue;
use inkwell::IntPredicate;
use tcc_ir::{DType, Dim, Graph};

use super::matmul::matmul_geometry;
use super::{bcast_strides, product, Ctx, Parallel};
use crate::error::Result;
use crate::lower::scalar::{self, load, store};
use crate::lower::schedule::Step;
use crate::target::Target;

/// `Op::MatMulInteger`: the vector kernel when the step has its form, else the scalar loop.
pub(super) fn matmul_integer(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    target: &Target,
    saturate_pairs: bool,
) -> Result<Parallel> {
    match matmul_integer_const_b(c, graph, step, target, saturate_pairs)? {
        Some(parallel) => Ok(parallel),
        None => matmul_integer_scalar(c, graph, step, saturate_pairs),
    }
}

/// `MatMulInteger` of a `u8` `A` (rows contiguous) by a constant 2-D `i8` `B`, with one `A`
/// zero point and constant `B` zero points (one, or one per column), on a target with the
/// int8 dot-product instructions: the vector kernel of [`crate::kernels::int8`]. `None` if
/// the step is not of that form.
fn matmul_integer_const_b(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    target: &Target,
    saturate: bool,
) -> Result<Option<Parallel>> {
    use crate::kernels::int8;
    let Some(layout) = int8::Int8Layout::for_target(target) else {
        return Ok(None);
    };
    let ty = |i: usize| graph.ty(step.inputs[i]);
    let out = &graph.ty(step.node).shape;
    let r = out.rank();
    let Some(bt) = graph.const_value(step.inputs[1]) else {
        return Ok(None);
    };
    let (Some(b), Some(zb)) = (
        bt.as_slice::<i8>(),
        graph
            .const_value(step.inputs[3])
            .and_then(|z| z.as_slice::<i8>().map(|v| v.to_vec())),
    ) else {
        return Ok(None);
    };
    if bt.shape().len() != 2 || ty(0).dtype != DType::U8 || ty(2).dtype != DType::U8 {
        return Ok(None);
    }
    let (k, n) = (bt.shape()[0], bt.shape()[1]);
    let zb_shape = &ty(3).shape;
    let zb_ok = zb.len() == 1
        || (zb.len() == n && zb_shape.dims().last().and_then(|d| d.as_const()) == Some(n as i64));
    // A must be [batch.., m, k] exactly, so its rows are k bytes apart.
    let mut a_dims = out.dims().to_vec();
    a_dims[r - 1] = Dim::constant(k as i64);
    if !zb_ok || ty(2).shape.numel().as_const() != Some(1) || ty(0).shape.dims() != a_dims {
        return Ok(None);
    }
    let name = format!("{}.int8", c.kb.function().get_name().to_string_lossy());
    let f = int8::emit_matmul_u8i8_const_b(c.m, target, &name, &layout, b, k, n, &zb, saturate)?;
    let za = load(&c.kb, DType::U8, c.inputs[2], c.kb.i64_const(0))?.into_int_value();
    let za = c
        .b()
        .build_int_z_extend(za, c.kb.context().i64_type(), "za")
        .map_err(c.kb.err())?;
    c.b()
        .build_call(
            f,
            &[
                c.inputs[0].into(),
                c.kb.i64_const(k as i64).into(),
                za.into(),
                c.dest.into(),
                c.kb.i64_const(n as i64).into(),
                c.r0.into(),
                c.r1.into(),
            ],
            "",
        )
        .map_err(c.kb.err())?;
    Ok(Some(Parallel {
        rows: product(&out.dims()[..r - 1]),
        work: Dim::constant((k * n) as i64),
        align: i64::from(layout.mr),
        cols: 1,
        col_max_rows: 0,
    }))
}

/// `MatMulInteger` of any operands, one element of the result at a time: the products summed in
/// wrapping `i32`, in pairs that saturate to `i16` with `saturate` (as `vpmaddubsw`), the zero
/// points applied after the sums.
fn matmul_integer_scalar<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    saturate: bool,
) -> Result<Parallel> {
    let out = &graph.ty(step.node).shape;
    let r = out.rank();
    let (m, n, k, batch) = matmul_geometry(graph, step);
    let ty = |i: usize| graph.ty(step.inputs[i]);
    let a_s = c.dim_list(&bcast_strides(&ty(0).shape, r))?;
    let b_s = c.dim_list(&bcast_strides(&ty(1).shape, r))?;
    let az_s = c.dim_list(&bcast_strides(&ty(2).shape, r))?;
    let bz_s = c.dim_list(&bcast_strides(&ty(3).shape, r))?;
    let (mv, nv, kv) = (c.dim(&m)?, c.dim(&n)?, c.dim(&k)?);
    let bd = c.dim_list(&batch)?;
    let zero = c.kb.i64_const(0);
    let one = c.kb.i64_const(1);
    let b = c.b();
    let i32w = |v: IntValue<'ctx>| scalar::wrap(&c.kb, DType::I32, v);
    let _ = b;
    c.for_range(c.r0, c.r1, "row", |c, row| {
        let bi = c.div(row, mv)?;
        let i = c.rem(row, mv)?;
        let idx = c.unflatten(bi, &bd)?;
        let a_base = c.add(c.offset(zero, &idx, &a_s[..r - 2])?, c.mul(i, a_s[r - 2])?)?;
        let b_base = c.offset(zero, &idx, &b_s[..r - 2])?;
        let az_off = c.add(
            c.offset(zero, &idx, &az_s[..r - 2])?,
            c.mul(i, az_s[r - 2])?,
        )?;
        let za = load(&c.kb, ty(2).dtype, c.inputs[2], az_off)?.into_int_value();
        let bz_base = c.offset(zero, &idx, &bz_s[..r - 2])?;
        c.for_range(zero, nv, "j", |c, j| {
            let zb_off = c.add(bz_base, c.mul(j, bz_s[r - 1])?)?;
            let zb = load(&c.kb, ty(3).dtype, c.inputs[3], zb_off)?.into_int_value();
            let b_col = c.add(b_base, c.mul(j, b_s[r - 1])?)?;
            let acc = c.var(zero.into())?;
            let asum = c.var(zero.into())?;
            let bsum = c.var(zero.into())?;
            let pair = c.var(zero.into())?;
            c.for_range(zero, kv, "k", |c, kk| {
                let x = load(
                    &c.kb,
                    ty(0).dtype,
                    c.inputs[0],
                    c.add(a_base, c.mul(kk, a_s[r - 1])?)?,
                )?
                .into_int_value();
                let y = load(
                    &c.kb,
                    ty(1).dtype,
                    c.inputs[1],
                    c.add(b_col, c.mul(kk, b_s[r - 2])?)?,
                )?
                .into_int_value();
                let bb = c.b();
                if saturate {
                    let p = bb.build_int_mul(x, y, "p").map_err(c.kb.err())?;
                    let pr = c.get(pair, zero.into())?.into_int_value();
                    let pr = bb.build_int_add(pr, p, "pr").map_err(c.kb.err())?;
                    let odd = bb.build_and(kk, one, "odd").map_err(c.kb.err())?;
                    let last = bb
                        .build_int_compare(IntPredicate::EQ, c.add(kk, one)?, kv, "last")
                        .map_err(c.kb.err())?;
                    let is_odd = bb
                        .build_int_compare(IntPredicate::EQ, odd, one, "o")
                        .map_err(c.kb.err())?;
                    let flush = bb.build_or(is_odd, last, "f").map_err(c.kb.err())?;
                    let lo = c.kb.i64_const(i64::from(i16::MIN));
                    let hi = c.kb.i64_const(i64::from(i16::MAX));
                    let t = bb
                        .build_int_compare(IntPredicate::SLT, pr, lo, "l")
                        .map_err(c.kb.err())?;
                    let s = bb
                        .build_select(t, lo, pr, "s")
                        .map_err(c.kb.err())?
                        .into_int_value();
                    let t = bb
                        .build_int_compare(IntPredicate::SGT, s, hi, "h")
                        .map_err(c.kb.err())?;
                    let s = bb
                        .build_select(t, hi, s, "s")
                        .map_err(c.kb.err())?
                        .into_int_value();
                    let a0 = c.get(acc, zero.into())?.into_int_value();
                    let a1 = i32w(bb.build_int_add(a0, s, "a1").map_err(c.kb.err())?)?;
                    let na = bb.build_select(flush, a1, a0, "na").map_err(c.kb.err())?;
                    c.set(acc, na)?;
                    let np = bb.build_select(flush, zero, pr, "np").map_err(c.kb.err())?;
                    c.set(pair, np)?;
                    let s0 = c.get(asum, zero.into())?.into_int_value();
                    c.set(asum, i32w(c.add(s0, x)?)?.into())?;
                    let s1 = c.get(bsum, zero.into())?.into_int_value();
                    c.set(bsum, i32w(c.add(s1, y)?)?.into())?;
                } else {
                    let dx = bb.build_int_sub(x, za, "dx").map_err(c.kb.err())?;
                    let dy = bb.build_int_sub(y, zb, "dy").map_err(c.kb.err())?;
                    let p = i32w(bb.build_int_mul(dx, dy, "p").map_err(c.kb.err())?)?;
                    let a0 = c.get(acc, zero.into())?.into_int_value();
                    c.set(acc, i32w(c.add(a0, p)?)?.into())?;
                }
                Ok(())
            })?;
            let mut v = c.get(acc, zero.into())?.into_int_value();
            if saturate {
                let bb = c.b();
                let asv = c.get(asum, zero.into())?.into_int_value();
                let bsv = c.get(bsum, zero.into())?.into_int_value();
                let t1 = i32w(bb.build_int_mul(za, bsv, "t1").map_err(c.kb.err())?)?;
                let t2 = i32w(bb.build_int_mul(zb, asv, "t2").map_err(c.kb.err())?)?;
                let t3 = i32w(
                    bb.build_int_mul(
                        i32w(bb.build_int_mul(i32w(kv)?, za, "k").map_err(c.kb.err())?)?,
                        zb,
                        "t3",
                    )
                    .map_err(c.kb.err())?,
                )?;
                v = i32w(bb.build_int_sub(v, t1, "v1").map_err(c.kb.err())?)?;
                v = i32w(bb.build_int_sub(v, t2, "v2").map_err(c.kb.err())?)?;
                v = i32w(bb.build_int_add(v, t3, "v3").map_err(c.kb.err())?)?;
            }
            store(
                &c.kb,
                DType::I32,
                c.dest,
                c.add(c.mul(row, nv)?, j)?,
                v.into(),
            )
        })
    })?;
    Ok(Parallel::rows(product(&batch).mul(&m), n.mul(&k)))
}

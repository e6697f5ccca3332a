//! Integer matrix products of dynamic int8 quantisation, `matmul_integer` and the fused
//! `qgemm`: the vector kernels of [`crate::kernels::int8`] for a `u8` `A` (quantised in the
//! kernel for `qgemm`) by constant `i8` weights, a scalar loop for every other form; all
//! honour `saturate_pairs`.

use inkwell::values::{BasicValueEnum, IntValue};
use inkwell::IntPredicate;
use tcc_ir::fused::{GELU_TANH_CUBIC, SQRT_2, SQRT_2_OVER_PI};
use tcc_ir::{Activation, BinaryOp, DType, Dim, Graph, UnaryOp};

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

/// `Op::QGemm`: the vector kernel when the step has its form ([`QGemmForm`]), else the scalar
/// loop of the expansion's arithmetic.
pub(super) fn qgemm(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    target: &Target,
    activation: Activation,
    bias: bool,
    saturate: bool,
) -> Result<Parallel> {
    match QGemmForm::of(graph, step, target, bias) {
        Some(form) => qgemm_const_b(c, target, &form, activation, saturate),
        None => qgemm_scalar(c, graph, step, activation, bias, saturate),
    }
}

/// The scratch of a `qgemm` step that runs the vector kernel: its rows of `A` quantised, each
/// padded to [`crate::kernels::int8::Int8Layout::qgemm_row_bytes`]. A task of a split by rows
/// quantises and reads only its own rows (one of a split by columns uses its stack).
pub(super) fn qgemm_scratch_bytes(
    graph: &Graph,
    step: &Step,
    target: &Target,
    bias: bool,
    saturate: bool,
) -> Option<Dim> {
    let form = QGemmForm::of(graph, step, target, bias)?;
    let row = form.layout.qgemm_row_bytes(form.k, saturate);
    Some(form.rows.mul(&Dim::constant(row as i64)))
}

/// A `qgemm` step of the vector kernel's form: `a` is f32 `[.., m, k]` with the result's
/// leading dims (its rows contiguous, `k` apart), `w` a constant 2-D `i8` `[k, n]`, `sw` and
/// the bias constants of one value or one per column, `sa` and `za` of one shape, one value
/// for the whole tensor or one per row of `a` (`[.., m, 1]` with `a`'s leading dims), and the
/// target has the int8 instructions.
struct QGemmForm<'g> {
    layout: crate::kernels::int8::Int8Layout,
    w: &'g [i8],
    k: usize,
    n: usize,
    sw: Vec<f32>,
    bias: Option<Vec<f32>>,
    /// Whether `sa` and `za` have one value per row (else one in all).
    per_row: bool,
    /// The rows of `a` (the product of its leading dims).
    rows: Dim,
}

impl<'g> QGemmForm<'g> {
    fn of(graph: &'g Graph, step: &Step, target: &Target, bias: bool) -> Option<QGemmForm<'g>> {
        let layout = crate::kernels::int8::Int8Layout::for_qgemm(target)?;
        let ty = |i: usize| graph.ty(step.inputs[i]);
        let out = &graph.ty(step.node).shape;
        let r = out.rank();
        let wt = graph.const_value(step.inputs[3])?;
        let w = wt.as_slice::<i8>()?;
        if wt.shape().len() != 2 || r < 2 {
            return None;
        }
        let (k, n) = (wt.shape()[0], wt.shape()[1]);
        if n == 0 {
            return None;
        }
        // One value, or one per column (`[.., n]` with ones before).
        let per_column = |i: usize| -> Option<Vec<f32>> {
            let t = graph.const_value(step.inputs[i])?;
            let v = t.as_slice::<f32>()?;
            let dims = t.shape();
            match v.len() {
                1 => Some(vec![v[0]; n]),
                len if len == n && dims.last() == Some(&n) => Some(v.to_vec()),
                _ => None,
            }
        };
        let sw = per_column(4)?;
        let bias = if bias { Some(per_column(5)?) } else { None };
        // A is [rows.., k] exactly, and the result [rows.., n]: no broadcast adds rows.
        let mut a_dims = out.dims().to_vec();
        a_dims[r - 1] = Dim::constant(k as i64);
        if ty(0).dtype != DType::F32
            || ty(0).shape.dims() != a_dims
            || out.dims()[r - 1].as_const() != Some(n as i64)
            || ty(1).dtype != DType::F32
            || ty(2).dtype != DType::U8
            || ty(1).shape != ty(2).shape
        {
            return None;
        }
        let rows = product(&out.dims()[..r - 1]);
        let sa = &ty(1).shape;
        let per_row = if sa.numel().as_const() == Some(1) {
            false
        } else {
            // [.., m, 1] with a's leading dims, right-aligned (missing axes are ones).
            let mut want = out.dims().to_vec();
            want[r - 1] = Dim::constant(1);
            let pad = r.checked_sub(sa.rank())?;
            let mut have = vec![Dim::constant(1); pad];
            have.extend(sa.dims().iter().cloned());
            if have != want {
                return None;
            }
            true
        };
        Some(QGemmForm {
            layout,
            w,
            k,
            n,
            sw,
            bias,
            per_row,
            rows,
        })
    }
}

/// The vector kernel ([`crate::kernels::int8::emit_qgemm_const_b`]) on the task's rows and
/// panels. Split by rows (chunks of whole tiles), each task quantises its own rows of `A` into
/// the step's scratch, then multiplies them, so the tasks need no barrier. Up to
/// [`QGEMM_COLUMNS_BELOW_TILES`] tiles of rows (too few to keep the threads busy), the steps
/// may split by panels instead, where `k` is short enough: each task then quantises each
/// block of rows on its stack before its panels, so no task reads rows another writes.
fn qgemm_const_b(
    c: &Ctx<'_, '_>,
    target: &Target,
    form: &QGemmForm<'_>,
    activation: Activation,
    saturate: bool,
) -> Result<Parallel> {
    use crate::kernels::int8;
    let name = format!("{}.qgemm", c.kb.function().get_name().to_string_lossy());
    let op = int8::QGemmConst {
        w: form.w,
        k: form.k,
        n: form.n,
        sw: &form.sw,
        bias: form.bias.as_deref(),
        activation,
        saturate,
    };
    let f = int8::emit_qgemm_const_b(c.m, target, &name, &form.layout, &op)?;
    let scratch = c
        .scratch
        .ok_or_else(|| c.kb.internal("the qgemm has no scratch"))?;
    let i64c = |v: i64| c.kb.i64_const(v);
    let panels = form.layout.panels(form.n) as i64;
    let split_columns = form.layout.qgemm_splits_columns(form.k, saturate);
    // Column units are panels where the kernel may split them, else one unit of all of them.
    let (p0, p1) = if split_columns {
        (c.c0, c.c1)
    } else {
        (i64c(0), i64c(panels))
    };
    c.b()
        .build_call(
            f,
            &[
                c.inputs[0].into(),
                i64c(form.k as i64).into(),
                c.inputs[1].into(),
                c.inputs[2].into(),
                i64c(i64::from(form.per_row)).into(),
                c.dest.into(),
                i64c(form.n as i64).into(),
                scratch.into(),
                c.r0.into(),
                c.r1.into(),
                p0.into(),
                p1.into(),
            ],
            "",
        )
        .map_err(c.kb.err())?;
    let mr = i64::from(form.layout.mr);
    Ok(Parallel {
        rows: form.rows.clone(),
        work: Dim::constant((form.k * form.n).max(1) as i64),
        align: mr,
        cols: if split_columns { panels } else { 1 },
        col_max_rows: QGEMM_COLUMNS_BELOW_TILES * mr,
    })
}

/// A `qgemm` splits by columns (each column group quantising all the rows again, per block
/// of rows on its stack) only up to this many row tiles: with more, the row split keeps every
/// thread busy with whole tiles and quantises each row once.
const QGEMM_COLUMNS_BELOW_TILES: i64 = 4;

/// `qgemm` of any operands, one element of the result at a time, as the expansion computes it
/// (`tcc_ir::fused::expand`): each element of `A` quantised with its scale and zero point
/// (every operand read through its broadcast strides in the result's index space, with `k`
/// in place of the last axis for `a`, `sa` and `za` and of the second last for `w`), the
/// integer sum exact or in saturating pairs (as `matmul_integer`'s scalar loop) in wrapping
/// `i32`, then each f32 op of the epilogue rounded in the expansion's order.
fn qgemm_scalar<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    activation: Activation,
    bias: bool,
    saturate: bool,
) -> Result<Parallel> {
    let out = &graph.ty(step.node).shape;
    let r = out.rank();
    let ty = |i: usize| graph.ty(step.inputs[i]);
    let wty = ty(3);
    let k = wty.shape.dims()[wty.rank() - 2].clone();
    let n = out.dims()[r - 1].clone();
    let lead = out.dims()[..r - 1].to_vec();
    let strides = |i: usize| c.dim_list(&bcast_strides(&ty(i).shape, r));
    let (a_s, sa_s, za_s, w_s, sw_s) = (
        strides(0)?,
        strides(1)?,
        strides(2)?,
        strides(3)?,
        strides(4)?,
    );
    let b_s = if bias { Some(strides(5)?) } else { None };
    let (nv, kv) = (c.dim(&n)?, c.dim(&k)?);
    let ld = c.dim_list(&lead)?;
    let zero = c.kb.i64_const(0);
    let one = c.kb.i64_const(1);
    let f32t = c.kb.context().f32_type();
    let fc = |v: f32| -> BasicValueEnum<'ctx> { f32t.const_float(f64::from(v)).into() };
    let bin = |op: BinaryOp, x: BasicValueEnum<'ctx>, y: BasicValueEnum<'ctx>| {
        scalar::binary(c.m, &c.kb, op, DType::F32, x, y)
    };
    let un = |op: UnaryOp, x: BasicValueEnum<'ctx>| scalar::unary(c.m, &c.kb, op, DType::F32, x);
    let i32w = |v: IntValue<'ctx>| scalar::wrap(&c.kb, DType::I32, v);
    c.for_range(c.r0, c.r1, "row", |c, row| {
        let idx = c.unflatten(row, &ld)?;
        // Offsets over the leading axes (batch and row); w's row axis is k's.
        let base = |s: &[IntValue<'ctx>]| c.offset(zero, &idx, &s[..r - 1]);
        let (a_base, sa_base, za_base, sw_base) =
            (base(&a_s)?, base(&sa_s)?, base(&za_s)?, base(&sw_s)?);
        let b_base = b_s.as_deref().map(base).transpose()?;
        let w_base = c.offset(zero, &idx[..r - 2], &w_s[..r - 2])?;
        // The row's zero point as matmul_integer's a_zp (za broadcasts to [.., m, 1]).
        let za = load(&c.kb, DType::U8, c.inputs[2], za_base)?.into_int_value();
        c.for_range(zero, nv, "j", |c, j| {
            let acc = c.var(zero.into())?;
            let bsum = c.var(zero.into())?;
            let pair = c.var(zero.into())?;
            let w_col = c.add(w_base, c.mul(j, w_s[r - 1])?)?;
            c.for_range(zero, kv, "k", |c, kk| {
                let at =
                    |base: IntValue<'ctx>, s: &[IntValue<'ctx>]| c.add(base, c.mul(kk, s[r - 1])?);
                let x = load(&c.kb, DType::F32, c.inputs[0], at(a_base, &a_s)?)?;
                let s = load(&c.kb, DType::F32, c.inputs[1], at(sa_base, &sa_s)?)?;
                let z = load(&c.kb, DType::U8, c.inputs[2], at(za_base, &za_s)?)?;
                // q = u8(min(max(round(x / s) + f32(z), 0), 255)).
                let zf = scalar::cast(&c.kb, DType::U8, DType::F32, z)?;
                let t = un(UnaryOp::Round, bin(BinaryOp::Div, x, s)?)?;
                let t = bin(BinaryOp::Add, t, zf)?;
                let t = bin(BinaryOp::Max, t, fc(0.0))?;
                let t = bin(BinaryOp::Min, t, fc(255.0))?;
                let q = scalar::cast(&c.kb, DType::F32, DType::U8, t)?.into_int_value();
                let y = load(
                    &c.kb,
                    wty.dtype,
                    c.inputs[3],
                    c.add(w_col, c.mul(kk, w_s[r - 2])?)?,
                )?
                .into_int_value();
                let bb = c.b();
                let e = c.kb.err();
                if saturate {
                    // Raw products summed in pairs along k (an odd last one alone), each pair
                    // saturating to i16; the zero point comes off after: - za Σ w.
                    let p = bb.build_int_mul(q, y, "p").map_err(e)?;
                    let pr = c.get(pair, zero.into())?.into_int_value();
                    let pr = c.add(pr, p)?;
                    let odd = c.b().build_and(kk, one, "odd").map_err(c.kb.err())?;
                    let last = c
                        .b()
                        .build_int_compare(IntPredicate::EQ, c.add(kk, one)?, kv, "last")
                        .map_err(c.kb.err())?;
                    let is_odd = c
                        .b()
                        .build_int_compare(IntPredicate::EQ, odd, one, "o")
                        .map_err(c.kb.err())?;
                    let flush = c.b().build_or(is_odd, last, "f").map_err(c.kb.err())?;
                    let lo = c.kb.i64_const(i64::from(i16::MIN));
                    let hi = c.kb.i64_const(i64::from(i16::MAX));
                    let sat = c.kb.max_i64(c.kb.min_i64(pr, hi)?, lo)?;
                    let a0 = c.get(acc, zero.into())?.into_int_value();
                    let a1 = i32w(c.add(a0, sat)?)?;
                    let na = c
                        .b()
                        .build_select(flush, a1, a0, "na")
                        .map_err(c.kb.err())?;
                    c.set(acc, na)?;
                    let np = c
                        .b()
                        .build_select(flush, zero, pr, "np")
                        .map_err(c.kb.err())?;
                    c.set(pair, np)?;
                    let s1 = c.get(bsum, zero.into())?.into_int_value();
                    c.set(bsum, i32w(c.add(s1, y)?)?.into())?;
                } else {
                    let dq = bb.build_int_sub(q, za, "dq").map_err(e)?;
                    let p = i32w(c.mul(dq, y)?)?;
                    let a0 = c.get(acc, zero.into())?.into_int_value();
                    c.set(acc, i32w(c.add(a0, p)?)?.into())?;
                }
                Ok(())
            })?;
            let mut v = c.get(acc, zero.into())?.into_int_value();
            if saturate {
                let bs = c.get(bsum, zero.into())?.into_int_value();
                let t = i32w(c.mul(za, bs)?)?;
                v = i32w(c.b().build_int_sub(v, t, "v").map_err(c.kb.err())?)?;
            }
            // y = act(f32(acc) * (sa * sw) + bias), sa and sw read at (row, j).
            let at = |base: IntValue<'ctx>, s: &[IntValue<'ctx>]| c.add(base, c.mul(j, s[r - 1])?);
            let sa = load(&c.kb, DType::F32, c.inputs[1], at(sa_base, &sa_s)?)?;
            let sw = load(&c.kb, DType::F32, c.inputs[4], at(sw_base, &sw_s)?)?;
            let scale = bin(BinaryOp::Mul, sa, sw)?;
            let accf = scalar::cast(&c.kb, DType::I32, DType::F32, v.into())?;
            let mut y = bin(BinaryOp::Mul, accf, scale)?;
            if let (Some(b_base), Some(b_s)) = (b_base, b_s.as_deref()) {
                let b = load(&c.kb, DType::F32, c.inputs[5], at(b_base, b_s)?)?;
                y = bin(BinaryOp::Add, y, b)?;
            }
            let y = match activation {
                Activation::None => y,
                Activation::Relu => un(UnaryOp::Relu, y)?,
                Activation::GeluErf => {
                    let t = bin(BinaryOp::Div, y, fc(SQRT_2))?;
                    let e = un(UnaryOp::Erf, t)?;
                    let p = bin(BinaryOp::Add, e, fc(1.0))?;
                    let m = bin(BinaryOp::Mul, y, p)?;
                    bin(BinaryOp::Mul, m, fc(0.5))?
                }
                Activation::GeluTanh => {
                    let h = bin(BinaryOp::Mul, y, fc(0.5))?;
                    let cube = scalar::pow(c.m, &c.kb, DType::F32, DType::F32, y, fc(3.0))?;
                    let sc = bin(BinaryOp::Mul, cube, fc(GELU_TANH_CUBIC))?;
                    let inner = bin(BinaryOp::Add, y, sc)?;
                    let arg = bin(BinaryOp::Mul, inner, fc(SQRT_2_OVER_PI))?;
                    let t = un(UnaryOp::Tanh, arg)?;
                    let p = bin(BinaryOp::Add, t, fc(1.0))?;
                    bin(BinaryOp::Mul, h, p)?
                }
            };
            store(&c.kb, DType::F32, c.dest, c.add(c.mul(row, nv)?, j)?, y)
        })
    })?;
    Ok(Parallel::rows(product(&lead), n.mul(&k)))
}

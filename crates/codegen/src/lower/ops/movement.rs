//! Data movement: copies, transposes, broadcasts (`expand`), slices, concatenation, tiling,
//! padding and triangle masks (`trilu`); each element of the result is read from an index the
//! kernel computes from its own.

use inkwell::values::IntValue;
use inkwell::IntPredicate;
use tcc_ir::{Dim, Graph, PadMode};

use super::{bcast_strides_to, lines, rows_of, serial, strides, Ctx, Parallel};
use crate::error::Result;
use crate::lower::dims::DimEmitter;
use crate::lower::scalar::{self, load, store};
use crate::lower::schedule::Step;

/// A [`crate::lower::schedule::Kernel::Copy`] step: the input's bytes, moved whole.
pub(super) fn copy(c: &Ctx<'_, '_>, graph: &Graph, step: &Step) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let numel = out_ty.shape.numel();
    let bytes = c.dim(&numel.mul(&Dim::constant(out_ty.dtype.size_bytes() as i64)))?;
    c.b()
        .build_memmove(c.dest, 1, c.inputs[0], 1, bytes)
        .map_err(c.kb.err())?;
    Ok(serial(numel))
}

/// Copies input 0, read at `src_strides` (per axis of the result), into the result.
fn copy_with(c: &Ctx<'_, '_>, graph: &Graph, step: &Step, src_strides: Vec<Dim>) -> Result<()> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let dtype = out_ty.dtype;
    let zero = c.kb.i64_const(0);
    let dims = c.dim_list(out_shape.dims())?;
    let acc = vec![
        (zero, c.dim_list(&strides(out_shape))?),
        (c.kb.i64_const(0), c.dim_list(&src_strides)?),
    ];
    c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, _| {
        let v = load(&c.kb, dtype, c.inputs[0], offs[1])?;
        store(&c.kb, dtype, c.dest, offs[0], v)
    })
}

/// `Op::Transpose`: the input read through its permuted strides.
pub(super) fn transpose(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    perm: &[usize],
) -> Result<Parallel> {
    let s = strides(&graph.ty(step.inputs[0]).shape);
    copy_with(c, graph, step, perm.iter().map(|&p| s[p].clone()).collect())?;
    Ok(lines(&graph.ty(step.node).shape))
}

/// `Op::Expand`: the input read through its broadcast strides.
pub(super) fn expand(c: &Ctx<'_, '_>, graph: &Graph, step: &Step) -> Result<Parallel> {
    let out_shape = &graph.ty(step.node).shape;
    let src_strides = bcast_strides_to(&graph.ty(step.inputs[0]).shape, out_shape.dims());
    copy_with(c, graph, step, src_strides)?;
    Ok(lines(out_shape))
}

/// `Op::Slice`: the input read from the first selected element, with each sliced axis's
/// stride times its step.
pub(super) fn slice<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    axes: &[usize],
    starts: &[Dim],
    steps: &[i64],
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let dtype = out_ty.dtype;
    let zero = c.kb.i64_const(0);
    let in_ty = |k: usize| graph.ty(step.inputs[k]);
    let s = strides(&in_ty(0).shape);
    let mut st = s.clone();
    let mut base = Dim::constant(0);
    for (k, &a) in axes.iter().enumerate() {
        base = base.add(&starts[k].mul(&s[a]));
        st[a] = s[a].mul(&Dim::constant(steps[k]));
    }
    let dims = c.dim_list(out_shape.dims())?;
    let acc = vec![
        (zero, c.dim_list(&strides(out_shape))?),
        (c.dim(&base)?, c.dim_list(&st)?),
    ];
    c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, _| {
        let v = load(&c.kb, dtype, c.inputs[0], offs[1])?;
        store(&c.kb, dtype, c.dest, offs[0], v)
    })?;
    Ok(lines(out_shape))
}

/// `Op::Concat` along `axis`: each input copied to its offset along the axis, in one task.
pub(super) fn concat<'ctx>(
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
    let os = strides(out_shape);
    let mut at = Dim::constant(0);
    for k in 0..step.inputs.len() {
        let shape = &in_ty(k).shape;
        let dims = c.dim_list(shape.dims())?;
        let rows = c.dim(&rows_of(shape))?;
        let acc = vec![
            (c.dim(&at.mul(&os[axis]))?, c.dim_list(&os)?),
            (zero, c.dim_list(&strides(shape))?),
        ];
        c.strided(&dims, &acc, zero, rows, &mut |c, offs, _| {
            let v = load(&c.kb, dtype, c.inputs[k], offs[1])?;
            store(&c.kb, dtype, c.dest, offs[0], v)
        })?;
        at = at.add(&shape.dims()[axis]);
    }
    Ok(serial(out_shape.numel()))
}

/// `Op::Tile`: each index of the result read modulo the input's size on its axis.
pub(super) fn tile<'ctx>(c: &Ctx<'_, 'ctx>, graph: &Graph, step: &Step) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let dtype = out_ty.dtype;
    let zero = c.kb.i64_const(0);
    let in_ty = |k: usize| graph.ty(step.inputs[k]);
    let ishape = &in_ty(0).shape;
    let idims = c.dim_list(ishape.dims())?;
    let ist = c.dim_list(&strides(ishape))?;
    let dims = c.dim_list(out_shape.dims())?;
    let acc = vec![(zero, c.dim_list(&strides(out_shape))?)];
    c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, idx| {
        let mut off = c.kb.i64_const(0);
        for a in 0..idx.len() {
            let i = c.rem(idx[a], idims[a])?;
            off = c.add(off, c.mul(i, ist[a])?)?;
        }
        let v = load(&c.kb, dtype, c.inputs[0], off)?;
        store(&c.kb, dtype, c.dest, offs[0], v)
    })?;
    Ok(lines(out_shape))
}

/// `Op::Trilu`: the upper (`j - i >= k`) or lower (`j - i <= k`) triangle of each matrix,
/// zero elsewhere.
pub(super) fn trilu<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    upper: bool,
    k: i64,
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let dtype = out_ty.dtype;
    let rank = out_shape.rank();
    let zero = c.kb.i64_const(0);
    let dims = c.dim_list(out_shape.dims())?;
    let st = c.dim_list(&strides(out_shape))?;
    let acc = vec![(zero, st.clone()), (zero, st)];
    let kv = c.kb.i64_const(k);
    c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, idx| {
        let (i, j) = (idx[rank - 2], idx[rank - 1]);
        let d = c.b().build_int_sub(j, i, "d").map_err(c.kb.err())?;
        let p = if upper {
            IntPredicate::SGE
        } else {
            IntPredicate::SLE
        };
        let keep = c
            .b()
            .build_int_compare(p, d, kv, "keep")
            .map_err(c.kb.err())?;
        let v = load(&c.kb, dtype, c.inputs[0], offs[1])?;
        let z = scalar::zero(&c.kb, dtype);
        let r = c.b().build_select(keep, v, z, "t").map_err(c.kb.err())?;
        store(&c.kb, dtype, c.dest, offs[0], r)
    })?;
    Ok(lines(out_shape))
}

/// `Op::Pad`: each index of the result mapped into the input by `mode` (outside it, for
/// `constant`, the fill value of input 1); negative pads crop.
pub(super) fn pad<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    mode: PadMode,
    pads_begin: &[Dim],
    pads_end: &[Dim],
) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let dtype = out_ty.dtype;
    let zero = c.kb.i64_const(0);
    let one = c.kb.i64_const(1);
    let in_ty = |k: usize| graph.ty(step.inputs[k]);
    let ishape = &in_ty(0).shape;
    let idims = c.dim_list(ishape.dims())?;
    let ist = c.dim_list(&strides(ishape))?;
    let pb = c.dim_list(pads_begin)?;
    let pe = c.dim_list(pads_end)?;
    let dims = c.dim_list(out_shape.dims())?;
    let acc = vec![(zero, c.dim_list(&strides(out_shape))?)];
    c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, idx| {
        let d = DimEmitter::new(c.b(), c.symbols, c.names, "pad");
        let sel =
            |p: IntPredicate, x: IntValue<'ctx>, y: IntValue<'ctx>| -> Result<IntValue<'ctx>> {
                let t = c.b().build_int_compare(p, x, y, "c").map_err(c.kb.err())?;
                Ok(c.b()
                    .build_select(t, x, y, "s")
                    .map_err(c.kb.err())?
                    .into_int_value())
            };
        let inside = c.var(c.kb.context().bool_type().const_int(1, false).into())?;
        let mut off = c.kb.i64_const(0);
        for a in 0..idx.len() {
            // The cropped axis: start c0 = max(-pb, 0), size n = d + min(pb, 0) + min(pe, 0).
            let npb = c.b().build_int_neg(pb[a], "npb").map_err(c.kb.err())?;
            let c0 = sel(IntPredicate::SGT, npb, zero)?;
            let mb = sel(IntPredicate::SLT, pb[a], zero)?;
            let me = sel(IntPredicate::SLT, pe[a], zero)?;
            let n = c.add(c.add(idims[a], mb)?, me)?;
            let lead = sel(IntPredicate::SGT, pb[a], zero)?;
            let t = c.b().build_int_sub(idx[a], lead, "t").map_err(c.kb.err())?;
            let ge = c
                .b()
                .build_int_compare(IntPredicate::SGE, t, zero, "ge")
                .map_err(c.kb.err())?;
            let lt = c
                .b()
                .build_int_compare(IntPredicate::SLT, t, n, "lt")
                .map_err(c.kb.err())?;
            let ok = c.b().build_and(ge, lt, "ok").map_err(c.kb.err())?;
            let src = match mode {
                tcc_ir::PadMode::Constant => {
                    let prev = c.get(inside, ok.into())?.into_int_value();
                    let both = c.b().build_and(prev, ok, "in").map_err(c.kb.err())?;
                    c.set(inside, both.into())?;
                    c.b()
                        .build_select(ok, t, zero, "tt")
                        .map_err(c.kb.err())?
                        .into_int_value()
                }
                tcc_ir::PadMode::Edge => {
                    let nm1 = c.b().build_int_sub(n, one, "nm1").map_err(c.kb.err())?;
                    let lo = sel(IntPredicate::SGT, t, zero)?;
                    sel(IntPredicate::SLT, lo, nm1)?
                }
                tcc_ir::PadMode::Wrap => d.floor_mod(t, n)?,
                tcc_ir::PadMode::Reflect => {
                    // Period 2n - 2 (1 when n == 1), mirrored in its second half.
                    let p = c
                        .b()
                        .build_int_sub(c.add(n, n)?, c.kb.i64_const(2), "p")
                        .map_err(c.kb.err())?;
                    let p = sel(IntPredicate::SGT, p, one)?;
                    let u = d.floor_mod(t, p)?;
                    let m = c.b().build_int_sub(p, u, "m").map_err(c.kb.err())?;
                    let hi = c
                        .b()
                        .build_int_compare(IntPredicate::SGE, u, n, "hi")
                        .map_err(c.kb.err())?;
                    c.b()
                        .build_select(hi, m, u, "r")
                        .map_err(c.kb.err())?
                        .into_int_value()
                }
            };
            off = c.add(off, c.mul(c.add(c0, src)?, ist[a])?)?;
        }
        let ok = c
            .get(inside, c.kb.context().bool_type().const_zero().into())?
            .into_int_value();
        let v = load(&c.kb, dtype, c.inputs[0], off)?;
        let v = if mode == tcc_ir::PadMode::Constant {
            let fill = load(&c.kb, dtype, c.inputs[1], zero)?;
            c.b().build_select(ok, v, fill, "pv").map_err(c.kb.err())?
        } else {
            v
        };
        store(&c.kb, dtype, c.dest, offs[0], v)
    })?;
    Ok(lines(out_shape))
}

//! Matrix products of `f32` and other dtypes: GEMMs with constant weights (packed at compile
//! time, bias and activation in the epilogue), batched products of two runtime operands read
//! and written through strides, and the scalar loop for the other dtypes.

use inkwell::AddressSpace;
use tcc_ir::{Activation, DType, Dim, Graph, Shape, Tensor};

use super::{
    bcast_strides, bcast_strides_with, logical_shape, product, rows_of, strides, unsupported, Ctx,
    Parallel,
};
use crate::error::Result;
use crate::kernels::gemm::{self, Epilogue, GemmLayout};
use crate::lower::scalar::{self, load, store};
use crate::lower::schedule::Step;
use crate::target::Target;

/// A [`crate::lower::schedule::Kernel::GemmConstB`] step: `A · B (+ bias)` then the
/// activation, `B` packed at compile time; rows of `A` split into tasks, or the panels of `B`
/// (see [`Parallel::cols`]).
pub(super) fn gemm_const_b(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    target: &Target,
    b: &Tensor,
    bias: Option<&[f32]>,
    activation: Activation,
) -> Result<Parallel> {
    let out_shape = &graph.ty(step.node).shape;
    let layout = GemmLayout::for_target(target);
    let (k, n) = (b.shape()[0], b.shape()[1]);
    let values = b
        .as_slice::<f32>()
        .ok_or_else(|| unsupported(graph, step, "B is not f32"))?;
    let module = c.m;
    let name = format!("{}.gemm", c.kb.function().get_name().to_string_lossy());
    let g = gemm::emit_gemm_const_b_then(
        module,
        target,
        &name,
        &layout,
        values,
        k,
        n,
        bias,
        Epilogue {
            alpha: 1.0,
            activation,
        },
        true,
        c.next_gemm,
    )?;
    let m = rows_of(out_shape);
    let kk = c.kb.i64_const(k as i64);
    let nn = c.kb.i64_const(n as i64);
    let p1 = c.kb.i64_const(layout.panels(n) as i64);
    c.b()
        .build_call(
            g,
            &[
                c.inputs[0].into(),
                kk.into(),
                c.dest.into(),
                nn.into(),
                c.r0.into(),
                c.r1.into(),
                c.c0.into(),
                c.kb.min_i64(c.c1, p1)?.into(),
            ],
            "",
        )
        .map_err(c.kb.err())?;
    Ok(Parallel {
        rows: m,
        work: Dim::constant((k * n) as i64),
        align: i64::from(layout.mr),
        cols: layout.panels(n) as i64,
        col_max_rows: (n as i64).min(GEMM_COLUMNS_UP_TO_TILES * i64::from(layout.mr)),
    })
}

/// A GEMM with constant weights splits by columns (every thread reading all of `A`, and its
/// share of the weights) only up to this many tiles of rows, too few for every thread to get
/// whole tiles of its own; with more it splits by rows, each thread reading all the weights
/// but only its own rows of `A`, which the pool's per-thread blocks (see the runtime's
/// `pool.rs`) keep on the thread that wrote them in the step before. Measured on an Intel
/// Xeon (2 cores, minilm-l6 against ONNX Runtime): rows take 0.84 instead of 0.90 of its time
/// at 128 tokens and 0.86 instead of 0.89 at 64, columns 0.61 instead of 1.11 at 8 tokens.
const GEMM_COLUMNS_UP_TO_TILES: i64 = 3;

/// The packing scratch (in bytes) of a [`crate::lower::schedule::Kernel::MatMul`] step: the
/// runtime `B` of every batch matrix, in panels.
pub(super) fn scratch_bytes(
    graph: &Graph,
    step: &Step,
    target: &Target,
    out: &Shape,
    perms: &[Option<Vec<usize>>; 2],
) -> Dim {
    let layout = GemmLayout::for_runtime_b(target);
    let r = out.rank();
    let b_shape = logical_shape(graph, step, 1, &perms[1]);
    let k = b_shape.dims()[b_shape.rank() - 2].clone();
    let n = out.dims()[r - 1].clone();
    let batch = product(&out.dims()[..r - 2]);
    let nr = Dim::constant(layout.nr() as i64);
    let panels = n.add(&nr.sub(&Dim::constant(1))).floor_div(&nr);
    batch.mul(&panels).mul(&nr).mul(&k).mul(&Dim::constant(4))
}

/// The batched product of two runtime operands: one runtime-B GEMM per batch matrix (a row is
/// a batch matrix). Operands are read, and the result written, through strides, so transposed
/// operands and a transposed result (see [`Kernel::MatMul`]) need no copies.
pub(super) fn matmul(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    target: &Target,
    out: &Shape,
    perms: &[Option<Vec<usize>>; 2],
    out_perm: Option<&[usize]>,
) -> Result<Parallel> {
    let r = out.rank();
    let (a_shape, b_shape) = (
        logical_shape(graph, step, 0, &perms[0]),
        logical_shape(graph, step, 1, &perms[1]),
    );
    let m = out.dims()[r - 2].clone();
    let n = out.dims()[r - 1].clone();
    let k = b_shape.dims()[b_shape.rank() - 2].clone();
    let batch_dims = &out.dims()[..r - 2];
    let batch = product(batch_dims);
    // The strides of each operand's logical (transposed) view of its source buffer.
    let operand_strides = |i: usize, shape: &Shape| -> Vec<Dim> {
        let src = strides(&graph.ty(step.inputs[i]).shape);
        let own = match &perms[i] {
            Some(p) => p.iter().map(|&a| src[a].clone()).collect(),
            None => src,
        };
        bcast_strides_with(shape, &own, r)
    };
    let a_strides = operand_strides(0, &a_shape);
    let b_strides = operand_strides(1, &b_shape);
    // The product's strides in the destination: a transposed result puts the product's axis
    // perm[a] at the destination's axis a.
    let out_strides = match out_perm {
        Some(p) => {
            let dst = strides(&graph.ty(step.node).shape);
            let mut st = vec![Dim::constant(0); r];
            for (a, &from) in p.iter().enumerate() {
                st[from] = dst[a].clone();
            }
            st
        }
        None => strides(out),
    };
    if a_strides[r - 1].as_const().is_some_and(|s| s != 1) && k.as_const() != Some(1) {
        return Err(unsupported(graph, step, "A's rows are not contiguous"));
    }
    if out_strides[r - 1].as_const() != Some(1) {
        return Err(unsupported(
            graph,
            step,
            "the result's rows are not contiguous",
        ));
    }
    let layout = GemmLayout::for_runtime_b(target);
    let module = c.m;
    let name = format!("{}.gemm", c.kb.function().get_name().to_string_lossy());
    let g = gemm::emit_gemm_runtime_b(module, target, &name, &layout, false, Epilogue::default())?;
    let a_strides = c.dim_list(&a_strides)?;
    let b_strides = c.dim_list(&b_strides)?;
    let out_strides = c.dim_list(&out_strides)?;
    let bdims = c.dim_list(batch_dims)?;
    let (mv, nv, kv) = (c.dim(&m)?, c.dim(&n)?, c.dim(&k)?);
    let nr = c.kb.i64_const(layout.nr() as i64);
    let panels = c.div(c.add(nv, c.kb.i64_const(layout.nr() as i64 - 1))?, nr)?;
    let scratch_len = c.mul(c.mul(panels, nr)?, kv)?;
    let scratch = c
        .scratch
        .ok_or_else(|| c.kb.internal("the matmul has no scratch"))?;
    let null =
        c.kb.context()
            .ptr_type(AddressSpace::default())
            .const_null();
    c.for_range(c.r0, c.r1, "batch", |c, bi| {
        let idx = c.unflatten(bi, &bdims)?;
        let zero = c.kb.i64_const(0);
        let a_off = c.offset(zero, &idx, &a_strides[..r - 2])?;
        let b_off = c.offset(zero, &idx, &b_strides[..r - 2])?;
        let a = scalar::element_ptr(&c.kb, DType::F32, c.inputs[0], a_off)?;
        let b = scalar::element_ptr(&c.kb, DType::F32, c.inputs[1], b_off)?;
        let out_off = c.offset(zero, &idx, &out_strides[..r - 2])?;
        let o = scalar::element_ptr(&c.kb, DType::F32, c.dest, out_off)?;
        let ldc = out_strides[r - 2];
        let s_off = c.mul(bi, scratch_len)?;
        let s = scalar::element_ptr(&c.kb, DType::F32, scratch, s_off)?;
        // B is read with its own strides: rows of k, columns of n.
        let rs_b = b_strides[r - 2];
        let cs_b = b_strides[r - 1];
        let lda = a_strides[r - 2];
        c.b()
            .build_call(
                g,
                &[
                    a.into(),
                    lda.into(),
                    b.into(),
                    rs_b.into(),
                    cs_b.into(),
                    null.into(),
                    o.into(),
                    ldc.into(),
                    s.into(),
                    zero.into(),
                    mv.into(),
                    nv.into(),
                    kv.into(),
                    zero.into(),
                    panels.into(),
                ],
                "",
            )
            .map_err(c.kb.err())?;
        Ok(())
    })?;
    Ok(Parallel::rows(batch, m.mul(&n).mul(&k)))
}

/// Per row `(batch, i)`: index vectors `batch ++ [i, j]` for the broadcast operands.
pub(super) fn matmul_geometry(graph: &Graph, step: &Step) -> (Dim, Dim, Dim, Vec<Dim>) {
    let out = &graph.ty(step.node).shape;
    let r = out.rank();
    let bty = graph.ty(step.inputs[1]);
    (
        out.dims()[r - 2].clone(),
        out.dims()[r - 1].clone(),
        bty.shape.dims()[bty.rank() - 2].clone(),
        out.dims()[..r - 2].to_vec(),
    )
}

/// `MatMul` of any other dtype, or of operands the GEMMs do not take: a scalar loop per
/// element of the result, accumulating in the dtype (`i64` for integers) in order of `k`.
pub(super) fn matmul_scalar(c: &Ctx<'_, '_>, graph: &Graph, step: &Step) -> Result<Parallel> {
    let out = &graph.ty(step.node).shape;
    let r = out.rank();
    let dtype = graph.ty(step.node).dtype;
    let (m, n, k, batch) = matmul_geometry(graph, step);
    let a_s = c.dim_list(&bcast_strides(&graph.ty(step.inputs[0]).shape, r))?;
    let b_s = c.dim_list(&bcast_strides(&graph.ty(step.inputs[1]).shape, r))?;
    let (mv, nv, kv) = (c.dim(&m)?, c.dim(&n)?, c.dim(&k)?);
    let bd = c.dim_list(&batch)?;
    let zero = c.kb.i64_const(0);
    let acc_t = if dtype.is_float() { dtype } else { DType::I64 };
    c.for_range(c.r0, c.r1, "row", |c, row| {
        let bi = c.div(row, mv)?;
        let i = c.rem(row, mv)?;
        let idx = c.unflatten(bi, &bd)?;
        let a_base = c.offset(zero, &idx, &a_s[..r - 2])?;
        let a_base = c.add(a_base, c.mul(i, a_s[r - 2])?)?;
        let b_base = c.offset(zero, &idx, &b_s[..r - 2])?;
        c.for_range(zero, nv, "j", |c, j| {
            let acc = c.var(scalar::zero(&c.kb, acc_t))?;
            let b_col = c.add(b_base, c.mul(j, b_s[r - 1])?)?;
            c.for_range(zero, kv, "k", |c, kk| {
                let x = load(
                    &c.kb,
                    dtype,
                    c.inputs[0],
                    c.add(a_base, c.mul(kk, a_s[r - 1])?)?,
                )?;
                let y = load(
                    &c.kb,
                    dtype,
                    c.inputs[1],
                    c.add(b_col, c.mul(kk, b_s[r - 2])?)?,
                )?;
                let p = scalar::binary(c.m, &c.kb, tcc_ir::BinaryOp::Mul, acc_t, x, y)?;
                let a = c.get(acc, p)?;
                c.set(
                    acc,
                    scalar::binary(c.m, &c.kb, tcc_ir::BinaryOp::Add, acc_t, a, p)?,
                )
            })?;
            let v = c.get(acc, scalar::zero(&c.kb, acc_t))?;
            let v = scalar::cast(&c.kb, acc_t, dtype, v)?;
            store(&c.kb, dtype, c.dest, c.add(c.mul(row, nv)?, j)?, v)
        })
    })?;
    Ok(Parallel::rows(product(&batch).mul(&m), n.mul(&k)))
}

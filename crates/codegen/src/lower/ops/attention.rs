//! Fused attention, `g(softmax(f(Q·K))) · V` in one kernel: per batch matrix `K` and `V` are
//! packed once, then blocks of query rows go through `Q·K`, `f`, the softmax, `g` and `· V` in
//! a scratch block that stays in L2.

use inkwell::values::PointerValue;
use inkwell::values::{FunctionValue, IntValue};
use inkwell::{FloatPredicate, IntPredicate};
use tcc_ir::{BinaryOp, DType, Dim, Graph, Shape};

use super::elementwise::{eval, vec_eval, vec_supported, RowLeafRef};
use super::softmax::{
    softmax_row_mapped_f32, softmax_row_unnormalised_f32, RowExp, RowMap, ATTENTION_EXP,
};
use super::{
    bcast_strides_to, bcast_strides_with, logical_shape, product, strides, unsupported, Ctx,
    Parallel,
};
use crate::error::Result;
use crate::kernels::gemm::{self, Epilogue, GemmLayout};
use crate::kernels::{function_once, KernelBuilder};
use crate::lower::scalar::{self, load, store};
use crate::lower::schedule::{Expr, Kernel, Step};
use crate::target::Target;

/// Query rows per block of the fused attention kernel: the block's scores (`ROWS x n` floats)
/// stay in L2 between `Q·K`, the softmax and `· V`. A multiple of every GEMM tile's rows.
const ATTENTION_ROWS: i64 = 48;

/// The most keys for which a block of scores has the row stride [`SCORES_STRIDE`], which
/// `P · V`'s GEMM has compiled in ([`gemm::Known`]: 5% more of the FMA peak on an Intel
/// Xeon); more keys make the stride the keys' count.
const SCORES_KNOWN_KEYS: i64 = 512;

/// The row stride of a block of scores of at most [`SCORES_KNOWN_KEYS`] keys: 16 floats
/// past them, so that the block's rows (2112 bytes apart) spread over the L1 cache's sets
/// instead of sharing two groups of them as rows 2048 bytes apart would.
const SCORES_STRIDE: i64 = 528;

/// The sizes of a [`Kernel::Attention`] step.
struct AttentionDims {
    /// `[.., m, n]`: the scores.
    scores: Shape,
    /// Batch matrices.
    batch: Dim,
    m: Dim,
    n: Dim,
    /// `Q`'s and `K`'s inner size.
    dk: Dim,
    /// `V`'s columns.
    dv: Dim,
}

impl AttentionDims {
    fn of(graph: &Graph, step: &Step) -> Option<AttentionDims> {
        let Kernel::Attention { scores, perms, .. } = &step.kernel else {
            return None;
        };
        let scores = scores.clone();
        let r = scores.rank();
        let k = logical_shape(graph, step, 1, &perms[1]);
        let v = logical_shape(graph, step, 2, &perms[2]);
        Some(AttentionDims {
            batch: product(&scores.dims()[..r - 2]),
            m: scores.dims()[r - 2].clone(),
            n: scores.dims()[r - 1].clone(),
            dk: k.dims()[k.rank() - 2].clone(),
            dv: v.dims()[v.rank() - 1].clone(),
            scores,
        })
    }

    /// Scratch floats per batch matrix: packed `K`, packed `V`, one block of scores, its
    /// rows' inverse sums (f64) and their flags (`causal_min`: the rows that weigh every key).
    fn scratch_floats(&self, target: &Target) -> Dim {
        let layout = GemmLayout::for_runtime_b(target);
        let nr = Dim::constant(layout.nr() as i64);
        let panels = |d: &Dim| d.add(&nr.sub(&Dim::constant(1))).floor_div(&nr);
        panels(&self.n)
            .mul(&nr)
            .mul(&self.dk)
            .add(&panels(&self.dv).mul(&nr).mul(&self.n))
            .add(&Dim::constant(ATTENTION_ROWS).mul(&scores_stride_bound(&self.n)))
            .add(&Dim::constant(3 * ATTENTION_ROWS))
    }
}

/// The scratch (in bytes) of a [`Kernel::Attention`] step: per batch matrix, packed `K`,
/// packed `V` and one block of scores.
pub(super) fn scratch_bytes(graph: &Graph, step: &Step, target: &Target) -> Option<Dim> {
    let a = AttentionDims::of(graph, step)?;
    Some(
        a.batch
            .mul(&a.scratch_floats(target))
            .mul(&Dim::constant(4)),
    )
}

/// At least the row stride of a block of scores for `n` keys (see [`scores_stride`]).
fn scores_stride_bound(n: &Dim) -> Dim {
    n.max_dim(&Dim::constant(SCORES_STRIDE))
}

/// Whether a block of scores for `n` keys has the row stride [`SCORES_STRIDE`].
fn scores_known<'ctx>(c: &Ctx<'_, 'ctx>, n: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
    c.b()
        .build_int_compare(
            IntPredicate::SLE,
            n,
            c.kb.i64_const(SCORES_KNOWN_KEYS),
            "scores.known",
        )
        .map_err(c.kb.err())
}

/// The row stride of a block of scores for `n` keys: [`SCORES_STRIDE`] for at most
/// [`SCORES_KNOWN_KEYS`], else `n`.
fn scores_stride<'ctx>(c: &Ctx<'_, 'ctx>, n: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
    let known = scores_known(c, n)?;
    Ok(c.b()
        .build_select(known, c.kb.i64_const(SCORES_STRIDE), n, "scores.ld")
        .map_err(c.kb.err())?
        .into_int_value())
}

/// Whether `f` is exactly the scores plus leaf 1 in f32 (an additive mask).
fn is_scores_plus_leaf(f: &Expr) -> bool {
    let leaf = |e: &Expr, k| matches!(e, Expr::Leaf(i, DType::F32) if *i == k);
    matches!(f, Expr::Binary(BinaryOp::Add, s, m, DType::F32) if leaf(s, 0) && leaf(m, 1))
}

/// The called kernels of a fused attention: `K`'s and `V`'s packing, `Q·K`, with `Q`'s row
/// stride compiled in when it is a constant (`q_lda`, the heads' width: [`gemm::Known`], 5%
/// more of the FMA peak on an Intel Xeon at 32-wide heads), `alpha` and the mask in its
/// epilogue, and `P·V` twice, with the scores' row stride [`SCORES_STRIDE`] compiled in and
/// at run time (more than [`SCORES_KNOWN_KEYS`] keys). Each is named by what it is compiled
/// with and emitted once per module ([`function_once`]): the layers of a model share them.
struct AttentionKernels<'ctx> {
    pack: FunctionValue<'ctx>,
    qk: FunctionValue<'ctx>,
    pv_known: FunctionValue<'ctx>,
    pv: FunctionValue<'ctx>,
}

impl<'ctx> AttentionKernels<'ctx> {
    fn emit(
        c: &Ctx<'_, 'ctx>,
        target: &Target,
        qk_alpha: f32,
        q_lda: Option<i64>,
        qk_addend: bool,
    ) -> Result<Self> {
        let layout = GemmLayout::for_runtime_b(target);
        let gemm = |name: &str, alpha: f32, lda: Option<i64>, addend: bool| {
            let lda_name = lda.map_or("rt".to_owned(), |l| l.to_string());
            let name = format!(
                "tcc.attention.{name}.alpha{:08x}.lda_{lda_name}{}",
                alpha.to_bits(),
                if addend { ".mask" } else { "" }
            );
            function_once(c.m, &name, |name| {
                let epilogue = Epilogue {
                    alpha,
                    ..Epilogue::default()
                };
                let known = gemm::Known { lda, addend };
                gemm::emit_gemm_packed_b_known(c.m, target, name, &layout, epilogue, known)
            })
        };
        Ok(AttentionKernels {
            pack: function_once(c.m, "tcc.attention.pack", |name| {
                gemm::emit_pack_b_fn(c.m, target, name, &layout)
            })?,
            qk: gemm("qk", qk_alpha, q_lda, qk_addend)?,
            pv_known: gemm("pv", 1.0, Some(SCORES_STRIDE), false)?,
            pv: gemm("pv", 1.0, None, false)?,
        })
    }

    /// Calls `P·V` on `args` (whose `lda` is [`scores_stride`] of `n` keys): the kernel with
    /// the stride compiled in for at most [`SCORES_KNOWN_KEYS`] keys.
    fn pv(
        &self,
        c: &Ctx<'_, 'ctx>,
        n: IntValue<'ctx>,
        args: &[inkwell::values::BasicMetadataValueEnum<'ctx>],
    ) -> Result<()> {
        let known = scores_known(c, n)?;
        let call = |kb: &KernelBuilder<'_, 'ctx>, f| {
            kb.builder()
                .build_call(f, args, "")
                .map_err(kb.err())
                .map(|_| ())
        };
        c.kb.if_else(known, |kb| call(kb, self.pv_known), |kb| call(kb, self.pv))
    }
}

/// Fused attention (see [`Kernel::Attention`]); a task is one batch matrix.
pub(super) fn attention<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    target: &Target,
) -> Result<Parallel> {
    let Kernel::Attention {
        alpha,
        expr,
        post,
        pre_leaves,
        perms,
        out_perm,
        causal,
        causal_min,
        ..
    } = &step.kernel
    else {
        return Err(c.kb.internal("not an attention step"));
    };
    let dims =
        AttentionDims::of(graph, step).ok_or_else(|| c.kb.internal("not an attention step"))?;
    let scores = &dims.scores;
    let r = scores.rank();
    // The logical Q, K and V the products read.
    let logical: Vec<Shape> = (0..3)
        .map(|i| logical_shape(graph, step, i, &perms[i]))
        .collect();
    // Q, K and V through their sources' (permuted) strides, broadcast to rank r.
    let mut st = Vec::new();
    // Q's row stride as its source has it, for Q·K's kernel: the broadcast strides make it 0
    // where Q has one row (`384 * min(seq - 1, 1)`), whose stride is never used.
    let mut q_lda = None;
    for i in 0..3 {
        let src = strides(&graph.ty(step.inputs[i]).shape);
        let own: Vec<Dim> = match &perms[i] {
            Some(p) => p.iter().map(|&a| src[a].clone()).collect(),
            None => src,
        };
        if i == 0 && own.len() >= 2 {
            q_lda = own[own.len() - 2].as_const();
        }
        st.push(bcast_strides_with(&logical[i], &own, r));
    }
    let out_strides = match out_perm {
        Some(p) => {
            let dst = strides(&graph.ty(step.node).shape);
            let mut o = vec![Dim::constant(0); r];
            for (a, &from) in p.iter().enumerate() {
                o[from] = dst[a].clone();
            }
            o
        }
        // Without a permutation the step's node holds the product itself.
        None => strides(&graph.ty(step.node).shape),
    };
    if st[0][r - 1].as_const().is_some_and(|s| s != 1) && dims.dk.as_const() != Some(1) {
        return Err(unsupported(graph, step, "Q's rows are not contiguous"));
    }
    if out_strides[r - 1].as_const() != Some(1) {
        return Err(unsupported(
            graph,
            step,
            "the result's rows are not contiguous",
        ));
    }
    // The other leaves of f (inputs 3..3 + pre_leaves) and g (the rest), read at the scores'
    // index.
    let leaf_strides: Vec<Vec<Dim>> = step.inputs[3..]
        .iter()
        .map(|&l| bcast_strides_to(&graph.ty(l).shape, scores.dims()))
        .collect();
    let pre = 3..3 + pre_leaves;

    let layout = GemmLayout::for_runtime_b(target);
    // f = the scores plus a leaf of f32 rows read contiguously (an additive mask): the add
    // is Q·K's epilogue (the same one rounding after the same multiply), and the softmax's
    // maximum pass then stores nothing.
    let mask_in_gemm = *pre_leaves == 1
        && is_scores_plus_leaf(expr)
        && graph.ty(step.inputs[3]).dtype == DType::F32
        && leaf_strides[0][r - 1].as_const() == Some(1);
    let scores_only = Expr::Leaf(0, DType::F32);
    let expr = if mask_in_gemm { &scores_only } else { expr };
    let kernels = AttentionKernels::emit(c, target, *alpha, q_lda, mask_in_gemm)?;
    let st: Vec<Vec<IntValue>> = st.iter().map(|s| c.dim_list(s)).collect::<Result<_>>()?;
    let out_st = c.dim_list(&out_strides)?;
    let leaf_st: Vec<Vec<IntValue>> = leaf_strides
        .iter()
        .map(|s| c.dim_list(s))
        .collect::<Result<_>>()?;
    let bdims = c.dim_list(&scores.dims()[..r - 2])?;
    let (mv, nv, dkv, dvv) = (
        c.dim(&dims.m)?,
        c.dim(&dims.n)?,
        c.dim(&dims.dk)?,
        c.dim(&dims.dv)?,
    );
    let nr = layout.nr() as i64;
    let padded = |d| -> Result<IntValue> {
        let up = c.add(d, c.kb.i64_const(nr - 1))?;
        c.mul(c.div(up, c.kb.i64_const(nr))?, c.kb.i64_const(nr))
    };
    let k_len = c.mul(padded(nv)?, dkv)?;
    let v_len = c.mul(padded(dvv)?, nv)?;
    let ld_s = scores_stride(c, nv)?;
    let s_len = c.mul(c.kb.i64_const(ATTENTION_ROWS), ld_s)?;
    // The rows' inverse sums, f64, when deferred.
    let inv_len = c.kb.i64_const(2 * ATTENTION_ROWS);
    let flag_len = c.kb.i64_const(ATTENTION_ROWS);
    let per_task = c.add(
        c.add(c.add(c.add(k_len, v_len)?, s_len)?, inv_len)?,
        flag_len,
    )?;
    let scratch = c
        .scratch
        .ok_or_else(|| c.kb.internal("the attention has no scratch"))?;
    let rows_step = c.kb.i64_const(ATTENTION_ROWS);
    // f and g in vectors inside the softmax's passes when they can be: leaves
    // read along the row contiguously or as one value.
    let row_leaf = |t: usize| -> Option<bool> {
        let dt = graph.ty(step.inputs[t]).dtype;
        let stride = leaf_st[t - 3][r - 1].get_zero_extended_constant();
        match (dt, stride) {
            (DType::F32 | DType::Bool, Some(0)) => Some(false),
            (DType::F32 | DType::Bool, Some(1)) => Some(true),
            _ => None,
        }
    };
    let vector_ok = |e: &Expr, range: &std::ops::Range<usize>| {
        vec_supported(e, &|k| k == 0 || row_leaf(range.start + k - 1).is_some())
    };
    let post_range = pre.end..step.inputs.len();
    let trivial_pre = matches!(expr, Expr::Leaf(0, _));
    // Without `g`, the probabilities need not be stored: the rows are left unnormalised and
    // the product with V is divided by each row's sum instead (a pass over the scores fewer).
    let deferred = post.is_none() && vector_ok(expr, &pre);
    // The flag of `causal_min` reads the rows' maxima, which must be NaN for a row holding
    // one (whose softmax is NaN, not the mean of V).
    let how = RowExp {
        nan_max: *causal_min,
        ..ATTENTION_EXP
    };
    // Causal: query i sees keys j <= i + shift.
    let shift = c.b().build_int_sub(nv, mv, "shift").map_err(c.kb.err())?;
    c.for_range(c.r0, c.r1, "batch", |c, bi| {
        let zero = c.kb.i64_const(0);
        let idx = c.unflatten(bi, &bdims)?;
        let off = |i: usize| c.offset(zero, &idx, &st[i][..r - 2]);
        let q = scalar::element_ptr(&c.kb, DType::F32, c.inputs[0], off(0)?)?;
        let k = scalar::element_ptr(&c.kb, DType::F32, c.inputs[1], off(1)?)?;
        let v = scalar::element_ptr(&c.kb, DType::F32, c.inputs[2], off(2)?)?;
        let o_off = c.offset(zero, &idx, &out_st[..r - 2])?;
        let o = scalar::element_ptr(&c.kb, DType::F32, c.dest, o_off)?;
        let leaf_base: Vec<IntValue> = leaf_st
            .iter()
            .map(|s| c.offset(zero, &idx, &s[..r - 2]))
            .collect::<Result<_>>()?;
        let task_scratch = c.mul(bi, per_task)?;
        let sk = scalar::element_ptr(&c.kb, DType::F32, scratch, task_scratch)?;
        let sv = scalar::element_ptr(&c.kb, DType::F32, sk, k_len)?;
        let sblk = scalar::element_ptr(&c.kb, DType::F32, sv, v_len)?;
        let sinv = scalar::element_ptr(&c.kb, DType::F32, sblk, s_len)?;
        let sflag = scalar::element_ptr(&c.kb, DType::F32, sinv, inv_len)?;
        // K (dk x n) and V (n x dv), packed once per batch matrix.
        let call = |f, args: &[inkwell::values::BasicMetadataValueEnum]| {
            c.b()
                .build_call(f, args, "")
                .map_err(c.kb.err())
                .map(|_| ())
        };
        call(
            kernels.pack,
            &[
                k.into(),
                st[1][r - 2].into(),
                st[1][r - 1].into(),
                nv.into(),
                dkv.into(),
                sk.into(),
            ],
        )?;
        call(
            kernels.pack,
            &[
                v.into(),
                st[2][r - 2].into(),
                st[2][r - 1].into(),
                dvv.into(),
                nv.into(),
                sv.into(),
            ],
        )?;
        c.kb.for_loop(zero, mv, rows_step, "qblock", |_, rb| {
            let left = c.b().build_int_sub(mv, rb, "left").map_err(c.kb.err())?;
            let rows = c.kb.min_i64(left, rows_step)?;
            let q_blk = scalar::element_ptr(&c.kb, DType::F32, q, c.mul(rb, st[0][r - 2])?)?;
            // The keys the block computes: all, or (causal) those its last row sees; all
            // again when a row of the block sees none, whose probabilities are NaN.
            let cols = if *causal {
                let b = c.b();
                let first = c.add(c.add(rb, shift)?, c.kb.i64_const(1))?;
                let last = c.kb.min_i64(nv, c.add(c.add(rb, rows)?, shift)?)?;
                let blind = b
                    .build_int_compare(IntPredicate::SLE, first, zero, "blind")
                    .map_err(c.kb.err())?;
                b.build_select(blind, nv, last, "cols")
                    .map_err(c.kb.err())?
                    .into_int_value()
            } else {
                nv
            };
            // S = Q_blk · K (plus the mask's rows of the block).
            let mut args: Vec<inkwell::values::BasicMetadataValueEnum> = vec![
                q_blk.into(),
                st[0][r - 2].into(),
                sk.into(),
                sblk.into(),
                ld_s.into(),
                zero.into(),
                rows.into(),
                cols.into(),
                dkv.into(),
                dkv.into(),
            ];
            if mask_in_gemm {
                let row = c.add(leaf_base[0], c.mul(rb, leaf_st[0][r - 2])?)?;
                let d = scalar::element_ptr(&c.kb, DType::F32, c.inputs[3], row)?;
                args.push(d.into());
                args.push(leaf_st[0][r - 2].into());
            }
            call(kernels.qk, &args)?;
            // S = softmax(f(S)), row by row.
            c.for_range(zero, rows, "qrow", |c, i| {
                let row = c.mul(i, ld_s)?;
                let srow = scalar::element_ptr(&c.kb, DType::F32, sblk, row)?;
                let qi = c.add(rb, i)?;
                // The keys the row sees: the first `len`.
                let len = if *causal {
                    let seen = c.add(c.add(qi, shift)?, c.kb.i64_const(1))?;
                    c.kb.min_i64(c.kb.max_i64(seen, zero)?, cols)?
                } else {
                    nv
                };
                // Applies `e` to the row's first `count` columns in place; `leaf_range` are its
                // other leaves' inputs.
                let apply = |c: &Ctx<'_, 'ctx>,
                             e: &Expr,
                             leaf_range: std::ops::Range<usize>,
                             count: IntValue<'ctx>| {
                    let bases: Vec<IntValue> = leaf_range
                        .clone()
                        .map(|t| c.add(leaf_base[t - 3], c.mul(qi, leaf_st[t - 3][r - 2])?))
                        .collect::<Result<_>>()?;
                    c.for_range(zero, count, "col", |c, j| {
                        let mut leaves = vec![load(&c.kb, DType::F32, srow, j)?];
                        for (t, base) in leaf_range.clone().zip(&bases) {
                            let o = c.add(*base, c.mul(j, leaf_st[t - 3][r - 1])?)?;
                            let dt = graph.ty(step.inputs[t]).dtype;
                            leaves.push(load(&c.kb, dt, c.inputs[t], o)?);
                        }
                        let y = eval(c, e, &leaves)?;
                        store(&c.kb, DType::F32, srow, j, y)
                    })
                };
                let max = if vector_ok(expr, &pre)
                    && post.as_ref().is_none_or(|g| vector_ok(g, &post_range))
                {
                    let leaves_of = |range: &std::ops::Range<usize>| -> Result<Vec<RowLeafRef>> {
                        range
                            .clone()
                            .map(|t| {
                                let base =
                                    c.add(leaf_base[t - 3], c.mul(qi, leaf_st[t - 3][r - 2])?)?;
                                let dt = graph.ty(step.inputs[t]).dtype;
                                Ok(RowLeafRef {
                                    ptr: scalar::element_ptr(&c.kb, dt, c.inputs[t], base)?,
                                    dtype: dt,
                                    contiguous: row_leaf(t) == Some(true),
                                })
                            })
                            .collect()
                    };
                    let pre_leaves = leaves_of(&pre)?;
                    let post_leaves = leaves_of(&post_range)?;
                    let f_map =
                        |kb: &KernelBuilder<'_, 'ctx>,
                         j: IntValue<'ctx>,
                         x: inkwell::values::VectorValue<'ctx>,
                         mask: Option<inkwell::values::VectorValue<'ctx>>| {
                            vec_eval(kb, expr, x, &pre_leaves, j, mask)
                        };
                    let g_map =
                        |kb: &KernelBuilder<'_, 'ctx>,
                         j: IntValue<'ctx>,
                         x: inkwell::values::VectorValue<'ctx>,
                         mask: Option<inkwell::values::VectorValue<'ctx>>| {
                            match &post {
                                Some(g) => vec_eval(kb, g, x, &post_leaves, j, mask),
                                None => Ok(x),
                            }
                        };
                    let f_ref: Option<&RowMap<'_, 'ctx>> =
                        if trivial_pre { None } else { Some(&f_map) };
                    let g_ref: Option<&RowMap<'_, 'ctx>> =
                        if post.is_some() { Some(&g_map) } else { None };
                    if deferred {
                        let (inv, max) =
                            softmax_row_unnormalised_f32(c, srow, srow, len, f_ref, how)?;
                        let slot = scalar::element_ptr(&c.kb, DType::F64, sinv, i)?;
                        c.b().build_store(slot, inv).map_err(c.kb.err())?;
                        max
                    } else {
                        softmax_row_mapped_f32(c, srow, srow, len, f_ref, g_ref, how)?
                    }
                } else {
                    if !trivial_pre {
                        apply(c, expr, pre.clone(), len)?;
                    }
                    let max = softmax_row_mapped_f32(c, srow, srow, len, None, None, how)?;
                    if let Some(g) = post {
                        apply(c, g, post_range.clone(), len)?;
                    }
                    max
                };
                if *causal_min {
                    // A row whose seen scores are all f32::MIN or less (or that sees none)
                    // weighs every key equally: flagged, its output is made after P · V.
                    let b = c.b();
                    let low = b
                        .build_float_compare(
                            FloatPredicate::OLE,
                            max,
                            c.kb.context().f32_type().const_float(f64::from(f32::MIN)),
                            "all.min",
                        )
                        .map_err(c.kb.err())?;
                    let blind = b
                        .build_int_compare(IntPredicate::EQ, len, zero, "sees.none")
                        .map_err(c.kb.err())?;
                    let flagged = b.build_or(low, blind, "flagged").map_err(c.kb.err())?;
                    let flag = b
                        .build_unsigned_int_to_float(flagged, c.kb.context().f32_type(), "flag")
                        .map_err(c.kb.err())?;
                    store(&c.kb, DType::F32, sflag, i, flag.into())?;
                }
                if *causal {
                    // The keys the row does not see: probability 0, which `g` (the filters)
                    // keeps 0; a row that sees no key is NaN, then `g` (deferred: its inverse
                    // sum is NaN).
                    c.for_range(len, cols, "unseen", |c, j| {
                        store(&c.kb, DType::F32, srow, j, c.kb.f32_const(0.0).into())
                    })?;
                    if deferred {
                        return Ok(());
                    }
                    let blind = c
                        .b()
                        .build_int_compare(IntPredicate::EQ, len, zero, "blind")
                        .map_err(c.kb.err())?;
                    c.if_then(blind, |c| {
                        c.for_range(zero, cols, "nan", |c, j| {
                            store(&c.kb, DType::F32, srow, j, c.kb.f32_const(f32::NAN).into())
                        })?;
                        match post {
                            Some(g) => apply(c, g, post_range.clone(), cols),
                            None => Ok(()),
                        }
                    })?;
                }
                Ok(())
            })?;
            // O_blk = P_blk · V.
            let o_blk = scalar::element_ptr(&c.kb, DType::F32, o, c.mul(rb, out_st[r - 2])?)?;
            kernels.pv(
                c,
                nv,
                &[
                    sblk.into(),
                    ld_s.into(),
                    sv.into(),
                    o_blk.into(),
                    out_st[r - 2].into(),
                    zero.into(),
                    rows.into(),
                    dvv.into(),
                    cols.into(),
                    nv.into(),
                ],
            )?;
            if deferred {
                // O_blk row i *= 1 / sum_i, in f64, rounded once. Without keys the product is
                // an empty sum, 0, as the softmax of an empty row times V is: it stays.
                let no_keys = c
                    .b()
                    .build_int_compare(IntPredicate::EQ, nv, zero, "no.keys")
                    .map_err(c.kb.err())?;
                scale_rows(c, o_blk, out_st[r - 2], rows, dvv, sinv, Some(no_keys))?;
            }
            if *causal_min {
                mean_rows(
                    c,
                    o_blk,
                    out_st[r - 2],
                    rows,
                    sflag,
                    v,
                    &st[2][r - 2..],
                    nv,
                    dvv,
                )?;
            }
            Ok(())
        })
    })?;
    Ok(Parallel::rows(
        dims.batch.clone(),
        dims.m.mul(&dims.n).mul(&dims.dk.add(&dims.dv)),
    ))
}

/// For each of the `rows` rows of `dv` floats at `o` (row stride `stride`) whose flag in
/// `flags` is not 0: the mean of the `n` rows of `V` (at `v`, row and column strides
/// `v_st`), summed in f64 and rounded once: what a softmax of `n` equal scores gives (an
/// attention with `causal_min` whose row sees only `f32::MIN`). Nothing without keys.
#[allow(clippy::too_many_arguments)]
fn mean_rows<'ctx>(
    c: &Ctx<'_, 'ctx>,
    o: PointerValue<'ctx>,
    stride: IntValue<'ctx>,
    rows: IntValue<'ctx>,
    flags: PointerValue<'ctx>,
    v: PointerValue<'ctx>,
    v_st: &[IntValue<'ctx>],
    n: IntValue<'ctx>,
    dv: IntValue<'ctx>,
) -> Result<()> {
    let zero = c.kb.i64_const(0);
    let f64t = c.kb.context().f64_type();
    let f32t = c.kb.context().f32_type();
    c.for_range(zero, rows, "mean.row", |c, i| {
        let b = c.b();
        let flag = load(&c.kb, DType::F32, flags, i)?.into_float_value();
        let set = b
            .build_float_compare(FloatPredicate::ONE, flag, f32t.const_zero(), "set")
            .map_err(c.kb.err())?;
        let keys = b
            .build_int_compare(IntPredicate::SGT, n, zero, "keys")
            .map_err(c.kb.err())?;
        let go = b.build_and(set, keys, "go").map_err(c.kb.err())?;
        c.if_then(go, |c| {
            let b = c.b();
            let inv = b
                .build_float_div(
                    f64t.const_float(1.0),
                    b.build_signed_int_to_float(n, f64t, "n")
                        .map_err(c.kb.err())?,
                    "inv.n",
                )
                .map_err(c.kb.err())?;
            let orow = scalar::element_ptr(&c.kb, DType::F32, o, c.mul(i, stride)?)?;
            // The sum's stack slot, in the entry block (an alloca in a loop would grow the
            // stack at each turn).
            let acc =
                c.kb.entry_builder()?
                    .build_alloca(f64t, "acc")
                    .map_err(c.kb.err())?;
            c.for_range(zero, dv, "mean.col", |c, d| {
                let b = c.b();
                b.build_store(acc, f64t.const_zero()).map_err(c.kb.err())?;
                let col = c.mul(d, v_st[1])?;
                c.for_range(zero, n, "mean.key", |c, j| {
                    let b = c.b();
                    let at = c.add(c.mul(j, v_st[0])?, col)?;
                    let x = load(&c.kb, DType::F32, v, at)?.into_float_value();
                    let x = b.build_float_ext(x, f64t, "x").map_err(c.kb.err())?;
                    let sum = b.build_load(f64t, acc, "sum").map_err(c.kb.err())?;
                    let sum = b
                        .build_float_add(sum.into_float_value(), x, "sum")
                        .map_err(c.kb.err())?;
                    b.build_store(acc, sum).map_err(c.kb.err())?;
                    Ok(())
                })?;
                let b = c.b();
                let sum = b.build_load(f64t, acc, "sum").map_err(c.kb.err())?;
                let mean = b
                    .build_float_mul(sum.into_float_value(), inv, "mean")
                    .map_err(c.kb.err())?;
                let mean = b
                    .build_float_trunc(mean, f32t, "mean")
                    .map_err(c.kb.err())?;
                store(&c.kb, DType::F32, orow, d, mean.into())
            })
        })
    })
}

/// Multiplies each of the `rows` rows of `dv` floats at `o` (row stride `stride`) by its
/// inverse sum in `sinv` (f64), in f64, rounded once: the deferred normalisation of `P · V`.
/// With `no_keys` true the rows stay (the product over no keys is 0, as the softmax of an
/// empty row times V is; its inverse sum is not used).
fn scale_rows<'ctx>(
    c: &Ctx<'_, 'ctx>,
    o: inkwell::values::PointerValue<'ctx>,
    stride: IntValue<'ctx>,
    rows: IntValue<'ctx>,
    dv: IntValue<'ctx>,
    sinv: inkwell::values::PointerValue<'ctx>,
    no_keys: Option<IntValue<'ctx>>,
) -> Result<()> {
    let zero = c.kb.i64_const(0);
    c.for_range(zero, rows, "scale", |c, i| {
        let slot = scalar::element_ptr(&c.kb, DType::F64, sinv, i)?;
        let f64t = c.kb.context().f64_type();
        let mut inv = c.b().build_load(f64t, slot, "inv").map_err(c.kb.err())?;
        if let Some(no_keys) = no_keys {
            inv = c
                .b()
                .build_select(no_keys, f64t.const_float(1.0).into(), inv, "inv")
                .map_err(c.kb.err())?;
        }
        let inv = c.kb.splat(inv, "inv")?;
        let vd = f64t.vec_type(c.kb.lanes());
        let orow = scalar::element_ptr(&c.kb, DType::F32, o, c.mul(i, stride)?)?;
        c.kb.vector_loop_in(dv, |kb, j, mask| {
            let b = kb.builder();
            let y = kb.load_f32(orow, j, mask)?;
            let y = b.build_float_ext(y, vd, "yd").map_err(kb.err())?;
            let y = b.build_float_mul(y, inv, "ys").map_err(kb.err())?;
            let y = b
                .build_float_trunc(y, kb.f32_vector(), "y")
                .map_err(kb.err())?;
            kb.store_f32(orow, j, y, mask)
        })
    })
}

/// Scratch floats per task of `packed_attention` for sequences of at most `s` tokens: packed
/// `K` (`dk x s`) and `V` (`s x dv`), one block of scores and its rows' inverse sums.
fn packed_scratch_floats(s: &Dim, dk: &Dim, dv: &Dim, target: &Target) -> Dim {
    let layout = GemmLayout::for_runtime_b(target);
    let nr = Dim::constant(layout.nr() as i64);
    let panels = |d: &Dim| d.add(&nr.sub(&Dim::constant(1))).floor_div(&nr);
    panels(s)
        .mul(&nr)
        .mul(dk)
        .add(&panels(dv).mul(&nr).mul(s))
        .add(&Dim::constant(ATTENTION_ROWS).mul(&scores_stride_bound(s)))
        .add(&Dim::constant(2 * ATTENTION_ROWS))
}

/// The scratch (in bytes) of a `packed_attention` step: one task's (see
/// [`packed_scratch_floats`]) per sequence and head.
pub(super) fn packed_scratch_bytes(graph: &Graph, step: &Step, target: &Target) -> Dim {
    let (q, v, m) = (
        graph.ty(step.inputs[0]).shape.dims(),
        graph.ty(step.inputs[2]).shape.dims(),
        graph.ty(step.inputs[3]).shape.dims(),
    );
    m[0].mul(&q[1])
        .mul(&packed_scratch_floats(&m[1], &q[2], &v[2], target))
        .mul(&Dim::constant(4))
}

/// `Op::PackedAttention`: a task per (sequence, head). A task finds its sequence's tokens
/// (`start`, the mask's nonzero entries before the sequence, and `len`, its own), packs that
/// head's `K` and `V` rows of them once, and runs the fused attention's blocks of query rows
/// over them: `Q·K` over the sequence's `len` keys only (a factor applied in its epilogue, a
/// divisor in the softmax's first pass), the rows left unnormalised and `P·V` divided by each
/// row's sum (f64, rounded once). The sequence's padded keys, which the op's expansion masks
/// to `-inf`, contribute exact zeros there and are not computed here: the values are those of
/// the expansion, within the softmax's few ulp.
pub(super) fn packed_attention<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    target: &Target,
    scale: tcc_ir::ScoreScale,
) -> Result<Parallel> {
    let (qt, vt, mt) = (
        graph.ty(step.inputs[0]),
        graph.ty(step.inputs[2]),
        graph.ty(step.inputs[3]),
    );
    if qt.dtype != DType::F32 || vt.dtype != DType::F32 {
        return Err(unsupported(
            graph,
            step,
            "packed attention computes in f32 only",
        ));
    }
    let (qd, vd, md) = (qt.shape.dims(), vt.shape.dims(), mt.shape.dims());
    let layout = GemmLayout::for_runtime_b(target);
    // A factor is Q·K's epilogue; a divisor stays in the softmax's first pass.
    let (alpha, divisor) = scale.factor_and_divisor();
    let kernels = AttentionKernels::emit(c, target, alpha, qd[1].mul(&qd[2]).as_const(), false)?;
    let (hv, dkv, dvv, sv) = (
        c.dim(&qd[1])?,
        c.dim(&qd[2])?,
        c.dim(&vd[2])?,
        c.dim(&md[1])?,
    );
    let q_row = c.mul(hv, dkv)?; // stride between tokens of q and k
    let v_row = c.mul(hv, dvv)?; // and of v and the result
    let per_task = c.dim(&packed_scratch_floats(&md[1], &qd[2], &vd[2], target))?;
    let nr = layout.nr() as i64;
    let padded_len = |d| -> Result<IntValue> {
        let up = c.add(d, c.kb.i64_const(nr - 1))?;
        c.mul(c.div(up, c.kb.i64_const(nr))?, c.kb.i64_const(nr))
    };
    let scratch = c
        .scratch
        .ok_or_else(|| c.kb.internal("the packed attention has no scratch"))?;
    let mask = c.inputs[3];
    let mdt = mt.dtype;
    let one = c.kb.i64_const(1);
    let zero = c.kb.i64_const(0);
    let rows_step = c.kb.i64_const(ATTENTION_ROWS);
    let count = |c: &Ctx<'_, 'ctx>, from: IntValue<'ctx>, to: IntValue<'ctx>| {
        super::pack::count(c, mask, mdt, from, to)
    };
    // The rows q, k, v and the result have (the token count, when they come from packs over
    // the mask; a task whose sequence reaches past them sets the error flag and skips).
    let rows_of = |i: usize| c.dim(&graph.ty(step.inputs[i]).shape.dims()[0]);
    let have =
        c.kb.min_i64(c.kb.min_i64(rows_of(0)?, rows_of(1)?)?, rows_of(2)?)?;
    c.for_range(c.r0, c.r1, "task", |c, t| {
        let bi = c.div(t, hv)?;
        let h = c.rem(t, hv)?;
        let start = count(c, zero, c.mul(bi, sv)?)?;
        let len = count(c, c.mul(bi, sv)?, c.mul(c.add(bi, one)?, sv)?)?;
        let past = c
            .b()
            .build_int_compare(IntPredicate::SGT, c.add(start, len)?, have, "past")
            .map_err(c.kb.err())?;
        c.if_then(past, |c| c.set_error())?;
        let len = c
            .b()
            .build_select(past, zero, len, "len")
            .map_err(c.kb.err())?
            .into_int_value();
        let q_off = c.add(c.mul(start, q_row)?, c.mul(h, dkv)?)?;
        let v_off = c.add(c.mul(start, v_row)?, c.mul(h, dvv)?)?;
        let q = scalar::element_ptr(&c.kb, DType::F32, c.inputs[0], q_off)?;
        let k = scalar::element_ptr(&c.kb, DType::F32, c.inputs[1], q_off)?;
        let v = scalar::element_ptr(&c.kb, DType::F32, c.inputs[2], v_off)?;
        let o = scalar::element_ptr(&c.kb, DType::F32, c.dest, v_off)?;
        let sk = scalar::element_ptr(&c.kb, DType::F32, scratch, c.mul(t, per_task)?)?;
        let sv_ = scalar::element_ptr(&c.kb, DType::F32, sk, c.mul(padded_len(len)?, dkv)?)?;
        let sblk = scalar::element_ptr(&c.kb, DType::F32, sv_, c.mul(padded_len(dvv)?, len)?)?;
        let ld_s = scores_stride(c, len)?;
        let sinv = scalar::element_ptr(
            &c.kb,
            DType::F32,
            sblk,
            c.mul(c.kb.i64_const(ATTENTION_ROWS), ld_s)?,
        )?;
        let call = |f, args: &[inkwell::values::BasicMetadataValueEnum]| {
            c.b()
                .build_call(f, args, "")
                .map_err(c.kb.err())
                .map(|_| ())
        };
        // Kt (dk x len: element (d, j) at k[j * q_row + d]) and V (len x dv), packed.
        call(
            kernels.pack,
            &[
                k.into(),
                one.into(),
                q_row.into(),
                len.into(),
                dkv.into(),
                sk.into(),
            ],
        )?;
        call(
            kernels.pack,
            &[
                v.into(),
                v_row.into(),
                one.into(),
                dvv.into(),
                len.into(),
                sv_.into(),
            ],
        )?;
        c.kb.for_loop(zero, len, rows_step, "qblock", |_, rb| {
            let left = c.b().build_int_sub(len, rb, "left").map_err(c.kb.err())?;
            let rows = c.kb.min_i64(left, rows_step)?;
            let q_blk = scalar::element_ptr(&c.kb, DType::F32, q, c.mul(rb, q_row)?)?;
            call(
                kernels.qk,
                &[
                    q_blk.into(),
                    q_row.into(),
                    sk.into(),
                    sblk.into(),
                    ld_s.into(),
                    zero.into(),
                    rows.into(),
                    len.into(),
                    dkv.into(),
                    dkv.into(),
                ],
            )?;
            c.for_range(zero, rows, "qrow", |c, i| {
                let srow = scalar::element_ptr(&c.kb, DType::F32, sblk, c.mul(i, ld_s)?)?;
                let divide =
                    |kb: &KernelBuilder<'_, 'ctx>,
                     _j: IntValue<'ctx>,
                     x: inkwell::values::VectorValue<'ctx>,
                     _mask: Option<inkwell::values::VectorValue<'ctx>>| {
                        let k = divisor.unwrap_or(1.0);
                        kb.builder()
                            .build_float_div(x, kb.f32_splat_const(k), "sc")
                            .map_err(kb.err())
                    };
                let pre: Option<&RowMap<'_, 'ctx>> = match divisor {
                    Some(_) => Some(&divide),
                    None => None,
                };
                let (inv, _) =
                    softmax_row_unnormalised_f32(c, srow, srow, len, pre, ATTENTION_EXP)?;
                let slot = scalar::element_ptr(&c.kb, DType::F64, sinv, i)?;
                c.b().build_store(slot, inv).map_err(c.kb.err())?;
                Ok(())
            })?;
            let o_blk = scalar::element_ptr(&c.kb, DType::F32, o, c.mul(rb, v_row)?)?;
            kernels.pv(
                c,
                len,
                &[
                    sblk.into(),
                    ld_s.into(),
                    sv_.into(),
                    o_blk.into(),
                    v_row.into(),
                    zero.into(),
                    rows.into(),
                    dvv.into(),
                    len.into(),
                    len.into(),
                ],
            )?;
            scale_rows(c, o_blk, v_row, rows, dvv, sinv, None)
        })
    })?;
    Ok(Parallel::rows(
        md[0].mul(&qd[1]),
        md[1].mul(&md[1]).mul(&qd[2].add(&vd[2])),
    ))
}

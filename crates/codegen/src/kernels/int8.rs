//! Integer matrix products of dynamic int8 quantisation: `C[m, n] = Σ_k (A[m, k] - za) ·
//! (B[k, n] - zb[n])` in wrapping `i32`, for a `u8` `A` known at run time and an `i8` `B` known
//! at compile time (weights), with the x86 integer dot-product instructions.
//!
//! # Two arithmetics (see `Op::MatMulInteger` and ARCHITECTURE.md, Numerics)
//! - `saturate_pairs` (ONNX Runtime on x86 without VNNI): the raw products `A·B` are summed in
//!   adjacent pairs along `k` (`k = 0,1`, `2,3`, ...) that saturate to `i16`, as `vpmaddubsw`
//!   does, then exactly in `i32`; the zero points come in afterwards:
//!   `acc - za Σ_k B - zb Σ_k A + k za zb`. Here `vpmaddubsw` on quads of `k` (two pairs per
//!   `i16` lane pair) and `vpmaddwd` by ones give exactly that.
//! - exact (the ONNX definition): `Σ A·B` without saturation, with the same corrections, which
//!   equal `Σ (A - za)(B - zb)` in wrapping `i32`. With VNNI (AVX-512 VNNI, AVX-VNNI)
//!   `vpdpbusd` adds four exact `u8 x s8` products to each `i32` lane, as ONNX Runtime computes
//!   on such CPUs; without, `A` and `B` are widened to `i16` and `vpmaddwd` sums pairs of
//!   products exactly (half the products per instruction).
//!
//! # Layout
//! `B` is packed at compile time ([`pack_b`]) in panels of `W = NV x lanes` columns: for each
//! group of `g` rows of `k` (`g = 4` bytes for the saturating form and the exact one with
//! VNNI, `g = 2` `i16` for the exact one without), each column's `g` values are adjacent, so one vector holds `lanes` columns' groups and
//! one broadcast of `A`'s `g` values (as one `i32`) feeds a whole row of the tile. Rows of `k`
//! past the end are zero, which adds nothing (and pairs a last odd `k` with a zero, as the
//! interpreter's lone last product). The micro-tile is `MR` rows by `NV` vectors of `i32`
//! accumulators.
//!
//! # The quantised GEMM
//! [`emit_qgemm_const_b`] is the fused `qgemm` on the same packing and arithmetic: it
//! quantises its rows of an `f32` `A` itself (scale and zero point read at run time, per
//! tensor or per row) straight into the layout the micro-kernel broadcasts from, accumulates
//! over the whole of `k` in registers (`vpdpwssd` takes the saturating form's pair sums where
//! the target has VNNI), and dequantises in the epilogue (`za · Σ_k W` off, times `sa · sw`,
//! the bias, the activation) before its only store, with the tile of [`Int8Layout::for_qgemm`].

use inkwell::module::Module;
use inkwell::types::VectorType;
use inkwell::values::{BasicValue, FloatValue, FunctionValue, IntValue, PointerValue, VectorValue};
use inkwell::{FloatPredicate, IntPredicate};
use tcc_ir::Activation;

use crate::error::{Error, Result};
use crate::kernels::{constant_global, vmath, KernelBuilder, Param};
use crate::target::Target;

/// The `nv` vectors of packed `B` for group `s` of `k` in the panel whose first vector is
/// `panel` (vector `panel + s nv + v` of the packed global), loaded with the given alignment.
#[allow(clippy::too_many_arguments)]
fn load_b_group<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    v8: VectorType<'ctx>,
    b_global: PointerValue<'ctx>,
    panel: IntValue<'ctx>,
    s: IntValue<'ctx>,
    nv: usize,
    align: u32,
    internal: &dyn Fn(&'static str) -> Error,
) -> Result<Vec<VectorValue<'ctx>>> {
    let bld = kb.builder();
    let err = || kb.err();
    let at = bld
        .build_int_mul(s, kb.i64_const(nv as i64), "s.v")
        .map_err(err())?;
    let at = bld.build_int_add(panel, at, "s.at").map_err(err())?;
    let mut bv = Vec::with_capacity(nv);
    for v in 0..nv {
        let idx = bld
            .build_int_add(at, kb.i64_const(v as i64), "b.idx")
            .map_err(err())?;
        // SAFETY: the index is inside the packed global.
        let ptr = unsafe { bld.build_in_bounds_gep(v8, b_global, &[idx], "b.p") }.map_err(err())?;
        let load = bld.build_load(v8, ptr, "b.v").map_err(err())?;
        load.as_instruction_value()
            .ok_or_else(|| internal("a load is not an instruction"))?
            .set_alignment(align)
            .map_err(|_| internal("could not align a load"))?;
        bv.push(load.into_vector_value());
    }
    Ok(bv)
}

/// The vector shape of the int8 kernel on a target, or `None` where it has no such
/// instructions (the scalar loop then computes the product).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int8Layout {
    /// `i32` lanes per vector (16 with AVX-512BW, 8 with AVX2).
    pub lanes: u32,
    /// Rows per tile.
    pub mr: u32,
    /// Vectors per tile row.
    pub nv: u32,
    /// Whether the target has `vpdpbusd` at this width (AVX-512 VNNI for 16 lanes, AVX-VNNI
    /// for 8): the exact products then go four at a time into the accumulators.
    pub vnni: bool,
}

impl Int8Layout {
    /// AVX-512BW: 4 x 4 zmm accumulators; AVX2: 2 x 4 ymm (16 registers in all).
    pub fn for_target(target: &Target) -> Option<Int8Layout> {
        let f = target.features();
        if target.f32_lanes() == 16 && f.has("avx512bw") {
            Some(Int8Layout {
                lanes: 16,
                mr: 4,
                nv: 4,
                vnni: f.has("avx512vnni"),
            })
        } else if target.f32_lanes() == 8 && f.has("avx2") {
            Some(Int8Layout {
                lanes: 8,
                mr: 2,
                nv: 4,
                vnni: f.has("avxvnni") || (f.has("avx512vnni") && f.has("avx512vl")),
            })
        } else {
            None
        }
    }

    /// Columns per panel.
    pub fn width(&self) -> usize {
        (self.nv * self.lanes) as usize
    }

    /// Panels covering `n` columns.
    pub fn panels(&self, n: usize) -> usize {
        n.div_ceil(self.width())
    }
}

/// Whether `B` is packed as bytes in groups of 4 rows of `k` (the saturating form, and the
/// exact one with VNNI), rather than as `i16` in pairs (the exact one without).
fn bytes(layout: &Int8Layout, saturate: bool) -> bool {
    saturate || layout.vnni
}

/// Rows of `k` per broadcast of `A`: 4 bytes, or 2 `i16` (see [`bytes`]).
fn group(layout: &Int8Layout, saturate: bool) -> usize {
    if bytes(layout, saturate) {
        4
    } else {
        2
    }
}

/// Packs the row-major `k x n` `b` (see the module documentation) as little-endian bytes:
/// panel, then group of `k`, then column, then the group's values (`i8`, or `i16` for the
/// exact form without VNNI).
pub fn pack_b(layout: &Int8Layout, b: &[i8], k: usize, n: usize, saturate: bool) -> Vec<u8> {
    let g = group(layout, saturate);
    let as_bytes = bytes(layout, saturate);
    let steps = k.div_ceil(g);
    let w = layout.width();
    let mut out = Vec::with_capacity(layout.panels(n) * steps * w * 4);
    for p in 0..layout.panels(n) {
        for s in 0..steps {
            for col in p * w..(p + 1) * w {
                for t in 0..g {
                    let kk = s * g + t;
                    let v = if kk < k && col < n {
                        b[kk * n + col]
                    } else {
                        0
                    };
                    if as_bytes {
                        out.push(v as u8);
                    } else {
                        out.extend_from_slice(&i16::from(v).to_le_bytes());
                    }
                }
            }
        }
    }
    out
}

/// Emits the product with a constant `B` (`k x n` `i8`, row-major) and constant `B` zero
/// points `zb` (one, or one per column):
///
/// `void name(const uint8_t *a, int64_t lda, int64_t za, int32_t *c, int64_t ldc,
///            int64_t m0, int64_t m1)`
///
/// computes rows `m0..m1` of `C` (see the module documentation), `za` being `A`'s zero point
/// (`0..=255`). `A`'s rows are `lda` bytes apart, `C`'s `ldc` elements.
#[allow(clippy::too_many_arguments)]
pub fn emit_matmul_u8i8_const_b<'ctx>(
    module: &Module<'ctx>,
    target: &Target,
    name: &str,
    layout: &Int8Layout,
    b: &[i8],
    k: usize,
    n: usize,
    zb: &[i8],
    saturate: bool,
) -> Result<FunctionValue<'ctx>> {
    let internal = |message| Error::Internal {
        function: name.to_owned(),
        message,
    };
    if b.len() != k * n || !(zb.len() == 1 || zb.len() == n) || n == 0 {
        return Err(internal("int8 GEMM operands of the wrong size"));
    }
    let lanes = layout.lanes;
    let w = layout.width();
    let panels = layout.panels(n);
    let g = group(layout, saturate);
    let as_bytes = bytes(layout, saturate);
    let steps = k.div_ceil(g);
    let full_steps = k / g;
    // Per column (padded to whole panels): Σ_k B and the zero point, as i32.
    let mut colsum = vec![0i32; panels * w];
    let mut zbs = vec![0i32; panels * w];
    for col in 0..n {
        colsum[col] = (0..k).map(|kk| i32::from(b[kk * n + col])).sum();
        zbs[col] = i32::from(if zb.len() == 1 { zb[0] } else { zb[col] });
    }
    let packed = pack_b(layout, b, k, n, saturate);

    use Param::{Ptr, I64};
    let kb = KernelBuilder::new(
        module,
        target,
        name,
        &[Ptr, I64, I64, Ptr, I64, I64, I64],
        lanes,
    )?;
    let ctx = kb.context();
    let bld = kb.builder();
    let i8t = ctx.i8_type();
    let i16t = ctx.i16_type();
    let i32t = ctx.i32_type();
    let i64t = ctx.i64_type();
    let v32 = i32t.vec_type(lanes);
    let v16 = i16t.vec_type(lanes * 2);
    let v8 = i8t.vec_type(lanes * 4);
    let bytes_global =
        |suffix: &str, data: Vec<u8>| constant_global(module, &format!("{name}.{suffix}"), &data);
    let i32_bytes = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let b_global = bytes_global("b", packed);
    let colsum_global = bytes_global("colsum", i32_bytes(&colsum));
    let zb_global = bytes_global("zb", i32_bytes(&zbs));

    let a = kb.ptr_param(0)?;
    let lda = kb.int_param(1)?;
    let za64 = kb.int_param(2)?;
    let c = kb.ptr_param(3)?;
    let ldc = kb.int_param(4)?;
    let m0 = kb.int_param(5)?;
    let m1 = kb.int_param(6)?;
    let err = || kb.err();
    let za = bld.build_int_truncate(za64, i32t, "za").map_err(err())?;
    let za_v = kb.splat(za.into(), "za.v")?;
    let kza = bld
        .build_int_mul(za, i32t.const_int(k as u64, false), "k.za")
        .map_err(err())?;
    let kza_v = kb.splat(kza.into(), "kza.v")?;
    let ones16 = VectorType::const_vector(&vec![i16t.const_int(1, false); (lanes * 2) as usize]);
    let dpbusd = if layout.vnni && !saturate {
        Some(kb.intrinsic(
            if lanes == 16 {
                "llvm.x86.avx512.vpdpbusd.512"
            } else {
                "llvm.x86.avx512.vpdpbusd.256"
            },
            &[],
        )?)
    } else {
        None
    };
    let (madd_ub, madd_wd) = if lanes == 16 {
        (
            kb.intrinsic("llvm.x86.avx512.pmaddubs.w.512", &[])?,
            kb.intrinsic("llvm.x86.avx512.pmaddw.d.512", &[])?,
        )
    } else {
        (
            kb.intrinsic("llvm.x86.avx2.pmadd.ub.sw", &[])?,
            kb.intrinsic("llvm.x86.avx2.pmadd.wd", &[])?,
        )
    };
    let mr = layout.mr as usize;
    let nv = layout.nv as usize;
    // Accumulators and row sums live in stack slots that LLVM promotes to registers.
    let entry = kb.entry_builder()?;
    let mut accs = Vec::new();
    for _ in 0..mr * nv {
        accs.push(entry.build_alloca(v32, "acc").map_err(err())?);
    }
    let mut rowsums = Vec::new();
    for _ in 0..mr {
        rowsums.push(entry.build_alloca(i32t, "rowsum").map_err(err())?);
    }
    let byte_at = |row: IntValue<'ctx>, col: IntValue<'ctx>| -> Result<IntValue<'ctx>> {
        let off = bld.build_int_mul(row, lda, "a.row").map_err(err())?;
        let off = bld.build_int_add(off, col, "a.off").map_err(err())?;
        // SAFETY: callers pass indices inside A.
        let ptr = unsafe { bld.build_in_bounds_gep(i8t, a, &[off], "a.p") }.map_err(err())?;
        let v = bld.build_load(i8t, ptr, "a.b").map_err(err())?;
        bld.build_int_z_extend(v.into_int_value(), i32t, "a.z")
            .map_err(err())
    };
    // A's group of g values at (row, s * g) as one i32: bytes for the saturating form,
    // zero-extended i16 halves for the exact one; values past k are 0.
    let group_of =
        |row: IntValue<'ctx>, s: IntValue<'ctx>, valid: usize| -> Result<IntValue<'ctx>> {
            let base = bld
                .build_int_mul(s, i64t.const_int(g as u64, false), "a.k")
                .map_err(err())?;
            let mut word = i32t.const_zero();
            let shift = if as_bytes { 8 } else { 16 };
            for t in 0..valid {
                let col = bld
                    .build_int_add(base, i64t.const_int(t as u64, false), "a.kt")
                    .map_err(err())?;
                let v = byte_at(row, col)?;
                let v = bld
                    .build_left_shift(v, i32t.const_int((shift * t) as u64, false), "a.sh")
                    .map_err(err())?;
                word = bld.build_or(word, v, "a.w").map_err(err())?;
            }
            Ok(word)
        };

    let mr_c = kb.i64_const(mr as i64);
    kb.for_loop(m0, m1, mr_c, "ib", |kb, ib| {
        let left = bld.build_int_sub(m1, ib, "m.left").map_err(err())?;
        let rows_here = kb.min_i64(left, mr_c)?;
        let last_row = bld
            .build_int_sub(rows_here, kb.i64_const(1), "row.last")
            .map_err(err())?;
        let mut rows = Vec::new();
        for i in 0..mr {
            // Rows past m1 repeat the last valid row; their results are never stored.
            let r = kb.min_i64(kb.i64_const(i as i64), last_row)?;
            rows.push(bld.build_int_add(ib, r, "row").map_err(err())?);
        }
        // Σ_k A per row.
        for (i, &row) in rows.iter().enumerate() {
            bld.build_store(rowsums[i], i32t.const_zero())
                .map_err(err())?;
            kb.for_loop(
                kb.i64_const(0),
                kb.i64_const(k as i64),
                kb.i64_const(1),
                "ks",
                |_, kk| {
                    let v = byte_at(row, kk)?;
                    let s = bld.build_load(i32t, rowsums[i], "rs").map_err(err())?;
                    let s = bld
                        .build_int_add(s.into_int_value(), v, "rs")
                        .map_err(err())?;
                    bld.build_store(rowsums[i], s).map_err(err())?;
                    Ok(())
                },
            )?;
        }
        kb.for_loop(
            kb.i64_const(0),
            kb.i64_const(panels as i64),
            kb.i64_const(1),
            "p",
            |kb, p| {
                for acc in &accs {
                    bld.build_store(*acc, v32.const_zero()).map_err(err())?;
                }
                let panel = bld
                    .build_int_mul(p, kb.i64_const((steps * nv) as i64), "panel")
                    .map_err(err())?;
                // One group of k: load the panel's vectors, broadcast each row's group.
                let step = |s: IntValue<'ctx>, valid: usize| -> Result<()> {
                    let bv = load_b_group(kb, v8, b_global, panel, s, nv, 64, &internal)?;
                    for (i, &row) in rows.iter().enumerate() {
                        let word = group_of(row, s, valid)?;
                        let bc = kb.splat(word.into(), "a.bc")?;
                        for (v, b_vec) in bv.iter().enumerate() {
                            let slot = accs[i * nv + v];
                            if let Some(dp) = dpbusd {
                                // Four exact u8 x s8 products per lane, added to the lane.
                                let acc = bld.build_load(v32, slot, "acc").map_err(err())?;
                                let b32 = bld.build_bit_cast(*b_vec, v32, "b32").map_err(err())?;
                                let sum =
                                    kb.call(dp, &[acc.into(), bc.into(), b32.into()], "dp")?;
                                bld.build_store(slot, sum.into_vector_value())
                                    .map_err(err())?;
                                continue;
                            }
                            let dot = if saturate {
                                let a8 = bld.build_bit_cast(bc, v8, "a8").map_err(err())?;
                                let pairs =
                                    kb.call(madd_ub, &[a8.into(), (*b_vec).into()], "pairs")?;
                                kb.call(madd_wd, &[pairs.into(), ones16.into()], "quad")?
                            } else {
                                let a16 = bld.build_bit_cast(bc, v16, "a16").map_err(err())?;
                                let b16 = bld.build_bit_cast(*b_vec, v16, "b16").map_err(err())?;
                                kb.call(madd_wd, &[a16.into(), b16.into()], "pair")?
                            };
                            let acc = bld.build_load(v32, slot, "acc").map_err(err())?;
                            let sum = bld
                                .build_int_add(
                                    acc.into_vector_value(),
                                    dot.into_vector_value(),
                                    "acc",
                                )
                                .map_err(err())?;
                            bld.build_store(slot, sum).map_err(err())?;
                        }
                    }
                    Ok(())
                };
                kb.for_loop(
                    kb.i64_const(0),
                    kb.i64_const(full_steps as i64),
                    kb.i64_const(1),
                    "s",
                    |_, s| step(s, g),
                )?;
                if full_steps < steps {
                    step(kb.i64_const(full_steps as i64), k - full_steps * g)?;
                }
                // Epilogue: acc - za Σ B - zb Σ A + k za zb, stored for valid rows and columns.
                for v in 0..nv {
                    let col = bld
                        .build_int_mul(p, kb.i64_const(w as i64), "col")
                        .map_err(err())?;
                    let col = bld
                        .build_int_add(col, kb.i64_const((v * lanes as usize) as i64), "col")
                        .map_err(err())?;
                    let vec_at = |global: PointerValue<'ctx>| -> Result<VectorValue<'ctx>> {
                        // SAFETY: the padded per-column globals cover every panel.
                        let ptr = unsafe { bld.build_in_bounds_gep(i32t, global, &[col], "g.p") }
                            .map_err(err())?;
                        Ok(bld
                            .build_load(v32, ptr, "g.v")
                            .map_err(err())?
                            .into_vector_value())
                    };
                    let cs = vec_at(colsum_global)?;
                    let zbv = vec_at(zb_global)?;
                    let t1 = bld.build_int_mul(za_v, cs, "t1").map_err(err())?;
                    let t3 = bld.build_int_mul(kza_v, zbv, "t3").map_err(err())?;
                    let n_v = kb.i64_const(n as i64);
                    let more = bld
                        .build_int_compare(inkwell::IntPredicate::SLT, col, n_v, "col.in")
                        .map_err(err())?;
                    let store_block = kb.append_block("store");
                    let next_block = kb.append_block("store.next");
                    bld.build_conditional_branch(more, store_block, next_block)
                        .map_err(err())?;
                    bld.position_at_end(store_block);
                    let mask = kb.tail_mask(col, n_v)?;
                    for i in 0..mr {
                        let rs = bld.build_load(i32t, rowsums[i], "rs").map_err(err())?;
                        let rs = kb.splat(rs, "rs.v")?;
                        let t2 = bld.build_int_mul(zbv, rs, "t2").map_err(err())?;
                        let acc = bld
                            .build_load(v32, accs[i * nv + v], "acc")
                            .map_err(err())?;
                        let r = bld
                            .build_int_sub(acc.into_vector_value(), t1, "r1")
                            .map_err(err())?;
                        let r = bld.build_int_sub(r, t2, "r2").map_err(err())?;
                        let r = bld.build_int_add(r, t3, "r3").map_err(err())?;
                        let valid_row = bld
                            .build_int_compare(
                                inkwell::IntPredicate::SLT,
                                kb.i64_const(i as i64),
                                rows_here,
                                "row.in",
                            )
                            .map_err(err())?;
                        let row_block = kb.append_block("row.store");
                        let row_next = kb.append_block("row.next");
                        bld.build_conditional_branch(valid_row, row_block, row_next)
                            .map_err(err())?;
                        bld.position_at_end(row_block);
                        let off = bld.build_int_mul(rows[i], ldc, "c.row").map_err(err())?;
                        let off = bld.build_int_add(off, col, "c.off").map_err(err())?;
                        let rf = bld
                            .build_bit_cast(r, kb.f32_vector(), "r.f")
                            .map_err(err())?
                            .into_vector_value();
                        kb.store_f32(c, off, rf, Some(mask))?;
                        bld.build_unconditional_branch(row_next).map_err(err())?;
                        bld.position_at_end(row_next);
                    }
                    bld.build_unconditional_branch(next_block).map_err(err())?;
                    bld.position_at_end(next_block);
                }
                Ok(())
            },
        )
    })?;
    bld.build_return(None).map_err(err())?;
    Ok(kb.function())
}

// ---------------------------------------------------------------------------------------------
// The quantised GEMM (`qgemm`): quantisation of A, the integer product and the dequantising
// epilogue in one kernel.
// ---------------------------------------------------------------------------------------------

/// The byte size of the column block of [`emit_qgemm_const_b`]: the packed `W` of that many
/// panels stays in L2 (1 MiB per core on Zen 4, 1.25 to 2 MiB on Intel's server cores) while
/// every row block of the task goes through it. Measured neutral on Zen 4 (`qgemm_bench`, up
/// to 2.4 MiB of weights, one and two threads: an 8-row tile needs 8 bytes of `W` per
/// `vpdpbusd`, which L3 streams as fast); it keeps the weights' traffic in L2 where L3 is
/// slower or shared by more cores.
const QGEMM_BLOCK_BYTES: usize = 384 << 10;

/// The most stack [`emit_qgemm_const_b`]'s kernel takes for a block of quantised rows (the f32
/// GEMM's block of `A` takes 24 KiB; threads have at least 2 MiB).
pub const QGEMM_STACK_BYTES: usize = 32 << 10;

/// The constant operands and the form of a quantised GEMM ([`emit_qgemm_const_b`]).
#[derive(Clone, Copy, Debug)]
pub struct QGemmConst<'a> {
    /// The weights, row-major `k x n`.
    pub w: &'a [i8],
    /// Rows of the weights (the accumulation length).
    pub k: usize,
    /// Columns of the weights and of the result.
    pub n: usize,
    /// The weights' scales, one per column.
    pub sw: &'a [f32],
    /// The bias, one per column, if any.
    pub bias: Option<&'a [f32]>,
    /// The activation, last in the epilogue.
    pub activation: Activation,
    /// Whether adjacent products along `k` are summed in pairs that saturate to `i16` (see
    /// the module documentation), rather than exactly.
    pub saturate: bool,
}

impl Int8Layout {
    /// The tile of [`emit_qgemm_const_b`] on a target, or `None` where it has no int8
    /// instructions (the scalar loop then computes the op).
    ///
    /// - AVX-512BW: 8 rows x 3 zmm (48 columns): 24 accumulators, three panel vectors and a
    ///   broadcast of 32 registers; with VNNI a step of four `k` is 3 loads, 8 broadcasts and
    ///   24 `vpdpbusd`. On Zen 4 (`examples/qgemm_bench.rs`, minilm's shapes) 4 x 4 measured
    ///   the same, 6 x 4, 10 x 2 and 12 x 2 one to four percent slower; the product runs at
    ///   about 93% of the `vpdpbusd` peak.
    /// - AVX2: 4 rows x 2 ymm (16 columns): 8 accumulators, two panel vectors, a broadcast and
    ///   the temporaries of the forms without VNNI (`vpmaddubsw`'s pairs, the ones) in 16.
    pub fn for_qgemm(target: &Target) -> Option<Int8Layout> {
        let base = Int8Layout::for_target(target)?;
        let (mr, nv) = if base.lanes == 16 { (8, 3) } else { (4, 2) };
        Some(Int8Layout { mr, nv, ..base })
    }

    /// The bytes per row of the quantised `A` that [`emit_qgemm_const_b`] writes to its
    /// scratch: `k` rounded up to whole vectors, as bytes (`u8`) or `i16` (the exact form
    /// without VNNI), rounded up to a cache line. The values past `k` are zeros.
    pub fn qgemm_row_bytes(&self, k: usize, saturate: bool) -> usize {
        let elem = if bytes(self, saturate) { 1 } else { 2 };
        (k.div_ceil(self.lanes as usize) * self.lanes as usize * elem).div_ceil(64) * 64
    }

    /// Whether [`emit_qgemm_const_b`]'s kernel may be called on part of the panels
    /// concurrently with calls on the others over the same rows (a split by columns): it then
    /// quantises each block of rows into a buffer of [`Int8Layout::mr`] rows on its stack,
    /// which it has while that is at most [`QGEMM_STACK_BYTES`] (`k` up to 4096 bytes a row).
    pub fn qgemm_splits_columns(&self, k: usize, saturate: bool) -> bool {
        let rows = self.mr as usize * self.qgemm_row_bytes(k, saturate);
        rows > 0 && rows <= QGEMM_STACK_BYTES
    }

    /// The column block of [`emit_qgemm_const_b`] for an accumulation length of `k`, in panels.
    fn qgemm_block_panels(&self, k: usize, saturate: bool) -> usize {
        let panel = k.div_ceil(group(self, saturate)) * self.width() * 4;
        (QGEMM_BLOCK_BYTES / panel.max(1)).max(1)
    }
}

/// Emits the quantised GEMM with constant weights, their scales and bias:
///
/// `void name(const float *a, int64_t lda, const float *sa, const uint8_t *za, int64_t s_step,
///            float *c, int64_t ldc, uint8_t *q, int64_t m0, int64_t m1, int64_t p0,
///            int64_t p1)`
///
/// computes rows `m0..m1` and the columns of panels `p0..p1` (of [`Int8Layout::width`]
/// columns; `p1` is clamped to the panel count) of
/// `C = act(f32(Σ_k (Q - za) W) * (sa * sw) + bias)` where
/// `Q = u8(min(max(round_half_even(A / sa) + f32(za), 0), 255))`: row `r` of `A` has the
/// scale `sa[r * s_step]` and the zero point `za[r * s_step]` (`s_step` is 0 for one scale
/// for the whole tensor, 1 for one per row). `A` and `C` rows are `lda` and `ldc` floats apart.
///
/// A call over all the panels first quantises its rows of `A` into `q` (row `r` at `r *`
/// [`Int8Layout::qgemm_row_bytes`], so concurrent calls over all the panels need disjoint
/// rows or distinct buffers), in the layout the micro-kernel broadcasts from (four bytes of
/// `k`, or two `i16`, per broadcast) with zeros past `k`. A call over some of the panels
/// quantises each block of rows into a buffer on its stack instead, so that concurrent calls
/// over other panels may take the same rows, where [`Int8Layout::qgemm_splits_columns`] (else
/// such calls too need disjoint rows). Then, per column block of panels whose packed `W`
/// stays in L2, per block of [`Int8Layout::mr`] rows (their quantised rows stay in L1), per
/// panel, the micro-kernel accumulates the tile's `i32` products over the whole of `k` in
/// registers and the epilogue, still in registers, takes off `za * Σ_k W` (column sums packed
/// at compile time), converts to `f32`, multiplies by `sa * sw` (rounded to f32 first),
/// adds the bias, applies the activation ([`crate::kernels::vmath`]) and stores the tile once.
///
/// Every step rounds as the op's expansion does, so the result before the activation is
/// the interpreter's bit for bit. No subnormal float is made on the way for normal operands:
/// an element of `A` below `|sa| / 2` in magnitude, whose quotient rounds to 0 anyway, is
/// replaced by 0 before the division, so no quotient is subnormal; padding columns have scale
/// and bias 0 and padding rows repeat the last valid row.
pub fn emit_qgemm_const_b<'ctx>(
    module: &Module<'ctx>,
    target: &Target,
    name: &str,
    layout: &Int8Layout,
    op: &QGemmConst<'_>,
) -> Result<FunctionValue<'ctx>> {
    let internal = |message| Error::Internal {
        function: name.to_owned(),
        message,
    };
    let (k, n) = (op.k, op.n);
    if op.w.len() != k * n || op.sw.len() != n || op.bias.is_some_and(|b| b.len() != n) || n == 0 {
        return Err(internal("quantised GEMM operands of the wrong size"));
    }
    let saturate = op.saturate;
    let lanes = layout.lanes;
    let width = layout.width();
    let panels = layout.panels(n);
    let as_bytes = bytes(layout, saturate);
    let steps = k.div_ceil(group(layout, saturate));
    let row_bytes = layout.qgemm_row_bytes(k, saturate);
    let block = layout.qgemm_block_panels(k, saturate);
    // Per column, padded to whole panels: Σ_k W, the scale and the bias (0 past n).
    let mut colsum = vec![0i32; panels * width];
    let mut scales = vec![0f32; panels * width];
    let mut biases = vec![0f32; panels * width];
    for col in 0..n {
        colsum[col] = (0..k).fold(0i32, |s, kk| s.wrapping_add(i32::from(op.w[kk * n + col])));
        scales[col] = op.sw[col];
        biases[col] = op.bias.map_or(0.0, |b| b[col]);
    }
    let packed = pack_b(layout, op.w, k, n, saturate);

    use Param::{Ptr, I64};
    let kb = KernelBuilder::new(
        module,
        target,
        name,
        &[Ptr, I64, Ptr, Ptr, I64, Ptr, I64, Ptr, I64, I64, I64, I64],
        lanes,
    )?;
    let noalias = inkwell::attributes::Attribute::get_named_enum_kind_id("noalias");
    for param in [5, 7] {
        kb.function().add_attribute(
            inkwell::attributes::AttributeLoc::Param(param),
            kb.context().create_enum_attribute(noalias, 0),
        );
    }
    let ctx = kb.context();
    let bld = kb.builder();
    let err = || kb.err();
    let i8t = ctx.i8_type();
    let i16t = ctx.i16_type();
    let i32t = ctx.i32_type();
    let f32t = ctx.f32_type();
    let v32 = i32t.vec_type(lanes);
    let v8 = i8t.vec_type(lanes * 4);
    let vf = kb.f32_vector();
    let global =
        |suffix: &str, data: Vec<u8>| constant_global(module, &format!("{name}.{suffix}"), &data);
    let le = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let b_global = global("b", packed);
    let colsum_global = global(
        "colsum",
        le(&colsum.iter().map(|&x| x as u32).collect::<Vec<_>>()),
    );
    let sw_global = global(
        "sw",
        le(&scales.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
    );
    let bias_global = op.bias.map(|_| {
        global(
            "bias",
            le(&biases.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
        )
    });

    let a = kb.ptr_param(0)?;
    let lda = kb.int_param(1)?;
    let sa = kb.ptr_param(2)?;
    let za = kb.ptr_param(3)?;
    let s_step = kb.int_param(4)?;
    let c = kb.ptr_param(5)?;
    let ldc = kb.int_param(6)?;
    let q = kb.ptr_param(7)?;
    let m0 = kb.int_param(8)?;
    let m1 = kb.int_param(9)?;
    let p0 = kb.int_param(10)?;
    let p1 = kb.min_i64(kb.int_param(11)?, kb.i64_const(panels as i64))?;
    let row_bytes_c = kb.i64_const(row_bytes as i64);

    // A row's scale and zero point (as i32).
    let scale_of = |row: IntValue<'ctx>| -> Result<(FloatValue<'ctx>, IntValue<'ctx>)> {
        let at = bld.build_int_mul(row, s_step, "s.at").map_err(err())?;
        // SAFETY: row r's scale and zero point are at r * s_step, inside sa and za.
        let sp = unsafe { bld.build_in_bounds_gep(f32t, sa, &[at], "sa.p") }.map_err(err())?;
        let zp = unsafe { bld.build_in_bounds_gep(i8t, za, &[at], "za.p") }.map_err(err())?;
        let s = bld.build_load(f32t, sp, "sa").map_err(err())?;
        let z = bld.build_load(i8t, zp, "za").map_err(err())?;
        let z = bld
            .build_int_z_extend(z.into_int_value(), i32t, "za.i")
            .map_err(err())?;
        Ok((s.into_float_value(), z))
    };
    let q_row = |row: IntValue<'ctx>| -> Result<PointerValue<'ctx>> {
        let off = bld
            .build_int_mul(row, row_bytes_c, "q.off")
            .map_err(err())?;
        // SAFETY: the caller's q holds row_bytes per row up to m1.
        unsafe { bld.build_in_bounds_gep(i8t, q, &[off], "q.row") }.map_err(err())
    };

    // 1. Quantisation of a row of A into `dst`.
    let fabs = kb.intrinsic("llvm.fabs", &[vf.into()])?;
    let roundeven = kb.intrinsic("llvm.roundeven", &[vf.into()])?;
    let one = kb.i64_const(1);
    let k_c = kb.i64_const(k as i64);
    let quantise_row = |row: IntValue<'ctx>, dst: PointerValue<'ctx>| -> Result<()> {
        let (s, z) = scale_of(row)?;
        let zf = bld
            .build_unsigned_int_to_float(z, f32t, "za.f")
            .map_err(err())?;
        let s_v = kb.splat(s.into(), "sa.v")?;
        let zf_v = kb.splat(zf.into(), "za.v")?;
        // |x| < |sa| / 2 rounds to 0 (ties to even) as 0 does: such x become 0 before the
        // division, so no quotient is subnormal. (Halving a subnormal |sa| may round, but no
        // float lies between |sa| / 2 and its rounding, so the test is still exact.)
        let abs_s = kb.call(fabs, &[s_v.into()], "sa.abs")?.into_vector_value();
        let half = bld
            .build_float_mul(abs_s, kb.f32_splat_const(0.5), "sa.half")
            .map_err(err())?;
        let a_off = bld.build_int_mul(row, lda, "a.off").map_err(err())?;
        let a_row = kb.f32_element_ptr(a, a_off)?;
        kb.vector_loop_in(k_c, |kb, i, mask| {
            let x = kb.load_f32(a_row, i, mask)?;
            let ax = kb.call(fabs, &[x.into()], "x.abs")?.into_vector_value();
            let small = bld
                .build_float_compare(FloatPredicate::OLT, ax, half, "x.small")
                .map_err(err())?;
            let x = bld
                .build_select(small, vf.const_zero(), x, "x")
                .map_err(err())?
                .into_vector_value();
            let d = bld.build_float_div(x, s_v, "x.s").map_err(err())?;
            let r = kb.call(roundeven, &[d.into()], "x.r")?.into_vector_value();
            let t = bld.build_float_add(r, zf_v, "x.z").map_err(err())?;
            // max(t, 0) then min(t, 255); NaN (which the interpreter's u8 cast makes 0)
            // fails `t > 0` and becomes 0.
            let zero = vf.const_zero();
            let pos = bld
                .build_float_compare(FloatPredicate::OGT, t, zero, "x.pos")
                .map_err(err())?;
            let t = bld
                .build_select(pos, t, zero, "x.lo")
                .map_err(err())?
                .into_vector_value();
            let top = kb.f32_splat_const(255.0);
            let below = bld
                .build_float_compare(FloatPredicate::OLT, t, top, "x.below")
                .map_err(err())?;
            let t = bld
                .build_select(below, t, top, "x.hi")
                .map_err(err())?
                .into_vector_value();
            let mut qi = bld
                .build_float_to_signed_int(t, v32, "q.i")
                .map_err(err())?;
            if let Some(mask) = mask {
                // Past k: zeros, which the padded rows of W multiply.
                qi = bld
                    .build_select(mask, qi, v32.const_zero(), "q.pad")
                    .map_err(err())?
                    .into_vector_value();
            }
            let (narrow, elem) = if as_bytes {
                (i8t.vec_type(lanes), 1)
            } else {
                (i16t.vec_type(lanes), 2)
            };
            let qn = bld.build_int_truncate(qi, narrow, "q.n").map_err(err())?;
            let off = bld
                .build_int_mul(i, kb.i64_const(elem), "q.at")
                .map_err(err())?;
            // SAFETY: rows are padded to whole vectors.
            let p = unsafe { bld.build_in_bounds_gep(i8t, dst, &[off], "q.p") }.map_err(err())?;
            let st = bld.build_store(p, qn).map_err(err())?;
            st.set_alignment(1)
                .map_err(|_| internal("could not align a store"))?;
            Ok(())
        })
    };
    // A call over all the panels quantises its rows into q first; one over some of them (a
    // column group, whose rows other calls also read) quantises each block of rows into a
    // buffer on its stack, where the kernel has one (see `Int8Layout::qgemm_splits_columns`).
    let block_buf = if layout.qgemm_splits_columns(k, saturate) {
        let entry = kb.entry_builder()?;
        let ty = i8t.array_type((layout.mr as usize * row_bytes) as u32);
        let buf = entry.build_alloca(ty, "q.block").map_err(err())?;
        buf.as_instruction()
            .ok_or_else(|| internal("an alloca is not an instruction"))?
            .set_alignment(64)
            .map_err(|_| internal("could not align the row block"))?;
        Some(buf)
    } else {
        None
    };
    let whole = match block_buf {
        Some(_) => {
            let from_0 = bld
                .build_int_compare(IntPredicate::EQ, p0, kb.i64_const(0), "p.from0")
                .map_err(err())?;
            let to_end = bld
                .build_int_compare(IntPredicate::EQ, p1, kb.i64_const(panels as i64), "p.toend")
                .map_err(err())?;
            bld.build_and(from_0, to_end, "p.whole").map_err(err())?
        }
        None => ctx.bool_type().const_int(1, false),
    };
    let quantise_all = kb.append_block("quant.all");
    let quantised = kb.append_block("quant.done");
    bld.build_conditional_branch(whole, quantise_all, quantised)
        .map_err(err())?;
    bld.position_at_end(quantise_all);
    kb.for_loop(m0, m1, one, "quant", |_, row| {
        quantise_row(row, q_row(row)?)
    })?;
    bld.build_unconditional_branch(quantised).map_err(err())?;
    bld.position_at_end(quantised);

    // 2. The product, per column block, row block and panel.
    let dot = Dot::new(&kb, layout, saturate)?;
    let mr = layout.mr as usize;
    let nv = layout.nv as usize;
    let block_c = kb.i64_const(block as i64);
    kb.for_loop(p0, p1, block_c, "nb", |kb, nb| {
        let nb_end = bld.build_int_add(nb, block_c, "nb.end").map_err(err())?;
        let nb_end = kb.min_i64(nb_end, p1)?;
        kb.for_loop(m0, m1, kb.i64_const(mr as i64), "ib", |kb, ib| {
            let left = bld.build_int_sub(m1, ib, "m.left").map_err(err())?;
            let rows_here = kb.min_i64(left, kb.i64_const(mr as i64))?;
            let last_row = bld
                .build_int_sub(rows_here, one, "row.last")
                .map_err(err())?;
            let full_rows = bld
                .build_int_compare(
                    IntPredicate::EQ,
                    rows_here,
                    kb.i64_const(mr as i64),
                    "rows.full",
                )
                .map_err(err())?;
            // Rows past m1 repeat the last valid one (never stored).
            let mut rows = Vec::with_capacity(mr);
            let row_at = |i: usize| -> Result<IntValue<'ctx>> {
                let r = kb.min_i64(kb.i64_const(i as i64), last_row)?;
                bld.build_int_add(ib, r, "row").map_err(err())
            };
            let block_row = |i: usize| -> Result<Option<PointerValue<'ctx>>> {
                let Some(buf) = block_buf else {
                    return Ok(None);
                };
                let off = kb.i64_const((i * row_bytes) as i64);
                // SAFETY: the buffer holds mr rows.
                let p =
                    unsafe { bld.build_in_bounds_gep(i8t, buf, &[off], "q.b") }.map_err(err())?;
                Ok(Some(p))
            };
            if block_buf.is_some() {
                let here = kb.append_block("quant.block");
                let ready = kb.append_block("quant.block.done");
                bld.build_conditional_branch(whole, ready, here)
                    .map_err(err())?;
                bld.position_at_end(here);
                for i in 0..mr {
                    if let Some(dst) = block_row(i)? {
                        quantise_row(row_at(i)?, dst)?;
                    }
                }
                bld.build_unconditional_branch(ready).map_err(err())?;
                bld.position_at_end(ready);
            }
            for i in 0..mr {
                let row = row_at(i)?;
                let (s, z) = scale_of(row)?;
                let c_off = bld.build_int_mul(row, ldc, "c.off").map_err(err())?;
                let valid = bld
                    .build_int_compare(
                        IntPredicate::SLT,
                        kb.i64_const(i as i64),
                        rows_here,
                        "row.ok",
                    )
                    .map_err(err())?;
                let q = match block_row(i)? {
                    Some(b) => bld
                        .build_select(whole, q_row(row)?, b, "q.src")
                        .map_err(err())?
                        .into_pointer_value(),
                    None => q_row(row)?,
                };
                rows.push(TileRow {
                    q,
                    scale: kb.splat(s.into(), "sa.v")?,
                    zero: kb.splat(z.into(), "za.v")?,
                    c: kb.f32_element_ptr(c, c_off)?,
                    valid,
                });
            }
            kb.for_loop(nb, nb_end, one, "p", |kb, p| {
                // The k loop: NV panel vectors and MR broadcasts of A per group of k.
                let panel = bld
                    .build_int_mul(p, kb.i64_const((steps * nv) as i64), "panel")
                    .map_err(err())?;
                let zero = v32.const_zero();
                let mut accs = vec![zero; mr * nv];
                if steps > 0 {
                    let pre = kb.current_block()?;
                    let body = kb.append_block("k.body");
                    let exit = kb.append_block("k.exit");
                    bld.build_unconditional_branch(body).map_err(err())?;
                    bld.position_at_end(body);
                    let s_phi = bld.build_phi(ctx.i64_type(), "s").map_err(err())?;
                    let s = s_phi.as_basic_value().into_int_value();
                    let mut phis = Vec::with_capacity(mr * nv);
                    for _ in 0..mr * nv {
                        phis.push(bld.build_phi(v32, "acc").map_err(err())?);
                    }
                    let bv = load_b_group(kb, v8, b_global, panel, s, nv, lanes * 4, &internal)?;
                    let mut next = Vec::with_capacity(mr * nv);
                    for (i, row) in rows.iter().enumerate() {
                        // SAFETY: group s of the row is inside its padded length.
                        let ptr = unsafe { bld.build_in_bounds_gep(i32t, row.q, &[s], "a.p") }
                            .map_err(err())?;
                        let word = bld.build_load(i32t, ptr, "a.w").map_err(err())?;
                        word.as_instruction_value()
                            .ok_or_else(|| internal("a load is not an instruction"))?
                            .set_alignment(4)
                            .map_err(|_| internal("could not align a load"))?;
                        let bc = kb.splat(word, "a.bc")?;
                        for (v, b) in bv.iter().enumerate() {
                            let acc = phis[i * nv + v].as_basic_value().into_vector_value();
                            next.push(dot.step(kb, acc, bc, *b)?);
                        }
                    }
                    let s_next = bld.build_int_nsw_add(s, one, "s.next").map_err(err())?;
                    let more = bld
                        .build_int_compare(
                            IntPredicate::SLT,
                            s_next,
                            kb.i64_const(steps as i64),
                            "s.more",
                        )
                        .map_err(err())?;
                    bld.build_conditional_branch(more, body, exit)
                        .map_err(err())?;
                    s_phi.add_incoming(&[(&kb.i64_const(0), pre), (&s_next, body)]);
                    for (phi, value) in phis.iter().zip(&next) {
                        phi.add_incoming(&[(&zero, pre), (value, body)]);
                    }
                    bld.position_at_end(exit);
                    accs = next;
                }
                // The epilogue, in registers: acc - za Σ W, to f32, times sa * sw, plus the
                // bias, the activation.
                let col0 = bld
                    .build_int_mul(p, kb.i64_const(width as i64), "col0")
                    .map_err(err())?;
                let mut cols = Vec::with_capacity(nv);
                for v in 0..nv {
                    let col = bld
                        .build_int_add(col0, kb.i64_const((v as u32 * lanes) as i64), "col")
                        .map_err(err())?;
                    let table = |g: PointerValue<'ctx>,
                                 ty: VectorType<'ctx>|
                     -> Result<VectorValue<'ctx>> {
                        // SAFETY: the per-column tables are padded to whole panels.
                        let ptr = unsafe { bld.build_in_bounds_gep(i32t, g, &[col], "t.p") }
                            .map_err(err())?;
                        let load = bld.build_load(ty, ptr, "t.v").map_err(err())?;
                        load.as_instruction_value()
                            .ok_or_else(|| internal("a load is not an instruction"))?
                            .set_alignment(lanes * 4)
                            .map_err(|_| internal("could not align a load"))?;
                        Ok(load.into_vector_value())
                    };
                    cols.push((
                        col,
                        table(colsum_global, v32)?,
                        table(sw_global, vf)?,
                        bias_global.map(|g| table(g, vf)).transpose()?,
                    ));
                }
                let mut out = Vec::with_capacity(mr * nv);
                for (i, row) in rows.iter().enumerate() {
                    for (v, (_, colsum, sw, bias)) in cols.iter().enumerate() {
                        let corr = bld.build_int_mul(row.zero, *colsum, "zs").map_err(err())?;
                        let acc = bld
                            .build_int_sub(accs[i * nv + v], corr, "acc.z")
                            .map_err(err())?;
                        let f = bld
                            .build_signed_int_to_float(acc, vf, "acc.f")
                            .map_err(err())?;
                        let s = bld.build_float_mul(row.scale, *sw, "s").map_err(err())?;
                        let mut y = bld.build_float_mul(f, s, "y").map_err(err())?;
                        if let Some(bias) = bias {
                            y = bld.build_float_add(y, *bias, "y.b").map_err(err())?;
                        }
                        out.push(vmath::apply_activation(op.activation, kb, y)?);
                    }
                }
                let full_cols = bld
                    .build_int_compare(
                        IntPredicate::SLE,
                        bld.build_int_add(col0, kb.i64_const(width as i64), "col.end")
                            .map_err(err())?,
                        kb.i64_const(n as i64),
                        "cols.full",
                    )
                    .map_err(err())?;
                let full = bld.build_and(full_rows, full_cols, "full").map_err(err())?;
                let store_full = kb.append_block("store.full");
                let store_edge = kb.append_block("store.edge");
                let done = kb.append_block("store.done");
                bld.build_conditional_branch(full, store_full, store_edge)
                    .map_err(err())?;
                bld.position_at_end(store_full);
                for (i, row) in rows.iter().enumerate() {
                    for (v, (col, ..)) in cols.iter().enumerate() {
                        kb.store_f32(row.c, *col, out[i * nv + v], None)?;
                    }
                }
                bld.build_unconditional_branch(done).map_err(err())?;
                bld.position_at_end(store_edge);
                let n_c = kb.i64_const(n as i64);
                for (i, row) in rows.iter().enumerate() {
                    let valid = kb.splat(row.valid.into(), "row.ok")?;
                    for (v, (col, ..)) in cols.iter().enumerate() {
                        // Columns at or past n: remaining <= 0, an empty mask.
                        let mask = kb.tail_mask(*col, n_c)?;
                        let mask = bld.build_and(mask, valid, "mask").map_err(err())?;
                        kb.store_f32(row.c, *col, out[i * nv + v], Some(mask))?;
                    }
                }
                bld.build_unconditional_branch(done).map_err(err())?;
                bld.position_at_end(done);
                Ok(())
            })
        })
    })?;
    bld.build_return(None).map_err(err())?;
    Ok(kb.function())
}

/// One group of `k` of the integer product, per form: `acc` plus the products of the
/// broadcast group of `A` and a vector of packed `W`.
struct Dot<'ctx> {
    /// `vpdpbusd` (exact, VNNI): four `u8 x s8` products added to each `i32` lane.
    dpbusd: Option<FunctionValue<'ctx>>,
    /// `vpdpwssd` (VNNI): pairs of `i16` products added to each `i32` lane, which takes the
    /// saturating form's pair sums into the accumulators in one instruction.
    dpwssd: Option<FunctionValue<'ctx>>,
    /// `vpmaddubsw`: adjacent `u8 x s8` products summed in pairs saturating to `i16`.
    madd_ub: FunctionValue<'ctx>,
    /// `vpmaddwd`: adjacent `i16 x i16` products summed exactly into `i32`.
    madd_wd: FunctionValue<'ctx>,
    saturate: bool,
}

impl<'ctx> Dot<'ctx> {
    fn new(kb: &KernelBuilder<'_, 'ctx>, layout: &Int8Layout, saturate: bool) -> Result<Self> {
        let wide = layout.lanes == 16;
        let vnni = |n512, n256| -> Result<Option<FunctionValue<'ctx>>> {
            if layout.vnni {
                Ok(Some(kb.intrinsic(if wide { n512 } else { n256 }, &[])?))
            } else {
                Ok(None)
            }
        };
        let (madd_ub, madd_wd) = if wide {
            (
                kb.intrinsic("llvm.x86.avx512.pmaddubs.w.512", &[])?,
                kb.intrinsic("llvm.x86.avx512.pmaddw.d.512", &[])?,
            )
        } else {
            (
                kb.intrinsic("llvm.x86.avx2.pmadd.ub.sw", &[])?,
                kb.intrinsic("llvm.x86.avx2.pmadd.wd", &[])?,
            )
        };
        Ok(Dot {
            dpbusd: vnni(
                "llvm.x86.avx512.vpdpbusd.512",
                "llvm.x86.avx512.vpdpbusd.256",
            )?,
            dpwssd: vnni(
                "llvm.x86.avx512.vpdpwssd.512",
                "llvm.x86.avx512.vpdpwssd.256",
            )?,
            madd_ub,
            madd_wd,
            saturate,
        })
    }

    /// `acc` plus one group's products: `a` is the row's group of `A` broadcast as `i32`,
    /// `b` the packed vector of `W` (bytes).
    fn step(
        &self,
        kb: &KernelBuilder<'_, 'ctx>,
        acc: VectorValue<'ctx>,
        a: VectorValue<'ctx>,
        b: VectorValue<'ctx>,
    ) -> Result<VectorValue<'ctx>> {
        let bld = kb.builder();
        let err = || kb.err();
        let lanes = kb.lanes();
        let ctx = kb.context();
        let v32 = ctx.i32_type().vec_type(lanes);
        let v16 = ctx.i16_type().vec_type(lanes * 2);
        let v8 = ctx.i8_type().vec_type(lanes * 4);
        let cast = |v: VectorValue<'ctx>, ty: VectorType<'ctx>| -> Result<VectorValue<'ctx>> {
            Ok(bld
                .build_bit_cast(v, ty, "cast")
                .map_err(err())?
                .into_vector_value())
        };
        if self.saturate {
            let pairs = kb
                .call(self.madd_ub, &[cast(a, v8)?.into(), b.into()], "pairs")?
                .into_vector_value();
            if let Some(dp) = self.dpwssd {
                let ones = VectorType::const_vector(&vec![
                    ctx.i16_type().const_int(1, false);
                    (lanes * 2) as usize
                ]);
                let ones = cast(ones, v32)?;
                return Ok(kb
                    .call(
                        dp,
                        &[acc.into(), cast(pairs, v32)?.into(), ones.into()],
                        "quad",
                    )?
                    .into_vector_value());
            }
            let ones = VectorType::const_vector(&vec![
                ctx.i16_type().const_int(1, false);
                (lanes * 2) as usize
            ]);
            let quad = kb
                .call(self.madd_wd, &[pairs.into(), ones.into()], "quad")?
                .into_vector_value();
            return bld.build_int_add(acc, quad, "acc").map_err(err());
        }
        if let Some(dp) = self.dpbusd {
            return Ok(kb
                .call(dp, &[acc.into(), a.into(), cast(b, v32)?.into()], "dp")?
                .into_vector_value());
        }
        let pair = kb
            .call(
                self.madd_wd,
                &[cast(a, v16)?.into(), cast(b, v16)?.into()],
                "pair",
            )?
            .into_vector_value();
        bld.build_int_add(acc, pair, "acc").map_err(err())
    }
}

/// One row of a [`emit_qgemm_const_b`] tile.
struct TileRow<'ctx> {
    /// The row's quantised `A`.
    q: PointerValue<'ctx>,
    /// Its scale, splat.
    scale: VectorValue<'ctx>,
    /// Its zero point as `i32`, splat.
    zero: VectorValue<'ctx>,
    /// The row of `C`.
    c: PointerValue<'ctx>,
    /// Whether the row is below `m1` (else it repeats the last one and is not stored).
    valid: IntValue<'ctx>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_puts_each_columns_group_together_and_pads_with_zeros() {
        let layout = Int8Layout {
            lanes: 2,
            mr: 1,
            nv: 1,
            vnni: false,
        };
        // k = 5, n = 3: two panels of 2 columns, two groups of 4 (the second padded).
        let b: Vec<i8> = (0..15).map(|v| v as i8 - 7).collect();
        let packed = pack_b(&layout, &b, 5, 3, true);
        assert_eq!(packed.len(), 2 * 2 * 2 * 4);
        // Panel 0, group 0, column 1: b[0..4, 1].
        let col1: Vec<i8> = packed[4..8].iter().map(|&x| x as i8).collect();
        assert_eq!(col1, vec![b[1], b[4], b[7], b[10]]);
        // Panel 0, group 1, column 0: b[4, 0] then zeros.
        let g1: Vec<i8> = packed[8..12].iter().map(|&x| x as i8).collect();
        assert_eq!(g1, vec![b[12], 0, 0, 0]);
        // Panel 1, column 1 is past n: zeros.
        assert!(packed[16 + 4..16 + 8].iter().all(|&x| x == 0));
        // The exact form: i16 pairs.
        let exact = pack_b(&layout, &b, 5, 3, false);
        assert_eq!(exact.len(), 2 * 3 * 2 * 4);
        assert_eq!(i16::from_le_bytes([exact[4], exact[5]]), i16::from(b[1]));
        assert_eq!(i16::from_le_bytes([exact[6], exact[7]]), i16::from(b[4]));
        // With VNNI the exact form is packed as the saturating one: bytes in fours.
        let vnni = Int8Layout {
            vnni: true,
            ..layout
        };
        assert_eq!(pack_b(&vnni, &b, 5, 3, false), packed);
    }

    #[test]
    fn qgemm_rows_are_padded_to_whole_vectors_and_cache_lines() {
        let layout = Int8Layout {
            lanes: 16,
            mr: 8,
            nv: 3,
            vnni: false,
        };
        // Bytes (the saturating form): k rounded up to 16, then to 64.
        assert_eq!(layout.qgemm_row_bytes(1, true), 64);
        assert_eq!(layout.qgemm_row_bytes(64, true), 64);
        assert_eq!(layout.qgemm_row_bytes(65, true), 128);
        assert_eq!(layout.qgemm_row_bytes(0, true), 0);
        // i16 (the exact form without VNNI): 33 -> 48 values, 96 bytes -> 128.
        assert_eq!(layout.qgemm_row_bytes(33, false), 128);
        let vnni = Int8Layout {
            vnni: true,
            ..layout
        };
        assert_eq!(vnni.qgemm_row_bytes(33, false), 64);
        // A row covers every group the micro-kernel broadcasts.
        for k in 0usize..200 {
            for (l, sat) in [(layout, true), (layout, false), (vnni, false)] {
                assert!(k.div_ceil(group(&l, sat)) * 4 <= l.qgemm_row_bytes(k, sat));
            }
        }
    }

    #[test]
    fn qgemm_kernels_verify_on_every_int8_path() {
        assert!(Int8Layout::for_qgemm(&Target::named("x86-64").unwrap()).is_none());
        for cpu in ["x86-64-v3", "x86-64-v4", "host"] {
            let target = Target::named(cpu).unwrap();
            let Some(layout) = Int8Layout::for_qgemm(&target) else {
                continue;
            };
            let context = inkwell::context::Context::create();
            let module = context.create_module("m");
            let (k, n) = (7, 50);
            let w: Vec<i8> = (0..k * n).map(|v| (v * 37 % 256) as u8 as i8).collect();
            let sw = vec![0.01; n];
            let bias = vec![0.5; n];
            // Both vector widths where the host has AVX-512 (8 lanes: the AVX-VNNI kernel).
            let mut layouts = vec![layout];
            if layout.lanes == 16 {
                layouts.push(Int8Layout {
                    lanes: 8,
                    mr: 4,
                    nv: 2,
                    ..layout
                });
            }
            for (l, layout) in layouts.iter().enumerate() {
                for saturate in [false, true] {
                    for (a, activation) in Activation::ALL.into_iter().enumerate() {
                        let op = QGemmConst {
                            w: &w,
                            k,
                            n,
                            sw: &sw,
                            bias: (a % 2 == 0).then_some(&bias[..]),
                            activation,
                            saturate,
                        };
                        let name = format!("q{l}_{saturate}_{a}");
                        emit_qgemm_const_b(&module, &target, &name, layout, &op).unwrap();
                    }
                }
            }
            crate::emit::verify(&module).unwrap();
            // Operands of the wrong size are refused.
            let op = QGemmConst {
                w: &w[1..],
                k,
                n,
                sw: &sw,
                bias: None,
                activation: Activation::None,
                saturate: false,
            };
            assert!(emit_qgemm_const_b(&module, &target, "bad", &layout, &op).is_err());
        }
    }
}

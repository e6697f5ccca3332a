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

use inkwell::module::Module;
use inkwell::types::VectorType;
use inkwell::values::{BasicValue, FunctionValue, IntValue, PointerValue, VectorValue};

use crate::error::{Error, Result};
use crate::kernels::{constant_global, KernelBuilder, Param};
use crate::target::Target;

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
    let entry = ctx.create_builder();
    let first = kb
        .function()
        .get_first_basic_block()
        .ok_or_else(|| internal("no entry block"))?;
    match first.get_first_instruction() {
        Some(i) => entry.position_before(&i),
        None => entry.position_at_end(first),
    }
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
                    let at = bld
                        .build_int_mul(s, kb.i64_const(nv as i64), "s.v")
                        .map_err(err())?;
                    let at = bld.build_int_add(panel, at, "s.at").map_err(err())?;
                    let mut bv = Vec::new();
                    for v in 0..nv {
                        let idx = bld
                            .build_int_add(at, kb.i64_const(v as i64), "b.idx")
                            .map_err(err())?;
                        // SAFETY: the index is inside the packed global.
                        let ptr = unsafe { bld.build_in_bounds_gep(v8, b_global, &[idx], "b.p") }
                            .map_err(err())?;
                        let load = bld.build_load(v8, ptr, "b.v").map_err(err())?;
                        load.as_instruction_value()
                            .ok_or_else(|| internal("a load is not an instruction"))?
                            .set_alignment(64)
                            .map_err(|_| internal("could not align a load"))?;
                        bv.push(load.into_vector_value());
                    }
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
}

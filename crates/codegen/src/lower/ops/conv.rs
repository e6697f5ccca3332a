//! Convolution (`conv`), N-dimensional, grouped, strided and dilated: `f32` convolutions of one
//! group through the GEMM micro-kernel on blocks of unfolded input (im2col), every other form
//! in a scalar loop per output channel.

use inkwell::types::VectorType;
use inkwell::values::{IntValue, PointerValue, VectorValue};
use inkwell::IntPredicate;
use tcc_ir::{DType, Dim, Graph};

use super::{product, strides, Ctx, Parallel};
use crate::error::Result;
use crate::kernels::gemm::{self, Epilogue, GemmLayout};
use crate::kernels::F32_ALIGN;
use crate::lower::scalar::{self, load, store};
use crate::lower::schedule::Step;
use crate::target::Target;

/// The most floats one packed block of unfolded input holds (256 KiB), unless a single panel
/// is more: the block is written by the packing and read back at once by the GEMM, so it
/// should stay in L2 between the two.
const BLOCK_FLOATS: i64 = 1 << 16;

/// The most rows (units of the task split) per image: enough for the pool to balance a
/// single image over many threads, few enough that the scratch, one packed block per row,
/// stays a small multiple of the block for large images.
const ROWS_PER_IMAGE: i64 = 64;

/// `Op::Conv`: through the GEMM when [`ConvGemm::of`] takes it, else the scalar loop.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv(
    c: &Ctx<'_, '_>,
    graph: &Graph,
    step: &Step,
    target: &Target,
    st: &[usize],
    pads_begin: &[Dim],
    dil: &[usize],
    group: usize,
) -> Result<Parallel> {
    match ConvGemm::of(graph, step, target, group) {
        Some(g) => conv_gemm(c, graph, step, target, st, pads_begin, dil, &g),
        None => conv_scalar(c, graph, step, st, pads_begin, dil, group),
    }
}

/// The scratch (in bytes) of an `Op::Conv` step that runs through the GEMM: one packed block
/// per row (see [`ConvGemm`]); `None` for the scalar loop, which needs none.
pub(super) fn scratch_bytes(
    graph: &Graph,
    step: &Step,
    target: &Target,
    group: usize,
) -> Option<Dim> {
    let g = ConvGemm::of(graph, step, target, group)?;
    let images = &graph.ty(step.node).shape.dims()[0];
    Some(
        images
            .mul(&g.rows_per_image)
            .mul(&g.slot)
            .mul(&Dim::constant(4)),
    )
}

/// The plan of a convolution computed as a GEMM per block of output positions.
///
/// Per image, the convolution is the product `out[m, P] = W[m, K] · cols[K, P]`, where `P` is
/// the number of output positions (the spatial axes flattened), `K = c * taps` runs over input
/// channels, then kernel coordinates row-major (the order the weights store them), and
/// `cols[kk, p]` is the input element tap `kk` of position `p` reads (zero in the padding).
/// The positions of an image split into `rows_per_image` rows of `row_panels` panels of `NR`
/// positions (the last row shorter): a row is the unit the tasks split. The scratch holds one
/// slot of `min(row_panels, block_panels)` panels per row; a task packs blocks of up to
/// `block_panels` panels of `cols` into the slots of its rows (contiguous, so a block may span
/// several of them) and multiplies each block at once.
struct ConvGemm {
    /// Output channels: the GEMM's rows.
    m: i64,
    /// Input channels.
    channels: i64,
    /// The kernel's size per spatial axis.
    kernel: Vec<i64>,
    /// `channels * taps`: the GEMM's inner size.
    k: i64,
    /// The columns of a panel (`NR`).
    nr: i64,
    /// The most panels one packed block holds.
    block_panels: i64,
    /// Output positions per image.
    positions: Dim,
    /// Panels per row.
    row_panels: Dim,
    /// Rows per image.
    rows_per_image: Dim,
    /// Floats of scratch per row.
    slot: Dim,
}

impl ConvGemm {
    /// The plan, if the convolution runs through the GEMM: `f32` operands, one group, and
    /// weights of constant sizes (the GEMM's `m` and `k`, and the unrolled tap loops, are
    /// fixed at compile time). The weights may be constant or computed: the GEMM reads them
    /// where they are.
    fn of(graph: &Graph, step: &Step, target: &Target, group: usize) -> Option<ConvGemm> {
        let out = graph.ty(step.node);
        let x = graph.ty(step.inputs[0]);
        let w = graph.ty(step.inputs[1]);
        let all_f32 = [out.dtype, x.dtype, w.dtype]
            .iter()
            .all(|d| *d == DType::F32);
        if group != 1 || !all_f32 || w.rank() < 3 || x.rank() != w.rank() {
            return None;
        }
        let wd: Vec<i64> = w
            .shape
            .dims()
            .iter()
            .map(Dim::as_const)
            .collect::<Option<_>>()?;
        let (m, channels) = (wd[0], wd[1]);
        let kernel = wd[2..].to_vec();
        let k = kernel
            .iter()
            .try_fold(channels, |acc, &t| acc.checked_mul(t))?;
        if m < 1 || k < 1 {
            return None;
        }
        let layout = GemmLayout::for_target(target);
        let nr = layout.nr() as i64;
        let block_panels = (BLOCK_FLOATS / (k * nr)).clamp(1, i64::from(layout.nc_panels));
        let positions = product(&out.shape.dims()[2..]);
        let panels = positions.ceil_div(&Dim::constant(nr));
        let row_panels = panels
            .ceil_div(&Dim::constant(ROWS_PER_IMAGE))
            .max_dim(&Dim::constant(1));
        let rows_per_image = panels.ceil_div(&row_panels);
        let slot = row_panels
            .min_dim(&Dim::constant(block_panels))
            .mul(&Dim::constant(nr * k));
        Some(ConvGemm {
            m,
            channels,
            kernel,
            k,
            nr,
            block_panels,
            positions,
            row_panels,
            rows_per_image,
            slot,
        })
    }
}

/// A convolution through the GEMM micro-kernel (see [`ConvGemm`]).
///
/// A task walks the positions its rows cover, image by image, in blocks of at most
/// `block_panels` panels (split evenly). For each block it packs `cols` straight into the
/// GEMM's panel layout in its scratch (panel `p`, tap `kk`, lane `j` at `p*K*NR + kk*NR + j`:
/// position `p*NR + j` of the block), then calls the packed-B GEMM with the weights as `A`
/// (`[m, K]` row-major as stored, read in place) and the output as `C` (`ldc = P`).
///
/// Why this orientation rather than `cols^T · W^T` with the weights packed at compile time:
/// the product `W · cols` is `[m, positions]`, exactly the `[n, m, out..]` layout of the
/// result, so the GEMM stores it in place with no transpose; and a row of a panel holds `NR`
/// consecutive positions of one tap, which for a stride of 1 along the last axis are
/// consecutive input elements, so the packing is masked vector loads and stores (a gather for
/// other strides) rather than one element at a time. Packing costs `K` floats per position
/// against `m * K` multiply-adds.
///
/// The packing walks the block's lines (runs of positions along the last output axis), and
/// each line's vectors of lanes: per input channel and tap it loads the lanes whose input
/// element lies inside the input (a lane range, from the tap's offset) with zeros elsewhere,
/// and stores the lanes the line covers. Lanes past the block's end in its last panel are
/// zeroed, so the GEMM's edge tiles compute on zeros.
///
/// Rounding: each output is `sum_kk w[o, kk] * cols[kk, p]` accumulated in `f32` in
/// increasing `kk` (channels, then kernel coordinates row-major), taps in the padding
/// contributing `w * 0`: the interpreter's order and its zeros. Where the target has FMA each
/// step is one fused multiply-add, rounded once where the interpreter rounds twice; without
/// FMA the operations are the interpreter's.
#[allow(clippy::too_many_arguments)]
fn conv_gemm<'ctx>(
    c: &Ctx<'_, 'ctx>,
    graph: &Graph,
    step: &Step,
    target: &Target,
    st: &[usize],
    pads_begin: &[Dim],
    dil: &[usize],
    g: &ConvGemm,
) -> Result<Parallel> {
    let out = &graph.ty(step.node).shape;
    let xs = &graph.ty(step.inputs[0]).shape;
    let layout = GemmLayout::for_target(target);
    let name = format!("{}.gemm", c.kb.function().get_name().to_string_lossy());
    let gemm_fn = gemm::emit_gemm_packed_b(c.m, target, &name, &layout, Epilogue::default())?;
    let scratch = c
        .scratch
        .ok_or_else(|| c.kb.internal("the convolution has no scratch"))?;
    let packer = Packer {
        sp: out.rank() - 2,
        xd: c.dim_list(xs.dims())?,
        od: c.dim_list(out.dims())?,
        xst: c.dim_list(&strides(xs))?,
        pb: c.dim_list(pads_begin)?,
        st: st.iter().map(|&s| s as i64).collect(),
        dil: dil.iter().map(|&d| d as i64).collect(),
        g,
        lanes: i64::from(c.kb.lanes()),
        nv: i64::from(layout.nr_vectors),
    };
    let i = |v: i64| c.kb.i64_const(v);
    let sub =
        |x: IntValue<'ctx>, y: IntValue<'ctx>| c.b().build_int_sub(x, y, "d").map_err(c.kb.err());
    let nr = g.nr;
    let positions = c.dim(&g.positions)?;
    // At least 1 whenever the run gets here (check_sizes refuses empty outputs); the bound
    // keeps the divisions defined regardless.
    let rows_img = c.kb.max_i64(c.dim(&g.rows_per_image)?, i(1))?;
    let row_positions = c.mul(c.dim(&g.row_panels)?, i(nr))?;
    let slot = c.dim(&g.slot)?;
    let out_image = c.mul(i(g.m), positions)?;
    // The task's rows own the slots r0..r1, contiguous: a block may use all of them.
    let blocks = scalar::element_ptr(&c.kb, DType::F32, scratch, c.mul(c.r0, slot)?)?;
    let first = c.div(c.r0, rows_img)?;
    let end = c.div(c.add(c.r1, sub(rows_img, i(1))?)?, rows_img)?;
    c.for_range(first, end, "image", |c, ni| {
        let base = c.mul(ni, rows_img)?;
        let lo = sub(c.kb.max_i64(c.r0, base)?, base)?;
        let hi = sub(c.kb.min_i64(c.r1, c.add(base, rows_img)?)?, base)?;
        let qa = c.mul(lo, row_positions)?;
        let qb = c.kb.min_i64(c.mul(hi, row_positions)?, positions)?;
        // Blocks of at most block_panels panels, of equal size but the last.
        let panels = c.div(c.add(sub(qb, qa)?, i(nr - 1))?, i(nr))?;
        let count = c.div(c.add(panels, i(g.block_panels - 1))?, i(g.block_panels))?;
        let count = c.kb.max_i64(count, i(1))?;
        let per_block = c.div(c.add(panels, sub(count, i(1))?)?, count)?;
        let per_block = c.mul(c.kb.max_i64(per_block, i(1))?, i(nr))?;
        let out_base = c.mul(ni, out_image)?;
        c.kb.for_loop(qa, qb, per_block, "block", |_, q0| {
            let q1 = c.kb.min_i64(c.add(q0, per_block)?, qb)?;
            packer.pack(c, ni, q0, q1, blocks)?;
            let dest = scalar::element_ptr(&c.kb, DType::F32, c.dest, c.add(out_base, q0)?)?;
            c.b()
                .build_call(
                    gemm_fn,
                    &[
                        c.inputs[1].into(),
                        i(g.k).into(),
                        blocks.into(),
                        dest.into(),
                        positions.into(),
                        i(0).into(),
                        i(g.m).into(),
                        sub(q1, q0)?.into(),
                        i(g.k).into(),
                        i(g.k).into(),
                    ],
                    "",
                )
                .map_err(c.kb.err())?;
            Ok(())
        })
    })?;
    let images = out.dims()[0].clone();
    Ok(Parallel::rows(
        images.mul(&g.rows_per_image),
        g.row_panels.mul(&Dim::constant(nr * g.k * g.m)),
    ))
}

/// What the packing of a block of `cols` reads: the sizes, strides and attributes of one
/// convolution step, evaluated.
struct Packer<'a, 'ctx> {
    /// Spatial axes.
    sp: usize,
    /// The input's dims, `[n, c, in..]`.
    xd: Vec<IntValue<'ctx>>,
    /// The output's dims, `[n, m, out..]`.
    od: Vec<IntValue<'ctx>>,
    /// The input's strides.
    xst: Vec<IntValue<'ctx>>,
    /// Zeros before each spatial axis.
    pb: Vec<IntValue<'ctx>>,
    /// Strides per spatial axis.
    st: Vec<i64>,
    /// Dilations per spatial axis.
    dil: Vec<i64>,
    /// The plan: channels, kernel, `K` and `NR`.
    g: &'a ConvGemm,
    /// Lanes per vector.
    lanes: i64,
    /// Vectors per panel row.
    nv: i64,
}

impl<'ctx> Packer<'_, 'ctx> {
    /// Packs positions `q0..q1` of image `ni` into `dst` in panels (see [`conv_gemm`]).
    fn pack(
        &self,
        c: &Ctx<'_, 'ctx>,
        ni: IntValue<'ctx>,
        q0: IntValue<'ctx>,
        q1: IntValue<'ctx>,
        dst: PointerValue<'ctx>,
    ) -> Result<()> {
        let sp = self.sp;
        let i = |v: i64| c.kb.i64_const(v);
        let sub = |x: IntValue<'ctx>, y: IntValue<'ctx>| {
            c.b().build_int_sub(x, y, "d").map_err(c.kb.err())
        };
        let width = self.od[1 + sp];
        let lanes = self.lanes;
        let x_image = c.mul(ni, self.xst[0])?;
        let line_first = c.div(q0, width)?;
        let line_end = c.add(c.div(sub(q1, i(1))?, width)?, i(1))?;
        c.for_range(line_first, line_end, "line", |c, line| {
            let start = c.mul(line, width)?;
            let qs = c.kb.max_i64(q0, start)?;
            let qe = c.kb.min_i64(q1, c.add(start, width)?)?;
            // The line's lanes in the block, and its first output column.
            let (j0, j1) = (sub(qs, q0)?, sub(qe, q0)?);
            let col0 = sub(qs, start)?;
            let outer = c.unflatten(line, &self.od[2..1 + sp])?;
            let u_first = c.div(j0, i(lanes))?;
            let u_end = c.add(c.div(sub(j1, i(1))?, i(lanes))?, i(1))?;
            c.for_range(u_first, u_end, "unit", |c, u| {
                let b = c.mul(u, i(lanes))?;
                let plo = c.kb.max_i64(sub(j0, b)?, i(0))?;
                let phi = c.kb.min_i64(sub(j1, b)?, i(lanes))?;
                let whole = c
                    .b()
                    .build_and(
                        c.b()
                            .build_int_compare(IntPredicate::EQ, plo, i(0), "p.lo")
                            .map_err(c.kb.err())?,
                        c.b()
                            .build_int_compare(IntPredicate::EQ, phi, i(lanes), "p.hi")
                            .map_err(c.kb.err())?,
                        "whole",
                    )
                    .map_err(c.kb.err())?;
                let store_mask = lane_range(c, plo, phi)?;
                let panel = c.div(u, i(self.nv))?;
                let unit_off = c.add(
                    c.mul(panel, i(self.g.k * self.g.nr))?,
                    c.mul(c.rem(u, i(self.nv))?, i(lanes))?,
                )?;
                // The input column lane 0 of this vector reads at tap 0 of the last axis.
                let col = c.add(col0, sub(b, j0)?)?;
                let last = sp - 1;
                let in_col0 = sub(c.mul(col, i(self.st[last]))?, self.pb[last])?;
                let lane = Lane {
                    plo,
                    phi,
                    whole,
                    store_mask,
                    unit_off,
                    in_col0,
                };
                c.for_range(i(0), i(self.g.channels), "ci", |c, ci| {
                    let off = c.add(x_image, c.mul(ci, self.xst[1])?)?;
                    let yes = c.kb.context().bool_type().const_int(1, false);
                    self.outer_taps(c, &outer, 0, ci, off, yes, &|c, kk, off, ok| {
                        self.last_taps(c, &lane, dst, kk, off, ok)
                    })
                })
            })
        })?;
        // The lanes past the block's end in its last panel read zeros.
        let n = sub(q1, q0)?;
        let nr = i(self.g.nr);
        let used = c.rem(n, nr)?;
        let ragged = c
            .b()
            .build_int_compare(IntPredicate::NE, used, i(0), "ragged")
            .map_err(c.kb.err())?;
        c.if_then(ragged, |c| {
            let panels = c.div(c.add(n, i(self.g.nr - 1))?, nr)?;
            let u_end = c.mul(panels, i(self.nv))?;
            let u_first = c.div(n, i(lanes))?;
            c.for_range(u_first, u_end, "tail", |c, u| {
                let from = c.kb.max_i64(sub(n, c.mul(u, i(lanes))?)?, i(0))?;
                let mask = lane_range(c, from, i(lanes))?;
                let unit_off = c.add(
                    c.mul(c.div(u, i(self.nv))?, i(self.g.k * self.g.nr))?,
                    c.mul(c.rem(u, i(self.nv))?, i(lanes))?,
                )?;
                let zero = c.kb.f32_splat_const(0.0);
                c.for_range(i(0), i(self.g.k), "kk", |c, kk| {
                    let at = c.add(unit_off, c.mul(kk, nr)?)?;
                    c.kb.store_f32(dst, at, zero, Some(mask))
                })
            })
        })
    }

    /// The loops over the kernel coordinates of the spatial axes before the last, from axis
    /// `a`: `kk` is the tap index so far (the input channel, then each coordinate), `off` the
    /// input offset of the row read, and `ok` whether every coordinate so far lies inside the
    /// input. Calls `body` for each tap of those axes.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn outer_taps(
        &self,
        c: &Ctx<'_, 'ctx>,
        outer: &[IntValue<'ctx>],
        a: usize,
        kk: IntValue<'ctx>,
        off: IntValue<'ctx>,
        ok: IntValue<'ctx>,
        body: &dyn Fn(&Ctx<'_, 'ctx>, IntValue<'ctx>, IntValue<'ctx>, IntValue<'ctx>) -> Result<()>,
    ) -> Result<()> {
        if a + 1 == self.sp {
            return body(c, kk, off, ok);
        }
        let i = |v: i64| c.kb.i64_const(v);
        c.for_range(i(0), i(self.g.kernel[a]), "tap", |c, t| {
            let at = c.add(c.mul(outer[a], i(self.st[a]))?, c.mul(t, i(self.dil[a]))?)?;
            let at = c
                .b()
                .build_int_sub(at, self.pb[a], "at")
                .map_err(c.kb.err())?;
            let inside = c
                .b()
                .build_and(
                    c.b()
                        .build_int_compare(IntPredicate::SGE, at, i(0), "ge")
                        .map_err(c.kb.err())?,
                    c.b()
                        .build_int_compare(IntPredicate::SLT, at, self.xd[2 + a], "lt")
                        .map_err(c.kb.err())?,
                    "in",
                )
                .map_err(c.kb.err())?;
            let ok = c.b().build_and(ok, inside, "ok").map_err(c.kb.err())?;
            let off = c.add(off, c.mul(at, self.xst[2 + a])?)?;
            let kk = c.add(c.mul(kk, i(self.g.kernel[a]))?, t)?;
            self.outer_taps(c, outer, a + 1, kk, off, ok, body)
        })
    }

    /// The loop over the last axis's kernel coordinate for one vector of a line: loads the
    /// lanes whose input lies inside (zeros elsewhere) and stores the lanes the line covers
    /// into row `kk` of their panel.
    fn last_taps(
        &self,
        c: &Ctx<'_, 'ctx>,
        lane: &Lane<'ctx>,
        dst: PointerValue<'ctx>,
        kk: IntValue<'ctx>,
        off: IntValue<'ctx>,
        ok: IntValue<'ctx>,
    ) -> Result<()> {
        let last = self.sp - 1;
        let (s, d) = (self.st[last], self.dil[last]);
        let kw = self.g.kernel[last];
        let in_width = self.xd[2 + last];
        let i = |v: i64| c.kb.i64_const(v);
        let b = c.b();
        let e = || c.kb.err();
        c.for_range(i(0), i(kw), "tw", |c, tw| {
            let kk = c.add(c.mul(kk, i(kw))?, tw)?;
            // Lane l reads input column in0 + s * l: inside for l in [lo, hi).
            let in0 = c.add(lane.in_col0, c.mul(tw, i(d))?)?;
            let neg = b
                .build_int_compare(IntPredicate::SLT, in0, i(0), "neg")
                .map_err(e())?;
            let up = b.build_int_sub(i(s - 1), in0, "up").map_err(e())?;
            let lo = b.build_int_signed_div(up, i(s), "lo").map_err(e())?;
            let lo = b
                .build_select(neg, lo, i(0), "lo")
                .map_err(e())?
                .into_int_value();
            let room = b.build_int_sub(in_width, in0, "room").map_err(e())?;
            let any = b
                .build_int_compare(IntPredicate::SGT, room, i(0), "any")
                .map_err(e())?;
            let hi = b
                .build_int_signed_div(c.add(room, i(s - 1))?, i(s), "hi")
                .map_err(e())?;
            let hi = b
                .build_select(any, hi, i(0), "hi")
                .map_err(e())?
                .into_int_value();
            let lo = c.kb.min_i64(c.kb.max_i64(lo, lane.plo)?, i(self.lanes))?;
            let hi = c.kb.min_i64(hi, lane.phi)?;
            let hi = b
                .build_select(ok, hi, i(0), "hi")
                .map_err(e())?
                .into_int_value();
            let mask = lane_range(c, lo, hi)?;
            let v = load_lanes(c, c.inputs[0], c.add(off, in0)?, s, mask)?;
            let at = c.add(lane.unit_off, c.mul(kk, i(self.g.nr))?)?;
            // A vector the line covers whole is stored whole (a masked store is slow on some
            // AVX2 machines); the branch goes the same way for every tap of the vector.
            let whole = c.kb.append_block("store.whole");
            let part = c.kb.append_block("store.part");
            let done = c.kb.append_block("store.done");
            b.build_conditional_branch(lane.whole, whole, part)
                .map_err(e())?;
            b.position_at_end(whole);
            c.kb.store_f32(dst, at, v, None)?;
            b.build_unconditional_branch(done).map_err(e())?;
            b.position_at_end(part);
            c.kb.store_f32(dst, at, v, Some(lane.store_mask))?;
            b.build_unconditional_branch(done).map_err(e())?;
            b.position_at_end(done);
            Ok(())
        })
    }
}

/// One vector of a line in a block: the lanes `plo..phi` the line covers (`whole` if all),
/// their store mask, the vector's offset in its panel and the input column its lane 0 reads
/// at the last axis's tap 0 (before the tap's dilation).
struct Lane<'ctx> {
    plo: IntValue<'ctx>,
    phi: IntValue<'ctx>,
    whole: IntValue<'ctx>,
    store_mask: VectorValue<'ctx>,
    unit_off: IntValue<'ctx>,
    in_col0: IntValue<'ctx>,
}

/// The lanes `lo..hi` of a vector, as a mask (`0 <= lo`, `hi <= lanes`; empty if `hi <= lo`).
fn lane_range<'ctx>(
    c: &Ctx<'_, 'ctx>,
    lo: IntValue<'ctx>,
    hi: IntValue<'ctx>,
) -> Result<VectorValue<'ctx>> {
    let b = c.b();
    let i32_type = c.kb.context().i32_type();
    let iota: Vec<_> = (0..c.kb.lanes())
        .map(|l| i32_type.const_int(u64::from(l), false))
        .collect();
    let iota = VectorType::const_vector(&iota);
    let narrow = |v: IntValue<'ctx>| -> Result<VectorValue<'ctx>> {
        let v = b
            .build_int_truncate(v, i32_type, "lane")
            .map_err(c.kb.err())?;
        c.kb.splat(v.into(), "lane")
    };
    let ge = b
        .build_int_compare(IntPredicate::SGE, iota, narrow(lo)?, "ge")
        .map_err(c.kb.err())?;
    let lt = b
        .build_int_compare(IntPredicate::SLT, iota, narrow(hi)?, "lt")
        .map_err(c.kb.err())?;
    b.build_and(ge, lt, "lanes").map_err(c.kb.err())
}

/// Loads lane `l` from `base[at + stride * l]` for the lanes of `mask`, zero elsewhere: a
/// masked vector load for stride 1, a masked gather otherwise. Lanes outside `mask` may
/// address memory outside the buffer; they are never read, and the address is computed
/// without the in-bounds assumption.
fn load_lanes<'ctx>(
    c: &Ctx<'_, 'ctx>,
    base: PointerValue<'ctx>,
    at: IntValue<'ctx>,
    stride: i64,
    mask: VectorValue<'ctx>,
) -> Result<VectorValue<'ctx>> {
    let b = c.b();
    let f32_type = c.kb.context().f32_type();
    let vector = c.kb.f32_vector();
    // SAFETY: a plain GEP (no in-bounds assumption) is defined for any offset; only the
    // lanes of the mask are dereferenced, and those lie inside the input.
    let ptr = unsafe { b.build_gep(f32_type, base, &[at], "x.at") }.map_err(c.kb.err())?;
    let align =
        c.kb.context()
            .i32_type()
            .const_int(u64::from(F32_ALIGN), false);
    if stride == 1 {
        let load =
            c.kb.intrinsic("llvm.masked.load", &[vector.into(), ptr.get_type().into()])?;
        return Ok(c
            .kb
            .call(
                load,
                &[
                    ptr.into(),
                    align.into(),
                    mask.into(),
                    vector.const_zero().into(),
                ],
                "v",
            )?
            .into_vector_value());
    }
    let i64_type = c.kb.context().i64_type();
    let address = b
        .build_ptr_to_int(ptr, i64_type, "addr")
        .map_err(c.kb.err())?;
    let steps: Vec<_> = (0..c.kb.lanes())
        .map(|l| i64_type.const_int(u64::from(l) * stride as u64 * 4, false))
        .collect();
    let addresses = b
        .build_int_add(
            c.kb.splat(address.into(), "addr")?,
            VectorType::const_vector(&steps),
            "addrs",
        )
        .map_err(c.kb.err())?;
    let ptr_vector = ptr.get_type().vec_type(c.kb.lanes());
    let ptrs = b
        .build_int_to_ptr(addresses, ptr_vector, "ptrs")
        .map_err(c.kb.err())?;
    let gather =
        c.kb.intrinsic("llvm.masked.gather", &[vector.into(), ptr_vector.into()])?;
    Ok(c.kb
        .call(
            gather,
            &[
                ptrs.into(),
                align.into(),
                mask.into(),
                vector.const_zero().into(),
            ],
            "v",
        )?
        .into_vector_value())
}

/// `Op::Conv` of any dtype and group: a row per (image, output channel); each output position
/// sums its taps over the group's input channels in the dtype, taps in the padding skipped.
fn conv_scalar(
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
    Ok(Parallel::rows(
        out.dims()[0].mul(&out.dims()[1]),
        out_sp.mul(&k_sp).mul(&ws.dims()[1]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::schedule::{schedule, Kernel};
    use tcc_ir::Op;

    /// The scratch of each convolution of `ir`, by node name, for AVX2 (`NR = 16`).
    fn scratch_of(ir: &str) -> Vec<(String, Option<String>)> {
        let graph = tcc_ir::text::parse(ir, &|_| None).unwrap();
        let target = Target::named("x86-64-v3").unwrap();
        schedule(&graph)
            .unwrap()
            .iter()
            .filter_map(|step| match &step.kernel {
                Kernel::Op(Op::Conv { group, .. }) => Some((
                    format!("%{}", step.node.index()),
                    scratch_bytes(&graph, step, &target, *group).map(|d| d.to_string()),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn f32_convolutions_of_one_group_take_the_gemm_and_others_the_scalar_loop() {
        let ir = r#"
graph(%x: f32[n, 4, h, w], %w: f32[6, 4, 3, 3], %g: f32[6, 2, 3, 3], %y: f64[n, 4, h, w], %v: f64[6, 4, 3, 3]) {
  %a = conv<strides=[1, 1], pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1], group=1>(%x, %w) : f32[n, 6, h, w]
  %b = conv<strides=[1, 1], pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1], group=2>(%x, %g) : f32[n, 6, h, w]
  %c = conv<strides=[1, 1], pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1], group=1>(%y, %v) : f64[n, 6, h, w]
  return %a = %a
  return %b = %b
  return %c = %c
}
"#;
        let scratch = scratch_of(ir);
        assert_eq!(scratch.len(), 3);
        // f32, one group: the scratch depends on the batch and the spatial sizes, which stay
        // symbolic (evaluated by the run from its symbols).
        let a = scratch[0]
            .1
            .as_deref()
            .expect("the f32 convolution takes the GEMM");
        assert!(a.contains('n') && a.contains('h') && a.contains('w'), "{a}");
        assert_eq!(
            scratch[1].1, None,
            "a grouped convolution takes the scalar loop"
        );
        assert_eq!(
            scratch[2].1, None,
            "an f64 convolution takes the scalar loop"
        );
    }

    #[test]
    fn the_scratch_is_one_block_per_row_and_rows_are_bounded_per_image() {
        // 3136 positions = 196 panels of 16 on AVX2; K = 576 fits 7 panels in a block.
        let small = r#"
graph(%x: f32[1, 64, 56, 56], %w: f32[64, 64, 3, 3]) {
  %a = conv<strides=[1, 1], pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1], group=1>(%x, %w) : f32[1, 64, 56, 56]
  return %a = %a
}
"#;
        // 196 panels in rows of ceil(196 / 64) = 4 panels: 49 rows, slots of 4 panels.
        let bytes = 49 * 4 * 16 * 576 * 4;
        assert_eq!(scratch_of(small)[0].1, Some(bytes.to_string()));
        let large = r#"
graph(%x: f32[2, 64, 224, 224], %w: f32[64, 64, 3, 3]) {
  %a = conv<strides=[1, 1], pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1], group=1>(%x, %w) : f32[2, 64, 224, 224]
  return %a = %a
}
"#;
        // 3136 panels in rows of 49: 64 rows per image, slots of 7 panels (the block), not
        // the 115 MB of the whole unfolded input per image.
        let bytes = 2 * 64 * 7 * 16 * 576 * 4;
        assert_eq!(scratch_of(large)[0].1, Some(bytes.to_string()));
    }
}

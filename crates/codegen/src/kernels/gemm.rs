//! Matrix multiplication: `C[m, n] = act(alpha * A[m, k] * B[k, n] + bias[n])` in `f32`.
//!
//! Two emitters share one blocked driver and one register-tiled micro-kernel:
//! - [`emit_gemm_const_b`]: `B` is known at compile time (weights). [`pack_b`] packs it in Rust
//!   into the micro-kernel's panel layout and the packed copy becomes a constant global of the
//!   module; `k` and `n` are compile-time constants, `m` comes with each call.
//! - [`emit_gemm_runtime_b`]: `B` is a runtime operand with arbitrary row and column strides
//!   (attention's `Q·Kᵀ` reads `K` transposed, `P·V` reads `V` as it is). The kernel first packs
//!   the panels it needs into a scratch buffer the caller passes, then runs the same driver.
//!
//! # Layouts
//! `A` and `C` are row-major with leading dimensions `lda` and `ldc` (in elements), so a slice
//! or one matrix of a batch is served by offsetting the pointers. Packed `B` is a sequence of
//! panels of `NR` columns ([`GemmLayout::nr`]); panel `p` holds columns `p*NR .. p*NR + NR`, stored
//! k-major: element `(kk, j)` of the panel is at `p*k*NR + kk*NR + j`. The last panel is
//! padded with zero columns.
//!
//! # Structure (BLIS / oneDNN style)
//! The micro-kernel computes an `MR x NR` tile of `C` in `MR * NR / lanes` vector registers:
//! for each `kk` of the current k-block it loads the `NR / lanes` vectors of row `kk` of the
//! panel and broadcasts `MR` elements of `A`, with one fused multiply-add per accumulator. The
//! driver loops, from the outside in: over blocks of `NC` panels (the `KC x NC` block of `B`
//! stays in L2), over k-blocks of `KC`, over row blocks of `MR` (the `MR x KC` block of `A`
//! stays in L1 across the column block: the micro-kernel reads a whole block's rows where
//! they are, at stride `lda`, and a partial block's from a copy in a stack buffer whose rows
//! past `m` repeat the last valid one), and over the panels of the column block. The
//! first k-block starts from zero, later ones from `C`; the last one applies the epilogue
//! (`alpha`, bias, activation, the last from [`crate::kernels::vmath`]) to the registers
//! before the store. With constant weights, each micro-kernel invocation also prefetches
//! into L2 a share of the next block of `B` it will need, a line per k step (the same
//! panels' next k-block, the next column block, or after the last block the first block of
//! the next GEMM's weights, [`emit_gemm_const_b_then`]), so that the first row tile of a block
//! does not wait for L3 or memory: minilm-l6 at 128 tokens on an Intel Xeon, 5% faster on one
//! thread, 3% on two. Edge tiles (fewer than `MR` rows or `NR` columns) load and store `C` with
//! masks; the padding of `A` rows repeats the last valid row and the padding of `B` is zero, so
//! the full-size arithmetic is harmless.
//!
//! # Work splitting
//! Both kernels take a range of rows `m0..m1` and a range of column panels `p0..p1`; disjoint
//! ranges write disjoint parts of `C`, so a thread pool may run them concurrently. Rows ranges
//! that start on a multiple of `MR` and panel ranges of whole [`GemmLayout::nc_panels`] blocks
//! keep every tile full-size.
//!
//! # Rounding
//! Each element of `C` is a sum over `k` accumulated in `f32` in order of increasing `k`
//! (fused multiply-adds where the target has FMA), then scaled by `alpha`, then added to the
//! bias, so its error is at most about `(k + 2) * 2^-24 * (|alpha| * sum |a*b| + |bias|)`.

use inkwell::attributes::{Attribute, AttributeLoc};
use inkwell::module::Module;
use inkwell::values::{BasicValue, FunctionValue, IntValue, PointerValue, VectorValue};
use inkwell::IntPredicate;

use crate::error::{Error, Result};
use crate::kernels::{constant_global, vmath, KernelBuilder, Param, F32_ALIGN};
use crate::target::Target;

/// How many k steps ahead the micro-kernel prefetches its panel of `B`.
const PREFETCH_ROWS: i64 = 16;

/// The activation applied in the epilogue, after `alpha` and the bias: the IR's own
/// [`tcc_ir::Activation`] (the one the fused `gemm` op carries), re-exported so that the
/// kernels, the schedule and the tests speak one vocabulary.
pub use tcc_ir::Activation;

/// What the micro-kernel does to its registers before the final store.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Epilogue {
    /// The factor applied to `A·B` before the bias (1 skips the multiply).
    pub alpha: f32,
    /// The activation applied last.
    pub activation: Activation,
}

impl Default for Epilogue {
    fn default() -> Self {
        Epilogue {
            alpha: 1.0,
            activation: Activation::None,
        }
    }
}

/// The blocking of a GEMM kernel: register tile and cache blocks.
///
/// The packed layout of `B` depends only on [`GemmLayout::nr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmLayout {
    /// `f32` lanes per vector register.
    pub lanes: u32,
    /// Rows of the register tile (`MR`).
    pub mr: u32,
    /// Vectors per row of the register tile; `NR = nr_vectors * lanes`.
    pub nr_vectors: u32,
    /// The k-block (`KC`): rows of `B` and columns of `A` per pass over `C`.
    pub kc: u32,
    /// The column block (`NC`), in panels of `NR` columns.
    pub nc_panels: u32,
}

impl GemmLayout {
    /// The blocking of GEMMs with constant weights (packed at compile time) for the target's
    /// vector width, measured with `examples/gemm_bench.rs` on an AMD Zen 5 core (48 KiB L1d,
    /// 1 MiB L2) and an Intel Xeon with AVX-512 (48 KiB L1d, 2 MiB L2):
    ///
    /// - AVX-512 (32 zmm): `MR = 8`, `NR = 48`: 24 accumulators, 3 panel vectors and a
    ///   broadcast; `KC = 512` (the `A` rows of a tile, 16 KiB, stay in L1; the 96 KiB panel is
    ///   streamed from L2), `NC = 8` panels (the `KC x NC` block of `B`, 768 KiB, fits L2).
    ///   On the Xeon, single-threaded at a transformer's shapes (128 x 384 x 768,
    ///   128 x 1536 x 192, 512 x 384 x 1536), 86-94% of the FMA peak against 80-84% for
    ///   `12 x 32`, whose 12-row tiles also leave a partial tile in 128 rows; on Zen 5 the two
    ///   measured within noise of each other. Products whose `N` is a head's width use
    ///   [`GemmLayout::for_runtime_b`].
    /// - AVX2 (16 ymm): `MR = 6`, `NR = 16`: 12 accumulators, 2 panel vectors and a broadcast
    ///   (the only shape that fits 16 registers with two FMA pipes of 4-cycle latency busy);
    ///   `KC = 256`, `NC = 32` panels.
    /// - SSE: the same shape as AVX2 on 4-lane registers.
    pub fn for_target(target: &Target) -> Self {
        Self::for_lanes(target.f32_lanes())
    }

    /// [`GemmLayout::for_target`] for a vector width in lanes.
    pub fn for_lanes(lanes: u32) -> Self {
        let (mr, nr_vectors, kc, nc_panels) = match lanes {
            16.. => (8, 3, 512, 8),
            8 => (6, 2, 256, 32),
            _ => (6, 2, 256, 64),
        };
        GemmLayout {
            lanes,
            mr,
            nr_vectors,
            kc,
            nc_panels,
        }
    }

    /// The blocking of products of two runtime operands (attention's `Q · Kt` and `P · V`,
    /// batched `matmul`s), whose `N` is often a head's width (32, 64, 128): on AVX-512
    /// `MR = 12`, `NR = 32` (a 48-column panel would leave a third of a 32-wide head's lanes
    /// idle), as [`GemmLayout::for_target`] otherwise.
    pub fn for_runtime_b(target: &Target) -> Self {
        let mut layout = Self::for_target(target);
        if layout.lanes >= 16 {
            layout.mr = 12;
            layout.nr_vectors = 2;
        }
        layout
    }

    /// The columns of a panel (`NR`).
    pub fn nr(&self) -> usize {
        self.nr_vectors as usize * self.lanes as usize
    }

    /// The number of panels covering `n` columns.
    pub fn panels(&self, n: usize) -> usize {
        n.div_ceil(self.nr())
    }

    /// The length in `f32` of `B` (`k x n`) packed by [`pack_b`].
    pub fn packed_b_len(&self, k: usize, n: usize) -> usize {
        self.panels(n) * self.nr() * k
    }

    /// The scratch, in `f32`, that [`emit_gemm_runtime_b`]'s kernel needs for a call covering
    /// panels `p0..p1` of a `k x n` `B`: `(p1 - p0) * NR * k`; at most this, for all panels.
    pub fn runtime_b_scratch_len(&self, k: usize, n: usize) -> usize {
        self.packed_b_len(k, n)
    }

    fn check(&self, function: &str) -> Result<()> {
        let fail = |message| {
            Err(Error::Internal {
                function: function.to_owned(),
                message,
            })
        };
        if self.lanes == 0 || self.mr == 0 || self.nr_vectors == 0 {
            return fail("a GEMM tile needs at least one row, one vector and one lane");
        }
        if self.kc == 0 || self.nc_panels == 0 {
            return fail("a GEMM cache block needs at least one column and one panel");
        }
        Ok(())
    }
}

/// Packs the row-major `k x n` matrix `b` into panels of [`GemmLayout::nr`] columns, k-major,
/// the last panel padded with zeros (see the module documentation).
pub fn pack_b(layout: &GemmLayout, b: &[f32], k: usize, n: usize) -> Result<Vec<f32>> {
    if b.len() != k * n {
        return Err(Error::Internal {
            function: "pack_b".to_owned(),
            message: "B does not have k * n elements",
        });
    }
    let nr = layout.nr();
    let mut packed = vec![0.0; layout.packed_b_len(k, n)];
    for (p, panel) in packed.chunks_exact_mut(nr * k.max(1)).enumerate() {
        let width = nr.min(n - p * nr);
        for kk in 0..k {
            let row = &b[kk * n + p * nr..][..width];
            panel[kk * nr..][..width].copy_from_slice(row);
        }
    }
    Ok(packed)
}

/// Emits a GEMM with a constant `B` (row-major `k x n`) and optional constant bias (`n`):
///
/// `void name(const float *a, int64_t lda, float *c, int64_t ldc,
///            int64_t m0, int64_t m1, int64_t p0, int64_t p1)`
///
/// computes rows `m0..m1` and columns `p0*NR .. min(p1*NR, n)` of
/// `C = act(alpha * A·B + bias)`, with `A` at least `m1 x k` and `C` at least `m1 x n`
/// (row strides `lda >= k`, `ldc >= n`). `p1` is clamped to the number of panels. `C` must not
/// overlap `A`. `B` and the bias are packed into private constant globals `name.b` and
/// `name.bias`. With `k = 0`, `C` is the epilogue of zero.
#[allow(clippy::too_many_arguments)]
pub fn emit_gemm_const_b<'ctx>(
    module: &Module<'ctx>,
    target: &Target,
    name: &str,
    layout: &GemmLayout,
    b: &[f32],
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    epilogue: Epilogue,
) -> Result<FunctionValue<'ctx>> {
    emit_gemm_const_b_then(
        module, target, name, layout, b, k, n, bias, epilogue, false, None,
    )
}

/// The constant-B GEMM that runs after another one: its function's name and its `B`
/// (row-major `k x n`), packed with the same layout.
#[derive(Clone, Copy, Debug)]
pub struct NextGemm<'a> {
    pub name: &'a str,
    pub b: &'a [f32],
    pub k: usize,
    pub n: usize,
}

/// The packed `B` of the constant-B GEMM named `name`, the private global `name.b`, made by
/// whichever needs it first: the GEMM itself, or the one before it, whose last block of
/// tiles prefetches this one's first block (see [`emit_gemm_const_b_then`]).
fn packed_b_global<'ctx>(
    module: &Module<'ctx>,
    layout: &GemmLayout,
    name: &str,
    b: &[f32],
    k: usize,
    n: usize,
) -> Result<PointerValue<'ctx>> {
    let global = format!("{name}.b");
    if let Some(existing) = module.get_global(&global) {
        return Ok(existing.as_pointer_value());
    }
    let packed = pack_b(layout, b, k, n)?;
    Ok(constant_global(module, &global, &f32_bytes(&packed)))
}

/// [`emit_gemm_const_b`], whose tiles also prefetch into L2 the first block of `B` of the
/// GEMM that runs next, if any, while they work on their last block (see the module docs): a
/// model's GEMMs run one after another, each with a `B` of its own that comes from L3 or
/// memory, and a GEMM whose `B` is a single block (`k <= KC`, `n <= NC`) has no block of its
/// own to prefetch. With `a_contiguous`, the caller promises `lda = k`, and the kernel reads
/// `A` at that constant stride whatever its `lda` argument: its rows' addresses are then
/// constant offsets of one pointer, which saves two integer operations a row and a k step.
#[allow(clippy::too_many_arguments)]
pub fn emit_gemm_const_b_then<'ctx>(
    module: &Module<'ctx>,
    target: &Target,
    name: &str,
    layout: &GemmLayout,
    b: &[f32],
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    epilogue: Epilogue,
    a_contiguous: bool,
    next: Option<NextGemm<'_>>,
) -> Result<FunctionValue<'ctx>> {
    layout.check(name)?;
    let padded_bias = match bias {
        Some(bias) if bias.len() != n => {
            return Err(Error::Internal {
                function: name.to_owned(),
                message: "the bias does not have n elements",
            })
        }
        Some(bias) => {
            let mut padded = bias.to_vec();
            padded.resize(layout.panels(n) * layout.nr(), 0.0);
            Some(padded)
        }
        None => None,
    };

    let params = [
        Param::Ptr,
        Param::I64,
        Param::Ptr,
        Param::I64,
        Param::I64,
        Param::I64,
        Param::I64,
        Param::I64,
    ];
    let kb = KernelBuilder::new(module, target, name, &params, layout.lanes)?;
    mark_noalias(&kb, &[2]);
    let b_global = packed_b_global(module, layout, name, b, k, n)?;
    let next_b = match next {
        Some(g) => Some((
            packed_b_global(module, layout, g.name, g.b, g.k, g.n)?,
            kb.i64_const(to_i64(&kb, g.k)?),
        )),
        None => None,
    };
    let bias_global = padded_bias
        .as_deref()
        .map(|bias| constant_global(module, &format!("{name}.bias"), &f32_bytes(bias)));
    let k = to_i64(&kb, k)?;
    let n = to_i64(&kb, n)?;
    let operands = Operands {
        a: kb.ptr_param(0)?,
        lda: if a_contiguous {
            kb.i64_const(k)
        } else {
            kb.int_param(1)?
        },
        c: kb.ptr_param(2)?,
        ldc: kb.int_param(3)?,
        m0: kb.int_param(4)?,
        m1: kb.int_param(5)?,
        p0: kb.int_param(6)?,
        p1: kb.int_param(7)?,
        n: kb.i64_const(n),
        k: kb.i64_const(k),
        panel_k: kb.i64_const(k),
        b_packed: b_global,
        b_first_panel: kb.i64_const(0),
        bias: bias_global.map(Bias::Padded),
        addend: None,
        prefetch_next: true,
        next_b,
    };
    emit_driver(&kb, layout, &operands, epilogue)?;
    kb.builder().build_return(None).map_err(kb.err())?;
    Ok(kb.function())
}

/// Emits a GEMM whose `B` is a runtime operand with strides:
///
/// `void name(const float *a, int64_t lda, const float *b, int64_t rs_b, int64_t cs_b,
///            const float *bias, float *c, int64_t ldc, float *scratch,
///            int64_t m0, int64_t m1, int64_t n, int64_t k, int64_t p0, int64_t p1)`
///
/// computes rows `m0..m1` and columns `p0*NR .. min(p1*NR, n)` of `C = act(alpha * A·B + bias)`
/// where `B[kk, j] = b[kk * rs_b + j * cs_b]` (so `Kᵀ` of a row-major `K` is `rs_b = 1`,
/// `cs_b = ldk`). `bias` (`n` elements) is read only when `with_bias`, else it may be null.
/// `scratch` needs `(min(p1, panels) - p0) * NR * k` floats
/// ([`GemmLayout::runtime_b_scratch_len`] covers any range); concurrent calls need distinct
/// scratch buffers. `C` must overlap neither `A`, `B` nor the scratch.
pub fn emit_gemm_runtime_b<'ctx>(
    module: &Module<'ctx>,
    target: &Target,
    name: &str,
    layout: &GemmLayout,
    with_bias: bool,
    epilogue: Epilogue,
) -> Result<FunctionValue<'ctx>> {
    layout.check(name)?;
    use Param::{Ptr, I64};
    let params = [
        Ptr, I64, Ptr, I64, I64, Ptr, Ptr, I64, Ptr, I64, I64, I64, I64, I64, I64,
    ];
    let kb = KernelBuilder::new(module, target, name, &params, layout.lanes)?;
    mark_noalias(&kb, &[6, 8]);
    let b = kb.ptr_param(2)?;
    let rs_b = kb.int_param(3)?;
    let cs_b = kb.int_param(4)?;
    let scratch = kb.ptr_param(8)?;
    let n = kb.int_param(11)?;
    let k = kb.int_param(12)?;
    let p0 = kb.int_param(13)?;
    let p1 = kb.int_param(14)?;
    let p1 = kb.min_i64(p1, panel_count(&kb, layout, n)?)?;
    let pack = PackB {
        b,
        rs_b,
        cs_b,
        n,
        k,
        p0,
        p1,
        scratch,
    };
    emit_pack_b(&kb, layout, &pack)?;
    let operands = Operands {
        a: kb.ptr_param(0)?,
        lda: kb.int_param(1)?,
        c: kb.ptr_param(6)?,
        ldc: kb.int_param(7)?,
        m0: kb.int_param(9)?,
        m1: kb.int_param(10)?,
        p0,
        p1,
        n,
        k,
        panel_k: k,
        b_packed: scratch,
        b_first_panel: p0,
        bias: if with_bias {
            Some(Bias::Masked(kb.ptr_param(5)?))
        } else {
            None
        },
        addend: None,
        prefetch_next: false,
        next_b: None,
    };
    emit_driver(&kb, layout, &operands, epilogue)?;
    kb.builder().build_return(None).map_err(kb.err())?;
    Ok(kb.function())
}

/// Emits the packing of a strided runtime `B` on its own:
///
/// `void name(const float *b, int64_t rs_b, int64_t cs_b, int64_t n, int64_t k, float *packed)`
///
/// packs every panel of the `k x n` matrix `B[kk, j] = b[kk * rs_b + j * cs_b]` into `packed`
/// ([`GemmLayout::packed_b_len`] floats), as [`emit_gemm_runtime_b`] does before its product,
/// for [`emit_gemm_packed_b`] to use as often as needed.
pub fn emit_pack_b_fn<'ctx>(
    module: &Module<'ctx>,
    target: &Target,
    name: &str,
    layout: &GemmLayout,
) -> Result<FunctionValue<'ctx>> {
    layout.check(name)?;
    use Param::{Ptr, I64};
    let kb = KernelBuilder::new(
        module,
        target,
        name,
        &[Ptr, I64, I64, I64, I64, Ptr],
        layout.lanes,
    )?;
    mark_noalias(&kb, &[5]);
    let n = kb.int_param(3)?;
    let pack = PackB {
        b: kb.ptr_param(0)?,
        rs_b: kb.int_param(1)?,
        cs_b: kb.int_param(2)?,
        n,
        k: kb.int_param(4)?,
        p0: kb.i64_const(0),
        p1: panel_count(&kb, layout, n)?,
        scratch: kb.ptr_param(5)?,
    };
    emit_pack_b(&kb, layout, &pack)?;
    kb.builder().build_return(None).map_err(kb.err())?;
    Ok(kb.function())
}

/// Emits a GEMM whose `B` was packed by [`emit_pack_b_fn`]:
///
/// `void name(const float *a, int64_t lda, const float *packed, float *c, int64_t ldc,
///            int64_t m0, int64_t m1, int64_t n, int64_t k, int64_t packed_k)`
///
/// computes rows `m0..m1` of `C = act(alpha * A·B)` (all `n` columns), with the same blocking
/// and rounding as [`emit_gemm_runtime_b`]: the two give identical results. `B` was packed with
/// `packed_k >= k` rows, of which the product reads the first `k`, and at least `n` columns.
/// `C` must overlap neither `A` nor `packed`.
pub fn emit_gemm_packed_b<'ctx>(
    module: &Module<'ctx>,
    target: &Target,
    name: &str,
    layout: &GemmLayout,
    epilogue: Epilogue,
) -> Result<FunctionValue<'ctx>> {
    emit_gemm_packed_b_known(module, target, name, layout, epilogue, Known::default())
}

/// Arguments of a GEMM known when it is compiled: the kernel uses these values instead of
/// its parameters (which its callers must pass equal), and LLVM folds them into the code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Known {
    /// `A`'s row stride: the micro-kernel then addresses its rows by constant offsets from
    /// one pointer, where a runtime stride costs integer operations beside each k step's
    /// fused multiply-adds.
    pub lda: Option<i64>,
    /// Whether the kernel takes two more parameters, `const float *d, int64_t ldd`, and adds
    /// `D` (`m x n`, row stride `ldd`, which may be 0 for one row read by every row; its
    /// columns contiguous) to `alpha * A·B` in the epilogue, rounded once after the
    /// multiply as a separate add would be: attention's mask.
    pub addend: bool,
}

/// [`emit_gemm_packed_b`] with the arguments `known` gives compiled in.
pub fn emit_gemm_packed_b_known<'ctx>(
    module: &Module<'ctx>,
    target: &Target,
    name: &str,
    layout: &GemmLayout,
    epilogue: Epilogue,
    known: Known,
) -> Result<FunctionValue<'ctx>> {
    layout.check(name)?;
    use Param::{Ptr, I64};
    let mut params = vec![Ptr, I64, Ptr, Ptr, I64, I64, I64, I64, I64, I64];
    if known.addend {
        params.extend([Ptr, I64]);
    }
    let kb = KernelBuilder::new(module, target, name, &params, layout.lanes)?;
    mark_noalias(&kb, &[3]);
    let n = kb.int_param(7)?;
    let addend = match known.addend {
        true => Some((kb.ptr_param(10)?, kb.int_param(11)?)),
        false => None,
    };
    let operands = Operands {
        a: kb.ptr_param(0)?,
        lda: match known.lda {
            Some(lda) => kb.i64_const(lda),
            None => kb.int_param(1)?,
        },
        c: kb.ptr_param(3)?,
        ldc: kb.int_param(4)?,
        m0: kb.int_param(5)?,
        m1: kb.int_param(6)?,
        p0: kb.i64_const(0),
        p1: panel_count(&kb, layout, n)?,
        n,
        k: kb.int_param(8)?,
        panel_k: kb.int_param(9)?,
        b_packed: kb.ptr_param(2)?,
        b_first_panel: kb.i64_const(0),
        bias: None,
        addend,
        prefetch_next: false,
        next_b: None,
    };
    emit_driver(&kb, layout, &operands, epilogue)?;
    kb.builder().build_return(None).map_err(kb.err())?;
    Ok(kb.function())
}

/// Where the epilogue reads the bias.
#[derive(Clone, Copy)]
enum Bias<'ctx> {
    /// A buffer padded to whole panels: full-width loads are safe.
    Padded(PointerValue<'ctx>),
    /// A buffer of exactly `n` elements: loads are masked to the tile's columns.
    Masked(PointerValue<'ctx>),
}

/// The values the driver works on.
struct Operands<'ctx> {
    a: PointerValue<'ctx>,
    lda: IntValue<'ctx>,
    c: PointerValue<'ctx>,
    ldc: IntValue<'ctx>,
    m0: IntValue<'ctx>,
    m1: IntValue<'ctx>,
    p0: IntValue<'ctx>,
    /// Already clamped to the number of panels by the runtime-B kernel.
    p1: IntValue<'ctx>,
    n: IntValue<'ctx>,
    k: IntValue<'ctx>,
    /// The k the panels were packed with (their stride is `panel_k * NR`): `k`, or more when
    /// the product reads only the first `k` rows of a packed `B`.
    panel_k: IntValue<'ctx>,
    /// The packed panels; panel `b_first_panel` is at the start.
    b_packed: PointerValue<'ctx>,
    b_first_panel: IntValue<'ctx>,
    bias: Option<Bias<'ctx>>,
    /// `D` and its row stride, added in the epilogue (see [`Known::addend`]).
    addend: Option<(PointerValue<'ctx>, IntValue<'ctx>)>,
    /// Whether the tiles prefetch the next block of `B` into L2 (see [`NextChunk`]): for
    /// constant weights, which come from memory or L3, not for a `B` the kernel just packed.
    prefetch_next: bool,
    /// The packed `B` of the GEMM that runs next and its `k`, whose first block the last
    /// block's tiles prefetch.
    next_b: Option<(PointerValue<'ctx>, IntValue<'ctx>)>,
}

/// The share of the next block of `B` one micro-kernel invocation prefetches into L2: one
/// prefetch per k step, step `kk`'s at `kk * step` bytes from `start`, so that the
/// invocation's lines are spread evenly over its steps (the address is a pointer advanced by
/// `step`: one integer addition a step, where a line index scaled from a fixed-point rate
/// took three, a shift among them, which competes with the FMAs for their ports). `step` is
/// at most a line, and no line is skipped, when the thread has at least as many row tiles as
/// a k row of a panel has lines (`NR * 4 / 64`: three with AVX-512's 48 columns, one with
/// AVX2's 16); with fewer, one prefetch a step reaches only every `step / 64`-th line.
///
/// A thread's row tiles each read the current block of `B` from L2, but the first of them
/// brings it from L3 or memory, at a few times the cost of the others. So each invocation
/// fetches, beside its own work, a slice of its panel's next chunk (the same panel's next
/// k-block, or the panel one column block on), the thread's row tiles together the whole
/// chunk: the first tile of the next block then finds it in L2.
struct NextChunk<'ctx> {
    start: PointerValue<'ctx>,
    /// Bytes between two steps' prefetches: the share's lines times 64 over `kc`, rounded up
    /// (the last steps may prefetch up to `kc` bytes past the share).
    step: IntValue<'ctx>,
}

/// One micro-kernel invocation's inputs.
struct Tile<'ctx> {
    /// The rows of `A` for the tile (the copied block, or `A` itself): row `i` at
    /// `i * a_stride`.
    a_block: PointerValue<'ctx>,
    /// The row stride of `a_block`, in floats.
    a_stride: IntValue<'ctx>,
    /// Row `kb` of the current panel.
    b_panel: PointerValue<'ctx>,
    kc: IntValue<'ctx>,
    /// `&C[row, col]` of the tile's corner.
    c: PointerValue<'ctx>,
    ldc: IntValue<'ctx>,
    rows: IntValue<'ctx>,
    cols: IntValue<'ctx>,
    first: IntValue<'ctx>,
    last: IntValue<'ctx>,
    /// The bias at the tile's first column.
    bias: Option<Bias<'ctx>>,
    /// `&D[row, col]` of the tile's corner and `D`'s row stride.
    addend: Option<(PointerValue<'ctx>, IntValue<'ctx>)>,
    /// The tile's share of the next block of `B` to prefetch, if any.
    next: Option<NextChunk<'ctx>>,
}

fn to_i64(kb: &KernelBuilder<'_, '_>, value: usize) -> Result<i64> {
    i64::try_from(value).map_err(|_| kb.internal("a GEMM dimension does not fit in i64"))
}

fn mark_noalias(kb: &KernelBuilder<'_, '_>, params: &[u32]) {
    let noalias = Attribute::get_named_enum_kind_id("noalias");
    for &param in params {
        kb.function().add_attribute(
            AttributeLoc::Param(param),
            kb.context().create_enum_attribute(noalias, 0),
        );
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// `ceil(n / NR)`.
fn panel_count<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    layout: &GemmLayout,
    n: IntValue<'ctx>,
) -> Result<IntValue<'ctx>> {
    let b = kb.builder();
    let nr = kb.i64_const(layout.nr() as i64);
    let rounded = b
        .build_int_add(n, kb.i64_const(layout.nr() as i64 - 1), "n.up")
        .map_err(kb.err())?;
    b.build_int_signed_div(rounded, nr, "panels")
        .map_err(kb.err())
}

/// A packing of panels `p0..p1` of the strided `k x n` matrix `B`
/// (`B[kk, j] = b[kk * rs_b + j * cs_b]`) into `scratch`, panel `p0` first.
struct PackB<'ctx> {
    b: PointerValue<'ctx>,
    rs_b: IntValue<'ctx>,
    cs_b: IntValue<'ctx>,
    n: IntValue<'ctx>,
    k: IntValue<'ctx>,
    p0: IntValue<'ctx>,
    p1: IntValue<'ctx>,
    scratch: PointerValue<'ctx>,
}

/// Emits `pack`, zero-padding columns past `n`, in one of three ways chosen by the strides
/// at run time:
/// - rows contiguous (`cs_b == 1`, attention's `V`): each panel row in whole vectors, masked
///   past `n`;
/// - columns contiguous (`rs_b == 1`, attention's `K` read as `Kt`): blocks of `lanes x lanes`
///   loaded down the columns and transposed in registers (a gather a vector otherwise, about
///   a load per element), the last `k % lanes` rows element by element;
/// - otherwise element by element.
///
/// All three write the same floats.
fn emit_pack_b<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    layout: &GemmLayout,
    pack: &PackB<'ctx>,
) -> Result<()> {
    let unit = |stride: IntValue<'ctx>, name: &str| {
        kb.builder()
            .build_int_compare(IntPredicate::EQ, stride, kb.i64_const(1), name)
            .map_err(kb.err())
    };
    kb.if_else(
        unit(pack.cs_b, "rows.contiguous")?,
        |kb| pack_rows(kb, layout, pack),
        |kb| {
            kb.if_else(
                unit(pack.rs_b, "columns.contiguous")?,
                |kb| {
                    let lanes = kb.i64_const(i64::from(layout.lanes));
                    let bld = kb.builder();
                    let rem = bld
                        .build_int_signed_rem(pack.k, lanes, "k.rem")
                        .map_err(kb.err())?;
                    let k_whole = bld
                        .build_int_sub(pack.k, rem, "k.whole")
                        .map_err(kb.err())?;
                    pack_transposed(kb, layout, pack, k_whole)?;
                    pack_elements(kb, layout, pack, k_whole)
                },
                |kb| pack_elements(kb, layout, pack, kb.i64_const(0)),
            )
        },
    )
}

/// Panel `p` of a [`PackB`], for [`for_each_panel`].
struct PackPanel<'ctx> {
    /// The panel's first column of `B`.
    first_col: IntValue<'ctx>,
    /// `(p - p0) * k`: the panel's first row in `scratch`, in rows of `NR`.
    base: IntValue<'ctx>,
    /// The last column of `B`, `n - 1`.
    last_col: IntValue<'ctx>,
    n: IntValue<'ctx>,
    nr: i64,
}

impl<'ctx> PackPanel<'ctx> {
    /// Column `j` of the panel: the column of `B` to read and whether it is inside `B`.
    /// Columns past `n` read the last column (always valid) and store zeros.
    fn column(
        &self,
        kb: &KernelBuilder<'_, 'ctx>,
        j: i64,
    ) -> Result<(IntValue<'ctx>, IntValue<'ctx>)> {
        let bld = kb.builder();
        let col = bld
            .build_int_add(self.first_col, kb.i64_const(j), "col")
            .map_err(kb.err())?;
        let inside = bld
            .build_int_compare(IntPredicate::SLT, col, self.n, "inside")
            .map_err(kb.err())?;
        Ok((kb.min_i64(col, self.last_col)?, inside))
    }

    /// `scratch`'s index of the panel's row `kk`, element `j`: `(base + kk) * NR + j`.
    fn index(
        &self,
        kb: &KernelBuilder<'_, 'ctx>,
        kk: IntValue<'ctx>,
        j: i64,
    ) -> Result<IntValue<'ctx>> {
        let bld = kb.builder();
        let row = bld
            .build_int_add(self.base, kk, "dst.row")
            .map_err(kb.err())?;
        let row = bld
            .build_int_mul(row, kb.i64_const(self.nr), "dst.row")
            .map_err(kb.err())?;
        bld.build_int_add(row, kb.i64_const(j), "dst")
            .map_err(kb.err())
    }
}

/// Runs `body` for each panel of `pack`.
fn for_each_panel<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    layout: &GemmLayout,
    pack: &PackB<'ctx>,
    body: impl FnOnce(&KernelBuilder<'_, 'ctx>, &PackPanel<'ctx>) -> Result<()>,
) -> Result<()> {
    let nr = layout.nr() as i64;
    kb.for_loop(pack.p0, pack.p1, kb.i64_const(1), "pack.p", |kb, p| {
        let bld = kb.builder();
        let first_col = bld
            .build_int_mul(p, kb.i64_const(nr), "col0")
            .map_err(kb.err())?;
        let rel = bld.build_int_sub(p, pack.p0, "p.rel").map_err(kb.err())?;
        let panel = PackPanel {
            first_col,
            base: bld.build_int_mul(rel, pack.k, "panel").map_err(kb.err())?,
            last_col: bld
                .build_int_sub(pack.n, kb.i64_const(1), "n.last")
                .map_err(kb.err())?,
            n: pack.n,
            nr,
        };
        body(kb, &panel)
    })
}

/// [`emit_pack_b`] of a `B` whose rows are contiguous: panel row `kk` is `nr_vectors` vector
/// loads of row `kk`, the lanes past `n` masked to zero.
fn pack_rows<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    layout: &GemmLayout,
    pack: &PackB<'ctx>,
) -> Result<()> {
    let lanes = i64::from(layout.lanes);
    for_each_panel(kb, layout, pack, |kb, panel| {
        let bld = kb.builder();
        let cols: Vec<_> = (0..i64::from(layout.nr_vectors))
            .map(|v| {
                bld.build_int_add(panel.first_col, kb.i64_const(v * lanes), "col")
                    .map_err(kb.err())
            })
            .collect::<Result<_>>()?;
        let masks: Vec<_> = cols
            .iter()
            .map(|&col| kb.tail_mask(col, pack.n))
            .collect::<Result<_>>()?;
        kb.for_loop(
            kb.i64_const(0),
            pack.k,
            kb.i64_const(1),
            "pack.k",
            |kb, kk| {
                let src_row = bld
                    .build_int_mul(kk, pack.rs_b, "src.row")
                    .map_err(kb.err())?;
                for (v, (&col, &mask)) in cols.iter().zip(&masks).enumerate() {
                    let src = bld.build_int_add(src_row, col, "src").map_err(kb.err())?;
                    let value = kb.load_f32(pack.b, src, Some(mask))?;
                    let dst = panel.index(kb, kk, v as i64 * lanes)?;
                    kb.store_f32(pack.scratch, dst, value, None)?;
                }
                Ok(())
            },
        )
    })
}

/// Rows `0..k_whole` (a multiple of the lanes) of [`emit_pack_b`] for a `B` whose columns are
/// contiguous: per block of `lanes` rows and `lanes` columns, a vector down each column
/// (zeros past `n`), transposed in registers ([`transpose_square`]) into the panel's rows.
fn pack_transposed<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    layout: &GemmLayout,
    pack: &PackB<'ctx>,
    k_whole: IntValue<'ctx>,
) -> Result<()> {
    let lanes = i64::from(layout.lanes);
    let zeros = kb.f32_vector().const_zero();
    for_each_panel(kb, layout, pack, |kb, panel| {
        let step = kb.i64_const(lanes);
        kb.for_loop(kb.i64_const(0), k_whole, step, "pack.kb", |kb, kk0| {
            let bld = kb.builder();
            for g in 0..i64::from(layout.nr_vectors) {
                let mut columns = Vec::with_capacity(lanes as usize);
                for i in 0..lanes {
                    let (src_col, inside) = panel.column(kb, g * lanes + i)?;
                    let src = bld
                        .build_int_mul(src_col, pack.cs_b, "src.col")
                        .map_err(kb.err())?;
                    let src = bld.build_int_add(src, kk0, "src").map_err(kb.err())?;
                    let column = kb.load_f32(pack.b, src, None)?;
                    columns.push(
                        bld.build_select(inside, column, zeros, "column")
                            .map_err(kb.err())?
                            .into_vector_value(),
                    );
                }
                for (i, row) in transpose_square(kb, columns)?.into_iter().enumerate() {
                    let kk = bld
                        .build_int_add(kk0, kb.i64_const(i as i64), "kk")
                        .map_err(kb.err())?;
                    kb.store_f32(pack.scratch, panel.index(kb, kk, g * lanes)?, row, None)?;
                }
            }
            Ok(())
        })
    })
}

/// The transpose of the square matrix whose rows are `rows` (as many as a vector's lanes, a
/// power of two): `log2(lanes)` rounds of two-vector shuffles, each round swapping the
/// off-diagonal blocks of every `2h x 2h` block (`h` = half the lanes, then halving), as the
/// transpose of `[[A, B], [C, D]]` is `[[At, Ct], [Bt, Dt]]`.
fn transpose_square<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    mut rows: Vec<VectorValue<'ctx>>,
) -> Result<Vec<VectorValue<'ctx>>> {
    let l = rows.len() as u32;
    if !l.is_power_of_two() {
        return Err(kb.internal("a transpose of a matrix whose size is not a power of two"));
    }
    let indices = |f: &dyn Fn(u32) -> u32| kb.shuffle_mask((0..l).map(|x| Some(f(x))));
    let mut h = l / 2;
    while h >= 1 {
        // Lanes of the first row are 0..l in a two-vector shuffle, the second's l..2l.
        let low = indices(&|x| {
            if (x / h).is_multiple_of(2) {
                x
            } else {
                l + x - h
            }
        });
        let high = indices(&|x| {
            if (x / h).is_multiple_of(2) {
                x + h
            } else {
                l + x
            }
        });
        for i in (0..l).filter(|i| i & h == 0) {
            let (a, b) = (rows[i as usize], rows[(i + h) as usize]);
            let bld = kb.builder();
            rows[i as usize] = bld
                .build_shuffle_vector(a, b, low, "t.low")
                .map_err(kb.err())?;
            rows[(i + h) as usize] = bld
                .build_shuffle_vector(a, b, high, "t.high")
                .map_err(kb.err())?;
        }
        h /= 2;
    }
    Ok(rows)
}

/// Rows `k0..k` of [`emit_pack_b`], element by element, whatever the strides.
fn pack_elements<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    layout: &GemmLayout,
    pack: &PackB<'ctx>,
    k0: IntValue<'ctx>,
) -> Result<()> {
    let f32_type = kb.context().f32_type();
    for_each_panel(kb, layout, pack, |kb, panel| {
        kb.for_loop(k0, pack.k, kb.i64_const(1), "pack.k", |kb, kk| {
            let bld = kb.builder();
            let src_row = bld
                .build_int_mul(kk, pack.rs_b, "src.row")
                .map_err(kb.err())?;
            for j in 0..panel.nr {
                let (src_col, inside) = panel.column(kb, j)?;
                let offset = bld
                    .build_int_mul(src_col, pack.cs_b, "src.col")
                    .map_err(kb.err())?;
                let offset = bld
                    .build_int_add(src_row, offset, "src")
                    .map_err(kb.err())?;
                let value = load_f32_scalar(kb, pack.b, offset)?;
                let value = bld
                    .build_select(inside, value, f32_type.const_zero(), "packed")
                    .map_err(kb.err())?;
                let ptr = kb.f32_element_ptr(pack.scratch, panel.index(kb, kk, j)?)?;
                let store = bld.build_store(ptr, value).map_err(kb.err())?;
                store
                    .set_alignment(F32_ALIGN)
                    .map_err(|_| kb.internal("could not align a store"))?;
            }
            Ok(())
        })
    })
}

fn load_f32_scalar<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    base: PointerValue<'ctx>,
    index: IntValue<'ctx>,
) -> Result<inkwell::values::FloatValue<'ctx>> {
    let ptr = kb.f32_element_ptr(base, index)?;
    let value = kb
        .builder()
        .build_load(kb.context().f32_type(), ptr, "s")
        .map_err(kb.err())?;
    value
        .as_instruction_value()
        .ok_or_else(|| kb.internal("a load is not an instruction"))?
        .set_alignment(F32_ALIGN)
        .map_err(|_| kb.internal("could not align a load"))?;
    Ok(value.into_float_value())
}

/// The cache level a prefetch fills.
#[derive(Clone, Copy)]
enum Locality {
    L1,
    L2,
}

/// Prefetches the cache line of `base[index]` (f32 elements) for reading. A prefetch never
/// faults, so the address may lie past the end of the buffer; the plain (not in-bounds) GEP
/// keeps it well defined.
fn prefetch<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    base: PointerValue<'ctx>,
    index: IntValue<'ctx>,
    locality: Locality,
) -> Result<()> {
    let bytes = kb
        .builder()
        .build_int_mul(index, kb.i64_const(4), "pf.bytes")
        .map_err(kb.err())?;
    prefetch_bytes(kb, base, bytes, locality)
}

/// [`prefetch`] of the line `bytes` bytes from `base`.
fn prefetch_bytes<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    base: PointerValue<'ctx>,
    bytes: IntValue<'ctx>,
    locality: Locality,
) -> Result<()> {
    let bld = kb.builder();
    // SAFETY: the address is only prefetched, never dereferenced.
    let ptr = unsafe {
        bld.build_gep(kb.context().i8_type(), base, &[bytes], "pf")
            .map_err(kb.err())?
    };
    let intrinsic = kb.intrinsic(
        "llvm.prefetch",
        &[kb.context()
            .ptr_type(inkwell::AddressSpace::default())
            .into()],
    )?;
    let i32_type = kb.context().i32_type();
    // llvm.prefetch's locality: 3 keeps the line in every level (prefetcht0), 2 in L2 and
    // below (prefetcht1).
    let level = match locality {
        Locality::L1 => 3,
        Locality::L2 => 2,
    };
    bld.build_call(
        intrinsic,
        &[
            ptr.into(),
            i32_type.const_zero().into(),
            i32_type.const_int(level, false).into(),
            i32_type.const_int(1, false).into(),
        ],
        "",
    )
    .map_err(kb.err())?;
    Ok(())
}

/// The loop nest over column blocks, k-blocks, row blocks and panels (see the module docs).
fn emit_driver<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    layout: &GemmLayout,
    ops: &Operands<'ctx>,
    epilogue: Epilogue,
) -> Result<()> {
    let mr = i64::from(layout.mr);
    let nr = layout.nr() as i64;
    let kc_max = i64::from(layout.kc);
    let ncp = i64::from(layout.nc_panels);
    let p1 = kb.min_i64(ops.p1, panel_count(kb, layout, ops.n)?)?;

    // The copy of the A block lives in the entry block's stack frame.
    let block_type = kb.context().f32_type().array_type((mr * kc_max) as u32);
    let a_block = kb
        .entry_builder()?
        .build_alloca(block_type, "a.block")
        .map_err(kb.err())?;
    a_block
        .as_instruction()
        .ok_or_else(|| kb.internal("an alloca is not an instruction"))?
        .set_alignment(64)
        .map_err(|_| kb.internal("could not align the A block"))?;

    kb.for_loop(ops.p0, p1, kb.i64_const(ncp), "nb", |kb, nb| {
        let bld = kb.builder();
        let nb_end = bld
            .build_int_add(nb, kb.i64_const(ncp), "nb.end")
            .map_err(kb.err())?;
        let nb_end = kb.min_i64(nb_end, p1)?;

        // do { ... } while (kb < k): one pass even for k = 0, which then stores the epilogue.
        let pre = kb.current_block()?;
        let k_body = kb.append_block("kb.body");
        let k_exit = kb.append_block("kb.exit");
        bld.build_unconditional_branch(k_body).map_err(kb.err())?;
        bld.position_at_end(k_body);
        let k0_phi = bld
            .build_phi(kb.context().i64_type(), "kb")
            .map_err(kb.err())?;
        let k0 = k0_phi.as_basic_value().into_int_value();
        let left = bld.build_int_sub(ops.k, k0, "k.left").map_err(kb.err())?;
        let kc = kb.min_i64(left, kb.i64_const(kc_max))?;
        let first = bld
            .build_int_compare(IntPredicate::EQ, k0, kb.i64_const(0), "first")
            .map_err(kb.err())?;
        let k_next = bld
            .build_int_add(k0, kb.i64_const(kc_max), "kb.next")
            .map_err(kb.err())?;
        let last = bld
            .build_int_compare(IntPredicate::SGE, k_next, ops.k, "last")
            .map_err(kb.err())?;

        // The prefetch of the next chunks (see `NextChunk`), for the whole k-block: each of
        // the thread's `tiles` row tiles takes `per_tile` lines of every next chunk, spread
        // over its `kc` steps, `step` bytes apart.
        let more_k = bld.build_not(last, "k.more").map_err(kb.err())?;
        let prefetch_plan = if ops.prefetch_next {
            let i64c = |v: i64| kb.i64_const(v);
            let ceil_div = |a: IntValue<'ctx>, b: IntValue<'ctx>, name: &str| {
                let up = bld
                    .build_int_add(
                        a,
                        bld.build_int_sub(b, i64c(1), "b1").map_err(kb.err())?,
                        "up",
                    )
                    .map_err(kb.err())?;
                bld.build_int_signed_div(up, b, name).map_err(kb.err())
            };
            let m_rows = bld
                .build_int_sub(ops.m1, ops.m0, "rows")
                .map_err(kb.err())?;
            let tiles = kb.max_i64(ceil_div(m_rows, i64c(mr), "tiles")?, i64c(1))?;
            // The next chunk's k rows: the next k-block's, or the first k-block's of the panel
            // one column block on, or after the thread's last block the next GEMM's first.
            let next_k_rows = kb.min_i64(
                bld.build_int_sub(ops.k, k_next, "k.rest")
                    .map_err(kb.err())?,
                i64c(kc_max),
            )?;
            let first_k_rows = match ops.next_b {
                Some((_, k2)) => {
                    let last_block = bld
                        .build_int_compare(IntPredicate::SGE, nb_end, p1, "nb.last")
                        .map_err(kb.err())?;
                    bld.build_select(
                        last_block,
                        kb.min_i64(k2, i64c(kc_max))?,
                        kb.min_i64(ops.k, i64c(kc_max))?,
                        "first.k",
                    )
                    .map_err(kb.err())?
                    .into_int_value()
                }
                None => kb.min_i64(ops.k, i64c(kc_max))?,
            };
            let next_rows = bld
                .build_select(more_k, next_k_rows, first_k_rows, "next.k")
                .map_err(kb.err())?
                .into_int_value();
            // Lines of 64 bytes: NR floats (4 bytes) per k row.
            let bytes = bld
                .build_int_mul(next_rows, i64c(nr * 4), "bytes")
                .map_err(kb.err())?;
            let lines = ceil_div(bytes, i64c(64), "lines")?;
            let per_tile = ceil_div(lines, tiles, "per.tile")?;
            let step = ceil_div(
                bld.build_int_mul(per_tile, i64c(64), "share.bytes")
                    .map_err(kb.err())?,
                kb.max_i64(kc, i64c(1))?,
                "step",
            )?;
            Some((per_tile, step))
        } else {
            None
        };

        kb.for_loop(ops.m0, ops.m1, kb.i64_const(mr), "ib", |kb, ib| {
            let bld = kb.builder();
            let left = bld.build_int_sub(ops.m1, ib, "m.left").map_err(kb.err())?;
            let rows = kb.min_i64(left, kb.i64_const(mr))?;
            let last_row = bld
                .build_int_sub(rows, kb.i64_const(1), "row.last")
                .map_err(kb.err())?;
            // A whole tile's rows are read where they are (row stride `lda`: they stay in L1
            // across the column block); a partial tile's are copied, the rows past m1
            // repeating the last valid row (their results are never stored).
            let whole = bld
                .build_int_compare(IntPredicate::EQ, rows, kb.i64_const(mr), "rows.whole")
                .map_err(kb.err())?;
            let a_here = bld.build_int_mul(ib, ops.lda, "a.here").map_err(kb.err())?;
            let a_here = bld.build_int_add(a_here, k0, "a.here").map_err(kb.err())?;
            let a_here = kb.f32_element_ptr(ops.a, a_here)?;
            let c_row = bld.build_int_mul(ib, ops.ldc, "c.row").map_err(kb.err())?;
            // This tile's share: lines `t * per_tile ..` of each next chunk, for tile `t`.
            let share = match prefetch_plan {
                Some((per_tile, step)) => {
                    let t = bld
                        .build_int_signed_div(
                            bld.build_int_sub(ib, ops.m0, "ib.rel").map_err(kb.err())?,
                            kb.i64_const(mr),
                            "t",
                        )
                        .map_err(kb.err())?;
                    let line0 = bld.build_int_mul(t, per_tile, "line0").map_err(kb.err())?;
                    let offset = bld
                        .build_int_mul(line0, kb.i64_const(16), "off")
                        .map_err(kb.err())?;
                    Some((step, offset))
                }
                None => None,
            };
            let panel_loop = |a_rows: PointerValue<'ctx>, a_stride: IntValue<'ctx>| {
                kb.for_loop(nb, nb_end, kb.i64_const(1), "p", |kb, p| {
                    let bld = kb.builder();
                    let col = bld
                        .build_int_mul(p, kb.i64_const(nr), "col")
                        .map_err(kb.err())?;
                    let left = bld.build_int_sub(ops.n, col, "n.left").map_err(kb.err())?;
                    let cols = kb.min_i64(left, kb.i64_const(nr))?;
                    // Where row `k0` of panel `q` starts in the packed B.
                    let to_panel = |q: IntValue<'ctx>, k0: IntValue<'ctx>| -> Result<_> {
                        let rel = bld
                            .build_int_sub(q, ops.b_first_panel, "p.rel")
                            .map_err(kb.err())?;
                        let at = bld
                            .build_int_mul(rel, ops.panel_k, "panel")
                            .map_err(kb.err())?;
                        let at = bld.build_int_add(at, k0, "panel").map_err(kb.err())?;
                        bld.build_int_mul(at, kb.i64_const(nr), "panel")
                            .map_err(kb.err())
                    };
                    let panel = to_panel(p, k0)?;
                    let b_panel = kb.f32_element_ptr(ops.b_packed, panel)?;
                    let corner = bld.build_int_add(c_row, col, "corner").map_err(kb.err())?;
                    let c = kb.f32_element_ptr(ops.c, corner)?;
                    let bias = match ops.bias {
                        Some(Bias::Padded(ptr)) => {
                            Some(Bias::Padded(kb.f32_element_ptr(ptr, col)?))
                        }
                        Some(Bias::Masked(ptr)) => {
                            Some(Bias::Masked(kb.f32_element_ptr(ptr, col)?))
                        }
                        None => None,
                    };
                    let addend = match ops.addend {
                        Some((d, ldd)) => {
                            let row = bld.build_int_mul(ib, ldd, "d.row").map_err(kb.err())?;
                            let corner =
                                bld.build_int_add(row, col, "d.corner").map_err(kb.err())?;
                            Some((kb.f32_element_ptr(d, corner)?, ldd))
                        }
                        None => None,
                    };
                    let next = match share {
                        Some((step, offset)) => {
                            // The panel's next k-block, or the first of the panel `NC` panels on
                            // (none past the thread's panels: the current chunk again, at step 0).
                            let ahead = bld
                                .build_int_add(p, kb.i64_const(ncp), "p.ahead")
                                .map_err(kb.err())?;
                            let exists = bld
                                .build_int_compare(IntPredicate::SLT, ahead, p1, "p.ahead.ok")
                                .map_err(kb.err())?;
                            let same = to_panel(p, k_next)?;
                            let on = to_panel(ahead, kb.i64_const(0))?;
                            let some = bld.build_or(more_k, exists, "next.ok").map_err(kb.err())?;
                            let at = bld
                                .build_select(more_k, same, on, "next.at")
                                .map_err(kb.err())?
                                .into_int_value();
                            let at = bld
                                .build_select(some, at, panel, "next.at")
                                .map_err(kb.err())?
                                .into_int_value();
                            let at = bld
                                .build_int_add(at, offset, "next.line")
                                .map_err(kb.err())?;
                            // SAFETY: the addresses are only prefetched, never dereferenced; the
                            // plain (not in-bounds) GEPs keep them well defined past the end.
                            let own = unsafe {
                                bld.build_gep(kb.context().f32_type(), ops.b_packed, &[at], "next")
                                    .map_err(kb.err())?
                            };
                            let (start, step) = match ops.next_b {
                                Some((next_b, k2)) => {
                                    // Panel `p0 + (p - nb)` of the next GEMM: the thread's first
                                    // block there, if that GEMM splits its panels alike.
                                    let q = bld.build_int_sub(p, nb, "q.rel").map_err(kb.err())?;
                                    let q = bld.build_int_add(q, ops.p0, "q").map_err(kb.err())?;
                                    let at = bld.build_int_mul(q, k2, "q.k").map_err(kb.err())?;
                                    let at = bld
                                        .build_int_mul(at, kb.i64_const(nr), "q.at")
                                        .map_err(kb.err())?;
                                    let at = bld
                                        .build_int_add(at, offset, "q.line")
                                        .map_err(kb.err())?;
                                    // SAFETY: as above.
                                    let theirs = unsafe {
                                        bld.build_gep(kb.context().f32_type(), next_b, &[at], "q.b")
                                            .map_err(kb.err())?
                                    };
                                    let start = bld
                                        .build_select(some, own, theirs, "next.start")
                                        .map_err(kb.err())?
                                        .into_pointer_value();
                                    (start, step)
                                }
                                None => {
                                    let step = bld
                                        .build_select(some, step, kb.i64_const(0), "next.step")
                                        .map_err(kb.err())?
                                        .into_int_value();
                                    (own, step)
                                }
                            };
                            Some(NextChunk { start, step })
                        }
                        None => None,
                    };
                    let tile = Tile {
                        a_block: a_rows,
                        a_stride,
                        b_panel,
                        kc,
                        c,
                        ldc: ops.ldc,
                        rows,
                        cols,
                        first,
                        last,
                        bias,
                        addend,
                        next,
                    };
                    emit_tile(kb, layout, &tile, epilogue)
                })
            };
            // Two instances of the tile loop, each with its stride of A known where the
            // caller made it a constant: whole tiles read A in place, partial ones a copy.
            let whole_block = kb.append_block("a.whole");
            let part_block = kb.append_block("a.part");
            let after_block = kb.append_block("a.after");
            bld.build_conditional_branch(whole, whole_block, part_block)
                .map_err(kb.err())?;
            bld.position_at_end(whole_block);
            panel_loop(a_here, ops.lda)?;
            bld.build_unconditional_branch(after_block)
                .map_err(kb.err())?;
            bld.position_at_end(part_block);
            let bytes = bld
                .build_int_mul(kc, kb.i64_const(4), "bytes")
                .map_err(kb.err())?;
            for i in 0..mr {
                let row = kb.min_i64(kb.i64_const(i), last_row)?;
                let row = bld.build_int_add(ib, row, "row").map_err(kb.err())?;
                let src = bld.build_int_mul(row, ops.lda, "src").map_err(kb.err())?;
                let src = bld.build_int_add(src, k0, "src").map_err(kb.err())?;
                let src = kb.f32_element_ptr(ops.a, src)?;
                let dst = kb.f32_element_ptr(a_block, kb.i64_const(i * kc_max))?;
                bld.build_memcpy(dst, 64, src, F32_ALIGN, bytes)
                    .map_err(|_| kb.internal("could not copy a row of A"))?;
            }
            panel_loop(a_block, kb.i64_const(kc_max))?;
            bld.build_unconditional_branch(after_block)
                .map_err(kb.err())?;
            bld.position_at_end(after_block);
            Ok(())
        })?;

        let latch = kb.current_block()?;
        let more = bld
            .build_int_compare(IntPredicate::SLT, k_next, ops.k, "kb.more")
            .map_err(kb.err())?;
        bld.build_conditional_branch(more, k_body, k_exit)
            .map_err(kb.err())?;
        k0_phi.add_incoming(&[(&kb.i64_const(0), pre), (&k_next, latch)]);
        bld.position_at_end(k_exit);
        Ok(())
    })
}

/// Emits one `MR x NR` micro-kernel invocation and leaves the builder after it.
fn emit_tile<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    layout: &GemmLayout,
    tile: &Tile<'ctx>,
    epilogue: Epilogue,
) -> Result<()> {
    let bld = kb.builder();
    let mr = layout.mr as usize;
    let nv = layout.nr_vectors as usize;
    let lanes = i64::from(layout.lanes);
    let vector_type = kb.f32_vector();
    let count = mr * nv;

    let col_masks: Vec<VectorValue<'ctx>> = (0..nv)
        .map(|v| kb.tail_mask(kb.i64_const(v as i64 * lanes), tile.cols))
        .collect::<Result<_>>()?;
    let full_rows = bld
        .build_int_compare(
            IntPredicate::EQ,
            tile.rows,
            kb.i64_const(i64::from(layout.mr)),
            "rows.full",
        )
        .map_err(kb.err())?;
    let full_cols = bld
        .build_int_compare(
            IntPredicate::EQ,
            tile.cols,
            kb.i64_const(layout.nr() as i64),
            "cols.full",
        )
        .map_err(kb.err())?;
    let full = bld
        .build_and(full_rows, full_cols, "full")
        .map_err(kb.err())?;
    let last_row = bld
        .build_int_sub(tile.rows, kb.i64_const(1), "row.last")
        .map_err(kb.err())?;
    // The tile's row pointers into C (or D): with `clamp`, rows past `rows` are the last
    // valid one (never written: their masks are empty), so that every pointer stays inside.
    let rows_of = |base: PointerValue<'ctx>,
                   stride: IntValue<'ctx>,
                   clamp: bool|
     -> Result<Vec<PointerValue<'ctx>>> {
        (0..mr as i64)
            .map(|i| {
                let row = if clamp {
                    kb.min_i64(kb.i64_const(i), last_row)?
                } else {
                    kb.i64_const(i)
                };
                let offset = bld
                    .build_int_mul(row, stride, "row.off")
                    .map_err(kb.err())?;
                kb.f32_element_ptr(base, offset)
            })
            .collect()
    };
    let row_ptrs = |clamp: bool| rows_of(tile.c, tile.ldc, clamp);
    let edge_masks = || -> Result<Vec<VectorValue<'ctx>>> {
        let mut masks = Vec::with_capacity(count);
        for i in 0..mr as i64 {
            let valid = bld
                .build_int_compare(IntPredicate::SLT, kb.i64_const(i), tile.rows, "row.ok")
                .map_err(kb.err())?;
            let valid = kb.splat(valid.into(), "row.ok")?;
            for mask in &col_masks {
                masks.push(bld.build_and(*mask, valid, "mask").map_err(kb.err())?);
            }
        }
        Ok(masks)
    };

    let zero_block = kb.append_block("tile.zero");
    let load_block = kb.append_block("tile.load");
    let load_full = kb.append_block("tile.load.full");
    let load_edge = kb.append_block("tile.load.edge");
    let k_start = kb.append_block("tile.k.start");
    let k_body = kb.append_block("tile.k.body");
    let k_exit = kb.append_block("tile.k.exit");
    let epi_block = kb.append_block("tile.epilogue");
    let store_select = kb.append_block("tile.store");
    let store_full = kb.append_block("tile.store.full");
    let store_edge = kb.append_block("tile.store.edge");
    let done = kb.append_block("tile.done");

    bld.build_conditional_branch(tile.first, zero_block, load_block)
        .map_err(kb.err())?;
    bld.position_at_end(zero_block);
    bld.build_unconditional_branch(k_start).map_err(kb.err())?;
    bld.position_at_end(load_block);
    bld.build_conditional_branch(full, load_full, load_edge)
        .map_err(kb.err())?;

    bld.position_at_end(load_full);
    let rows = row_ptrs(false)?;
    let mut loaded_full = Vec::with_capacity(count);
    for row in &rows {
        for v in 0..nv as i64 {
            loaded_full.push(kb.load_f32(*row, kb.i64_const(v * lanes), None)?);
        }
    }
    bld.build_unconditional_branch(k_start).map_err(kb.err())?;

    bld.position_at_end(load_edge);
    let rows = row_ptrs(true)?;
    let masks = edge_masks()?;
    let mut loaded_edge = Vec::with_capacity(count);
    for (i, row) in rows.iter().enumerate() {
        for v in 0..nv {
            let mask = masks[i * nv + v];
            loaded_edge.push(kb.load_f32(*row, kb.i64_const(v as i64 * lanes), Some(mask))?);
        }
    }
    bld.build_unconditional_branch(k_start).map_err(kb.err())?;

    // The accumulators entering the k loop.
    bld.position_at_end(k_start);
    let zero = vector_type.const_zero();
    let mut start = Vec::with_capacity(count);
    for j in 0..count {
        let phi = bld.build_phi(vector_type, "acc0").map_err(kb.err())?;
        phi.add_incoming(&[
            (&zero, zero_block),
            (&loaded_full[j], load_full),
            (&loaded_edge[j], load_edge),
        ]);
        start.push(phi.as_basic_value().into_vector_value());
    }
    // The rows of A: with a constant stride (a contiguous A, or the copy of a partial tile)
    // constant offsets of one pointer, so the k loop computes no address per row.
    let a_rows = (0..mr as i64)
        .map(|i| {
            let row = bld
                .build_int_mul(tile.a_stride, kb.i64_const(i), "a.row")
                .map_err(kb.err())?;
            kb.f32_element_ptr(tile.a_block, row)
        })
        .collect::<Result<Vec<_>>>()?;
    let any = bld
        .build_int_compare(IntPredicate::SGT, tile.kc, kb.i64_const(0), "k.any")
        .map_err(kb.err())?;
    bld.build_conditional_branch(any, k_body, k_exit)
        .map_err(kb.err())?;

    // The k loop: NR / lanes panel vectors and MR broadcasts per step.
    bld.position_at_end(k_body);
    let k_phi = bld
        .build_phi(kb.context().i64_type(), "k")
        .map_err(kb.err())?;
    let kk = k_phi.as_basic_value().into_int_value();
    let mut acc_phis = Vec::with_capacity(count);
    for _ in 0..count {
        acc_phis.push(bld.build_phi(vector_type, "acc").map_err(kb.err())?);
    }
    let b_row = bld
        .build_int_mul(kk, kb.i64_const(layout.nr() as i64), "b.row")
        .map_err(kb.err())?;
    let b_vectors: Vec<VectorValue<'ctx>> = (0..nv as i64)
        .map(|v| {
            let index = bld
                .build_int_add(b_row, kb.i64_const(v * lanes), "b.idx")
                .map_err(kb.err())?;
            kb.load_f32(tile.b_panel, index, None)
        })
        .collect::<Result<_>>()?;
    // Software prefetch of the panel row PREFETCH_ROWS steps ahead, into L1 (measured: a few
    // percent at 1024^3 on Zen 5). A prefetch never faults, so running past the end of the
    // panel is harmless.
    for v in 0..nv as i64 {
        let index = bld
            .build_int_add(
                b_row,
                kb.i64_const(PREFETCH_ROWS * layout.nr() as i64 + v * lanes),
                "pf.idx",
            )
            .map_err(kb.err())?;
        prefetch(kb, tile.b_panel, index, Locality::L1)?;
    }
    if let Some(chunk) = &tile.next {
        // This step's address in the next chunk, into L2.
        let offset = bld
            .build_int_mul(kk, chunk.step, "pf.bytes")
            .map_err(kb.err())?;
        prefetch_bytes(kb, chunk.start, offset, Locality::L2)?;
    }
    let mut next = Vec::with_capacity(count);
    for (i, a_row) in a_rows.iter().enumerate() {
        let a = load_f32_scalar(kb, *a_row, kk)?;
        let a = kb.splat(a.into(), "a")?;
        for (v, b_vector) in b_vectors.iter().enumerate() {
            let acc = acc_phis[i * nv + v].as_basic_value().into_vector_value();
            next.push(kb.mul_add(a, *b_vector, acc)?);
        }
    }
    let k_next = bld
        .build_int_nsw_add(kk, kb.i64_const(1), "k.next")
        .map_err(kb.err())?;
    let more = bld
        .build_int_compare(IntPredicate::SLT, k_next, tile.kc, "k.more")
        .map_err(kb.err())?;
    bld.build_conditional_branch(more, k_body, k_exit)
        .map_err(kb.err())?;
    k_phi.add_incoming(&[(&kb.i64_const(0), k_start), (&k_next, k_body)]);
    for j in 0..count {
        acc_phis[j].add_incoming(&[(&start[j], k_start), (&next[j], k_body)]);
    }

    bld.position_at_end(k_exit);
    let mut raw = Vec::with_capacity(count);
    for j in 0..count {
        let phi = bld.build_phi(vector_type, "acc.k").map_err(kb.err())?;
        phi.add_incoming(&[(&start[j], k_start), (&next[j], k_body)]);
        raw.push(phi.as_basic_value().into_vector_value());
    }
    bld.build_conditional_branch(tile.last, epi_block, store_select)
        .map_err(kb.err())?;

    // The epilogue, on the last k-block only.
    bld.position_at_end(epi_block);
    // The GELUs (about forty operations and thirty constants a vector) over the tile's
    // registers at once spill the accumulators, and each vector's chain comes as a block of
    // its own, of which the scheduler's window holds two or three: they are applied after the
    // store instead, one row of C (in L1) at a time as one vector of NR lanes, whose
    // registers' chains interleave (see `KernelBuilder::with_lanes`).
    let late_activation = matches!(
        epilogue.activation,
        Activation::GeluErf | Activation::GeluTanh
    );
    let bias: Vec<Option<VectorValue<'ctx>>> = (0..nv)
        .map(|v| {
            let index = kb.i64_const(v as i64 * lanes);
            match tile.bias {
                Some(Bias::Padded(ptr)) => kb.load_f32(ptr, index, None).map(Some),
                Some(Bias::Masked(ptr)) => kb.load_f32(ptr, index, Some(col_masks[v])).map(Some),
                None => Ok(None),
            }
        })
        .collect::<Result<_>>()?;
    // D's rows for the tile's, those past `rows` clamped to the last valid one and its
    // columns past `cols` masked (as C's edge rows are), so that every read stays inside D.
    let mut addend = Vec::with_capacity(count);
    if let Some((d, ldd)) = tile.addend {
        for row in rows_of(d, ldd, true)? {
            for (v, mask) in col_masks.iter().enumerate() {
                addend.push(kb.load_f32(row, kb.i64_const(v as i64 * lanes), Some(*mask))?);
            }
        }
    }
    let mut finished = Vec::with_capacity(count);
    for (j, value) in raw.iter().enumerate() {
        let mut x = *value;
        if epilogue.alpha != 1.0 {
            x = bld
                .build_float_mul(x, kb.f32_splat_const(epilogue.alpha), "alpha")
                .map_err(kb.err())?;
        }
        if let Some(d) = addend.get(j) {
            x = bld.build_float_add(x, *d, "addend").map_err(kb.err())?;
        }
        if let Some(bias) = bias[j % nv] {
            x = bld.build_float_add(x, bias, "bias").map_err(kb.err())?;
        }
        finished.push(if late_activation {
            x
        } else {
            vmath::apply_activation(epilogue.activation, kb, x)?
        });
    }
    let epi_end = kb.current_block()?;
    bld.build_unconditional_branch(store_select)
        .map_err(kb.err())?;

    bld.position_at_end(store_select);
    let mut out = Vec::with_capacity(count);
    for j in 0..count {
        let phi = bld.build_phi(vector_type, "out").map_err(kb.err())?;
        phi.add_incoming(&[(&raw[j], k_exit), (&finished[j], epi_end)]);
        out.push(phi.as_basic_value().into_vector_value());
    }
    bld.build_conditional_branch(full, store_full, store_edge)
        .map_err(kb.err())?;

    bld.position_at_end(store_full);
    let rows = row_ptrs(false)?;
    for (i, row) in rows.iter().enumerate() {
        for v in 0..nv {
            kb.store_f32(*row, kb.i64_const(v as i64 * lanes), out[i * nv + v], None)?;
        }
    }
    bld.build_unconditional_branch(done).map_err(kb.err())?;

    bld.position_at_end(store_edge);
    let rows = row_ptrs(true)?;
    let masks = edge_masks()?;
    for (i, row) in rows.iter().enumerate() {
        for v in 0..nv {
            let j = i * nv + v;
            kb.store_f32(*row, kb.i64_const(v as i64 * lanes), out[j], Some(masks[j]))?;
        }
    }
    bld.build_unconditional_branch(done).map_err(kb.err())?;
    bld.position_at_end(done);
    if late_activation {
        // On the last k-block: each of the tile's rows of C through the activation, in
        // place; the columns past `cols` masked off in an edge tile.
        let apply = kb.append_block("tile.act");
        let after = kb.append_block("tile.act.done");
        bld.build_conditional_branch(tile.last, apply, after)
            .map_err(kb.err())?;
        bld.position_at_end(apply);
        let full_block = kb.append_block("tile.act.full");
        let edge_block = kb.append_block("tile.act.edge");
        bld.build_conditional_branch(full_cols, full_block, edge_block)
            .map_err(kb.err())?;
        for (block, masked) in [(full_block, false), (edge_block, true)] {
            bld.position_at_end(block);
            kb.for_loop(
                kb.i64_const(0),
                tile.rows,
                kb.i64_const(1),
                "act.row",
                |kb, i| {
                    let offset = bld.build_int_mul(i, tile.ldc, "c.off").map_err(kb.err())?;
                    let row = kb.f32_element_ptr(tile.c, offset)?;
                    // The row's NR columns as one vector (see `KernelBuilder::with_lanes`).
                    kb.with_lanes(layout.nr() as u32, |w| {
                        let zero = w.i64_const(0);
                        let mask = match masked {
                            true => Some(w.tail_mask(zero, tile.cols)?),
                            false => None,
                        };
                        let x = w.load_f32(row, zero, mask)?;
                        let y = vmath::apply_activation(epilogue.activation, w, x)?;
                        w.store_f32(row, zero, y, mask)
                    })
                },
            )?;
            bld.build_unconditional_branch(after).map_err(kb.err())?;
        }
        bld.position_at_end(after);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_b_lays_out_k_major_panels_with_zero_padding() {
        let layout = GemmLayout {
            lanes: 2,
            mr: 1,
            nr_vectors: 1,
            kc: 4,
            nc_panels: 1,
        };
        // B is 2 x 3: [[1, 2, 3], [4, 5, 6]]; NR = 2, so two panels, the second padded.
        let packed = pack_b(&layout, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).unwrap();
        assert_eq!(packed, [1.0, 2.0, 4.0, 5.0, 3.0, 0.0, 6.0, 0.0]);
        assert!(pack_b(&layout, &[1.0; 5], 2, 3).is_err());
    }

    #[test]
    fn kernels_verify_for_every_width() {
        for cpu in ["x86-64", "x86-64-v3", "x86-64-v4"] {
            let target = Target::named(cpu).unwrap();
            let context = inkwell::context::Context::create();
            let module = context.create_module("m");
            let layout = GemmLayout::for_target(&target);
            let b = vec![1.0; 3 * 5];
            let epilogue = Epilogue {
                alpha: 0.5,
                activation: Activation::GeluErf,
            };
            emit_gemm_const_b(
                &module,
                &target,
                "g",
                &layout,
                &b,
                3,
                5,
                Some(&[0.0; 5]),
                epilogue,
            )
            .unwrap();
            emit_gemm_runtime_b(&module, &target, "r", &layout, true, epilogue).unwrap();
            crate::emit::verify(&module).unwrap();
        }
    }

    #[test]
    fn a_gemm_and_the_one_before_it_share_its_packed_weights() {
        let target = Target::named("x86-64-v4").unwrap();
        let context = inkwell::context::Context::create();
        let module = context.create_module("m");
        let layout = GemmLayout::for_target(&target);
        let (b1, b2) = (vec![1.0; 3 * 5], vec![2.0; 5 * 7]);
        let next = NextGemm {
            name: "second",
            b: &b2,
            k: 5,
            n: 7,
        };
        let epilogue = Epilogue::default();
        let emit = |name, b: &[f32], k, n, next| {
            emit_gemm_const_b_then(
                &module, &target, name, &layout, b, k, n, None, epilogue, false, next,
            )
            .unwrap();
        };
        emit("first", &b1, 3, 5, Some(next));
        emit("second", &b2, 5, 7, None);
        crate::emit::verify(&module).unwrap();
        let globals: Vec<String> = module
            .get_globals()
            .map(|g| g.get_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(globals, ["first.b", "second.b"]);
        let packed = pack_b(&layout, &b2, 5, 7).unwrap();
        let second = module.get_global("second.b").unwrap();
        let bytes = second
            .get_initializer()
            .unwrap()
            .get_type()
            .into_array_type()
            .len();
        assert_eq!(bytes as usize, 4 * packed.len());
    }
}

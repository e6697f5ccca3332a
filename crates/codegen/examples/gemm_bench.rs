//! GEMM benchmark: the machine's single-core f32 FMA peak, measured with an emitted FMA loop,
//! against the GFLOP/s of the constant-B GEMM kernel at 256, 512 and 1024 cubed, on one and on
//! two threads (split by rows), for the host's widest vector path and for AVX2 (`x86-64-v3`).
//!
//! Run with `cargo run --release -p tcc-codegen --example gemm_bench`. Arguments: sizes to run
//! instead of the default ones, each `N` (an `N x N x N` product) or `MxKxN` (`A` is `M x K`,
//! `B` is `K x N`), such as `128x384x1536` (a transformer's feed-forward layer).
//! `TCC_GEMM_TILE=mr,nr_vectors,kc,nc_panels` overrides the host path's blocking (both
//! modes), to compare tile shapes; `TCC_GEMM_ASM=PREFIX` writes each kernel's assembly to
//! `PREFIX.NAME.s`. A size `rMxKxN:LDA` times instead the runtime-B GEMM on a `B` packed
//! beforehand (attention's products: `r48x32x512:384` is a block of `Q · Kt` for 32-wide heads
//! of a 384-wide model, `r48x512x32:512` the block's `P · V`), `A` read at row stride `LDA`
//! (`:=LDA` compiles the stride into the kernel, `gemm::Known`), one thread, the host path
//! only.

use std::path::Path;
use std::time::{Duration, Instant};

use tcc_codegen::emit::{emit_to_file, link_shared, EmitKind};
use tcc_codegen::kernels::gemm::{
    emit_gemm_const_b_then, emit_gemm_packed_b_known, emit_pack_b_fn, Epilogue, GemmLayout, Known,
};
use tcc_codegen::kernels::{KernelBuilder, Param};
use tcc_codegen::{Context, Target};

/// Independent accumulators of the peak loop: 4-cycle FMA latency times two FMA pipes needs 8;
/// more hide the loop's own overhead. They must leave room in the register file for the two
/// constant operands, or the loop spills: 24 of 32 zmm, 12 of 16 ymm or xmm.
fn peak_accumulators(target: &Target) -> usize {
    if target.has_avx512f() {
        24
    } else {
        12
    }
}
/// FMA steps per call of the peak loop.
const PEAK_ITERATIONS: i64 = 5_000_000;
/// The least time each measurement runs for.
const MIN_TIME: Duration = Duration::from_millis(400);

type PeakFn = unsafe extern "C" fn(*mut f32, i64);
type GemmFn = unsafe extern "C" fn(*const f32, i64, *mut f32, i64, i64, i64, i64, i64);
type PackFn = unsafe extern "C" fn(*const f32, i64, i64, i64, i64, *mut f32);
type PackedFn =
    unsafe extern "C" fn(*const f32, i64, *const f32, *mut f32, i64, i64, i64, i64, i64, i64);

/// `layout` with the blocking `TCC_GEMM_TILE=mr,nr_vectors,kc,nc_panels` gives, if set.
fn tile_override(layout: GemmLayout) -> Result<GemmLayout, Box<dyn std::error::Error>> {
    let Ok(tile) = std::env::var("TCC_GEMM_TILE") else {
        return Ok(layout);
    };
    let v: Vec<u32> = tile.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let [mr, nr_vectors, kc, nc_panels] = v[..] else {
        return Err("TCC_GEMM_TILE takes mr,nr_vectors,kc,nc_panels".into());
    };
    Ok(GemmLayout {
        mr,
        nr_vectors,
        kc,
        nc_panels,
        ..layout
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (runtime, constant): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|s| s.starts_with('r'));
    if !runtime.is_empty() {
        let dir = tempfile::tempdir()?;
        let target = Target::named("host")?;
        let peak = measure_peak(&target, dir.path(), "host")?;
        let layout = tile_override(GemmLayout::for_runtime_b(&target))?;
        println!(
            "host ({}): FMA peak {peak:.1} GFLOP/s per core; runtime-B tile {}x{}, KC {}",
            target.cpu(),
            layout.mr,
            layout.nr(),
            layout.kc
        );
        for arg in &runtime {
            let (size, lda) = arg[1..].split_once(':').ok_or("rMxKxN:LDA")?;
            let size = parse_size(size)?;
            // `:=LDA` compiles the stride in (gemm::Known), `:LDA` passes it at run time.
            let (lda, known) = match lda.strip_prefix('=') {
                Some(lda) => (lda, true),
                None => (lda, false),
            };
            let gflops =
                measure_runtime_b(&target, &layout, dir.path(), size, lda.parse()?, known)?;
            println!(
                "  {arg}  1 thread  {gflops:7.1} GFLOP/s  {:5.1}% of peak",
                100.0 * gflops / peak
            );
        }
        if constant.is_empty() {
            return Ok(());
        }
    }
    let sizes: Vec<[usize; 3]> = constant
        .iter()
        .map(|s| parse_size(s))
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![[256; 3], [512; 3], [1024; 3]]
    } else {
        sizes
    };
    let dir = tempfile::tempdir()?;
    for cpu in ["host", "x86-64-v3"] {
        let target = Target::named(cpu)?;
        let mut layout = GemmLayout::for_target(&target);
        if cpu == "host" {
            layout = tile_override(layout)?;
        }
        let peak = measure_peak(&target, dir.path(), cpu)?;
        println!(
            "{cpu} ({}, {} lanes): FMA peak {peak:.1} GFLOP/s per core; tile {}x{}, KC {}, NC {}",
            target.cpu(),
            target.f32_lanes(),
            layout.mr,
            layout.nr(),
            layout.kc,
            layout.nc_panels as usize * layout.nr()
        );
        for &size in &sizes {
            let gemm = build_gemm(&target, &layout, dir.path(), cpu, size)?;
            for threads in [1, 2] {
                let gflops = gemm.measure(threads);
                let shape = match size {
                    [m, k, n] if m == k && k == n => format!("{m:>5}^3"),
                    [m, k, n] => format!("{m}x{k}x{n}"),
                };
                println!(
                    "  {shape}  {threads} thread{}  {gflops:7.1} GFLOP/s  {:5.1}% of {} x peak",
                    if threads == 1 { " " } else { "s" },
                    100.0 * gflops / (peak * threads as f64),
                    threads
                );
            }
        }
    }
    Ok(())
}

/// `N` or `MxKxN`.
fn parse_size(s: &str) -> Result<[usize; 3], Box<dyn std::error::Error>> {
    let v: Vec<usize> = s.split('x').map(str::parse).collect::<Result<_, _>>()?;
    match v[..] {
        [n] => Ok([n; 3]),
        [m, k, n] => Ok([m, k, n]),
        _ => Err(format!("a size is N or MxKxN, not `{s}`").into()),
    }
}

/// Emits, builds and runs the FMA loop; returns GFLOP/s on one thread.
fn measure_peak(target: &Target, dir: &Path, tag: &str) -> Result<f64, Box<dyn std::error::Error>> {
    let name = format!("fma_peak_{}", tag.replace('-', "_"));
    let context = Context::create();
    let module = context.create_module(&name);
    let kb = KernelBuilder::new(
        &module,
        target,
        &name,
        &[Param::Ptr, Param::I64],
        target.f32_lanes(),
    )?;
    let out = kb.ptr_param(0)?;
    let iterations = kb.int_param(1)?;
    let bld = kb.builder();
    let entry = kb.current_block()?;
    let body = kb.append_block("body");
    let exit = kb.append_block("exit");
    bld.build_unconditional_branch(body)?;
    bld.position_at_end(body);
    let i = bld.build_phi(context.i64_type(), "i")?;
    let factor = kb.f32_splat_const(0.999_999);
    let addend = kb.f32_splat_const(1e-6);
    let mut phis = Vec::new();
    for j in 0..peak_accumulators(target) {
        let phi = bld.build_phi(kb.f32_vector(), "acc")?;
        let start = kb.f32_splat_const(j as f32);
        phi.add_incoming(&[(&start, entry)]);
        phis.push(phi);
    }
    let mut next = Vec::new();
    for phi in &phis {
        next.push(kb.mul_add(phi.as_basic_value().into_vector_value(), factor, addend)?);
    }
    let i_value = i.as_basic_value().into_int_value();
    let i_next = bld.build_int_add(i_value, kb.i64_const(1), "i.next")?;
    let more = bld.build_int_compare(inkwell::IntPredicate::SLT, i_next, iterations, "more")?;
    bld.build_conditional_branch(more, body, exit)?;
    i.add_incoming(&[(&kb.i64_const(0), entry), (&i_next, body)]);
    for (phi, value) in phis.iter().zip(&next) {
        phi.add_incoming(&[(value, body)]);
    }
    bld.position_at_end(exit);
    let mut sum = next[0];
    for value in &next[1..] {
        sum = bld.build_float_add(sum, *value, "sum")?;
    }
    kb.store_f32(out, kb.i64_const(0), sum, None)?;
    bld.build_return(None)?;

    let library = build(&module, target, dir, &name)?;
    // SAFETY: the symbol is the function emitted above with this signature.
    let peak: PeakFn = unsafe { *library.get::<PeakFn>(name.as_bytes())? };
    let mut out = vec![0.0f32; target.f32_lanes() as usize];
    let flops_per_call =
        2.0 * peak_accumulators(target) as f64 * target.f32_lanes() as f64 * PEAK_ITERATIONS as f64;
    // SAFETY: out holds one vector.
    let seconds = best_time(|| unsafe { peak(out.as_mut_ptr(), PEAK_ITERATIONS) });
    assert!(out[0].is_finite(), "the peak loop computed {}", out[0]);
    Ok(flops_per_call / seconds / 1e9)
}

/// Emits the module to an object and links it into `dir/lib<name>.so`, then loads it; with
/// `TCC_GEMM_ASM=PREFIX`, writes its assembly to `PREFIX.NAME.s` too.
fn build(
    module: &inkwell::module::Module<'_>,
    target: &Target,
    dir: &Path,
    name: &str,
) -> Result<libloading::Library, Box<dyn std::error::Error>> {
    if let Ok(path) = std::env::var("TCC_GEMM_ASM") {
        let asm = tcc_codegen::emit(module, target, EmitKind::Assembly)?;
        std::fs::write(format!("{path}.{name}.s"), asm)?;
    }
    let object = dir.join(format!("{name}.o"));
    emit_to_file(module, target, EmitKind::Object, &object)?;
    let so = dir.join(format!("lib{name}.so"));
    link_shared(&[&object], &so)?;
    // SAFETY: the library was just built from kernels without initialisers.
    Ok(unsafe { libloading::Library::new(&so)? })
}

/// `len` values of a GEMM's `A`: small, varied, exactly representable.
fn operand_a(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 31) % 17) as f32 * 0.01).collect()
}

/// `len` values of a GEMM's `B`, as [`operand_a`]'s.
fn operand_b(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7919) % 13) as f32 * 0.01).collect()
}

/// A built GEMM kernel with its operands.
struct Gemm {
    _library: libloading::Library,
    kernel: GemmFn,
    size: [usize; 3],
    a: Vec<f32>,
    c: Vec<f32>,
    mr: usize,
}

fn build_gemm(
    target: &Target,
    layout: &GemmLayout,
    dir: &Path,
    tag: &str,
    size: [usize; 3],
) -> Result<Gemm, Box<dyn std::error::Error>> {
    let [m, k, n] = size;
    let name = format!("gemm_{}_{m}_{k}_{n}", tag.replace('-', "_"));
    let context = Context::create();
    let module = context.create_module(&name);
    let b = operand_b(k * n);
    // A is contiguous (`lda = k`), as in a model.
    emit_gemm_const_b_then(
        &module,
        target,
        &name,
        layout,
        &b,
        k,
        n,
        None,
        Epilogue::default(),
        true,
        None,
    )?;
    let library = build(&module, target, dir, &name)?;
    // SAFETY: the symbol is the GEMM emitted above with this signature.
    let kernel: GemmFn = unsafe { *library.get::<GemmFn>(name.as_bytes())? };
    Ok(Gemm {
        _library: library,
        kernel,
        size,
        a: operand_a(m * k),
        c: vec![0.0; m * n],
        mr: layout.mr as usize,
    })
}

impl Gemm {
    /// GFLOP/s of `C = A·B` split by rows over `threads` threads, best of several runs.
    fn measure(&self, threads: usize) -> f64 {
        let [m, k, n] = self.size;
        let a = self.a.as_ptr() as usize;
        let c = self.c.as_ptr() as usize;
        let kernel = self.kernel;
        // Row ranges on multiples of MR, so every thread's tiles are full.
        let blocks = m.div_ceil(self.mr);
        let bounds: Vec<usize> = (0..=threads)
            .map(|t| (blocks * t / threads * self.mr).min(m))
            .collect();
        let call = move |m0: usize, m1: usize| {
            // SAFETY: A is m x k and C is m x n; concurrent calls write disjoint row ranges.
            unsafe {
                kernel(
                    a as *const f32,
                    k as i64,
                    c as *mut f32,
                    n as i64,
                    m0 as i64,
                    m1 as i64,
                    0,
                    i64::MAX,
                )
            }
        };
        if threads == 1 {
            return 2.0 * (m * k * n) as f64 / best_time(|| call(0, m)) / 1e9;
        }
        let seconds = best_time(|| {
            std::thread::scope(|scope| {
                for t in 0..threads {
                    let (m0, m1) = (bounds[t], bounds[t + 1]);
                    scope.spawn(move || call(m0, m1));
                }
            })
        });
        2.0 * (m * k * n) as f64 / seconds / 1e9
    }
}

/// The best time of `run` over repeated calls lasting at least [`MIN_TIME`] in all.
fn best_time(mut run: impl FnMut()) -> f64 {
    run();
    let started = Instant::now();
    let mut best = f64::INFINITY;
    while started.elapsed() < MIN_TIME {
        let t = Instant::now();
        run();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

/// GFLOP/s of the runtime-B GEMM `C = A·B` on one thread, `B` (`k x n`) packed once before,
/// `A` (`m x k`) read at row stride `lda`.
fn measure_runtime_b(
    target: &Target,
    layout: &GemmLayout,
    dir: &Path,
    [m, k, n]: [usize; 3],
    lda: usize,
    known_lda: bool,
) -> Result<f64, Box<dyn std::error::Error>> {
    if lda < k {
        return Err(format!("LDA {lda} is below K {k}").into());
    }
    let name = format!("runtime_{m}_{k}_{n}_{lda}");
    let context = Context::create();
    let module = context.create_module(&name);
    let pack_name = format!("{name}_pack");
    emit_pack_b_fn(&module, target, &pack_name, layout)?;
    let known = Known {
        lda: known_lda.then_some(lda as i64),
        addend: false,
    };
    emit_gemm_packed_b_known(&module, target, &name, layout, Epilogue::default(), known)?;
    let library = build(&module, target, dir, &name)?;
    // SAFETY: the symbols are the functions emitted above with these signatures.
    let (pack, gemm) = unsafe {
        (
            *library.get::<PackFn>(pack_name.as_bytes())?,
            *library.get::<PackedFn>(name.as_bytes())?,
        )
    };
    let b = operand_b(k * n);
    let a = operand_a(m * lda);
    let mut packed = vec![0.0f32; layout.runtime_b_scratch_len(k, n)];
    let mut c = vec![0.0f32; m * n];
    // SAFETY: B is k x n row-major; `packed` holds its panels.
    unsafe {
        pack(
            b.as_ptr(),
            n as i64,
            1,
            n as i64,
            k as i64,
            packed.as_mut_ptr(),
        )
    };
    let seconds = best_time(|| {
        // SAFETY: A is m rows at stride lda, C is m x n, `packed` B's panels with k rows.
        unsafe {
            gemm(
                a.as_ptr(),
                lda as i64,
                packed.as_ptr(),
                c.as_mut_ptr(),
                n as i64,
                0,
                m as i64,
                n as i64,
                k as i64,
                k as i64,
            )
        }
    });
    Ok(2.0 * (m * k * n) as f64 / seconds / 1e9)
}

//! Quantised GEMM benchmark: the `qgemm` kernel (`kernels::int8::emit_qgemm_const_b`: A
//! quantised per row in the kernel, int8 product over packed constant weights, dequantising
//! epilogue) against the f32 constant-B GEMM (`kernels::gemm::emit_gemm_const_b`) at the same
//! shapes, on one and two threads, with the machine's single-core peaks (an emitted loop of
//! f32 FMAs, and of `vpdpbusd` where the host has VNNI) for scale.
//!
//! Run with `cargo run --release -p tcc-codegen --example qgemm_bench`. The default shapes are
//! minilm's (and BERT-base's projection's) at 128 and 512 rows: `MxKxN` of 128x384x1536,
//! 128x1536x384, 128x384x384 and the same at 512 rows; arguments replace them. Options, by
//! environment: `TCC_QGEMM_FORM=exact|saturate` (default both), `TCC_QGEMM_ACT=none|gelu_erf`
//! (default none), `TCC_QGEMM_TILE=mr,nv[,lanes]` overrides the host's tile (and
//! vector width: `4,2,8` runs the 8-lane kernel, with VNNI where the host has AVX-512 VNNI), `TCC_QGEMM_TARGET=cpu`
//! the target (default `host`), `TCC_GEMM_ASM=PREFIX` writes each kernel's assembly to
//! `PREFIX.NAME.s`.
//!
//! Before timing, each qgemm's result is checked against a Rust reference of the op's
//! arithmetic (bit for bit without an activation). Two threads split the work as the compiled
//! library does: the qgemm's rows (its panels up to four tiles of rows), the f32 GEMM's
//! panels when the rows are at most the columns, else its rows; the second thread is a
//! spinning worker, as the runtime's pool.
//! GOP/s counts `2 m k n` operations.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tcc_codegen::emit::{emit_to_file, link_shared, EmitKind};
use tcc_codegen::kernels::gemm::{emit_gemm_const_b, Activation, Epilogue, GemmLayout};
use tcc_codegen::kernels::int8::{emit_qgemm_const_b, Int8Layout, QGemmConst};
use tcc_codegen::kernels::{KernelBuilder, Param};
use tcc_codegen::{Context, Target};

/// The least time each measurement runs for.
const MIN_TIME: Duration = Duration::from_millis(150);
/// Measurements of each kernel per shape and thread count, alternating.
const ROUNDS: usize = 3;
/// Steps of the peak loops per call.
const PEAK_ITERATIONS: i64 = 2_000_000;

type GemmFn = unsafe extern "C" fn(*const f32, i64, *mut f32, i64, i64, i64, i64, i64);
type QGemmFn = unsafe extern "C" fn(
    *const f32,
    i64,
    *const f32,
    *const u8,
    i64,
    *mut f32,
    i64,
    *mut u8,
    i64,
    i64,
    i64,
    i64,
);
type PeakFn = unsafe extern "C" fn(*mut f32, i64);

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let sizes: Vec<[usize; 3]> = std::env::args()
        .skip(1)
        .map(|s| parse_size(&s))
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        let mut v = Vec::new();
        for m in [128, 512] {
            v.extend([[m, 384, 1536], [m, 1536, 384], [m, 384, 384]]);
        }
        v
    } else {
        sizes
    };
    let forms: Vec<bool> = match std::env::var("TCC_QGEMM_FORM").as_deref() {
        Ok("exact") => vec![false],
        Ok("saturate") => vec![true],
        _ => vec![false, true],
    };
    let activation = match std::env::var("TCC_QGEMM_ACT").as_deref() {
        Ok("gelu_erf") => Activation::GeluErf,
        Ok("gelu_tanh") => Activation::GeluTanh,
        Ok("relu") => Activation::Relu,
        _ => Activation::None,
    };
    let cpu = std::env::var("TCC_QGEMM_TARGET").unwrap_or_else(|_| "host".into());
    let target = Target::named(&cpu)?;
    let mut layout = Int8Layout::for_qgemm(&target).ok_or("the target has no int8 kernel")?;
    if let Ok(tile) = std::env::var("TCC_QGEMM_TILE") {
        let v: Vec<u32> = tile.split(',').map(str::parse).collect::<Result<_, _>>()?;
        match v[..] {
            [mr, nv] => layout = Int8Layout { mr, nv, ..layout },
            // 8 lanes on an AVX-512 VNNI host: the AVX-VNNI kernel, in EVEX encoding.
            [mr, nv, lanes] => {
                layout = Int8Layout {
                    mr,
                    nv,
                    lanes,
                    ..layout
                }
            }
            _ => return Err("TCC_QGEMM_TILE is mr,nv or mr,nv,lanes".into()),
        }
    }
    let dir = tempfile::tempdir()?;
    let fma = measure_peak(&target, dir.path(), false)?;
    let vnni = if layout.vnni {
        format!(
            ", vpdpbusd peak {:.0} GOP/s",
            measure_peak(&target, dir.path(), true)?
        )
    } else {
        String::new()
    };
    println!(
        "{cpu} ({}, {} lanes): FMA peak {fma:.0} GFLOP/s per core{vnni}; qgemm tile {}x{} ({}, \
         {}), activation {activation:?}",
        target.cpu(),
        target.f32_lanes(),
        layout.mr,
        layout.width(),
        if layout.vnni { "VNNI" } else { "no VNNI" },
        if layout.lanes == 16 {
            "AVX-512"
        } else {
            "AVX2"
        },
    );
    let pool = Pool::new();
    for &size in &sizes {
        let [m, k, n] = size;
        let ops = 2.0 * (m * k * n) as f64;
        let f32_gemm = F32Gemm::build(&target, dir.path(), size, activation)?;
        let mut qgemms = Vec::new();
        for &saturate in &forms {
            let mut q = QGemm::build(&target, &layout, dir.path(), size, saturate, activation)?;
            q.check()?;
            qgemms.push(q);
        }
        let shape = format!("{m}x{k}x{n}");
        for threads in [1, 2] {
            // Rounds alternating the kernels, each kernel's best time over all of them, so
            // that a busy spell of the machine does not favour one.
            let mut f32_best = f64::INFINITY;
            let mut q_best = vec![f64::INFINITY; qgemms.len()];
            for _ in 0..ROUNDS {
                f32_best = f32_best.min(f32_gemm.time(&pool, threads));
                for (best, q) in q_best.iter_mut().zip(&qgemms) {
                    *best = best.min(q.time(&pool, threads));
                }
            }
            println!(
                "  {shape:<13} {threads} thr  f32 gemm        {:7.1} GFLOP/s {:8.1} us",
                ops / f32_best / 1e9,
                f32_best * 1e6
            );
            for (t, q) in q_best.iter().zip(&qgemms) {
                let form = if q.saturate { "saturate" } else { "exact" };
                println!(
                    "  {shape:<13} {threads} thr  qgemm {form:<9} {:7.1} GOP/s   {:8.1} us  \
                     {:4.2}x the f32 gemm",
                    ops / t / 1e9,
                    t * 1e6,
                    f32_best / t
                );
            }
        }
    }
    Ok(())
}

/// `MxKxN`.
fn parse_size(s: &str) -> Result<[usize; 3], Error> {
    let v: Vec<usize> = s.split('x').map(str::parse).collect::<Result<_, _>>()?;
    match v[..] {
        [m, k, n] => Ok([m, k, n]),
        _ => Err(format!("a size is MxKxN, not `{s}`").into()),
    }
}

/// Emits the module to an object and links it into `dir/lib<name>.so`, then loads it.
fn build(
    module: &inkwell::module::Module<'_>,
    target: &Target,
    dir: &Path,
    name: &str,
) -> Result<libloading::Library, Error> {
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

/// Operations per second of a loop of independent FMAs (f32, 2 per lane) or `vpdpbusd` (8 per
/// lane) on one core: 24 accumulators, as the tiles have.
fn measure_peak(target: &Target, dir: &Path, vnni: bool) -> Result<f64, Error> {
    let name = if vnni { "peak_vnni" } else { "peak_fma" };
    let context = Context::create();
    let module = context.create_module(name);
    let lanes = target.f32_lanes();
    let kb = KernelBuilder::new(&module, target, name, &[Param::Ptr, Param::I64], lanes)?;
    let out = kb.ptr_param(0)?;
    let iterations = kb.int_param(1)?;
    let bld = kb.builder();
    let entry = kb.current_block()?;
    let body = kb.append_block("body");
    let exit = kb.append_block("exit");
    bld.build_unconditional_branch(body)?;
    bld.position_at_end(body);
    let i = bld.build_phi(context.i64_type(), "i")?;
    let accumulators = if lanes == 16 { 24 } else { 12 };
    let v32 = context.i32_type().vec_type(lanes);
    let dp = if vnni {
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
    let ty: inkwell::types::BasicTypeEnum = if vnni {
        v32.into()
    } else {
        kb.f32_vector().into()
    };
    let mut phis = Vec::new();
    for j in 0..accumulators {
        let phi = bld.build_phi(ty, "acc")?;
        let start: inkwell::values::BasicValueEnum = if vnni {
            kb.splat(context.i32_type().const_int(j, false).into(), "s")?
                .into()
        } else {
            kb.f32_splat_const(j as f32).into()
        };
        phi.add_incoming(&[(&start, entry)]);
        phis.push(phi);
    }
    let mut next = Vec::new();
    let x = kb.splat(context.i32_type().const_int(0x0101_0101, false).into(), "x")?;
    for phi in &phis {
        let acc = phi.as_basic_value().into_vector_value();
        next.push(if let Some(dp) = dp {
            kb.call(dp, &[acc.into(), x.into(), x.into()], "dp")?
                .into_vector_value()
        } else {
            kb.mul_add(acc, kb.f32_splat_const(0.999_999), kb.f32_splat_const(1e-6))?
        });
    }
    let iv = i.as_basic_value().into_int_value();
    let i_next = bld.build_int_add(iv, kb.i64_const(1), "i.next")?;
    let more = bld.build_int_compare(inkwell::IntPredicate::SLT, i_next, iterations, "more")?;
    bld.build_conditional_branch(more, body, exit)?;
    i.add_incoming(&[(&kb.i64_const(0), entry), (&i_next, body)]);
    for (phi, value) in phis.iter().zip(&next) {
        phi.add_incoming(&[(value, body)]);
    }
    bld.position_at_end(exit);
    let mut sum = next[0];
    for value in &next[1..] {
        sum = if vnni {
            bld.build_int_add(sum, *value, "sum")?
        } else {
            bld.build_float_add(sum, *value, "sum")?
        };
    }
    let sum = bld
        .build_bit_cast(sum, kb.f32_vector(), "bits")?
        .into_vector_value();
    kb.store_f32(out, kb.i64_const(0), sum, None)?;
    bld.build_return(None)?;
    let library = build(&module, target, dir, name)?;
    // SAFETY: the symbol is the function emitted above with this signature.
    let peak: PeakFn = unsafe { *library.get::<PeakFn>(name.as_bytes())? };
    let mut out = vec![0.0f32; lanes as usize];
    let per_lane = if vnni { 8.0 } else { 2.0 };
    let ops = per_lane * accumulators as f64 * f64::from(lanes) * PEAK_ITERATIONS as f64;
    // SAFETY: out holds one vector.
    let seconds = best_time(|| unsafe { peak(out.as_mut_ptr(), PEAK_ITERATIONS) });
    Ok(ops / seconds / 1e9)
}

/// Deterministic values uniform in `[0, 1)`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A worker thread that runs one closure per job, spinning between jobs as the runtime's pool
/// does, so that a two-thread measurement does not pay for a thread's start or wake-up.
struct Pool {
    job: Arc<std::sync::Mutex<Option<Job>>>,
    generation: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
}

type Job = Arc<dyn Fn() + Send + Sync>;

impl Pool {
    fn new() -> Pool {
        let job: Arc<std::sync::Mutex<Option<Job>>> = Arc::new(std::sync::Mutex::new(None));
        let generation = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let (j, g, d) = (job.clone(), generation.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen = 0;
            loop {
                wait_while(|| g.load(Ordering::Acquire) == seen);
                let now = g.load(Ordering::Acquire);
                seen = now;
                let f = j.lock().unwrap().clone();
                if let Some(f) = f {
                    f();
                }
                d.store(now, Ordering::Release);
            }
        });
        Pool {
            job,
            generation,
            done,
        }
    }

    /// Runs `second` on the worker and `first` here, and waits for both.
    fn run2(&self, first: &dyn Fn(), second: Job) {
        *self.job.lock().unwrap() = Some(second);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        first();
        wait_while(|| self.done.load(Ordering::Acquire) != generation);
    }
}

/// Spins while `busy()` holds, yielding the core after a while (the machine may be shared, and
/// the other thread may be waiting for this core), as the runtime's pool does: 64 pause
/// hints, then yields.
fn wait_while(busy: impl Fn() -> bool) {
    let mut spins = 0u32;
    while busy() {
        if spins < 64 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// The f32 constant-B GEMM at a shape.
struct F32Gemm {
    _library: libloading::Library,
    kernel: GemmFn,
    size: [usize; 3],
    layout: GemmLayout,
    a: Vec<f32>,
    c: Vec<f32>,
}

impl F32Gemm {
    fn build(
        target: &Target,
        dir: &Path,
        size: [usize; 3],
        act: Activation,
    ) -> Result<F32Gemm, Error> {
        let [m, k, n] = size;
        let name = format!("gemm_{m}_{k}_{n}");
        let context = Context::create();
        let module = context.create_module(&name);
        let layout = GemmLayout::for_target(target);
        let mut rng = Rng(7);
        let b: Vec<f32> = (0..k * n).map(|_| rng.unit() - 0.5).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.unit() - 0.5).collect();
        let epilogue = Epilogue {
            alpha: 1.0,
            activation: act,
        };
        emit_gemm_const_b(
            &module,
            target,
            &name,
            &layout,
            &b,
            k,
            n,
            Some(&bias),
            epilogue,
        )?;
        let library = build(&module, target, dir, &name)?;
        // SAFETY: the symbol is the GEMM emitted above with this signature.
        let kernel: GemmFn = unsafe { *library.get::<GemmFn>(name.as_bytes())? };
        Ok(F32Gemm {
            _library: library,
            kernel,
            size,
            layout,
            a: (0..m * k).map(|_| rng.unit() * 6.0 - 3.0).collect(),
            c: vec![0.0; m * n],
        })
    }

    /// The best time of one product on `threads` (1 or 2) threads, in seconds.
    fn time(&self, pool: &Pool, threads: usize) -> f64 {
        let [m, k, n] = self.size;
        let (a, c, kernel) = (
            self.a.as_ptr() as usize,
            self.c.as_ptr() as usize,
            self.kernel,
        );
        let call = move |m0: usize, m1: usize, p0: usize, p1: usize| {
            // SAFETY: A is m x k and C is m x n; concurrent calls write disjoint parts of C.
            unsafe {
                kernel(
                    a as *const f32,
                    k as i64,
                    c as *mut f32,
                    n as i64,
                    m0 as i64,
                    m1 as i64,
                    p0 as i64,
                    p1 as i64,
                )
            }
        };
        let panels = self.layout.panels(n);
        if threads == 1 {
            return best_time(|| call(0, m, 0, panels));
        }
        if m <= n && panels.is_multiple_of(2) {
            let half = panels / 2;
            best_time(|| {
                pool.run2(
                    &|| call(0, m, 0, half),
                    Arc::new(move || call(0, m, half, panels)),
                )
            })
        } else {
            let mr = self.layout.mr as usize;
            let half = (m.div_ceil(mr) / 2 * mr).min(m);
            best_time(|| {
                pool.run2(
                    &|| call(0, half, 0, panels),
                    Arc::new(move || call(half, m, 0, panels)),
                )
            })
        }
    }
}

/// The qgemm kernel at a shape, with its operands: `A` in [-3, 3), per-row scales and zero
/// points as dynamic quantisation computes them (`(max - min) / 255`, `round(-min / scale)`,
/// the range widened to hold 0), weights uniform over the i8 range, scales about 0.01 and
/// a bias.
struct QGemm {
    _library: libloading::Library,
    kernel: QGemmFn,
    size: [usize; 3],
    layout: Int8Layout,
    saturate: bool,
    activation: Activation,
    a: Vec<f32>,
    sa: Vec<f32>,
    za: Vec<u8>,
    w: Vec<i8>,
    sw: Vec<f32>,
    bias: Vec<f32>,
    c: Vec<f32>,
    q: Vec<u8>,
}

impl QGemm {
    fn build(
        target: &Target,
        layout: &Int8Layout,
        dir: &Path,
        size: [usize; 3],
        saturate: bool,
        activation: Activation,
    ) -> Result<QGemm, Error> {
        let [m, k, n] = size;
        let name = format!("qgemm_{m}_{k}_{n}_{}", if saturate { "s" } else { "e" });
        let mut rng = Rng(11);
        let w: Vec<i8> = (0..k * n).map(|_| rng.next() as u8 as i8).collect();
        let sw: Vec<f32> = (0..n).map(|_| 0.005 + 0.01 * rng.unit()).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.unit() - 0.5).collect();
        let a: Vec<f32> = (0..m * k).map(|_| rng.unit() * 6.0 - 3.0).collect();
        let (mut sa, mut za) = (Vec::new(), Vec::new());
        for row in a.chunks(k.max(1)).take(m) {
            let lo = row.iter().copied().fold(0.0f32, f32::min);
            let hi = row.iter().copied().fold(0.0f32, f32::max);
            let s = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
            sa.push(s);
            za.push((-lo / s).round_ties_even().clamp(0.0, 255.0) as u8);
        }
        let context = Context::create();
        let module = context.create_module(&name);
        let op = QGemmConst {
            w: &w,
            k,
            n,
            sw: &sw,
            bias: Some(&bias),
            activation,
            saturate,
        };
        emit_qgemm_const_b(&module, target, &name, layout, &op)?;
        let library = build(&module, target, dir, &name)?;
        // SAFETY: the symbol is the kernel emitted above with this signature.
        let kernel: QGemmFn = unsafe { *library.get::<QGemmFn>(name.as_bytes())? };
        Ok(QGemm {
            _library: library,
            kernel,
            size,
            layout: *layout,
            saturate,
            activation,
            q: vec![0; m * layout.qgemm_row_bytes(k, saturate)],
            c: vec![f32::NAN; m * n],
            a,
            sa,
            za,
            w,
            sw,
            bias,
        })
    }

    fn call(&self) -> impl Fn(usize, usize, usize, usize) + Send + Sync + 'static {
        let [_, k, n] = self.size;
        let p = |v: &[f32]| v.as_ptr() as usize;
        let (a, sa, c) = (p(&self.a), p(&self.sa), p(&self.c));
        let (za, q) = (self.za.as_ptr() as usize, self.q.as_ptr() as usize);
        let kernel = self.kernel;
        move |m0: usize, m1: usize, p0: usize, p1: usize| {
            // SAFETY: A is m x k, sa and za have m entries, C is m x n, q has a padded row per
            // row of A; concurrent calls take disjoint rows, or disjoint panels (which the
            // kernel quantises on its stack).
            unsafe {
                kernel(
                    a as *const f32,
                    k as i64,
                    sa as *const f32,
                    za as *const u8,
                    1,
                    c as *mut f32,
                    n as i64,
                    q as *mut u8,
                    m0 as i64,
                    m1 as i64,
                    p0 as i64,
                    p1 as i64,
                )
            }
        }
    }

    /// Runs the kernel once and compares with the op's arithmetic in Rust: bit for bit without
    /// an activation or with relu, within `1e-6 (|gelu(y)| + |y|)` of the GELU in f64.
    fn check(&mut self) -> Result<(), Error> {
        let [m, k, n] = self.size;
        self.c.fill(f32::NAN);
        (self.call())(0, m, 0, usize::MAX >> 1);
        for i in 0..m {
            let (s, z) = (self.sa[i], self.za[i]);
            let q: Vec<i32> = self.a[i * k..][..k]
                .iter()
                .map(|&x| {
                    let t = (x / s).round_ties_even() + f32::from(z);
                    t.clamp(0.0, 255.0) as i32
                })
                .collect();
            for j in 0..n {
                let w = |kk: usize| i32::from(self.w[kk * n + j]);
                let acc = if self.saturate {
                    let pairs: i32 = (0..k)
                        .step_by(2)
                        .map(|kk| {
                            let p =
                                q[kk] * w(kk) + if kk + 1 < k { q[kk + 1] * w(kk + 1) } else { 0 };
                            p.clamp(-32768, 32767)
                        })
                        .sum();
                    pairs - i32::from(z) * (0..k).map(w).sum::<i32>()
                } else {
                    (0..k).map(|kk| (q[kk] - i32::from(z)) * w(kk)).sum()
                };
                let y = acc as f32 * (s * self.sw[j]) + self.bias[j];
                let got = self.c[i * n + j];
                let ok = match self.activation {
                    Activation::None => got.to_bits() == y.to_bits(),
                    Activation::Relu => got.to_bits() == y.max(0.0).to_bits(),
                    act => {
                        let y = f64::from(y);
                        let want = if act == Activation::GeluTanh {
                            let u =
                                (2.0 / std::f64::consts::PI).sqrt() * (y + 0.044715 * y * y * y);
                            0.5 * y * (1.0 + u.tanh())
                        } else {
                            0.5 * y * (1.0 + libm_erf(y / 2f64.sqrt()))
                        };
                        (f64::from(got) - want).abs() <= 1e-6 * (want.abs() + y.abs())
                    }
                };
                if !ok {
                    return Err(format!(
                        "qgemm {:?} (saturate {}): [{i}, {j}] is {got}, want {y} before the \
                         activation",
                        self.size, self.saturate
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    /// The best time of one product on `threads` (1 or 2) threads, in seconds: split by rows,
    /// or by panels up to four tiles of rows where the kernel can, as the compiled step does.
    fn time(&self, pool: &Pool, threads: usize) -> f64 {
        let [m, k, n] = self.size;
        let all = usize::MAX >> 1;
        let call = self.call();
        if threads == 1 {
            return best_time(|| call(0, m, 0, all));
        }
        let mr = self.layout.mr as usize;
        let panels = self.layout.panels(n);
        let by_columns = m <= 4 * mr
            && panels.is_multiple_of(2)
            && self.layout.qgemm_splits_columns(k, self.saturate);
        let second: Job = if by_columns {
            let call = self.call();
            Arc::new(move || call(0, m, panels / 2, panels))
        } else {
            let half = (m.div_ceil(mr) / 2 * mr).min(m);
            let call = self.call();
            Arc::new(move || call(half, m, 0, all))
        };
        if by_columns {
            best_time(|| pool.run2(&|| call(0, m, 0, panels / 2), second.clone()))
        } else {
            let half = (m.div_ceil(mr) / 2 * mr).min(m);
            best_time(|| pool.run2(&|| call(0, half, 0, all), second.clone()))
        }
    }
}

extern "C" {
    // glibc's libm.
    #[link_name = "erf"]
    fn c_erf(x: f64) -> f64;
}

fn libm_erf(x: f64) -> f64 {
    // SAFETY: erf is a pure function of a double.
    unsafe { c_erf(x) }
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

//! The GEMM kernels, built into shared libraries and run against a naive Rust GEMM that
//! accumulates in `f64`, on the host's widest vector path (AVX-512 here), on AVX2
//! (`x86-64-v3`) and on SSE without FMA.
//!
//! # Tolerance
//! A dot product of length `k` accumulated in `f32` (one rounding per step, by FMA or by the
//! add) is within `k * u * sum |a_i b_i|` of the exact value, `u = 2^-24` (Higham, *Accuracy and
//! Stability of Numerical Algorithms*, 3.1); without FMA the products are rounded too, which
//! doubles it. Scaling by `alpha` and adding the bias add two roundings. So the pre-activation
//! value may be off by `x_tol = (steps + 2) * u * (|alpha| * sum |a_i b_i| + |bias|)`, and the
//! output by `L * x_tol` plus the activation's own error, where `L` bounds the activation's
//! slope (1 for the identity and relu, 1.13 for both gelus). The activations' own errors are
//! checked on their own, against glibc's `erf` and `erfc` in `f64`, by
//! [`activations_are_accurate_over_their_whole_range`]. A missing or doubled term of the sum is
//! about `sum |a_i b_i| / k`, far above `x_tol`, so the tolerance catches indexing bugs.

mod support;

use std::path::{Path, PathBuf};

use support::cpuinfo_flags;
use tcc_codegen::emit::{emit_to_file, link_shared, EmitKind};
use tcc_codegen::kernels::gemm::{
    emit_gemm_const_b, emit_gemm_const_b_then, emit_gemm_packed_b_known, emit_gemm_runtime_b,
    emit_pack_b_fn, Activation, Epilogue, GemmLayout, Known, NextGemm,
};
use tcc_codegen::kernels::{vmath, KernelBuilder, Param};
use tcc_codegen::{Context, Target};

/// A value the kernels must never write: the gaps of strided `C` and rows past `m1` keep it.
const SENTINEL: f32 = -12345.5;
/// The unit roundoff of `f32`.
const U: f64 = 1.0 / (1u64 << 24) as f64;

type ConstFn = unsafe extern "C" fn(*const f32, i64, *mut f32, i64, i64, i64, i64, i64);
type RuntimeFn = unsafe extern "C" fn(
    *const f32,
    i64,
    *const f32,
    i64,
    i64,
    *const f32,
    *mut f32,
    i64,
    *mut f32,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);
type UnaryFn = unsafe extern "C" fn(*const f32, *mut f32, i64);
type PackFn = unsafe extern "C" fn(*const f32, i64, i64, i64, i64, *mut f32);
type PackedFn =
    unsafe extern "C" fn(*const f32, i64, *const f32, *mut f32, i64, i64, i64, i64, i64, i64);
type PackedAddendFn = unsafe extern "C" fn(
    *const f32,
    i64,
    *const f32,
    *mut f32,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    *const f32,
    i64,
);

extern "C" {
    // glibc's libm, which every Rust program on Linux links: correctly rounded to within 1 ulp.
    fn erf(x: f64) -> f64;
    fn erfc(x: f64) -> f64;
}

/// The `(m, n, k)` shapes checked: drawn from {1, 7, 17, 33, 127, 128, 300}, with `k = 1`,
/// edge tiles in `m` and in `n` on every path, and shapes whose `m` is a multiple of the tile
/// height. The default blocks (KC = 256 or 512) see one or two k-blocks; the small-block runs
/// below (KC = 32, NC = 2 panels) see up to ten k-blocks and several column blocks.
const SHAPES: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (7, 17, 1),
    (17, 7, 33),
    (33, 127, 7),
    (127, 33, 128),
    (128, 128, 17),
    (300, 7, 127),
    (7, 300, 300),
    (128, 300, 33),
    (33, 128, 300),
];

/// Deterministic inputs in about [-1, 1], with fractions that make rounding visible.
fn inputs(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let unit = (state >> 8) as f32 / (1u32 << 24) as f32;
            (unit - 0.5) * 2.0 + 1.0 / 3.0
        })
        .collect()
}

/// The activations in `f64`, the reference.
fn activation_f64(activation: Activation, x: f64) -> f64 {
    match activation {
        Activation::None => x,
        Activation::Relu => x.max(0.0),
        // 1 + erf(z) = erfc(-z), without cancellation in the negative tail.
        // SAFETY: erfc is a pure libm function.
        Activation::GeluErf => 0.5 * x * unsafe { erfc(-x / std::f64::consts::SQRT_2) },
        Activation::GeluTanh => {
            // 0.5 x (1 + tanh u) = x / (1 + exp(-2u)); the first form cancels to 0 in f64 for
            // x below about -6, where the true value is still a normal f32.
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            x / (1.0 + (-2.0 * u).exp())
        }
    }
}

/// A bound on the activation's slope.
fn slope_bound(activation: Activation) -> f64 {
    match activation {
        Activation::None | Activation::Relu => 1.0,
        Activation::GeluErf | Activation::GeluTanh => 1.13,
    }
}

/// The activation's own relative error bound at `x`, from its emitted formula (see the
/// functions of `kernels/vmath.rs`); checked tightly by the dense test below.
fn activation_rel_error(activation: Activation, x: f64) -> f64 {
    match activation {
        Activation::None | Activation::Relu => 0.0,
        Activation::GeluErf => 5e-7,
        // exp(-2u) gets the rounding of its argument 2u, a relative error of ~1.2e-7 * |2u|.
        Activation::GeluTanh => {
            let two_u = 2.0 * 0.797_884_6 * (x + 0.044715 * x * x * x);
            3e-7 + 2.4e-7 * two_u.abs()
        }
    }
}

/// One GEMM problem with its operands, strides and reference.
struct Problem {
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    ldc: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    bias: Option<Vec<f32>>,
    epilogue: Epilogue,
    /// Rounding steps per dot product: `k` with FMA, `2k` without.
    steps_per_k: usize,
}

impl Problem {
    fn new(shape: (usize, usize, usize), bias: bool, epilogue: Epilogue, seed: u32) -> Self {
        let (m, n, k) = shape;
        // Strided operands: C rows are longer than n, and A rows longer than k for odd seeds
        // (contiguous for even ones, as in a model, where the kernel's stride is a constant).
        let lda = if seed.is_multiple_of(2) { k } else { k + 5 };
        let ldc = n + 3;
        let mut b = inputs(k * n, seed + 1);
        // Scale so that the pre-activation values cover the gelus' curved region, [-4, 4].
        let scale = 3.0 / (k as f32).sqrt();
        b.iter_mut().for_each(|x| *x *= scale);
        Problem {
            m,
            n,
            k,
            lda,
            ldc,
            a: inputs(m * lda, seed),
            b,
            bias: bias.then(|| inputs(n, seed + 2)),
            epilogue,
            steps_per_k: 1,
        }
    }

    /// A fresh C full of the sentinel.
    fn fresh_c(&self) -> Vec<f32> {
        vec![SENTINEL; self.m * self.ldc]
    }

    /// Checks every element of `c` against the f64 reference and the gaps against the
    /// sentinel; `what` names the case in failure messages.
    fn check(&self, c: &[f32], what: &str) {
        let alpha = f64::from(self.epilogue.alpha);
        let activation = self.epilogue.activation;
        let steps = (self.steps_per_k * self.k + 2) as f64;
        for i in 0..self.m {
            for j in 0..self.ldc {
                let got = c[i * self.ldc + j];
                if j >= self.n {
                    assert_eq!(got, SENTINEL, "{what}: wrote C[{i}, {j}] in the gap past n");
                    continue;
                }
                let mut sum = 0.0f64;
                let mut magnitude = 0.0f64;
                for kk in 0..self.k {
                    let product =
                        f64::from(self.a[i * self.lda + kk]) * f64::from(self.b[kk * self.n + j]);
                    sum += product;
                    magnitude += product.abs();
                }
                let bias = self.bias.as_ref().map_or(0.0, |b| f64::from(b[j]));
                let x = alpha * sum + bias;
                let x_tol = steps * U * (alpha.abs() * magnitude + bias.abs());
                let want = activation_f64(activation, x);
                let tol = slope_bound(activation) * x_tol
                    + activation_rel_error(activation, x) * want.abs()
                    + 1e-30;
                let err = (f64::from(got) - want).abs();
                assert!(
                    err <= tol,
                    "{what}: C[{i}, {j}] = {got}, want {want} (error {err:e} > tolerance {tol:e})"
                );
            }
        }
    }
}

/// The function `name` of `library`, which must have the signature `F`.
fn symbol<F: Copy>(library: &libloading::Library, name: &[u8]) -> F {
    // SAFETY: every caller names a kernel emitted by the test with exactly the signature `F`.
    *unsafe { library.get::<F>(name) }.expect("the kernel resolves")
}

/// Emits the kernels `emit` adds to a fresh module for `target`, links them into
/// `dir/lib<name>.so` and loads it.
fn build(
    target: &Target,
    dir: &Path,
    name: &str,
    emit: impl FnOnce(&inkwell::module::Module<'_>),
) -> libloading::Library {
    let context = Context::create();
    let module = context.create_module(name);
    emit(&module);
    let object = dir.join(format!("{name}.o"));
    emit_to_file(&module, target, EmitKind::Object, &object).expect("the module emits");
    let so: PathBuf = dir.join(format!("lib{name}.so"));
    link_shared(&[&object], &so).expect("the object links");
    // SAFETY: the library was just built by this test from kernels with no initialisers.
    unsafe { libloading::Library::new(&so) }.expect("the .so loads")
}

/// The epilogue of case `index`: activations in turn, with `alpha` other than 1 every third.
fn epilogue_for(index: usize) -> Epilogue {
    Epilogue {
        alpha: if index % 3 == 2 { 0.75 } else { 1.0 },
        activation: Activation::ALL[index % Activation::ALL.len()],
    }
}

/// Builds one constant-B kernel per shape and case and checks each in one call, in a row
/// split at a row that is not a multiple of MR, and in a panel split, on two threads.
fn check_const_b(cpu: &str, small_blocks: bool) {
    let target = Target::named(cpu).unwrap();
    let mut layout = GemmLayout::for_target(&target);
    if small_blocks {
        layout.kc = 32;
        layout.nc_panels = 2;
    }
    let fused = target.has_fma();
    let mut problems = Vec::new();
    for (s, &shape) in SHAPES.iter().enumerate() {
        // Each shape with a bias and a rotating epilogue, and without bias.
        for (case, bias) in [(0, true), (1, false)] {
            let mut problem = Problem::new(shape, bias, epilogue_for(2 * s + case), s as u32);
            problem.steps_per_k = if fused { 1 } else { 2 };
            problems.push(problem);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let tag = cpu.replace('-', "_");
    let library = build(
        &target,
        dir.path(),
        &format!("gemm_{tag}_{small_blocks}"),
        |module| {
            // Each GEMM prefetches the next one's weights, as a model's do, and reads A at
            // a constant stride where its rows are contiguous.
            let names: Vec<String> = (0..problems.len()).map(|i| format!("gemm{i}")).collect();
            for (index, p) in problems.iter().enumerate() {
                let next = problems.get(index + 1).map(|q| NextGemm {
                    name: &names[index + 1],
                    b: &q.b,
                    k: q.k,
                    n: q.n,
                });
                emit_gemm_const_b_then(
                    module,
                    &target,
                    &names[index],
                    &layout,
                    &p.b,
                    p.k,
                    p.n,
                    p.bias.as_deref(),
                    p.epilogue,
                    p.lda == p.k,
                    next,
                )
                .expect("the kernel builds");
            }
        },
    );
    for (index, p) in problems.iter().enumerate() {
        // SAFETY: the symbol is a constant-B GEMM with this signature.
        let kernel: ConstFn = symbol::<ConstFn>(&library, format!("gemm{index}").as_bytes());
        let what = format!(
            "{cpu} {layout:?} m={} n={} k={} bias={} {:?}",
            p.m,
            p.n,
            p.k,
            p.bias.is_some(),
            p.epilogue
        );
        let run = |c: &mut [f32], m0: usize, m1: usize, p0: i64, p1: i64| {
            // SAFETY: A is m x lda, C is m x ldc, and m1 <= m.
            unsafe {
                kernel(
                    p.a.as_ptr(),
                    p.lda as i64,
                    c.as_mut_ptr(),
                    p.ldc as i64,
                    m0 as i64,
                    m1 as i64,
                    p0,
                    p1,
                )
            }
        };

        let mut c = p.fresh_c();
        run(&mut c, 0, p.m, 0, i64::MAX);
        p.check(&c, &format!("{what}, one call"));

        // Two threads on row ranges split at m / 2 (not a multiple of MR in general).
        let mut c = p.fresh_c();
        let split = p.m / 2;
        let (top, bottom) = c.split_at_mut(split * p.ldc);
        std::thread::scope(|scope| {
            scope.spawn(|| run(top, 0, split, 0, i64::MAX));
            // The bottom half's C pointer is offset, so its rows start at 0 again; A too.
            scope.spawn(|| {
                // SAFETY: as above, on the rows split..m of A and C.
                unsafe {
                    kernel(
                        p.a[split * p.lda..].as_ptr(),
                        p.lda as i64,
                        bottom.as_mut_ptr(),
                        p.ldc as i64,
                        0,
                        (p.m - split) as i64,
                        0,
                        i64::MAX,
                    )
                }
            });
        });
        p.check(
            &c,
            &format!("{what}, rows split at {split} over two threads"),
        );

        // Two calls on panel ranges [0, 1) and [1, panels), and m0 > 0 in the same C.
        let mut c = p.fresh_c();
        run(&mut c, 0, p.m, 0, 1);
        run(&mut c, 0, p.m, 1, layout.panels(p.n) as i64);
        p.check(&c, &format!("{what}, panels split at 1"));

        // Rows past m1 stay untouched.
        if p.m > 1 {
            let mut c = p.fresh_c();
            run(&mut c, 0, p.m - 1, 0, i64::MAX);
            let last = &c[(p.m - 1) * p.ldc..];
            assert!(
                last.iter().all(|&x| x == SENTINEL),
                "{what}: wrote row m1 = {}",
                p.m - 1
            );
        }
    }
}

/// The host's widest path: AVX-512 where the machine has it (AVX2 has its own tests below).
#[test]
fn const_b_matches_reference_on_the_host_path() {
    check_const_b("host", false);
}

#[test]
fn const_b_matches_reference_on_the_host_path_with_small_blocks() {
    check_const_b("host", true);
}

#[test]
fn const_b_matches_reference_on_avx2_with_small_blocks() {
    check_const_b("x86-64-v3", true);
}

#[test]
fn const_b_matches_reference_on_avx2() {
    let flags = cpuinfo_flags();
    assert!(flags.contains("avx2") && flags.contains("fma"));
    check_const_b("x86-64-v3", false);
}

#[test]
fn const_b_matches_reference_on_sse_without_fma() {
    check_const_b("x86-64", false);
}

/// Runtime-B kernels with B row-major and B transposed (as `Kᵀ` in attention), with and
/// without bias, each split over two threads with their own scratch.
fn check_runtime_b(cpu: &str) {
    let target = Target::named(cpu).unwrap();
    let layout = GemmLayout::for_runtime_b(&target);
    let dir = tempfile::tempdir().unwrap();
    let tag = cpu.replace('-', "_");
    let epilogues = [
        (
            "scaled_bias_gelu",
            true,
            Epilogue {
                alpha: 0.125,
                activation: Activation::GeluErf,
            },
        ),
        ("plain", false, Epilogue::default()),
    ];
    let library = build(&target, dir.path(), &format!("gemm_rt_{tag}"), |module| {
        for (name, bias, epilogue) in epilogues {
            emit_gemm_runtime_b(module, &target, name, &layout, bias, epilogue)
                .expect("the kernel builds");
        }
    });
    for (s, &shape) in SHAPES.iter().enumerate() {
        for (name, bias, epilogue) in epilogues {
            // SAFETY: the symbol is a runtime-B GEMM with this signature.
            let kernel: RuntimeFn = symbol::<RuntimeFn>(&library, name.as_bytes());
            let mut p = Problem::new(shape, bias, epilogue, 100 + s as u32);
            p.steps_per_k = if target.has_fma() { 1 } else { 2 };
            let (m, n, k) = shape;
            // The same B stored transposed, with a padded row: bt[j * ldt + kk] = b[kk, j].
            let ldt = k + 2;
            let mut bt = vec![f32::NAN; n * ldt];
            for kk in 0..k {
                for j in 0..n {
                    bt[j * ldt + kk] = p.b[kk * n + j];
                }
            }
            // And with neither stride 1: bs[kk * lds + 2 * j] = b[kk, j].
            let lds = 2 * n + 3;
            let mut bs = vec![f32::NAN; k * lds];
            for kk in 0..k {
                for j in 0..n {
                    bs[kk * lds + 2 * j] = p.b[kk * n + j];
                }
            }
            let bias_ptr = p.bias.as_ref().map_or(std::ptr::null(), |b| b.as_ptr());
            for (layout_name, b_ptr, rs, cs) in [
                ("row-major", p.b.as_ptr(), n as i64, 1),
                ("transposed", bt.as_ptr(), 1, ldt as i64),
                ("strided", bs.as_ptr(), lds as i64, 2),
            ] {
                let what = format!("{cpu} {name} B {layout_name} m={m} n={n} k={k}");
                let panels = layout.panels(n);
                let split = panels / 2;
                let mut c = p.fresh_c();
                let c_ptr = c.as_mut_ptr() as usize;
                let (b_addr, bias_addr) = (b_ptr as usize, bias_ptr as usize);
                std::thread::scope(|scope| {
                    for (p0, p1) in [(0, split), (split, panels)] {
                        let p = &p;
                        scope.spawn(move || {
                            // Exactly the documented scratch: (p1 - p0) * NR * k floats.
                            let mut scratch = vec![0.0f32; (p1 - p0) * layout.nr() * k];
                            // SAFETY: the operands are as documented; the two threads write
                            // disjoint panels of C and have their own scratch.
                            unsafe {
                                kernel(
                                    p.a.as_ptr(),
                                    p.lda as i64,
                                    b_addr as *const f32,
                                    rs,
                                    cs,
                                    bias_addr as *const f32,
                                    c_ptr as *mut f32,
                                    p.ldc as i64,
                                    scratch.as_mut_ptr(),
                                    0,
                                    m as i64,
                                    n as i64,
                                    k as i64,
                                    p0 as i64,
                                    p1 as i64,
                                )
                            }
                        });
                    }
                });
                p.check(
                    &c,
                    &format!("{what}, panels split at {split} over two threads"),
                );
            }
        }
    }
}

/// The scale of [`check_packed_b_known`]'s addend kernel: `1 / sqrt(32)`, whose products
/// round.
const ADDEND_ALPHA: f32 = 0.176_776_7;

/// The packed-B GEMM (attention's) with `A`'s row stride passed at run time and compiled in
/// ([`Known`]): both match the reference, and each other bit for bit; and with `alpha` and an
/// addend `D`, the product times `alpha` plus `D`, each rounded once, bit for bit.
fn check_packed_b_known(cpu: &str) {
    let target = Target::named(cpu).unwrap();
    let layout = GemmLayout::for_runtime_b(&target);
    let dir = tempfile::tempdir().unwrap();
    let tag = cpu.replace('-', "_");
    let epilogue = Epilogue::default();
    // The odd seeds' A rows are longer than k (see Problem::new): both kinds of stride.
    let problems: Vec<Problem> = SHAPES
        .iter()
        .enumerate()
        .map(|(s, &shape)| Problem::new(shape, false, epilogue, 200 + s as u32))
        .collect();
    let library = build(
        &target,
        dir.path(),
        &format!("gemm_known_{tag}"),
        |module| {
            emit_pack_b_fn(module, &target, "pack", &layout).expect("the pack builds");
            for (s, p) in problems.iter().enumerate() {
                // As attention's Q·K: the stride compiled in, a scale, then the mask.
                let addend = Known {
                    lda: Some(p.lda as i64),
                    addend: true,
                };
                let scaled = Epilogue {
                    alpha: ADDEND_ALPHA,
                    ..epilogue
                };
                let name = format!("gemm_{s}_addend");
                emit_gemm_packed_b_known(module, &target, &name, &layout, scaled, addend)
                    .expect("the kernel builds");
                for known in [None, Some(p.lda as i64)] {
                    let name = format!("gemm_{s}_{}", known.is_some());
                    emit_gemm_packed_b_known(
                        module,
                        &target,
                        &name,
                        &layout,
                        epilogue,
                        Known {
                            lda: known,
                            addend: false,
                        },
                    )
                    .expect("the kernel builds");
                }
            }
        },
    );
    let pack: PackFn = symbol(&library, b"pack");
    for (s, p) in problems.iter().enumerate() {
        let (m, n, k) = (p.m, p.n, p.k);
        let mut packed = vec![0.0f32; layout.packed_b_len(k, n)];
        // SAFETY: B is k x n row-major; `packed` holds packed_b_len floats.
        unsafe {
            pack(
                p.b.as_ptr(),
                n as i64,
                1,
                n as i64,
                k as i64,
                packed.as_mut_ptr(),
            )
        };
        let results: Vec<Vec<f32>> = [false, true]
            .iter()
            .map(|known| {
                let gemm: PackedFn = symbol(&library, format!("gemm_{s}_{known}").as_bytes());
                let mut c = p.fresh_c();
                // SAFETY: A is m rows at stride lda, C m rows at stride ldc, `packed` B's
                // panels of k rows.
                unsafe {
                    gemm(
                        p.a.as_ptr(),
                        p.lda as i64,
                        packed.as_ptr(),
                        c.as_mut_ptr(),
                        p.ldc as i64,
                        0,
                        m as i64,
                        n as i64,
                        k as i64,
                        k as i64,
                    )
                };
                p.check(
                    &c,
                    &format!("{cpu} packed B m={m} n={n} k={k} lda known: {known}"),
                );
                c
            })
            .collect();
        let same = results[0]
            .iter()
            .zip(&results[1])
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "{cpu} m={m} n={n} k={k}: a known lda changes the results"
        );
        // With alpha and an addend D (attention's scale and mask), D at a row stride past n
        // and at 0 (one row for all): each element is the product times alpha, rounded, plus
        // D's, rounded (a fused multiply-add would round once and differ).
        let addend: PackedAddendFn = symbol(&library, format!("gemm_{s}_addend").as_bytes());
        for ldd in [n + 1, 0] {
            let d = inputs(m.max(1) * (n + 1), 300 + s as u32);
            let mut c = p.fresh_c();
            // SAFETY: as above; D holds rows of ldd floats (one row for ldd 0) of n columns.
            unsafe {
                addend(
                    p.a.as_ptr(),
                    p.lda as i64,
                    packed.as_ptr(),
                    c.as_mut_ptr(),
                    p.ldc as i64,
                    0,
                    m as i64,
                    n as i64,
                    k as i64,
                    k as i64,
                    d.as_ptr(),
                    ldd as i64,
                )
            };
            for i in 0..m {
                for j in 0..p.ldc {
                    let (got, plain) = (c[i * p.ldc + j], results[0][i * p.ldc + j]);
                    let want = if j < n {
                        plain * ADDEND_ALPHA + d[i * ldd + j]
                    } else {
                        plain
                    };
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{cpu} m={m} n={n} k={k} ldd={ldd}: C[{i}, {j}] = {got}, want {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn packed_b_with_known_arguments_matches_on_the_host_path() {
    check_packed_b_known("host");
}

#[test]
fn packed_b_with_known_arguments_matches_on_avx2() {
    check_packed_b_known("x86-64-v3");
}

#[test]
fn runtime_b_matches_reference_on_the_host_path() {
    check_runtime_b("host");
}

#[test]
fn runtime_b_matches_reference_on_avx2() {
    check_runtime_b("x86-64-v3");
}

/// SSE without FMA: 4-lane vectors, so B's packing transposes 4 x 4 blocks.
#[test]
fn runtime_b_matches_reference_on_sse_without_fma() {
    check_runtime_b("x86-64");
}

#[test]
fn k_zero_stores_the_epilogue_of_zero() {
    let target = Target::named("x86-64-v3").unwrap();
    let layout = GemmLayout::for_target(&target);
    let dir = tempfile::tempdir().unwrap();
    let bias = [1.0, -2.0, 0.5];
    let epilogue = Epilogue {
        alpha: 2.0,
        activation: Activation::Relu,
    };
    let library = build(&target, dir.path(), "gemm_k0", |module| {
        emit_gemm_const_b(
            module,
            &target,
            "k0",
            &layout,
            &[],
            0,
            3,
            Some(&bias),
            epilogue,
        )
        .unwrap();
    });
    // SAFETY: the symbol is a constant-B GEMM with this signature.
    let kernel: ConstFn = symbol::<ConstFn>(&library, b"k0");
    let mut c = vec![SENTINEL; 2 * 3];
    // SAFETY: with k = 0, A is never read; C is 2 x 3.
    unsafe { kernel(std::ptr::null(), 0, c.as_mut_ptr(), 3, 0, 2, 0, 1) };
    assert_eq!(c, [1.0, 0.0, 0.5, 1.0, 0.0, 0.5]);
}

/// `vmath::exp_by_scalef`, attention's exponential on AVX-512, four registers wide (as the
/// exponential pass runs it, through `by_registers`), kept where `d >= -41.6`: within
/// `(1.5 |d| + 2) 2^-24` of `exp(d)` relative (the rounding of `d log2 e` and of the constant,
/// the polynomial's 1.1 ulp), exactly 0 below the floor and at `-inf`, NaN for NaN. Where the
/// CPU lacks AVX-512 DQ the kernel is only built for `x86-64-v4` and verified, and the test
/// says so.
#[test]
fn exp_by_scalef_is_accurate_and_zero_where_masked() {
    let flags = cpuinfo_flags();
    let runs = flags.contains("avx512f") && flags.contains("avx512dq");
    let target = Target::named(if runs { "host" } else { "x86-64-v4" }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let floor = -41.6f32;
    let emit = |module: &inkwell::module::Module<'_>| {
        let kb = KernelBuilder::new(
            module,
            &target,
            "exp2",
            &[Param::Ptr, Param::Ptr, Param::I64],
            64,
        )
        .unwrap();
        assert!(vmath::has_exp_by_scalef(&kb), "x86-64-v4 has AVX-512 DQ");
        let (x, out, n) = (
            kb.ptr_param(0).unwrap(),
            kb.ptr_param(1).unwrap(),
            kb.int_param(2).unwrap(),
        );
        kb.vector_loop(n, |kb, i, mask| {
            let d = kb.load_f32(x, i, mask)?;
            let keep = kb
                .builder()
                .build_float_compare(
                    inkwell::FloatPredicate::UGE,
                    d,
                    kb.f32_splat_const(floor),
                    "keep",
                )
                .unwrap();
            let e = vmath::exp_by_scalef(kb, d, keep)?;
            kb.store_f32(out, i, e, mask)
        })
        .unwrap();
    };
    if !runs {
        let context = Context::create();
        let module = context.create_module("exp2");
        emit(&module);
        tcc_codegen::emit::verify(&module).expect("the kernel verifies");
        eprintln!("exp_by_scalef: built and verified only: this CPU lacks AVX-512 DQ");
        return;
    }
    let library = build(&target, dir.path(), "exp2", emit);
    let kernel: UnaryFn = symbol(&library, b"exp2");
    let mut ds: Vec<f32> = (0..=870_000).map(|i| -(i as f32) * 1e-4).collect();
    ds.extend([
        floor,
        floor - 1e-5,
        -50.0,
        -87.0,
        -1e30,
        f32::NEG_INFINITY,
        f32::NAN,
        -0.0,
    ]);
    let mut out = vec![SENTINEL; ds.len()];
    // SAFETY: `exp2` reads and writes `n` floats.
    unsafe { kernel(ds.as_ptr(), out.as_mut_ptr(), ds.len() as i64) };
    let mut worst = 0.0f64;
    for (&d, &e) in ds.iter().zip(&out) {
        if d.is_nan() {
            assert!(e.is_nan(), "exp_by_scalef(NaN) = {e}");
        } else if d < floor {
            assert_eq!(e.to_bits(), 0, "exp_by_scalef({d}) = {e} below the floor");
        } else {
            let want = f64::from(d).exp();
            let rel = (f64::from(e) - want).abs() / want / U;
            let bound = 1.5 * f64::from(d).abs() + 2.0;
            assert!(
                rel <= bound,
                "exp_by_scalef({d}) = {e}, want {want}: {rel:.2} * 2^-24"
            );
            worst = worst.max(rel - 1.5 * f64::from(d).abs());
        }
    }
    eprintln!("exp_by_scalef: worst error past 1.5 |d| 2^-24: {worst:.2} * 2^-24");
}

/// Every activation through a `k = 1` GEMM with `B = [[1]]`, so that the pre-activation values
/// are the inputs exactly, over a dense grid of [-14, 14]; and `erf` through its own kernel.
#[test]
fn activations_are_accurate_over_their_whole_range() {
    for cpu in ["host", "x86-64-v3"] {
        let target = Target::named(cpu).unwrap();
        let layout = GemmLayout::for_target(&target);
        let dir = tempfile::tempdir().unwrap();
        let tag = cpu.replace('-', "_");
        let library = build(&target, dir.path(), &format!("act_{tag}"), |module| {
            for activation in Activation::ALL {
                let epilogue = Epilogue {
                    alpha: 1.0,
                    activation,
                };
                let name = format!("act_{activation:?}");
                emit_gemm_const_b(
                    module,
                    &target,
                    &name,
                    &layout,
                    &[1.0],
                    1,
                    1,
                    None,
                    epilogue,
                )
                .unwrap();
            }
            let kb = KernelBuilder::new(
                module,
                &target,
                "erf_kernel",
                &[Param::Ptr, Param::Ptr, Param::I64],
                target.f32_lanes(),
            )
            .unwrap();
            let (x, out, n) = (
                kb.ptr_param(0).unwrap(),
                kb.ptr_param(1).unwrap(),
                kb.int_param(2).unwrap(),
            );
            kb.vector_loop(n, |kb, i, mask| {
                let v = kb.load_f32(x, i, mask)?;
                let y = vmath::erf(kb, v)?;
                kb.store_f32(out, i, y, mask)
            })
            .unwrap();
        });

        let xs: Vec<f32> = (-140_000..=140_000)
            .map(|i| i as f32 * 1e-4)
            .chain([0.0, -0.0, 1.0, -1.0, 0.999_999_9, 1.000_000_1, 30.0, -30.0])
            .collect();
        let m = xs.len();
        for activation in Activation::ALL {
            // SAFETY: the symbol is a constant-B GEMM with this signature.
            let kernel: ConstFn =
                symbol::<ConstFn>(&library, format!("act_{activation:?}").as_bytes());
            let mut c = vec![SENTINEL; m];
            // SAFETY: A and C are m x 1.
            unsafe { kernel(xs.as_ptr(), 1, c.as_mut_ptr(), 1, 0, m as i64, 0, 1) };
            let (mut worst, mut worst_at) = (0.0f64, 0.0f32);
            for (&x, &got) in xs.iter().zip(&c) {
                let want = activation_f64(activation, f64::from(x));
                // The exact value rounded to f32 is off by up to u relative; below 1e-30 only
                // the absolute error counts (the gelu tails saturate there).
                let tol = (activation_rel_error(activation, f64::from(x)) + U) * want.abs() + 1e-30;
                let err = (f64::from(got) - want).abs();
                assert!(
                    err <= tol,
                    "{cpu} {activation:?}({x}) = {got}, want {want} (error {err:e} > {tol:e})"
                );
                if want.abs() > 1e-30 && err / want.abs() > worst {
                    worst = err / want.abs();
                    worst_at = x;
                }
            }
            eprintln!("{cpu} {activation:?}: worst relative error {worst:.2e} at {worst_at}");
        }

        // SAFETY: the symbol is the erf kernel emitted above.
        let erf_kernel: UnaryFn = symbol::<UnaryFn>(&library, b"erf_kernel");
        let mut out = vec![0.0f32; m];
        // SAFETY: both buffers hold m elements.
        unsafe { erf_kernel(xs.as_ptr(), out.as_mut_ptr(), m as i64) };
        let mut worst = 0.0f64;
        for (&x, &got) in xs.iter().zip(&out) {
            // SAFETY: erf is a pure libm function.
            let want = unsafe { erf(f64::from(x)) };
            let err = (f64::from(got) - want).abs();
            // 2.5e-7 relative: the fits' 1.2e-7 plus a few roundings (see vmath.rs).
            let tol = 2.5e-7 * want.abs() + 1e-45;
            assert!(
                err <= tol,
                "{cpu} erf({x}) = {got}, want {want} (error {err:e} > {tol:e})"
            );
            if want != 0.0 {
                worst = worst.max(err / want.abs());
            }
        }
        eprintln!("{cpu} erf: worst relative error {worst:.2e}");
    }
}

#[test]
fn the_micro_kernel_uses_fma_on_the_target_registers() {
    for (cpu, register) in [("x86-64-v4", "zmm"), ("x86-64-v3", "ymm")] {
        let target = Target::named(cpu).unwrap();
        let layout = GemmLayout::for_target(&target);
        let context = Context::create();
        let module = context.create_module("asm");
        let b = inputs(64 * 100, 1);
        emit_gemm_const_b(
            &module,
            &target,
            "g",
            &layout,
            &b,
            64,
            100,
            None,
            Epilogue::default(),
        )
        .unwrap();
        let asm = tcc_codegen::emit(&module, &target, EmitKind::Assembly).unwrap();
        let asm = String::from_utf8(asm).unwrap();
        let fmas = asm
            .lines()
            .filter(|l| l.trim_start().starts_with("vfmadd") && l.contains(register))
            .count();
        let tile = (layout.mr * layout.nr_vectors) as usize;
        assert!(
            fmas >= tile,
            "{cpu}: {fmas} vfmadd on {register}, fewer than the {tile} of one k step"
        );
    }
}

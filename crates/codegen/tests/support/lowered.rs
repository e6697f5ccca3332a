//! The `check` helper of the lowering tests: IR text in, a model library out, every output
//! compared with the interpreter.
//!
//! A [`Case`] is IR text (symbolic dims allowed), a list of symbol bindings, how to draw each
//! input, and a tolerance per output. [`Case::check`] compiles the graph with
//! `tcc_codegen::lower::compile` for each test target (the host's widest vector path and
//! `x86-64-v3`, the AVX2 path), links it into a `.so` in a temporary directory, loads it with
//! libloading, and for every binding runs it through the public C API on seeded random inputs
//! and compares every output with `tcc_ir::interp::run` on the same inputs. Every mismatch of
//! every target and binding is collected, and the case fails with all of them listed.

#![allow(dead_code)] // Each test file uses a different subset of the helpers.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::fmt::Write as _;
use std::path::Path;

use tcc_codegen::abi::dtype_code;
use tcc_codegen::emit::EmitKind;
use tcc_codegen::lower::{self, CompileOptions, Compiled};
use tcc_codegen::Target;
use tcc_ir::{DType, Graph, Tensor, TensorData};
use tcc_runtime::abi::{Output as COutput, Tensor as CTensor};

/// The targets every case runs on, by `Target::named`: the host (AVX-512 on the test machine)
/// and `x86-64-v3` (AVX2).
pub const TARGETS: [&str; 2] = ["host", "x86-64-v3"];

/// How to draw the elements of an input.
#[derive(Clone, Copy, Debug)]
pub enum Gen {
    /// Floats uniform in `[lo, hi)`.
    Float(f64, f64),
    /// Integers uniform in `lo..=hi`.
    Int(i64, i64),
    /// Bools, true with probability one half.
    Bool,
}

impl Gen {
    /// The default for a dtype: floats in `[-3, 3)`, integers in `-5..=5` (`0..=9` for u8).
    fn default_for(dtype: DType) -> Gen {
        match dtype {
            DType::Bool => Gen::Bool,
            DType::U8 => Gen::Int(0, 9),
            d if d.is_float() => Gen::Float(-3.0, 3.0),
            _ => Gen::Int(-5, 5),
        }
    }
}

/// How close an output must be to the interpreter's.
#[derive(Clone, Copy, Debug)]
pub enum Tol {
    /// Bit for bit (NaN matches NaN); for integer and bool outputs, and float kernels that do
    /// the interpreter's arithmetic in its order.
    Exact,
    /// Within `ulps` units in the last place of the expected value (of the output's dtype),
    /// or `abs` absolutely, whichever is larger.
    Ulps {
        /// Units in the last place.
        ulps: u32,
        /// An absolute floor, for results near zero after cancellation.
        abs: f64,
    },
    /// The GEMM bound: `(slope (k + 2) 2^-24 + extra) M + 2 ulp(want)`, where `M` is the
    /// same-named output of the case's bound graph (`Σ|a·b|` plus `|bias|`, run by the
    /// interpreter): a sum of `k` products rounded at most `k + 2` times, through an epilogue
    /// of slope at most `slope`, plus `extra` for an approximated activation.
    Gemm {
        /// The accumulation length.
        k: Len,
        /// The epilogue's largest slope (1 for none or Relu).
        slope: f64,
        /// A further relative slack, in units of `M`.
        extra: f64,
    },
}

/// An accumulation length: fixed, or the value of a symbol in each binding.
#[derive(Clone, Copy, Debug)]
pub enum Len {
    /// A fixed length.
    Fixed(usize),
    /// The value of this symbol.
    Sym(&'static str),
}

impl Tol {
    /// A plain GEMM of accumulation length `k`.
    pub fn gemm(k: Len) -> Tol {
        Tol::Gemm {
            k,
            slope: 1.0,
            extra: 0.0,
        }
    }
}

/// One test case: a graph, the sizes it runs at, its inputs and tolerances.
pub struct Case {
    name: String,
    ir: String,
    bound_ir: Option<String>,
    weights: HashMap<String, Tensor>,
    bindings: Vec<Vec<(String, i64)>>,
    gens: HashMap<String, Gen>,
    tol: Tol,
    tols: HashMap<String, Tol>,
    /// Whether every run must fail (bad data) on both sides rather than match.
    expect_failure: bool,
    /// What the library's failures must say: `TCC_ERR_SHAPE` and these words.
    shape_error: Option<Vec<String>>,
    threads: i32,
    steps: Option<usize>,
    reuse: bool,
    /// Targets run besides [`TARGETS`] where this CPU can run their code.
    extra_targets: Vec<&'static str>,
}

/// Whether this CPU runs code for the named target (`x86-64-v4`: AVX-512 F, BW, DQ, VL).
fn runnable(target: &str) -> bool {
    match target {
        "x86-64-v4" => {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
        }
        _ => true,
    }
}

impl Case {
    /// A case named `name` (used in messages and seeds) of the IR text `ir`, exact by default.
    pub fn new(name: &str, ir: &str) -> Case {
        Case {
            name: name.to_owned(),
            ir: ir.to_owned(),
            bound_ir: None,
            weights: HashMap::new(),
            bindings: Vec::new(),
            gens: HashMap::new(),
            tol: Tol::Exact,
            tols: HashMap::new(),
            expect_failure: false,
            shape_error: None,
            threads: 3,
            steps: None,
            reuse: false,
            extra_targets: Vec::new(),
        }
    }

    /// Also runs on `target` where this CPU can (another vector path than the host's and
    /// AVX2: `x86-64-v4` is AVX-512 without VNNI).
    pub fn also_on(mut self, target: &'static str) -> Case {
        self.extra_targets.push(target);
        self
    }

    /// Runs once more with these symbol values.
    pub fn bind(mut self, values: &[(&str, i64)]) -> Case {
        self.bindings
            .push(values.iter().map(|(k, v)| (k.to_string(), *v)).collect());
        self
    }

    /// Runs once per value of the one symbol `name`.
    pub fn sizes(mut self, name: &str, values: &[i64]) -> Case {
        for &v in values {
            self = self.bind(&[(name, v)]);
        }
        self
    }

    /// Draws input `name` with `gen`.
    pub fn input(mut self, name: &str, gen: Gen) -> Case {
        self.gens.insert(name.to_owned(), gen);
        self
    }

    /// The tolerance of every output not given one by [`Case::tol_for`].
    pub fn tol(mut self, tol: Tol) -> Case {
        self.tol = tol;
        self
    }

    /// The tolerance of output `name`.
    pub fn tol_for(mut self, name: &str, tol: Tol) -> Case {
        self.tols.insert(name.to_owned(), tol);
        self
    }

    /// The bound graph of [`Tol::Gemm`]: same inputs, one output per bounded output.
    pub fn bound(mut self, ir: &str) -> Case {
        self.bound_ir = Some(ir.to_owned());
        self
    }

    /// The value of an elided constant `@"name"`.
    pub fn weight(mut self, name: &str, t: Tensor) -> Case {
        self.weights.insert(name.to_owned(), t);
        self
    }

    /// Every run must fail, in the interpreter and in the library (an index out of range).
    pub fn expect_failure(mut self) -> Case {
        self.expect_failure = true;
        self
    }

    /// Every run must fail, in the interpreter and in the library, the library with
    /// `TCC_ERR_SHAPE` (sizes its size checks refuse) and a message holding each of `words`.
    pub fn expect_shape_error(mut self, words: &[&str]) -> Case {
        self.expect_failure = true;
        self.shape_error = Some(words.iter().map(|w| w.to_string()).collect());
        self
    }

    /// The schedule must have exactly `n` steps (kernels), to check what the scheduler fuses.
    pub fn steps(mut self, n: usize) -> Case {
        self.steps = Some(n);
        self
    }

    /// The memory plan must share arena slots: at the first binding, the arena is smaller
    /// than the arena values' sizes summed.
    pub fn reuses_arena(mut self) -> Case {
        self.reuse = true;
        self
    }

    /// Sessions run on this many threads (3 by default, to split work unevenly).
    pub fn threads(mut self, n: i32) -> Case {
        self.threads = n;
        self
    }

    fn parse(&self, ir: &str) -> Graph {
        tcc_ir::text::parse(ir, &|n| self.weights.get(n).cloned())
            .unwrap_or_else(|e| panic!("{}: the IR does not parse: {e}", self.name))
    }

    /// Compiles, runs and compares on every target; panics listing every mismatch.
    pub fn check(self) {
        let graph = self.parse(&self.ir);
        let input_names: Vec<String> = graph
            .inputs()
            .iter()
            .filter_map(|&id| match graph.op(id) {
                tcc_ir::Op::Input { name } => Some(name.clone()),
                _ => None,
            })
            .collect();
        for name in self.gens.keys() {
            assert!(
                input_names.contains(name),
                "{}: `{name}` is not an input",
                self.name
            );
        }
        let bound = self.bound_ir.as_deref().map(|ir| self.parse(ir));
        assert!(
            !self.bindings.is_empty() || graph.input_symbols().is_empty(),
            "{}: the graph has symbols but the case binds none",
            self.name
        );
        let bindings = if self.bindings.is_empty() {
            vec![Vec::new()]
        } else {
            self.bindings.clone()
        };
        // Inputs and the interpreter's results per binding, shared by the targets.
        let mut runs = Vec::new();
        for (b, binding) in bindings.iter().enumerate() {
            let inputs = self.inputs(&graph, binding, b);
            let by_name: HashMap<String, Tensor> = inputs.iter().cloned().collect();
            let expected = tcc_ir::interp::run(&graph, &by_name);
            let bounds = bound.as_ref().map(|g| {
                tcc_ir::interp::run(g, &by_name)
                    .unwrap_or_else(|e| panic!("{}: the bound graph fails: {e}", self.name))
            });
            runs.push((binding, inputs, expected, bounds));
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut failures = Vec::new();
        let targets: Vec<&str> = TARGETS
            .iter()
            .copied()
            .chain(self.extra_targets.iter().copied().filter(|t| runnable(t)))
            .collect();
        for tname in targets {
            let lib = match Library::build(&graph, tname, dir.path()) {
                Ok((lib, compiled)) => {
                    let steps = compiled.steps();
                    if self.reuse {
                        let first = &bindings[0];
                        let env = |s: &str| first.iter().find(|(k, _)| k == s).map(|(_, v)| *v);
                        let report = compiled.plan_report(&env).expect("the plan evaluates");
                        if report.arena_bytes >= report.unshared_bytes {
                            failures.push(format!("[{tname}] no arena slot is shared: {report:?}"));
                        }
                    }
                    if let Some(want) = self.steps {
                        if steps != want {
                            failures.push(format!("[{tname}] {steps} steps, expected {want}"));
                        }
                    }
                    lib
                }
                Err(e) => {
                    failures.push(format!("[{tname}] compile: {e}"));
                    continue;
                }
            };
            let session = lib.session(self.threads);
            for (binding, inputs, expected, bounds) in &runs {
                let at = format!("[{tname}, {binding:?}]");
                let tensors: Vec<&Tensor> = inputs.iter().map(|(_, t)| t).collect();
                let got = session.run(&tensors, graph.outputs().len());
                match (expected, got) {
                    (Err(_), Err(e)) if self.expect_failure => {
                        for w in self.shape_error.iter().flatten() {
                            if !e.starts_with("status 3:") || !e.contains(w.as_str()) {
                                failures.push(format!(
                                    "{at}: expected a shape error (status 3) saying `{w}`, got: {e}"
                                ));
                            }
                        }
                    }
                    (want, got) if self.expect_failure => failures.push(format!(
                        "{at}: expected both runs to fail; the interpreter {}, the library {}",
                        if want.is_ok() { "succeeds" } else { "fails" },
                        if got.is_ok() { "succeeds" } else { "fails" },
                    )),
                    (Err(e), _) => failures.push(format!("{at}: the interpreter fails: {e}")),
                    (Ok(_), Err(e)) => failures.push(format!("{at}: the library fails: {e}")),
                    (Ok(want), Ok(got)) => {
                        for (k, ((oname, w), g)) in want.iter().zip(&got).enumerate() {
                            let tol = self.tols.get(oname).copied().unwrap_or(self.tol);
                            let needs_bound = matches!(tol, Tol::Gemm { .. });
                            let m = bounds.as_ref().filter(|_| needs_bound).map(|b| {
                                b.iter()
                                    .find(|(n, _)| n == oname)
                                    .unwrap_or_else(|| {
                                        panic!("{}: no bound output `{oname}`", self.name)
                                    })
                                    .1
                                    .data()
                                    .to_f64_vec()
                            });
                            let tol = match tol {
                                Tol::Gemm {
                                    k: Len::Sym(sym),
                                    slope,
                                    extra,
                                } => {
                                    let k = binding
                                        .iter()
                                        .find(|(s, _)| s == sym)
                                        .unwrap_or_else(|| {
                                            panic!("{}: `{sym}` is not bound", self.name)
                                        })
                                        .1;
                                    Tol::Gemm {
                                        k: Len::Fixed(k as usize),
                                        slope,
                                        extra,
                                    }
                                }
                                t => t,
                            };
                            if let Some(msg) = compare(w, g, tol, m.as_deref()) {
                                failures.push(format!("{at} output {k} `{oname}`: {msg}"));
                            }
                        }
                    }
                }
            }
        }
        if !failures.is_empty() {
            let shown: Vec<&String> = failures.iter().take(40).collect();
            panic!(
                "{}: {} mismatches:\n{}",
                self.name,
                failures.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }

    /// Seeded random inputs for one binding, in the graph's input order.
    fn inputs(&self, graph: &Graph, binding: &[(String, i64)], b: usize) -> Vec<(String, Tensor)> {
        let env = |s: &str| binding.iter().find(|(k, _)| k == s).map(|(_, v)| *v);
        let mut out = Vec::new();
        for (i, &id) in graph.inputs().iter().enumerate() {
            let name = match graph.op(id) {
                tcc_ir::Op::Input { name } => name.clone(),
                _ => unreachable!("graph inputs are input nodes"),
            };
            let ty = graph.ty(id);
            let shape = ty
                .shape
                .eval(&env)
                .unwrap_or_else(|e| panic!("{}: input `{name}`: {e}", self.name));
            let n: usize = shape.iter().product();
            let gen = self
                .gens
                .get(&name)
                .copied()
                .unwrap_or(Gen::default_for(ty.dtype));
            let mut rng = Rng::new(&format!("{}/{b}/{i}", self.name));
            let data = match gen {
                Gen::Float(lo, hi) => {
                    TensorData::from_f64(ty.dtype, (0..n).map(|_| lo + (hi - lo) * rng.unit()))
                }
                Gen::Int(lo, hi) => TensorData::from_i64(
                    ty.dtype,
                    (0..n).map(|_| lo + (rng.next() % (hi - lo + 1) as u64) as i64),
                ),
                Gen::Bool => TensorData::Bool((0..n).map(|_| rng.next() & 1 == 1).collect()),
            };
            out.push((name, Tensor::new(shape, data).expect("a consistent tensor")));
        }
        out
    }
}

/// Compares one output; `None` if it passes, else a description of the worst elements.
fn compare(want: &Tensor, got: &Tensor, tol: Tol, bound: Option<&[f64]>) -> Option<String> {
    if want.dtype() != got.dtype() || want.shape() != got.shape() {
        return Some(format!(
            "got {} {:?}, want {} {:?}",
            got.dtype(),
            got.shape(),
            want.dtype(),
            want.shape()
        ));
    }
    let float = want.dtype().is_float();
    if !float {
        // Integers and bools: exact, compared as i64 (f64 would round above 2^53).
        let (w, g) = (want.data().to_i64_vec(), got.data().to_i64_vec());
        let bad: Vec<usize> = (0..w.len()).filter(|&i| w[i] != g[i]).collect();
        if bad.is_empty() {
            return None;
        }
        let mut msg = format!("{} of {} elements differ", bad.len(), w.len());
        for &i in bad.iter().take(6) {
            let _ = write!(msg, "; [{i}] got {} want {}", g[i], w[i]);
        }
        return Some(msg);
    }
    let (w, g) = (want.data().to_f64_vec(), got.data().to_f64_vec());
    let ulp = |x: f64| -> f64 {
        match want.dtype() {
            DType::F32 => {
                let x = (x as f32).abs();
                let next = f32::from_bits(x.to_bits() + 1);
                f64::from(next - x)
            }
            _ => {
                let x = x.abs();
                f64::from_bits(x.to_bits() + 1) - x
            }
        }
    };
    let mut bad = Vec::new();
    let mut worst = 0.0f64;
    for i in 0..w.len() {
        let (x, y) = (w[i], g[i]);
        let ok = if matches!(tol, Tol::Exact) {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        } else if x.is_nan() || y.is_nan() {
            x.is_nan() && y.is_nan()
        } else if x.is_infinite() || y.is_infinite() {
            x == y
        } else {
            let allowed = match tol {
                Tol::Exact => 0.0,
                Tol::Ulps { ulps, abs } => (f64::from(ulps) * ulp(x)).max(abs),
                Tol::Gemm { k, slope, extra } => {
                    let Len::Fixed(k) = k else {
                        unreachable!("symbolic lengths are resolved per binding")
                    };
                    let m = bound.expect("Tol::Gemm needs a bound graph")[i];
                    let scale = slope * (k as f64 + 2.0) * 2f64.powi(-24) + extra;
                    scale * m + 2.0 * ulp(x)
                }
            };
            let d = (x - y).abs();
            if allowed > 0.0 {
                worst = worst.max(d / allowed);
            }
            d <= allowed
        };
        if !ok {
            bad.push(i);
        }
    }
    if std::env::var_os("TCC_TEST_VERBOSE").is_some() {
        let diff = w
            .iter()
            .zip(&g)
            .map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() })
            .fold(0.0f64, f64::max);
        eprintln!(
            "  {} {:?}: {} elements, max |difference| {diff:e}, {} bad, first {:?}",
            want.dtype(),
            want.shape(),
            w.len(),
            bad.len(),
            &g[..g.len().min(3)]
        );
    }
    if bad.is_empty() {
        return None;
    }
    let mut msg = format!("{} of {} elements differ", bad.len(), w.len());
    if worst > 0.0 {
        let _ = write!(msg, " (worst {worst:.3}x the tolerance)");
    }
    for &i in bad.iter().take(6) {
        let _ = write!(msg, "; [{i}] got {} want {}", g[i], w[i]);
    }
    Some(msg)
}

/// SplitMix64 seeded by a string: the same inputs on every run and target.
struct Rng(u64);

impl Rng {
    fn new(seed: &str) -> Rng {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in seed.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

type CreateFn = unsafe extern "C" fn(i32, *mut *mut c_void) -> i32;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type RunFn = unsafe extern "C" fn(*mut c_void, *const CTensor, i32, *mut COutput, i32) -> i32;
type ErrorFn = unsafe extern "C" fn(*const c_void) -> *const c_char;

/// A compiled model library, loaded.
pub struct Library {
    _library: libloading::Library,
    create: CreateFn,
    free: FreeFn,
    run: RunFn,
    last_error: ErrorFn,
}

impl Library {
    /// Compiles `graph` for the target named `tag` into `dir/<tag>.so` (prefix `m`) and
    /// loads it; also returns the compilation's summary.
    pub fn build(graph: &Graph, tag: &str, dir: &Path) -> Result<(Library, Compiled), String> {
        Library::build_forms(&[graph], None, tag, dir)
    }

    /// [`Library::build`] of a library holding several forms picked by `dispatch`
    /// (`lower::compile_forms`).
    pub fn build_forms(
        graphs: &[&Graph],
        dispatch: Option<&lower::Dispatch>,
        tag: &str,
        dir: &Path,
    ) -> Result<(Library, Compiled), String> {
        let opts = CompileOptions {
            target: Target::named(tag).map_err(|e| e.to_string())?,
            prefix: "m".into(),
            emit: EmitKind::Object,
        };
        let so = dir.join(format!("{tag}.so"));
        let header = dir.join(format!("{tag}.h"));
        let compiled = lower::compile_forms(graphs, dispatch, &opts).map_err(|e| e.to_string())?;
        lower::link_library(&compiled, "m", &so, &header).map_err(|e| e.to_string())?;
        // SAFETY: the library was just linked from generated code and the tcc runtime.
        let library = unsafe { libloading::Library::new(&so) }.map_err(|e| e.to_string())?;
        // SAFETY: each symbol is the API function of tcc_model.h with this signature.
        unsafe {
            let create = *library
                .get::<CreateFn>(b"m_session_create")
                .map_err(|e| e.to_string())?;
            let free = *library
                .get::<FreeFn>(b"m_session_free")
                .map_err(|e| e.to_string())?;
            let run = *library.get::<RunFn>(b"m_run").map_err(|e| e.to_string())?;
            let last_error = *library
                .get::<ErrorFn>(b"m_last_error")
                .map_err(|e| e.to_string())?;
            Ok((
                Library {
                    _library: library,
                    create,
                    free,
                    run,
                    last_error,
                },
                compiled,
            ))
        }
    }

    /// A session on `threads` threads.
    pub fn session(&self, threads: i32) -> Session<'_> {
        let mut s = std::ptr::null_mut();
        // SAFETY: a writable out-pointer.
        let status = unsafe { (self.create)(threads, &mut s) };
        assert_eq!(status, 0, "session_create failed");
        Session { lib: self, s }
    }
}

/// A session of a [`Library`], freed on drop.
pub struct Session<'a> {
    lib: &'a Library,
    s: *mut c_void,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // SAFETY: a live session, freed once.
        unsafe { (self.lib.free)(self.s) };
    }
}

impl Session<'_> {
    /// Runs on `inputs` (in the model's order) with session-owned outputs.
    pub fn run(&self, inputs: &[&Tensor], n_outputs: usize) -> Result<Vec<Tensor>, String> {
        let dims: Vec<Vec<i64>> = inputs
            .iter()
            .map(|t| t.shape().iter().map(|&d| d as i64).collect())
            .collect();
        let bytes: Vec<Vec<u8>> = inputs.iter().map(|t| t.data().to_le_bytes()).collect();
        // Copies aligned to 64 bytes, as a caller's buffers would be.
        let aligned: Vec<Vec<u128>> = bytes
            .iter()
            .map(|b| {
                let mut v = vec![0u128; b.len().div_ceil(16) + 1];
                // SAFETY: v holds at least b.len() bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(b.as_ptr(), v.as_mut_ptr().cast(), b.len())
                };
                v
            })
            .collect();
        let c_inputs: Vec<CTensor> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| CTensor {
                dtype: dtype_code(t.dtype()),
                rank: t.shape().len() as i32,
                dims: dims[i].as_ptr(),
                data: aligned[i].as_ptr().cast(),
            })
            .collect();
        let mut outputs = vec![COutput::SESSION_OWNED; n_outputs];
        // SAFETY: a live session used by this thread only; the counts match the arrays.
        let status = unsafe {
            (self.lib.run)(
                self.s,
                c_inputs.as_ptr(),
                c_inputs.len() as i32,
                outputs.as_mut_ptr(),
                outputs.len() as i32,
            )
        };
        if status != 0 {
            // SAFETY: last_error returns a NUL-terminated string.
            let msg = unsafe { CStr::from_ptr((self.lib.last_error)(self.s)) };
            return Err(format!("status {status}: {}", msg.to_string_lossy()));
        }
        outputs
            .iter()
            .map(|o| {
                let dtype = (1..=9)
                    .map(dtype_from_code)
                    .find(|d| dtype_code(*d) == o.dtype)
                    .ok_or_else(|| format!("unknown output dtype {}", o.dtype))?;
                let shape: Vec<usize> = o.dims[..o.rank as usize]
                    .iter()
                    .map(|&d| d as usize)
                    .collect();
                let raw = if o.size == 0 {
                    &[][..]
                } else {
                    // SAFETY: a successful run leaves `size` bytes at `data`.
                    unsafe { std::slice::from_raw_parts(o.data as *const u8, o.size as usize) }
                };
                let data = TensorData::from_le_bytes(dtype, raw)
                    .ok_or_else(|| "output bytes do not fit the dtype".to_string())?;
                Tensor::new(shape, data)
            })
            .collect()
    }
}

/// The dtypes in the order of `tcc_dtype`.
fn dtype_from_code(code: i32) -> DType {
    [
        DType::F32,
        DType::F64,
        DType::F16,
        DType::BF16,
        DType::I64,
        DType::I32,
        DType::I8,
        DType::U8,
        DType::Bool,
    ][(code - 1) as usize]
}

/// A seeded random `f32` tensor with elements uniform in `[lo, hi)`, for weights.
pub fn random_f32(shape: &[usize], seed: &str, lo: f64, hi: f64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let data = TensorData::from_f64(DType::F32, (0..n).map(|_| lo + (hi - lo) * rng.unit()));
    Tensor::new(shape.to_vec(), data).expect("a consistent tensor")
}

//! Masked attention, and the quantised GEMM's quantisation, make no subnormal float on the
//! way, on every path this machine runs.
//!
//! Intel cores handle subnormal operands and results in microcode, at a large cost per
//! operation; a key-padding or causal mask puts huge negative numbers into the scores, whose
//! exponentials used to pass through subnormals. The x86 MXCSR register keeps sticky flags
//! for the SSE/AVX arithmetic of the thread: DE (bit 1) when an operand was subnormal, UE
//! (bit 4) when a result was tiny (subnormal, or rounded to zero from below the smallest
//! normal). Each case clears them, runs a compiled attention on one thread (the caller's, so
//! its MXCSR is the one that counts) and fails if either is set.
//!
//! Heavy (LLVM at -O3): `cargo test --release -p tcc-codegen --test subnormals`.

#[path = "support/lowered.rs"]
mod lowered;

use lowered::{random_f32, Library, TARGETS};
use std::arch::asm;
use tcc_ir::{Tensor, TensorData};

/// MXCSR's flags: DE (a subnormal operand) and UE (a tiny result).
const DE_UE: u32 = (1 << 1) | (1 << 4);

fn mxcsr() -> u32 {
    let mut x: u32 = 0;
    // SAFETY: stmxcsr stores the 32-bit MXCSR at a valid, writable address.
    unsafe { asm!("stmxcsr [{}]", in(reg) &mut x, options(nostack)) };
    x
}

fn set_mxcsr(v: u32) {
    // SAFETY: ldmxcsr loads a valid MXCSR value (the current one with flags cleared).
    unsafe { asm!("ldmxcsr [{}]", in(reg) &v, options(nostack)) };
}

/// Scores that fall along each row from 0 to `-span` (q = 1, kt a ramp), so that the
/// exponentials sweep every magnitude down to far below the smallest normal float.
fn ramp(keys: usize, span: f32) -> Tensor {
    let v: Vec<f32> = (0..keys)
        .map(|j| -span * j as f32 / (keys - 1) as f32)
        .collect();
    Tensor::new(vec![1, 1, 1, keys], TensorData::F32(v)).unwrap()
}

/// Runs `ir` (inputs `q`, `kt`, `v` and the others given) on every target and checks the
/// flags after each run, and that the result is finite where the case says.
fn check(name: &str, ir: &str, inputs: &[Tensor], finite: bool) {
    let graph = tcc_ir::text::parse(ir, &|_| None).unwrap_or_else(|e| panic!("{name}: {e}"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    for tag in TARGETS {
        let Ok((lib, _)) = Library::build(&graph, tag, dir.path()) else {
            panic!("{name}: could not compile for {tag}");
        };
        let session = lib.session(1);
        let refs: Vec<&Tensor> = inputs.iter().collect();
        // A first run warms up; the second is the one checked.
        session
            .run(&refs, 1)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        set_mxcsr(mxcsr() & !0x3f);
        let out = session
            .run(&refs, 1)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let flags = mxcsr() & DE_UE;
        set_mxcsr(mxcsr() & !0x3f);
        assert_eq!(
            flags, 0,
            "{name} [{tag}]: a subnormal on the way (MXCSR flags {flags:#x}: 0x2 a subnormal operand, 0x10 a tiny result)"
        );
        if finite {
            let y = out[0].as_slice::<f32>().unwrap();
            assert!(
                y.iter().all(|x| x.is_finite()),
                "{name} [{tag}]: a non-finite output"
            );
        }
    }
}

#[test]
fn masked_attention_rows_make_no_subnormal() {
    let s = 600;
    let (h, d) = (4, 16);
    let q = random_f32(&[1, h, s, d], "q", -1.0, 1.0);
    let kt = random_f32(&[1, h, d, s], "kt", -1.0, 1.0);
    let v = random_f32(&[1, h, s, d], "v", -1.0, 1.0);
    // Key padding: the last 40% of the keys masked, as torch writes it (finfo.min), with -inf
    // (the NaN filter for rows masked whole) and with BERT's -10000.
    let pad = |fill: f32| {
        let m: Vec<f32> = (0..s)
            .map(|j| if j < s * 3 / 5 { 0.0 } else { fill })
            .collect();
        Tensor::new(vec![1, 1, 1, s], TensorData::F32(m)).unwrap()
    };
    let head = format!(
        "graph(%q: f32[1, {h}, {s}, {d}], %kt: f32[1, {h}, {d}, {s}], %v: f32[1, {h}, {s}, {d}], %m: f32[1, 1, 1, {s}]) {{"
    );
    for (fill, what) in [
        (f32::MIN, "finfo.min"),
        (-10000.0, "-10000"),
        (f32::NEG_INFINITY, "-inf"),
    ] {
        let ir = format!(
            "{head}\n  %o = attention<scale=mul(0.25), mask=add, nan_filter=true>(%q, %kt, %v, %m) : f32[1, {h}, {s}, {d}]\n  return %o = %o\n}}"
        );
        check(
            &format!("padding mask {what}"),
            &ir,
            &[q.clone(), kt.clone(), v.clone(), pad(fill)],
            true,
        );
    }
    // Every key masked with -inf: NaN rows, filtered to 0.
    let ir = format!(
        "{head}\n  %o = attention<scale=mul(0.25), mask=add, nan_filter=true>(%q, %kt, %v, %m) : f32[1, {h}, {s}, {d}]\n  return %o = %o\n}}"
    );
    let all = Tensor::new(
        vec![1, 1, 1, s],
        TensorData::F32(vec![f32::NEG_INFINITY; s]),
    )
    .unwrap();
    check(
        "fully masked rows",
        &ir,
        &[q.clone(), kt.clone(), v.clone(), all],
        true,
    );
    // Causal, and a boolean mask.
    let ir = format!(
        "graph(%q: f32[1, {h}, {s}, {d}], %kt: f32[1, {h}, {d}, {s}], %v: f32[1, {h}, {s}, {d}]) {{\n  %o = attention<scale=mul(0.25), mask=none, nan_filter=false, causal=true>(%q, %kt, %v) : f32[1, {h}, {s}, {d}]\n  return %o = %o\n}}"
    );
    check("causal", &ir, &[q.clone(), kt.clone(), v.clone()], true);
    let keep: Vec<bool> = (0..s).map(|j| j % 3 != 0).collect();
    let b = Tensor::new(vec![1, 1, 1, s], TensorData::Bool(keep)).unwrap();
    let ir = format!(
        "graph(%q: f32[1, {h}, {s}, {d}], %kt: f32[1, {h}, {d}, {s}], %v: f32[1, {h}, {s}, {d}], %b: bool[1, 1, 1, {s}]) {{\n  %o = attention<scale=none, mask=bool, nan_filter=true>(%q, %kt, %v, %b) : f32[1, {h}, {s}, {d}]\n  return %o = %o\n}}"
    );
    check("boolean mask", &ir, &[q, kt, v.clone(), b], true);
}

/// Scores spread over hundreds of units (one row from 0 down to -200), with and without the
/// normalisation before `P · V` (the NaN filter keeps it): without attention's floor on
/// `x - max` (`2^-60`), exponentials near the smallest normal, normalised, are subnormal
/// (checked: with the floor at -87 this test fails).
#[test]
fn spread_scores_make_no_subnormal_product() {
    let s = 300;
    let d = 8;
    let q = Tensor::new(vec![1, 1, 1, 1], TensorData::F32(vec![1.0])).unwrap();
    let v = random_f32(&[1, 1, s, d], "v", -1.0, 1.0);
    for nan_filter in [false, true] {
        let ir = format!(
            "graph(%q: f32[1, 1, 1, 1], %kt: f32[1, 1, 1, {s}], %v: f32[1, 1, {s}, {d}]) {{\n  %o = attention<scale=none, mask=none, nan_filter={nan_filter}>(%q, %kt, %v) : f32[1, 1, 1, {d}]\n  return %o = %o\n}}"
        );
        check(
            &format!("spread scores, nan_filter={nan_filter}"),
            &ir,
            &[q.clone(), ramp(s, 200.0), v.clone()],
            true,
        );
    }
}

/// The quantised GEMM's quantisation of `A` makes no subnormal quotient: elements of `A` that
/// are tiny normal numbers (2e-38 to 1e-37, among zeros and ordinary values), divided by a
/// scale of 4, would be subnormal; the kernel replaces every element below half the scale by 0
/// first (it rounds to 0 either way). Both GELUs in the epilogue, padding columns (50 of 3
/// panels of 48 or 16) and rows (13 of tiles of 8 or 4), both arithmetics. (Checked: without
/// the replacement this test fails.)
#[test]
fn quantised_gemm_makes_no_subnormal() {
    let (m, k, n) = (13, 40, 50);
    let a: Vec<f32> = (0..m * k)
        .map(|i| match i % 5 {
            0 => 2e-38 * (1 + i % 7) as f32,
            1 => -1e-37,
            2 => 0.0,
            3 => (i % 11) as f32 * 0.37 - 2.0,
            _ => 3e-38,
        })
        .collect();
    let a = Tensor::new(vec![m, k], TensorData::F32(a)).unwrap();
    let sa = Tensor::new(vec![], TensorData::F32(vec![4.0])).unwrap();
    let za = Tensor::new(vec![], TensorData::U8(vec![128])).unwrap();
    let w: Vec<String> = (0..k * n)
        .map(|i| ((i * 37 % 255) as i64 - 127).to_string())
        .collect();
    let sw: Vec<String> = (0..n)
        .map(|j| format!("{}", 0.01 + 0.001 * j as f32))
        .collect();
    for act in ["gelu_erf", "gelu_tanh"] {
        for saturate in [false, true] {
            let ir = format!(
                "graph(%a: f32[{m}, {k}], %sa: f32[], %za: u8[]) {{\n  %w = const [{}] : i8[{k}, {n}]\n  %sw = const [{}] : f32[{n}]\n  %y = qgemm<activation={act}, bias=false, saturate_pairs={saturate}>(%a, %sa, %za, %w, %sw) : f32[{m}, {n}]\n  return %y = %y\n}}",
                w.join(", "),
                sw.join(", ")
            );
            check(
                &format!("qgemm {act}, saturate_pairs={saturate}"),
                &ir,
                &[a.clone(), sa.clone(), za.clone()],
                true,
            );
        }
    }
}

/// The check itself catches a subnormal: an elementwise product of two small normals.
#[test]
fn the_check_sees_a_subnormal() {
    let ir = "graph(%x: f32[4], %y: f32[4]) {\n  %o = mul(%x, %y) : f32[4]\n  return %o = %o\n}";
    let x = Tensor::new(vec![4], TensorData::F32(vec![1e-20; 4])).unwrap();
    let graph = tcc_ir::text::parse(ir, &|_| None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (lib, _) = Library::build(&graph, "host", dir.path()).unwrap();
    let session = lib.session(1);
    set_mxcsr(mxcsr() & !0x3f);
    session.run(&[&x, &x], 1).unwrap();
    let flags = mxcsr() & DE_UE;
    set_mxcsr(mxcsr() & !0x3f);
    assert_ne!(
        flags, 0,
        "1e-20 * 1e-20 underflows, and MXCSR should say so"
    );
}

//! Helpers shared by the integration tests: building kernels into shared libraries, loading
//! them, and reading the host's CPU flags from /proc/cpuinfo as an independent witness.

#![allow(dead_code)] // Each test file uses a different subset of the helpers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use tcc_codegen::emit::{emit, emit_to_file, link_shared, EmitKind};
use tcc_codegen::kernels::elementwise::emit_mul_add_with_lanes;
use tcc_codegen::{Context, Target};

/// The element counts every kernel is checked at: empty, below, at and above the vector widths.
pub const SIZES: [i64; 8] = [0, 1, 7, 8, 17, 33, 127, 1000];

/// A value the kernel must never write: elements past `n` of the output keep it.
pub const SENTINEL: f32 = -12345.5;

/// The CPU flags the kernel reports in /proc/cpuinfo (the first processor's `flags` line).
pub fn cpuinfo_flags() -> BTreeSet<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo is readable");
    let line = text
        .lines()
        .find(|line| line.starts_with("flags"))
        .expect("/proc/cpuinfo has a flags line");
    let (_, flags) = line.split_once(':').expect("the flags line has a colon");
    flags.split_whitespace().map(str::to_owned).collect()
}

/// Whether this machine can run AVX-512F code, by /proc/cpuinfo.
pub fn host_has_avx512f() -> bool {
    cpuinfo_flags().contains("avx512f")
}

/// Emits the mul-add kernel `name` for `target` (with `lanes`, or the target's width) as `kind`.
pub fn emit_kernel(target: &Target, name: &str, lanes: Option<u32>, kind: EmitKind) -> Vec<u8> {
    let context = Context::create();
    let module = context.create_module("test_kernels");
    let lanes = lanes.unwrap_or(target.f32_lanes());
    emit_mul_add_with_lanes(&module, target, name, lanes).expect("the kernel builds");
    emit(&module, target, kind).expect("the module emits")
}

/// Emits the kernel as text (`asm` or `llvm`).
pub fn emit_kernel_text(target: &Target, name: &str, kind: EmitKind) -> String {
    String::from_utf8(emit_kernel(target, name, None, kind)).expect("emitted text is UTF-8")
}

/// Builds the mul-add kernel `name` into `dir/lib<name>.so` and returns its path.
pub fn build_kernel_so(target: &Target, dir: &Path, name: &str, lanes: Option<u32>) -> PathBuf {
    let context = Context::create();
    let module = context.create_module(name);
    let lanes = lanes.unwrap_or(target.f32_lanes());
    emit_mul_add_with_lanes(&module, target, name, lanes).expect("the kernel builds");
    let object = dir.join(format!("{name}.o"));
    emit_to_file(&module, target, EmitKind::Object, &object).expect("the object is written");
    let so = dir.join(format!("lib{name}.so"));
    link_shared(&[&object], &so).expect("the object links");
    so
}

/// The signature of the mul-add kernel.
pub type MulAddFn = unsafe extern "C" fn(*const f32, *const f32, *mut f32, i64);

/// Deterministic, varied inputs: signs, magnitudes and fractions that make rounding visible.
pub fn inputs(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let unit = (state >> 8) as f32 / (1u32 << 24) as f32; // In [0, 1).
            (unit - 0.5) * 20.0 + 1.0 / 3.0
        })
        .collect()
}

/// The kernel's contract: fused when the target has FMA, else two roundings.
pub fn reference(a: &[f32], b: &[f32], fused: bool) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| if fused { x.mul_add(y, x) } else { x * y + x })
        .collect()
}

/// Loads `so`, runs its kernel `name` at every size in [`SIZES`] and compares bit for bit with
/// [`reference`]; also checks that nothing past `n` is written, that unaligned buffers work,
/// that `out` may alias `a`, and that a negative `n` writes nothing.
pub fn check_mul_add(so: &Path, name: &str, fused: bool) {
    // SAFETY: the library was just built by this test from a kernel with no initialisers.
    let library = unsafe { libloading::Library::new(so) }.expect("the .so loads");
    // SAFETY: the symbol is the kernel emitted with exactly this signature.
    let kernel: libloading::Symbol<MulAddFn> =
        unsafe { library.get(name.as_bytes()) }.expect("the kernel symbol resolves");

    for n in SIZES {
        let len = n as usize;
        // Offset every buffer by one element so that none is vector-aligned.
        let a_buf: Vec<f32> = [0.0].into_iter().chain(inputs(len, 1)).collect();
        let b_buf: Vec<f32> = [0.0].into_iter().chain(inputs(len, 2)).collect();
        let (a, b) = (&a_buf[1..], &b_buf[1..]);
        let mut out_buf = vec![SENTINEL; len + 1 + 64];
        let expected = reference(a, b, fused);

        // SAFETY: a and b hold n elements, out holds n + 64 after its offset.
        unsafe { kernel(a.as_ptr(), b.as_ptr(), out_buf[1..].as_mut_ptr(), n) };

        let out = &out_buf[1..=len];
        for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{name}, n = {n}, element {i}: got {got}, want {want} (a = {}, b = {})",
                a[i],
                b[i]
            );
        }
        assert_eq!(out_buf[0], SENTINEL, "{name}, n = {n}: wrote before out");
        assert!(
            out_buf[len + 1..].iter().all(|&x| x == SENTINEL),
            "{name}, n = {n}: wrote past out[n - 1]"
        );

        // In place: out is a.
        let mut in_place = a.to_vec();
        // SAFETY: both buffers hold n elements; the kernel allows out == a.
        unsafe { kernel(in_place.as_ptr(), b.as_ptr(), in_place.as_mut_ptr(), n) };
        let same = in_place
            .iter()
            .zip(&expected)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name}, n = {n}: in-place result differs");
    }

    let a = inputs(16, 3);
    let mut out = vec![SENTINEL; 16];
    // SAFETY: a negative n must not touch the buffers.
    unsafe { kernel(a.as_ptr(), a.as_ptr(), out.as_mut_ptr(), -5) };
    assert!(
        out.iter().all(|&x| x == SENTINEL),
        "{name}: a negative n wrote"
    );
}

/// The dynamic symbols `so` defines, by `nm -D --defined-only`.
pub fn exported_symbols(so: &Path) -> Vec<String> {
    let output = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(so)
        .output()
        .expect("nm runs (binutils is installed)");
    assert!(
        output.status.success(),
        "nm failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _address = fields.next()?;
            let kind = fields.next()?;
            let name = fields.next()?;
            (kind == "T").then(|| name.to_owned())
        })
        .collect()
}

/// The lines of an assembly listing that are instructions (not labels, directives or comments).
pub fn instructions(asm: &str) -> Vec<&str> {
    asm.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with(['.', '#']) && !line.ends_with(':'))
        .collect()
}

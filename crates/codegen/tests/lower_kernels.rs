//! Every lowered kernel against the interpreter, on the host's widest vector path and on AVX2.
//!
//! Each test is one [`Case`]: IR text with symbolic dims, compiled once per target by
//! `lower::compile` into a model library, then run through the C API at a battery of sizes
//! (1, 7, 17, 33, 127 and larger) on seeded random inputs and compared, output by output, with
//! `tcc_ir::interp::run`. Several ops share one module where that keeps coverage, since LLVM's
//! compile time dominates. The tolerance of each family is stated and justified where it is
//! set.
//!
//! Heavy (LLVM at -O3, two targets per case): `cargo test --release -p tcc-codegen --test
//! lower_kernels`.

#[path = "support/lowered.rs"]
mod lowered;

use lowered::{random_f32, Case, Gen, Len, Library, Tol};
use tcc_ir::{Tensor, TensorData};

/// The sizes a symbolic axis runs at: below, at and above the vector widths and the GEMM tiles.
const SIZES: [i64; 7] = [1, 7, 17, 33, 127, 300, 1031];

/// Transcendental functions: the kernel calls the C library in `f64` and rounds once, as the
/// interpreter does, but the interpreter's `erf` is the `libm` crate's (a port of musl) while
/// the kernel's is glibc's; the two differ by at most an ulp of `f64`, which can flip the
/// rounding to `f32` by one ulp. Chained through another op the ulp can grow by that op's
/// condition number, so two ulps (and a tiny absolute floor for results near zero).
const LIBM: Tol = Tol::Ulps {
    ulps: 2,
    abs: 1e-30,
};

#[test]
fn fused_arithmetic_broadcasts_exactly() {
    // `+ - * /`, min, max, neg, abs, relu, sign, floor, ceil, round, sqrt and reciprocal round
    // once per op in the element type, as the interpreter does (f64 then one rounding gives
    // the same correctly rounded f32): exact. Operands broadcast over ranks 0 to 4, size-1
    // axes, a scalar input and scalar constants.
    Case::new(
        "fused_arithmetic",
        r#"
graph(%a: f32[n, 3, 7, 17], %b: f32[17], %c: f32[n, 1, 1, 17], %d: f32[3, 7, 1], %s: f32[], %e: f32[n, 3, 7, 17]) {
  %half = const [0.5] : f32[]
  %t0 = add(%a, %b) : f32[n, 3, 7, 17]
  %t1 = mul(%t0, %c) : f32[n, 3, 7, 17]
  %t2 = sub(%t1, %d) : f32[n, 3, 7, 17]
  %t3 = div(%t2, %s) : f32[n, 3, 7, 17]
  %t4 = mul(%t3, %half) : f32[n, 3, 7, 17]
  %t5 = max(%t4, %e) : f32[n, 3, 7, 17]
  %t6 = min(%t5, %b) : f32[n, 3, 7, 17]
  %u0 = neg(%t6) : f32[n, 3, 7, 17]
  %u1 = abs(%t2) : f32[n, 3, 7, 17]
  %u2 = sqrt(%u1) : f32[n, 3, 7, 17]
  %u3 = reciprocal(%c) : f32[n, 1, 1, 17]
  %u4 = floor(%t1) : f32[n, 3, 7, 17]
  %u5 = ceil(%t1) : f32[n, 3, 7, 17]
  %u6 = round(%t1) : f32[n, 3, 7, 17]
  %u7 = sign(%d) : f32[3, 7, 1]
  %u8 = relu(%t2) : f32[n, 3, 7, 17]
  %u9 = add(%u8, %u7) : f32[n, 3, 7, 17]
  %v0 = mod(%a, %d) : f32[n, 3, 7, 17]
  %v1 = fmod(%a, %d) : f32[n, 3, 7, 17]
  return %y0 = %u0
  return %y1 = %u2
  return %y2 = %u3
  return %y3 = %u4
  return %y4 = %u5
  return %y5 = %u6
  return %y6 = %u9
  return %y7 = %v0
  return %y8 = %v1
}
"#,
    )
    .sizes("n", &[1, 2, 5, 17, 127])
    .input("s", Gen::Float(0.25, 2.0))
    .check();
}

#[test]
fn fused_transcendentals() {
    Case::new(
        "fused_transcendentals",
        r#"
graph(%x: f32[n, 17], %p: f32[n, 17], %w: f64[n]) {
  %one = const [1.0] : f32[]
  %e = exp(%x) : f32[n, 17]
  %ax = abs(%x) : f32[n, 17]
  %l0 = add(%ax, %one) : f32[n, 17]
  %l = log(%l0) : f32[n, 17]
  %t = tanh(%x) : f32[n, 17]
  %s = sigmoid(%x) : f32[n, 17]
  %er = erf(%x) : f32[n, 17]
  %si = sin(%x) : f32[n, 17]
  %co = cos(%x) : f32[n, 17]
  %at = atan(%x) : f32[n, 17]
  %sh = sinh(%x) : f32[n, 17]
  %as = asinh(%x) : f32[n, 17]
  %pw = pow(%p, %x) : f32[n, 17]
  %we = exp(%w) : f64[n]
  %wt = tanh(%w) : f64[n]
  return %exp = %e
  return %log = %l
  return %tanh = %t
  return %sigmoid = %s
  return %erf = %er
  return %sin = %si
  return %cos = %co
  return %atan = %at
  return %sinh = %sh
  return %asinh = %as
  return %pow = %pw
  return %exp64 = %we
  return %tanh64 = %wt
}
"#,
    )
    .sizes("n", &[1, 7, 33])
    .input("p", Gen::Float(0.1, 4.0))
    .tol(LIBM)
    .check();
}

#[test]
fn fused_integers_bools_comparisons_where_and_casts() {
    // Integer ops wrap to the element type after each op and bools are exact: no rounding
    // anywhere, so exact. Divisors are drawn without zero (`dv` in 1..=9, negated for `dn`).
    Case::new(
        "fused_integers",
        r#"
graph(%a: i64[n, 5], %dv: i64[5], %c: i32[n, 5], %d: i32[n, 1], %p: i8[n, 5], %q: u8[n, 5], %m: bool[n, 5], %k: bool[5], %x: f32[n, 5], %z: f32[n, 5], %e: i64[n, 5]) {
  %dn = neg(%dv) : i64[5]
  %a0 = add(%a, %dv) : i64[n, 5]
  %a1 = mul(%a0, %a) : i64[n, 5]
  %a2 = div(%a1, %dn) : i64[n, 5]
  %a3 = mod(%a1, %dn) : i64[n, 5]
  %a4 = fmod(%a1, %dn) : i64[n, 5]
  %a5 = min(%a2, %a3) : i64[n, 5]
  %a6 = max(%a5, %a4) : i64[n, 5]
  %a7 = sign(%a6) : i64[n, 5]
  %a8 = abs(%a1) : i64[n, 5]
  %a9 = relu(%a2) : i64[n, 5]
  %b0 = add(%a8, %a9) : i64[n, 5]
  %b1 = sub(%b0, %a7) : i64[n, 5]
  %c0 = mul(%c, %c) : i32[n, 5]
  %c1 = add(%c0, %d) : i32[n, 5]
  %p0 = mul(%p, %p) : i8[n, 5]
  %p1 = neg(%p0) : i8[n, 5]
  %q0 = sub(%q, %q) : u8[n, 5]
  %q1 = mul(%q, %q) : u8[n, 5]
  %q2 = sub(%q0, %q1) : u8[n, 5]
  %lt = less(%x, %z) : bool[n, 5]
  %ge = greater_equal(%a, %dv) : bool[n, 5]
  %eq = equal(%c, %d) : bool[n, 5]
  %l0 = and(%lt, %m) : bool[n, 5]
  %l1 = or(%l0, %k) : bool[n, 5]
  %l2 = xor(%l1, %ge) : bool[n, 5]
  %l3 = not(%l2) : bool[n, 5]
  %l4 = or(%l3, %eq) : bool[n, 5]
  %w0 = where(%k, %x, %z) : f32[n, 5]
  %w1 = where(%l4, %a, %e) : i64[n, 5]
  %w2 = where(%m, %x, %w0) : f32[n, 5]
  %pe = const [2] : i64[]
  %pw = pow(%a, %pe) : i64[n, 5]
  return %y_b1 = %b1
  return %y_c1 = %c1
  return %y_p1 = %p1
  return %y_q2 = %q2
  return %y_l4 = %l4
  return %y_w1 = %w1
  return %y_w2 = %w2
  return %y_pw = %pw
}
"#,
    )
    .sizes("n", &[1, 7, 33, 300])
    .input("a", Gen::Int(-1000, 1000))
    .input("dv", Gen::Int(1, 9))
    .input("c", Gen::Int(-2_000_000_000, 2_000_000_000))
    .input("d", Gen::Int(-2_000_000_000, 2_000_000_000))
    .input("p", Gen::Int(-128, 127))
    .input("q", Gen::Int(0, 255))
    .input("e", Gen::Int(-3, 3))
    .input("x", Gen::Float(-2.0, 2.0))
    .input("z", Gen::Float(-2.0, 2.0))
    .check();
}

#[test]
fn casts_between_every_kind_of_dtype() {
    // Casts are exact functions of their operand: float to int truncates toward zero and
    // saturates (then wraps to narrower types), int to float rounds once; exact.
    Case::new(
        "casts",
        r#"
graph(%x: f32[n, 9], %i: i64[n, 9], %b: bool[n, 9], %h: f64[n, 9], %u: u8[n, 9]) {
  %x0 = cast<to=i32>(%x) : i32[n, 9]
  %x1 = cast<to=i8>(%x) : i8[n, 9]
  %x2 = cast<to=u8>(%x) : u8[n, 9]
  %x3 = cast<to=i64>(%x) : i64[n, 9]
  %x4 = cast<to=bool>(%x) : bool[n, 9]
  %x5 = cast<to=f64>(%x) : f64[n, 9]
  %i0 = cast<to=f32>(%i) : f32[n, 9]
  %i1 = cast<to=i8>(%i) : i8[n, 9]
  %i2 = cast<to=bool>(%i) : bool[n, 9]
  %b0 = cast<to=f32>(%b) : f32[n, 9]
  %b1 = cast<to=i64>(%b) : i64[n, 9]
  %h0 = cast<to=f32>(%h) : f32[n, 9]
  %h1 = cast<to=i32>(%h) : i32[n, 9]
  %u0 = cast<to=i8>(%u) : i8[n, 9]
  %u1 = cast<to=f32>(%u) : f32[n, 9]
  %s0 = add(%x0, %x0) : i32[n, 9]
  return %y0 = %s0
  return %y1 = %x1
  return %y2 = %x2
  return %y3 = %x3
  return %y4 = %x4
  return %y5 = %x5
  return %y6 = %i0
  return %y7 = %i1
  return %y8 = %i2
  return %y9 = %b0
  return %y10 = %b1
  return %y11 = %h0
  return %y12 = %h1
  return %y13 = %u0
  return %y14 = %u1
}
"#,
    )
    .sizes("n", &[1, 17, 127])
    .input("x", Gen::Float(-400.0, 400.0))
    .input("h", Gen::Float(-1e10, 1e10))
    .input("i", Gen::Int(-100_000_000_000, 100_000_000_000))
    .input("u", Gen::Int(0, 255))
    .check();
}

#[test]
fn pow_with_an_exponent_of_another_dtype() {
    // `pow` takes its exponent in any numeric dtype; a float result rounds once from f64
    // (LIBM), an integer to a non-negative integer power is exact and wraps (checked exactly:
    // LIBM's tolerance is in ulps of the result, which for integers is bit-exactness).
    Case::new(
        "pow_mixed",
        r#"
graph(%x: f32[n, 3], %e: i64[n, 3], %f: f32[3], %c: i32[n, 3], %g: i64[n, 3]) {
  %p0 = pow(%x, %e) : f32[n, 3]
  %p1 = pow(%e, %f) : i64[n, 3]
  %p2 = pow(%c, %g) : i32[n, 3]
  return %y0 = %p0
  return %y1 = %p1
  return %y2 = %p2
}
"#,
    )
    .sizes("n", &[1, 7, 33])
    .input("c", Gen::Int(-50, 50))
    .input("g", Gen::Int(-2, 40))
    .input("x", Gen::Float(0.5, 2.0))
    .input("e", Gen::Int(0, 4))
    .input("f", Gen::Float(0.0, 2.0))
    .tol(LIBM)
    .check();
}

/// One GEMM of [`gemm_const_b_with_epilogues`]: `act(a_k · w_k_n + bias)`.
struct ConstGemm {
    k: usize,
    n: usize,
    bias: bool,
    /// `none`, `relu`, `gelu_a` (`(x * 0.5) * (1 + erf(x / sqrt 2))`) or `gelu_b`
    /// (`(x * (erf(x * 1/sqrt 2) + 1)) * 0.5`).
    act: &'static str,
}

#[test]
fn gemm_const_b_with_epilogues() {
    // A MatMul by a constant f32 B is the packed-B GEMM; without the optimiser the bias Add
    // and the Relu or GELU after it are kernels of their own (checked: one step per op; the
    // epilogues are `fused_op_gemm_const_b_every_activation_with_and_without_bias`). The GEMM sums k
    // products in f32 with FMA in its own order, the interpreter in order of k without FMA:
    // each result has at most (k + 2) roundings of relative size 2^-24 on partial sums bounded
    // by Σ|a·b| + |bias| (the bound graph), so |got - want| <= (k + 2) 2^-24 M. Relu is
    // 1-Lipschitz. GELU's slope is at most 1.13, and the GEMM's vector erf is within 3e-7 of
    // the true one, which moves 0.5 x (1 + erf) by at most 1.5e-7 |x| <= 1.5e-7 M; the
    // interpreter's own roundings of 0.5 x, erf and 1 + erf add about 3 2^-24 M: 2e-7 M in all.
    let gemms = [
        ConstGemm {
            k: 1,
            n: 1,
            bias: false,
            act: "none",
        },
        ConstGemm {
            k: 1,
            n: 300,
            bias: true,
            act: "none",
        },
        ConstGemm {
            k: 7,
            n: 17,
            bias: true,
            act: "relu",
        },
        ConstGemm {
            k: 17,
            n: 7,
            bias: false,
            act: "gelu_a",
        },
        ConstGemm {
            k: 33,
            n: 127,
            bias: true,
            act: "gelu_b",
        },
        ConstGemm {
            k: 127,
            n: 33,
            bias: false,
            act: "relu",
        },
        ConstGemm {
            k: 300,
            n: 300,
            bias: true,
            act: "gelu_a",
        },
        ConstGemm {
            k: 300,
            n: 1,
            bias: false,
            act: "none",
        },
        ConstGemm {
            k: 17,
            n: 33,
            bias: true,
            act: "none",
        },
        // Enough panels that large steps split by columns over the session's 3 threads: 768
        // columns are 24 panels of 32 (48 of 16), 96 are 3 (6).
        ConstGemm {
            k: 33,
            n: 768,
            bias: true,
            act: "gelu_b",
        },
        ConstGemm {
            k: 300,
            n: 96,
            bias: false,
            act: "relu",
        },
        ConstGemm {
            k: 33,
            n: 65,
            bias: true,
            act: "gelu_c",
        },
        ConstGemm {
            k: 17,
            n: 70,
            bias: true,
            act: "tanh",
        },
    ];
    let ks = [1, 7, 17, 33, 127, 300];
    let mut inputs: Vec<String> = ks.iter().map(|k| format!("%a{k}: f32[m, {k}]")).collect();
    inputs.push("%ab: f32[b, m, 33]".into());
    let header = format!("graph({}) {{", inputs.join(", "));
    let mut ir = vec![
        header.clone(),
        "  %half = const [0.5] : f32[]".into(),
        "  %one = const [1.0] : f32[]".into(),
        "  %sqrt2 = const [1.4142135] : f32[]".into(),
        "  %rsqrt2 = const [0.70710677] : f32[]".into(),
        "  %three = const [3.0] : f32[]".into(),
        "  %kcube = const [0.044715] : f32[]".into(),
        "  %sqrt2pi = const [0.7978846] : f32[]".into(),
    ];
    let mut bound = vec![
        header,
        "  %one = const [1.0] : f32[]".into(),
        "  %two = const [2.0] : f32[]".into(),
        "  %kcube = const [0.044715] : f32[]".into(),
    ];
    let mut returns = Vec::new();
    let mut bound_returns = Vec::new();
    let mut weights = Vec::new();
    let mut tols = Vec::new();
    for (g, gemm) in gemms.iter().enumerate() {
        let (k, n) = (gemm.k, gemm.n);
        let ty = format!("f32[m, {n}]");
        let w = format!("w{g}");
        weights.push((w.clone(), lowered::random_f32(&[k, n], &w, -1.0, 1.0)));
        ir.push(format!("  %{w} = const @\"{w}\" : f32[{k}, {n}]"));
        ir.push(format!("  %h{g} = matmul(%a{k}, %{w}) : {ty}"));
        bound.push(format!("  %{w} = const @\"{w}\" : f32[{k}, {n}]"));
        bound.push(format!("  %aa{g} = abs(%a{k}) : f32[m, {k}]"));
        bound.push(format!("  %aw{g} = abs(%{w}) : f32[{k}, {n}]"));
        bound.push(format!("  %m{g} = matmul(%aa{g}, %aw{g}) : {ty}"));
        let mut x = format!("%h{g}");
        let mut m = format!("%m{g}");
        if gemm.bias {
            let b = format!("bias{g}");
            let shape = if g % 2 == 0 {
                format!("[{n}]")
            } else {
                format!("[1, {n}]")
            };
            let bt = lowered::random_f32(&[n], &b, -1.0, 1.0);
            let bt = if g % 2 == 0 {
                bt
            } else {
                bt.reshape(vec![1, n]).unwrap()
            };
            weights.push((b.clone(), bt));
            ir.push(format!("  %{b} = const @\"{b}\" : f32{shape}"));
            ir.push(format!("  %c{g} = add({x}, %{b}) : {ty}"));
            bound.push(format!("  %{b} = const @\"{b}\" : f32{shape}"));
            bound.push(format!("  %ab{g} = abs(%{b}) : f32{shape}"));
            bound.push(format!("  %mb{g} = add({m}, %ab{g}) : {ty}"));
            x = format!("%c{g}");
            m = format!("%mb{g}");
        }
        let (mut slope, mut extra) = (1.0, 0.0);
        match gemm.act {
            "relu" => {
                ir.push(format!("  %r{g} = relu({x}) : {ty}"));
                x = format!("%r{g}");
            }
            "gelu_a" => {
                ir.push(format!("  %s{g} = div({x}, %sqrt2) : {ty}"));
                ir.push(format!("  %e{g} = erf(%s{g}) : {ty}"));
                ir.push(format!("  %p{g} = add(%e{g}, %one) : {ty}"));
                ir.push(format!("  %x{g} = mul({x}, %half) : {ty}"));
                ir.push(format!("  %g{g} = mul(%x{g}, %p{g}) : {ty}"));
                x = format!("%g{g}");
                (slope, extra) = (1.13, 2e-7);
            }
            "gelu_b" => {
                ir.push(format!("  %s{g} = mul({x}, %rsqrt2) : {ty}"));
                ir.push(format!("  %e{g} = erf(%s{g}) : {ty}"));
                ir.push(format!("  %p{g} = add(%one, %e{g}) : {ty}"));
                ir.push(format!("  %x{g} = mul({x}, %p{g}) : {ty}"));
                ir.push(format!("  %g{g} = mul(%x{g}, %half) : {ty}"));
                x = format!("%g{g}");
                (slope, extra) = (1.13, 2e-7);
            }
            "gelu_c" => {
                // torch's dynamo exporter: x * (0.5 * (1 + erf(x / sqrt 2))).
                ir.push(format!("  %s{g} = div({x}, %sqrt2) : {ty}"));
                ir.push(format!("  %e{g} = erf(%s{g}) : {ty}"));
                ir.push(format!("  %p{g} = add(%e{g}, %one) : {ty}"));
                ir.push(format!("  %h{g}h = mul(%half, %p{g}) : {ty}"));
                ir.push(format!("  %g{g} = mul({x}, %h{g}h) : {ty}"));
                x = format!("%g{g}");
                (slope, extra) = (1.13, 2e-7);
            }
            "tanh" => {
                // GPT-2's gelu_new: (x * 0.5) * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
                // The epilogue computes x / (1 + exp(-2u)), within (3e-7 + 2.4e-7 |2u|) of
                // the true value relatively (crates/codegen/tests/gemm.rs), |2u| <= 1.6 (|x| +
                // 0.045 |x|^3); the interpreter's 1 + tanh rounds near 1 (6e-8 absolute, times
                // 0.5 |x|). With |x| <= M, the bound graph's B = M (1 + 2 (M + 0.045 M^3))
                // and 4e-7 B cover both.
                ir.push(format!("  %c{g}c = pow({x}, %three) : {ty}"));
                ir.push(format!("  %k{g}k = mul(%c{g}c, %kcube) : {ty}"));
                ir.push(format!("  %i{g}i = add({x}, %k{g}k) : {ty}"));
                ir.push(format!("  %u{g}u = mul(%i{g}i, %sqrt2pi) : {ty}"));
                ir.push(format!("  %t{g}t = tanh(%u{g}u) : {ty}"));
                ir.push(format!("  %p{g} = add(%t{g}t, %one) : {ty}"));
                ir.push(format!("  %x{g} = mul({x}, %half) : {ty}"));
                ir.push(format!("  %g{g} = mul(%x{g}, %p{g}) : {ty}"));
                x = format!("%g{g}");
                bound.push(format!("  %b{g}3 = mul({m}, {m}) : {ty}"));
                bound.push(format!("  %b{g}4 = mul(%b{g}3, {m}) : {ty}"));
                bound.push(format!("  %b{g}5 = mul(%b{g}4, %kcube) : {ty}"));
                bound.push(format!("  %b{g}6 = add(%b{g}5, {m}) : {ty}"));
                bound.push(format!("  %b{g}7 = mul(%b{g}6, %two) : {ty}"));
                bound.push(format!("  %b{g}8 = add(%b{g}7, %one) : {ty}"));
                bound.push(format!("  %b{g}9 = mul(%b{g}8, {m}) : {ty}"));
                m = format!("%b{g}9");
                (slope, extra) = (1.13, 4e-7);
            }
            _ => {}
        }
        returns.push(format!("  return %y{g} = {x}"));
        bound_returns.push(format!("  return %y{g} = {m}"));
        tols.push((
            format!("y{g}"),
            Tol::Gemm {
                k: Len::Fixed(k),
                slope,
                extra,
            },
        ));
    }
    // A batched A (rank 3) by the constant of GEMM 4.
    ir.push("  %hb = matmul(%ab, %w4) : f32[b, m, 127]".into());
    returns.push("  return %yb = %hb".into());
    bound.push("  %aab = abs(%ab) : f32[b, m, 33]".into());
    bound.push("  %mbb = matmul(%aab, %aw4) : f32[b, m, 127]".into());
    bound_returns.push("  return %yb = %mbb".into());
    tols.push(("yb".into(), Tol::gemm(Len::Fixed(33))));
    ir.extend(returns);
    ir.push("}".into());
    bound.extend(bound_returns);
    bound.push("}".into());
    // One step per op line: every line of the graph but constants and views.
    let steps = ir
        .iter()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with('%') && !l.contains("= const") && !l.contains("= reshape")
        })
        .count();
    let mut case = Case::new("gemm_const_b", &ir.join("\n"))
        .bound(&bound.join("\n"))
        .steps(steps);
    for (name, t) in weights {
        case = case.weight(&name, t);
    }
    for (name, tol) in tols {
        case = case.tol_for(&name, tol);
    }
    for m in SIZES {
        case = case.bind(&[("m", m), ("b", 1 + m % 3)]);
    }
    case.check();
}

#[test]
fn matmul_of_runtime_operands_at_every_size() {
    // Both operands known at run time: the runtime-B GEMM packs B per call (GEMM tolerance,
    // see gemm_const_b_with_epilogues). Every m, n, k in {1, 7, 17, 33, 127, 300}, also with
    // A read through a Transpose node. f64 and i32 products take the scalar loop, which sums
    // in the interpreter's order without FMA: exact.
    let graph_inputs = "%a: f32[m, k], %b: f32[k, n], %at: f32[k, m], %d: f64[m, k], \
                        %e: f64[k, n], %i: i32[m, k], %j: i32[k, n]";
    let mut case = Case::new(
        "matmul_runtime_b",
        &format!(
            r#"
graph({graph_inputs}) {{
  %y = matmul(%a, %b) : f32[m, n]
  %ta = transpose<perm=[1, 0]>(%at) : f32[m, k]
  %yt = matmul(%ta, %b) : f32[m, n]
  %yd = matmul(%d, %e) : f64[m, n]
  %yi = matmul(%i, %j) : i32[m, n]
  return %y = %y
  return %yt = %yt
  return %yd = %yd
  return %yi = %yi
}}
"#
        ),
    )
    .bound(&format!(
        r#"
graph({graph_inputs}) {{
  %aa = abs(%a) : f32[m, k]
  %ab = abs(%b) : f32[k, n]
  %y = matmul(%aa, %ab) : f32[m, n]
  %ta = transpose<perm=[1, 0]>(%at) : f32[m, k]
  %taa = abs(%ta) : f32[m, k]
  %yt = matmul(%taa, %ab) : f32[m, n]
  return %y = %y
  return %yt = %yt
}}
"#
    ))
    .input("i", Gen::Int(-1000, 1000))
    .input("j", Gen::Int(-1000, 1000))
    .tol(Tol::gemm(Len::Sym("k")))
    .tol_for("yd", Tol::Exact)
    .tol_for("yi", Tol::Exact);
    let sizes = [1, 7, 17, 33, 127, 300];
    for m in sizes {
        for n in sizes {
            for k in sizes {
                case = case.bind(&[("m", m), ("n", n), ("k", k)]);
            }
        }
    }
    case.check();
}

#[test]
fn batched_matmul_broadcasts_batches_and_reads_transposed_b() {
    // Batched runtime products: equal batches, a rank-2 B broadcast over A's batch, batch dims
    // of size 1 broadcast both ways, and B read through a Transpose node (GEMM tolerance).
    let graph_inputs =
        "%a: f32[bt, m, k], %b: f32[bt, k, n], %b2: f32[k, n], %bt_t: f32[bt, n, k], \
                        %a4: f32[bt, 1, m, k], %b4: f32[1, c, k, n]";
    let case = Case::new(
        "matmul_batched",
        &format!(
            r#"
graph({graph_inputs}) {{
  %y = matmul(%a, %b) : f32[bt, m, n]
  %y2 = matmul(%a, %b2) : f32[bt, m, n]
  %tb = transpose<perm=[0, 2, 1]>(%bt_t) : f32[bt, k, n]
  %yt = matmul(%a, %tb) : f32[bt, m, n]
  %y4 = matmul(%a4, %b4) : f32[bt, c, m, n]
  return %y = %y
  return %y2 = %y2
  return %yt = %yt
  return %y4 = %y4
}}
"#
        ),
    )
    .bound(&format!(
        r#"
graph({graph_inputs}) {{
  %aa = abs(%a) : f32[bt, m, k]
  %ab = abs(%b) : f32[bt, k, n]
  %ab2 = abs(%b2) : f32[k, n]
  %abt = abs(%bt_t) : f32[bt, n, k]
  %aa4 = abs(%a4) : f32[bt, 1, m, k]
  %ab4 = abs(%b4) : f32[1, c, k, n]
  %y = matmul(%aa, %ab) : f32[bt, m, n]
  %y2 = matmul(%aa, %ab2) : f32[bt, m, n]
  %tb = transpose<perm=[0, 2, 1]>(%abt) : f32[bt, k, n]
  %yt = matmul(%aa, %tb) : f32[bt, m, n]
  %y4 = matmul(%aa4, %ab4) : f32[bt, c, m, n]
  return %y = %y
  return %y2 = %y2
  return %yt = %yt
  return %y4 = %y4
}}
"#
    ))
    .tol(Tol::gemm(Len::Sym("k")));
    let mut case = case;
    for (bt, c, m, n, k) in [
        (1, 1, 1, 1, 1),
        (3, 2, 7, 17, 33),
        (2, 3, 33, 7, 17),
        (5, 1, 17, 33, 7),
        (2, 2, 127, 33, 127),
        (1, 2, 300, 127, 33),
        (4, 1, 33, 300, 300),
    ] {
        case = case.bind(&[("bt", bt), ("c", c), ("m", m), ("n", n), ("k", k)]);
    }
    case.check();
}

/// Softmax, layer normalisation and float reductions accumulate in f64 in the interpreter's
/// order and round once, so they agree exactly unless a libm call or a division rounds an
/// f64 differently: f64 accumulation of `len` terms errs by at most `len 2^-53 Σ|x|`, far
/// below half an f32 ulp of the result except after cancellation, so one ulp and an
/// absolute floor of `2^-40` (for results near zero: len <= 2^10 terms of magnitude <= 2^3).
const ACCUMULATED: Tol = Tol::Ulps {
    ulps: 1,
    abs: 1.0 / (1u64 << 40) as f64,
};

/// The vectorised softmax of contiguous f32 rows (the last axis, attention's): `x - max` is
/// kept exact as an f32 pair, tcc's vector exp errs by about 2 ulp, the f64 sum and the f64
/// product by far less, and the result rounds once: within 3 ulp of the exact softmax, so
/// within 4 of the interpreter's once-rounded f64 result (with ACCUMULATED's floor).
const SOFTMAX_ROWS_F32: Tol = Tol::Ulps {
    ulps: 4,
    abs: 1.0 / (1u64 << 40) as f64,
};

#[test]
fn softmax_and_log_softmax_on_every_axis() {
    let case = Case::new(
        "softmax",
        r#"
graph(%x: f32[n, 7, s], %w: f64[n, s]) {
  %s2 = softmax<axis=2>(%x) : f32[n, 7, s]
  %s1 = softmax<axis=1>(%x) : f32[n, 7, s]
  %s0 = softmax<axis=0>(%x) : f32[n, 7, s]
  %l2 = log_softmax<axis=2>(%x) : f32[n, 7, s]
  %l1 = log_softmax<axis=1>(%x) : f32[n, 7, s]
  %w1 = softmax<axis=1>(%w) : f64[n, s]
  %v0 = log_softmax<axis=0>(%w) : f64[n, s]
  return %s2 = %s2
  return %s1 = %s1
  return %s0 = %s0
  return %l2 = %l2
  return %l1 = %l1
  return %w1 = %w1
  return %v0 = %v0
}
"#,
    )
    .input("x", Gen::Float(-20.0, 20.0))
    .tol(ACCUMULATED)
    .tol_for("s2", SOFTMAX_ROWS_F32);
    let mut case = case;
    for (n, s) in [
        (1, 1),
        (1, 7),
        (3, 17),
        (2, 33),
        (1, 127),
        (2, 300),
        (1, 1031),
    ] {
        case = case.bind(&[("n", n), ("s", s)]);
    }
    case.check();
}

#[test]
fn masked_softmax_rows_ignore_minus_infinity() {
    // Attention masks written with -inf (torch's scaled_dot_product_attention export): the
    // masked positions get exactly 0 in exact arithmetic; the first key of each row stays
    // unmasked, as in real attention, so no row is all -inf. The mask's own where and the
    // NaN filter after it are exact; the softmax: SOFTMAX_ROWS_F32.
    let case = Case::new(
        "masked_softmax",
        r#"
graph(%x: f32[n, 4, s], %keep: bool[n, 1, s]) {
  %first = range<dtype=i64, start=0, limit=s, delta=1> : i64[s]
  %zero = const [0] : i64[]
  %is_first = equal(%first, %zero) : bool[s]
  %k = or(%keep, %is_first) : bool[n, 1, s]
  %ninf = const [-inf] : f32[]
  %masked = where(%k, %x, %ninf) : f32[n, 4, s]
  %p = softmax<axis=2>(%masked) : f32[n, 4, s]
  %bad = isnan(%p) : bool[n, 4, s]
  %z = const [0.0] : f32[]
  %q = where(%bad, %z, %p) : f32[n, 4, s]
  return %p = %p
  return %q = %q
}
"#,
    )
    .input("x", Gen::Float(-8.0, 8.0))
    .tol(SOFTMAX_ROWS_F32);
    let mut case = case;
    for s in [1, 7, 17, 33, 127] {
        case = case.bind(&[("n", 2), ("s", s)]);
    }
    case.check();
}

#[test]
fn softmax_rows_holding_nan_or_infinity_are_nan() {
    // A NaN (row 1) or +inf (row 2) at the first and the eighth position of a row makes the
    // whole row NaN, as in the interpreter; the other rows are untouched. Rows short enough
    // for the tail loop only, and long enough for the blocks of four vectors.
    let case = Case::new(
        "softmax_nan_rows",
        r#"
graph(%x: f32[n, 3, s]) {
  %i = range<dtype=i64, start=0, limit=s, delta=1> : i64[s]
  %seven = const [7] : i64[]
  %zero = const [0] : i64[]
  %at = equal(%i, %seven) : bool[s]
  %first = equal(%i, %zero) : bool[s]
  %mark = or(%at, %first) : bool[s]
  %nan_row = const [false, true, false] : bool[3, 1]
  %inf_row = const [false, false, true] : bool[3, 1]
  %nan = const [nan] : f32[]
  %inf = const [inf] : f32[]
  %a = and(%nan_row, %mark) : bool[3, s]
  %b = and(%inf_row, %mark) : bool[3, s]
  %x1 = where(%a, %nan, %x) : f32[n, 3, s]
  %x2 = where(%b, %inf, %x1) : f32[n, 3, s]
  %p = softmax<axis=2>(%x2) : f32[n, 3, s]
  return %p = %p
}
"#,
    )
    .input("x", Gen::Float(-8.0, 8.0))
    .tol(SOFTMAX_ROWS_F32);
    let mut case = case;
    for s in [1, 7, 8, 33, 127, 300] {
        case = case.bind(&[("n", 2), ("s", s)]);
    }
    case.check();
}

#[test]
fn layer_norm_over_trailing_axes() {
    // Scale and bias of the normalised size, of size 1, and broadcast over a leading
    // normalised axis (ACCUMULATED tolerance).
    let case = Case::new(
        "layer_norm",
        r#"
graph(%x: f32[n, s, 17], %g: f32[17], %b: f32[17], %g2: f32[s, 17], %one: f32[1], %h: f64[n, s], %one64: f64[1]) {
  %y0 = layer_norm<axis=2, epsilon=1e-5>(%x, %g, %b) : f32[n, s, 17]
  %y1 = layer_norm<axis=1, epsilon=1e-3>(%x, %g2, %one) : f32[n, s, 17]
  %y2 = layer_norm<axis=1, epsilon=1e-5>(%x, %g, %b) : f32[n, s, 17]
  %y3 = layer_norm<axis=1, epsilon=1e-12>(%h, %one64, %one64) : f64[n, s]
  return %y0 = %y0
  return %y1 = %y1
  return %y2 = %y2
  return %y3 = %y3
}
"#,
    )
    .input("x", Gen::Float(-5.0, 7.0))
    .input("h", Gen::Float(-5.0, 7.0))
    .tol(ACCUMULATED);
    let mut case = case;
    for (n, s) in [(1, 1), (7, 1), (1, 7), (3, 17), (2, 33), (1, 127), (2, 300)] {
        case = case.bind(&[("n", n), ("s", s)]);
    }
    case.check();
}

#[test]
fn reductions_of_every_kind_over_several_axes() {
    // Float reductions: ACCUMULATED; integer ones wrap exactly.
    let case = Case::new(
        "reduce",
        r#"
graph(%x: f32[n, 7, s], %p: f32[n, 7, s], %i: i64[n, s], %j: i32[n, 3, s]) {
  %a = reduce_sum<axes=[2], keep_dims=true>(%x) : f32[n, 7, 1]
  %b = reduce_sum<axes=[0, 2], keep_dims=false>(%x) : f32[7]
  %c = reduce_mean<axes=[1], keep_dims=false>(%x) : f32[n, s]
  %d = reduce_mean<axes=[0, 1, 2], keep_dims=true>(%x) : f32[1, 1, 1]
  %e = reduce_max<axes=[1, 2], keep_dims=false>(%x) : f32[n]
  %f = reduce_min<axes=[0], keep_dims=true>(%x) : f32[1, 7, s]
  %g = reduce_prod<axes=[1], keep_dims=true>(%p) : f32[n, 1, s]
  %h = reduce_sum<axes=[1], keep_dims=false>(%i) : i64[n]
  %k = reduce_prod<axes=[0], keep_dims=false>(%j) : i32[3, s]
  %l = reduce_max<axes=[0, 2], keep_dims=true>(%j) : i32[1, 3, 1]
  %m = reduce_min<axes=[1], keep_dims=false>(%i) : i64[n]
  %o = reduce_mean<axes=[0], keep_dims=false>(%i) : i64[s]
  return %a = %a
  return %b = %b
  return %c = %c
  return %d = %d
  return %e = %e
  return %f = %f
  return %g = %g
  return %h = %h
  return %k = %k
  return %l = %l
  return %m = %m
  return %o = %o
}
"#,
    )
    .input("p", Gen::Float(0.5, 1.5))
    .input("i", Gen::Int(-1_000_000, 1_000_000))
    .input("j", Gen::Int(-100_000, 100_000))
    .tol(ACCUMULATED);
    let mut case = case;
    for (n, s) in [(1, 1), (1, 7), (3, 17), (2, 33), (1, 127), (2, 300)] {
        case = case.bind(&[("n", n), ("s", s)]);
    }
    case.check();
}

#[test]
fn arg_reductions_and_cumulative_sums() {
    // Integer inputs in a small range make ties common, so select_last matters; exact. The
    // f32 cumulative sums accumulate in f64 like the interpreter (ACCUMULATED).
    let case = Case::new(
        "arg_cumsum",
        r#"
graph(%x: i64[n, 7, s], %f: f32[n, s]) {
  %a = argmax<axis=2, keep_dims=true, select_last=false>(%x) : i64[n, 7, 1]
  %b = argmax<axis=1, keep_dims=false, select_last=true>(%x) : i64[n, s]
  %c = argmin<axis=0, keep_dims=false, select_last=false>(%x) : i64[7, s]
  %d = argmin<axis=2, keep_dims=true, select_last=true>(%x) : i64[n, 7, 1]
  %e = argmax<axis=1, keep_dims=false, select_last=false>(%f) : i64[n]
  %g = cumsum<axis=2, exclusive=false, reverse=false>(%x) : i64[n, 7, s]
  %h = cumsum<axis=1, exclusive=true, reverse=false>(%x) : i64[n, 7, s]
  %k = cumsum<axis=0, exclusive=false, reverse=true>(%f) : f32[n, s]
  %l = cumsum<axis=1, exclusive=true, reverse=true>(%f) : f32[n, s]
  return %a = %a
  return %b = %b
  return %c = %c
  return %d = %d
  return %e = %e
  return %g = %g
  return %h = %h
  return %k = %k
  return %l = %l
}
"#,
    )
    .input("x", Gen::Int(-3, 3))
    .tol(ACCUMULATED);
    let mut case = case;
    for (n, s) in [(1, 1), (1, 7), (3, 17), (2, 33), (1, 127), (2, 300)] {
        case = case.bind(&[("n", n), ("s", s)]);
    }
    case.check();
}

#[test]
fn transposes_slices_concats_expands_tiles() {
    // Data movement copies elements: exact.
    let case = Case::new(
        "movement",
        r#"
graph(%x: f32[n, 7, s], %v: f32[n, 2, 3, s], %r: f32[1, s], %k: i64[n, 1, s]) {
  %t0 = transpose<perm=[1, 0]>(%r) : f32[s, 1]
  %t1 = transpose<perm=[2, 0, 1]>(%x) : f32[s, n, 7]
  %t2 = transpose<perm=[0, 2, 1]>(%x) : f32[n, s, 7]
  %t3 = transpose<perm=[3, 1, 0, 2]>(%v) : f32[s, 2, n, 3]
  %t4 = transpose<perm=[1, 2, 0]>(%k) : i64[1, s, n]
  %s0 = slice<axes=[1], starts=[1], ends=[6], steps=[2]>(%x) : f32[n, 3, s]
  %s1 = slice<axes=[1, 2], starts=[6, s - 1], ends=[-1, -1], steps=[-1, -3]>(%x) : f32[n, 7, max(0, floordiv(s + 2, 3))]
  %s2 = slice<axes=[2], starts=[0], ends=[s], steps=[2]>(%x) : f32[n, 7, max(0, floordiv(s + 1, 2))]
  %s3 = slice<axes=[0, 3], starts=[0, 1], ends=[n, s], steps=[1, 1]>(%v) : f32[n, 2, 3, s - 1]
  %c0 = concat<axis=1>(%x, %s0, %x) : f32[n, 17, s]
  %c1 = concat<axis=2>(%x, %s2) : f32[n, 7, s + max(0, floordiv(s + 1, 2))]
  %c2 = concat<axis=0>(%r, %r) : f32[2, s]
  %e0 = expand<shape=[n, 7, s]>(%r) : f32[n, 7, s]
  %e1 = expand<shape=[3, n, 1, s]>(%k) : i64[3, n, 1, s]
  %i0 = tile<repeats=[2, 1, 3]>(%x) : f32[2*n, 7, 3*s]
  %i1 = tile<repeats=[3, n]>(%r) : f32[3, n*s]
  return %t0 = %t0
  return %t1 = %t1
  return %t2 = %t2
  return %t3 = %t3
  return %t4 = %t4
  return %s0 = %s0
  return %s1 = %s1
  return %s2 = %s2
  return %s3 = %s3
  return %c0 = %c0
  return %c1 = %c1
  return %c2 = %c2
  return %e0 = %e0
  return %e1 = %e1
  return %i0 = %i0
  return %i1 = %i1
}
"#,
    );
    let mut case = case;
    for (n, s) in [(1, 1), (1, 7), (3, 17), (2, 33), (1, 127), (2, 300)] {
        case = case.bind(&[("n", n), ("s", s)]);
    }
    case.check();
}

#[test]
fn gathers_with_negative_indices() {
    // Gathers copy elements: exact. Indices are drawn over the whole valid range, negative
    // ones included (counted from the end).
    let case = Case::new(
        "gathers",
        r#"
graph(%emb: f32[50, d], %ids: i64[n, s], %x: f32[n, 7, s], %j: i32[3], %one: i64[], %ge: i64[n, 3, s], %gl: i32[n, 7, 2], %nd: f32[5, 6, s], %ndi: i64[n, 2], %bd: f32[n, 5, 6], %bdi: i32[n, 4, 1]) {
  %g0 = gather<axis=0>(%emb, %ids) : f32[n, s, d]
  %g1 = gather<axis=1>(%x, %j) : f32[n, 3, s]
  %g2 = gather<axis=1>(%x, %one) : f32[n, s]
  %e1 = gather_elements<axis=1>(%x, %ge) : f32[n, 3, s]
  %e2 = gather_elements<axis=2>(%x, %gl) : f32[n, 7, 2]
  %n0 = gather_nd<batch_dims=0>(%nd, %ndi) : f32[n, s]
  %n1 = gather_nd<batch_dims=1>(%bd, %bdi) : f32[n, 4, 6]
  return %g0 = %g0
  return %g1 = %g1
  return %g2 = %g2
  return %e1 = %e1
  return %e2 = %e2
  return %n0 = %n0
  return %n1 = %n1
}
"#,
    )
    .input("ids", Gen::Int(-50, 49))
    .input("j", Gen::Int(-7, 6))
    .input("one", Gen::Int(-7, 6))
    .input("ge", Gen::Int(-7, 6))
    .input("gl", Gen::Int(-1, 0))
    .input("ndi", Gen::Int(-5, 4))
    .input("bdi", Gen::Int(-5, 4));
    let mut case = case;
    for (n, s, d) in [
        (1, 1, 1),
        (1, 7, 17),
        (3, 17, 33),
        (2, 33, 7),
        (1, 127, 300),
    ] {
        case = case.bind(&[("n", n), ("s", s), ("d", d)]);
    }
    case.check();
}

#[test]
fn a_gather_index_out_of_range_fails_the_run() {
    // Index 50 of a 50-row table: the interpreter reports an error, the library must fail
    // with an error code rather than read out of bounds.
    Case::new(
        "gather_out_of_range",
        r#"
graph(%emb: f32[50, 4], %ids: i64[n]) {
  %g = gather<axis=0>(%emb, %ids) : f32[n, 4]
  return %g = %g
}
"#,
    )
    .input("ids", Gen::Int(50, 50))
    .sizes("n", &[1, 33])
    .expect_failure()
    .check();
}

#[test]
fn range_trilu_and_pad_in_every_mode() {
    // Integer sequences, masks and padding copy or compute exactly: exact.
    let case = Case::new(
        "range_trilu_pad",
        r#"
graph(%x: f32[n, 7, s], %fill: f32[], %i: i64[n, s]) {
  %r0 = range<dtype=i64, start=0, limit=n, delta=1> : i64[n]
  %r1 = range<dtype=i32, start=s, limit=-3, delta=-2> : i32[max(0, floordiv(s + 4, 2))]
  %r2 = range<dtype=i64, start=2, limit=s + 5, delta=3> : i64[max(0, floordiv(s + 5, 3))]
  %t0 = trilu<upper=true, k=0>(%x) : f32[n, 7, s]
  %t1 = trilu<upper=false, k=-1>(%x) : f32[n, 7, s]
  %t2 = trilu<upper=true, k=2>(%i) : i64[n, s]
  %t3 = trilu<upper=false, k=3>(%x) : f32[n, 7, s]
  %p0 = pad<mode=constant, pads_begin=[0, 1, 2], pads_end=[1, 0, 3]>(%x, %fill) : f32[n + 1, 8, s + 5]
  %p1 = pad<mode=reflect, pads_begin=[0, 2, 1], pads_end=[0, 3, 0]>(%x) : f32[n, 12, s + 1]
  %p2 = pad<mode=edge, pads_begin=[1, 0, 3], pads_end=[2, 4, 1]>(%x) : f32[n + 3, 11, s + 4]
  %p3 = pad<mode=wrap, pads_begin=[0, 9, 2], pads_end=[1, 2, 5]>(%x) : f32[n + 1, 18, s + 7]
  %p4 = pad<mode=constant, pads_begin=[0, -2, 1], pads_end=[0, 1, 0]>(%x, %fill) : f32[n, 6, s + 1]
  %p5 = pad<mode=edge, pads_begin=[0, -1, 0], pads_end=[0, -3, 2]>(%x) : f32[n, 3, s + 2]
  %p6 = pad<mode=reflect, pads_begin=[0, 15], pads_end=[1, 0]>(%i) : i64[n + 1, s + 15]
  return %r0 = %r0
  return %r1 = %r1
  return %r2 = %r2
  return %t0 = %t0
  return %t1 = %t1
  return %t2 = %t2
  return %t3 = %t3
  return %p0 = %p0
  return %p1 = %p1
  return %p2 = %p2
  return %p3 = %p3
  return %p4 = %p4
  return %p5 = %p5
  return %p6 = %p6
}
"#,
    );
    let mut case = case;
    for (n, s) in [(1, 2), (1, 7), (3, 17), (2, 33), (1, 127), (2, 300)] {
        case = case.bind(&[("n", n), ("s", s)]);
    }
    case.check();
}

#[test]
fn convolutions_strided_padded_dilated_grouped() {
    // Each output sums K = (c / group) * taps products in f32 in its own order: the GEMM
    // bound with k = K, against the same convolution of |x| and |w| (the bound graph).
    let ir = |abs: bool| {
        let (x, x1, w0, w1, w2) = if abs {
            ("%ax", "%ax1", "%aw0", "%aw1", "%aw2")
        } else {
            ("%x", "%x1", "%w0", "%w1", "%w2")
        };
        format!(
            r#"
graph(%x: f32[n, 4, h, w], %x1: f32[n, 3, w]) {{
  %w0 = const @"w0" : f32[6, 2, 3, 3]
  %w1 = const @"w1" : f32[5, 3, 4]
  %w2 = const @"w2" : f32[4, 1, 3, 3]
  %ax = abs(%x) : f32[n, 4, h, w]
  %ax1 = abs(%x1) : f32[n, 3, w]
  %aw0 = abs(%w0) : f32[6, 2, 3, 3]
  %aw1 = abs(%w1) : f32[5, 3, 4]
  %aw2 = abs(%w2) : f32[4, 1, 3, 3]
  %c0 = conv<strides=[2, 1], pads_begin=[1, 0], pads_end=[0, 2], dilations=[1, 2], group=2>({x}, {w0}) : f32[n, 6, floordiv(h - 2, 2) + 1, w - 2]
  %c1 = conv<strides=[3], pads_begin=[2], pads_end=[1], dilations=[1], group=1>({x1}, {w1}) : f32[n, 5, floordiv(w - 1, 3) + 1]
  %c2 = conv<strides=[1, 1], pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1], group=4>({x}, {w2}) : f32[n, 4, h, w]
  return %c0 = %c0
  return %c1 = %c1
  return %c2 = %c2
}}
"#
        )
    };
    let mut case = Case::new("conv", &ir(false))
        .bound(&ir(true))
        .weight("w0", lowered::random_f32(&[6, 2, 3, 3], "w0", -1.0, 1.0))
        .weight("w1", lowered::random_f32(&[5, 3, 4], "w1", -1.0, 1.0))
        .weight("w2", lowered::random_f32(&[4, 1, 3, 3], "w2", -1.0, 1.0))
        .tol_for("c0", Tol::gemm(Len::Fixed(18)))
        .tol_for("c1", Tol::gemm(Len::Fixed(12)))
        .tol_for("c2", Tol::gemm(Len::Fixed(9)));
    for (n, h, w) in [(1, 2, 3), (1, 7, 17), (2, 17, 7), (1, 33, 33), (1, 5, 127)] {
        case = case.bind(&[("n", n), ("h", h), ("w", w)]);
    }
    case.check();
}

/// One convolution of [`convolutions_through_the_gemm`]: its name, input, weights (a constant
/// of this shape, or the named runtime input), attributes and result type.
struct ConvSpec {
    name: &'static str,
    input: &'static str,
    weights: ConvWeights,
    attrs: &'static str,
    out: &'static str,
}

/// The weights of a [`ConvSpec`].
enum ConvWeights {
    /// A constant of this shape, drawn in `[-1, 1)`.
    Const(&'static [usize]),
    /// A graph input of this name and shape.
    Input(&'static str, &'static [usize]),
}

impl ConvWeights {
    fn shape(&self) -> &'static [usize] {
        match self {
            ConvWeights::Const(s) | ConvWeights::Input(_, s) => s,
        }
    }
}

#[test]
fn convolutions_through_the_gemm() {
    // f32 convolutions of one group run as a GEMM of the weights by blocks of unfolded input:
    // Conv1d and Conv2d, strides 1 and 2, asymmetric pads, dilation 2, 1x1, 3x3 and 7x7
    // kernels, 3, 17 and 64 channels (K up to 576, past one k-block of the GEMM), output
    // channels that are no multiple of a register tile's rows (12 on AVX-512, 6 on AVX2),
    // weights constant or computed, at symbolic batch and spatial sizes from 1 to several
    // tasks' worth (lines longer and shorter than a panel, blocks spanning several lines and
    // rows). A grouped convolution beside them still takes the scalar loop. Each output sums
    // K products in f32 in the interpreter's order, fused: the GEMM bound with k = K, against
    // the same convolutions of |x| and |w|.
    let specs = [
        ConvSpec {
            name: "k3",
            input: "x3",
            weights: ConvWeights::Const(&[5, 3, 3, 3]),
            attrs: "strides=[1, 1], pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1], group=1",
            out: "[n, 5, h, w]",
        },
        ConvSpec {
            name: "s2",
            input: "x17",
            weights: ConvWeights::Const(&[13, 17, 3, 3]),
            attrs: "strides=[2, 2], pads_begin=[0, 1], pads_end=[2, 1], dilations=[1, 1], group=1",
            out: "[n, 13, floordiv(h - 1, 2) + 1, floordiv(w - 1, 2) + 1]",
        },
        ConvSpec {
            name: "dil2",
            input: "x17",
            weights: ConvWeights::Const(&[7, 17, 3, 3]),
            attrs: "strides=[1, 1], pads_begin=[3, 1], pads_end=[1, 3], dilations=[2, 2], group=1",
            out: "[n, 7, h, w]",
        },
        ConvSpec {
            name: "dil2s2",
            input: "x3",
            weights: ConvWeights::Const(&[11, 3, 3, 3]),
            attrs: "strides=[2, 1], pads_begin=[2, 2], pads_end=[2, 2], dilations=[2, 2], group=1",
            out: "[n, 11, floordiv(h - 1, 2) + 1, w]",
        },
        ConvSpec {
            name: "p1x1",
            input: "x64",
            weights: ConvWeights::Const(&[33, 64, 1, 1]),
            attrs: "strides=[1, 1], pads_begin=[0, 0], pads_end=[0, 0], dilations=[1, 1], group=1",
            out: "[n, 33, h, w]",
        },
        ConvSpec {
            name: "p1x1s2",
            input: "x64",
            weights: ConvWeights::Const(&[20, 64, 1, 1]),
            attrs: "strides=[2, 2], pads_begin=[0, 0], pads_end=[1, 1], dilations=[1, 1], group=1",
            out: "[n, 20, floordiv(h, 2) + 1, floordiv(w, 2) + 1]",
        },
        ConvSpec {
            name: "k7s2",
            input: "x3",
            weights: ConvWeights::Const(&[37, 3, 7, 7]),
            attrs: "strides=[2, 2], pads_begin=[3, 3], pads_end=[3, 3], dilations=[1, 1], group=1",
            out: "[n, 37, floordiv(h - 1, 2) + 1, floordiv(w - 1, 2) + 1]",
        },
        ConvSpec {
            name: "c64",
            input: "x64",
            weights: ConvWeights::Const(&[64, 64, 3, 3]),
            attrs: "strides=[1, 1], pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1], group=1",
            out: "[n, 64, h, w]",
        },
        ConvSpec {
            name: "runtime_w",
            input: "x17",
            weights: ConvWeights::Input("wr", &[9, 17, 3, 3]),
            attrs: "strides=[1, 1], pads_begin=[1, 0], pads_end=[1, 2], dilations=[1, 1], group=1",
            out: "[n, 9, h, w]",
        },
        ConvSpec {
            name: "d1k3",
            input: "y17",
            weights: ConvWeights::Const(&[19, 17, 3]),
            attrs: "strides=[1], pads_begin=[1], pads_end=[1], dilations=[1], group=1",
            out: "[n, 19, l]",
        },
        ConvSpec {
            name: "d1k7s2",
            input: "y17",
            weights: ConvWeights::Const(&[40, 17, 7]),
            attrs: "strides=[2], pads_begin=[7], pads_end=[5], dilations=[2], group=1",
            out: "[n, 40, floordiv(l - 1, 2) + 1]",
        },
        ConvSpec {
            name: "d1c64",
            input: "y64",
            weights: ConvWeights::Const(&[50, 64, 3]),
            attrs: "strides=[1], pads_begin=[0], pads_end=[2], dilations=[1], group=1",
            out: "[n, 50, l]",
        },
        ConvSpec {
            name: "group2",
            input: "x6",
            weights: ConvWeights::Const(&[4, 3, 3, 3]),
            attrs: "strides=[1, 1], pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1], group=2",
            out: "[n, 4, h, w]",
        },
    ];
    let inputs = [
        ("x3", "[n, 3, h, w]"),
        ("x6", "[n, 6, h, w]"),
        ("x17", "[n, 17, h, w]"),
        ("x64", "[n, 64, h, w]"),
        ("y17", "[n, 17, l]"),
        ("y64", "[n, 64, l]"),
        ("wr", "[9, 17, 3, 3]"),
    ];
    let dims = |s: &[usize]| {
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    // The graph, or its bound: the same convolutions of |x| and |w|.
    let ir = |abs: bool| {
        let params: Vec<String> = inputs
            .iter()
            .map(|(name, shape)| format!("%{name}: f32{shape}"))
            .collect();
        let mut body = String::new();
        if abs {
            for (name, shape) in inputs {
                body += &format!("  %a{name} = abs(%{name}) : f32{shape}\n");
            }
        }
        for spec in &specs {
            let w = format!("w_{}", spec.name);
            let shape = dims(spec.weights.shape());
            let wname = match spec.weights {
                ConvWeights::Const(_) => {
                    body += &format!("  %{w} = const @\"{w}\" : f32[{shape}]\n");
                    w.clone()
                }
                ConvWeights::Input(name, _) => name.to_owned(),
            };
            let (x, wv) = if abs {
                if matches!(spec.weights, ConvWeights::Const(_)) {
                    body += &format!("  %a{wname} = abs(%{wname}) : f32[{shape}]\n");
                }
                (format!("%a{}", spec.input), format!("%a{wname}"))
            } else {
                (format!("%{}", spec.input), format!("%{wname}"))
            };
            body += &format!(
                "  %{n} = conv<{attrs}>({x}, {wv}) : f32{out}\n",
                n = spec.name,
                attrs = spec.attrs,
                out = spec.out
            );
        }
        for spec in &specs {
            body += &format!("  return %{n} = %{n}\n", n = spec.name);
        }
        format!("graph({}) {{\n{body}}}\n", params.join(", "))
    };
    let mut case = Case::new("conv_gemm", &ir(false))
        .bound(&ir(true))
        .input("wr", Gen::Float(-1.0, 1.0));
    for spec in &specs {
        if let ConvWeights::Const(shape) = spec.weights {
            let w = format!("w_{}", spec.name);
            case = case.weight(&w, lowered::random_f32(shape, &w, -1.0, 1.0));
        }
        let s = spec.weights.shape();
        let k = s[1] * s[2..].iter().product::<usize>();
        case = case.tol_for(spec.name, Tol::gemm(Len::Fixed(k)));
    }
    for (n, h, w, l) in [
        (1, 1, 1, 1),
        (2, 5, 7, 9),
        (1, 17, 33, 100),
        (3, 40, 45, 3000),
    ] {
        case = case.bind(&[("n", n), ("h", h), ("w", w), ("l", l)]);
    }
    case.check();
}

#[test]
fn conv3d_through_the_gemm() {
    // The GEMM's packing walks any number of spatial axes: a Conv3d, strided, padded
    // asymmetrically and dilated, K = 5 * 27 = 135, against the interpreter with the GEMM
    // bound, as above.
    let ir = |abs: bool| {
        let (x, w) = if abs { ("%ax", "%aw") } else { ("%x", "%w") };
        format!(
            r#"
graph(%x: f32[n, 5, d, h, w]) {{
  %w = const @"w" : f32[6, 5, 3, 3, 3]
  %ax = abs(%x) : f32[n, 5, d, h, w]
  %aw = abs(%w) : f32[6, 5, 3, 3, 3]
  %y = conv<strides=[1, 2, 1], pads_begin=[1, 2, 0], pads_end=[1, 0, 2], dilations=[1, 1, 2], group=1>({x}, {w}) : f32[n, 6, d, floordiv(h - 1, 2) + 1, w - 2]
  return %y = %y
}}
"#
        )
    };
    let mut case = Case::new("conv3d_gemm", &ir(false))
        .bound(&ir(true))
        .weight("w", lowered::random_f32(&[6, 5, 3, 3, 3], "w3", -1.0, 1.0))
        .tol_for("y", Tol::gemm(Len::Fixed(135)));
    for (n, d, h, w) in [(1, 1, 1, 3), (2, 3, 5, 7), (1, 6, 17, 40)] {
        case = case.bind(&[("n", n), ("d", d), ("h", h), ("w", w)]);
    }
    case.check();
}

#[test]
fn matmul_integer_exact_and_with_saturated_pairs() {
    // Integer products accumulate exactly (i32 wrapping): exact. Full 8-bit ranges make the
    // u8 x i8 pair sums exceed i16, so saturate_pairs is exercised.
    let case = Case::new(
        "matmul_integer",
        r#"
graph(%a: u8[m, k], %b: i8[k, n], %az: u8[], %bz: i8[n], %c: i8[bt, m, k], %d: i8[k, n], %cz: i8[bt, m, 1], %dz: i8[], %e: u8[k, n], %ez: u8[1, n]) {
  %y0 = matmul_integer<saturate_pairs=true>(%a, %b, %az, %bz) : i32[m, n]
  %y1 = matmul_integer<saturate_pairs=false>(%a, %b, %az, %bz) : i32[m, n]
  %y2 = matmul_integer<saturate_pairs=false>(%c, %d, %cz, %dz) : i32[bt, m, n]
  %y3 = matmul_integer<saturate_pairs=false>(%a, %e, %az, %ez) : i32[m, n]
  return %y0 = %y0
  return %y1 = %y1
  return %y2 = %y2
  return %y3 = %y3
}
"#,
    )
    .input("a", Gen::Int(0, 255))
    .input("b", Gen::Int(-128, 127))
    .input("c", Gen::Int(-128, 127))
    .input("d", Gen::Int(-128, 127))
    .input("e", Gen::Int(0, 255))
    .input("az", Gen::Int(0, 255))
    .input("bz", Gen::Int(-128, 127))
    .input("cz", Gen::Int(-128, 127))
    .input("dz", Gen::Int(-128, 127))
    .input("ez", Gen::Int(0, 255));
    let mut case = case;
    for (bt, m, n, k) in [
        (1, 1, 1, 1),
        (2, 7, 17, 33),
        (1, 17, 7, 127),
        (3, 33, 33, 7),
        (1, 127, 17, 300),
        (1, 300, 33, 17),
    ] {
        case = case.bind(&[("bt", bt), ("m", m), ("n", n), ("k", k)]);
    }
    case.check();
}

#[test]
fn reshape_views_feed_kernels_and_outputs_copy_inputs_constants_and_views() {
    // Views (Reshape) of inputs and of arena values feed a softmax, a transpose and a runtime
    // matmul; outputs that are an input, a constant, a view, an arena value seen through a
    // view, and one node returned twice get copy steps. Softmax (the vectorised rows):
    // SOFTMAX_ROWS_F32; the matmul: GEMM bound with k = 2; the rest moves or rounds once per
    // op: exact.
    let case = Case::new(
        "views_and_copies",
        r#"
graph(%x: f32[n, 6], %y: f32[n, 2, 3]) {
  %c = const [1.0, 2.0, 3.0] : f32[3]
  %r = reshape<shape=[n, 2, 3]>(%x) : f32[n, 2, 3]
  %s = softmax<axis=2>(%r) : f32[n, 2, 3]
  %e = exp(%x) : f32[n, 6]
  %re = reshape<shape=[n, 3, 2]>(%e) : f32[n, 3, 2]
  %t = transpose<perm=[0, 2, 1]>(%re) : f32[n, 2, 3]
  %m = matmul(%re, %y) : f32[n, 3, 3]
  %rr = reshape<shape=[6*n]>(%x) : f32[6*n]
  %a = add(%r, %c) : f32[n, 2, 3]
  return %s = %s
  return %t = %t
  return %m = %m
  return %x = %x
  return %c = %c
  return %rr = %rr
  return %s_again = %s
  return %re = %re
  return %a = %a
}
"#,
    )
    .bound(
        r#"
graph(%x: f32[n, 6], %y: f32[n, 2, 3]) {
  %e = exp(%x) : f32[n, 6]
  %re = reshape<shape=[n, 3, 2]>(%e) : f32[n, 3, 2]
  %ay = abs(%y) : f32[n, 2, 3]
  %m = matmul(%re, %ay) : f32[n, 3, 3]
  return %m = %m
}
"#,
    )
    .tol_for("s", SOFTMAX_ROWS_F32)
    .tol_for("s_again", SOFTMAX_ROWS_F32)
    .tol_for("m", Tol::gemm(Len::Fixed(2)));
    case.sizes("n", &[1, 7, 33, 300]).check();
}

#[test]
fn a_long_chain_reuses_arena_slots_and_stays_right() {
    // Many intermediates of a few sizes, some alive across others (the residual `%x1` and the
    // branch `%b0`), so the plan must reuse slots; every output still matches. Every op is
    // computed as the interpreter computes it (the softmax is over a middle axis, in f64), but a one-ulp difference of a libm call (LIBM)
    // or an f64 rounding (ACCUMULATED) early in the chain is carried through the later ops,
    // each of condition number at most about 2 here: 4 ulps, with ACCUMULATED's floor.
    let case = Case::new(
        "arena_reuse",
        r#"
graph(%x: f32[n, s, 8]) {
  %g = const [1.0, 0.5, 2.0, 1.5, 1.0, 0.5, 2.0, 1.5] : f32[8]
  %bb = const [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7] : f32[8]
  %x1 = tanh(%x) : f32[n, s, 8]
  %t0 = transpose<perm=[0, 2, 1]>(%x1) : f32[n, 8, s]
  %s0 = softmax<axis=1>(%t0) : f32[n, 8, s]
  %t1 = transpose<perm=[0, 2, 1]>(%s0) : f32[n, s, 8]
  %b0 = layer_norm<axis=2, epsilon=1e-5>(%t1, %g, %bb) : f32[n, s, 8]
  %r0 = reshape<shape=[n, 8, s]>(%b0) : f32[n, 8, s]
  %e0 = exp(%r0) : f32[n, 8, s]
  %q0 = reduce_sum<axes=[2], keep_dims=true>(%e0) : f32[n, 8, 1]
  %d0 = div(%e0, %q0) : f32[n, 8, s]
  %t2 = transpose<perm=[0, 2, 1]>(%d0) : f32[n, s, 8]
  %a0 = add(%t2, %x1) : f32[n, s, 8]
  %c0 = concat<axis=2>(%a0, %b0) : f32[n, s, 16]
  %s1 = slice<axes=[2], starts=[3], ends=[11], steps=[1]>(%c0) : f32[n, s, 8]
  %m0 = mul(%s1, %b0) : f32[n, s, 8]
  %l1 = layer_norm<axis=2, epsilon=1e-5>(%m0, %g, %bb) : f32[n, s, 8]
  %o = add(%l1, %a0) : f32[n, s, 8]
  return %out = %o
  return %mid = %s0
}
"#,
    )
    .tol(Tol::Ulps {
        ulps: 4,
        abs: 1.0 / (1u64 << 40) as f64,
    })
    .reuses_arena();
    let mut case = case;
    for (n, s) in [(1, 1), (2, 7), (3, 17), (1, 127), (4, 300)] {
        case = case.bind(&[("n", n), ("s", s)]);
    }
    case.check();
}

#[test]
fn scalars_empty_results_and_rank_one_edges() {
    // Rank-0 results, results with no elements (an empty slice, and kernels reading it),
    // rank-1 operands of concat, tile, transpose and reductions to a scalar, and sizes as
    // data (shape, dims). Exact, but the float reductions (ACCUMULATED).
    Case::new(
        "edges",
        r#"
graph(%s: f32[], %v: f32[n], %c: bool[], %x: f32[n, 5]) {
  %k = const [1.5, -2.0] : f32[2]
  %z0 = mul(%s, %s) : f32[]
  %z1 = where(%c, %v, %s) : f32[n]
  %z2 = reduce_sum<axes=[0], keep_dims=false>(%v) : f32[]
  %z3 = reduce_max<axes=[0, 1], keep_dims=false>(%x) : f32[]
  %z4 = argmin<axis=0, keep_dims=false, select_last=false>(%v) : i64[]
  %e0 = slice<axes=[1], starts=[3], ends=[3], steps=[1]>(%x) : f32[n, 0]
  %e1 = exp(%e0) : f32[n, 0]
  %e2 = reduce_sum<axes=[1], keep_dims=false>(%e0) : f32[n]
  %e3 = softmax<axis=0>(%e0) : f32[n, 0]
  %r0 = concat<axis=0>(%v, %k, %v) : f32[2*n + 2]
  %r1 = tile<repeats=[3]>(%k) : f32[6]
  %r2 = transpose<perm=[0]>(%v) : f32[n]
  %r3 = cumsum<axis=0, exclusive=false, reverse=false>(%v) : f32[n]
  %r4 = gather<axis=0>(%v, %z4) : f32[]
  %d0 = shape<start=0, end=2>(%x) : i64[2]
  %d1 = dims<dtype=i32, shape=[3], values=[n, 2*n + 1, 5]> : i32[3]
  return %d0 = %d0
  return %d1 = %d1
  return %z0 = %z0
  return %z1 = %z1
  return %z2 = %z2
  return %z3 = %z3
  return %z4 = %z4
  return %e1 = %e1
  return %e2 = %e2
  return %e3 = %e3
  return %r0 = %r0
  return %r1 = %r1
  return %r2 = %r2
  return %r3 = %r3
  return %r4 = %r4
}
"#,
    )
    .tol_for("z2", ACCUMULATED)
    .tol_for("r3", ACCUMULATED)
    .sizes("n", &[1, 7, 33, 1031])
    .check();
}

#[test]
fn symbolic_dims_that_are_one_at_run_time_broadcast() {
    // A symbolic dim may be 1 at run time and then broadcasts (the IR types `[s]` against
    // `[t]` as `[max(s, t)]` and `[s]` against `[5]` as `[5]`): fused elementwise ops, expand,
    // a batched matmul and a layer norm's scale must read such an operand with stride 0.
    // Exact, but the matmul (GEMM bound, k = 3) and the layer norm (ACCUMULATED).
    let mut case = Case::new(
        "runtime_broadcast",
        r#"
graph(%a: f32[s], %b: f32[t], %c: f32[u, 5], %x: f32[u, t, 3], %y: f32[s, 3, 4], %g: f32[s]) {
  %z0 = add(%a, %b) : f32[max(s, t)]
  %z1 = mul(%c, %a) : f32[u, 5]
  %z2 = expand<shape=[u, t]>(%a) : f32[u, max(s, t)]
  %z3 = matmul(%x, %y) : f32[max(s, u), t, 4]
  %z4 = layer_norm<axis=1, epsilon=1e-5>(%c, %g, %g) : f32[u, 5]
  return %z0 = %z0
  return %z1 = %z1
  return %z2 = %z2
  return %z3 = %z3
  return %z4 = %z4
}
"#,
    )
    .bound(
        r#"
graph(%a: f32[s], %b: f32[t], %c: f32[u, 5], %x: f32[u, t, 3], %y: f32[s, 3, 4], %g: f32[s]) {
  %ax = abs(%x) : f32[u, t, 3]
  %ay = abs(%y) : f32[s, 3, 4]
  %z3 = matmul(%ax, %ay) : f32[max(s, u), t, 4]
  return %z3 = %z3
}
"#,
    )
    .tol_for("z3", Tol::gemm(Len::Fixed(3)))
    .tol_for("z4", ACCUMULATED);
    for (s, t, u) in [
        (1, 5, 1),
        (5, 1, 1),
        (1, 1, 1),
        (5, 5, 5),
        (1, 7, 33),
        (5, 1, 5),
    ] {
        case = case.bind(&[("s", s), ("t", t), ("u", u)]);
    }
    case.check();
}

#[test]
fn sizes_that_do_not_fit_the_graph_fail_the_run() {
    // Each input is valid alone, but together they break a constraint the graph's types
    // assume (broadcast sizes 3 and 5; concat operands of widths 3 and 5; matmul inner sizes
    // 3 and 5): the interpreter reports an error, and the library must fail with an error
    // code before any kernel reads or writes out of bounds.
    let bad = [("s", 3), ("t", 5)];
    Case::new(
        "broadcast_mismatch",
        r#"
graph(%a: f32[s], %b: f32[t]) {
  %z = add(%a, %b) : f32[max(s, t)]
  return %z = %z
}
"#,
    )
    .bind(&bad)
    .bind(&[("s", 300), ("t", 7)])
    .expect_shape_error(&["add node %", "does not broadcast to", "(`max(s, t)`)"])
    .check();
    Case::new(
        "concat_mismatch",
        r#"
graph(%a: f32[2, s], %b: f32[2, t]) {
  %z = concat<axis=0>(%a, %b) : f32[4, s]
  return %z = %z
}
"#,
    )
    .bind(&bad)
    .bind(&[("s", 5), ("t", 300)])
    .expect_shape_error(&["concat node %", "operand 1's axis 1 has size"])
    .check();
    Case::new(
        "matmul_mismatch",
        r#"
graph(%a: f32[4, s], %b: f32[t, 6]) {
  %z = matmul(%a, %b) : f32[4, 6]
  return %z = %z
}
"#,
    )
    .bind(&bad)
    .bind(&[("s", 300), ("t", 7)])
    .expect_shape_error(&["matmul node %", "the inner sizes differ"])
    .check();
}

/// Sizes that only a run can decide (issue 15): a reshape's element count (of a `-1` resolved
/// by floor division), a slice past its axis, an expand's target shape, `gather_elements`'
/// indices larger than the data, a repeating pad of an axis cropped to nothing, a convolution
/// kernel larger than its input, and a tensor too large to address. Each case compiles; where
/// the sizes do not fit, the interpreter refuses the run and the library fails it with
/// `TCC_ERR_SHAPE` and a message naming the node and showing the sizes; where they fit, both
/// compute the same.
#[test]
fn sizes_the_types_leave_to_run_time_are_checked_with_named_errors() {
    // A binding that does not fit, with what the message must say.
    type Bad<'a> = (&'a [(&'a str, i64)], &'a [&'a str]);
    type Binding<'a> = Vec<(&'a str, i64)>;
    let cases: Vec<(&str, &str, Vec<Bad>, Vec<Binding>)> = vec![
        (
            "reshape_infer",
            r#"
graph(%x: f32[s, 8]) {
  %r = reshape<shape=[floordiv(8*s, 3), 3]>(%x) : f32[floordiv(8*s, 3), 3]
  %y = relu(%r) : f32[floordiv(8*s, 3), 3]
  return %y = %y
}
"#,
            vec![(
                &[("s", 5)],
                &["reshape node %", "40 elements ([s, 8]) cannot make [13, 3] ([floordiv(8*s, 3), 3]), which holds 39", "(with s = 5)"],
            )],
            vec![vec![("s", 3)], vec![("s", 6)]],
        ),
        (
            "slice_past_the_axis",
            r#"
graph(%x: f32[s], %y: f32[t]) {
  %z = slice<axes=[0], starts=[0], ends=[t], steps=[1]>(%x) : f32[t]
  %w = add(%z, %y) : f32[t]
  return %w = %w
}
"#,
            vec![(
                &[("s", 3), ("t", 5)],
                &["slice node %", "reads indices 0 to 4", "axis 0 of its operand, which has 3 (`s`)"],
            )],
            vec![vec![("s", 5), ("t", 3)], vec![("s", 4), ("t", 4)]],
        ),
        (
            "expand_target",
            r#"
graph(%x: f32[5], %y: f32[t]) {
  %e = expand<shape=[t]>(%x) : f32[5]
  return %e = %e
}
"#,
            vec![(
                &[("t", 3)],
                &["expand node %", "the target shape's axis 0 has size 3 (`t`), which does not broadcast to 5"],
            )],
            vec![vec![("t", 1)], vec![("t", 5)]],
        ),
        (
            "gather_elements_indices",
            r#"
graph(%x: f32[s, 4], %i: i64[t, 4]) {
  %g = gather_elements<axis=1>(%x, %i) : f32[t, 4]
  return %g = %g
}
"#,
            vec![(
                &[("s", 2), ("t", 5)],
                &["gather_elements node %", "the indices' axis 0 has size 5 (`t`), more than the data's 2 (`s`)"],
            )],
            vec![vec![("s", 5), ("t", 2)], vec![("s", 3), ("t", 3)]],
        ),
        (
            "pad_cropped",
            r#"
graph(%x: f32[s]) {
  %p = pad<mode=edge, pads_begin=[-3], pads_end=[2]>(%x) : f32[s - 1]
  return %p = %p
}
"#,
            vec![
                (&[("s", 3)], &["pad node %", "`edge` padding of axis 0 needs an element to repeat, but the axis keeps 0"]),
                (&[("s", 2)], &["pad node %", "axis 0 of size `s` cannot lose more than it has", "it would keep -1"]),
            ],
            vec![vec![("s", 4)], vec![("s", 7)]],
        ),
        (
            "conv_kernel_too_large",
            r#"
graph(%x: f32[1, 1, w]) {
  %k = const @"k" : f32[1, 1, 3]
  %c = conv<strides=[1], pads_begin=[0], pads_end=[0], dilations=[1], group=1>(%x, %k) : f32[1, 1, w - 2]
  return %c = %c
}
"#,
            vec![
                (&[("w", 2)], &["conv node %", "the kernel does not fit spatial axis 0", "would have 0 positions"]),
                (&[("w", 1)], &["conv node %", "axis 2 of its result, `w - 2`, is -1"]),
            ],
            vec![vec![("w", 3)], vec![("w", 9)]],
        ),
        (
            "too_large",
            r#"
graph(%x: f32[s]) {
  %e = expand<shape=[s*s*s, s]>(%x) : f32[s*s*s, s]
  %r = reduce_sum<axes=[0, 1], keep_dims=false>(%e) : f32[]
  return %r = %r
}
"#,
            vec![
                (&[("s", 65536)], &["expand node %", "would hold 2^63 or more elements"]),
                (&[("s", 4096)], &["expand node %", "its result [s*s*s, s] of f32 would hold 281474976710656 elements, 1125899906842624 bytes"]),
            ],
            vec![vec![("s", 3)]],
        ),
    ];
    let new_case = |name: &str, ir: &str| {
        let case = Case::new(name, ir).weight("k", lowered::random_f32(&[1, 1, 3], "k", -1.0, 1.0));
        if ir.contains("%i: i64") {
            case.input("i", Gen::Int(0, 3))
        } else {
            case
        }
    };
    for (name, ir, bad, good) in cases {
        for (b, (binding, words)) in bad.iter().enumerate() {
            new_case(&format!("{name}_bad{b}"), ir)
                .bind(binding)
                .expect_shape_error(words)
                .check();
        }
        let mut case = new_case(name, ir).tol(Tol::Ulps { ulps: 4, abs: 1e-6 });
        for binding in &good {
            case = case.bind(binding);
        }
        case.check();
    }
}

/// Attention as torch exports it (`Q`, `K` read through transposes, a scale, an additive
/// `-inf` padding mask, softmax, `where(isnan(p), 0, p)`, `· V`, the result transposed back)
/// is one fused kernel (checked: five steps, the other three making `Q`, `K` and the mask;
/// a second attention with a boolean `where` mask is the fifth),
/// at lengths that take one and several blocks of query rows and more than one k-block of
/// `P·V`. `Q` and `K` hold small integers, so the scores are exact whatever the order of the
/// sums; the softmax is within 4 ulp (see `softmax_rows_f32`), fully masked rows give NaN and
/// then 0 exactly; `P·V` sums `s` products: the GEMM bound over `Σ|p·v|` (the bound graph),
/// plus the probabilities' own 4 ulp (relative 4 · 2^-23) carried through the sum.
#[test]
fn attention_written_as_core_ops_one_kernel_each() {
    let head = "graph(%qi: i32[b, s, 2, 16], %ki: i32[b, s, 2, 16], %v: f32[b, 2, s, 8], %mask: bool[b, 1, 1, s]) {";
    let probs = r#"
  %zero = const [0.0] : f32[]
  %ninf = const [-inf] : f32[]
  %scale = const [0.125] : f32[]
  %q = cast<to=f32>(%qi) : f32[b, s, 2, 16]
  %k = cast<to=f32>(%ki) : f32[b, s, 2, 16]
  %qt = transpose<perm=[0, 2, 1, 3]>(%q) : f32[b, 2, s, 16]
  %kt = transpose<perm=[0, 2, 3, 1]>(%k) : f32[b, 2, 16, s]
  %sc = matmul(%qt, %kt) : f32[b, 2, s, s]
  %ss = mul(%sc, %scale) : f32[b, 2, s, s]
  %mf = where(%mask, %zero, %ninf) : f32[b, 1, 1, s]
  %sm = add(%ss, %mf) : f32[b, 2, s, s]
  %p = softmax<axis=3>(%sm) : f32[b, 2, s, s]
  %nan = isnan(%p) : bool[b, 2, s, s]
  %pp = where(%nan, %zero, %p) : f32[b, 2, s, s]"#;
    // A second attention whose mask is a boolean `where` of the scores (as GPT-2's causal
    // mask is written), without the NaN filter.
    let probs2 = r#"
  %sc2 = matmul(%qt, %kt) : f32[b, 2, s, s]
  %ss2 = mul(%sc2, %scale) : f32[b, 2, s, s]
  %sm2 = where(%mask, %ss2, %ninf) : f32[b, 2, s, s]
  %p2 = softmax<axis=3>(%sm2) : f32[b, 2, s, s]"#;
    let ir = format!(
        "{head}{probs}{probs2}
  %o = matmul(%pp, %v) : f32[b, 2, s, 8]
  %ot = transpose<perm=[0, 2, 1, 3]>(%o) : f32[b, s, 2, 8]
  %o2 = matmul(%p2, %v) : f32[b, 2, s, 8]
  return %y = %ot
  return %y2 = %o2
}}"
    );
    let bound = format!(
        "{head}{probs}{probs2}
  %ap = abs(%pp) : f32[b, 2, s, s]
  %av = abs(%v) : f32[b, 2, s, 8]
  %m = matmul(%ap, %av) : f32[b, 2, s, 8]
  %mt = transpose<perm=[0, 2, 1, 3]>(%m) : f32[b, s, 2, 8]
  %ap2 = abs(%p2) : f32[b, 2, s, s]
  %m2 = matmul(%ap2, %av) : f32[b, 2, s, 8]
  return %y = %mt
  return %y2 = %m2
}}"
    );
    let gemm_tol = Tol::Gemm {
        k: Len::Sym("s"),
        slope: 1.0,
        extra: 4.0 * f64::powi(2.0, -23),
    };
    // Without the optimiser every op is its own kernel (the fused form is
    // `fused_op_attention_scales_masks_filter_and_permutations`): 18 steps.
    let mut case = Case::new("fused_attention", &ir)
        .bound(&bound)
        .steps(18)
        .tol_for("y2", gemm_tol)
        .input("qi", Gen::Int(-3, 3))
        .input("ki", Gen::Int(-3, 3))
        .input("v", Gen::Float(-1.0, 1.0))
        .tol_for(
            "y",
            Tol::Gemm {
                k: Len::Sym("s"),
                slope: 1.0,
                extra: 4.0 * f64::powi(2.0, -23),
            },
        );
    for s in [1, 7, 17, 48, 49, 127, 300, 600] {
        case = case.bind(&[("b", 1 + s % 3), ("s", s)]);
    }
    case.check();
}

/// Deterministic `i8` weights over the whole range.
fn random_i8(shape: &[usize], seed: u64) -> tcc_ir::Tensor {
    let n: usize = shape.iter().product();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let values: Vec<i8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8 as i8
        })
        .collect();
    tcc_ir::Tensor::from_vec(shape.to_vec(), values).expect("a consistent tensor")
}

/// `MatMulInteger` of a runtime `u8` `A` by constant `i8` weights (dynamic quantisation's
/// form) runs the vector kernel (vpmaddubsw / vpmaddwd, and vpdpbusd for the exact form where
/// the target has VNNI) on the host, on AVX2 and, where the CPU runs it, on AVX-512 without
/// VNNI, in both arithmetics, with a per-tensor and a per-column `B` zero point, `k` odd and even, column
/// counts off the panel width, and rows off the tile: exact (integer arithmetic, i32
/// wrapping), against the interpreter. Full 8-bit ranges make the pair sums exceed i16, so
/// the saturation is exercised.
#[test]
fn matmul_integer_with_constant_weights() {
    let shapes = [
        (1usize, 1usize),
        (7, 17),
        (33, 65),
        (64, 128),
        (300, 33),
        (127, 200),
    ];
    let mut inputs = Vec::new();
    let mut ir = Vec::new();
    let mut returns = Vec::new();
    let mut weights = Vec::new();
    for (g, &(k, n)) in shapes.iter().enumerate() {
        inputs.push(format!("%a{g}: u8[b, m, {k}]"));
        ir.push(format!("  %w{g} = const @\"w{g}\" : i8[{k}, {n}]"));
        weights.push((format!("w{g}"), random_i8(&[k, n], g as u64 + 1)));
        ir.push(format!("  %zc{g} = const @\"zc{g}\" : i8[{n}]"));
        weights.push((format!("zc{g}"), random_i8(&[n], g as u64 + 100)));
        for (mode, sat) in [("s", true), ("e", false)] {
            ir.push(format!(
                "  %{mode}t{g} = matmul_integer<saturate_pairs={sat}>(%a{g}, %w{g}, %za, %zt) : i32[b, m, {n}]"
            ));
            ir.push(format!(
                "  %{mode}c{g} = matmul_integer<saturate_pairs={sat}>(%a{g}, %w{g}, %za, %zc{g}) : i32[b, m, {n}]"
            ));
            returns.push(format!("  return %y{mode}t{g} = %{mode}t{g}"));
            returns.push(format!("  return %y{mode}c{g} = %{mode}c{g}"));
        }
    }
    let text = format!(
        "graph({}, %za: u8[]) {{\n  %zt = const [-3] : i8[]\n{}\n{}\n}}",
        inputs.join(", "),
        ir.join("\n"),
        returns.join("\n")
    );
    // Every path this CPU runs: the host's (with VNNI where it has it, `vpdpbusd` for the exact
    // form), AVX2's and, where AVX-512 runs, AVX-512 without VNNI.
    let mut case = Case::new("matmul_integer_const_b", &text)
        .input("za", Gen::Int(0, 255))
        .also_on("x86-64-v4");
    for g in 0..shapes.len() {
        case = case.input(&format!("a{g}"), Gen::Int(0, 255));
    }
    for (name, t) in weights {
        case = case.weight(&name, t);
    }
    for (b, m) in [(1, 1), (1, 5), (2, 7), (1, 33), (3, 17)] {
        case = case.bind(&[("b", b), ("m", m)]);
    }
    case.check();
}

/// `erf` of f32 values is computed inline in f64 (fdlibm's algorithm, every range evaluated
/// and one selected, so the loop vectorises): over all its ranges (`|x|` below 0.84375, to
/// 1.25, to 1/0.35, to 6, beyond), dense around the breakpoints, and at the special values
/// (NaN, the infinities, the breakpoints themselves). Within 1 ulp of `f64` of the true erf,
/// as the interpreter's is, so the f32 results agree up to a rare one-ulp flip: LIBM.
#[test]
fn erf_inline_over_all_its_ranges() {
    Case::new(
        "erf_ranges",
        r#"
graph(%x: f32[n], %y: f32[n], %z: f32[12]) {
  %c = const [nan, inf, -inf, 0.0, 1e-30, 0.84375, -1.25, 2.857143, 6.0, -6.0, 30.0, 1e-5] : f32[12]
  %cz = add(%c, %z) : f32[12]
  %ex = erf(%x) : f32[n]
  %ey = erf(%y) : f32[n]
  %ec = erf(%cz) : f32[12]
  return %erf_wide = %ex
  return %erf_near = %ey
  return %erf_special = %ec
}
"#,
    )
    .sizes("n", &[1, 17, 1031, 20000])
    .input("x", Gen::Float(-8.0, 8.0))
    .input("y", Gen::Float(-1.5, 1.5))
    .input("z", Gen::Float(0.0, 0.0))
    .tol(LIBM)
    .check();
}

// ---------------------------------------------------------------------------------------------
// Fused ops (`gemm`, `attention`, `fused`, `add_layer_norm`, `rms_norm`): each is one kernel,
// checked against the interpreter, which evaluates the op's expansion into core ops.
// ---------------------------------------------------------------------------------------------

/// One `gemm` of [`fused_op_gemm_const_b_every_activation_with_and_without_bias`].
struct FusedGemm {
    k: usize,
    n: usize,
    act: &'static str,
    /// The bias's shape, if any: `[n]` or `[1, n]`.
    bias: Option<&'static str>,
}

/// `gemm` by a constant `[k, n]` B is the packed-B GEMM with the bias and the activation in its
/// epilogue (checked: one step each), every activation with and without a bias of shape `[n]`
/// or `[1, n]`, k and n off the tiles, enough columns to split by columns, and a rank-3 A.
/// The kernel is the one the matched MatMul + Add + activation patterns use, so are the
/// tolerances (see `gemm_const_b_with_epilogues`): the GEMM bound over `Σ|a·w| + |bias|` with
/// slope 1 for none and relu, 1.13 and 2e-7 for the exact GELU (its vector erf), 1.13 and
/// 4e-7 over the tanh bound graph `M (1 + 2 (M + 0.045 M^3))` for the tanh GELU.
#[test]
fn fused_op_gemm_const_b_every_activation_with_and_without_bias() {
    let gemms = [
        FusedGemm {
            k: 1,
            n: 1,
            act: "none",
            bias: None,
        },
        FusedGemm {
            k: 7,
            n: 300,
            act: "none",
            bias: Some("[n]"),
        },
        FusedGemm {
            k: 127,
            n: 33,
            act: "relu",
            bias: None,
        },
        FusedGemm {
            k: 17,
            n: 33,
            act: "relu",
            bias: Some("[1, n]"),
        },
        FusedGemm {
            k: 17,
            n: 7,
            act: "gelu_erf",
            bias: None,
        },
        FusedGemm {
            k: 300,
            n: 65,
            act: "gelu_erf",
            bias: Some("[n]"),
        },
        FusedGemm {
            k: 33,
            n: 70,
            act: "gelu_tanh",
            bias: None,
        },
        // 768 columns: 24 panels of 32 (48 of 16), split by columns over 3 threads.
        FusedGemm {
            k: 33,
            n: 768,
            act: "gelu_tanh",
            bias: Some("[1, n]"),
        },
    ];
    let ks = [1, 7, 17, 33, 127, 300];
    let mut inputs: Vec<String> = ks.iter().map(|k| format!("%a{k}: f32[m, {k}]")).collect();
    inputs.push("%ab: f32[b, m, 17]".into());
    let header = format!("graph({}) {{", inputs.join(", "));
    let mut ir = vec![header.clone()];
    let mut bound = vec![
        header,
        "  %one = const [1.0] : f32[]".into(),
        "  %two = const [2.0] : f32[]".into(),
        "  %kcube = const [0.044715] : f32[]".into(),
    ];
    let (mut returns, mut bound_returns, mut weights, mut tols) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (g, gemm) in gemms.iter().enumerate() {
        let (k, n) = (gemm.k, gemm.n);
        let ty = format!("f32[m, {n}]");
        let w = format!("w{g}");
        weights.push((w.clone(), lowered::random_f32(&[k, n], &w, -1.0, 1.0)));
        ir.push(format!("  %{w} = const @\"{w}\" : f32[{k}, {n}]"));
        bound.push(format!("  %{w} = const @\"{w}\" : f32[{k}, {n}]"));
        bound.push(format!("  %aa{g} = abs(%a{k}) : f32[m, {k}]"));
        bound.push(format!("  %aw{g} = abs(%{w}) : f32[{k}, {n}]"));
        bound.push(format!("  %m{g} = matmul(%aa{g}, %aw{g}) : {ty}"));
        let mut m = format!("%m{g}");
        let mut args = format!("%a{k}, %{w}");
        if let Some(shape) = gemm.bias {
            let b = format!("bias{g}");
            let dims: Vec<usize> = if shape == "[n]" { vec![n] } else { vec![1, n] };
            let shape = shape.replace('n', &n.to_string());
            weights.push((b.clone(), lowered::random_f32(&dims, &b, -1.0, 1.0)));
            ir.push(format!("  %{b} = const @\"{b}\" : f32{shape}"));
            bound.push(format!("  %{b} = const @\"{b}\" : f32{shape}"));
            bound.push(format!("  %ab{g} = abs(%{b}) : f32{shape}"));
            bound.push(format!("  %mb{g} = add({m}, %ab{g}) : {ty}"));
            m = format!("%mb{g}");
            args = format!("{args}, %{b}");
        }
        ir.push(format!(
            "  %y{g} = gemm<activation={}, bias={}>({args}) : {ty}",
            gemm.act,
            gemm.bias.is_some()
        ));
        let (slope, extra) = match gemm.act {
            "gelu_erf" => (1.13, 2e-7),
            "gelu_tanh" => {
                bound.push(format!("  %b{g}3 = mul({m}, {m}) : {ty}"));
                bound.push(format!("  %b{g}4 = mul(%b{g}3, {m}) : {ty}"));
                bound.push(format!("  %b{g}5 = mul(%b{g}4, %kcube) : {ty}"));
                bound.push(format!("  %b{g}6 = add(%b{g}5, {m}) : {ty}"));
                bound.push(format!("  %b{g}7 = mul(%b{g}6, %two) : {ty}"));
                bound.push(format!("  %b{g}8 = add(%b{g}7, %one) : {ty}"));
                bound.push(format!("  %b{g}9 = mul(%b{g}8, {m}) : {ty}"));
                m = format!("%b{g}9");
                (1.13, 4e-7)
            }
            _ => (1.0, 0.0),
        };
        returns.push(format!("  return %y{g} = %y{g}"));
        bound_returns.push(format!("  return %y{g} = {m}"));
        tols.push((
            format!("y{g}"),
            Tol::Gemm {
                k: Len::Fixed(k),
                slope,
                extra,
            },
        ));
    }
    // A batched A (rank 3) by the constant and bias of GEMM 3, with a relu.
    ir.push("  %yb = gemm<activation=relu, bias=true>(%ab, %w3, %bias3) : f32[b, m, 33]".into());
    returns.push("  return %yb = %yb".into());
    bound.push("  %aab = abs(%ab) : f32[b, m, 17]".into());
    bound.push("  %mbb = matmul(%aab, %aw3) : f32[b, m, 33]".into());
    bound.push("  %mbb2 = add(%mbb, %ab3) : f32[b, m, 33]".into());
    bound_returns.push("  return %yb = %mbb2".into());
    tols.push(("yb".into(), Tol::gemm(Len::Fixed(17))));
    ir.extend(returns);
    ir.push("}".into());
    bound.extend(bound_returns);
    bound.push("}".into());
    let mut case = Case::new("fused_gemm_const_b", &ir.join("\n"))
        .bound(&bound.join("\n"))
        .steps(gemms.len() + 1);
    for (name, t) in weights {
        case = case.weight(&name, t);
    }
    for (name, tol) in tols {
        case = case.tol_for(&name, tol);
    }
    for m in SIZES {
        case = case.bind(&[("m", m), ("b", 1 + m % 3)]);
    }
    case.check();
}

/// `gemm` of runtime operands (or a constant B read through `perm_b`) is the runtime-B
/// product, reading A and B through `perm_a` and `perm_b` and writing through `perm_out` in
/// place (checked: one step each): each permutation alone, all three as attention's head
/// split, and B broadcast over A's batch. The kernel and its tolerance are the runtime
/// matmul's (see `matmul_of_runtime_operands_at_every_size`): the GEMM bound over `Σ|a·b|`,
/// computed by the same gemms on `|a|` and `|b|` (the bound graph).
#[test]
fn fused_op_gemm_runtime_operands_through_permutations() {
    let graph_inputs = "%a: f32[m, k], %b: f32[k, n], %a3: f32[m, bt, k], %ab3: f32[bt, m, k], \
                        %b3: f32[bt, k, n], %bt3: f32[bt, n, k], %q4: f32[bt, m, 2, k], \
                        %k4: f32[bt, n, 2, k], %a33: f32[m, 33]";
    let body = |p: &str| {
        format!(
            r#"
  %wt = const @"wt" : f32[40, 33]
  %y0 = gemm<activation=none, bias=false>({p}a, {p}b) : f32[m, n]
  %y1 = gemm<activation=none, bias=false, perm_a=[1, 0, 2]>({p}a3, {p}b3) : f32[bt, m, n]
  %y2 = gemm<activation=none, bias=false, perm_b=[0, 2, 1]>({p}ab3, {p}bt3) : f32[bt, m, n]
  %y3 = gemm<activation=none, bias=false, perm_out=[1, 0, 2]>({p}ab3, {p}b3) : f32[m, bt, n]
  %y4 = gemm<activation=none, bias=false, perm_a=[0, 2, 1, 3], perm_b=[0, 2, 3, 1], perm_out=[0, 2, 1, 3]>({p}q4, {p}k4) : f32[bt, m, 2, n]
  %y5 = gemm<activation=none, bias=false>({p}a, {p}b3) : f32[bt, m, n]
  %y6 = gemm<activation=none, bias=false, perm_b=[1, 0]>({p}a33, {p}wt) : f32[m, 40]
  return %y0 = %y0
  return %y1 = %y1
  return %y2 = %y2
  return %y3 = %y3
  return %y4 = %y4
  return %y5 = %y5
  return %y6 = %y6
}}
"#
        )
    };
    let ir = format!("graph({graph_inputs}) {{{}", body("%"));
    let abs = "
  %Aa = abs(%a) : f32[m, k]
  %Ab = abs(%b) : f32[k, n]
  %Aa3 = abs(%a3) : f32[m, bt, k]
  %Aab3 = abs(%ab3) : f32[bt, m, k]
  %Ab3 = abs(%b3) : f32[bt, k, n]
  %Abt3 = abs(%bt3) : f32[bt, n, k]
  %Aq4 = abs(%q4) : f32[bt, m, 2, k]
  %Ak4 = abs(%k4) : f32[bt, n, 2, k]
  %Aa33 = abs(%a33) : f32[m, 33]";
    // The bound reads |wt|: the constant's absolute value, folded into the weight.
    let bound = format!("graph({graph_inputs}) {{{abs}{}", body("%A"))
        .replace("%Awt", "%wt")
        .replace("const @\"wt\"", "const @\"wt_abs\"");
    let wt = lowered::random_f32(&[40, 33], "wt", -1.0, 1.0);
    let wt_abs = tcc_ir::Tensor::new(
        vec![40, 33],
        tcc_ir::TensorData::F32(
            wt.as_slice::<f32>()
                .expect("f32")
                .iter()
                .map(|x| x.abs())
                .collect(),
        ),
    )
    .expect("a consistent tensor");
    let mut case = Case::new("fused_gemm_runtime", &ir)
        .bound(&bound)
        .weight("wt", wt)
        .weight("wt_abs", wt_abs)
        .steps(7)
        .tol(Tol::gemm(Len::Sym("k")))
        .tol_for("y6", Tol::gemm(Len::Fixed(33)));
    for (bt, m, n, k) in [
        (1, 1, 1, 1),
        (3, 7, 17, 33),
        (2, 33, 7, 17),
        (1, 17, 33, 7),
        (2, 127, 33, 127),
        (1, 300, 127, 33),
        (2, 33, 300, 300),
    ] {
        case = case.bind(&[("bt", bt), ("m", m), ("n", n), ("k", k)]);
    }
    case.check();
}

/// `attention` is the fused attention kernel (checked: one step each, besides the casts, the
/// mask and two transposes that make operands): torch's form (Q, K, V and the result through
/// permutations, `/ sqrt(d)`, an additive `-inf` padding mask broadcast over heads and
/// queries, the NaN filter), a `* 0.125` scale with no mask or filter and no permutations,
/// no scale with the mask and only K permuted (fully masked rows give NaN, as the
/// interpreter's), and a float mask per query row broadcast over heads with V permuted. `Q`
/// and `K` hold small integers, so the scores are exact before the scale, which both sides
/// apply as the same f32 operation. The kernel and its tolerance are those of the matched
/// attention (see `attention_written_as_core_ops_one_kernel_each`): the GEMM bound over `Σ|p·v|`
/// plus the probabilities' own 4 ulp (relative `4 · 2^-23`) carried through the sum.
#[test]
fn fused_op_attention_scales_masks_filter_and_permutations() {
    let head = "graph(%qi: i32[b, s, 2, 16], %ki: i32[b, s, 2, 16], %v: f32[b, s, 2, 8], \
                %v2: f32[b, 2, s, 8], %mask: bool[b, 1, 1, s], %m4: f32[b, 1, s, s], \
                %dead: bool[b, 1, s, 1]) {";
    let common = r#"
  %zero = const [0.0] : f32[]
  %ninf = const [-inf] : f32[]
  %q = cast<to=f32>(%qi) : f32[b, s, 2, 16]
  %k = cast<to=f32>(%ki) : f32[b, s, 2, 16]
  %mf = where(%mask, %zero, %ninf) : f32[b, 1, 1, s]
  %qt = transpose<perm=[0, 2, 1, 3]>(%q) : f32[b, 2, s, 16]
  %kt = transpose<perm=[0, 2, 3, 1]>(%k) : f32[b, 2, 16, s]"#;
    let ir = format!(
        "{head}{common}
  %o1 = attention<scale=div(5.656854), mask=add, nan_filter=true, perm_q=[0, 2, 1, 3], perm_k=[0, 2, 3, 1], perm_v=[0, 2, 1, 3], perm_out=[0, 2, 1, 3]>(%q, %k, %v, %mf) : f32[b, s, 2, 8]
  %o2 = attention<scale=mul(0.125), mask=none, nan_filter=false>(%qt, %kt, %v2) : f32[b, 2, s, 8]
  %o3 = attention<scale=none, mask=add, nan_filter=false, perm_k=[0, 2, 3, 1]>(%qt, %k, %v2, %mf) : f32[b, 2, s, 8]
  %o4 = attention<scale=div(4.0), mask=add, nan_filter=true, perm_v=[0, 2, 1, 3]>(%qt, %kt, %v, %m4) : f32[b, 2, s, 8]
  %o5 = attention<scale=mul(0.125), mask=bool, nan_filter=true>(%qt, %kt, %v2, %mask) : f32[b, 2, s, 8]
  %o6 = attention<scale=none, mask=add, nan_filter=true, zero_where=true>(%qt, %kt, %v2, %mf, %dead) : f32[b, 2, s, 8]
  return %o1 = %o1
  return %o2 = %o2
  return %o3 = %o3
  return %o4 = %o4
  return %o5 = %o5
  return %o6 = %o6
}}"
    );
    // The probabilities by core ops, their absolute values times |V|.
    let bound = format!(
        "{head}{common}
  %c1 = const [5.656854] : f32[]
  %c2 = const [0.125] : f32[]
  %c4 = const [4.0] : f32[]
  %sc = matmul(%qt, %kt) : f32[b, 2, s, s]
  %vt = transpose<perm=[0, 2, 1, 3]>(%v) : f32[b, 2, s, 8]
  %av = abs(%vt) : f32[b, 2, s, 8]
  %av2 = abs(%v2) : f32[b, 2, s, 8]
  %s1 = div(%sc, %c1) : f32[b, 2, s, s]
  %a1 = add(%s1, %mf) : f32[b, 2, s, s]
  %p1 = softmax<axis=3>(%a1) : f32[b, 2, s, s]
  %n1 = isnan(%p1) : bool[b, 2, s, s]
  %f1 = where(%n1, %zero, %p1) : f32[b, 2, s, s]
  %e1 = abs(%f1) : f32[b, 2, s, s]
  %m1 = matmul(%e1, %av) : f32[b, 2, s, 8]
  %o1 = transpose<perm=[0, 2, 1, 3]>(%m1) : f32[b, s, 2, 8]
  %s2 = mul(%sc, %c2) : f32[b, 2, s, s]
  %p2 = softmax<axis=3>(%s2) : f32[b, 2, s, s]
  %e2 = abs(%p2) : f32[b, 2, s, s]
  %o2 = matmul(%e2, %av2) : f32[b, 2, s, 8]
  %a3 = add(%sc, %mf) : f32[b, 2, s, s]
  %p3 = softmax<axis=3>(%a3) : f32[b, 2, s, s]
  %e3 = abs(%p3) : f32[b, 2, s, s]
  %o3 = matmul(%e3, %av2) : f32[b, 2, s, 8]
  %s4 = div(%sc, %c4) : f32[b, 2, s, s]
  %a4 = add(%s4, %m4) : f32[b, 2, s, s]
  %p4 = softmax<axis=3>(%a4) : f32[b, 2, s, s]
  %n4 = isnan(%p4) : bool[b, 2, s, s]
  %f4 = where(%n4, %zero, %p4) : f32[b, 2, s, s]
  %e4 = abs(%f4) : f32[b, 2, s, s]
  %o4 = matmul(%e4, %av) : f32[b, 2, s, 8]
  %w5 = where(%mask, %s2, %ninf) : f32[b, 2, s, s]
  %p5 = softmax<axis=3>(%w5) : f32[b, 2, s, s]
  %n5 = isnan(%p5) : bool[b, 2, s, s]
  %f5 = where(%n5, %zero, %p5) : f32[b, 2, s, s]
  %e5 = abs(%f5) : f32[b, 2, s, s]
  %o5 = matmul(%e5, %av2) : f32[b, 2, s, 8]
  %n6 = isnan(%p3) : bool[b, 2, s, s]
  %f6 = where(%n6, %zero, %p3) : f32[b, 2, s, s]
  %z6 = where(%dead, %zero, %f6) : f32[b, 2, s, s]
  %e6 = abs(%z6) : f32[b, 2, s, s]
  %o6 = matmul(%e6, %av2) : f32[b, 2, s, 8]
  return %o1 = %o1
  return %o2 = %o2
  return %o3 = %o3
  return %o4 = %o4
  return %o5 = %o5
  return %o6 = %o6
}}"
    );
    let mut case = Case::new("fused_attention_op", &ir)
        .bound(&bound)
        // Two casts, the mask, two transposes and six attentions.
        .steps(11)
        .input("qi", Gen::Int(-3, 3))
        .input("ki", Gen::Int(-3, 3))
        .input("v", Gen::Float(-1.0, 1.0))
        .input("v2", Gen::Float(-1.0, 1.0))
        .tol(Tol::Gemm {
            k: Len::Sym("s"),
            slope: 1.0,
            extra: 4.0 * f64::powi(2.0, -23),
        });
    for s in [1, 7, 17, 48, 49, 127, 300] {
        case = case.bind(&[("b", 1 + s % 3), ("s", s)]);
    }
    case.check();
}

/// Attention's exponentials with `x - max` rounded once and summed four vectors at a time in
/// f32 (`ATTENTION_EXP`): a float mask per query row spread over `[-40, 40]` puts the scores
/// over the whole range whose exponentials are not 0 (the floor is `ln 2^-60`, about -41.6),
/// where the rounded shift is inexact, and the lengths take whole groups of four vectors,
/// the vectors after them and a partial one. Deferred (no filter: `P · V` is divided by the
/// row sums) and normalised in place (with the NaN filter). The scores themselves are exact
/// (small integers over 4, plus the mask, rounded once as the interpreter does); the
/// tolerance is that of `fused_op_attention_scales_masks_filter_and_permutations`.
#[test]
fn fused_op_attention_rounded_shift_over_wide_scores() {
    let head = "graph(%qi: i32[b, 2, s, 16], %ki: i32[b, 2, 16, s], %v: f32[b, 2, s, 8], \
                %m4: f32[b, 1, s, s]) {";
    let common = r#"
  %q = cast<to=f32>(%qi) : f32[b, 2, s, 16]
  %k = cast<to=f32>(%ki) : f32[b, 2, 16, s]"#;
    let ir = format!(
        "{head}{common}
  %o1 = attention<scale=div(4.0), mask=add, nan_filter=false>(%q, %k, %v, %m4) : f32[b, 2, s, 8]
  %o2 = attention<scale=div(4.0), mask=add, nan_filter=true>(%q, %k, %v, %m4) : f32[b, 2, s, 8]
  return %o1 = %o1
  return %o2 = %o2
}}"
    );
    let bound = format!(
        "{head}{common}
  %c4 = const [4.0] : f32[]
  %sc = matmul(%q, %k) : f32[b, 2, s, s]
  %s4 = div(%sc, %c4) : f32[b, 2, s, s]
  %a4 = add(%s4, %m4) : f32[b, 2, s, s]
  %p4 = softmax<axis=3>(%a4) : f32[b, 2, s, s]
  %e4 = abs(%p4) : f32[b, 2, s, s]
  %av = abs(%v) : f32[b, 2, s, 8]
  %o = matmul(%e4, %av) : f32[b, 2, s, 8]
  return %o1 = %o
  return %o2 = %o
}}"
    );
    let mut case = Case::new("attention_rounded_shift", &ir)
        .bound(&bound)
        // Two casts and two attentions.
        .steps(4)
        .input("qi", Gen::Int(-3, 3))
        .input("ki", Gen::Int(-3, 3))
        .input("v", Gen::Float(-1.0, 1.0))
        .input("m4", Gen::Float(-40.0, 40.0))
        .tol(Tol::Gemm {
            k: Len::Sym("s"),
            slope: 1.0,
            extra: 4.0 * f64::powi(2.0, -23),
        });
    for s in [63, 64, 65, 130, 200, 257] {
        case = case.bind(&[("b", 1 + s % 2), ("s", s)]);
    }
    case.check();
}

/// Attention's results do not depend on how many masked keys follow a row's real ones, bit
/// for bit: a padded batch's rows and a packed batch's then agree (which padding
/// elimination's tests and a quantised model's gate rely on). Queries over `t` keys, and
/// over the same keys followed by `u - t` others masked with `-inf`, on the host path and
/// on AVX2, at lengths on both sides of the exponential pass's groups of four vectors (whose
/// f32 sums would otherwise pair a row's terms differently with and without the zeros).
#[test]
fn attention_does_not_depend_on_trailing_masked_keys() {
    let f32s = |t: &Tensor| match t.data() {
        TensorData::F32(v) => v.clone(),
        _ => panic!("an f32 tensor"),
    };
    let dir = tempfile::tempdir().unwrap();
    for (t, u) in [
        (5, 9),
        (40, 64),
        (40, 130),
        (63, 64),
        (64, 65),
        (100, 300),
        (130, 257),
    ] {
        let (h, s, d, dv) = (2, 50, 16, 8);
        let ir = format!(
            "graph(%q: f32[1, {h}, {s}, {d}], %ks: f32[1, {h}, {d}, {t}], \
             %vs: f32[1, {h}, {t}, {dv}], %kl: f32[1, {h}, {d}, {u}], \
             %vl: f32[1, {h}, {u}, {dv}], %m: f32[1, 1, 1, {u}]) {{
  %o1 = attention<scale=mul(0.25), mask=none, nan_filter=false>(%q, %ks, %vs) : f32[1, {h}, {s}, {dv}]
  %o2 = attention<scale=mul(0.25), mask=add, nan_filter=false>(%q, %kl, %vl, %m) : f32[1, {h}, {s}, {dv}]
  return %o1 = %o1
  return %o2 = %o2
}}"
        );
        let graph = tcc_ir::text::parse(&ir, &|_| None).unwrap();
        let q = random_f32(&[1, h, s, d], "q", -2.0, 2.0);
        let ks = random_f32(&[1, h, d, t], "ks", -2.0, 2.0);
        let vs = random_f32(&[1, h, t, dv], "vs", -1.0, 1.0);
        let (ksv, vsv) = (f32s(&ks), f32s(&vs));
        let extra_k = f32s(&random_f32(&[h * d * u], "ek", -2.0, 2.0));
        let extra_v = f32s(&random_f32(&[h * u * dv], "ev", -1.0, 1.0));
        // K: [h, d, keys], the first t keys of each row those of ks; V: [h, keys, dv], the
        // first t rows those of vs.
        let kl: Vec<f32> = (0..h * d * u)
            .map(|i| match i % u {
                j if j < t => ksv[i / u * t + j],
                _ => extra_k[i],
            })
            .collect();
        let vl: Vec<f32> = (0..h * u * dv)
            .map(|i| {
                let (head, key) = (i / (u * dv), i / dv % u);
                match key < t {
                    true => vsv[(head * t + key) * dv + i % dv],
                    false => extra_v[i],
                }
            })
            .collect();
        let m: Vec<f32> = (0..u)
            .map(|j| if j < t { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let kl = Tensor::new(vec![1, h, d, u], TensorData::F32(kl)).unwrap();
        let vl = Tensor::new(vec![1, h, u, dv], TensorData::F32(vl)).unwrap();
        let m = Tensor::new(vec![1, 1, 1, u], TensorData::F32(m)).unwrap();
        for target in ["host", "x86-64-v3"] {
            let (lib, _) = Library::build(&graph, target, dir.path()).unwrap();
            let out = lib
                .session(1)
                .run(&[&q, &ks, &vs, &kl, &vl, &m], 2)
                .unwrap();
            let (short, long) = (f32s(&out[0]), f32s(&out[1]));
            let differ = short
                .iter()
                .zip(&long)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                differ,
                0,
                "{target}, {t} keys and {u} with the last masked: {differ} of {} outputs differ",
                short.len()
            );
        }
    }
}

/// Causal `attention` skips the keys no query row of a block sees: as many queries as keys
/// (GPT-2's prefill), with a `-inf` padding mask and the NaN filter, a KV cache's last rows
/// (`t = s + 3` keys for `s` queries) and more queries than keys (`u = s + 2`: the first two
/// rows see no key, NaN as the interpreter's, 0 through the filter), at lengths around the
/// kernel's 48-row blocks up to 600. The bound writes the causal mask with `trilu` (a
/// different op from the expansion's ranges); tolerance as
/// `fused_op_attention_scales_masks_filter_and_permutations`.
#[test]
fn fused_op_attention_causal() {
    let head = "graph(%qi: i32[b, 2, s, 16], %ki: i32[b, 2, 16, s], %v: f32[b, 2, s, 8], \
                %mask: bool[b, 1, 1, s], %kc: i32[b, 2, 16, t], %vc: f32[b, 2, t, 8], \
                %ql: i32[b, 2, u, 16]) {";
    let common = r#"
  %zero = const [0.0] : f32[]
  %ninf = const [-inf] : f32[]
  %q = cast<to=f32>(%qi) : f32[b, 2, s, 16]
  %k = cast<to=f32>(%ki) : f32[b, 2, 16, s]
  %kcf = cast<to=f32>(%kc) : f32[b, 2, 16, t]
  %qlf = cast<to=f32>(%ql) : f32[b, 2, u, 16]
  %mf = where(%mask, %zero, %ninf) : f32[b, 1, 1, s]"#;
    let ir = format!(
        "{head}{common}
  %o1 = attention<scale=mul(0.25), mask=none, nan_filter=false, causal=true>(%q, %k, %v) : f32[b, 2, s, 8]
  %o2 = attention<scale=mul(0.25), mask=add, nan_filter=true, causal=true>(%q, %k, %v, %mf) : f32[b, 2, s, 8]
  %o3 = attention<scale=none, mask=none, nan_filter=false, causal=true>(%q, %kcf, %vc) : f32[b, 2, s, 8]
  %o4 = attention<scale=none, mask=none, nan_filter=false, causal=true>(%qlf, %k, %v) : f32[b, 2, u, 8]
  %o5 = attention<scale=none, mask=none, nan_filter=true, causal=true>(%qlf, %k, %v) : f32[b, 2, u, 8]
  return %o1 = %o1
  return %o2 = %o2
  return %o3 = %o3
  return %o4 = %o4
  return %o5 = %o5
}}"
    );
    // The probabilities by core ops (the causal mask by `trilu`), their absolute values times
    // |V|.
    let bound = format!(
        "{head}{common}
  %c = const [0.25] : f32[]
  %sc = matmul(%q, %k) : f32[b, 2, s, s]
  %av = abs(%v) : f32[b, 2, s, 8]
  %avc = abs(%vc) : f32[b, 2, t, 8]
  %s1 = mul(%sc, %c) : f32[b, 2, s, s]
  %one1 = equal(%s1, %s1) : bool[b, 2, s, s]
  %f1 = cast<to=f32>(%one1) : f32[b, 2, s, s]
  %t1 = trilu<upper=false, k=0>(%f1) : f32[b, 2, s, s]
  %sees1 = cast<to=bool>(%t1) : bool[b, 2, s, s]
  %w1 = where(%sees1, %s1, %ninf) : f32[b, 2, s, s]
  %p1 = softmax<axis=3>(%w1) : f32[b, 2, s, s]
  %e1 = abs(%p1) : f32[b, 2, s, s]
  %o1 = matmul(%e1, %av) : f32[b, 2, s, 8]
  %a2 = add(%s1, %mf) : f32[b, 2, s, s]
  %w2 = where(%sees1, %a2, %ninf) : f32[b, 2, s, s]
  %p2 = softmax<axis=3>(%w2) : f32[b, 2, s, s]
  %n2 = isnan(%p2) : bool[b, 2, s, s]
  %z2 = where(%n2, %zero, %p2) : f32[b, 2, s, s]
  %e2 = abs(%z2) : f32[b, 2, s, s]
  %o2 = matmul(%e2, %av) : f32[b, 2, s, 8]
  %sc3 = matmul(%q, %kcf) : f32[b, 2, s, t]
  %one3 = equal(%sc3, %sc3) : bool[b, 2, s, t]
  %f3 = cast<to=f32>(%one3) : f32[b, 2, s, t]
  %t3 = trilu<upper=false, k=3>(%f3) : f32[b, 2, s, t]
  %sees3 = cast<to=bool>(%t3) : bool[b, 2, s, t]
  %w3 = where(%sees3, %sc3, %ninf) : f32[b, 2, s, t]
  %p3 = softmax<axis=3>(%w3) : f32[b, 2, s, t]
  %e3 = abs(%p3) : f32[b, 2, s, t]
  %o3 = matmul(%e3, %avc) : f32[b, 2, s, 8]
  %sc4 = matmul(%qlf, %k) : f32[b, 2, u, s]
  %one4 = equal(%sc4, %sc4) : bool[b, 2, u, s]
  %f4 = cast<to=f32>(%one4) : f32[b, 2, u, s]
  %t4 = trilu<upper=false, k=-2>(%f4) : f32[b, 2, u, s]
  %sees4 = cast<to=bool>(%t4) : bool[b, 2, u, s]
  %w4 = where(%sees4, %sc4, %ninf) : f32[b, 2, u, s]
  %p4 = softmax<axis=3>(%w4) : f32[b, 2, u, s]
  %n4 = isnan(%p4) : bool[b, 2, u, s]
  %z4 = where(%n4, %zero, %p4) : f32[b, 2, u, s]
  %e4 = abs(%z4) : f32[b, 2, u, s]
  %o4 = matmul(%e4, %av) : f32[b, 2, u, 8]
  return %o1 = %o1
  return %o2 = %o2
  return %o3 = %o3
  return %o4 = %o4
  return %o5 = %o4
}}"
    );
    let mut case = Case::new("fused_attention_causal", &ir)
        .bound(&bound)
        // Four casts, the mask and five attentions.
        .steps(10)
        .input("qi", Gen::Int(-3, 3))
        .input("ki", Gen::Int(-3, 3))
        .input("kc", Gen::Int(-3, 3))
        .input("ql", Gen::Int(-3, 3))
        .input("v", Gen::Float(-1.0, 1.0))
        .input("vc", Gen::Float(-1.0, 1.0))
        .tol(Tol::Gemm {
            k: Len::Sym("s"),
            slope: 1.0,
            extra: 4.0 * f64::powi(2.0, -23),
        });
    for s in [1, 2, 7, 47, 48, 49, 97, 300, 600] {
        case = case.bind(&[("b", 1 + s % 2), ("s", s), ("t", s + 3), ("u", s + 2)]);
    }
    case.check();
}

/// `causal_min` (the dynamo opset-18 exporter's causal and padding mask, filled with torch's
/// `finfo.min`): hidden keys score `f32::MIN`, so a row whose visible keys are all padding (at
/// least half of row 0's, a quarter of row 1's: the padding mask is true with probability one
/// half) or that sees no key (`u = s + 2` queries: the first two rows) weighs every key
/// equally, the mean of `V`'s rows; the other rows are as plain `causal`. With a `-inf`
/// padding mask, a row whose visible keys are all padding is the mean of `V`'s rows too (its
/// visible scores are below `f32::MIN`), as the op's expansion defines it. A mask of NaN
/// where the padding mask is true makes a row that sees such a key NaN, not the mean of `V`:
/// its maximum is NaN, which the softmax's row maximum must keep (one that skipped NaNs would
/// find `f32::MIN` and take the row for one that sees only padding). Lengths 1 to 600; the
/// bound writes the mask with `trilu` (plus the mean of `|V|` for the third and fourth),
/// tolerance as `fused_op_attention_causal`.
#[test]
fn fused_op_attention_causal_min() {
    let head = "graph(%qi: i32[b, 2, s, 16], %ki: i32[b, 2, 16, s], %v: f32[b, 2, s, 8], \
                %mask: bool[b, 1, 1, s], %ql: i32[b, 2, u, 16]) {";
    let common = r#"
  %zero = const [0.0] : f32[]
  %fmin = const [-3.4028235e38] : f32[]
  %ninf = const [-inf] : f32[]
  %q = cast<to=f32>(%qi) : f32[b, 2, s, 16]
  %k = cast<to=f32>(%ki) : f32[b, 2, 16, s]
  %qlf = cast<to=f32>(%ql) : f32[b, 2, u, 16]
  %mf = where(%mask, %zero, %fmin) : f32[b, 1, 1, s]
  %mi = where(%mask, %zero, %ninf) : f32[b, 1, 1, s]
  %nan = const [nan] : f32[]
  %mn = where(%mask, %nan, %fmin) : f32[b, 1, 1, s]"#;
    let ir = format!(
        "{head}{common}
  %o1 = attention<scale=mul(0.25), mask=add, nan_filter=false, causal=true, causal_min=true>(%q, %k, %v, %mf) : f32[b, 2, s, 8]
  %o2 = attention<scale=none, mask=none, nan_filter=false, causal=true, causal_min=true>(%qlf, %k, %v) : f32[b, 2, u, 8]
  %o3 = attention<scale=mul(0.25), mask=add, nan_filter=false, causal=true, causal_min=true>(%q, %k, %v, %mi) : f32[b, 2, s, 8]
  %o4 = attention<scale=mul(0.25), mask=add, nan_filter=false, causal=true, causal_min=true>(%q, %k, %v, %mn) : f32[b, 2, s, 8]
  return %o1 = %o1
  return %o2 = %o2
  return %o3 = %o3
  return %o4 = %o4
}}"
    );
    let bound = format!(
        "{head}{common}
  %c = const [0.25] : f32[]
  %sc = matmul(%q, %k) : f32[b, 2, s, s]
  %av = abs(%v) : f32[b, 2, s, 8]
  %s1 = mul(%sc, %c) : f32[b, 2, s, s]
  %a1 = add(%s1, %mf) : f32[b, 2, s, s]
  %one1 = equal(%s1, %s1) : bool[b, 2, s, s]
  %f1 = cast<to=f32>(%one1) : f32[b, 2, s, s]
  %t1 = trilu<upper=false, k=0>(%f1) : f32[b, 2, s, s]
  %sees1 = cast<to=bool>(%t1) : bool[b, 2, s, s]
  %w1 = where(%sees1, %a1, %fmin) : f32[b, 2, s, s]
  %p1 = softmax<axis=3>(%w1) : f32[b, 2, s, s]
  %e1 = abs(%p1) : f32[b, 2, s, s]
  %o1 = matmul(%e1, %av) : f32[b, 2, s, 8]
  %sc2 = matmul(%qlf, %k) : f32[b, 2, u, s]
  %one2 = equal(%sc2, %sc2) : bool[b, 2, u, s]
  %f2 = cast<to=f32>(%one2) : f32[b, 2, u, s]
  %t2 = trilu<upper=false, k=-2>(%f2) : f32[b, 2, u, s]
  %sees2 = cast<to=bool>(%t2) : bool[b, 2, u, s]
  %w2 = where(%sees2, %sc2, %fmin) : f32[b, 2, u, s]
  %p2 = softmax<axis=3>(%w2) : f32[b, 2, u, s]
  %e2 = abs(%p2) : f32[b, 2, u, s]
  %o2 = matmul(%e2, %av) : f32[b, 2, u, 8]
  %a3 = add(%s1, %mi) : f32[b, 2, s, s]
  %w3 = where(%sees1, %a3, %fmin) : f32[b, 2, s, s]
  %p3 = softmax<axis=3>(%w3) : f32[b, 2, s, s]
  %n3 = isnan(%p3) : bool[b, 2, s, s]
  %z3 = where(%n3, %zero, %p3) : f32[b, 2, s, s]
  %e3 = abs(%z3) : f32[b, 2, s, s]
  %m3 = matmul(%e3, %av) : f32[b, 2, s, 8]
  %mv = reduce_mean<axes=[2], keep_dims=true>(%av) : f32[b, 2, 1, 8]
  %o3 = add(%m3, %mv) : f32[b, 2, s, 8]
  %o4 = add(%o1, %mv) : f32[b, 2, s, 8]
  return %o1 = %o1
  return %o2 = %o2
  return %o3 = %o3
  return %o4 = %o4
}}"
    );
    let mut case = Case::new("fused_attention_causal_min", &ir)
        .bound(&bound)
        // Three casts, three masks and four attentions.
        .steps(10)
        .input("qi", Gen::Int(-3, 3))
        .input("ki", Gen::Int(-3, 3))
        .input("ql", Gen::Int(-3, 3))
        .input("v", Gen::Float(-1.0, 1.0))
        .tol(Tol::Gemm {
            k: Len::Sym("s"),
            slope: 1.0,
            extra: 4.0 * f64::powi(2.0, -23),
        });
    for s in [1, 2, 7, 47, 48, 49, 97, 300, 600] {
        case = case.bind(&[("b", 1 + s % 2), ("s", s), ("u", s + 2)]);
    }
    case.check();
}

/// Attention whose scores hold NaN in some rows (a mask of NaN where both a row flag and a
/// key flag are set, each true with probability one half): those rows are NaN, or 0 through
/// the NaN filter, as the interpreter's; the others are plain attention. The row maximum
/// skips NaNs here (`RowExp::nan_max` is off without `causal_min`): the NaN reaches the
/// output through the row's sum. Tolerance as `fused_op_attention_causal_min`.
#[test]
fn fused_op_attention_rows_holding_nan() {
    let head = "graph(%qi: i32[b, 2, s, 16], %ki: i32[b, 2, 16, s], %v: f32[b, 2, s, 8], \
                %rows: bool[b, 1, s, 1], %keys: bool[b, 1, 1, s]) {";
    let common = r#"
  %zero = const [0.0] : f32[]
  %nan = const [nan] : f32[]
  %q = cast<to=f32>(%qi) : f32[b, 2, s, 16]
  %k = cast<to=f32>(%ki) : f32[b, 2, 16, s]
  %both = and(%rows, %keys) : bool[b, 1, s, s]
  %mn = where(%both, %nan, %zero) : f32[b, 1, s, s]"#;
    let ir = format!(
        "{head}{common}
  %o1 = attention<scale=mul(0.25), mask=add, nan_filter=false>(%q, %k, %v, %mn) : f32[b, 2, s, 8]
  %o2 = attention<scale=mul(0.25), mask=add, nan_filter=true>(%q, %k, %v, %mn) : f32[b, 2, s, 8]
  return %o1 = %o1
  return %o2 = %o2
}}"
    );
    let bound = format!(
        "{head}{common}
  %c = const [0.25] : f32[]
  %sc = matmul(%q, %k) : f32[b, 2, s, s]
  %av = abs(%v) : f32[b, 2, s, 8]
  %s1 = mul(%sc, %c) : f32[b, 2, s, s]
  %a1 = add(%s1, %mn) : f32[b, 2, s, s]
  %p1 = softmax<axis=3>(%a1) : f32[b, 2, s, s]
  %e1 = abs(%p1) : f32[b, 2, s, s]
  %o1 = matmul(%e1, %av) : f32[b, 2, s, 8]
  %n2 = isnan(%p1) : bool[b, 2, s, s]
  %f2 = where(%n2, %zero, %p1) : f32[b, 2, s, s]
  %e2 = abs(%f2) : f32[b, 2, s, s]
  %o2 = matmul(%e2, %av) : f32[b, 2, s, 8]
  return %o1 = %o1
  return %o2 = %o2
}}"
    );
    let mut case = Case::new("fused_attention_rows_holding_nan", &ir)
        .bound(&bound)
        // Two casts, the flags' and, the mask and two attentions.
        .steps(6)
        .input("qi", Gen::Int(-3, 3))
        .input("ki", Gen::Int(-3, 3))
        .input("v", Gen::Float(-1.0, 1.0))
        .tol(Tol::Gemm {
            k: Len::Sym("s"),
            slope: 1.0,
            extra: 4.0 * f64::powi(2.0, -23),
        });
    for s in [1, 2, 7, 47, 48, 49, 97, 300] {
        case = case.bind(&[("b", 1 + s % 2), ("s", s)]);
    }
    case.check();
}

/// Attention over no keys: the product of an empty softmax with V is an empty sum, zeros, as
/// the interpreter gives, unnormalised (no filter: the division by the rows' sums) and
/// normalised (the filter), with and without the causal flag.
#[test]
fn fused_op_attention_without_keys() {
    Case::new(
        "fused_attention_no_keys",
        r#"
graph(%q: f32[b, 3, 8], %kt: f32[b, 8, 0], %v: f32[b, 0, 4]) {
  %o1 = attention<scale=mul(0.5), mask=none, nan_filter=false>(%q, %kt, %v) : f32[b, 3, 4]
  %o2 = attention<scale=none, mask=none, nan_filter=true, causal=true>(%q, %kt, %v) : f32[b, 3, 4]
  return %o1 = %o1
  return %o2 = %o2
}"#,
    )
    .bind(&[("b", 1)])
    .bind(&[("b", 3)])
    .check();
}

/// `fused` is one elementwise loop over the result (checked: one step each), its operands read
/// broadcast: arithmetic with a broadcast row and scalar constants, a comparison choosing
/// between a cast integer and a negation, bool logic, integer arithmetic, `isnan` and `where`,
/// a cast through f64 to i32, pow with an integer exponent, f64, and a fused op reading two
/// others. Each op rounds once to its dtype, as the interpreter's do: exact, but `erf` and
/// `pow`, which call the C library in f64 (LIBM).
#[test]
fn fused_op_elementwise_bodies() {
    Case::new(
        "fused_bodies",
        r#"
graph(%a: f32[n, 3, 17], %b: f32[17], %c: f32[n, 1, 17], %i: i32[n, 3, 17], %j: i64[n, 1, 1], %m: bool[3, 17], %d: f64[n, 3, 17], %e: i64[n, 3, 17], %p: f32[n, 3, 17]) {
  %f0 = fused<body=mul(add(erf($0), f32(1.0)), $1)>(%a, %b) : f32[n, 3, 17]
  %f1 = fused<body=where(less($0, $1), cast(f32, $2), neg($0))>(%a, %c, %i) : f32[n, 3, 17]
  %f2 = fused<body=and(greater_equal($0, f32(0.5)), not($1))>(%a, %m) : bool[n, 3, 17]
  %f3 = fused<body=add(mul($0, $1), i64(3))>(%e, %j) : i64[n, 3, 17]
  %f4 = fused<body=where(isnan(sqrt($0)), $1, min($0, $1))>(%a, %c) : f32[n, 3, 17]
  %f5 = fused<body=cast(i32, mul(cast(f64, $0), $1))>(%a, %d) : i32[n, 3, 17]
  %f6 = fused<body=pow($0, $1)>(%p, %j) : f32[n, 3, 17]
  %f7 = fused<body=div(sub(f64(1.5), $0), f64(3.0))>(%d) : f64[n, 3, 17]
  %f8 = fused<body=add(mul($0, f32(0.5)), $1)>(%f1, %f4) : f32[n, 3, 17]
  return %f0 = %f0
  return %f1 = %f1
  return %f2 = %f2
  return %f3 = %f3
  return %f4 = %f4
  return %f5 = %f5
  return %f6 = %f6
  return %f7 = %f7
  return %f8 = %f8
}
"#,
    )
    .sizes("n", &[1, 2, 7, 33, 127])
    .input("i", Gen::Int(-1000, 1000))
    .input("j", Gen::Int(0, 4))
    .input("p", Gen::Float(0.1, 4.0))
    .input("d", Gen::Float(-100.0, 100.0))
    .tol_for("f0", LIBM)
    .tol_for("f6", LIBM)
    .steps(9)
    .check();
}

/// RMS normalisation in f32: the kernel sums the exact squares in f64 and computes
/// `x / sqrt(ms + eps) * scale` in f64, rounded once, while the interpreter rounds each op of
/// the expansion (`mul`, `reduce_mean`, `add`, `sqrt`, `div`, `mul`) to f32: the two differ
/// by at most about `5.5 · 2^-24 |y|`, under 5.5 ulp of the result (the analysis is at
/// `rms_norm_rows_f32`), so 6 ulp; the floor only admits exact zeros' neighbours.
const RMS_NORM_F32: Tol = Tol::Ulps {
    ulps: 6,
    abs: 1e-30,
};

/// `add_layer_norm` and `rms_norm`, one kernel each (checked: one step each). The residual
/// add rounds to the dtype first, then the layer norm is the layer norm kernel's: f32 rows in
/// vectors (scale and bias of the normalised size, or one element), and the scalar loop when
/// `r` broadcasts to `x` or for f64, so its tolerance is the layer norm's (ACCUMULATED).
/// `rms_norm` in f32 with a scale of the normalised size, one element, or broadcast over the
/// rows (the scalar loop): RMS_NORM_F32. In f64 the scalar loop does the interpreter's
/// arithmetic op for op, in its order: exact.
#[test]
fn fused_op_add_layer_norm_and_rms_norm() {
    let case = Case::new(
        "fused_norms",
        r#"
graph(%x: f32[n, s, 17], %r: f32[n, s, 17], %rb: f32[s, 17], %g: f32[17], %b: f32[17], %g2: f32[s, 17], %one: f32[1], %h: f64[n, s], %hr: f64[n, s], %one64: f64[1], %g64: f64[s]) {
  %y0 = add_layer_norm<axis=2, epsilon=1e-12>(%x, %r, %g, %b) : f32[n, s, 17]
  %y1 = add_layer_norm<axis=1, epsilon=1e-5>(%x, %rb, %g2, %one) : f32[n, s, 17]
  %y2 = add_layer_norm<axis=1, epsilon=1e-3>(%x, %r, %one, %one) : f32[n, s, 17]
  %y3 = add_layer_norm<axis=1, epsilon=1e-12>(%h, %hr, %one64, %one64) : f64[n, s]
  %z0 = rms_norm<axis=2, epsilon=1e-6>(%x, %g) : f32[n, s, 17]
  %z1 = rms_norm<axis=1, epsilon=1e-5>(%x, %one) : f32[n, s, 17]
  %z2 = rms_norm<axis=2, epsilon=1e-6>(%x, %g2) : f32[n, s, 17]
  %z3 = rms_norm<axis=1, epsilon=1e-6>(%h, %g64) : f64[n, s]
  return %y0 = %y0
  return %y1 = %y1
  return %y2 = %y2
  return %y3 = %y3
  return %z0 = %z0
  return %z1 = %z1
  return %z2 = %z2
  return %z3 = %z3
}
"#,
    )
    .input("x", Gen::Float(-5.0, 7.0))
    .input("h", Gen::Float(-5.0, 7.0))
    .tol(ACCUMULATED)
    .tol_for("z0", RMS_NORM_F32)
    .tol_for("z1", RMS_NORM_F32)
    .tol_for("z2", RMS_NORM_F32)
    .tol_for("z3", Tol::Exact)
    .steps(8);
    let mut case = case;
    for (n, s) in [(1, 1), (7, 1), (1, 7), (3, 17), (2, 33), (1, 127), (2, 300)] {
        case = case.bind(&[("n", n), ("s", s)]);
    }
    case.check();
}

/// Fused ops check their operands' sizes at run time as their expansions do: a `fused` body
/// broadcasting `[s]` against `[t]` and a runtime `gemm` with inner sizes `s` and `t` fail the
/// run when the sizes disagree, in the interpreter and in the library.
#[test]
fn fused_op_sizes_that_do_not_fit_fail_the_run() {
    let bad = [("s", 3), ("t", 5)];
    Case::new(
        "fused_broadcast_mismatch",
        r#"
graph(%a: f32[s], %b: f32[t]) {
  %z = fused<body=add($0, $1)>(%a, %b) : f32[max(s, t)]
  return %z = %z
}
"#,
    )
    .bind(&bad)
    .bind(&[("s", 300), ("t", 7)])
    .expect_shape_error(&["fused node %", "(in its expansion, add)"])
    .check();
    Case::new(
        "fused_gemm_mismatch",
        r#"
graph(%a: f32[4, s], %b: f32[t, 6]) {
  %z = gemm<activation=none, bias=false>(%a, %b) : f32[4, 6]
  return %z = %z
}
"#,
    )
    .bind(&bad)
    .bind(&[("s", 300), ("t", 7)])
    .expect_shape_error(&["gemm node %", "the inner sizes differ"])
    .check();
}

/// The forms of the fused ops no kernel computes are errors naming the node, the op and why
/// (the optimiser must not produce them): a runtime `gemm` with a bias or an activation, a
/// `perm_a` that moves A's last axis, a constant-B `gemm` whose bias is not a constant, and an
/// `attention` whose `perm_q` moves Q's last axis.
#[test]
fn fused_op_unsupported_forms_are_named_errors() {
    let cases = [
        (
            "graph(%a: f32[4, 8], %b: f32[8, 6], %c: f32[6]) {\n  %z = gemm<activation=none, bias=true>(%a, %b, %c) : f32[4, 6]\n  return %z = %z\n}",
            "no epilogue",
        ),
        (
            "graph(%a: f32[4, 8], %b: f32[8, 6]) {\n  %z = gemm<activation=relu, bias=false>(%a, %b) : f32[4, 6]\n  return %z = %z\n}",
            "no epilogue",
        ),
        (
            "graph(%a: f32[8, 4], %b: f32[8, 6]) {\n  %z = gemm<activation=none, bias=false, perm_a=[1, 0]>(%a, %b) : f32[4, 6]\n  return %z = %z\n}",
            "perm_a",
        ),
        (
            "graph(%a: f32[4, 8], %c: f32[6]) {\n  %w = const [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0] : f32[8, 6]\n  %z = gemm<activation=gelu_erf, bias=true>(%a, %w, %c) : f32[4, 6]\n  return %z = %z\n}",
            "constant f32",
        ),
        (
            "graph(%q: f32[2, 16, 4], %k: f32[2, 16, 4], %v: f32[2, 4, 8]) {\n  %z = attention<scale=none, mask=none, nan_filter=false, perm_q=[0, 2, 1]>(%q, %k, %v) : f32[2, 4, 8]\n  return %z = %z\n}",
            "perm_q",
        ),
    ];
    for (text, why) in cases {
        let graph = tcc_ir::text::parse(text, &|_| None)
            .unwrap_or_else(|e| panic!("the IR does not parse: {e}\n{text}"));
        let opts = tcc_codegen::lower::CompileOptions {
            target: tcc_codegen::Target::named("x86-64-v3").expect("a target"),
            prefix: "m".into(),
            emit: tcc_codegen::emit::EmitKind::LlvmIr,
        };
        match tcc_codegen::lower::compile(&graph, &opts) {
            Ok(_) => panic!("compiled an unsupported form:\n{text}"),
            Err(e) => {
                let msg = e.to_string();
                let op = if text.contains("attention<") {
                    "(attention)"
                } else {
                    "(gemm)"
                };
                assert!(
                    msg.contains("cannot compile node `%") && msg.contains(op) && msg.contains(why),
                    "unexpected error `{msg}` for\n{text}"
                );
            }
        }
    }
}

#[test]
fn padding_elimination_outputs_sized_by_the_token_count_are_refused_and_bad_rows_fail() {
    // An output of `[T, ..]`: the caller could not be told its size; refused, naming the
    // output, by every entry point (the header's interface, the schedule, the compile), and
    // nothing panics.
    let text = "graph(%x: f32[b, s, 8], %m: bool[b, s]) {\n  %0 = pack<tokens=t>(%x, %m) : f32[t, 8]\n  return %y = %0\n}";
    let graph = tcc_ir::text::parse(text, &|_| None).expect("parses");
    let opts = tcc_codegen::lower::CompileOptions {
        target: tcc_codegen::Target::named("x86-64-v3").expect("a target"),
        prefix: "m".into(),
        emit: tcc_codegen::emit::EmitKind::LlvmIr,
    };
    let errors = [
        tcc_codegen::lower::compile(&graph, &opts).err(),
        tcc_codegen::lower::interface(&graph).err(),
        tcc_codegen::lower::forms_interface(&[&graph], None).err(),
        tcc_codegen::lower::schedule::schedule(&graph).err(),
    ];
    for e in errors {
        let msg = e.expect("refused").to_string();
        assert!(
            msg.contains("the output `y` is sized by a pack's token count"),
            "unexpected error `{msg}`"
        );
    }
    // unpack and packed_attention of rows that do not come from a pack over the mask: fewer
    // rows than the mask's real tokens fail the run (no read past them), in the interpreter
    // and the library.
    for (name, ir) in [
        (
            "unpack_rows",
            "graph(%y: f32[n, 8], %m: i64[b, s]) {\n  %0 = unpack(%y, %m) : f32[b, s, 8]\n  return %z = %0\n}",
        ),
        (
            "packed_attention_rows",
            "graph(%q: f32[n, 2, 4], %m: i32[b, s]) {\n  %0 = packed_attention<scale=div(2.0)>(%q, %q, %q, %m) : f32[n, 2, 4]\n  %1 = const [0.0] : f32[]\n  %2 = add(%0, %1) : f32[n, 2, 4]\n  return %z = %2\n}",
        ),
    ] {
        Case::new(name, ir)
            .input("m", Gen::Int(1, 1))
            .bind(&[("n", 3), ("b", 2), ("s", 4)])
            .bind(&[("n", 7), ("b", 1), ("s", 8)])
            .expect_failure()
            .check();
    }
}

/// Padding elimination's `pack` and `unpack` around token-wise kernels that run on the packed
/// rows (an embedding gather by packed ids, a GEMM, elementwise ops): the token count is
/// found by the run (the memory plan holds `batch * seq` rows), and the unpacked results
/// equal the interpreter's, zeros at the padding, for masks of i64, i32 and bool at several
/// sizes (random masks of half real tokens; the sizes keep a batch with no real token out).
#[test]
fn pack_and_unpack_around_token_wise_kernels() {
    for mask in ["i64", "i32", "bool"] {
        let ir = format!(
            r#"
graph(%x: f32[b, s, 8], %ids: i64[b, s], %m: {mask}[b, s]) {{
  %e = const @"emb" : f32[10, 8]
  %w = const @"w" : f32[8, 5]
  %bias = const @"bias" : f32[5]
  %px = pack<tokens=T>(%x, %m) : f32[T, 8]
  %pi = pack<tokens=T>(%ids, %m) : i64[T]
  %g = gather<axis=0>(%e, %pi) : f32[T, 8]
  %h = add(%px, %g) : f32[T, 8]
  %y = matmul(%h, %w) : f32[T, 5]
  %z = add(%y, %bias) : f32[T, 5]
  %r = relu(%z) : f32[T, 5]
  %u = unpack(%r, %m) : f32[b, s, 5]
  %v = unpack(%h, %m) : f32[b, s, 8]
  %ui = unpack(%pi, %m) : i64[b, s]
  return %u = %u
  return %v = %v
  return %ui = %ui
}}
"#
        );
        let mut case = Case::new(&format!("pack_{mask}"), &ir)
            .weight("emb", lowered::random_f32(&[10, 8], "emb", -1.0, 1.0))
            .weight("w", lowered::random_f32(&[8, 5], "w", -1.0, 1.0))
            .weight("bias", lowered::random_f32(&[5], "bias", -1.0, 1.0))
            .input("ids", Gen::Int(0, 9))
            .input(
                "m",
                if mask == "bool" {
                    Gen::Bool
                } else {
                    Gen::Int(0, 1)
                },
            )
            .tol_for(
                "u",
                Tol::Ulps {
                    ulps: 16,
                    abs: 1e-5,
                },
            );
        for (b, s) in [(2, 9), (3, 17), (8, 64), (1, 300)] {
            case = case.bind(&[("b", b), ("s", s)]);
        }
        case.check();
    }
}

/// `packed_attention` between packs and an unpack, against the interpreter (which runs the
/// op's expansion: unpack, attention with the boolean key mask, pack): each sequence's real
/// tokens over its own real keys, for random masks of i64 and bool (some sequences one token
/// long), several heads, lengths across query blocks (48 rows) and a batch of one.
#[test]
fn packed_attention_over_each_sequences_real_tokens() {
    for mask in ["i64", "bool"] {
        let ir = format!(
            r#"
graph(%qi: i32[b, s, 2, 16], %ki: i32[b, s, 2, 16], %v: f32[b, s, 2, 8], %m: {mask}[b, s]) {{
  %q = cast<to=f32>(%qi) : f32[b, s, 2, 16]
  %k = cast<to=f32>(%ki) : f32[b, s, 2, 16]
  %pq = pack<tokens=T>(%q, %m) : f32[T, 2, 16]
  %pk = pack<tokens=T>(%k, %m) : f32[T, 2, 16]
  %pv = pack<tokens=T>(%v, %m) : f32[T, 2, 8]
  %a = packed_attention<scale=mul(0.125)>(%pq, %pk, %pv, %m) : f32[T, 2, 8]
  %o = unpack(%a, %m) : f32[b, s, 2, 8]
  return %o = %o
}}
"#
        );
        let mut case = Case::new(&format!("packed_attention_{mask}"), &ir)
            .input("qi", Gen::Int(-4, 4))
            .input("ki", Gen::Int(-4, 4))
            .input(
                "m",
                if mask == "bool" {
                    Gen::Bool
                } else {
                    Gen::Int(0, 1)
                },
            )
            .tol(Tol::Ulps {
                ulps: 256,
                abs: 3e-5,
            });
        for (b, s) in [(2, 9), (3, 50), (4, 100), (1, 130)] {
            case = case.bind(&[("b", b), ("s", s)]);
        }
        case.check();
    }
}

/// Symbols bound to 0 where the graph allows it: a decoder's KV cache before the prompt
/// (`past = 0`) concatenated with the new keys and values, products whose inner size is the
/// empty cache (zeros), attention over the cache and the new keys (causal, aligned to the last
/// query), reductions, softmax, layer norm and GEMMs over no rows, and an empty batch. Each
/// output is compared with the interpreter at every binding; integer-valued operands keep
/// the products exact.
#[test]
fn symbols_bound_to_zero_run_where_the_graph_allows_it() {
    let ir = r#"
graph(%pki: i32[b, 2, past, 8], %pv: f32[b, 2, past, 8], %qi: i32[b, 2, seq, 8], %ki: i32[b, 2, seq, 8], %v: f32[b, 2, seq, 8], %xi: i32[b, past, 16]) {
  %w = const [0.5, -1.0, 2.0, 0.25, -0.5, 1.5, -2.0, 1.0, 0.5, 0.75, -1.0, 2.0, 0.5, -0.25, 1.0, 0.5] : f32[16, 1]
  %g = const [1.0, 0.5, 2.0, 1.5, 1.0, 0.5, 2.0, 1.5, 1.0, 0.5, 2.0, 1.5, 1.0, 0.5, 2.0, 1.5] : f32[16]
  %h = const [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7] : f32[16]
  %pk = cast<to=f32>(%pki) : f32[b, 2, past, 8]
  %x = cast<to=f32>(%xi) : f32[b, past, 16]
  %q = cast<to=f32>(%qi) : f32[b, 2, seq, 8]
  %k = cast<to=f32>(%ki) : f32[b, 2, seq, 8]
  %kk = concat<axis=2>(%pk, %k) : f32[b, 2, past + seq, 8]
  %vv = concat<axis=2>(%pv, %v) : f32[b, 2, past + seq, 8]
  %kt = transpose<perm=[0, 1, 3, 2]>(%kk) : f32[b, 2, 8, past + seq]
  %att = attention<scale=mul(0.25), mask=none, nan_filter=false, causal=true>(%q, %kt, %vv) : f32[b, 2, seq, 8]
  %s = matmul(%q, %kt) : f32[b, 2, seq, past + seq]
  %sm = softmax<axis=3>(%s) : f32[b, 2, seq, past + seq]
  %pkt = transpose<perm=[0, 1, 3, 2]>(%pk) : f32[b, 2, 8, past]
  %kv = matmul(%pkt, %pk) : f32[b, 2, 8, 8]
  %sum = reduce_sum<axes=[2], keep_dims=false>(%pk) : f32[b, 2, 8]
  %max = reduce_max<axes=[3], keep_dims=false>(%pk) : f32[b, 2, past]
  %ln = layer_norm<axis=2, epsilon=0.00001>(%x, %g, %h) : f32[b, past, 16]
  %y = matmul(%x, %w) : f32[b, past, 1]
  return %att = %att
  return %kk = %kk
  return %sm = %sm
  return %kv = %kv
  return %sum = %sum
  return %max = %max
  return %ln = %ln
  return %y = %y
}"#;
    let mut case = Case::new("zero_symbols", ir)
        .input("pki", Gen::Int(-3, 3))
        .input("qi", Gen::Int(-3, 3))
        .input("ki", Gen::Int(-3, 3))
        .input("xi", Gen::Int(-3, 3))
        .input("pv", Gen::Float(-1.0, 1.0))
        .input("v", Gen::Float(-1.0, 1.0))
        // P·V sums at most 55 products of |p| <= 1, sum |p| = 1, |v| < 1 in f32: within
        // (55 + 2) 2^-24 < 4e-6 absolutely after cancellation.
        .tol_for("att", Tol::Ulps { ulps: 4, abs: 4e-6 })
        .tol_for("sm", SOFTMAX_ROWS_F32)
        .tol_for("ln", Tol::Ulps { ulps: 4, abs: 1e-7 });
    for (b, past, seq) in [
        (1, 0, 7),
        (2, 0, 1),
        (3, 0, 50),
        (2, 5, 3),
        (0, 4, 2),
        (1, 3, 1),
    ] {
        case = case.bind(&[("b", b), ("past", past), ("seq", seq)]);
    }
    case.check();
}

/// A symbol whose 0 the types cannot take (`n - 1` rows of a slice are `max(0, n - 1)` only
/// for n >= 1) is refused at run time with the node that needs it; the interpreter refuses
/// the run too.
#[test]
fn a_symbol_the_graph_needs_at_least_one_is_refused_at_zero_naming_the_node() {
    Case::new(
        "zero_refused",
        r#"
graph(%x: f32[n, 4]) {
  %e = exp(%x) : f32[n, 4]
  %s = slice<axes=[0], starts=[1], ends=[n], steps=[1]>(%e) : f32[n - 1, 4]
  %t = neg(%s) : f32[n - 1, 4]
  return %t = %t
}"#,
    )
    .bind(&[("n", 0)])
    .expect_shape_error(&["`n` is 0, but slice node %", "needs it at least 1"])
    .check();
}

// ---------------------------------------------------------------------------------------------
// The quantised GEMM (`qgemm`): A quantised in the kernel, the int8 product by constant
// weights, the dequantising epilogue.
// ---------------------------------------------------------------------------------------------

/// How a [`QGemmCase`] quantises its `A`.
#[derive(Clone, Copy, PartialEq)]
enum QScale {
    /// One scale and zero point per row, computed in the graph from `A` as dynamic
    /// quantisation does (ONNX's DynamicQuantizeLinear per row): `sa = (max(max_k a, 0) -
    /// min(min_k a, 0)) / 255`, `za = u8(clamp(round(-min(min_k a, 0) / sa), 0, 255))`, so
    /// each row's largest and smallest elements land on (or round past) 255 and 0.
    Row,
    /// The same over the whole tensor: one scale and zero point, computed at run time.
    Tensor,
    /// A constant scale 1/8 and a zero point drawn in 0..=255, for `A` made of multiples of
    /// 1/16 in [-37.5, 37.5]: half the quotients are ties (`x.5`, rounded to even) and many
    /// clamp at 0 or 255.
    Ties,
}

/// One `qgemm` of [`qgemm_against_the_interpreter`].
struct QGemmCase {
    k: usize,
    n: usize,
    act: &'static str,
    bias: bool,
    saturate: bool,
    scale: QScale,
    /// Whether `A` is batched, `[b, m, k]`.
    batched: bool,
}

/// `qgemm` against the interpreter at every accumulation length (1, 3, 4, 5, 64, 384, 1536:
/// off and on the groups of 4 and 2), column count (1, 7, 16, 64, 100, 384: off and on the
/// panels of 48 and 16), activation with and without a bias, in both arithmetics (exact, and
/// pairs saturating to i16 with full-range weights, so that saturation happens), with scales
/// per row computed from `A` as dynamic quantisation does (each row's extremes hit the clamps),
/// per tensor computed at run time, and constant with rounding ties (see [`QScale`]), on
/// `[m, k]` and batched `[b, m, k]` operands at m = 1, 3, 17, 128, 300; on the host (AVX-512
/// VNNI here: `vpdpbusd`, and `vpmaddubsw` + `vpdpwssd` saturating), AVX2 (`vpmaddubsw` +
/// `vpmaddwd`, and `vpmaddwd` on i16 for the exact form) and AVX-512 without VNNI.
///
/// Tolerances: the quantised values and the i32 sums are integers, and the epilogue rounds
/// `sa * sw`, the product and the bias add once each in the expansion's order, so the result
/// before the activation is the interpreter's bit for bit: `none` and `relu` (a select) are
/// `Tol::Exact`. The GELUs are the f32 GEMM epilogue's vector GELUs against the
/// interpreter's op-by-op expansion, with the f32 GEMM's tolerances
/// (`fused_op_gemm_const_b_every_activation_with_and_without_bias`: slope 1.13 and 2e-7 for
/// the exact GELU, 1.13 and 4e-7 over the bound `B = M (1 + 2 (M + 0.045 M^3))` for the tanh
/// GELU) with the pre-activation's own error, `k + 2` roundings there, at 0 (`k = 0`, which
/// leaves the two roundings of the expansion's `y / sqrt 2` and `1 + erf`) and `M = |y|`, the
/// bound graph's `abs` of the same `qgemm` without its activation: tighter than the f32
/// GEMM's `M = Σ|a·w| + |bias|`, which is at least `|y|`.
#[test]
fn qgemm_against_the_interpreter() {
    use QScale::{Row, Tensor, Ties};
    let case = |k, n, act, bias, saturate, scale| QGemmCase {
        k,
        n,
        act,
        bias,
        saturate,
        scale,
        batched: false,
    };
    let batched = |k, n, act, bias, saturate, scale| QGemmCase {
        batched: true,
        ..case(k, n, act, bias, saturate, scale)
    };
    let gemms = [
        case(1, 1, "none", false, false, Row),
        case(3, 7, "relu", true, true, Row),
        case(4, 16, "gelu_erf", false, false, Tensor),
        case(5, 100, "gelu_tanh", true, true, Ties),
        case(64, 64, "none", true, true, Row),
        case(64, 7, "gelu_erf", true, false, Ties),
        case(384, 384, "none", false, false, Row),
        case(384, 100, "relu", false, true, Tensor),
        case(1536, 384, "none", true, false, Row),
        case(1536, 384, "none", false, true, Tensor),
        case(384, 384, "gelu_erf", true, true, Row),
        case(1536, 16, "gelu_tanh", false, false, Tensor),
        case(5, 384, "none", true, false, Ties),
        case(1536, 1, "relu", true, true, Ties),
        case(3, 64, "gelu_erf", false, true, Row),
        case(4, 1, "none", false, true, Row),
        case(1, 100, "gelu_tanh", true, false, Row),
        case(384, 64, "relu", true, false, Ties),
        batched(64, 100, "none", true, false, Row),
        batched(384, 64, "gelu_erf", false, true, Tensor),
        batched(5, 16, "none", true, true, Tensor),
        batched(1536, 7, "relu", false, false, Row),
    ];
    let mut ks: Vec<(usize, bool)> = gemms.iter().map(|g| (g.k, g.batched)).collect();
    ks.sort_unstable();
    ks.dedup();
    let rows = |batched: bool| if batched { "b, m" } else { "m" };
    let a_name = |k: usize, batched: bool| format!("{}{k}", if batched { "ab" } else { "a" });
    let mut inputs = Vec::new();
    let mut shared = vec![
        "  %zero = const [0.0] : f32[]".to_string(),
        "  %c255 = const [255.0] : f32[]".to_string(),
        "  %sixteenth = const [0.0625] : f32[]".to_string(),
        "  %eighth = const [0.125] : f32[]".to_string(),
    ];
    // Per input: per-row and per-tensor dynamic scales, and the multiples of 1/16.
    for &(k, b) in &ks {
        let a = a_name(k, b);
        let r = rows(b);
        let last = if b { 2 } else { 1 };
        let all = if b { "[0, 1, 2]" } else { "[0, 1]" };
        inputs.push(format!("%{a}: f32[{r}, {k}]"));
        inputs.push(format!("%i{a}: i32[{r}, {k}]"));
        shared.push(format!("  %f{a} = cast<to=f32>(%i{a}) : f32[{r}, {k}]"));
        shared.push(format!("  %t{a} = mul(%f{a}, %sixteenth) : f32[{r}, {k}]"));
        for (tag, axes, keep, shape) in [
            ("r", format!("[{last}]"), true, format!("[{r}, 1]")),
            ("t", all.to_string(), false, "[]".to_string()),
        ] {
            let p = format!("{tag}{a}");
            shared.extend([
                format!("  %{p}hi = reduce_max<axes={axes}, keep_dims={keep}>(%{a}) : f32{shape}"),
                format!("  %{p}lo = reduce_min<axes={axes}, keep_dims={keep}>(%{a}) : f32{shape}"),
                format!("  %{p}hi0 = max(%{p}hi, %zero) : f32{shape}"),
                format!("  %{p}lo0 = min(%{p}lo, %zero) : f32{shape}"),
                format!("  %{p}range = sub(%{p}hi0, %{p}lo0) : f32{shape}"),
                format!("  %{p}sa = div(%{p}range, %c255) : f32{shape}"),
                format!("  %{p}neg = sub(%zero, %{p}lo0) : f32{shape}"),
                format!("  %{p}zq = div(%{p}neg, %{p}sa) : f32{shape}"),
                format!("  %{p}zr = round(%{p}zq) : f32{shape}"),
                format!("  %{p}zm = max(%{p}zr, %zero) : f32{shape}"),
                format!("  %{p}zc = min(%{p}zm, %c255) : f32{shape}"),
                format!("  %{p}za = cast<to=u8>(%{p}zc) : u8{shape}"),
            ]);
        }
    }
    inputs.push("%zt: u8[]".into());
    let mut ir = shared.clone();
    let mut bound = shared;
    bound.extend([
        "  %one = const [1.0] : f32[]".to_string(),
        "  %two = const [2.0] : f32[]".to_string(),
        "  %kcube = const [0.044715] : f32[]".to_string(),
    ]);
    let (mut returns, mut bound_returns, mut weights, mut tols) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (g, q) in gemms.iter().enumerate() {
        let (k, n) = (q.k, q.n);
        let a = a_name(k, q.batched);
        let ty = format!("f32[{}, {n}]", rows(q.batched));
        let (x, sa, za) = match q.scale {
            Row => (format!("%{a}"), format!("%r{a}sa"), format!("%r{a}za")),
            Tensor => (format!("%{a}"), format!("%t{a}sa"), format!("%t{a}za")),
            Ties => (format!("%t{a}"), "%eighth".to_string(), "%zt".to_string()),
        };
        let mut consts = vec![
            format!("  %w{g} = const @\"w{g}\" : i8[{k}, {n}]"),
            format!("  %sw{g} = const @\"sw{g}\" : f32[{n}]"),
        ];
        weights.push((format!("w{g}"), random_i8(&[k, n], 1000 + g as u64)));
        weights.push((
            format!("sw{g}"),
            lowered::random_f32(&[n], &format!("sw{g}"), 0.001, 0.02),
        ));
        let mut args = format!("{x}, {sa}, {za}, %w{g}, %sw{g}");
        if q.bias {
            consts.push(format!("  %bias{g} = const @\"bias{g}\" : f32[{n}]"));
            weights.push((
                format!("bias{g}"),
                lowered::random_f32(&[n], &format!("bias{g}"), -1.0, 1.0),
            ));
            args.push_str(&format!(", %bias{g}"));
        }
        ir.extend(consts.iter().cloned());
        ir.push(format!(
            "  %y{g} = qgemm<activation={}, bias={}, saturate_pairs={}>({args}) : {ty}",
            q.act, q.bias, q.saturate
        ));
        returns.push(format!("  return %y{g} = %y{g}"));
        let tol = match q.act {
            "gelu_erf" | "gelu_tanh" => {
                bound.extend(consts);
                bound.push(format!(
                    "  %p{g} = qgemm<activation=none, bias={}, saturate_pairs={}>({args}) : {ty}",
                    q.bias, q.saturate
                ));
                bound.push(format!("  %m{g} = abs(%p{g}) : {ty}"));
                let mut m = format!("%m{g}");
                let extra = if q.act == "gelu_tanh" {
                    bound.extend([
                        format!("  %b{g}3 = mul({m}, {m}) : {ty}"),
                        format!("  %b{g}4 = mul(%b{g}3, {m}) : {ty}"),
                        format!("  %b{g}5 = mul(%b{g}4, %kcube) : {ty}"),
                        format!("  %b{g}6 = add(%b{g}5, {m}) : {ty}"),
                        format!("  %b{g}7 = mul(%b{g}6, %two) : {ty}"),
                        format!("  %b{g}8 = add(%b{g}7, %one) : {ty}"),
                        format!("  %b{g}9 = mul(%b{g}8, {m}) : {ty}"),
                    ]);
                    m = format!("%b{g}9");
                    4e-7
                } else {
                    2e-7
                };
                bound_returns.push(format!("  return %y{g} = {m}"));
                Tol::Gemm {
                    k: Len::Fixed(0),
                    slope: 1.13,
                    extra,
                }
            }
            _ => Tol::Exact,
        };
        tols.push((format!("y{g}"), tol));
    }
    let header = format!("graph({}) {{", inputs.join(", "));
    let text = |body: Vec<String>, rets: Vec<String>| {
        let mut v = vec![header.clone()];
        v.extend(body);
        v.extend(rets);
        v.push("}".into());
        v.join("\n")
    };
    let mut case = Case::new("qgemm", &text(ir, returns))
        .bound(&text(bound, bound_returns))
        .input("zt", Gen::Int(0, 255))
        .also_on("x86-64-v4");
    for &(k, b) in &ks {
        case = case.input(&format!("i{}", a_name(k, b)), Gen::Int(-600, 600));
    }
    for (name, t) in weights {
        case = case.weight(&name, t);
    }
    for (name, tol) in tols {
        case = case.tol_for(&name, tol);
    }
    for m in [1, 3, 17, 128, 300] {
        case = case.bind(&[("m", m), ("b", 1 + m % 3)]);
    }
    case.check();
}

/// A graph of one `qgemm` is one kernel: the quantisation of `A`, the product and the epilogue
/// run in one step (the scratch of quantised rows is the step's own), with scales and zero
/// points per row of a batched `A` as inputs, k and n off the groups and panels, and no rows
/// at all (m = 0). Exact: `relu` selects on the interpreter's exact pre-activation value (see
/// `qgemm_against_the_interpreter`).
#[test]
fn qgemm_alone_is_one_kernel() {
    let text = r#"
graph(%a: f32[b, m, 100], %sa: f32[b, m, 1], %za: u8[b, m, 1]) {
  %w = const @"w" : i8[100, 50]
  %sw = const @"sw" : f32[50]
  %bias = const @"bias" : f32[50]
  %y = qgemm<activation=relu, bias=true, saturate_pairs=true>(%a, %sa, %za, %w, %sw, %bias) : f32[b, m, 50]
  return %y = %y
}"#;
    let mut case = Case::new("qgemm_alone", text)
        .weight("w", random_i8(&[100, 50], 77))
        .weight("sw", lowered::random_f32(&[50], "sw", 0.001, 0.02))
        .weight("bias", lowered::random_f32(&[50], "bias", -1.0, 1.0))
        .input("sa", Gen::Float(0.005, 0.05))
        .input("za", Gen::Int(0, 255))
        .steps(1)
        .also_on("x86-64-v4");
    for (b, m) in [(1, 1), (2, 9), (3, 40), (1, 0)] {
        case = case.bind(&[("b", b), ("m", m)]);
    }
    case.check();
}

/// The forms the vector kernel does not take run the scalar loop of the expansion's
/// arithmetic, on every target and on SSE (`x86-64`), where every `qgemm` runs it: a per-row
/// scale broadcast over the batch (`[m, 1]` for `[b, m, k]`), weights computed at run time
/// (`i8`, saturating, and `u8`, exact), run-time weight scales, a bias of one value per
/// element (`[m, n]`, broadcast over the batch). `none` and `relu` are exact (the same integer
/// and f32 operations in the same order); the GELU has the tolerance of
/// `qgemm_against_the_interpreter` (its inline f64 `erf` is within an ulp of f64 of the
/// interpreter's).
#[test]
fn qgemm_forms_off_the_vector_kernel_run_the_scalar_loop() {
    let text = r#"
graph(%a: f32[b, m, 17], %s2: f32[m, 1], %z2: u8[m, 1], %sa: f32[b, m, 1], %za: u8[b, m, 1], %wr: i8[17, 9], %swr: f32[9], %br: f32[m, 9]) {
  %wc = const @"wc" : i8[17, 9]
  %swc = const @"swc" : f32[9]
  %bc = const @"bc" : f32[9]
  %y0 = qgemm<activation=none, bias=false, saturate_pairs=false>(%a, %s2, %z2, %wc, %swc) : f32[b, m, 9]
  %y1 = qgemm<activation=relu, bias=true, saturate_pairs=true>(%a, %sa, %za, %wr, %swc, %bc) : f32[b, m, 9]
  %y2 = qgemm<activation=none, bias=false, saturate_pairs=false>(%a, %sa, %za, %wr, %swr) : f32[b, m, 9]
  %y3 = qgemm<activation=gelu_erf, bias=true, saturate_pairs=false>(%a, %sa, %za, %wc, %swc, %br) : f32[b, m, 9]
  return %y0 = %y0
  return %y1 = %y1
  return %y2 = %y2
  return %y3 = %y3
}"#;
    let bound = r#"
graph(%a: f32[b, m, 17], %s2: f32[m, 1], %z2: u8[m, 1], %sa: f32[b, m, 1], %za: u8[b, m, 1], %wr: i8[17, 9], %swr: f32[9], %br: f32[m, 9]) {
  %wc = const @"wc" : i8[17, 9]
  %swc = const @"swc" : f32[9]
  %p3 = qgemm<activation=none, bias=true, saturate_pairs=false>(%a, %sa, %za, %wc, %swc, %br) : f32[b, m, 9]
  %m3 = abs(%p3) : f32[b, m, 9]
  return %y3 = %m3
}"#;
    let mut case = Case::new("qgemm_scalar", text)
        .bound(bound)
        .weight("wc", random_i8(&[17, 9], 5))
        .weight("swc", lowered::random_f32(&[9], "swc", 0.001, 0.02))
        .weight("bc", lowered::random_f32(&[9], "bc", -1.0, 1.0))
        .input("s2", Gen::Float(0.005, 0.05))
        .input("sa", Gen::Float(0.005, 0.05))
        .input("z2", Gen::Int(0, 255))
        .input("za", Gen::Int(0, 255))
        .input("wr", Gen::Int(-128, 127))
        .input("swr", Gen::Float(0.001, 0.02))
        .input("br", Gen::Float(-1.0, 1.0))
        .tol_for(
            "y3",
            Tol::Gemm {
                k: Len::Fixed(0),
                slope: 1.13,
                extra: 2e-7,
            },
        )
        .also_on("x86-64-v4")
        .also_on("x86-64");
    for (b, m) in [(1, 1), (2, 7), (3, 33)] {
        case = case.bind(&[("b", b), ("m", m)]);
    }
    case.check();
}

/// Few rows (up to four tiles) split by columns on two and three threads: 288 columns are 6
/// panels of 48 (AVX-512) or 18 of 16 (AVX2), which divide among the threads, so each thread
/// takes a column group over all the rows and quantises each block of rows on its stack;
/// more rows split by rows (each task quantising its own into the scratch). k = 4100 is too
/// long a row for the stack buffer on AVX-512 (8 rows of 4160 bytes), so that product always
/// splits by rows there. Tolerances as in `qgemm_against_the_interpreter`.
#[test]
fn qgemm_few_rows_split_by_columns() {
    let text = r#"
graph(%a: f32[b, m, 384], %c: f32[b, m, 1536], %d: f32[b, m, 4100], %sa: f32[b, m, 1], %za: u8[b, m, 1]) {
  %w0 = const @"w0" : i8[384, 288]
  %w1 = const @"w1" : i8[1536, 288]
  %w2 = const @"w2" : i8[4100, 288]
  %sw = const @"sw" : f32[288]
  %bias = const @"bias" : f32[288]
  %y0 = qgemm<activation=none, bias=false, saturate_pairs=false>(%a, %sa, %za, %w0, %sw) : f32[b, m, 288]
  %y1 = qgemm<activation=relu, bias=true, saturate_pairs=true>(%c, %sa, %za, %w1, %sw, %bias) : f32[b, m, 288]
  %y2 = qgemm<activation=gelu_erf, bias=true, saturate_pairs=false>(%d, %sa, %za, %w2, %sw, %bias) : f32[b, m, 288]
  return %y0 = %y0
  return %y1 = %y1
  return %y2 = %y2
}"#;
    let bound = r#"
graph(%a: f32[b, m, 384], %c: f32[b, m, 1536], %d: f32[b, m, 4100], %sa: f32[b, m, 1], %za: u8[b, m, 1]) {
  %w2 = const @"w2" : i8[4100, 288]
  %sw = const @"sw" : f32[288]
  %bias = const @"bias" : f32[288]
  %p2 = qgemm<activation=none, bias=true, saturate_pairs=false>(%d, %sa, %za, %w2, %sw, %bias) : f32[b, m, 288]
  %m2 = abs(%p2) : f32[b, m, 288]
  return %y2 = %m2
}"#;
    for threads in [2, 3] {
        let mut case = Case::new(&format!("qgemm_columns_{threads}"), text)
            .bound(bound)
            .weight("w0", random_i8(&[384, 288], 31))
            .weight("w1", random_i8(&[1536, 288], 32))
            .weight("w2", random_i8(&[4100, 288], 33))
            .weight("sw", lowered::random_f32(&[288], "sw", 0.001, 0.02))
            .weight("bias", lowered::random_f32(&[288], "bias", -1.0, 1.0))
            .input("sa", Gen::Float(0.005, 0.05))
            .input("za", Gen::Int(0, 255))
            .tol_for(
                "y2",
                Tol::Gemm {
                    k: Len::Fixed(0),
                    slope: 1.13,
                    extra: 2e-7,
                },
            )
            .threads(threads)
            .also_on("x86-64-v4");
        for (b, m) in [(1, 1), (1, 5), (2, 7), (1, 32), (3, 11), (1, 100)] {
            case = case.bind(&[("b", b), ("m", m)]);
        }
        case.check();
    }
}

//! Every rule of the e-graph optimiser, one line each (in the manner of egg's `test_fn!`):
//! a small graph in the IR text form where the rule must fire, optimised by the whole rule
//! set, then both graphs evaluated by the interpreter on seeded random inputs at several
//! sizes of each symbol. Exact rules must give bit-identical results; reassociating rules
//! stay within the stated tolerance (relative to the largest magnitude of the output).
//!
//! Statements are separated by `; ` (the parser reads one per line). Constants are written
//! `@"name_RxC"`: a seeded random f32 tensor of that shape
//! (`@"b_8"` is a vector of 8), so the tests need no inline weights.

use std::collections::HashMap;
use tcc_ir::{interp, text, DType, Graph, Op, Tensor, TensorData};
use tcc_passes::egraph::{self, Config};

/// A deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    }) | 1
}

/// The random weight a `@"name_AxB"` constant names.
fn weight(name: &str) -> Option<Tensor> {
    let dims = name.rsplit('_').next()?;
    let shape: Vec<usize> = dims
        .split('x')
        .map(|d| d.parse().ok())
        .collect::<Option<_>>()?;
    let n: usize = shape.iter().product();
    let mut r = Rng(seed_of(name));
    let v: Vec<f32> = (0..n).map(|_| (r.next() * 2.0 - 1.0) as f32).collect();
    Tensor::from_vec(shape, v).ok()
}

fn random_input(ty: &tcc_ir::TensorType, sizes: &HashMap<String, i64>, r: &mut Rng) -> Tensor {
    let shape = ty
        .shape
        .eval(&|s| sizes.get(s).copied())
        .expect("every symbol has a size");
    let n: usize = shape.iter().product();
    match ty.dtype {
        DType::F32 => Tensor::from_vec(
            shape,
            (0..n).map(|_| (r.next() * 6.0 - 3.0) as f32).collect(),
        )
        .expect("sizes match"),
        DType::Bool => {
            Tensor::from_vec(shape, (0..n).map(|_| r.next() < 0.8).collect()).expect("sizes match")
        }
        d => Tensor::new(shape, TensorData::zeros(d, n)).expect("sizes match"),
    }
}

fn run(graph: &Graph, inputs: &HashMap<String, Tensor>) -> Vec<Tensor> {
    interp::run(graph, inputs)
        .expect("the interpreter runs")
        .into_iter()
        .map(|(_, t)| t)
        .collect()
}

/// Checks that `rule` fires on `text` and that the optimised graph computes what the
/// original does: bitwise if `tol` is 0, else within `tol` times the output's magnitude.
fn check(rule: &str, tol: f64, text: &str) {
    check_with(rule, tol, text, None);
}

/// [`check`], and the optimised IR must contain `expect`.
fn check_with(rule: &str, tol: f64, text: &str, expect: Option<&str>) {
    let text = text.replace("; ", "\n");
    let graph = text::parse(&text, &weight).unwrap_or_else(|e| panic!("{rule}: {e}"));
    let (opt, explanation) = egraph::optimize(&graph, &Config::default()).expect("optimises");
    assert!(
        explanation.fired.iter().any(|(n, _)| n == rule),
        "rule `{rule}` did not fire; fired: {:?}\n{}",
        explanation.fired,
        text::print(&opt)
    );
    let tag = egraph::rules::all()
        .into_iter()
        .find(|r| r.name() == rule)
        .map(|r| r.exactness)
        .expect("the rule exists");
    assert_eq!(
        tag == egraph::Exactness::Exact,
        tol == 0.0,
        "rule `{rule}`: an exact rule is checked bitwise, a reassociating one with a tolerance"
    );
    tcc_ir::verify::verify(&opt).expect("the optimised graph verifies");
    if let Some(want) = expect {
        let printed = text::print(&opt);
        assert!(
            printed.contains(want),
            "rule `{rule}`: no `{want}` in\n{printed}"
        );
    }
    let symbols = graph.input_symbols();
    for (k, size) in [1i64, 3, 7, 16].into_iter().enumerate() {
        let mut r = Rng(seed_of(rule) ^ (k as u64 + 1));
        let sizes: HashMap<String, i64> = symbols.iter().map(|s| (s.to_string(), size)).collect();
        let inputs: HashMap<String, Tensor> = graph
            .inputs()
            .iter()
            .map(|&i| {
                let Op::Input { name } = graph.op(i) else {
                    unreachable!()
                };
                (name.clone(), random_input(graph.ty(i), &sizes, &mut r))
            })
            .collect();
        let (want, got) = (run(&graph, &inputs), run(&opt, &inputs));
        for (w, g) in want.iter().zip(&got) {
            let (w, g) = (w.data().to_f64_vec(), g.data().to_f64_vec());
            let scale = w.iter().fold(1.0f64, |m, x| m.max(x.abs()));
            for (i, (a, b)) in w.iter().zip(&g).enumerate() {
                let ok = if tol == 0.0 {
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
                } else {
                    (a - b).abs() <= tol * scale
                };
                assert!(ok, "rule `{rule}` at size {size}, element {i}: {a} vs {b}");
            }
        }
    }
}

macro_rules! rule_test {
    ($test:ident, $rule:literal, $tol:expr, $text:literal) => {
        #[test]
        fn $test() {
            check($rule, $tol, $text);
        }
    };
    ($test:ident, $rule:literal, $tol:expr, $text:literal, expect = $want:literal) => {
        #[test]
        fn $test() {
            check_with($rule, $tol, $text, Some($want));
        }
    };
}

// Canonical forms: each test's graph needs the rule before a fusion (or a cheaper form)
// can show in the optimised IR, which the test checks.
rule_test!(
    add_scalar_right,
    "add-scalar-right",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %w = const @"w_8x4" : f32[8, 4]; %b = const @"b_4" : f32[4]; %r2 = const [1.4142135] : f32[]; %rr = const [0.70710677] : f32[]; %one = const [1.0] : f32[]; %h = const [0.5] : f32[]; %m = matmul(%x, %w) : f32[n, 4]; %y = add(%m, %b) : f32[n, 4]; %d = div(%y, %r2) : f32[n, 4]; %e = erf(%d) : f32[n, 4]; %p = add(%one, %e) : f32[n, 4]; %q = mul(%y, %p) : f32[n, 4]; %g = mul(%q, %h) : f32[n, 4]; return %o = %g; }"#,
    expect = "gelu_erf"
);
rule_test!(
    mul_scalar_right,
    "mul-scalar-right",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %w = const @"w_8x4" : f32[8, 4]; %b = const @"b_4" : f32[4]; %r2 = const [1.4142135] : f32[]; %rr = const [0.70710677] : f32[]; %one = const [1.0] : f32[]; %h = const [0.5] : f32[]; %m = matmul(%x, %w) : f32[n, 4]; %y = add(%m, %b) : f32[n, 4]; %d = div(%y, %r2) : f32[n, 4]; %e = erf(%d) : f32[n, 4]; %p = add(%e, %one) : f32[n, 4]; %q = mul(%y, %p) : f32[n, 4]; %g = mul(%h, %q) : f32[n, 4]; return %o = %g; }"#,
    expect = "gelu_erf"
);
rule_test!(
    mul_half_outward,
    "mul-half-outward",
    1e-7,
    r#"graph(%x: f32[n, 8]) {; %w = const @"w_8x4" : f32[8, 4]; %b = const @"b_4" : f32[4]; %r2 = const [1.4142135] : f32[]; %rr = const [0.70710677] : f32[]; %one = const [1.0] : f32[]; %h = const [0.5] : f32[]; %m = matmul(%x, %w) : f32[n, 4]; %y = add(%m, %b) : f32[n, 4]; %d = div(%y, %r2) : f32[n, 4]; %e = erf(%d) : f32[n, 4]; %p = add(%e, %one) : f32[n, 4]; %a = mul(%y, %h) : f32[n, 4]; %g = mul(%a, %p) : f32[n, 4]; return %o = %g; }"#,
    expect = "gelu_erf"
);
rule_test!(
    mul_half_outward_right,
    "mul-half-outward-right",
    1e-7,
    r#"graph(%x: f32[n, 8]) {; %w = const @"w_8x4" : f32[8, 4]; %b = const @"b_4" : f32[4]; %r2 = const [1.4142135] : f32[]; %rr = const [0.70710677] : f32[]; %one = const [1.0] : f32[]; %h = const [0.5] : f32[]; %m = matmul(%x, %w) : f32[n, 4]; %y = add(%m, %b) : f32[n, 4]; %d = div(%y, %r2) : f32[n, 4]; %e = erf(%d) : f32[n, 4]; %p = add(%e, %one) : f32[n, 4]; %hp = mul(%h, %p) : f32[n, 4]; %g = mul(%y, %hp) : f32[n, 4]; return %o = %g; }"#,
    expect = "gelu_erf"
);
rule_test!(
    mul_rsqrt2_as_div,
    "mul-rsqrt2-as-div",
    1e-6,
    r#"graph(%x: f32[n, 8]) {; %w = const @"w_8x4" : f32[8, 4]; %b = const @"b_4" : f32[4]; %r2 = const [1.4142135] : f32[]; %rr = const [0.70710677] : f32[]; %one = const [1.0] : f32[]; %h = const [0.5] : f32[]; %m = matmul(%x, %w) : f32[n, 4]; %y = add(%m, %b) : f32[n, 4]; %d = mul(%y, %rr) : f32[n, 4]; %e = erf(%d) : f32[n, 4]; %p = add(%e, %one) : f32[n, 4]; %q = mul(%y, %p) : f32[n, 4]; %g = mul(%q, %h) : f32[n, 4]; return %o = %g; }"#,
    expect = "gelu_erf"
);
rule_test!(
    pow_two_square,
    "pow-two-square",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %c = const [2.0] : f32[]; %y = pow(%x, %c) : f32[n, 8]; return %o = %y; }"#,
    expect = "mul(%x, %x)"
);
rule_test!(
    mul_reciprocal_as_div,
    "mul-reciprocal-as-div",
    2.4e-7,
    r#"graph(%x: f32[n, 8], %y: f32[n, 8]) {; %c = const [1.0] : f32[]; %r = div(%c, %y) : f32[n, 8]; %z = mul(%x, %r) : f32[n, 8]; return %o = %z; }"#,
    expect = "div(%x, %y)"
);
// GEMM fusion.
rule_test!(
    matmul_gemm,
    "matmul-gemm",
    0.0,
    r#"graph(%x: f32[n, 8], %y: f32[8, n]) {; %z = matmul(%x, %y) : f32[n, n]; return %o = %z; }"#,
    expect = "gemm<activation=none, bias=false>"
);
rule_test!(
    gemm_bias,
    "gemm-bias",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %w = const @"w_8x4" : f32[8, 4]; %b = const @"b_4" : f32[4]; %m = matmul(%x, %w) : f32[n, 4]; %y = add(%b, %m) : f32[n, 4]; return %o = %y; }"#,
    expect = "bias=true"
);
rule_test!(
    gemm_relu,
    "gemm-relu",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %w = const @"w_8x4" : f32[8, 4]; %m = matmul(%x, %w) : f32[n, 4]; %y = relu(%m) : f32[n, 4]; return %o = %y; }"#,
    expect = "activation=relu"
);
rule_test!(
    gemm_gelu_erf,
    "gemm-gelu-erf",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %w = const @"w_8x4" : f32[8, 4]; %b = const @"b_4" : f32[4]; %r2 = const [1.4142135] : f32[]; %one = const [1.0] : f32[]; %h = const [0.5] : f32[]; %m = matmul(%x, %w) : f32[n, 4]; %y = add(%m, %b) : f32[n, 4]; %d = div(%y, %r2) : f32[n, 4]; %e = erf(%d) : f32[n, 4]; %p = add(%e, %one) : f32[n, 4]; %q = mul(%y, %p) : f32[n, 4]; %g = mul(%q, %h) : f32[n, 4]; return %o = %g; }"#,
    expect = "activation=gelu_erf"
);
rule_test!(
    gemm_gelu_tanh,
    "gemm-gelu-tanh",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %w = const @"w_8x4" : f32[8, 4]; %h = const [0.5] : f32[]; %three = const [3.0] : f32[]; %k = const [0.044715] : f32[]; %r = const [0.7978846] : f32[]; %one = const [1.0] : f32[]; %m = matmul(%x, %w) : f32[n, 4]; %a = mul(%m, %h) : f32[n, 4]; %c = pow(%m, %three) : f32[n, 4]; %ck = mul(%c, %k) : f32[n, 4]; %i = add(%m, %ck) : f32[n, 4]; %ir = mul(%i, %r) : f32[n, 4]; %t = tanh(%ir) : f32[n, 4]; %p = add(%t, %one) : f32[n, 4]; %g = mul(%a, %p) : f32[n, 4]; return %o = %g; }"#,
    expect = "activation=gelu_tanh"
);
rule_test!(
    gemm_transpose_a,
    "gemm-transpose-a",
    0.0,
    r#"graph(%x: f32[2, n, 3, 8], %y: f32[2, 3, 8, n]) {; %t = transpose<perm=[0, 2, 1, 3]>(%x) : f32[2, 3, n, 8]; %z = matmul(%t, %y) : f32[2, 3, n, n]; return %o = %z; }"#,
    expect = "perm_a=[0, 2, 1, 3]"
);
rule_test!(
    gemm_transpose_b,
    "gemm-transpose-b",
    0.0,
    r#"graph(%x: f32[2, 3, n, 8], %y: f32[2, n, 3, 8]) {; %t = transpose<perm=[0, 2, 3, 1]>(%y) : f32[2, 3, 8, n]; %z = matmul(%x, %t) : f32[2, 3, n, n]; return %o = %z; }"#,
    expect = "perm_b=[0, 2, 3, 1]"
);
rule_test!(
    transpose_gemm,
    "transpose-gemm",
    0.0,
    r#"graph(%x: f32[2, 3, n, 8], %y: f32[2, 3, 8, 5]) {; %z = matmul(%x, %y) : f32[2, 3, n, 5]; %t = transpose<perm=[0, 2, 1, 3]>(%z) : f32[2, n, 3, 5]; return %o = %t; }"#,
    expect = "perm_out=[0, 2, 1, 3]"
);
// Attention.
rule_test!(
    attention,
    "attention",
    0.0,
    r#"graph(%q: f32[2, 3, n, 8], %k: f32[2, 3, 8, n], %v: f32[2, 3, n, 8], %m: f32[2, 1, n, n]) {; %c = const [0.35355338] : f32[]; %s = matmul(%q, %k) : f32[2, 3, n, n]; %sc = mul(%s, %c) : f32[2, 3, n, n]; %sm = add(%sc, %m) : f32[2, 3, n, n]; %p = softmax<axis=3>(%sm) : f32[2, 3, n, n]; %y = matmul(%p, %v) : f32[2, 3, n, 8]; return %o = %y; }"#,
    expect = "attention<scale=mul(0.35355338), mask=add"
);
rule_test!(
    attention_nan_filter,
    "attention",
    0.0,
    r#"graph(%q: f32[1, 2, n, 8], %k: f32[1, 2, 8, n], %v: f32[1, 2, n, 4]) {; %c = const [8.0] : f32[]; %z = const [0.0] : f32[]; %s = matmul(%q, %k) : f32[1, 2, n, n]; %sc = div(%s, %c) : f32[1, 2, n, n]; %p = softmax<axis=3>(%sc) : f32[1, 2, n, n]; %isn = isnan(%p) : bool[1, 2, n, n]; %f = where(%isn, %z, %p) : f32[1, 2, n, n]; %y = matmul(%f, %v) : f32[1, 2, n, 4]; return %o = %y; }"#,
    expect = "nan_filter=true"
);
rule_test!(
    attention_bool_mask,
    "attention",
    0.0,
    r#"graph(%q: f32[2, 3, n, 8], %k: f32[2, 3, 8, n], %v: f32[2, 3, n, 8], %m: bool[2, 1, n, n]) {; %c = const [0.35355338] : f32[]; %ninf = const [-inf] : f32[]; %s = matmul(%q, %k) : f32[2, 3, n, n]; %sc = mul(%s, %c) : f32[2, 3, n, n]; %sm = where(%m, %sc, %ninf) : f32[2, 3, n, n]; %p = softmax<axis=3>(%sm) : f32[2, 3, n, n]; %y = matmul(%p, %v) : f32[2, 3, n, 8]; return %o = %y; }"#,
    expect = "mask=bool"
);
rule_test!(
    attention_zero_where,
    "attention",
    0.0,
    r#"graph(%q: f32[2, 3, n, 8], %k: f32[2, 3, 8, n], %v: f32[2, 3, n, 8], %m: f32[2, 1, n, n], %dead: bool[2, 1, n, 1]) {; %z = const [0.0] : f32[]; %s = matmul(%q, %k) : f32[2, 3, n, n]; %sm = add(%s, %m) : f32[2, 3, n, n]; %p = softmax<axis=3>(%sm) : f32[2, 3, n, n]; %f = where(%dead, %z, %p) : f32[2, 3, n, n]; %y = matmul(%f, %v) : f32[2, 3, n, 8]; return %o = %y; }"#,
    expect = "zero_where=true"
);
rule_test!(
    attention_causal,
    "attention-causal",
    0.0,
    r#"graph(%q: f32[1, 2, n, 8], %k: f32[1, 2, 8, n], %v: f32[1, 2, n, 8], %pad: bool[1, n]) {; %r = range<dtype=i64, start=0, limit=n, delta=1> : i64[n]; %rk = reshape<shape=[1, 1, 1, n]>(%r) : i64[1, 1, 1, n]; %rq = reshape<shape=[1, 1, n, 1]>(%r) : i64[1, 1, n, 1]; %t = const [true] : bool[]; %le = less_equal(%rk, %rq) : bool[1, 1, n, n]; %c = and(%t, %le) : bool[1, 1, n, n]; %pm = reshape<shape=[1, 1, 1, n]>(%pad) : bool[1, 1, 1, n]; %a = and(%c, %pm) : bool[1, 1, n, n]; %z = const [0.0] : f32[1]; %ninf = const [-inf] : f32[1]; %mf = where(%a, %z, %ninf) : f32[1, 1, n, n]; %c8 = const [0.35355338] : f32[]; %s = matmul(%q, %k) : f32[1, 2, n, n]; %sc = mul(%s, %c8) : f32[1, 2, n, n]; %sm = add(%sc, %mf) : f32[1, 2, n, n]; %p = softmax<axis=3>(%sm) : f32[1, 2, n, n]; %isn = isnan(%p) : bool[1, 2, n, n]; %z0 = const [0.0] : f32[]; %f = where(%isn, %z0, %p) : f32[1, 2, n, n]; %y = matmul(%f, %v) : f32[1, 2, n, 8]; return %o = %y; }"#,
    expect = "mask=add, nan_filter=true, causal=true"
);
rule_test!(
    attention_causal_bool,
    "attention-causal",
    0.0,
    r#"graph(%q: f32[3, n, 8], %k: f32[3, 8, n], %v: f32[3, n, 4]) {; %r = range<dtype=i64, start=0, limit=n, delta=1> : i64[n]; %rq = reshape<shape=[n, 1]>(%r) : i64[n, 1]; %rqe = expand<shape=[n, n]>(%rq) : i64[n, n]; %ge = greater_equal(%rqe, %r) : bool[n, n]; %ninf = const [-inf] : f32[]; %s = matmul(%q, %k) : f32[3, n, n]; %sm = where(%ge, %s, %ninf) : f32[3, n, n]; %p = softmax<axis=2>(%sm) : f32[3, n, n]; %y = matmul(%p, %v) : f32[3, n, 4]; return %o = %y; }"#,
    expect = "mask=none, nan_filter=false, causal=true"
);
// A KV cache's mask as the TorchScript opset-17 export writes it: key positions
// `range(0, past + seq)`, query positions `range(0, seq) + past`.
rule_test!(
    attention_causal_cache,
    "attention-causal",
    0.0,
    r#"graph(%q: f32[1, 2, n, 8], %pk: f32[1, 2, 8, p], %kn: f32[1, 2, 8, n], %pv: f32[1, 2, p, 8], %vn: f32[1, 2, n, 8], %pad: bool[1, p + n]) {; %k = concat<axis=3>(%pk, %kn) : f32[1, 2, 8, p + n]; %v = concat<axis=2>(%pv, %vn) : f32[1, 2, p + n, 8]; %t = const [true] : bool[]; %rk = range<dtype=i64, start=0, limit=p + n, delta=1> : i64[p + n]; %rk4 = reshape<shape=[1, 1, 1, p + n]>(%rk) : i64[1, 1, 1, p + n]; %rq = range<dtype=i64, start=0, limit=n, delta=1> : i64[n]; %past = dims<dtype=i64, shape=[], values=[p]> : i64[]; %rqp = add(%rq, %past) : i64[n]; %rq4 = reshape<shape=[1, 1, n, 1]>(%rqp) : i64[1, 1, n, 1]; %le = less_equal(%rk4, %rq4) : bool[1, 1, n, p + n]; %c = and(%t, %le) : bool[1, 1, n, p + n]; %pm = reshape<shape=[1, 1, 1, p + n]>(%pad) : bool[1, 1, 1, p + n]; %a = and(%c, %pm) : bool[1, 1, n, p + n]; %z = const [0.0] : f32[1]; %ninf = const [-inf] : f32[1]; %mf = where(%a, %z, %ninf) : f32[1, 1, n, p + n]; %c8 = const [0.35355338] : f32[]; %s = matmul(%q, %k) : f32[1, 2, n, p + n]; %sc = mul(%s, %c8) : f32[1, 2, n, p + n]; %sm = add(%sc, %mf) : f32[1, 2, n, p + n]; %sp = softmax<axis=3>(%sm) : f32[1, 2, n, p + n]; %isn = isnan(%sp) : bool[1, 2, n, p + n]; %z0 = const [0.0] : f32[]; %f = where(%isn, %z0, %sp) : f32[1, 2, n, p + n]; %y = matmul(%f, %v) : f32[1, 2, n, 8]; return %o = %y; }"#,
    expect = "mask=add, nan_filter=true, causal=true"
);
// The dynamo opset-18 export fills with torch's finfo.min: without a padding mask every
// query sees key 0, so the hidden keys may score -inf (plain `causal`).
rule_test!(
    attention_causal_finfo_min,
    "attention-causal-finfo-min",
    0.0,
    r#"graph(%q: f32[1, 2, n, 8], %pk: f32[1, 2, 8, p], %kn: f32[1, 2, 8, n], %pv: f32[1, 2, p, 8], %vn: f32[1, 2, n, 8]) {; %k = concat<axis=3>(%pk, %kn) : f32[1, 2, 8, p + n]; %v = concat<axis=2>(%pv, %vn) : f32[1, 2, p + n, 8]; %t = const [true] : bool[]; %rk = range<dtype=i64, start=0, limit=p + n, delta=1> : i64[p + n]; %rk4 = reshape<shape=[1, 1, 1, p + n]>(%rk) : i64[1, 1, 1, p + n]; %rq = range<dtype=i64, start=0, limit=n, delta=1> : i64[n]; %past = dims<dtype=i64, shape=[], values=[p]> : i64[]; %rqp = add(%rq, %past) : i64[n]; %rq4 = reshape<shape=[1, 1, n, 1]>(%rqp) : i64[1, 1, n, 1]; %le = less_equal(%rk4, %rq4) : bool[1, 1, n, p + n]; %c = and(%t, %le) : bool[1, 1, n, p + n]; %z = const [0.0] : f32[]; %fm = const [-3.4028235e38] : f32[]; %mf = where(%c, %z, %fm) : f32[1, 1, n, p + n]; %c8 = const [0.35355338] : f32[]; %s = matmul(%q, %k) : f32[1, 2, n, p + n]; %sc = mul(%s, %c8) : f32[1, 2, n, p + n]; %sm = add(%sc, %mf) : f32[1, 2, n, p + n]; %sp = softmax<axis=3>(%sm) : f32[1, 2, n, p + n]; %y = matmul(%sp, %v) : f32[1, 2, n, 8]; return %o = %y; }"#,
    expect = "mask=none, nan_filter=false, causal=true"
);
// With a padding mask and-ed to the causal condition, as the dynamo opset-18 export of a
// padded batch writes it: a query whose visible keys are all padding scores finfo.min at every
// key and averages them all, hidden ones too; `causal_min` keeps that (this test's data has
// such rows: 1 in 5 keys is padding, and at n = 1 every query sees one key).
rule_test!(
    attention_causal_finfo_min_padded,
    "attention-causal-finfo-min",
    0.0,
    r#"graph(%q: f32[1, 2, n, 8], %k: f32[1, 2, 8, n], %v: f32[1, 2, n, 8], %pad: bool[1, n]) {; %r = range<dtype=i64, start=0, limit=n, delta=1> : i64[n]; %rk = reshape<shape=[1, 1, 1, n]>(%r) : i64[1, 1, 1, n]; %rq = reshape<shape=[1, 1, n, 1]>(%r) : i64[1, 1, n, 1]; %t = const [true] : bool[]; %le = less_equal(%rk, %rq) : bool[1, 1, n, n]; %c = and(%t, %le) : bool[1, 1, n, n]; %pm = reshape<shape=[1, 1, 1, n]>(%pad) : bool[1, 1, 1, n]; %a = and(%c, %pm) : bool[1, 1, n, n]; %z = const [0.0] : f32[]; %fm = const [-3.4028235e38] : f32[]; %mf = where(%a, %z, %fm) : f32[1, 1, n, n]; %c8 = const [0.35355338] : f32[]; %s = matmul(%q, %k) : f32[1, 2, n, n]; %sc = mul(%s, %c8) : f32[1, 2, n, n]; %sm = add(%sc, %mf) : f32[1, 2, n, n]; %sp = softmax<axis=3>(%sm) : f32[1, 2, n, n]; %y = matmul(%sp, %v) : f32[1, 2, n, 8]; return %o = %y; }"#,
    expect = "mask=add, nan_filter=false, causal=true, causal_min=true"
);
// The dynamo exporter's mask for packed sequences (transformers' GPT-2): segment ids from a
// running sum of `positions[i] - positions[i - 1] != 1`, then `same segment and key position
// <= query position`, gathered with `gather_nd`. With positions a plain `range` the ids are
// all 0 and the mask is causal.
rule_test!(
    attention_causal_packed_positions,
    "attention-causal-finfo-min",
    0.0,
    r#"graph(%q: f32[b, 2, n, 8], %k: f32[b, 2, 8, n], %v: f32[b, 2, n, 8]) {; %r = range<dtype=i64, start=0, limit=n, delta=1> : i64[n]; %r2 = reshape<shape=[1, n]>(%r) : i64[1, n]; %pos = expand<shape=[b, 1]>(%r2) : i64[b, n]; %p0 = slice<axes=[1], starts=[0], ends=[1], steps=[1]>(%pos) : i64[b, 1]; %one = const [1] : i64[]; %pm1 = sub(%p0, %one) : i64[b, 1]; %pc = concat<axis=1>(%pm1, %pos) : i64[b, n + 1]; %hi = slice<axes=[1], starts=[1], ends=[n + 1], steps=[1]>(%pc) : i64[b, n]; %lo = slice<axes=[1], starts=[0], ends=[n], steps=[1]>(%pc) : i64[b, n]; %d = sub(%hi, %lo) : i64[b, n]; %e = equal(%d, %one) : bool[b, n]; %ne = not(%e) : bool[b, n]; %ni = cast<to=i64>(%ne) : i64[b, n]; %seg = cumsum<axis=1, exclusive=false, reverse=false>(%ni) : i64[b, n]; %br = range<dtype=i64, start=0, limit=b, delta=1> : i64[b]; %b4 = reshape<shape=[b, 1, 1, 1]>(%br) : i64[b, 1, 1, 1]; %bq = expand<shape=[b, 1, n, 1]>(%b4) : i64[b, 1, n, 1]; %bq5 = reshape<shape=[b, 1, n, 1, 1]>(%bq) : i64[b, 1, n, 1, 1]; %rq = reshape<shape=[1, 1, n, 1]>(%r) : i64[1, 1, n, 1]; %rqe = expand<shape=[b, 1, n, 1]>(%rq) : i64[b, 1, n, 1]; %rq5 = reshape<shape=[b, 1, n, 1, 1]>(%rqe) : i64[b, 1, n, 1, 1]; %iq = concat<axis=4>(%bq5, %rq5) : i64[b, 1, n, 1, 2]; %bk = expand<shape=[b, 1, 1, n]>(%b4) : i64[b, 1, 1, n]; %bk5 = reshape<shape=[b, 1, 1, n, 1]>(%bk) : i64[b, 1, 1, n, 1]; %rk = reshape<shape=[1, 1, 1, n]>(%r) : i64[1, 1, 1, n]; %rke = expand<shape=[b, 1, 1, n]>(%rk) : i64[b, 1, 1, n]; %rk5 = reshape<shape=[b, 1, 1, n, 1]>(%rke) : i64[b, 1, 1, n, 1]; %ik = concat<axis=4>(%bk5, %rk5) : i64[b, 1, 1, n, 2]; %sq = gather_nd<batch_dims=0>(%seg, %iq) : i64[b, 1, n, 1]; %sk = gather_nd<batch_dims=0>(%seg, %ik) : i64[b, 1, 1, n]; %same = equal(%sq, %sk) : bool[b, 1, n, n]; %t = const [true] : bool[]; %ts = and(%t, %same) : bool[b, 1, n, n]; %pk = gather_nd<batch_dims=0>(%pos, %ik) : i64[b, 1, 1, n]; %pq = gather_nd<batch_dims=0>(%pos, %iq) : i64[b, 1, n, 1]; %le = less_equal(%pk, %pq) : bool[b, 1, n, n]; %c = and(%ts, %le) : bool[b, 1, n, n]; %z = const [0.0] : f32[]; %fm = const [-3.4028235e38] : f32[]; %mf = where(%c, %z, %fm) : f32[b, 1, n, n]; %c8 = const [0.35355338] : f32[]; %s = matmul(%q, %k) : f32[b, 2, n, n]; %sc = mul(%s, %c8) : f32[b, 2, n, n]; %sm = add(%sc, %mf) : f32[b, 2, n, n]; %sp = softmax<axis=3>(%sm) : f32[b, 2, n, n]; %y = matmul(%sp, %v) : f32[b, 2, n, 8]; return %o = %y; }"#,
    expect = "mask=none, nan_filter=false, causal=true"
);

/// With positions given as an input, the segments may differ: the mask is not causal, and no
/// causal rule may fire.
#[test]
fn packed_positions_from_an_input_are_not_causal() {
    let text = r#"graph(%q: f32[b, 2, n, 8], %k: f32[b, 2, 8, n], %v: f32[b, 2, n, 8], %pos: i64[b, n]) {; %r = range<dtype=i64, start=0, limit=n, delta=1> : i64[n]; %r2 = reshape<shape=[1, n]>(%r) : i64[1, n]; %p0 = slice<axes=[1], starts=[0], ends=[1], steps=[1]>(%pos) : i64[b, 1]; %one = const [1] : i64[]; %pm1 = sub(%p0, %one) : i64[b, 1]; %pc = concat<axis=1>(%pm1, %pos) : i64[b, n + 1]; %hi = slice<axes=[1], starts=[1], ends=[n + 1], steps=[1]>(%pc) : i64[b, n]; %lo = slice<axes=[1], starts=[0], ends=[n], steps=[1]>(%pc) : i64[b, n]; %d = sub(%hi, %lo) : i64[b, n]; %e = equal(%d, %one) : bool[b, n]; %ne = not(%e) : bool[b, n]; %ni = cast<to=i64>(%ne) : i64[b, n]; %seg = cumsum<axis=1, exclusive=false, reverse=false>(%ni) : i64[b, n]; %br = range<dtype=i64, start=0, limit=b, delta=1> : i64[b]; %b4 = reshape<shape=[b, 1, 1, 1]>(%br) : i64[b, 1, 1, 1]; %bq = expand<shape=[b, 1, n, 1]>(%b4) : i64[b, 1, n, 1]; %bq5 = reshape<shape=[b, 1, n, 1, 1]>(%bq) : i64[b, 1, n, 1, 1]; %rq = reshape<shape=[1, 1, n, 1]>(%r) : i64[1, 1, n, 1]; %rqe = expand<shape=[b, 1, n, 1]>(%rq) : i64[b, 1, n, 1]; %rq5 = reshape<shape=[b, 1, n, 1, 1]>(%rqe) : i64[b, 1, n, 1, 1]; %iq = concat<axis=4>(%bq5, %rq5) : i64[b, 1, n, 1, 2]; %bk = expand<shape=[b, 1, 1, n]>(%b4) : i64[b, 1, 1, n]; %bk5 = reshape<shape=[b, 1, 1, n, 1]>(%bk) : i64[b, 1, 1, n, 1]; %rk = reshape<shape=[1, 1, 1, n]>(%r) : i64[1, 1, 1, n]; %rke = expand<shape=[b, 1, 1, n]>(%rk) : i64[b, 1, 1, n]; %rk5 = reshape<shape=[b, 1, 1, n, 1]>(%rke) : i64[b, 1, 1, n, 1]; %ik = concat<axis=4>(%bk5, %rk5) : i64[b, 1, 1, n, 2]; %sq = gather_nd<batch_dims=0>(%seg, %iq) : i64[b, 1, n, 1]; %sk = gather_nd<batch_dims=0>(%seg, %ik) : i64[b, 1, 1, n]; %same = equal(%sq, %sk) : bool[b, 1, n, n]; %t = const [true] : bool[]; %ts = and(%t, %same) : bool[b, 1, n, n]; %pk = gather_nd<batch_dims=0>(%pos, %ik) : i64[b, 1, 1, n]; %pq = gather_nd<batch_dims=0>(%pos, %iq) : i64[b, 1, n, 1]; %le = less_equal(%pk, %pq) : bool[b, 1, n, n]; %c = and(%ts, %le) : bool[b, 1, n, n]; %z = const [0.0] : f32[]; %fm = const [-3.4028235e38] : f32[]; %mf = where(%c, %z, %fm) : f32[b, 1, n, n]; %c8 = const [0.35355338] : f32[]; %s = matmul(%q, %k) : f32[b, 2, n, n]; %sc = mul(%s, %c8) : f32[b, 2, n, n]; %sm = add(%sc, %mf) : f32[b, 2, n, n]; %sp = softmax<axis=3>(%sm) : f32[b, 2, n, n]; %y = matmul(%sp, %v) : f32[b, 2, n, 8]; return %o = %y; }"#.replace("; ", "\n");
    let graph = tcc_ir::text::parse(&text, &weight).expect("parses");
    let (opt, explanation) = egraph::optimize(&graph, &Config::default()).expect("optimises");
    assert!(
        !explanation
            .fired
            .iter()
            .any(|(n, _)| n.starts_with("attention-causal")),
        "a causal rule fired on positions from an input:\n{}",
        text::print(&opt)
    );
    assert!(text::print(&opt).contains("mask=add"));
}

// Reassociation (linear attention, KV-first): at the default hint (seq = 128, head dim 16)
// the reassociated form is the cheaper.
rule_test!(
    matmul_reassociate,
    "matmul-reassociate",
    1e-5,
    r#"graph(%q: f32[2, n, 16], %k: f32[2, 16, n], %v: f32[2, n, 16]) {; %s = matmul(%q, %k) : f32[2, n, n]; %y = matmul(%s, %v) : f32[2, n, 16]; return %o = %y; }"#,
    expect = "f32[2, 16, 16]"
);
rule_test!(
    row_sum_of_product,
    "row-sum-of-product",
    1e-5,
    r#"graph(%q: f32[2, n, 16], %k: f32[2, 16, n]) {; %s = matmul(%q, %k) : f32[2, n, n]; %r = reduce_sum<axes=[2], keep_dims=true>(%s) : f32[2, n, 1]; return %o = %r; }"#,
    expect = "reduce_sum<axes=[2], keep_dims=true>(%k) : f32[2, 16, 1]"
);
rule_test!(
    row_div_past_product,
    "row-div-past-product",
    1e-5,
    r#"graph(%q: f32[2, n, 16], %k: f32[2, 16, n], %v: f32[2, n, 16]) {; %s = matmul(%q, %k) : f32[2, n, n]; %r = reduce_sum<axes=[2], keep_dims=true>(%s) : f32[2, n, 1]; %one = const [1.0] : f32[]; %r1 = add(%r, %one) : f32[2, n, 1]; %p = div(%s, %r1) : f32[2, n, n]; %y = matmul(%p, %v) : f32[2, n, 16]; return %o = %y; }"#,
    expect = "f32[2, 16, 16]"
);
// Quantised GEMMs: ONNX Runtime's dynamic quantisation chain (per tensor, as quantize_dynamic
// writes it) into one qgemm, then its bias and GELU.
rule_test!(
    qgemm_dynamic,
    "qgemm-dynamic",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %mx = reduce_max<axes=[0, 1], keep_dims=false>(%x) : f32[]; %mn0 = reduce_min<axes=[0, 1], keep_dims=false>(%x) : f32[]; %z0 = const [0.0] : f32[]; %c255 = const [255.0] : f32[]; %mn = min(%mn0, %z0) : f32[]; %mxp = max(%mx, %z0) : f32[]; %rg = sub(%mxp, %mn) : f32[]; %sa = div(%rg, %c255) : f32[]; %ms = div(%mn, %sa) : f32[]; %zp0 = sub(%z0, %ms) : f32[]; %zp1 = max(%zp0, %z0) : f32[]; %zp2 = min(%zp1, %c255) : f32[]; %zp3 = round(%zp2) : f32[]; %za = cast<to=u8>(%zp3) : u8[]; %d = div(%x, %sa) : f32[n, 8]; %r = round(%d) : f32[n, 8]; %zf = cast<to=f32>(%za) : f32[]; %t = add(%r, %zf) : f32[n, 8]; %t1 = max(%t, %z0) : f32[n, 8]; %t2 = min(%t1, %c255) : f32[n, 8]; %q = cast<to=u8>(%t2) : u8[n, 8]; %w = const [3, -7, 127, -128, 0, 1, -1, 55, 9, 12, -30, 77, 100, -99, 4, 2, -5, 6, 8, -127, 64, -64, 33, 21, 11, -13, 17, -19, 23, -29, 31, 37] : i8[8, 4]; %zw = const [0, 0, 0, 0] : i8[4]; %acc = matmul_integer<saturate_pairs=false>(%q, %w, %za, %zw) : i32[n, 4]; %af = cast<to=f32>(%acc) : f32[n, 4]; %sw = const @"sw_4" : f32[4]; %s = mul(%sa, %sw) : f32[4]; %y = mul(%af, %s) : f32[n, 4]; return %o = %y; }"#,
    expect = "qgemm<activation=none, bias=false, saturate_pairs=false>"
);
rule_test!(
    qgemm_dynamic_saturating,
    "qgemm-dynamic",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %mx = reduce_max<axes=[0, 1], keep_dims=false>(%x) : f32[]; %mn0 = reduce_min<axes=[0, 1], keep_dims=false>(%x) : f32[]; %z0 = const [0.0] : f32[]; %c255 = const [255.0] : f32[]; %mn = min(%mn0, %z0) : f32[]; %mxp = max(%mx, %z0) : f32[]; %rg = sub(%mxp, %mn) : f32[]; %sa = div(%rg, %c255) : f32[]; %ms = div(%mn, %sa) : f32[]; %zp0 = sub(%z0, %ms) : f32[]; %zp1 = max(%zp0, %z0) : f32[]; %zp2 = min(%zp1, %c255) : f32[]; %zp3 = round(%zp2) : f32[]; %za = cast<to=u8>(%zp3) : u8[]; %d = div(%x, %sa) : f32[n, 8]; %r = round(%d) : f32[n, 8]; %zf = cast<to=f32>(%za) : f32[]; %t = add(%r, %zf) : f32[n, 8]; %t1 = max(%t, %z0) : f32[n, 8]; %t2 = min(%t1, %c255) : f32[n, 8]; %q = cast<to=u8>(%t2) : u8[n, 8]; %w = const [3, -7, 127, -128, 0, 1, -1, 55, 9, 12, -30, 77, 100, -99, 4, 2, -5, 6, 8, -127, 64, -64, 33, 21, 11, -13, 17, -19, 23, -29, 31, 37] : i8[8, 4]; %zw = const [0, 0, 0, 0] : i8[4]; %acc = matmul_integer<saturate_pairs=true>(%q, %w, %za, %zw) : i32[n, 4]; %af = cast<to=f32>(%acc) : f32[n, 4]; %sw = const @"sw_4" : f32[4]; %s = mul(%sa, %sw) : f32[4]; %y = mul(%af, %s) : f32[n, 4]; return %o = %y; }"#,
    expect = "saturate_pairs=true"
);
rule_test!(
    qgemm_bias,
    "qgemm-bias",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %mx = reduce_max<axes=[0, 1], keep_dims=false>(%x) : f32[]; %mn0 = reduce_min<axes=[0, 1], keep_dims=false>(%x) : f32[]; %z0 = const [0.0] : f32[]; %c255 = const [255.0] : f32[]; %mn = min(%mn0, %z0) : f32[]; %mxp = max(%mx, %z0) : f32[]; %rg = sub(%mxp, %mn) : f32[]; %sa = div(%rg, %c255) : f32[]; %ms = div(%mn, %sa) : f32[]; %zp0 = sub(%z0, %ms) : f32[]; %zp1 = max(%zp0, %z0) : f32[]; %zp2 = min(%zp1, %c255) : f32[]; %zp3 = round(%zp2) : f32[]; %za = cast<to=u8>(%zp3) : u8[]; %d = div(%x, %sa) : f32[n, 8]; %r = round(%d) : f32[n, 8]; %zf = cast<to=f32>(%za) : f32[]; %t = add(%r, %zf) : f32[n, 8]; %t1 = max(%t, %z0) : f32[n, 8]; %t2 = min(%t1, %c255) : f32[n, 8]; %q = cast<to=u8>(%t2) : u8[n, 8]; %w = const [3, -7, 127, -128, 0, 1, -1, 55, 9, 12, -30, 77, 100, -99, 4, 2, -5, 6, 8, -127, 64, -64, 33, 21, 11, -13, 17, -19, 23, -29, 31, 37] : i8[8, 4]; %zw = const [0, 0, 0, 0] : i8[4]; %acc = matmul_integer<saturate_pairs=false>(%q, %w, %za, %zw) : i32[n, 4]; %af = cast<to=f32>(%acc) : f32[n, 4]; %sw = const @"sw_4" : f32[4]; %s = mul(%sa, %sw) : f32[4]; %y = mul(%af, %s) : f32[n, 4]; %b = const @"b_4" : f32[4]; %yb = add(%b, %y) : f32[n, 4]; return %o = %yb; }"#,
    expect = "qgemm<activation=none, bias=true"
);
rule_test!(
    qgemm_gelu_erf,
    "gemm-gelu-erf",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %mx = reduce_max<axes=[0, 1], keep_dims=false>(%x) : f32[]; %mn0 = reduce_min<axes=[0, 1], keep_dims=false>(%x) : f32[]; %z0 = const [0.0] : f32[]; %c255 = const [255.0] : f32[]; %mn = min(%mn0, %z0) : f32[]; %mxp = max(%mx, %z0) : f32[]; %rg = sub(%mxp, %mn) : f32[]; %sa = div(%rg, %c255) : f32[]; %ms = div(%mn, %sa) : f32[]; %zp0 = sub(%z0, %ms) : f32[]; %zp1 = max(%zp0, %z0) : f32[]; %zp2 = min(%zp1, %c255) : f32[]; %zp3 = round(%zp2) : f32[]; %za = cast<to=u8>(%zp3) : u8[]; %d = div(%x, %sa) : f32[n, 8]; %r = round(%d) : f32[n, 8]; %zf = cast<to=f32>(%za) : f32[]; %t = add(%r, %zf) : f32[n, 8]; %t1 = max(%t, %z0) : f32[n, 8]; %t2 = min(%t1, %c255) : f32[n, 8]; %q = cast<to=u8>(%t2) : u8[n, 8]; %w = const [3, -7, 127, -128, 0, 1, -1, 55, 9, 12, -30, 77, 100, -99, 4, 2, -5, 6, 8, -127, 64, -64, 33, 21, 11, -13, 17, -19, 23, -29, 31, 37] : i8[8, 4]; %zw = const [0, 0, 0, 0] : i8[4]; %acc = matmul_integer<saturate_pairs=false>(%q, %w, %za, %zw) : i32[n, 4]; %af = cast<to=f32>(%acc) : f32[n, 4]; %sw = const @"sw_4" : f32[4]; %s = mul(%sa, %sw) : f32[4]; %y = mul(%af, %s) : f32[n, 4]; %b = const @"b_4" : f32[4]; %yb = add(%y, %b) : f32[n, 4]; %r2 = const [1.4142135] : f32[]; %one = const [1.0] : f32[]; %h = const [0.5] : f32[]; %dd = div(%yb, %r2) : f32[n, 4]; %e = erf(%dd) : f32[n, 4]; %p = add(%e, %one) : f32[n, 4]; %m = mul(%yb, %p) : f32[n, 4]; %g = mul(%m, %h) : f32[n, 4]; return %o = %g; }"#,
    expect = "qgemm<activation=gelu_erf, bias=true"
);
rule_test!(
    qdq_matmul,
    "qdq-matmul",
    1e-6,
    r#"graph(%x: f32[n, 8]) {; %s = const [0.05] : f32[]; %s2 = const [0.05] : f32[]; %z = const [128.0] : f32[]; %z2 = const [128.0] : f32[]; %lo = const [0.0] : f32[]; %hi = const [255.0] : f32[]; %d = div(%x, %s) : f32[n, 8]; %r = round(%d) : f32[n, 8]; %t = add(%r, %z) : f32[n, 8]; %t1 = max(%t, %lo) : f32[n, 8]; %t2 = min(%t1, %hi) : f32[n, 8]; %q = cast<to=u8>(%t2) : u8[n, 8]; %qf = cast<to=f32>(%q) : f32[n, 8]; %c = sub(%qf, %z2) : f32[n, 8]; %dq = mul(%c, %s2) : f32[n, 8]; %w = const [8.0, 35.5, 11.875, -3.5, -15.5, 57.0, -8.0, -5.0625, 15.5, -32.0, -3.75, 7.9375, -9.0, 19.5, 1.5, 5.9375, 19.0, -57.0, -12.625, 4.3125, 12.25, 51.5, 2.375, -1.75, 28.5, -43.5, 15.875, -5.4375, 31.75, -63.5, -15.5, 4.25] : f32[8, 4]; %y = matmul(%dq, %w) : f32[n, 4]; return %o = %y; }"#,
    expect = "qgemm<activation=none, bias=false, saturate_pairs=false>"
);
// Convolution (at sizes where the cost model prefers the product: at a few channels and
// positions one convolution kernel costs less than three).
rule_test!(
    conv_patch_gemm,
    "conv-patch-gemm",
    0.0,
    r#"graph(%x: f32[n, 3, 16, 24]) {; %w = const @"w_48x3x8x8" : f32[48, 3, 8, 8]; %y = conv<strides=[8, 8], pads_begin=[0, 0], pads_end=[0, 0], dilations=[1, 1], group=1>(%x, %w) : f32[n, 48, 2, 3]; return %o = %y; }"#,
    expect = "gemm<activation=none, bias=false>"
);
rule_test!(
    conv_patch_gemm_1d,
    "conv-patch-gemm",
    0.0,
    r#"graph(%x: f32[n, 16, 96]) {; %w = const @"w_40x16x12" : f32[40, 16, 12]; %y = conv<strides=[12], pads_begin=[0], pads_end=[0], dilations=[1], group=1>(%x, %w) : f32[n, 40, 8]; return %o = %y; }"#,
    expect = "gemm<activation=none, bias=false>"
);
rule_test!(
    attention_causal_zero_where,
    "attention-causal-zero-where",
    0.0,
    r#"graph(%q: f32[1, 2, n, 8], %k: f32[1, 2, 8, n], %v: f32[1, 2, n, 8], %pad: bool[1, n]) {; %r = range<dtype=i64, start=0, limit=n, delta=1> : i64[n]; %rk = reshape<shape=[1, 1, 1, n]>(%r) : i64[1, 1, 1, n]; %rq = reshape<shape=[1, 1, n, 1]>(%r) : i64[1, 1, n, 1]; %le = less_equal(%rk, %rq) : bool[1, 1, n, n]; %pm = reshape<shape=[1, 1, 1, n]>(%pad) : bool[1, 1, 1, n]; %a = and(%le, %pm) : bool[1, 1, n, n]; %z = const [0.0] : f32[1]; %ninf = const [-inf] : f32[1]; %w = where(%a, %z, %ninf) : f32[1, 1, n, n]; %z0 = const [0.0] : f32[1, 1]; %ze = expand<shape=[n, n]>(%z0) : f32[n, n]; %m = add(%ze, %w) : f32[1, 1, n, n]; %mx = reduce_max<axes=[3], keep_dims=true>(%m) : f32[1, 1, n, 1]; %ni = const [-inf] : f32[]; %dead = equal(%mx, %ni) : bool[1, 1, n, 1]; %c8 = const [0.35355338] : f32[]; %s = matmul(%q, %k) : f32[1, 2, n, n]; %sc = mul(%s, %c8) : f32[1, 2, n, n]; %sm = add(%sc, %m) : f32[1, 2, n, n]; %p = softmax<axis=3>(%sm) : f32[1, 2, n, n]; %zz = const [0.0] : f32[]; %f = where(%dead, %zz, %p) : f32[1, 2, n, n]; %y = matmul(%f, %v) : f32[1, 2, n, 8]; return %o = %y; }"#,
    expect = "zero_where=true, causal=true"
);
rule_test!(
    scores_scale_outward,
    "scores-scale-outward",
    1e-6,
    r#"graph(%q: f32[2, 3, n, 8], %k: f32[2, 3, 8, n], %v: f32[2, 3, n, 8]) {; %c = const [0.59460354] : f32[]; %qs = mul(%q, %c) : f32[2, 3, n, 8]; %ks = mul(%k, %c) : f32[2, 3, 8, n]; %s = matmul(%qs, %ks) : f32[2, 3, n, n]; %p = softmax<axis=3>(%s) : f32[2, 3, n, n]; %y = matmul(%p, %v) : f32[2, 3, n, 8]; return %o = %y; }"#,
    expect = "attention<scale=mul(0.35355"
);
rule_test!(
    transpose_attention,
    "transpose-attention",
    0.0,
    r#"graph(%q: f32[2, 3, n, 8], %k: f32[2, 3, 8, n], %v: f32[2, 3, n, 8]) {; %s = matmul(%q, %k) : f32[2, 3, n, n]; %p = softmax<axis=3>(%s) : f32[2, 3, n, n]; %y = matmul(%p, %v) : f32[2, 3, n, 8]; %t = transpose<perm=[0, 2, 1, 3]>(%y) : f32[2, n, 3, 8]; return %o = %t; }"#,
    expect = "perm_out=[0, 2, 1, 3]"
);
// Normalisations.
rule_test!(
    add_layer_norm,
    "add-layer-norm",
    0.0,
    r#"graph(%x: f32[n, 3, 8], %r: f32[n, 3, 8]) {; %s = const @"s_8" : f32[8]; %b = const @"b_8" : f32[8]; %a = add(%x, %r) : f32[n, 3, 8]; %y = layer_norm<axis=2, epsilon=1e-5>(%a, %s, %b) : f32[n, 3, 8]; return %o = %y; }"#,
    expect = "add_layer_norm<"
);
rule_test!(
    layer_norm_decomposed,
    "layer-norm-decomposed",
    1e-6,
    r#"graph(%x: f32[n, 3, 8]) {; %s = const @"s_8" : f32[8]; %b = const @"b_8" : f32[8]; %two = const [2.0] : f32[]; %eps = const [1e-5] : f32[]; %m = reduce_mean<axes=[2], keep_dims=true>(%x) : f32[n, 3, 1]; %d = sub(%x, %m) : f32[n, 3, 8]; %p = pow(%d, %two) : f32[n, 3, 8]; %v = reduce_mean<axes=[2], keep_dims=true>(%p) : f32[n, 3, 1]; %ve = add(%v, %eps) : f32[n, 3, 1]; %sd = sqrt(%ve) : f32[n, 3, 1]; %nm = div(%d, %sd) : f32[n, 3, 8]; %sc = mul(%nm, %s) : f32[n, 3, 8]; %y = add(%sc, %b) : f32[n, 3, 8]; return %o = %y; }"#,
    expect = "layer_norm<axis=2"
);
rule_test!(
    rms_norm,
    "rms-norm",
    1e-6,
    r#"graph(%x: f32[n, 3, 8]) {; %w = const @"w_8" : f32[8]; %two = const [2.0] : f32[]; %eps = const [1e-6] : f32[]; %one = const [1.0] : f32[]; %p = pow(%x, %two) : f32[n, 3, 8]; %v = reduce_mean<axes=[2], keep_dims=true>(%p) : f32[n, 3, 1]; %ve = add(%v, %eps) : f32[n, 3, 1]; %sd = sqrt(%ve) : f32[n, 3, 1]; %r = div(%one, %sd) : f32[n, 3, 1]; %nm = mul(%x, %r) : f32[n, 3, 8]; %y = mul(%w, %nm) : f32[n, 3, 8]; return %o = %y; }"#,
    expect = "rms_norm<axis=2"
);
rule_test!(
    rms_norm_right,
    "rms-norm-right",
    1e-6,
    r#"graph(%x: f32[n, 3, 8]) {; %w = const @"w_8" : f32[8]; %eps = const [1e-6] : f32[]; %sq = mul(%x, %x) : f32[n, 3, 8]; %v = reduce_mean<axes=[2], keep_dims=true>(%sq) : f32[n, 3, 1]; %ve = add(%v, %eps) : f32[n, 3, 1]; %sd = sqrt(%ve) : f32[n, 3, 1]; %nm = div(%x, %sd) : f32[n, 3, 8]; %y = mul(%nm, %w) : f32[n, 3, 8]; return %o = %y; }"#,
    expect = "rms_norm<axis=2"
);

// Transposes.
rule_test!(
    transpose_through_reshapes,
    "transpose-through-reshapes",
    0.0,
    r#"graph(%q: f32[n, 2, s, 8], %x: f32[n, s, 2, 8]) {; %h = transpose<perm=[0, 2, 1, 3]>(%x) : f32[n, 2, s, 8]; %a = reshape<shape=[2*n, s, 8]>(%h) : f32[2*n, s, 8]; %t = transpose<perm=[0, 2, 1]>(%a) : f32[2*n, 8, s]; %y = reshape<shape=[n, 2, 8, s]>(%t) : f32[n, 2, 8, s]; %m = matmul(%q, %y) : f32[n, 2, s, s]; return %o = %m; }"#,
    expect = "perm_b=[0, 2, 3, 1]>(%q, %x)"
);
rule_test!(
    transpose_transpose,
    "transpose-transpose",
    0.0,
    r#"graph(%x: f32[n, s, 2, 8]) {; %a = transpose<perm=[0, 2, 1, 3]>(%x) : f32[n, 2, s, 8]; %b = transpose<perm=[0, 1, 3, 2]>(%a) : f32[n, 2, 8, s]; %e = erf(%b) : f32[n, 2, 8, s]; return %o = %e; }"#,
    expect = "transpose<perm=[0, 2, 3, 1]>(%x)"
);

// Projections.
rule_test!(
    qkv_merge,
    "qkv-merge",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %wq = const @"wq_8x4" : f32[8, 4]; %bq = const @"bq_4" : f32[4]; %wk = const @"wk_8x4" : f32[8, 4]; %bk = const @"bk_4" : f32[4]; %wv = const @"wv_8x6" : f32[8, 6]; %bv = const @"bv_6" : f32[6]; %q = matmul(%x, %wq) : f32[n, 4]; %qb = add(%q, %bq) : f32[n, 4]; %k = matmul(%x, %wk) : f32[n, 4]; %kb = add(%k, %bk) : f32[n, 4]; %v = matmul(%x, %wv) : f32[n, 6]; %vb = add(%v, %bv) : f32[n, 6]; return %q = %qb; return %k = %kb; return %v = %vb; }"#
);
rule_test!(
    gemm_slice_split,
    "gemm-slice-split",
    0.0,
    r#"graph(%x: f32[n, 8]) {; %w = const @"w_8x12" : f32[8, 12]; %m = matmul(%x, %w) : f32[n, 12]; %a = slice<axes=[1], starts=[0], ends=[4], steps=[1]>(%m) : f32[n, 4]; %b = slice<axes=[1], starts=[4], ends=[12], steps=[1]>(%m) : f32[n, 8]; %e = erf(%a) : f32[n, 4]; return %a = %e; return %b = %b; }"#,
    expect = "f32[8, 8]"
);
rule_test!(
    slice_through_reshape,
    "slice-through-reshape",
    0.0,
    r#"graph(%x: f32[2, n, 8]) {; %w = const @"w_8x12" : f32[8, 12]; %r = reshape<shape=[2*n, 8]>(%x) : f32[2*n, 8]; %m = matmul(%r, %w) : f32[2*n, 12]; %v = reshape<shape=[2, n, 12]>(%m) : f32[2, n, 12]; %a = slice<axes=[2], starts=[0], ends=[4], steps=[1]>(%v) : f32[2, n, 4]; %b = slice<axes=[2], starts=[4], ends=[12], steps=[1]>(%v) : f32[2, n, 8]; return %a = %a; return %b = %b; }"#,
    expect = "reshape<"
);

/// Every rule has a line above: a new rule without a test fails here.
#[test]
fn every_rule_is_tested() {
    let source = include_str!("rules.rs");
    for r in egraph::rules::all() {
        let quoted = format!("\"{}\"", r.name());
        assert!(
            source.matches(&quoted).count() >= 1,
            "rule `{}` has no rule_test! line",
            r.name()
        );
    }
}

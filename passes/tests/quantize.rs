//! The `quantize` pass: the weights' per-channel quantisation, the rewrite of every product by
//! constant weights into dynamic int8 quantisation that the optimiser fuses into `qgemm`, and
//! the accuracy gate on calibration inputs.

use std::collections::HashMap;
use tcc_ir::{interp, text, Graph, Op, Tensor};
use tcc_passes::egraph::{self, Config};
use tcc_passes::quantize::{self, Gate};

/// A deterministic generator (xorshift) of values in `[-1, 1)`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
    }

    fn tensor(&mut self, shape: &[usize], scale: f32) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(
            shape.to_vec(),
            (0..n).map(|_| self.next() * scale).collect(),
        )
        .unwrap()
    }
}

/// Two products by constant weights with a GELU between them, as an encoder's feed-forward
/// block: `gelu(x W1 + b1) W2`. `W1`'s column 0 is large (an outlier channel).
fn ffn(r: &mut Rng) -> Graph {
    let mut w1 = r.tensor(&[16, 32], 0.5).data().to_f64_vec();
    for k in 0..16 {
        w1[k * 32] *= 40.0;
    }
    let w1 = Tensor::from_vec(vec![16, 32], w1.iter().map(|&v| v as f32).collect()).unwrap();
    let weights: HashMap<&str, Tensor> = [
        ("w1", w1),
        ("b1", r.tensor(&[32], 0.1)),
        ("w2", r.tensor(&[32, 8], 0.5)),
    ]
    .into_iter()
    .collect();
    let ir = "graph(%x: f32[b, s, 16]) {
  %w1 = const @\"w1\" : f32[16, 32]
  %b1 = const @\"b1\" : f32[32]
  %w2 = const @\"w2\" : f32[32, 8]
  %m = matmul(%x, %w1) : f32[b, s, 32]
  %y = add(%m, %b1) : f32[b, s, 32]
  %r2 = const [1.4142135] : f32[]
  %one = const [1.0] : f32[]
  %h = const [0.5] : f32[]
  %d = div(%y, %r2) : f32[b, s, 32]
  %e = erf(%d) : f32[b, s, 32]
  %p = add(%e, %one) : f32[b, s, 32]
  %q = mul(%y, %p) : f32[b, s, 32]
  %g = mul(%q, %h) : f32[b, s, 32]
  %z = matmul(%g, %w2) : f32[b, s, 8]
  return %z = %z
}";
    text::parse(ir, &|name| weights.get(name).cloned()).unwrap()
}

fn run(graph: &Graph, x: &Tensor) -> Vec<f64> {
    let inputs: HashMap<String, Tensor> = [("x".to_string(), x.clone())].into_iter().collect();
    interp::run(graph, &inputs).unwrap()[0]
        .1
        .data()
        .to_f64_vec()
}

#[test]
fn weights_are_quantised_per_column_symmetrically() {
    let mut r = Rng(7);
    let mut w = r.tensor(&[5, 3], 2.0).data().to_f64_vec();
    // A zero column gets scale 1 and zeros.
    for k in 0..5 {
        w[k * 3 + 1] = 0.0;
    }
    let w = Tensor::from_vec(vec![5, 3], w.iter().map(|&v| v as f32).collect()).unwrap();
    let (q, s) = quantize::quantise_weights(&w).unwrap();
    let (q, s, w) = (
        q.as_slice::<i8>().unwrap().to_vec(),
        s.as_slice::<f32>().unwrap().to_vec(),
        w.data().to_f64_vec(),
    );
    assert_eq!(s[1], 1.0);
    for j in [0, 2] {
        let max = (0..5).map(|k| w[k * 3 + j].abs()).fold(0.0, f64::max);
        assert_eq!(s[j], (max as f32) / 127.0, "column {j}'s scale");
        // The largest magnitude maps to +-127; every value within half a step.
        assert!((0..5).any(|k| q[k * 3 + j].unsigned_abs() == 127));
        for k in 0..5 {
            let back = f64::from(q[k * 3 + j]) * f64::from(s[j]);
            assert!(
                (back - w[k * 3 + j]).abs() <= f64::from(s[j]) * 0.5 + 1e-9,
                "w[{k}, {j}] = {} comes back as {back}",
                w[k * 3 + j]
            );
        }
    }
    assert!((0..5).all(|k| q[k * 3 + 1] == 0));
}

#[test]
fn every_product_by_constant_weights_is_quantised_and_fused_into_qgemm() {
    let mut r = Rng(11);
    let graph = ffn(&mut r);
    assert_eq!(quantize::candidates(&graph).len(), 2);
    let mut q = graph.clone();
    let report = quantize::quantize(&mut q, None).unwrap();
    assert_eq!(report.quantised.len(), 2);
    assert!(report.kept_f32.is_empty() && report.cosine.is_none());
    assert!(report.to_string().contains("no accuracy gate applied"));
    assert!(q
        .node_ids()
        .iter()
        .all(|&id| !matches!(q.op(id), Op::MatMul)));
    tcc_ir::verify::verify(&q).unwrap();
    // Close to the f32 model: per-row activation steps of at most (max - min) / 255.
    let x = r.tensor(&[2, 5, 16], 1.0);
    let (want, got) = (run(&graph, &x), run(&q, &x));
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (w, g) in want.iter().zip(&got) {
        assert!((w - g).abs() <= 0.05 * scale, "f32 {w}, int8 {g}");
    }
    assert_ne!(want, got, "quantisation changes the results");
    // The optimiser fuses each chain into one qgemm with its bias and GELU, exactly.
    let (opt, _) = egraph::optimize(&q, &Config::default()).unwrap();
    let printed = text::print(&opt);
    assert_eq!(printed.matches("qgemm<").count(), 2, "{printed}");
    assert!(printed.contains("qgemm<activation=gelu_erf, bias=true, saturate_pairs=false>"));
    assert!(!printed.contains("matmul_integer"), "{printed}");
    let fused = run(&opt, &x);
    assert!(
        got.iter()
            .zip(&fused)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "the fused graph computes the quantised one exactly"
    );
}

#[test]
fn the_gate_keeps_products_f32_until_the_cosine_reaches_the_bar() {
    let mut r = Rng(23);
    let graph = ffn(&mut r);
    // Inputs whose rows have one large value, so per-row steps are coarse for the rest.
    let mut x = r.tensor(&[4, 6, 16], 1.0).data().to_f64_vec();
    for row in 0..24 {
        x[row * 16 + row % 16] *= 30.0;
    }
    let x = Tensor::from_vec(vec![4, 6, 16], x.iter().map(|&v| v as f32).collect()).unwrap();
    let case: HashMap<String, Tensor> = [("x".to_string(), x.clone())].into_iter().collect();
    let gate = |min_cosine| Gate {
        min_cosine,
        cases: vec![case.clone()],
    };
    // A bar every quantisation meets: nothing kept.
    let mut all = graph.clone();
    let loose = quantize::quantize(&mut all, Some(&gate(0.5))).unwrap();
    assert!(loose.kept_f32.is_empty(), "{loose}");
    let all_cos = loose.cosine_all.unwrap();
    assert!((0.5..1.0).contains(&all_cos), "{loose}");
    // A bar above it: some product stays f32, and the cosine reached meets the bar.
    let bar = 1.0 - (1.0 - all_cos) / 4.0;
    let mut kept = graph.clone();
    let strict = quantize::quantize(&mut kept, Some(&gate(bar))).unwrap();
    assert!(!strict.kept_f32.is_empty(), "{strict}");
    assert!(strict.cosine.unwrap() >= bar, "{strict}");
    assert_eq!(strict.quantised.len() + strict.kept_f32.len(), 2);
    assert!(strict.to_string().contains("kept f32"), "{strict}");
    assert_eq!(
        kept.node_ids()
            .iter()
            .filter(|&&id| matches!(kept.op(id), Op::MatMul))
            .count(),
        strict.kept_f32.len()
    );
    // Calibration inputs without the model's input are an error naming it.
    let mut g = graph.clone();
    let empty = Gate {
        min_cosine: 0.9,
        cases: vec![HashMap::new()],
    };
    let e = quantize::quantize(&mut g, Some(&empty))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no array `x`"), "{e}");
}

#[test]
fn dequantised_int8_weights_are_recognised_exactly_and_others_not() {
    use tcc_passes::egraph::rules::quant::dequantised_weights;
    let mut r = Rng(31);
    // As a per-channel quantiser and a folded DequantizeLinear write them: f32(q * s).
    let (k, n) = (6, 5);
    let scales: Vec<f32> = (0..n).map(|j| 0.0037 * (j as f32 + 1.3)).collect();
    let mut q: Vec<i8> = (0..k * n)
        .map(|_| (r.next() * 127.0).round() as i8)
        .collect();
    for (j, v) in q.iter_mut().take(n).enumerate() {
        *v = if j % 2 == 0 { 127 } else { -127 };
    }
    let w: Vec<f32> = (0..k * n)
        .map(|x| f32::from(q[x]) * scales[x % n])
        .collect();
    let wt = Tensor::from_vec(vec![k, n], w.clone()).unwrap();
    let (q2, s2) = dequantised_weights(&wt).expect("recognised");
    for x in 0..k * n {
        assert_eq!(
            f32::from(q2[x]) * s2[x % n],
            w[x],
            "element {x} reproduced exactly"
        );
    }
    assert_eq!(q2, q);
    // Random weights are not int8 times a scale.
    assert!(dequantised_weights(&r.tensor(&[6, 5], 1.0)).is_none());
}

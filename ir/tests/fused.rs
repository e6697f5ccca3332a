//! The fused ops against the core ops they stand for.
//!
//! For each fused op, a graph with the fused op and a graph with the same computation
//! written out by hand as core ops (not through `tcc_ir::fused::expand`) get the same
//! inferred type, and the interpreter gives bitwise the same result on seeded random
//! inputs of random ranks, with the shape symbols bound to different sizes. Then the type
//! errors: operands that do not fit a fused op are rejected by `Graph::add`, naming the op.

use std::collections::HashMap;
use std::sync::Arc;
use tcc_ir::fused::is_fused;
use tcc_ir::interp::run;
use tcc_ir::{
    Activation, AttentionMask, BinaryOp, Body, DType, Dim, Error, Graph, NodeId, Op, ReduceKind,
    ScoreScale, Tensor, TensorType, UnaryOp,
};

// ---------------------------------------------------------------- helpers

/// A seeded splitmix64 generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn coin(&mut self) -> bool {
        self.below(2) == 0
    }

    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    /// A random permutation of `0..n`.
    fn perm(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, self.below(i + 1));
        }
        p
    }
}

fn sym(s: &str) -> Dim {
    Dim::sym(s)
}

fn one() -> Dim {
    Dim::constant(1)
}

/// The batch dims `b0, b1, ..` of a rank-`rank` matrix operand.
fn batch(rank: usize) -> Vec<Dim> {
    (0..rank - 2).map(|i| sym(&format!("b{i}"))).collect()
}

fn cat(a: &[Dim], b: &[Dim]) -> Vec<Dim> {
    a.iter().chain(b).cloned().collect()
}

/// The dims of an operand that `Transpose { perm }` turns into `dims`.
fn untranspose(dims: &[Dim], perm: &Option<Vec<usize>>) -> Vec<Dim> {
    match perm {
        None => dims.to_vec(),
        Some(p) => {
            let mut out = dims.to_vec();
            for (i, &pi) in p.iter().enumerate() {
                out[pi] = dims[i].clone();
            }
            out
        }
    }
}

/// A graph under construction, with its inputs.
struct G {
    g: Graph,
    ins: Vec<NodeId>,
}

/// A graph input: name, dtype, dims.
type In = (&'static str, DType, Vec<Dim>);

impl G {
    fn new(inputs: &[In]) -> G {
        let mut g = Graph::new();
        let ins = inputs
            .iter()
            .map(|(name, dtype, dims)| g.add_input(name, TensorType::new(*dtype, dims.clone())))
            .collect();
        G { g, ins }
    }

    fn op(&mut self, op: Op, args: &[NodeId]) -> NodeId {
        self.g
            .add(op.clone(), args)
            .unwrap_or_else(|e| panic!("{op:?}: {e}"))
    }

    fn k(&mut self, v: f32) -> NodeId {
        self.g.add_const(Tensor::scalar(v), None)
    }

    fn un(&mut self, u: UnaryOp, x: NodeId) -> NodeId {
        self.op(Op::Unary(u), &[x])
    }

    fn bin(&mut self, b: BinaryOp, x: NodeId, y: NodeId) -> NodeId {
        self.op(Op::Binary(b), &[x, y])
    }

    fn transpose(&mut self, x: NodeId, perm: &Option<Vec<usize>>) -> NodeId {
        match perm {
            Some(p) => self.op(Op::Transpose { perm: p.clone() }, &[x]),
            None => x,
        }
    }

    fn finish(mut self, y: NodeId) -> Graph {
        self.g.add_output("y", y);
        self.g
    }
}

/// A random tensor for the input `name`: floats in `[-2, 2)`; small integers; for an
/// input named `mask`, an additive attention mask whose first query row (the
/// second-to-last axis) is all `-inf`, with a quarter of the other entries `-inf` too.
fn random_input(name: &str, dtype: DType, shape: &[usize], r: &mut Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let v = shape.to_vec();
    match dtype {
        DType::F32 if name == "mask" => {
            let keys = shape.last().copied().unwrap_or(1).max(1);
            let rows = if shape.len() >= 2 {
                shape[shape.len() - 2].max(1)
            } else {
                1
            };
            let data = (0..n)
                .map(|i| {
                    if (i / keys) % rows == 0 || r.below(4) == 0 {
                        f32::NEG_INFINITY
                    } else {
                        r.uniform(-3.0, 3.0)
                    }
                })
                .collect();
            Tensor::from_vec(v, data).unwrap()
        }
        DType::F32 => Tensor::from_vec(v, (0..n).map(|_| r.uniform(-2.0, 2.0)).collect()).unwrap(),
        DType::I64 => Tensor::from_vec(v, (0..n).map(|_| r.below(9) as i64 - 4).collect()).unwrap(),
        DType::Bool if name == "mask" => {
            // As the f32 mask: the first query row masked whole, a quarter of the rest.
            let keys = shape.last().copied().unwrap_or(1).max(1);
            let rows = if shape.len() >= 2 {
                shape[shape.len() - 2].max(1)
            } else {
                1
            };
            let data = (0..n)
                .map(|i| !((i / keys) % rows == 0 || r.below(4) == 0))
                .collect();
            Tensor::from_vec(v, data).unwrap()
        }
        DType::Bool => Tensor::from_vec(v, (0..n).map(|_| r.coin()).collect()).unwrap(),
        other => panic!("no random {other} inputs"),
    }
}

/// Checks that `fused` (whose output is a fused op) and `reference` (its computation in
/// core ops) have the same inputs and result type, and give bitwise the same result on
/// random inputs under three random bindings of the shape symbols. Returns the results.
fn check(what: &str, fused: &Graph, reference: &Graph, r: &mut Rng) -> Vec<Tensor> {
    let out = fused.outputs()[0].1;
    assert!(is_fused(fused.op(out)), "{what}: {:?}", fused.op(out));
    assert!(
        !reference
            .node_ids()
            .into_iter()
            .any(|n| is_fused(reference.op(n))),
        "{what}: the reference has a fused op"
    );
    let ref_out = reference.outputs()[0].1;
    assert_eq!(
        fused.ty(out),
        reference.ty(ref_out),
        "{what}: the fused op's type differs from its core ops'"
    );
    let syms = fused.input_symbols();
    let mut results = Vec::new();
    for (lo, hi) in [(2, 5), (1, 3), (1, 6)] {
        let env: HashMap<String, i64> = syms
            .iter()
            .map(|s| (s.to_string(), (lo + r.below(hi - lo + 1)) as i64))
            .collect();
        let mut inputs = HashMap::new();
        for (&fi, &ri) in fused.inputs().iter().zip(reference.inputs()) {
            let (Op::Input { name }, Op::Input { name: ref_name }) =
                (fused.op(fi), reference.op(ri))
            else {
                unreachable!("inputs are inputs")
            };
            assert_eq!(name, ref_name, "{what}");
            let ty = fused.ty(fi);
            assert_eq!(ty, reference.ty(ri), "{what}: input `{name}`");
            let shape = ty.shape.eval(&|s| env.get(s).copied()).unwrap();
            inputs.insert(name.clone(), random_input(name, ty.dtype, &shape, r));
        }
        let got = run(fused, &inputs)
            .unwrap_or_else(|e| panic!("{what} under {env:?}: {e}"))
            .remove(0)
            .1;
        let want = run(reference, &inputs)
            .unwrap_or_else(|e| panic!("{what} (reference) under {env:?}: {e}"))
            .remove(0)
            .1;
        assert_eq!(got.dtype(), want.dtype(), "{what} under {env:?}");
        assert_eq!(got.shape(), want.shape(), "{what} under {env:?}");
        assert!(
            got.data().to_le_bytes() == want.data().to_le_bytes(),
            "{what} under {env:?}: results differ\n fused: {:?}\n   ref: {:?}",
            got.data().to_f64_vec(),
            want.data().to_f64_vec()
        );
        results.push(got);
    }
    results
}

// ---------------------------------------------------------------- gemm

/// The activation written out as core ops, as `Activation`'s docs give it.
fn activation_by_hand(g: &mut G, activation: Activation, y: NodeId) -> NodeId {
    match activation {
        Activation::None => y,
        Activation::Relu => g.un(UnaryOp::Relu, y),
        Activation::GeluErf => {
            // (y * (erf(y / sqrt 2) + 1)) * 0.5
            let s2 = g.k(std::f32::consts::SQRT_2);
            let t = g.bin(BinaryOp::Div, y, s2);
            let e = g.un(UnaryOp::Erf, t);
            let one = g.k(1.0);
            let p = g.bin(BinaryOp::Add, e, one);
            let m = g.bin(BinaryOp::Mul, y, p);
            let half = g.k(0.5);
            g.bin(BinaryOp::Mul, m, half)
        }
        Activation::GeluTanh => {
            // (y * 0.5) * (tanh((y + pow(y, 3) * 0.044715) * sqrt(2 / pi)) + 1)
            let half = g.k(0.5);
            let h = g.bin(BinaryOp::Mul, y, half);
            let three = g.k(3.0);
            let cube = g.bin(BinaryOp::Pow, y, three);
            let c = g.k(0.044715);
            let sc = g.bin(BinaryOp::Mul, cube, c);
            let inner = g.bin(BinaryOp::Add, y, sc);
            let r = g.k((2.0 / std::f64::consts::PI).sqrt() as f32);
            let arg = g.bin(BinaryOp::Mul, inner, r);
            let t = g.un(UnaryOp::Tanh, arg);
            let one = g.k(1.0);
            let p = g.bin(BinaryOp::Add, t, one);
            g.bin(BinaryOp::Mul, h, p)
        }
    }
}

fn gemm_case(r: &mut Rng, activation: Activation, bias: bool, rank: usize, perms: [bool; 3]) {
    let b = batch(rank);
    let (m, k, n) = (sym("m"), sym("k"), sym("n"));
    let a_dims = cat(&b, &[m.clone(), k.clone()]);
    // B is a matrix, or a batch of them like A, or broadcast over A's batch.
    let b_dims = match r.below(3) {
        0 => vec![k.clone(), n.clone()],
        1 => cat(&b, &[k.clone(), n.clone()]),
        _ => cat(&vec![one(); rank - 2], &[k.clone(), n.clone()]),
    };
    let bias_dims = match r.below(3) {
        0 => vec![n.clone()],
        1 => vec![m.clone(), n.clone()],
        _ => cat(&b, &[one(), n.clone()]),
    };
    let perm_a = perms[0].then(|| r.perm(rank));
    let perm_b = perms[1].then(|| r.perm(b_dims.len()));
    let perm_out = perms[2].then(|| r.perm(rank));
    let mut inputs: Vec<In> = vec![
        ("a", DType::F32, untranspose(&a_dims, &perm_a)),
        ("b", DType::F32, untranspose(&b_dims, &perm_b)),
    ];
    if bias {
        inputs.push(("bias", DType::F32, bias_dims));
    }
    let op = Op::Gemm {
        activation,
        bias,
        perm_a: perm_a.clone(),
        perm_b: perm_b.clone(),
        perm_out: perm_out.clone(),
    };
    let what = format!("{op:?} of rank {rank}");

    let mut f = G::new(&inputs);
    let args = f.ins.clone();
    let y = f.op(op, &args);
    let fused = f.finish(y);

    let mut h = G::new(&inputs);
    let a = h.transpose(h.ins[0], &perm_a);
    let w = h.transpose(h.ins[1], &perm_b);
    let mut y = h.op(Op::MatMul, &[a, w]);
    if bias {
        y = h.bin(BinaryOp::Add, y, h.ins[2]);
    }
    let y = activation_by_hand(&mut h, activation, y);
    let y = h.transpose(y, &perm_out);
    let reference = h.finish(y);

    check(&what, &fused, &reference, r);
}

#[test]
fn gemm_is_its_core_ops() {
    let mut r = Rng(0x6e33);
    for activation in Activation::ALL {
        for bias in [false, true] {
            for rank in 2..=4 {
                gemm_case(&mut r, activation, bias, rank, [false; 3]);
                let perms = [r.coin(), r.coin(), r.coin()];
                gemm_case(&mut r, activation, bias, rank, perms);
            }
        }
    }
    // Each perm on its own, and all three.
    for perms in [
        [true, false, false],
        [false, true, false],
        [false, false, true],
        [true, true, true],
    ] {
        for rank in 2..=4 {
            gemm_case(&mut r, Activation::GeluTanh, true, rank, perms);
        }
    }
}

// ---------------------------------------------------------------- attention

fn attention_case(
    r: &mut Rng,
    scale: ScoreScale,
    mask: AttentionMask,
    nan_filter: bool,
    rank: usize,
    perms: [bool; 4],
) -> Vec<Tensor> {
    let b = batch(rank);
    let (q, d, s, e) = (sym("q"), sym("d"), sym("s"), sym("e"));
    let q_dims = cat(&b, &[q.clone(), d.clone()]);
    let k_dims = cat(&b, &[d.clone(), s.clone()]);
    let v_dims = cat(&b, &[s.clone(), e.clone()]);
    // A mask per query row and key, shared across the batch or not.
    let mask_dims = if r.coin() {
        vec![q.clone(), s.clone()]
    } else {
        cat(&b, &[q.clone(), s.clone()])
    };
    let [perm_q, perm_k, perm_v, perm_out] = perms.map(|p| p.then(|| r.perm(rank)));
    let mut inputs: Vec<In> = vec![
        ("q", DType::F32, untranspose(&q_dims, &perm_q)),
        ("kt", DType::F32, untranspose(&k_dims, &perm_k)),
        ("v", DType::F32, untranspose(&v_dims, &perm_v)),
    ];
    match mask {
        AttentionMask::None => {}
        AttentionMask::Add => inputs.push(("mask", DType::F32, mask_dims)),
        AttentionMask::Bool => inputs.push(("mask", DType::Bool, mask_dims)),
    }
    let op = Op::Attention {
        scale,
        mask,
        nan_filter,
        zero_where: false,
        causal: false,
        causal_min: false,
        perm_q: perm_q.clone(),
        perm_k: perm_k.clone(),
        perm_v: perm_v.clone(),
        perm_out: perm_out.clone(),
    };
    let what = format!("{op:?} of rank {rank}");

    let mut f = G::new(&inputs);
    let args = f.ins.clone();
    let y = f.op(op, &args);
    let fused = f.finish(y);

    let mut h = G::new(&inputs);
    let qq = h.transpose(h.ins[0], &perm_q);
    let kk = h.transpose(h.ins[1], &perm_k);
    let vv = h.transpose(h.ins[2], &perm_v);
    let mut scores = h.op(Op::MatMul, &[qq, kk]);
    match scale {
        ScoreScale::None => {}
        ScoreScale::Mul(c) => {
            let c = h.k(c);
            scores = h.bin(BinaryOp::Mul, scores, c);
        }
        ScoreScale::Div(c) => {
            let c = h.k(c);
            scores = h.bin(BinaryOp::Div, scores, c);
        }
    }
    match mask {
        AttentionMask::None => {}
        AttentionMask::Add => scores = h.bin(BinaryOp::Add, scores, h.ins[3]),
        AttentionMask::Bool => {
            let ninf = h.k(f32::NEG_INFINITY);
            scores = h.op(Op::Where, &[h.ins[3], scores, ninf]);
        }
    }
    let mut p = h.op(Op::Softmax { axis: rank - 1 }, &[scores]);
    if nan_filter {
        // torch's where(isnan(p), 0, p)
        let nan = h.un(UnaryOp::IsNaN, p);
        let zero = h.k(0.0);
        p = h.op(Op::Where, &[nan, zero, p]);
    }
    let y = h.op(Op::MatMul, &[p, vv]);
    let y = h.transpose(y, &perm_out);
    let reference = h.finish(y);

    check(&what, &fused, &reference, r)
}

#[test]
fn attention_is_its_core_ops() {
    let mut r = Rng(0xa77e);
    let has_nan = |ts: &[Tensor]| {
        ts.iter()
            .any(|t| t.as_slice::<f32>().unwrap().iter().any(|x| x.is_nan()))
    };
    for scale_kind in 0..3 {
        for mask in AttentionMask::ALL {
            for nan_filter in [false, true] {
                for rank in 2..=4 {
                    for perms in [[false; 4], [r.coin(), r.coin(), r.coin(), r.coin()]] {
                        let scale = match scale_kind {
                            0 => ScoreScale::None,
                            1 => ScoreScale::Mul(r.uniform(0.1, 1.0)),
                            _ => ScoreScale::Div(r.uniform(1.0, 8.0)),
                        };
                        let out = attention_case(&mut r, scale, mask, nan_filter, rank, perms);
                        // The mask's all -inf row makes NaNs, which the filter turns to 0.
                        assert_eq!(
                            has_nan(&out),
                            mask.is_some() && !nan_filter,
                            "mask {mask:?}, nan_filter {nan_filter}"
                        );
                    }
                }
            }
        }
    }
    // Each perm on its own, and all four.
    for perms in [
        [true, false, false, false],
        [false, true, false, false],
        [false, false, true, false],
        [false, false, false, true],
        [true, true, true, true],
    ] {
        for rank in 2..=4 {
            attention_case(
                &mut r,
                ScoreScale::Mul(0.125),
                AttentionMask::Add,
                true,
                rank,
                perms,
            );
        }
    }
}

/// `zero_where` zeroes the probabilities where its condition (the last operand) holds, after
/// the NaN filter: as the ONNX `Attention` op's expansion zeroes rows whose keys are all masked.
#[test]
fn attention_zero_where_is_its_core_ops() {
    let mut r = Rng(0x2e70);
    for nan_filter in [false, true] {
        let b = batch(3);
        let (q, d, s) = (sym("q"), sym("d"), sym("s"));
        let inputs: Vec<In> = vec![
            ("q", DType::F32, cat(&b, &[q.clone(), d.clone()])),
            ("kt", DType::F32, cat(&b, &[d.clone(), s.clone()])),
            ("v", DType::F32, cat(&b, &[s.clone(), d.clone()])),
            ("mask", DType::F32, vec![q.clone(), s.clone()]),
            ("dead", DType::Bool, vec![q.clone(), one()]),
        ];
        let op = Op::Attention {
            scale: ScoreScale::Div(2.0),
            mask: AttentionMask::Add,
            nan_filter,
            zero_where: true,
            causal: false,
            causal_min: false,
            perm_q: None,
            perm_k: None,
            perm_v: None,
            perm_out: None,
        };
        let mut f = G::new(&inputs);
        let args = f.ins.clone();
        let y = f.op(op, &args);
        let fused = f.finish(y);

        let mut h = G::new(&inputs);
        let scores = h.op(Op::MatMul, &[h.ins[0], h.ins[1]]);
        let two = h.k(2.0);
        let scaled = h.bin(BinaryOp::Div, scores, two);
        let masked = h.bin(BinaryOp::Add, scaled, h.ins[3]);
        let mut p = h.op(Op::Softmax { axis: 2 }, &[masked]);
        if nan_filter {
            let nan = h.un(UnaryOp::IsNaN, p);
            let zero = h.k(0.0);
            p = h.op(Op::Where, &[nan, zero, p]);
        }
        let zero = h.k(0.0);
        p = h.op(Op::Where, &[h.ins[4], zero, p]);
        let y = h.op(Op::MatMul, &[p, h.ins[2]]);
        let reference = h.finish(y);
        check("attention with zero_where", &fused, &reference, &mut r);
    }
}

// ---------------------------------------------------------------- norms

/// `causal` keeps key `j` for query `i` where `j <= i + keys - queries`, after the mask:
/// checked against `trilu` (a different op) for as many queries as keys (symbolic), more keys
/// (a KV cache's last rows) and more queries (the first rows see no key: NaN, then the filter).
#[test]
fn attention_causal_is_its_core_ops() {
    let mut r = Rng(0xca05);
    let (d, s) = (sym("d"), sym("s"));
    let shapes: [(Dim, Dim, i64); 3] = [
        (s.clone(), s.clone(), 0),
        (Dim::constant(3), Dim::constant(7), 4),
        (Dim::constant(6), Dim::constant(4), -2),
    ];
    for (m, n, k) in shapes {
        for (mask, nan_filter) in [
            (AttentionMask::None, false),
            (AttentionMask::Add, true),
            (AttentionMask::Bool, false),
        ] {
            let b = batch(3);
            let mut inputs: Vec<In> = vec![
                ("q", DType::F32, cat(&b, &[m.clone(), d.clone()])),
                ("kt", DType::F32, cat(&b, &[d.clone(), n.clone()])),
                ("v", DType::F32, cat(&b, &[n.clone(), d.clone()])),
            ];
            match mask {
                AttentionMask::None => {}
                AttentionMask::Add => inputs.push(("mask", DType::F32, vec![m.clone(), n.clone()])),
                AttentionMask::Bool => {
                    inputs.push(("mask", DType::Bool, vec![m.clone(), n.clone()]))
                }
            }
            let op = Op::Attention {
                scale: ScoreScale::Mul(0.5),
                mask,
                nan_filter,
                zero_where: false,
                causal: true,
                causal_min: false,
                perm_q: None,
                perm_k: None,
                perm_v: None,
                perm_out: None,
            };
            let what = format!("causal attention, {m} x {n}, {mask:?}");
            let mut f = G::new(&inputs);
            let args = f.ins.clone();
            let y = f.op(op, &args);
            let fused = f.finish(y);

            let mut h = G::new(&inputs);
            let scores = h.op(Op::MatMul, &[h.ins[0], h.ins[1]]);
            let half = h.k(0.5);
            let mut scores = h.bin(BinaryOp::Mul, scores, half);
            let ninf = h.k(f32::NEG_INFINITY);
            match mask {
                AttentionMask::None => {}
                AttentionMask::Add => scores = h.bin(BinaryOp::Add, scores, h.ins[3]),
                AttentionMask::Bool => scores = h.op(Op::Where, &[h.ins[3], scores, ninf]),
            }
            // Ones where the scores are (finite), lower triangle from diagonal k.
            let all = h.bin(BinaryOp::Equal, scores, scores);
            let all = h.op(Op::Cast { to: DType::F32 }, &[all]);
            let lower = h.op(Op::Trilu { upper: false, k }, &[all]);
            let sees = h.op(Op::Cast { to: DType::Bool }, &[lower]);
            let scores = h.op(Op::Where, &[sees, scores, ninf]);
            let mut p = h.op(Op::Softmax { axis: 2 }, &[scores]);
            if nan_filter {
                let nan = h.un(UnaryOp::IsNaN, p);
                let zero = h.k(0.0);
                p = h.op(Op::Where, &[nan, zero, p]);
            }
            let y = h.op(Op::MatMul, &[p, h.ins[2]]);
            let reference = h.finish(y);
            let out = check(&what, &fused, &reference, &mut r);
            // More queries than keys: the first rows see nothing, NaN unless filtered.
            let nans = out
                .iter()
                .any(|t| t.as_slice::<f32>().unwrap().iter().any(|x| x.is_nan()));
            if k < 0 && mask != AttentionMask::Bool {
                assert_eq!(nans, !nan_filter, "{what}");
            }
        }
    }
}

#[test]
fn add_layer_norm_is_its_core_ops() {
    let mut r = Rng(0x1a7e);
    for rank in 1..=4 {
        for _ in 0..4 {
            let dims: Vec<Dim> = (0..rank).map(|i| sym(&format!("d{i}"))).collect();
            let axis = r.below(rank);
            // The residual: the same shape, or broadcast over the leading axes.
            let res_dims = dims[r.below(rank)..].to_vec();
            // Scale and bias: the normalised dims, or the last one alone.
            let norm_dims = if r.coin() {
                dims[axis..].to_vec()
            } else {
                dims[rank - 1..].to_vec()
            };
            let epsilon = [1e-5, 1e-12, 0.5][r.below(3)];
            let inputs: Vec<In> = vec![
                ("x", DType::F32, dims.clone()),
                ("res", DType::F32, res_dims),
                ("scale", DType::F32, norm_dims.clone()),
                ("bias", DType::F32, norm_dims),
            ];
            let op = Op::AddLayerNorm { axis, epsilon };
            let what = format!("{op:?} of rank {rank}");

            let mut f = G::new(&inputs);
            let args = f.ins.clone();
            let y = f.op(op, &args);
            let fused = f.finish(y);

            let mut h = G::new(&inputs);
            let [x, res, scale, bias] = h.ins[..] else {
                unreachable!()
            };
            let sum = h.bin(BinaryOp::Add, x, res);
            let y = h.op(Op::LayerNorm { axis, epsilon }, &[sum, scale, bias]);
            let reference = h.finish(y);

            check(&what, &fused, &reference, &mut r);
        }
    }
}

#[test]
fn rms_norm_is_its_core_ops() {
    let mut r = Rng(0x5e75);
    for rank in 1..=4 {
        for _ in 0..4 {
            let dims: Vec<Dim> = (0..rank).map(|i| sym(&format!("d{i}"))).collect();
            let axis = r.below(rank);
            let scale_dims = if r.coin() {
                dims[axis..].to_vec()
            } else {
                dims[rank - 1..].to_vec()
            };
            let epsilon = [1e-6, 1e-12, 0.25][r.below(3)];
            let inputs: Vec<In> = vec![
                ("x", DType::F32, dims.clone()),
                ("scale", DType::F32, scale_dims),
            ];
            let op = Op::RmsNorm { axis, epsilon };
            let what = format!("{op:?} of rank {rank}");

            let mut f = G::new(&inputs);
            let args = f.ins.clone();
            let y = f.op(op, &args);
            let fused = f.finish(y);

            // x / sqrt(mean(x * x) + epsilon) * scale
            let mut h = G::new(&inputs);
            let [x, scale] = h.ins[..] else {
                unreachable!()
            };
            let sq = h.bin(BinaryOp::Mul, x, x);
            let reduce = Op::Reduce {
                kind: ReduceKind::Mean,
                axes: (axis..rank).collect(),
                keep_dims: true,
            };
            let ms = h.op(reduce, &[sq]);
            let eps = h.k(epsilon);
            let ve = h.bin(BinaryOp::Add, ms, eps);
            let rms = h.un(UnaryOp::Sqrt, ve);
            let y = h.bin(BinaryOp::Div, x, rms);
            let y = h.bin(BinaryOp::Mul, y, scale);
            let reference = h.finish(y);

            check(&what, &fused, &reference, &mut r);
        }
    }
}

// ---------------------------------------------------------------- fused elementwise

/// A fused body, its operands (of different ranks, broadcasting against each other) and
/// the same computation written as core ops.
struct BodyCase {
    body: &'static str,
    /// Builds the operands' dims from the dims of the widest one.
    inputs: fn(&[Dim]) -> Vec<In>,
    by_hand: fn(&mut G) -> NodeId,
}

fn body_cases() -> Vec<BodyCase> {
    fn tail(dims: &[Dim], n: usize) -> Vec<Dim> {
        dims[dims.len().saturating_sub(n)..].to_vec()
    }
    vec![
        BodyCase {
            body: "mul(add(erf($0), f32(1.0)), $1)",
            inputs: |d| vec![("x", DType::F32, d.to_vec()), ("y", DType::F32, tail(d, 1))],
            by_hand: |g| {
                let [x, y] = g.ins[..] else { unreachable!() };
                let e = g.un(UnaryOp::Erf, x);
                let one = g.k(1.0);
                let a = g.bin(BinaryOp::Add, e, one);
                g.bin(BinaryOp::Mul, a, y)
            },
        },
        BodyCase {
            // $1 has a trailing 1, $2 is a scalar input, $0 is the widest.
            body: "where(less($0, $2), $1, f32(-1.5))",
            inputs: |d| {
                let mut col = tail(d, 2);
                *col.last_mut().unwrap() = one();
                vec![
                    ("x", DType::F32, d.to_vec()),
                    ("col", DType::F32, col),
                    ("t", DType::F32, vec![]),
                ]
            },
            by_hand: |g| {
                let [x, col, t] = g.ins[..] else {
                    unreachable!()
                };
                let c = g.bin(BinaryOp::Less, x, t);
                let k = g.k(-1.5);
                g.op(Op::Where, &[c, col, k])
            },
        },
        BodyCase {
            // The widest operand comes last; an integer operand, cast.
            body: "add($1, cast(f32, mul($0, i64(-3))))",
            inputs: |d| vec![("i", DType::I64, tail(d, 1)), ("x", DType::F32, d.to_vec())],
            by_hand: |g| {
                let [i, x] = g.ins[..] else { unreachable!() };
                let k = g.g.add_const(Tensor::scalar(-3i64), None);
                let m = g.bin(BinaryOp::Mul, i, k);
                let c = g.op(Op::Cast { to: DType::F32 }, &[m]);
                g.bin(BinaryOp::Add, x, c)
            },
        },
        BodyCase {
            // A bool operand and a bool scalar.
            body: "where(and(greater($0, $1), or($2, bool(false))), $0, neg($1))",
            inputs: |d| {
                let mut row = tail(d, 2);
                row[0] = one();
                vec![
                    ("x", DType::F32, tail(d, 2)),
                    ("y", DType::F32, d.to_vec()),
                    ("keep", DType::Bool, row),
                ]
            },
            by_hand: |g| {
                let [x, y, keep] = g.ins[..] else {
                    unreachable!()
                };
                let gt = g.bin(BinaryOp::Greater, x, y);
                let f = g.g.add_const(Tensor::scalar(false), None);
                let o = g.bin(BinaryOp::Or, keep, f);
                let c = g.bin(BinaryOp::And, gt, o);
                let ny = g.un(UnaryOp::Neg, y);
                g.op(Op::Where, &[c, x, ny])
            },
        },
        BodyCase {
            // An integer result.
            body: "cast(i64, floor(mul($0, f32(3.0))))",
            inputs: |d| vec![("x", DType::F32, d.to_vec())],
            by_hand: |g| {
                let x = g.ins[0];
                let k = g.k(3.0);
                let m = g.bin(BinaryOp::Mul, x, k);
                let f = g.un(UnaryOp::Floor, m);
                g.op(Op::Cast { to: DType::I64 }, &[f])
            },
        },
        BodyCase {
            // One operand read several times, another of rank 1.
            body: "div(sqrt(abs($0)), add(f32(1.0), exp(neg(mul($1, $0)))))",
            inputs: |d| vec![("x", DType::F32, d.to_vec()), ("y", DType::F32, tail(d, 1))],
            by_hand: |g| {
                let [x, y] = g.ins[..] else { unreachable!() };
                let a = g.un(UnaryOp::Abs, x);
                let s = g.un(UnaryOp::Sqrt, a);
                let one = g.k(1.0);
                let m = g.bin(BinaryOp::Mul, y, x);
                let n = g.un(UnaryOp::Neg, m);
                let e = g.un(UnaryOp::Exp, n);
                let d = g.bin(BinaryOp::Add, one, e);
                g.bin(BinaryOp::Div, s, d)
            },
        },
        BodyCase {
            // Other float types: an f16 scalar, and the result in f16.
            body: "sub(f16(0.1), cast(f16, $0))",
            inputs: |d| vec![("x", DType::F32, d.to_vec())],
            by_hand: |g| {
                let k =
                    g.g.add_const(Tensor::scalar(half::f16::from_f64(0.1)), None);
                let c = g.op(Op::Cast { to: DType::F16 }, &[g.ins[0]]);
                g.bin(BinaryOp::Sub, k, c)
            },
        },
        BodyCase {
            // No operands at all: a rank-0 result of scalars alone.
            body: "add(mul(f64(0.1), f64(3.0)), cast(f64, i32(-7)))",
            inputs: |_| vec![],
            by_hand: |g| {
                let a = g.g.add_const(Tensor::scalar(0.1f64), None);
                let b = g.g.add_const(Tensor::scalar(3.0f64), None);
                let m = g.bin(BinaryOp::Mul, a, b);
                let i = g.g.add_const(Tensor::scalar(-7i32), None);
                let c = g.op(Op::Cast { to: DType::F64 }, &[i]);
                g.bin(BinaryOp::Add, m, c)
            },
        },
        BodyCase {
            // The operands broadcast against each other into a shape neither has.
            body: "max(sub($0, $1), f32(0.0))",
            inputs: |d| {
                let mut col = d.to_vec();
                *col.last_mut().unwrap() = one();
                vec![("col", DType::F32, col), ("row", DType::F32, tail(d, 1))]
            },
            by_hand: |g| {
                let [c, r] = g.ins[..] else { unreachable!() };
                let s = g.bin(BinaryOp::Sub, c, r);
                let z = g.k(0.0);
                g.bin(BinaryOp::Max, s, z)
            },
        },
    ]
}

#[test]
fn fused_bodies_are_their_core_ops() {
    let mut r = Rng(0xf05e);
    for case in body_cases() {
        for rank in 2..=4 {
            let dims: Vec<Dim> = (0..rank).map(|i| sym(&format!("d{i}"))).collect();
            let inputs = (case.inputs)(&dims);
            let body = Arc::new(Body::parse(case.body).unwrap());
            let op = Op::Fused { body };
            let what = format!("fused `{}` of rank {rank}", case.body);

            let mut f = G::new(&inputs);
            let args = f.ins.clone();
            let y = f.op(op, &args);
            let fused = f.finish(y);

            let mut h = G::new(&inputs);
            let y = (case.by_hand)(&mut h);
            let reference = h.finish(y);

            check(&what, &fused, &reference, &mut r);
        }
    }
}

// ---------------------------------------------------------------- type errors

/// Adds `op` on fresh inputs of the given types and returns the error, which must be an
/// `Error::Invalid` naming the op.
fn rejected(op: &Op, operands: &[(DType, Vec<Dim>)]) -> Result<String, String> {
    let mut g = Graph::new();
    let ids: Vec<NodeId> = operands
        .iter()
        .enumerate()
        .map(|(i, (dtype, dims))| {
            g.add_input(&format!("in{i}"), TensorType::new(*dtype, dims.clone()))
        })
        .collect();
    let name = op.name();
    match g.add(op.clone(), &ids) {
        Ok(id) => Err(format!("{op:?} was accepted, of type {}", g.ty(id))),
        Err(Error::Invalid { op: named, message }) if named == name => {
            Ok(format!("{named}: {message}"))
        }
        Err(e) => Err(format!("{op:?}: not an Invalid error naming `{name}`: {e}")),
    }
}

fn gemm(bias: bool) -> Op {
    Op::Gemm {
        activation: Activation::None,
        bias,
        perm_a: None,
        perm_b: None,
        perm_out: None,
    }
}

fn attention(mask: bool) -> Op {
    Op::Attention {
        scale: ScoreScale::None,
        mask: mask.into(),
        nan_filter: false,
        zero_where: false,
        causal: false,
        causal_min: false,
        perm_q: None,
        perm_k: None,
        perm_v: None,
        perm_out: None,
    }
}

fn fused(body: &str) -> Op {
    Op::Fused {
        body: Arc::new(Body::parse(body).unwrap()),
    }
}

#[test]
fn operands_that_do_not_fit_a_fused_op_are_rejected() {
    let f = DType::F32;
    let c = Dim::constant;
    let (b, m, n) = (sym("b"), sym("m"), sym("n"));
    // The op, its operands' types, and what the error says.
    type Case = (Op, Vec<(DType, Vec<Dim>)>, &'static str);
    let cases: Vec<Case> = vec![
        // gemm: the inner dims differ.
        (
            gemm(false),
            vec![(f, vec![m.clone(), c(3)]), (f, vec![c(4), n.clone()])],
            "inner dims differ",
        ),
        // gemm: a bias but no third operand, and a third operand but no bias.
        (
            gemm(true),
            vec![(f, vec![m.clone(), c(4)]), (f, vec![c(4), n.clone()])],
            "takes Exact(3) operands, got 2",
        ),
        (
            gemm(false),
            vec![
                (f, vec![m.clone(), c(4)]),
                (f, vec![c(4), n.clone()]),
                (f, vec![n.clone()]),
            ],
            "takes Exact(2) operands, got 3",
        ),
        // gemm: a bias that does not broadcast to the product.
        (
            gemm(true),
            vec![
                (f, vec![m.clone(), c(4)]),
                (f, vec![c(4), c(5)]),
                (f, vec![c(3)]),
            ],
            "cannot be broadcast",
        ),
        // gemm: a bias of more axes than the product.
        (
            gemm(true),
            vec![
                (f, vec![m.clone(), c(4)]),
                (f, vec![c(4), n.clone()]),
                (f, vec![c(2), m.clone(), n.clone()]),
            ],
            "the bias has rank 3, more than the product's 2",
        ),
        // gemm: a perm of the wrong length.
        (
            Op::Gemm {
                activation: Activation::None,
                bias: false,
                perm_a: Some(vec![1, 0, 2]),
                perm_b: None,
                perm_out: None,
            },
            vec![(f, vec![m.clone(), c(4)]), (f, vec![c(4), n.clone()])],
            "is not a permutation of 2 axes",
        ),
        // gemm: integer operands cannot take a GELU's float constants.
        (
            Op::Gemm {
                activation: Activation::GeluErf,
                bias: false,
                perm_a: None,
                perm_b: None,
                perm_out: None,
            },
            vec![
                (DType::I64, vec![m.clone(), c(4)]),
                (DType::I64, vec![c(4), n.clone()]),
            ],
            "erf",
        ),
        // attention: a mask of the wrong rank.
        (
            attention(true),
            vec![
                (f, vec![b.clone(), m.clone(), c(8)]),
                (f, vec![b.clone(), c(8), n.clone()]),
                (f, vec![b.clone(), n.clone(), c(8)]),
                (f, vec![c(2), b.clone(), m.clone(), n.clone()]),
            ],
            "the mask has rank 4, more than the scores' 3",
        ),
        // attention: a mask that does not broadcast to the scores.
        (
            attention(true),
            vec![
                (f, vec![b.clone(), c(3), c(8)]),
                (f, vec![b.clone(), c(8), c(5)]),
                (f, vec![b.clone(), c(5), c(8)]),
                (f, vec![c(3), c(4)]),
            ],
            "cannot be broadcast",
        ),
        // attention: q and kt disagree on the head dim; v on the keys.
        (
            attention(false),
            vec![
                (f, vec![b.clone(), m.clone(), c(8)]),
                (f, vec![b.clone(), c(4), n.clone()]),
                (f, vec![b.clone(), n.clone(), c(8)]),
            ],
            "inner dims differ",
        ),
        (
            attention(false),
            vec![
                (f, vec![m.clone(), c(8)]),
                (f, vec![c(8), c(5)]),
                (f, vec![c(6), c(8)]),
            ],
            "inner dims differ",
        ),
        // attention: the mask is missing.
        (
            attention(true),
            vec![
                (f, vec![m.clone(), c(8)]),
                (f, vec![c(8), n.clone()]),
                (f, vec![n.clone(), c(8)]),
            ],
            "takes Exact(4) operands, got 3",
        ),
        // attention: a vector is not a matrix.
        (
            attention(false),
            vec![
                (f, vec![c(8)]),
                (f, vec![c(8), n.clone()]),
                (f, vec![n.clone(), c(8)]),
            ],
            "rank 2 or more",
        ),
        // add_layer_norm: the axis is out of range; x and r do not broadcast.
        (
            Op::AddLayerNorm {
                axis: 2,
                epsilon: 1e-5,
            },
            vec![
                (f, vec![b.clone(), c(8)]),
                (f, vec![b.clone(), c(8)]),
                (f, vec![c(8)]),
                (f, vec![c(8)]),
            ],
            "out of range",
        ),
        (
            Op::AddLayerNorm {
                axis: 1,
                epsilon: 1e-5,
            },
            vec![
                (f, vec![b.clone(), c(8)]),
                (f, vec![c(7)]),
                (f, vec![c(8)]),
                (f, vec![c(8)]),
            ],
            "cannot be broadcast",
        ),
        // rms_norm: the axis is out of range; a scale of another dtype.
        (
            Op::RmsNorm {
                axis: 2,
                epsilon: 1e-6,
            },
            vec![(f, vec![b.clone(), c(8)]), (f, vec![c(8)])],
            "axis 2 is out of range for rank 2",
        ),
        (
            Op::RmsNorm {
                axis: 1,
                epsilon: 1e-6,
            },
            vec![(f, vec![b.clone(), c(8)]), (DType::I64, vec![c(8)])],
            "dtypes differ",
        ),
        // fused: the body reads $3 of 2 operands.
        (
            fused("add($0, $3)"),
            vec![(f, vec![b.clone()]), (f, vec![b.clone()])],
            "takes Exact(4) operands, got 2",
        ),
        // fused: operands that do not broadcast, or of different dtypes.
        (
            fused("add($0, $1)"),
            vec![(f, vec![c(3)]), (f, vec![c(4)])],
            "cannot be broadcast",
        ),
        (
            fused("add($0, $1)"),
            vec![(f, vec![c(3)]), (DType::I64, vec![c(3)])],
            "dtypes differ",
        ),
        // fused: a float function of a bool, a logical op of floats.
        (fused("exp($0)"), vec![(DType::Bool, vec![c(3)])], "floats"),
        (fused("and($0, $0)"), vec![(f, vec![c(3)])], "bool"),
    ];
    let mut wrong = Vec::new();
    for (op, operands, needle) in &cases {
        match rejected(op, operands) {
            Ok(m) if m.contains(needle) => {}
            Ok(m) => wrong.push(format!("{op:?}: `{m}` lacks `{needle}`")),
            Err(m) => wrong.push(m),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

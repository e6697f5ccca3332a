//! Padding elimination's ops: `pack`, `unpack` and `packed_attention`.
//!
//! `pack` and `unpack` are checked against results computed here by hand, on masks with every
//! kind of padding (none, a sequence padded whole, one real token per row, left and right
//! padding, random), of bool and integer dtypes, for `x` of rank 3 and 4. `packed_attention`
//! is checked against plain attention on the padded batch with the additive mask
//! `(1 - m) * f32::MIN` that torch exports write, written out in core ops, at every real
//! position. Then the text form, the verifier's rules for derived symbols, and the type and
//! run-time errors, each naming the node or op at fault.

use std::collections::HashMap;
use tcc_ir::fused::is_fused;
use tcc_ir::interp::run;
use tcc_ir::verify::verify;
use tcc_ir::{
    text, BinaryOp, DType, Dim, Error, Graph, NodeId, Op, ScoreScale, Shape, Tensor, TensorData,
    TensorType,
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

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 0
    }

    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
}

fn sym(s: &str) -> Dim {
    Dim::sym(s)
}

fn c(v: i64) -> Dim {
    Dim::constant(v)
}

fn ty(dtype: DType, dims: &[Dim]) -> TensorType {
    TensorType::new(dtype, dims.to_vec())
}

fn pack(tokens: &str) -> Op {
    Op::Pack {
        tokens: tokens.into(),
    }
}

fn add(g: &mut Graph, op: Op, xs: &[NodeId]) -> NodeId {
    g.add(op.clone(), xs)
        .unwrap_or_else(|e| panic!("{op:?}: {e}"))
}

/// How a batch is padded.
#[derive(Clone, Copy, Debug)]
enum Padding {
    /// Every token is real.
    None,
    /// One sequence (not the only one) is padding only; the others are random with at least
    /// one real token each.
    OneSequenceEmpty,
    /// One real token per row, at a random position.
    OnePerRow,
    /// Each row's real tokens come last (at least one).
    Left,
    /// Each row's real tokens come first (at least one).
    Right,
    /// Each token real or not at random; at least one real token in the batch.
    Random,
}

const PADDINGS: [Padding; 6] = [
    Padding::None,
    Padding::OneSequenceEmpty,
    Padding::OnePerRow,
    Padding::Left,
    Padding::Right,
    Padding::Random,
];

/// Which of the `b * s` positions hold real tokens, row-major. `b >= 2` for
/// [`Padding::OneSequenceEmpty`].
fn real_positions(padding: Padding, b: usize, s: usize, r: &mut Rng) -> Vec<bool> {
    let mut real = vec![false; b * s];
    for i in 0..b {
        let row = &mut real[i * s..(i + 1) * s];
        match padding {
            Padding::None => row.fill(true),
            Padding::OnePerRow => row[r.range(0, s - 1)] = true,
            Padding::Left => {
                let n = r.range(1, s);
                row[s - n..].fill(true);
            }
            Padding::Right => {
                let n = r.range(1, s);
                row[..n].fill(true);
            }
            Padding::OneSequenceEmpty | Padding::Random => {
                for p in row.iter_mut() {
                    *p = r.coin();
                }
                if matches!(padding, Padding::OneSequenceEmpty) {
                    row[r.range(0, s - 1)] = true;
                }
            }
        }
    }
    match padding {
        Padding::OneSequenceEmpty => {
            assert!(b >= 2, "one empty sequence needs another");
            let e = r.range(0, b - 1);
            real[e * s..(e + 1) * s].fill(false);
        }
        Padding::Random if !real.contains(&true) => real[r.range(0, b * s - 1)] = true,
        _ => {}
    }
    real
}

/// A mask of `dtype` marking `real`: `true`, or for integers 1 if `ones`, else a random
/// nonzero value (negative and large ones included: any nonzero entry is a real token).
fn mask_tensor(real: &[bool], b: usize, s: usize, dtype: DType, ones: bool, r: &mut Rng) -> Tensor {
    let ints: Vec<i64> = real
        .iter()
        .map(|&x| match (x, ones) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => [1, 2, -1, 7, -(1 << 31), (1 << 40) + 1][r.range(0, 5)],
        })
        .collect();
    let data = match dtype {
        DType::Bool => TensorData::Bool(real.to_vec()),
        // Values that do not fit wrap; the table keeps them nonzero in i32 too, but a
        // multiple of 2^32 would not be: `(1 << 40) + 1` keeps its low bit.
        d => TensorData::from_i64(d, ints),
    };
    let t = Tensor::new(vec![b, s], data).unwrap();
    // The mask is nonzero exactly where `real` says, in its own dtype.
    let back: Vec<bool> = t.data().to_i64_vec().iter().map(|&v| v != 0).collect();
    assert_eq!(back, real);
    t
}

/// A random tensor of `dtype` (f32 in `[-2, 2)`, small integers otherwise).
fn random(dtype: DType, shape: &[usize], r: &mut Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let data = match dtype {
        DType::F32 => TensorData::F32((0..n).map(|_| r.uniform(-2.0, 2.0)).collect()),
        d => TensorData::from_i64(d, (0..n).map(|_| r.range(0, 200) as i64 - 100)),
    };
    Tensor::new(shape.to_vec(), data).unwrap()
}

/// Asserts bitwise equality of shape, dtype and elements.
fn same(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtypes");
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    assert!(
        got.data().to_le_bytes() == want.data().to_le_bytes(),
        "{what}: elements differ\n  got: {:?}\n want: {:?}",
        got.data().to_f64_vec(),
        want.data().to_f64_vec()
    );
}

fn run_named(g: &Graph, inputs: &HashMap<String, Tensor>) -> tcc_ir::Result<Vec<Tensor>> {
    Ok(run(g, inputs)?.into_iter().map(|(_, t)| t).collect())
}

fn inputs(pairs: Vec<(&str, Tensor)>) -> HashMap<String, Tensor> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

// ---------------------------------------------------------------- pack and unpack

/// `pack` then `unpack` on a mask of `padding`, and `pack(unpack(y, m), m) == y`.
fn pack_case(r: &mut Rng, rank: usize, xdtype: DType, mdtype: DType, padding: Padding) {
    let rest: Vec<usize> = (2..rank).map(|_| r.range(1, 3)).collect();
    let rest_dims: Vec<Dim> = (2..rank).map(|i| sym(&format!("r{i}"))).collect();
    let (b, s) = (r.range(2, 4), r.range(1, 6));
    let what = format!("rank {rank} {xdtype} x, {mdtype} mask, {padding:?}, b={b} s={s}");

    let mut g = Graph::new();
    let x_dims: Vec<Dim> = [sym("batch"), sym("seq")]
        .into_iter()
        .chain(rest_dims.iter().cloned())
        .collect();
    let y_dims: Vec<Dim> = [sym("n")].into_iter().chain(rest_dims).collect();
    let x = g.add_input("x", ty(xdtype, &x_dims));
    let m = g.add_input("m", ty(mdtype, &[sym("batch"), sym("seq")]));
    let y = g.add_input("y", ty(xdtype, &y_dims));
    let p = add(&mut g, pack("tokens"), &[x, m]);
    let u = add(&mut g, Op::Unpack, &[p, m]);
    let p_again = add(&mut g, pack("tokens"), &[u, m]);
    let uy = add(&mut g, Op::Unpack, &[y, m]);
    let p_uy = add(&mut g, pack("tokens"), &[uy, m]);
    for (name, id) in [("p", p), ("u", u), ("p_again", p_again), ("p_uy", p_uy)] {
        g.add_output(name, id);
    }
    verify(&g).unwrap_or_else(|e| panic!("{what}: {e}"));
    let syms: Vec<String> = g.input_symbols().iter().map(|s| s.to_string()).collect();
    let mut want_syms: Vec<String> = ["batch", "seq"].map(String::from).to_vec();
    want_syms.extend((2..rank).map(|i| format!("r{i}")));
    want_syms.push("n".into());
    assert_eq!(
        syms, want_syms,
        "{what}: derived symbols are not input symbols"
    );
    let out = g.outputs()[0].1;
    let mut want_ty: Vec<Dim> = vec![sym("tokens")];
    want_ty.extend(x_dims[2..].iter().cloned());
    assert_eq!(g.ty(out), &ty(xdtype, &want_ty), "{what}");

    let real = real_positions(padding, b, s, r);
    let tokens = real.iter().filter(|&&x| x).count();
    let mask = mask_tensor(&real, b, s, mdtype, false, r);
    let row: usize = rest.iter().product();
    let mut x_shape = vec![b, s];
    x_shape.extend(&rest);
    let xt = random(xdtype, &x_shape, r);
    let mut y_shape = vec![tokens];
    y_shape.extend(&rest);
    let yt = random(xdtype, &y_shape, r);

    // By hand: the real rows in row-major order, and x with its padded rows zeroed.
    let xf = xt.data().to_f64_vec();
    let packed: Vec<f64> = (0..b * s)
        .filter(|&p| real[p])
        .flat_map(|p| xf[p * row..(p + 1) * row].iter().copied())
        .collect();
    let masked: Vec<f64> = (0..b * s * row)
        .map(|i| if real[i / row] { xf[i] } else { 0.0 })
        .collect();
    let want_p = Tensor::new(y_shape.clone(), TensorData::from_f64(xdtype, packed)).unwrap();
    let want_u = Tensor::new(x_shape.clone(), TensorData::from_f64(xdtype, masked)).unwrap();

    let got = run_named(&g, &inputs(vec![("x", xt), ("m", mask), ("y", yt.clone())]))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    same(&format!("{what}: pack(x, m)"), &got[0], &want_p);
    same(&format!("{what}: unpack(pack(x, m), m)"), &got[1], &want_u);
    same(
        &format!("{what}: pack(unpack(pack(x, m)))"),
        &got[2],
        &want_p,
    );
    same(&format!("{what}: pack(unpack(y, m), m)"), &got[3], &yt);
}

#[test]
fn pack_and_unpack_move_the_real_tokens() {
    let mut r = Rng(0x9ac4);
    for padding in PADDINGS {
        for mdtype in [DType::Bool, DType::I64, DType::I32] {
            for rank in [3, 4] {
                for xdtype in [DType::F32, DType::I64] {
                    pack_case(&mut r, rank, xdtype, mdtype, padding);
                }
            }
        }
    }
}

#[test]
fn unpack_fills_padding_with_zeros_of_every_dtype() {
    // A bool x packs and unpacks to `false` at the padding; f16 to +0.
    let mask = Tensor::from_vec(vec![2, 2], vec![true, false, false, true]).unwrap();
    for (x, want) in [
        (
            Tensor::from_vec(vec![2, 2, 1], vec![true, true, true, true]).unwrap(),
            Tensor::from_vec(vec![2, 2, 1], vec![true, false, false, true]).unwrap(),
        ),
        (
            Tensor::new(
                vec![2, 2, 1],
                TensorData::from_f64(DType::F16, [1.5, -2.0, 3.0, -0.0]),
            )
            .unwrap(),
            Tensor::new(
                vec![2, 2, 1],
                TensorData::from_f64(DType::F16, [1.5, 0.0, 0.0, -0.0]),
            )
            .unwrap(),
        ),
    ] {
        let mut g = Graph::new();
        let xi = g.add_input("x", ty(x.dtype(), &[c(2), c(2), c(1)]));
        let mi = g.add_input("m", ty(DType::Bool, &[c(2), c(2)]));
        let p = add(&mut g, pack("t"), &[xi, mi]);
        let u = add(&mut g, Op::Unpack, &[p, mi]);
        g.add_output("u", u);
        let got = run_named(&g, &inputs(vec![("x", x), ("m", mask.clone())])).unwrap();
        same("unpack(pack(x))", &got[0], &want);
    }
}

// ---------------------------------------------------------------- packed attention

/// The ulps between two finite floats of one sign (`u32::MAX` otherwise).
fn ulps(a: f32, b: f32) -> u32 {
    if a == b {
        return 0;
    }
    if !a.is_finite() || !b.is_finite() || (a < 0.0) != (b < 0.0) {
        return u32::MAX;
    }
    a.to_bits().abs_diff(b.to_bits())
}

/// `packed_attention` on packed `q`, `k`, `v` against attention on the padded batch with
/// torch's additive mask `(1 - m) * f32::MIN`, at every real position; 0 at the padding.
/// Returns the largest difference in ulps.
fn packed_attention_case(r: &mut Rng, scale: ScoreScale, mdtype: DType, padding: Padding) -> u32 {
    let dims = |last: &str| [sym("batch"), sym("seq"), sym("heads"), sym(last)];
    let mask_ty = ty(mdtype, &[sym("batch"), sym("seq")]);
    let declare = |g: &mut Graph| {
        [
            g.add_input("q", ty(DType::F32, &dims("d"))),
            g.add_input("k", ty(DType::F32, &dims("d"))),
            g.add_input("v", ty(DType::F32, &dims("dv"))),
            g.add_input("m", mask_ty.clone()),
        ]
    };

    // Packed: pack each, attend, unpack.
    let mut f = Graph::new();
    let [q, k, v, m] = declare(&mut f);
    let pq = add(&mut f, pack("tokens"), &[q, m]);
    let pk = add(&mut f, pack("tokens"), &[k, m]);
    let pv = add(&mut f, pack("tokens"), &[v, m]);
    let op = Op::PackedAttention { scale };
    assert!(is_fused(&op));
    let y = add(&mut f, op, &[pq, pk, pv, m]);
    assert_eq!(
        f.ty(y),
        &ty(DType::F32, &[sym("tokens"), sym("heads"), sym("dv")])
    );
    let out = add(&mut f, Op::Unpack, &[y, m]);
    f.add_output("y", out);
    verify(&f).unwrap();

    // The reference, in core ops: heads split, scores scaled, torch's additive mask.
    let mut h = Graph::new();
    let [q, k, v, m] = declare(&mut h);
    let mf = add(&mut h, Op::Cast { to: DType::F32 }, &[m]);
    let one = h.add_const(Tensor::scalar(1.0f32), None);
    let pad = add(&mut h, Op::Binary(BinaryOp::Sub), &[one, mf]);
    let min = h.add_const(Tensor::scalar(f32::MIN), None);
    let additive = add(&mut h, Op::Binary(BinaryOp::Mul), &[pad, min]);
    let additive = add(
        &mut h,
        Op::Reshape {
            shape: Shape::from(vec![sym("batch"), c(1), c(1), sym("seq")]),
        },
        &[additive],
    );
    let tr = |g: &mut Graph, x: NodeId, perm: [usize; 4]| {
        add(
            g,
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    };
    let qh = tr(&mut h, q, [0, 2, 1, 3]);
    let kt = tr(&mut h, k, [0, 2, 3, 1]);
    let vh = tr(&mut h, v, [0, 2, 1, 3]);
    let mut scores = add(&mut h, Op::MatMul, &[qh, kt]);
    match scale {
        ScoreScale::None => {}
        ScoreScale::Mul(s) | ScoreScale::Div(s) => {
            let s = h.add_const(Tensor::scalar(s), None);
            let b = if matches!(scale, ScoreScale::Mul(_)) {
                BinaryOp::Mul
            } else {
                BinaryOp::Div
            };
            scores = add(&mut h, Op::Binary(b), &[scores, s]);
        }
    }
    let scores = add(&mut h, Op::Binary(BinaryOp::Add), &[scores, additive]);
    let p = add(&mut h, Op::Softmax { axis: 3 }, &[scores]);
    let o = add(&mut h, Op::MatMul, &[p, vh]);
    let o = tr(&mut h, o, [0, 2, 1, 3]);
    h.add_output("y", o);
    assert_eq!(f.ty(out), h.ty(o));

    let (b, s, heads, d, dv) = (
        r.range(2, 4),
        r.range(1, 6),
        r.range(1, 3),
        r.range(1, 5),
        r.range(1, 5),
    );
    let what =
        format!("{scale:?}, {mdtype} mask, {padding:?}, b={b} s={s} h={heads} d={d} dv={dv}");
    let real = real_positions(padding, b, s, r);
    let ins = inputs(vec![
        ("q", random(DType::F32, &[b, s, heads, d], r)),
        ("k", random(DType::F32, &[b, s, heads, d], r)),
        ("v", random(DType::F32, &[b, s, heads, dv], r)),
        // torch's mask is 0 or 1: `(1 - m) * min` means nothing for other values.
        ("m", mask_tensor(&real, b, s, mdtype, true, r)),
    ]);
    let got = run_named(&f, &ins).unwrap_or_else(|e| panic!("{what}: {e}"));
    let want = run_named(&h, &ins).unwrap_or_else(|e| panic!("{what} (reference): {e}"));
    assert_eq!(got[0].shape(), want[0].shape(), "{what}");
    let (got, want) = (
        got[0].as_slice::<f32>().unwrap(),
        want[0].as_slice::<f32>().unwrap(),
    );
    let row = heads * dv;
    let mut worst = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if real[i / row] {
            let u = ulps(g, w);
            assert!(
                u <= 4,
                "{what}: element {i} (position {}) is {g}, the reference {w} ({u} ulps)",
                i / row
            );
            worst = worst.max(u);
        } else {
            assert_eq!(g.to_bits(), 0, "{what}: element {i} is padding, got {g}");
        }
    }
    worst
}

#[test]
fn packed_attention_is_attention_within_each_sequence() {
    let mut r = Rng(0xa77e_9ac4);
    let mut worst = 0;
    for padding in PADDINGS {
        for mdtype in [DType::Bool, DType::I64, DType::I32] {
            for scale in [
                ScoreScale::None,
                ScoreScale::Mul(0.125),
                ScoreScale::Div(3.0),
            ] {
                for _ in 0..2 {
                    worst = worst.max(packed_attention_case(&mut r, scale, mdtype, padding));
                }
            }
        }
    }
    // Masked keys contribute exact zeros either way, and real keys' scores are the same
    // operations in the same order, so the two agree bit for bit; the test allows 4 ulps.
    assert_eq!(worst, 0, "largest difference {worst} ulps");
}

// ---------------------------------------------------------------- text form

#[test]
fn padding_ops_round_trip_through_the_text_form() {
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, &[sym("batch"), sym("seq"), c(2), c(4)]));
    let m = g.add_input(
        "attention_mask",
        ty(DType::I64, &[sym("batch"), sym("seq")]),
    );
    let p = add(&mut g, pack("tokens"), &[x, m]);
    let y = add(
        &mut g,
        Op::PackedAttention {
            scale: ScoreScale::Div(2.0),
        },
        &[p, p, p, m],
    );
    let z = add(
        &mut g,
        Op::PackedAttention {
            scale: ScoreScale::Mul(0.1),
        },
        &[y, p, y, m],
    );
    let u = add(&mut g, Op::Unpack, &[z, m]);
    g.add_output("out", u);
    g.add_output("packed", y);
    verify(&g).unwrap();

    let printed = text::print(&g);
    for needle in [
        "%0 = pack<tokens=tokens>(%x, %attention_mask) : f32[tokens, 2, 4]",
        "%1 = packed_attention<scale=div(2.0)>(%0, %0, %0, %attention_mask) : f32[tokens, 2, 4]",
        "%2 = packed_attention<scale=mul(0.1)>(%1, %0, %1, %attention_mask) : f32[tokens, 2, 4]",
        "%3 = unpack(%2, %attention_mask) : f32[batch, seq, 2, 4]",
    ] {
        assert!(printed.contains(needle), "`{needle}` is not in:\n{printed}");
    }
    let back = text::parse(&printed, &|_| None).unwrap();
    assert_eq!(text::print(&back), printed);
    verify(&back).unwrap();
    for (a, b) in g.topo_order().into_iter().zip(back.topo_order()) {
        assert_eq!(g.op(a), back.op(b));
        assert_eq!(g.ty(a), back.ty(b));
    }
    // A stated type that disagrees with the inferred one is refused.
    let wrong = printed.replace(
        "pack<tokens=tokens>(%x, %attention_mask) : f32[tokens, 2, 4]",
        "pack<tokens=tokens>(%x, %attention_mask) : f32[batch, 2, 4]",
    );
    assert!(matches!(
        text::parse(&wrong, &|_| None),
        Err(Error::Parse { line: 2, .. })
    ));
}

// ---------------------------------------------------------------- the verifier

fn verifier_error(g: &Graph) -> String {
    match verify(g) {
        Err(Error::Verify(m)) => m,
        other => panic!("expected a verifier error, got {other:?}"),
    }
}

#[test]
fn a_derived_symbol_without_a_pack_is_rejected() {
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, &[sym("batch"), c(4)]));
    let y = add(
        &mut g,
        Op::Reshape {
            shape: Shape::from(vec![sym("tokens"), c(4)]),
        },
        &[x],
    );
    g.add_output("y", y);
    let m = verifier_error(&g);
    assert!(
        m.contains(&format!(
            "node {} (reshape): its type f32[tokens, 4] uses the symbol `tokens`, which no \
             input's dims bind and no `pack` introduces",
            y.index()
        )),
        "{m}"
    );
}

#[test]
fn two_packs_of_one_symbol_over_different_masks_are_rejected() {
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, &[sym("batch"), sym("seq"), c(4)]));
    let m1 = g.add_input("m1", ty(DType::Bool, &[sym("batch"), sym("seq")]));
    let m2 = g.add_input("m2", ty(DType::Bool, &[sym("batch"), sym("seq")]));
    let p1 = add(&mut g, pack("tokens"), &[x, m1]);
    let p2 = add(&mut g, pack("tokens"), &[x, m2]);
    let s = add(&mut g, Op::Binary(BinaryOp::Add), &[p1, p2]);
    g.add_output("s", s);
    let m = verifier_error(&g);
    assert!(
        m.contains(&format!(
            "node {} (pack): packs the token symbol `tokens` over the mask node {} (input), \
             but node {} (pack) packs it over node {} (input)",
            p2.index(),
            m2.index(),
            p1.index(),
            m1.index()
        )),
        "{m}"
    );
    // The same mask node for both is right, and so is a second symbol over another mask.
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, &[sym("batch"), sym("seq"), c(4)]));
    let m1 = g.add_input("m1", ty(DType::Bool, &[sym("batch"), sym("seq")]));
    let m2 = g.add_input("m2", ty(DType::Bool, &[sym("batch"), sym("seq")]));
    let p1 = add(&mut g, pack("tokens"), &[x, m1]);
    let p2 = add(&mut g, pack("tokens"), &[x, m1]);
    let p3 = add(&mut g, pack("other"), &[x, m2]);
    for (i, p) in [p1, p2, p3].into_iter().enumerate() {
        g.add_output(&format!("p{i}"), p);
    }
    verify(&g).unwrap();
}

#[test]
fn an_input_dim_that_uses_a_packs_symbol_is_rejected() {
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, &[sym("batch"), sym("seq"), c(4)]));
    let m = g.add_input("m", ty(DType::Bool, &[sym("batch"), sym("seq")]));
    let z = g.add_input("z", ty(DType::F32, &[sym("tokens"), c(4)]));
    let p = add(&mut g, pack("tokens"), &[x, m]);
    let s = add(&mut g, Op::Binary(BinaryOp::Add), &[p, z]);
    g.add_output("s", s);
    let msg = verifier_error(&g);
    assert!(
        msg.contains(&format!(
            "node {} (pack): its token symbol `tokens` is also a dim of node {} (input)",
            p.index(),
            z.index()
        )),
        "{msg}"
    );
    // A compound input dim counts too.
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, &[sym("batch"), sym("seq"), c(4)]));
    let m = g.add_input("m", ty(DType::Bool, &[sym("batch"), sym("seq")]));
    g.add_input("z", ty(DType::F32, &[sym("tokens").add(&c(1))]));
    let p = add(&mut g, pack("tokens"), &[x, m]);
    g.add_output("p", p);
    assert!(verifier_error(&g).contains("its token symbol `tokens` is also a dim of"));
}

// ---------------------------------------------------------------- type errors

/// Adds `op` on fresh inputs of the given types; returns the `Error::Invalid` message, which
/// must name the op.
fn rejected(op: &Op, operands: &[TensorType]) -> String {
    let mut g = Graph::new();
    let ids: Vec<NodeId> = operands
        .iter()
        .enumerate()
        .map(|(i, t)| g.add_input(&format!("in{i}"), t.clone()))
        .collect();
    match g.add(op.clone(), &ids) {
        Ok(id) => panic!("{op:?} was accepted, of type {}", g.ty(id)),
        Err(Error::Invalid { op: named, message }) => {
            assert_eq!(named, op.name(), "{message}");
            message
        }
        Err(e) => panic!("{op:?}: not an Invalid error: {e}"),
    }
}

#[test]
fn operands_that_do_not_fit_are_rejected() {
    let f = DType::F32;
    let (b, s, t) = (sym("batch"), sym("seq"), sym("t"));
    let attention = Op::PackedAttention {
        scale: ScoreScale::None,
    };
    let heads = ty(f, &[t.clone(), c(2), c(4)]);
    let bool_mask = ty(DType::Bool, &[b.clone(), s.clone()]);
    let cases: Vec<(Op, Vec<TensorType>, &str)> = vec![
        // The mask's dims differ from x's first two: constants, or a symbol and itself plus 1.
        (
            pack("t"),
            vec![ty(f, &[c(2), c(5), c(4)]), ty(DType::Bool, &[c(2), c(6)])],
            "x of shape [2, 5, 4] does not start with the mask's dims [2, 6]",
        ),
        (
            pack("t"),
            vec![
                ty(f, &[b.clone(), s.clone(), c(4)]),
                ty(DType::I64, &[b.clone().add(&c(1)), s.clone()]),
            ],
            "x of shape [batch, seq, 4] does not start with the mask's dims [batch + 1, seq]",
        ),
        // A float mask, for each op.
        (
            pack("t"),
            vec![
                ty(f, &[b.clone(), s.clone(), c(4)]),
                ty(f, &[b.clone(), s.clone()]),
            ],
            "the mask must be [b, s] of bool or an integer type, got f32[batch, seq]",
        ),
        (
            Op::Unpack,
            vec![ty(f, &[t.clone(), c(4)]), ty(f, &[b.clone(), s.clone()])],
            "the mask must be [b, s] of bool or an integer type, got f32[batch, seq]",
        ),
        (
            attention.clone(),
            vec![
                heads.clone(),
                heads.clone(),
                heads.clone(),
                ty(DType::F16, &[b.clone(), s.clone()]),
            ],
            "the mask must be [b, s] of bool or an integer type, got f16[batch, seq]",
        ),
        // A mask of another rank; an x of rank 1; a y of rank 0.
        (
            pack("t"),
            vec![
                ty(f, &[b.clone(), s.clone()]),
                ty(DType::Bool, std::slice::from_ref(&b)),
            ],
            "the mask must be [b, s]",
        ),
        (
            pack("t"),
            vec![ty(f, std::slice::from_ref(&b)), bool_mask.clone()],
            "x must be [b, s, ..] (rank 2 or more), got f32[batch]",
        ),
        (
            Op::Unpack,
            vec![ty(f, &[]), bool_mask.clone()],
            "y must be packed rows [tokens, ..] (rank 1 or more), got f32[]",
        ),
        // A symbol name that would not read back.
        (
            pack("t 1"),
            vec![ty(f, &[b.clone(), s.clone()]), bool_mask.clone()],
            "tokens must be a symbol name ([A-Za-z_][A-Za-z0-9_]*), got `t 1`",
        ),
        // Packed attention: heads that are not [tokens, h, d], integer heads, token counts
        // that differ, an inner size that differs.
        (
            attention.clone(),
            vec![
                ty(f, &[t.clone(), c(4)]),
                heads.clone(),
                heads.clone(),
                bool_mask.clone(),
            ],
            "q must be packed heads [tokens, h, d], got f32[t, 4]",
        ),
        (
            attention.clone(),
            vec![
                ty(DType::I64, &[t.clone(), c(2), c(4)]),
                ty(DType::I64, &[t.clone(), c(2), c(4)]),
                ty(DType::I64, &[t.clone(), c(2), c(4)]),
                bool_mask.clone(),
            ],
            "is defined on floats, got i64",
        ),
        (
            attention.clone(),
            vec![
                heads.clone(),
                ty(f, &[t.clone().add(&c(1)), c(2), c(4)]),
                heads.clone(),
                bool_mask.clone(),
            ],
            "k has t + 1 tokens, q t: they must be packed by one mask",
        ),
        (
            attention.clone(),
            vec![
                heads.clone(),
                ty(f, &[t.clone(), c(2), c(3)]),
                heads.clone(),
                bool_mask.clone(),
            ],
            "in its expansion: matmul: inner dims differ",
        ),
    ];
    for (op, operands, want) in cases {
        let message = rejected(&op, &operands);
        assert!(
            message.contains(want),
            "{op:?}: `{want}` not in `{message}`"
        );
    }
    // Sizes that may agree at run time are accepted: the interpreter checks them.
    let mut g = Graph::new();
    let x = g.add_input("x", ty(f, &[b.clone(), s.clone(), c(4)]));
    let m = g.add_input("m", ty(DType::U8, &[c(2), s.clone()]));
    let p = add(&mut g, pack("t"), &[x, m]);
    g.add_output("p", p);
    let ins = inputs(vec![
        (
            "x",
            Tensor::from_vec(vec![3, 2, 4], vec![0.5f32; 24]).unwrap(),
        ),
        (
            "m",
            Tensor::from_vec(vec![2, 2], vec![1u8, 0, 0, 1]).unwrap(),
        ),
    ]);
    match run(&g, &ins) {
        Err(Error::Eval { node, op, message }) => {
            assert_eq!((node, op.as_str()), (p.index(), "pack"));
            assert!(
                message
                    .contains("x of shape [3, 2, 4] does not start with the mask's shape [2, 2]"),
                "{message}"
            );
        }
        other => panic!("expected an error naming the pack, got {other:?}"),
    }
}

// ---------------------------------------------------------------- run-time errors

#[test]
fn runs_that_do_not_fit_the_mask_are_errors_naming_the_node() {
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, &[sym("batch"), sym("seq"), c(2)]));
    let y = g.add_input("y", ty(DType::F32, &[sym("n"), c(2)]));
    let m = g.add_input("m", ty(DType::I32, &[sym("batch"), sym("seq")]));
    let p = add(&mut g, pack("tokens"), &[x, m]);
    let u = add(&mut g, Op::Unpack, &[y, m]);
    g.add_output("p", p);
    g.add_output("u", u);
    verify(&g).unwrap();
    let x3 = Tensor::from_vec(vec![2, 3, 2], vec![1.0f32; 12]).unwrap();
    let mask = |v: Vec<i32>| Tensor::from_vec(vec![2, 3], v).unwrap();
    let y_rows = |n: usize| Tensor::from_vec(vec![n, 2], vec![2.0f32; 2 * n]).unwrap();
    let eval_error = |ins: HashMap<String, Tensor>| match run(&g, &ins) {
        Err(Error::Eval { node, op, message }) => (node, op, message),
        other => panic!("expected an evaluation error, got {other:?}"),
    };

    // `y` has a row fewer than the mask has real tokens.
    let (node, op, message) = eval_error(inputs(vec![
        ("x", x3.clone()),
        ("y", y_rows(2)),
        ("m", mask(vec![1, 0, 5, 0, -2, 0])),
    ]));
    assert_eq!((node, op.as_str()), (u.index(), "unpack"));
    assert!(
        message.contains("y has 2 rows, but the mask has 3 nonzero entries"),
        "{message}"
    );

    // A batch of padding only: there is no token to pack, and a symbol is at least 1.
    let (node, op, message) = eval_error(inputs(vec![
        ("x", x3.clone()),
        ("y", y_rows(1)),
        ("m", mask(vec![0; 6])),
    ]));
    assert_eq!((node, op.as_str()), (p.index(), "pack"));
    assert!(
        message.contains(
            "its mask has no nonzero entry, but the symbol `tokens` it binds must be at least 1"
        ),
        "{message}"
    );

    // Two packs of one symbol over masks that count differently (a graph the verifier
    // refuses, run anyway): the second pack is the error.
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, &[sym("batch"), sym("seq"), c(2)]));
    let m1 = g.add_input("m1", ty(DType::Bool, &[sym("batch"), sym("seq")]));
    let m2 = g.add_input("m2", ty(DType::Bool, &[sym("batch"), sym("seq")]));
    let p1 = add(&mut g, pack("tokens"), &[x, m1]);
    let p2 = add(&mut g, pack("tokens"), &[x, m2]);
    let s = add(&mut g, Op::Binary(BinaryOp::Add), &[p1, p2]);
    g.add_output("s", s);
    assert!(verify(&g).is_err());
    let bools = |v: Vec<bool>| Tensor::from_vec(vec![2, 3], v).unwrap();
    let ins = inputs(vec![
        ("x", x3),
        ("m1", bools(vec![true, true, false, true, false, false])),
        ("m2", bools(vec![true, false, false, true, false, false])),
    ]);
    match run(&g, &ins) {
        Err(Error::Eval { node, op, message }) => {
            assert_eq!((node, op.as_str()), (p2.index(), "pack"));
            assert!(
                message.contains(
                    "its mask has 2 nonzero entries, but the symbol `tokens` is already bound to 3"
                ),
                "{message}"
            );
        }
        other => panic!("expected an error naming the second pack, got {other:?}"),
    }
}

//! Tests of `Conv` and `Pad`: type inference with symbolic sizes, the text
//! form, the verifier, and the interpreter against hand-computed values,
//! numpy's `np.pad`, ONNX Runtime's handling of negative pads, and an
//! independent direct-loop convolution.

use half::f16;
use std::collections::HashMap;
use tcc_ir::interp::{eval, run, Bindings};
use tcc_ir::{DType, Dim, Graph, Op, PadMode, Tensor, TensorType};

// ---------------------------------------------------------------- helpers

fn f32s(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_vec(shape.to_vec(), v).expect("test tensor")
}

fn c(v: i64) -> Dim {
    Dim::constant(v)
}

fn cs(v: &[i64]) -> Vec<Dim> {
    v.iter().map(|&x| c(x)).collect()
}

/// Builds a graph applying `op` to constant operands and runs it.
fn apply(op: Op, xs: &[Tensor]) -> tcc_ir::Result<Tensor> {
    let mut g = Graph::new();
    let ids: Vec<_> = xs.iter().map(|x| g.add_const(x.clone(), None)).collect();
    let y = g.add(op, &ids)?;
    g.add_output("y", y);
    tcc_ir::verify::verify(&g)?;
    Ok(run(&g, &HashMap::new())?.remove(0).1)
}

fn ok(op: Op, xs: &[Tensor]) -> Tensor {
    apply(op.clone(), xs).unwrap_or_else(|e| panic!("{op:?} failed: {e}"))
}

fn conv_op(strides: &[usize], pads: &[i64], dilations: &[usize], group: usize) -> Op {
    let sp = strides.len();
    Op::Conv {
        strides: strides.to_vec(),
        pads_begin: cs(&pads[..sp]),
        pads_end: cs(&pads[sp..]),
        dilations: dilations.to_vec(),
        group,
    }
}

fn pad_op(mode: PadMode, begin: &[i64], end: &[i64]) -> Op {
    Op::Pad {
        mode,
        pads_begin: cs(begin),
        pads_end: cs(end),
    }
}

/// Small deterministic values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// An independent 2-D convolution: the defining sum, one output element at
/// a time, in f64.
#[allow(clippy::too_many_arguments)]
fn naive_conv2d(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    wt: &[f32],
    [m, cg, kh, kw]: [usize; 4],
    stride: [usize; 2],
    pads: [usize; 4],
    dil: [usize; 2],
    group: usize,
) -> (Vec<usize>, Vec<f64>) {
    let oh = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) / stride[0] + 1;
    let ow = (w + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) / stride[1] + 1;
    let mg = m / group;
    let mut y = Vec::new();
    for b in 0..n {
        for o in 0..m {
            let g = o / mg;
            for i in 0..oh {
                for j in 0..ow {
                    let mut s = 0f64;
                    for ci in 0..cg {
                        for a in 0..kh {
                            for e in 0..kw {
                                let hi = (i * stride[0] + a * dil[0]) as i64 - pads[0] as i64;
                                let wi = (j * stride[1] + e * dil[1]) as i64 - pads[1] as i64;
                                if hi < 0 || wi < 0 || hi >= h as i64 || wi >= w as i64 {
                                    continue;
                                }
                                let xv = x
                                    [((b * c + g * cg + ci) * h + hi as usize) * w + wi as usize]
                                    as f64;
                                let wv = wt[((o * cg + ci) * kh + a) * kw + e] as f64;
                                s += xv * wv;
                            }
                        }
                    }
                    y.push(s);
                }
            }
        }
    }
    (vec![n, m, oh, ow], y)
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}"
        );
    }
}

// ---------------------------------------------------------------- Conv

/// The example of the ONNX `Conv` spec: a 5x5 ramp `0..25` with a 3x3 kernel
/// of ones, with and without one element of padding. Each output is the sum
/// of the window, done by hand: the top-left corner with padding is
/// `0 + 1 + 5 + 6 = 12`, the centre of the valid result `6 + 7 + 8 + 11 +
/// 12 + 13 + 16 + 17 + 18 = 108`.
#[test]
fn conv_spec_example_by_hand() {
    let x = f32s(&[1, 1, 5, 5], (0..25).map(|v| v as f32).collect());
    let w = f32s(&[1, 1, 3, 3], vec![1.0; 9]);
    let y = ok(
        conv_op(&[1, 1], &[1, 1, 1, 1], &[1, 1], 1),
        &[x.clone(), w.clone()],
    );
    assert_eq!(y.shape(), &[1, 1, 5, 5]);
    let want = [
        12.0, 21.0, 27.0, 33.0, 24.0, 33.0, 54.0, 63.0, 72.0, 51.0, 63.0, 99.0, 108.0, 117.0, 81.0,
        93.0, 144.0, 153.0, 162.0, 111.0, 72.0, 111.0, 117.0, 123.0, 84.0,
    ];
    assert_eq!(y.as_slice::<f32>().unwrap(), &want);
    let y = ok(
        conv_op(&[1, 1], &[0, 0, 0, 0], &[1, 1], 1),
        &[x.clone(), w.clone()],
    );
    assert_eq!(y.shape(), &[1, 1, 3, 3]);
    let want = [54.0, 63.0, 72.0, 99.0, 108.0, 117.0, 144.0, 153.0, 162.0];
    assert_eq!(y.as_slice::<f32>().unwrap(), &want);
    // Stride 2 with asymmetric padding (one row above and below, no columns):
    // windows start at rows -1, 1, 3 and columns 0, 2. The first sees rows 0
    // and 1, columns 0..3: (0 + 1 + 2) + (5 + 6 + 7) = 21; the last sees rows
    // 3 and 4, columns 2..5: (17 + 18 + 19) + (22 + 23 + 24) = 123.
    let y = ok(conv_op(&[2, 2], &[1, 0, 1, 0], &[1, 1], 1), &[x, w]);
    assert_eq!(y.shape(), &[1, 1, 3, 2]);
    let want = [21.0, 33.0, 99.0, 117.0, 111.0, 123.0];
    assert_eq!(y.as_slice::<f32>().unwrap(), &want);
}

#[test]
fn conv_1d_with_dilation_by_hand() {
    // y[i] = x[i] - x[i + 2] (taps 1 and -1, dilation 2).
    let x = f32s(&[1, 1, 6], vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0]);
    let w = f32s(&[1, 1, 2], vec![1.0, -1.0]);
    let y = ok(conv_op(&[1], &[0, 0], &[2], 1), &[x, w]);
    assert_eq!(y.shape(), &[1, 1, 4]);
    assert_eq!(y.as_slice::<f32>().unwrap(), &[-3.0, -6.0, -12.0, -24.0]);
}

#[test]
fn conv_3d_sums_a_cube() {
    // A 2x2x2 kernel of ones over a 3x3x3 ramp, stride 1: each output is the
    // sum of a cube of 8 elements, `8 * corner + 8 * (1 + 3 + 9) / 2`.
    let x = f32s(&[1, 1, 3, 3, 3], (0..27).map(|v| v as f32).collect());
    let w = f32s(&[1, 1, 2, 2, 2], vec![1.0; 8]);
    let y = ok(conv_op(&[1, 1, 1], &[0; 6], &[1, 1, 1], 1), &[x, w]);
    assert_eq!(y.shape(), &[1, 1, 2, 2, 2]);
    let want: Vec<f32> = [0, 1, 3, 4, 9, 10, 12, 13]
        .iter()
        .map(|&corner| 8.0 * corner as f32 + 52.0)
        .collect();
    assert_eq!(y.as_slice::<f32>().unwrap(), want.as_slice());
}

/// Input and weight shapes, strides, pads, dilations and group of one 2-D case.
type ConvCase = (
    [usize; 4],
    [usize; 4],
    [usize; 2],
    [usize; 4],
    [usize; 2],
    usize,
);

#[test]
fn conv_matches_direct_loops_with_groups_strides_dilations_and_pads() {
    let cases: [ConvCase; 4] = [
        ([2, 4, 7, 6], [6, 2, 3, 2], [2, 1], [1, 0, 2, 1], [1, 2], 2),
        ([1, 3, 9, 9], [4, 3, 3, 3], [2, 2], [1, 1, 1, 1], [2, 2], 1),
        ([1, 4, 5, 5], [4, 1, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 4),
        ([3, 2, 4, 8], [5, 2, 1, 4], [1, 3], [0, 2, 0, 2], [1, 1], 1),
    ];
    for (i, (xs, ws, stride, pads, dil, group)) in cases.into_iter().enumerate() {
        let xv = noise(xs.iter().product(), i as u64);
        let wv = noise(ws.iter().product(), 100 + i as u64);
        let (shape, want) = naive_conv2d(&xv, xs, &wv, ws, stride, pads, dil, group);
        let pads_i: Vec<i64> = pads.iter().map(|&p| p as i64).collect();
        let y = ok(
            conv_op(&stride, &pads_i, &dil, group),
            &[f32s(&xs, xv), f32s(&ws, wv)],
        );
        assert_eq!(y.shape(), shape.as_slice(), "case {i}");
        assert_close(y.as_slice::<f32>().unwrap(), &want, 1e-5);
    }
}

#[test]
fn conv_f64_and_f16() {
    let xv = noise(2 * 3 * 5 * 5, 7);
    let wv = noise(4 * 3 * 2 * 2, 8);
    let (shape, want) = naive_conv2d(
        &xv,
        [2, 3, 5, 5],
        &wv,
        [4, 3, 2, 2],
        [1, 1],
        [0, 1, 1, 0],
        [1, 1],
        1,
    );
    let op = conv_op(&[1, 1], &[0, 1, 1, 0], &[1, 1], 1);
    let x64 = Tensor::from_vec(vec![2, 3, 5, 5], xv.iter().map(|&v| v as f64).collect()).unwrap();
    let w64 = Tensor::from_vec(vec![4, 3, 2, 2], wv.iter().map(|&v| v as f64).collect()).unwrap();
    let y = ok(op.clone(), &[x64, w64]);
    assert_eq!(y.shape(), shape.as_slice());
    for (g, w) in y.as_slice::<f64>().unwrap().iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
    // f16 operands: the exact sum of the f16 values, rounded once to f16.
    let xh: Vec<f16> = xv.iter().map(|&v| f16::from_f32(v)).collect();
    let wh: Vec<f16> = wv.iter().map(|&v| f16::from_f32(v)).collect();
    let (_, want_h) = naive_conv2d(
        &xh.iter().map(|v| v.to_f32()).collect::<Vec<_>>(),
        [2, 3, 5, 5],
        &wh.iter().map(|v| v.to_f32()).collect::<Vec<_>>(),
        [4, 3, 2, 2],
        [1, 1],
        [0, 1, 1, 0],
        [1, 1],
        1,
    );
    let y = ok(
        op,
        &[
            Tensor::from_vec(vec![2, 3, 5, 5], xh).unwrap(),
            Tensor::from_vec(vec![4, 3, 2, 2], wh).unwrap(),
        ],
    );
    assert_eq!(y.dtype(), DType::F16);
    for (g, w) in y.as_slice::<f16>().unwrap().iter().zip(&want_h) {
        // At most one f16 rounding (2^-11 relative) plus f32 accumulation.
        assert!(
            (g.to_f64() - w).abs() <= w.abs() * 1e-3 + 1e-6,
            "{g} vs {w}"
        );
    }
}

/// A ViT-B/16 patch embedding: 224x224x3 to 768 channels by 16x16 patches.
/// Checks a sample of outputs against the defining sum; the interpreter
/// should take well under a second for it in release builds.
#[test]
fn vit_patch_embedding() {
    let xv = noise(3 * 224 * 224, 1);
    let wv = noise(768 * 3 * 16 * 16, 2);
    let start = std::time::Instant::now();
    let y = ok(
        conv_op(&[16, 16], &[0; 4], &[1, 1], 1),
        &[
            f32s(&[1, 3, 224, 224], xv.clone()),
            f32s(&[768, 3, 16, 16], wv.clone()),
        ],
    );
    eprintln!("ViT-B/16 patch embedding: {:?}", start.elapsed());
    assert_eq!(y.shape(), &[1, 768, 14, 14]);
    let got = y.as_slice::<f32>().unwrap();
    for (o, i, j) in [(0, 0, 0), (767, 13, 13), (100, 3, 11), (511, 7, 0)] {
        let mut s = 0f64;
        for ci in 0..3 {
            for a in 0..16 {
                for e in 0..16 {
                    s += xv[(ci * 224 + i * 16 + a) * 224 + j * 16 + e] as f64
                        * wv[((o * 3 + ci) * 16 + a) * 16 + e] as f64;
                }
            }
        }
        let g = got[(o * 14 + i) * 14 + j] as f64;
        assert!(
            (g - s).abs() < 1e-4 * (1.0 + s.abs()),
            "{o},{i},{j}: {g} vs {s}"
        );
    }
}

#[test]
fn conv_infers_symbolic_spatial_sizes() {
    let mut g = Graph::new();
    let (n, h, w) = (Dim::sym("n"), Dim::sym("h"), Dim::sym("w"));
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, vec![n.clone(), c(3), h.clone(), w.clone()]),
    );
    let k = g.add_const(Tensor::zeros(DType::F32, vec![8, 3, 16, 16]), None);
    let y = g
        .add(conv_op(&[16, 16], &[0; 4], &[1, 1], 1), &[x, k])
        .unwrap();
    // floor((h - 16) / 16) + 1 is floor(h / 16).
    let out = |d: &Dim| d.sub(&c(16)).floor_div(&c(16)).add(&c(1));
    assert_eq!(
        g.ty(y).shape.dims(),
        &[n.clone(), c(8), out(&h), out(&w)][..]
    );
    // Symbolic pads: out = floor((h + p + 2 - 3) / 2) + 1. An input binds `p` (a symbol no
    // input binds would be derived, which only a `pack` may introduce).
    let p = Dim::sym("p");
    g.add_input("pads", TensorType::new(DType::F32, vec![p.clone()]));
    let k3 = g.add_const(Tensor::zeros(DType::F32, vec![4, 3, 3, 3]), None);
    let op = Op::Conv {
        strides: vec![2, 1],
        pads_begin: vec![p.clone(), c(0)],
        pads_end: vec![c(2), c(0)],
        dilations: vec![1, 1],
        group: 1,
    };
    let z = g.add(op.clone(), &[x, k3]).unwrap();
    let want_h = h.add(&p).sub(&c(1)).floor_div(&c(2)).add(&c(1));
    assert_eq!(g.ty(z).shape.dims()[2], want_h);
    assert_eq!(g.ty(z).shape.dims()[3], w.sub(&c(2)));
    g.add_output("y", y);
    g.add_output("z", z);
    tcc_ir::verify::verify(&g).unwrap();
    // The interpreter evaluates the pads with the bindings: h = 5, p = 1
    // gives floor((5 + 1 + 2 - 3) / 2) + 1 = 3 rows.
    let mut env = Bindings::default();
    env.insert("p", 1);
    env.insert("h", 5);
    env.insert("w", 4);
    env.insert("n", 1);
    let xt = f32s(&[1, 3, 5, 4], vec![1.0; 60]);
    let kt = f32s(&[4, 3, 3, 3], vec![1.0; 108]);
    let ty = TensorType::new(DType::F32, vec![c(1), c(4), want_h.clone(), c(2)]);
    let r = eval(&op, &[&xt, &kt], &ty, &env).unwrap();
    assert_eq!(r.shape(), &[1, 4, 3, 2]);
    // Row 0 starts one row above the input (pad 1): it sees rows 0 and 1,
    // 2 * 3 columns * 3 channels = 18 ones.
    assert_eq!(r.as_slice::<f32>().unwrap()[0], 18.0);
}

#[test]
fn conv_rejects_bad_operands() {
    let x = Tensor::zeros(DType::F32, vec![1, 4, 5, 5]);
    let cases = [
        // Channels: 4 != 3 * 1.
        (
            conv_op(&[1, 1], &[0; 4], &[1, 1], 1),
            Tensor::zeros(DType::F32, vec![2, 3, 3, 3]),
            "channels",
        ),
        // Output channels 3 do not split into 2 groups.
        (
            conv_op(&[1, 1], &[0; 4], &[1, 1], 2),
            Tensor::zeros(DType::F32, vec![3, 2, 3, 3]),
            "groups",
        ),
        // The kernel (reach 7) exceeds the input (5).
        (
            conv_op(&[1, 1], &[0; 4], &[3, 3], 1),
            Tensor::zeros(DType::F32, vec![1, 4, 3, 3]),
            "reaches",
        ),
        // Stride 0.
        (
            conv_op(&[0, 1], &[0; 4], &[1, 1], 1),
            Tensor::zeros(DType::F32, vec![1, 4, 3, 3]),
            "at least 1",
        ),
        // Integer operands.
        (
            conv_op(&[1, 1], &[0; 4], &[1, 1], 1),
            Tensor::zeros(DType::I64, vec![1, 4, 3, 3]),
            "float",
        ),
        // Negative pads.
        (
            conv_op(&[1, 1], &[-1, 0, 0, 0], &[1, 1], 1),
            Tensor::zeros(DType::F32, vec![1, 4, 3, 3]),
            "negative",
        ),
    ];
    for (op, w, what) in cases {
        let x = if w.dtype() == DType::I64 {
            Tensor::zeros(DType::I64, vec![1, 4, 5, 5])
        } else {
            x.clone()
        };
        let e = apply(op, &[x, w]).unwrap_err().to_string();
        assert!(e.contains(what), "{e}");
    }
}

// ---------------------------------------------------------------- Pad

fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap()
}

fn pad1(mode: PadMode, x: &[i64], b: i64, e: i64) -> Vec<i64> {
    let mut xs = vec![i64s(&[x.len()], x)];
    if mode == PadMode::Constant {
        xs.push(Tensor::scalar(0i64));
    }
    ok(pad_op(mode, &[b], &[e]), &xs)
        .as_slice::<i64>()
        .unwrap()
        .to_vec()
}

/// Expected values from numpy 2.4: `np.pad(np.arange(1, 4), (5, 6), mode)`
/// and `np.pad(np.arange(1, 4), (2, 3), "edge")`; pads longer than the axis
/// repeat the pattern.
#[test]
fn pad_modes_match_numpy() {
    let x = [1, 2, 3];
    assert_eq!(
        pad1(PadMode::Reflect, &x, 5, 6),
        [2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2, 1]
    );
    assert_eq!(
        pad1(PadMode::Wrap, &x, 5, 6),
        [2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]
    );
    assert_eq!(pad1(PadMode::Edge, &x, 2, 3), [1, 1, 1, 2, 3, 3, 3, 3]);
    assert_eq!(pad1(PadMode::Constant, &x, 1, 2), [0, 1, 2, 3, 0, 0]);
    // A one-element axis reflects to itself.
    assert_eq!(pad1(PadMode::Reflect, &[7], 2, 1), [7, 7, 7, 7]);
}

/// Negative pads crop first; the fill then reads the cropped axis. Expected
/// values from ONNX Runtime 1.32 (`Pad`, opset 19) on `arange(6)` with pads
/// `[-2, 3]`.
#[test]
fn negative_pads_crop_before_padding() {
    let x = [0, 1, 2, 3, 4, 5];
    assert_eq!(pad1(PadMode::Reflect, &x, -2, 3), [2, 3, 4, 5, 4, 3, 2]);
    assert_eq!(pad1(PadMode::Edge, &x, -2, 3), [2, 3, 4, 5, 5, 5, 5]);
    assert_eq!(pad1(PadMode::Wrap, &x, -2, 3), [2, 3, 4, 5, 2, 3, 4]);
    assert_eq!(pad1(PadMode::Constant, &x, -2, 3), [2, 3, 4, 5, 0, 0, 0]);
    assert_eq!(pad1(PadMode::Constant, &x, -1, -2), [1, 2, 3]);
    assert_eq!(pad1(PadMode::Edge, &x, -6, 0), Vec::<i64>::new());
}

/// Expected values from numpy 2.4: `np.pad(np.arange(12).reshape(3, 4),
/// ((1, 2), (2, 1)), "reflect")` and `np.pad(.., ((0, 1), (1, 0)),
/// constant_values=-1)`.
#[test]
fn pad_2d_matches_numpy() {
    let x = i64s(&[3, 4], &(0..12).collect::<Vec<_>>());
    let y = ok(
        pad_op(PadMode::Reflect, &[1, 2], &[2, 1]),
        std::slice::from_ref(&x),
    );
    assert_eq!(y.shape(), &[6, 7]);
    let want = [
        [6, 5, 4, 5, 6, 7, 6],
        [2, 1, 0, 1, 2, 3, 2],
        [6, 5, 4, 5, 6, 7, 6],
        [10, 9, 8, 9, 10, 11, 10],
        [6, 5, 4, 5, 6, 7, 6],
        [2, 1, 0, 1, 2, 3, 2],
    ];
    assert_eq!(y.as_slice::<i64>().unwrap(), want.concat().as_slice());
    let y = ok(
        pad_op(PadMode::Constant, &[0, 1], &[1, 0]),
        &[x, Tensor::scalar(-1i64)],
    );
    assert_eq!(y.shape(), &[4, 5]);
    let want = [
        [-1, 0, 1, 2, 3],
        [-1, 4, 5, 6, 7],
        [-1, 8, 9, 10, 11],
        [-1, -1, -1, -1, -1],
    ];
    assert_eq!(y.as_slice::<i64>().unwrap(), want.concat().as_slice());
}

#[test]
fn pad_float_fill_keeps_bits() {
    let x = f32s(&[2], vec![1.0, 2.0]);
    let y = ok(
        pad_op(PadMode::Constant, &[1], &[1]),
        &[x, Tensor::scalar(f32::NEG_INFINITY)],
    );
    assert_eq!(
        y.as_slice::<f32>().unwrap(),
        &[f32::NEG_INFINITY, 1.0, 2.0, f32::NEG_INFINITY]
    );
}

#[test]
fn pad_with_symbolic_amounts() {
    let mut g = Graph::new();
    let s = Dim::sym("s");
    let x = g.add_input("x", TensorType::new(DType::I64, vec![s.clone()]));
    let v = g.add_const(Tensor::scalar(9i64), None);
    // Pad to twice the length: `s` more elements at the end.
    let op = Op::Pad {
        mode: PadMode::Constant,
        pads_begin: vec![c(1)],
        pads_end: vec![s.sub(&c(1))],
    };
    let y = g.add(op, &[x, v]).unwrap();
    assert_eq!(g.ty(y).shape.dims(), &[s.add(&s)][..]);
    g.add_output("y", y);
    tcc_ir::verify::verify(&g).unwrap();
    let inputs = HashMap::from([("x".to_string(), i64s(&[3], &[4, 5, 6]))]);
    let out = run(&g, &inputs).unwrap().remove(0).1;
    assert_eq!(out.as_slice::<i64>().unwrap(), &[9, 4, 5, 6, 9, 9]);
}

#[test]
fn pad_rejects_bad_operands() {
    let x = i64s(&[3], &[1, 2, 3]);
    let e = apply(
        pad_op(PadMode::Edge, &[-2], &[-2]),
        std::slice::from_ref(&x),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cannot lose more"), "{e}");
    let e = apply(
        pad_op(PadMode::Constant, &[1], &[1]),
        &[x.clone(), Tensor::scalar(1.0f32)],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("fill value"), "{e}");
    let e = apply(
        pad_op(PadMode::Edge, &[1, 0], &[1, 0]),
        std::slice::from_ref(&x),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("rank"), "{e}");
    // Edge padding of an axis cropped to nothing has nothing to repeat.
    let e = apply(pad_op(PadMode::Edge, &[-3], &[1]), &[x])
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing to repeat"), "{e}");
}

// ---------------------------------------------------------------- text form

#[test]
fn conv_and_pad_round_trip_through_the_text_form() {
    let mut g = Graph::new();
    let h = Dim::sym("h");
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, vec![c(1), c(2), h.clone(), c(6)]),
    );
    let w = g.add_const(
        f32s(&[4, 1, 3, 2], (0..24).map(|v| v as f32 * 0.5).collect()),
        None,
    );
    let conv = Op::Conv {
        strides: vec![2, 1],
        pads_begin: vec![h.floor_div(&c(2)), c(0)],
        pads_end: vec![c(1), c(1)],
        dilations: vec![1, 2],
        group: 2,
    };
    let y = g.add(conv, &[x, w]).unwrap();
    let fill = g.add_const(Tensor::scalar(-0.0f32), None);
    let mut outs = vec![y];
    for mode in PadMode::ALL {
        let op = Op::Pad {
            mode,
            pads_begin: vec![c(0), c(1), h.clone(), c(-1)],
            pads_end: vec![c(0), c(0), c(2), c(3)],
        };
        let operands = if mode == PadMode::Constant {
            vec![y, fill]
        } else {
            vec![y]
        };
        outs.push(g.add(op, &operands).unwrap());
    }
    for (i, o) in outs.into_iter().enumerate() {
        g.add_output(&format!("out{i}"), o);
    }
    tcc_ir::verify::verify(&g).unwrap();
    let text = tcc_ir::text::print(&g);
    assert!(
        text.contains(
            "conv<strides=[2, 1], pads_begin=[floordiv(h, 2), 0], pads_end=[1, 1], \
             dilations=[1, 2], group=2>"
        ),
        "{text}"
    );
    for mode in PadMode::ALL {
        assert!(
            text.contains(&format!("pad<mode={}, ", mode.name())),
            "{text}"
        );
    }
    let weights = tcc_ir::text::elided_weights(&g);
    let lookup = |n: &str| weights.get(n).cloned();
    let back = tcc_ir::text::parse(&text, &lookup).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(tcc_ir::text::print(&back), text);
    tcc_ir::verify::verify(&back).unwrap();
    // A bad mode is a parse error that names it.
    let bad = text.replace("mode=wrap", "mode=mirror");
    let e = tcc_ir::text::parse(&bad, &lookup).unwrap_err().to_string();
    assert!(e.contains("mirror"), "{e}");
}

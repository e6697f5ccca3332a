//! Tests of the reference interpreter: small hand-computed cases per op
//! family, input binding and its errors, and whole graphs built with
//! `Graph::add` run end to end.

use half::f16;
use std::collections::HashMap;
use tcc_ir::interp::{eval, run, Bindings};
use tcc_ir::{
    BinaryOp, DType, Dim, Error, Graph, Op, ReduceKind, Shape, Tensor, TensorType, UnaryOp,
};

// ---------------------------------------------------------------- helpers

fn t<T: tcc_ir::Element>(shape: &[usize], v: Vec<T>) -> Tensor {
    Tensor::from_vec(shape.to_vec(), v).expect("test tensor")
}

fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
    t(shape, v.to_vec())
}

fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
    t(shape, v.to_vec())
}

/// Builds a graph applying `op` to constant operands and runs it.
fn apply(op: Op, xs: impl AsRef<[Tensor]>) -> tcc_ir::Result<Tensor> {
    let mut g = Graph::new();
    let ids: Vec<_> = xs
        .as_ref()
        .iter()
        .map(|x| g.add_const(x.clone(), None))
        .collect();
    let y = g.add(op, &ids)?;
    g.add_output("y", y);
    Ok(run(&g, &HashMap::new())?.remove(0).1)
}

fn ok(op: Op, xs: impl AsRef<[Tensor]>) -> Tensor {
    apply(op.clone(), xs).unwrap_or_else(|e| panic!("{op:?} failed: {e}"))
}

fn bin(b: BinaryOp, x: Tensor, y: Tensor) -> Tensor {
    ok(Op::Binary(b), &[x, y])
}

fn un(u: UnaryOp, x: Tensor) -> Tensor {
    ok(Op::Unary(u), &[x])
}

fn as_f32(x: &Tensor) -> Vec<f32> {
    x.as_slice::<f32>().expect("f32 tensor").to_vec()
}

fn as_i64(x: &Tensor) -> Vec<i64> {
    x.as_slice::<i64>().expect("i64 tensor").to_vec()
}

fn as_bool(x: &Tensor) -> Vec<bool> {
    x.as_slice::<bool>().expect("bool tensor").to_vec()
}

/// Asserts `got` is within `tol` of `want`, elementwise (NaN equals NaN).
fn close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = (g.is_nan() && w.is_nan()) || (g - w).abs() <= tol;
        assert!(same, "element {i}: got {g}, want {w} (all: {got:?})");
    }
}

fn ty(dtype: DType, dims: &[Dim]) -> TensorType {
    TensorType::new(dtype, dims.to_vec())
}

fn sym(s: &str) -> Dim {
    Dim::sym(s)
}

fn c(v: i64) -> Dim {
    Dim::constant(v)
}

/// A simple deterministic pseudo-random sequence in [-1, 1).
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

// ---------------------------------------------------------------- elementwise

#[test]
fn add_broadcasts_rows_and_columns() {
    let y = bin(
        BinaryOp::Add,
        f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.]),
        f32s(&[3], &[10., 20., 30.]),
    );
    assert_eq!(y.shape(), &[2, 3]);
    assert_eq!(as_f32(&y), [11., 22., 33., 14., 25., 36.]);

    let y = bin(
        BinaryOp::Sub,
        f32s(&[2, 1], &[1., 2.]),
        f32s(&[1, 3], &[10., 20., 30.]),
    );
    assert_eq!(y.shape(), &[2, 3]);
    assert_eq!(as_f32(&y), [-9., -19., -29., -8., -18., -28.]);

    let y = bin(
        BinaryOp::Mul,
        f32s(&[], &[2.]),
        f32s(&[2, 2], &[1., 2., 3., 4.]),
    );
    assert_eq!(as_f32(&y), [2., 4., 6., 8.]);
}

#[test]
fn empty_tensors_broadcast_to_empty() {
    let y = bin(BinaryOp::Add, f32s(&[0, 3], &[]), f32s(&[3], &[1., 2., 3.]));
    assert_eq!(y.shape(), &[0, 3]);
    assert!(y.is_empty());
    let y = un(UnaryOp::Exp, f32s(&[2, 0], &[]));
    assert_eq!(y.shape(), &[2, 0]);
}

#[test]
fn integer_division_truncates_and_remainders_take_their_signs() {
    let a = t(&[4], vec![7i32, -7, 7, -7]);
    let b = t(&[4], vec![2i32, 2, -2, -2]);
    let div = bin(BinaryOp::Div, a.clone(), b.clone());
    assert_eq!(div.as_slice::<i32>().unwrap(), [3, -3, -3, 3]);
    let m = bin(BinaryOp::Mod, a.clone(), b.clone());
    assert_eq!(m.as_slice::<i32>().unwrap(), [1, 1, -1, -1]);
    let fm = bin(BinaryOp::FMod, a, b);
    assert_eq!(fm.as_slice::<i32>().unwrap(), [1, -1, 1, -1]);

    // Floats: `Mod` takes the divisor's sign, `FMod` the dividend's.
    let a = f32s(&[2], &[5.5, -5.5]);
    let b = f32s(&[2], &[-2., 2.]);
    assert_eq!(
        as_f32(&bin(BinaryOp::Mod, a.clone(), b.clone())),
        [-0.5, 0.5]
    );
    assert_eq!(as_f32(&bin(BinaryOp::FMod, a, b)), [1.5, -1.5]);
}

#[test]
fn integer_division_by_zero_is_an_error() {
    for b in [BinaryOp::Div, BinaryOp::Mod, BinaryOp::FMod] {
        let e = apply(Op::Binary(b), &[i64s(&[2], &[1, 2]), i64s(&[2], &[1, 0])]).unwrap_err();
        assert!(
            matches!(&e, Error::Eval { message, .. } if message.contains("division by zero")),
            "{b:?}: {e}"
        );
    }
}

#[test]
fn integer_arithmetic_wraps() {
    let a = t(&[2], vec![i32::MAX, i32::MIN]);
    let b = t(&[2], vec![1i32, -1]);
    let s = bin(BinaryOp::Add, a.clone(), b.clone());
    assert_eq!(s.as_slice::<i32>().unwrap(), [i32::MIN, i32::MAX]);
    let d = bin(BinaryOp::Div, a, b);
    assert_eq!(d.as_slice::<i32>().unwrap(), [i32::MAX, i32::MIN]);
    let n = un(UnaryOp::Abs, t(&[2], vec![i32::MIN, -3]));
    assert_eq!(n.as_slice::<i32>().unwrap(), [i32::MIN, 3]);
    let s = un(UnaryOp::Sign, t(&[3], vec![-5i8, 0, 9]));
    assert_eq!(s.as_slice::<i8>().unwrap(), [-1, 0, 1]);
    let r = un(UnaryOp::Relu, i64s(&[2], &[-5, 5]));
    assert_eq!(as_i64(&r), [0, 5]);
}

#[test]
fn min_and_max_propagate_nan() {
    let a = f32s(&[3], &[1., f32::NAN, 3.]);
    let b = f32s(&[3], &[2., 0., f32::NAN]);
    let mx = as_f32(&bin(BinaryOp::Max, a.clone(), b.clone()));
    let mn = as_f32(&bin(BinaryOp::Min, a, b));
    assert_eq!(mx[0], 2.);
    assert!(mx[1].is_nan() && mx[2].is_nan());
    assert_eq!(mn[0], 1.);
    assert!(mn[1].is_nan() && mn[2].is_nan());
}

#[test]
fn round_is_half_to_even() {
    let y = un(
        UnaryOp::Round,
        f32s(&[8], &[0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6, -2.6]),
    );
    assert_eq!(as_f32(&y), [0., 2., 2., -0., -2., 2., 3., -3.]);
    let y = un(UnaryOp::Floor, f32s(&[2], &[-1.5, 1.5]));
    assert_eq!(as_f32(&y), [-2., 1.]);
    let y = un(UnaryOp::Ceil, f32s(&[2], &[-1.5, 1.5]));
    assert_eq!(as_f32(&y), [-1., 2.]);
}

#[test]
fn f16_rounds_once_to_nearest_even() {
    // 1 + 2^-11 is halfway between 1 and the next f16 (1 + 2^-10): even is 1.
    // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: even is the latter.
    let a = t(&[2], vec![f16::from_f32(1.0), f16::from_f32(1.0)]);
    let b = t(
        &[2],
        vec![
            f16::from_f64(2f64.powi(-11)),
            f16::from_f64(3.0 * 2f64.powi(-11)),
        ],
    );
    let y = bin(BinaryOp::Add, a, b);
    let v = y.as_slice::<f16>().unwrap();
    assert_eq!(v[0].to_f64(), 1.0);
    assert_eq!(v[1].to_f64(), 1.0 + 2f64.powi(-9));

    // exp(12) = 162754.79 overflows f16 (max 65504); exp(1) rounds to 2.719.
    let y = un(
        UnaryOp::Exp,
        t(&[2], vec![f16::from_f32(12.0), f16::from_f32(1.0)]),
    );
    let v = y.as_slice::<f16>().unwrap();
    assert!(v[0].is_infinite());
    assert_eq!(v[1], f16::from_f64(std::f64::consts::E));
}

#[test]
fn unary_float_functions() {
    let y = un(UnaryOp::Erf, f32s(&[4], &[0., 0.5, -1., 3.]));
    close(
        &as_f32(&y),
        &[0., 0.520_499_9, -0.842_700_8, 0.999_977_9],
        1e-6,
    );
    let y = un(UnaryOp::Sigmoid, f32s(&[3], &[0., 2., -2.]));
    close(&as_f32(&y), &[0.5, 0.880_797_1, 0.119_202_9], 1e-6);
    let y = un(UnaryOp::Relu, f32s(&[3], &[-1., f32::NAN, 2.]));
    let v = as_f32(&y);
    assert_eq!((v[0], v[2]), (0., 2.));
    assert!(v[1].is_nan());
    let y = un(UnaryOp::Sign, f32s(&[3], &[-3., 0., 0.25]));
    assert_eq!(as_f32(&y), [-1., 0., 1.]);
    let y = un(UnaryOp::Sqrt, f32s(&[2], &[4., 2.]));
    assert_eq!(as_f32(&y), [2., std::f32::consts::SQRT_2]);
    let y = un(UnaryOp::IsNaN, f32s(&[2], &[f32::NAN, 1.]));
    assert_eq!(as_bool(&y), [true, false]);
    let y = un(UnaryOp::Not, t(&[2], vec![true, false]));
    assert_eq!(as_bool(&y), [false, true]);
}

#[test]
fn comparisons_and_logic() {
    let a = i64s(&[3], &[1, 2, 3]);
    let b = i64s(&[], &[2]);
    assert_eq!(
        as_bool(&bin(BinaryOp::Less, a.clone(), b.clone())),
        [true, false, false]
    );
    assert_eq!(
        as_bool(&bin(BinaryOp::GreaterEqual, a.clone(), b.clone())),
        [false, true, true]
    );
    assert_eq!(as_bool(&bin(BinaryOp::Equal, a, b)), [false, true, false]);
    // NaN compares unequal to everything, itself included.
    let n = f32s(&[2], &[f32::NAN, 1.]);
    assert_eq!(as_bool(&bin(BinaryOp::Equal, n.clone(), n)), [false, true]);
    let p = t(&[4], vec![true, true, false, false]);
    let q = t(&[4], vec![true, false, true, false]);
    assert_eq!(
        as_bool(&bin(BinaryOp::And, p.clone(), q.clone())),
        [true, false, false, false]
    );
    assert_eq!(
        as_bool(&bin(BinaryOp::Or, p.clone(), q.clone())),
        [true, true, true, false]
    );
    assert_eq!(
        as_bool(&bin(BinaryOp::Xor, p.clone(), q.clone())),
        [false, true, true, false]
    );
    assert_eq!(
        as_bool(&bin(BinaryOp::Equal, p, q)),
        [true, false, false, true]
    );
}

#[test]
fn pow_of_floats_and_integers() {
    let y = bin(BinaryOp::Pow, f32s(&[3], &[4., 2., -8.]), f32s(&[], &[0.5]));
    let v = as_f32(&y);
    assert_eq!(&v[..2], &[2., std::f32::consts::SQRT_2]);
    assert!(v[2].is_nan());
    // The exponent may have another dtype.
    let y = bin(BinaryOp::Pow, f32s(&[2], &[3., 2.]), i64s(&[1], &[3]));
    assert_eq!(as_f32(&y), [27., 8.]);
    let y = bin(
        BinaryOp::Pow,
        i64s(&[3], &[2, 3, 2]),
        i64s(&[3], &[10, 3, -1]),
    );
    assert_eq!(as_i64(&y), [1024, 27, 0]);
}

#[test]
fn where_broadcasts_all_three() {
    let cond = t(&[2, 1], vec![true, false]);
    let y = ok(Op::Where, &[cond, i64s(&[3], &[1, 2, 3]), i64s(&[], &[0])]);
    assert_eq!(y.shape(), &[2, 3]);
    assert_eq!(as_i64(&y), [1, 2, 3, 0, 0, 0]);
}

#[test]
fn cast_as_onnx_does() {
    let y = ok(
        Op::Cast { to: DType::I32 },
        &[f32s(&[3], &[1.7, -1.7, f32::NAN])],
    );
    assert_eq!(y.as_slice::<i32>().unwrap(), [1, -1, 0]);
    let y = ok(Op::Cast { to: DType::U8 }, &[i64s(&[2], &[300, -1])]);
    assert_eq!(y.as_slice::<u8>().unwrap(), [44, 255]);
    let y = ok(Op::Cast { to: DType::Bool }, &[f32s(&[3], &[0., -0.5, 2.])]);
    assert_eq!(as_bool(&y), [false, true, true]);
    let y = ok(Op::Cast { to: DType::F16 }, &[f32s(&[1], &[65520.])]);
    assert!(y.as_slice::<f16>().unwrap()[0].is_infinite());
}

// ---------------------------------------------------------------- matmul

/// A naive f64 reference product of row-major `[m, k]` and `[k, n]`.
fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum();
            c[i * n + j] = s as f32;
        }
    }
    c
}

#[test]
fn matmul_small_by_hand() {
    let a = f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let b = f32s(&[3, 2], &[7., 8., 9., 10., 11., 12.]);
    let y = ok(Op::MatMul, &[a, b]);
    assert_eq!(y.shape(), &[2, 2]);
    assert_eq!(as_f32(&y), [58., 64., 139., 154.]);
}

#[test]
fn matmul_broadcasts_batches() {
    // a: [2, 1, 2, 2] (two matrices), b: [3, 2, 2] (three): result [2, 3, 2, 2].
    let a = f32s(&[2, 1, 2, 2], &[1., 0., 0., 1., 0., 1., 1., 0.]);
    let b = f32s(
        &[3, 2, 2],
        &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
    );
    let y = ok(Op::MatMul, &[a, b]);
    assert_eq!(y.shape(), &[2, 3, 2, 2]);
    // The identity keeps each b; the swap matrix swaps its rows.
    assert_eq!(
        as_f32(&y),
        [
            1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12., //
            3., 4., 1., 2., 7., 8., 5., 6., 11., 12., 9., 10.
        ]
    );
}

#[test]
fn matmul_large_matches_naive_reference() {
    // Big enough to cross the k and j tiles and to run on several threads.
    let (m, k, n) = (37, 300, 600);
    let a = noise(2 * m * k, 1);
    let b = noise(k * n, 2);
    let y = ok(Op::MatMul, &[f32s(&[2, m, k], &a), f32s(&[k, n], &b)]);
    assert_eq!(y.shape(), &[2, m, n]);
    let got = as_f32(&y);
    for batch in 0..2 {
        let want = naive(&a[batch * m * k..(batch + 1) * m * k], &b, m, k, n);
        close(&got[batch * m * n..(batch + 1) * m * n], &want, 1e-4);
    }
}

#[test]
fn integer_matmul_wraps_exactly() {
    let a = t(&[1, 2], vec![i32::MAX, 1]);
    let b = t(&[2, 1], vec![1i32, 1]);
    let y = ok(Op::MatMul, &[a, b]);
    assert_eq!(y.as_slice::<i32>().unwrap(), [i32::MIN]);
    let a = t(&[1, 3], vec![100i8, 100, 100]);
    let b = t(&[3, 1], vec![1i8, 1, 1]);
    let y = ok(Op::MatMul, &[a, b]);
    assert_eq!(y.as_slice::<i8>().unwrap(), [300i64 as i8]);
}

#[test]
fn matmul_of_empty_operands() {
    // k = 0: a sum of nothing is 0.
    let y = ok(Op::MatMul, &[f32s(&[2, 0], &[]), f32s(&[0, 3], &[])]);
    assert_eq!(y.shape(), &[2, 3]);
    assert_eq!(as_f32(&y), [0.; 6]);
    let y = ok(Op::MatMul, &[f32s(&[0, 2], &[]), f32s(&[2, 3], &[0.; 6])]);
    assert_eq!(y.shape(), &[0, 3]);
}

#[test]
fn f16_matmul() {
    let h = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
    let y = ok(
        Op::MatMul,
        &[t(&[1, 2], h(&[0.5, 2.0])), t(&[2, 1], h(&[4.0, 0.25]))],
    );
    assert_eq!(y.as_slice::<f16>().unwrap(), [f16::from_f32(2.5)]);
}

// ---------------------------------------------------------------- reductions

#[test]
fn reduce_over_axes() {
    let x = f32s(&[2, 2, 2], &[0., 1., 2., 3., 4., 5., 6., 7.]);
    let sum = |axes: Vec<usize>, keep_dims| Op::Reduce {
        kind: ReduceKind::Sum,
        axes,
        keep_dims,
    };
    let y = ok(sum(vec![0, 2], true), [x.clone()]);
    assert_eq!(y.shape(), &[1, 2, 1]);
    assert_eq!(as_f32(&y), [0. + 1. + 4. + 5., 2. + 3. + 6. + 7.]);
    let y = ok(sum(vec![1], false), [x.clone()]);
    assert_eq!(y.shape(), &[2, 2]);
    assert_eq!(as_f32(&y), [2., 4., 10., 12.]);
    let y = ok(sum(vec![0, 1, 2], false), [x.clone()]);
    assert_eq!(y.shape(), &[] as &[usize]);
    assert_eq!(as_f32(&y), [28.]);
    let y = ok(
        Op::Reduce {
            kind: ReduceKind::Prod,
            axes: vec![2],
            keep_dims: false,
        },
        [x.clone()],
    );
    assert_eq!(as_f32(&y), [0., 6., 20., 42.]);
    let y = ok(
        Op::Reduce {
            kind: ReduceKind::Mean,
            axes: vec![0],
            keep_dims: false,
        },
        &[x],
    );
    assert_eq!(as_f32(&y), [2., 3., 4., 5.]);
}

#[test]
fn integer_mean_truncates() {
    let y = ok(
        Op::Reduce {
            kind: ReduceKind::Mean,
            axes: vec![1],
            keep_dims: false,
        },
        &[i64s(&[2, 2], &[1, 2, 3, 5])],
    );
    assert_eq!(as_i64(&y), [1, 4]);
}

#[test]
fn reduce_max_min_with_nan_and_empty() {
    let x = f32s(&[2, 2], &[1., f32::NAN, 3., 2.]);
    let max = |axes: Vec<usize>| Op::Reduce {
        kind: ReduceKind::Max,
        axes,
        keep_dims: false,
    };
    let v = as_f32(&ok(max(vec![1]), &[x]));
    assert!(v[0].is_nan());
    assert_eq!(v[1], 3.);
    // Reducing an empty axis gives the identity.
    let v = as_f32(&ok(max(vec![0]), &[f32s(&[0, 2], &[])]));
    assert_eq!(v, [f32::NEG_INFINITY; 2]);
    let y = ok(
        Op::Reduce {
            kind: ReduceKind::Sum,
            axes: vec![0],
            keep_dims: true,
        },
        &[f32s(&[0, 3], &[])],
    );
    assert_eq!(y.shape(), &[1, 3]);
    assert_eq!(as_f32(&y), [0.; 3]);
    let y = ok(
        Op::Reduce {
            kind: ReduceKind::Min,
            axes: vec![0],
            keep_dims: false,
        },
        &[t(&[0, 1], Vec::<i32>::new())],
    );
    assert_eq!(y.as_slice::<i32>().unwrap(), [i32::MAX]);
}

#[test]
fn arg_reduce_ties() {
    let x = f32s(&[2, 4], &[1., 3., 3., 2., 5., 5., 0., 0.]);
    let arg = |max, select_last, keep_dims| Op::ArgReduce {
        max,
        axis: 1,
        keep_dims,
        select_last,
    };
    let y = ok(arg(true, false, false), [x.clone()]);
    assert_eq!(y.shape(), &[2]);
    assert_eq!(as_i64(&y), [1, 0]);
    let y = ok(arg(true, true, true), [x.clone()]);
    assert_eq!(y.shape(), &[2, 1]);
    assert_eq!(as_i64(&y), [2, 1]);
    let y = ok(arg(false, false, false), [x.clone()]);
    assert_eq!(as_i64(&y), [0, 2]);
    let y = ok(arg(false, true, false), &[x]);
    assert_eq!(as_i64(&y), [0, 3]);
    let y = ok(
        Op::ArgReduce {
            max: true,
            axis: 0,
            keep_dims: false,
            select_last: false,
        },
        &[i64s(&[3, 2], &[1, 9, 7, 9, 7, 2])],
    );
    assert_eq!(as_i64(&y), [1, 0]);
}

#[test]
fn cumsum_variants() {
    let x = i64s(&[4], &[1, 2, 3, 4]);
    let cs = |exclusive, reverse| Op::CumSum {
        axis: 0,
        exclusive,
        reverse,
    };
    assert_eq!(as_i64(&ok(cs(false, false), [x.clone()])), [1, 3, 6, 10]);
    assert_eq!(as_i64(&ok(cs(true, false), [x.clone()])), [0, 1, 3, 6]);
    assert_eq!(as_i64(&ok(cs(false, true), [x.clone()])), [10, 9, 7, 4]);
    assert_eq!(as_i64(&ok(cs(true, true), &[x])), [9, 7, 4, 0]);
    let y = ok(
        Op::CumSum {
            axis: 0,
            exclusive: false,
            reverse: false,
        },
        &[f32s(&[2, 2], &[1., 2., 3., 4.])],
    );
    assert_eq!(as_f32(&y), [1., 2., 4., 6.]);
}

// ---------------------------------------------------------------- normalisation

#[test]
fn softmax_is_stable_and_normalises_the_axis() {
    let y = ok(Op::Softmax { axis: 1 }, &[f32s(&[1, 3], &[1., 2., 3.])]);
    close(
        &as_f32(&y),
        &[0.090_030_57, 0.244_728_47, 0.665_240_96],
        1e-7,
    );
    // Without subtracting the max, e^1000 would overflow to inf and give NaN.
    let y = ok(Op::Softmax { axis: 0 }, &[f32s(&[2], &[1000., 1000.])]);
    assert_eq!(as_f32(&y), [0.5, 0.5]);
    // Along axis 0 of a 2x2: columns are normalised.
    let y = ok(Op::Softmax { axis: 0 }, &[f32s(&[2, 2], &[0., 5., 0., 5.])]);
    assert_eq!(as_f32(&y), [0.5, 0.5, 0.5, 0.5]);
    let y = ok(Op::LogSoftmax { axis: 1 }, &[f32s(&[1, 3], &[1., 2., 3.])]);
    close(&as_f32(&y), &[-2.407_606, -1.407_606, -0.407_606], 1e-6);
}

#[test]
fn layer_norm_with_broadcast_scale_and_bias() {
    // Both rows normalise to [-sqrt(1.5), 0, sqrt(1.5)] (variance 2/3 and 8/3).
    let x = f32s(&[2, 3], &[1., 2., 3., 2., 4., 6.]);
    let scale = f32s(&[3], &[1., 1., 2.]);
    let bias = f32s(&[1], &[0.5]);
    let y = ok(
        Op::LayerNorm {
            axis: 1,
            epsilon: 0.0,
        },
        &[x, scale, bias],
    );
    let r = 1.5f32.sqrt();
    let row = [0.5 - r, 0.5, 0.5 + 2. * r];
    close(&as_f32(&y), &[row, row].concat(), 1e-6);

    // Over the last two axes of a [1, 2, 2], with epsilon.
    let x = f32s(&[1, 2, 2], &[0., 0., 2., 2.]);
    let y = ok(
        Op::LayerNorm {
            axis: 1,
            epsilon: 3.0,
        },
        &[x, f32s(&[], &[1.]), f32s(&[], &[0.])],
    );
    // Mean 1, variance 1: (x - 1) / sqrt(1 + 3) = -0.5 or 0.5.
    assert_eq!(as_f32(&y), [-0.5, -0.5, 0.5, 0.5]);
}

// ---------------------------------------------------------------- movement

#[test]
fn reshape_and_transpose() {
    let x = f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let y = ok(
        Op::Reshape {
            shape: Shape::fixed(&[3, 2]),
        },
        [x.clone()],
    );
    assert_eq!(y.shape(), &[3, 2]);
    assert_eq!(as_f32(&y), [1., 2., 3., 4., 5., 6.]);
    let y = ok(Op::Transpose { perm: vec![1, 0] }, &[x]);
    assert_eq!(y.shape(), &[3, 2]);
    assert_eq!(as_f32(&y), [1., 4., 2., 5., 3., 6.]);
    // [2, 1, 3] -> perm [2, 0, 1] -> [3, 2, 1]: y[k, i, 0] = x[i, 0, k].
    let x = i64s(&[2, 1, 3], &[0, 1, 2, 10, 11, 12]);
    let y = ok(
        Op::Transpose {
            perm: vec![2, 0, 1],
        },
        &[x],
    );
    assert_eq!(y.shape(), &[3, 2, 1]);
    assert_eq!(as_i64(&y), [0, 10, 1, 11, 2, 12]);
}

#[test]
fn expand_broadcasts_both_ways() {
    let y = ok(
        Op::Expand {
            shape: Shape::fixed(&[2, 1, 4]),
        },
        &[i64s(&[3, 1], &[1, 2, 3])],
    );
    assert_eq!(y.shape(), &[2, 3, 4]);
    let one = [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3];
    assert_eq!(as_i64(&y), [one, one].concat());
}

#[test]
fn concat_along_an_axis() {
    let y = ok(
        Op::Concat { axis: 1 },
        &[
            i64s(&[2, 1], &[1, 2]),
            i64s(&[2, 2], &[3, 4, 5, 6]),
            i64s(&[2, 0], &[]),
        ],
    );
    assert_eq!(y.shape(), &[2, 3]);
    assert_eq!(as_i64(&y), [1, 3, 4, 2, 5, 6]);
}

fn slice1(x: Tensor, start: i64, end: i64, step: i64) -> Vec<i64> {
    as_i64(&ok(
        Op::Slice {
            axes: vec![0],
            starts: vec![c(start)],
            ends: vec![c(end)],
            steps: vec![step],
        },
        &[x],
    ))
}

#[test]
fn slice_steps_and_clamps() {
    let x = i64s(&[10], &(0..10).collect::<Vec<_>>());
    assert_eq!(slice1(x.clone(), 1, 8, 3), [1, 4, 7]);
    assert_eq!(slice1(x.clone(), 9, -1, -4), [9, 5, 1]);
    assert_eq!(slice1(x.clone(), 2, 2, 1), [] as [i64; 0]);
    assert_eq!(slice1(x.clone(), 8, 10, 1), [8, 9]);
    // Out-of-range bounds are clamped.
    let y = eval(
        &Op::Slice {
            axes: vec![0],
            starts: vec![c(7)],
            ends: vec![c(i64::MAX)],
            steps: vec![1],
        },
        &[&x],
        &ty(DType::I64, &[c(3)]),
        &Bindings::default(),
    )
    .unwrap();
    assert_eq!(as_i64(&y), [7, 8, 9]);
    let y = eval(
        &Op::Slice {
            axes: vec![0],
            starts: vec![c(100)],
            ends: vec![c(-100)],
            steps: vec![-3],
        },
        &[&x],
        &ty(DType::I64, &[c(4)]),
        &Bindings::default(),
    )
    .unwrap();
    assert_eq!(as_i64(&y), [9, 6, 3, 0]);
    // Two axes of a 3x4.
    let x = i64s(&[3, 4], &(0..12).collect::<Vec<_>>());
    let y = ok(
        Op::Slice {
            axes: vec![1, 0],
            starts: vec![c(3), c(0)],
            ends: vec![c(0), c(3)],
            steps: vec![-2, 2],
        },
        &[x],
    );
    assert_eq!(y.shape(), &[2, 2]);
    assert_eq!(as_i64(&y), [3, 1, 11, 9]);
}

#[test]
fn slice_with_symbolic_bounds() {
    // y = x[1 .. seq - 1] along axis 1.
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::I64, &[c(1), sym("seq")]));
    let y = g
        .add(
            Op::Slice {
                axes: vec![1],
                starts: vec![c(1)],
                ends: vec![sym("seq").sub(&c(1))],
                steps: vec![1],
            },
            &[x],
        )
        .unwrap();
    g.add_output("y", y);
    let inputs = HashMap::from([("x".to_string(), i64s(&[1, 5], &[0, 1, 2, 3, 4]))]);
    let out = run(&g, &inputs).unwrap();
    assert_eq!(out[0].1.shape(), &[1, 3]);
    assert_eq!(as_i64(&out[0].1), [1, 2, 3]);
}

#[test]
fn tile_and_trilu() {
    let y = ok(
        Op::Tile {
            repeats: vec![c(2), c(2)],
        },
        &[i64s(&[1, 2], &[1, 2])],
    );
    assert_eq!(y.shape(), &[2, 4]);
    assert_eq!(as_i64(&y), [1, 2, 1, 2, 1, 2, 1, 2]);

    let x = i64s(&[3, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let up = ok(Op::Trilu { upper: true, k: 0 }, [x.clone()]);
    assert_eq!(as_i64(&up), [1, 2, 3, 0, 5, 6, 0, 0, 9]);
    let up1 = ok(Op::Trilu { upper: true, k: 1 }, [x.clone()]);
    assert_eq!(as_i64(&up1), [0, 2, 3, 0, 0, 6, 0, 0, 0]);
    let low = ok(
        Op::Trilu {
            upper: false,
            k: -1,
        },
        &[x],
    );
    assert_eq!(as_i64(&low), [0, 0, 0, 4, 0, 0, 7, 8, 0]);
    // Batched: each 2x2 matrix of a [2, 2, 2] separately.
    let y = ok(
        Op::Trilu { upper: false, k: 0 },
        &[t(&[2, 2, 2], vec![true; 8])],
    );
    assert_eq!(
        as_bool(&y),
        [true, false, true, true, true, false, true, true]
    );
}

// ---------------------------------------------------------------- gather

#[test]
fn gather_with_negative_indices() {
    let data = i64s(&[3, 2], &[1, 2, 3, 4, 5, 6]);
    let y = ok(
        Op::Gather { axis: 0 },
        &[data.clone(), i64s(&[1, 2], &[-1, 0])],
    );
    assert_eq!(y.shape(), &[1, 2, 2]);
    assert_eq!(as_i64(&y), [5, 6, 1, 2]);
    let y = ok(Op::Gather { axis: 1 }, &[data.clone(), t(&[], vec![-1i32])]);
    assert_eq!(y.shape(), &[3]);
    assert_eq!(as_i64(&y), [2, 4, 6]);
    for bad in [3, -4] {
        let e = apply(Op::Gather { axis: 0 }, &[data.clone(), i64s(&[1], &[bad])]).unwrap_err();
        assert!(
            matches!(&e, Error::Eval { op, message, .. }
                if op == "gather" && message.contains(&format!("index {bad}"))),
            "{e}"
        );
    }
}

#[test]
fn gather_elements_and_nd() {
    // The examples of the ONNX operator documentation.
    let y = ok(
        Op::GatherElements { axis: 1 },
        &[i64s(&[2, 2], &[1, 2, 3, 4]), i64s(&[2, 2], &[0, 0, 1, 0])],
    );
    assert_eq!(as_i64(&y), [1, 1, 4, 3]);
    let y = ok(
        Op::GatherElements { axis: 0 },
        &[
            i64s(&[3, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9]),
            i64s(&[2, 3], &[1, 2, 0, 2, 0, -3]),
        ],
    );
    assert_eq!(as_i64(&y), [4, 8, 3, 7, 2, 3]);
    let e = apply(
        Op::GatherElements { axis: 0 },
        &[i64s(&[2], &[1, 2]), i64s(&[1], &[2])],
    )
    .unwrap_err();
    assert!(matches!(e, Error::Eval { .. }), "{e}");

    let data = i64s(&[2, 2], &[0, 1, 2, 3]);
    let y = ok(
        Op::GatherNd { batch_dims: 0 },
        &[data.clone(), i64s(&[2, 2], &[0, 0, 1, 1])],
    );
    assert_eq!(as_i64(&y), [0, 3]);
    let y = ok(
        Op::GatherNd { batch_dims: 0 },
        &[data.clone(), i64s(&[2, 1], &[1, -2])],
    );
    assert_eq!(y.shape(), &[2, 2]);
    assert_eq!(as_i64(&y), [2, 3, 0, 1]);
    let y = ok(
        Op::GatherNd { batch_dims: 1 },
        &[
            i64s(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]),
            i64s(&[2, 1], &[1, 0]),
        ],
    );
    assert_eq!(y.shape(), &[2, 2]);
    assert_eq!(as_i64(&y), [2, 3, 4, 5]);
    let e = apply(
        Op::GatherNd { batch_dims: 0 },
        &[data, i64s(&[1, 2], &[0, 2])],
    )
    .unwrap_err();
    assert!(matches!(e, Error::Eval { .. }), "{e}");
}

// ---------------------------------------------------------------- shape ops

#[test]
fn range_shape_and_dims() {
    let range = |start: Dim, limit: Dim, delta| Op::Range {
        dtype: DType::I64,
        start,
        limit,
        delta,
    };
    assert_eq!(as_i64(&ok(range(c(0), c(10), 3), &[])), [0, 3, 6, 9]);
    assert_eq!(as_i64(&ok(range(c(10), c(0), -3), &[])), [10, 7, 4, 1]);
    assert_eq!(as_i64(&ok(range(c(5), c(0), 1), &[])), [] as [i64; 0]);

    // Symbolic: range(0, seq), shape(x), dims [batch * seq, seq + 1].
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, &[sym("batch"), sym("seq")]));
    let r = g.add(range(c(0), sym("seq"), 1), &[]).unwrap();
    let s = g.add(Op::ShapeOf { start: 0, end: 2 }, &[x]).unwrap();
    let d = g
        .add(
            Op::Dims {
                dtype: DType::I32,
                shape: vec![2],
                values: vec![sym("batch").mul(&sym("seq")), sym("seq").add(&c(1))],
            },
            &[],
        )
        .unwrap();
    g.add_output("r", r);
    g.add_output("s", s);
    g.add_output("d", d);
    let inputs = HashMap::from([("x".to_string(), f32s(&[2, 3], &[0.; 6]))]);
    let out = run(&g, &inputs).unwrap();
    assert_eq!(as_i64(&out[0].1), [0, 1, 2]);
    assert_eq!(as_i64(&out[1].1), [2, 3]);
    assert_eq!(out[2].1.as_slice::<i32>().unwrap(), [6, 4]);
}

// ---------------------------------------------------------------- binding

fn two_input_graph() -> Graph {
    // a: f32[batch, seq], b: f32[seq]; y = a + b.
    let mut g = Graph::new();
    let a = g.add_input("a", ty(DType::F32, &[sym("batch"), sym("seq")]));
    let b = g.add_input("b", ty(DType::F32, &[sym("seq")]));
    let y = g.add(Op::Binary(BinaryOp::Add), &[a, b]).unwrap();
    g.add_output("y", y);
    g
}

fn input_error(g: &Graph, inputs: Vec<(&str, Tensor)>) -> (String, String) {
    let inputs = inputs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    match run(g, &inputs) {
        Err(Error::Input { name, message }) => (name, message),
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn binding_checks_inputs() {
    let g = two_input_graph();
    let a = f32s(&[2, 3], &[0.; 6]);
    let b = f32s(&[3], &[1., 2., 3.]);

    let good = HashMap::from([("a".to_string(), a.clone()), ("b".to_string(), b.clone())]);
    let out = run(&g, &good).unwrap();
    assert_eq!(as_f32(&out[0].1), [1., 2., 3., 1., 2., 3.]);

    let (name, _) = input_error(&g, vec![("a", a.clone())]);
    assert_eq!(name, "b");

    let (name, msg) = input_error(&g, vec![("a", a.clone()), ("b", i64s(&[3], &[1, 2, 3]))]);
    assert_eq!(name, "b");
    assert!(msg.contains("dtype"), "{msg}");

    let (name, msg) = input_error(&g, vec![("a", f32s(&[6], &[0.; 6])), ("b", b.clone())]);
    assert_eq!(name, "a");
    assert!(msg.contains("rank"), "{msg}");

    // `seq` is 3 from `a`, so `b` of size 4 disagrees.
    let (name, msg) = input_error(&g, vec![("a", a), ("b", f32s(&[4], &[0.; 4]))]);
    assert_eq!(name, "b");
    assert!(msg.contains("`seq` is already bound to 3"), "{msg}");
}

#[test]
fn binding_checks_constant_and_compound_dims() {
    // x: i64[n, 2], y: i64[n + 1]; out = y.
    let mut g = Graph::new();
    let _x = g.add_input("x", ty(DType::I64, &[sym("n"), c(2)]));
    let y = g.add_input("y", ty(DType::I64, &[sym("n").add(&c(1))]));
    g.add_output("out", y);
    let run_with = |x: Tensor, y: Tensor| {
        run(
            &g,
            &HashMap::from([("x".to_string(), x), ("y".to_string(), y)]),
        )
    };
    let out = run_with(i64s(&[1, 2], &[0, 0]), i64s(&[2], &[7, 8])).unwrap();
    assert_eq!(as_i64(&out[0].1), [7, 8]);
    let e = run_with(i64s(&[1, 3], &[0; 3]), i64s(&[2], &[7, 8])).unwrap_err();
    assert!(
        matches!(&e, Error::Input { name, .. } if name == "x"),
        "{e}"
    );
    let e = run_with(i64s(&[1, 2], &[0, 0]), i64s(&[3], &[7, 8, 9])).unwrap_err();
    assert!(
        matches!(&e, Error::Input { name, .. } if name == "y"),
        "{e}"
    );
}

#[test]
fn run_time_shape_errors_name_the_node_and_origin() {
    // Two independent symbols that do not broadcast at run time.
    let mut g = Graph::new();
    let a = g.add_input("a", ty(DType::F32, &[sym("m")]));
    let b = g.add_input("b", ty(DType::F32, &[sym("n")]));
    let y = g
        .add_with_origin(Op::Binary(BinaryOp::Mul), &[a, b], Some("/layer/Mul"))
        .unwrap();
    g.add_output("y", y);
    let inputs = HashMap::from([
        ("a".to_string(), f32s(&[3], &[0.; 3])),
        ("b".to_string(), f32s(&[2], &[0.; 2])),
    ]);
    match run(&g, &inputs) {
        Err(Error::Eval { node, op, message }) => {
            assert_eq!(node, y.index());
            assert_eq!(op, "mul");
            assert!(message.contains("/layer/Mul"), "{message}");
        }
        other => panic!("expected an eval error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- whole graphs

#[test]
fn small_graph_end_to_end() {
    // h = relu(x @ w + bias); y = sum(h, axis 2); z = argmax(h, axis 2).
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, &[sym("batch"), c(2), c(2)]));
    let w = g.add_const(f32s(&[2, 3], &[1., 0., -1., 0., 1., 1.]), Some("w".into()));
    let bias = g.add_const(f32s(&[3], &[0., 1., -10.]), None);
    let mm = g.add(Op::MatMul, &[x, w]).unwrap();
    let add = g.add(Op::Binary(BinaryOp::Add), &[mm, bias]).unwrap();
    let h = g.add(Op::Unary(UnaryOp::Relu), &[add]).unwrap();
    let y = g
        .add(
            Op::Reduce {
                kind: ReduceKind::Sum,
                axes: vec![2],
                keep_dims: false,
            },
            &[h],
        )
        .unwrap();
    let z = g
        .add(
            Op::ArgReduce {
                max: true,
                axis: 2,
                keep_dims: false,
                select_last: false,
            },
            &[h],
        )
        .unwrap();
    // A dead node that would fail if it were evaluated.
    let idx = g.add_const(i64s(&[1], &[5]), None);
    let _dead = g.add(Op::Gather { axis: 0 }, &[w, idx]).unwrap();
    g.add_output("y", y);
    g.add_output("z", z);
    g.add_output("h", h);
    g.add_output("x", x);

    let xv = f32s(&[1, 2, 2], &[2., 3., -1., -2.]);
    let out = run(&g, &HashMap::from([("x".to_string(), xv.clone())])).unwrap();
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["y", "z", "h", "x"]);
    // Row [2, 3]: x @ w = [2, 3, 1], + bias = [2, 4, -9], relu = [2, 4, 0].
    // Row [-1, -2]: x @ w = [-1, -2, -1], + bias = [-1, -1, -11], relu = 0.
    assert_eq!(as_f32(&out[2].1), [2., 4., 0., 0., 0., 0.]);
    assert_eq!(out[0].1.shape(), &[1, 2]);
    assert_eq!(as_f32(&out[0].1), [6., 0.]);
    assert_eq!(as_i64(&out[1].1), [1, 0]);
    assert_eq!(out[3].1, xv);
}

/// A naive BERT-style attention block in plain loops: the independent
/// reference for `attention_block_matches_naive_reference`.
#[allow(clippy::too_many_arguments)]
fn naive_attention(
    x: &[f32],
    wq: &[f32],
    wk: &[f32],
    wv: &[f32],
    mask: &[f32],
    s: usize,
    d: usize,
    heads: usize,
) -> Vec<f32> {
    let hd = d / heads;
    let proj = |w: &[f32]| naive(x, w, s, d, d);
    let (q, k, v) = (proj(wq), proj(wk), proj(wv));
    let mut out = vec![0f32; s * d];
    for h in 0..heads {
        for i in 0..s {
            let mut scores: Vec<f64> = (0..s)
                .map(|j| {
                    let dot: f64 = (0..hd)
                        .map(|e| q[i * d + h * hd + e] as f64 * k[j * d + h * hd + e] as f64)
                        .sum();
                    dot / (hd as f64).sqrt() + mask[j] as f64
                })
                .collect();
            let max = scores.iter().copied().fold(f64::MIN, f64::max);
            let sum: f64 = scores.iter().map(|x| (x - max).exp()).sum();
            for sc in &mut scores {
                *sc = (*sc - max).exp() / sum;
            }
            for e in 0..hd {
                out[i * d + h * hd + e] = (0..s)
                    .map(|j| scores[j] * v[j * d + h * hd + e] as f64)
                    .sum::<f64>() as f32;
            }
        }
    }
    // Residual and layer norm without scale or bias.
    for i in 0..s {
        let row: Vec<f64> = (0..d)
            .map(|e| (out[i * d + e] + x[i * d + e]) as f64)
            .collect();
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / d as f64;
        for e in 0..d {
            out[i * d + e] = ((row[e] - mean) / (var + 1e-5).sqrt()) as f32;
        }
    }
    out
}

#[test]
fn attention_block_matches_naive_reference() {
    let (s, d, heads) = (9, 16, 2);
    let hd = d / heads;
    let mut g = Graph::new();
    let x = g.add_input("x", ty(DType::F32, &[c(1), sym("seq"), c(d as i64)]));
    let mask = g.add_input("mask", ty(DType::F32, &[c(1), sym("seq")]));
    let (wq, wk, wv) = (noise(d * d, 11), noise(d * d, 12), noise(d * d, 13));
    let heads_shape = Shape(vec![c(1), sym("seq"), c(heads as i64), c(hd as i64)]);
    let split = |g: &mut Graph, w: &[f32], perm: Vec<usize>| {
        let wc = g.add_const(f32s(&[d, d], w), None);
        let p = g.add(Op::MatMul, &[x, wc]).unwrap();
        let r = g
            .add(
                Op::Reshape {
                    shape: heads_shape.clone(),
                },
                &[p],
            )
            .unwrap();
        g.add(Op::Transpose { perm }, &[r]).unwrap()
    };
    let q = split(&mut g, &wq, vec![0, 2, 1, 3]);
    let k = split(&mut g, &wk, vec![0, 2, 3, 1]);
    let v = split(&mut g, &wv, vec![0, 2, 1, 3]);
    let scores = g.add(Op::MatMul, &[q, k]).unwrap();
    let scale = g.add_const(f32s(&[], &[(hd as f32).sqrt()]), None);
    let scores = g.add(Op::Binary(BinaryOp::Div), &[scores, scale]).unwrap();
    let m = g
        .add(
            Op::Reshape {
                shape: Shape(vec![c(1), c(1), c(1), sym("seq")]),
            },
            &[mask],
        )
        .unwrap();
    let scores = g.add(Op::Binary(BinaryOp::Add), &[scores, m]).unwrap();
    let probs = g.add(Op::Softmax { axis: 3 }, &[scores]).unwrap();
    let ctx = g.add(Op::MatMul, &[probs, v]).unwrap();
    let ctx = g
        .add(
            Op::Transpose {
                perm: vec![0, 2, 1, 3],
            },
            &[ctx],
        )
        .unwrap();
    let ctx = g
        .add(
            Op::Reshape {
                shape: Shape(vec![c(1), sym("seq"), c(d as i64)]),
            },
            &[ctx],
        )
        .unwrap();
    let res = g.add(Op::Binary(BinaryOp::Add), &[ctx, x]).unwrap();
    let one = g.add_const(f32s(&[d], &vec![1.; d]), None);
    let zero = g.add_const(f32s(&[d], &vec![0.; d]), None);
    let y = g
        .add(
            Op::LayerNorm {
                axis: 2,
                epsilon: 1e-5,
            },
            &[res, one, zero],
        )
        .unwrap();
    g.add_output("y", y);

    let xv = noise(s * d, 14);
    let mut maskv = vec![0f32; s];
    maskv[s - 2..].fill(-10000.);
    let inputs = HashMap::from([
        ("x".to_string(), f32s(&[1, s, d], &xv)),
        ("mask".to_string(), f32s(&[1, s], &maskv)),
    ]);
    let out = run(&g, &inputs).unwrap();
    assert_eq!(out[0].1.shape(), &[1, s, d]);
    let want = naive_attention(&xv, &wq, &wk, &wv, &maskv, s, d, heads);
    close(&as_f32(&out[0].1), &want, 2e-5);
}

#[test]
fn eval_checks_operands_and_dtype() {
    let env = Bindings::default();
    let x = f32s(&[2], &[1., 2.]);
    // Wrong operand count.
    let e = eval(&Op::MatMul, &[&x], &ty(DType::F32, &[c(2)]), &env).unwrap_err();
    assert!(
        matches!(&e, Error::Invalid { op, .. } if op == "matmul"),
        "{e}"
    );
    // A result dtype that disagrees with the node's type.
    let e = eval(
        &Op::Unary(UnaryOp::Neg),
        &[&x],
        &ty(DType::F64, &[c(2)]),
        &env,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
    // An input cannot be evaluated on its own.
    let e = eval(
        &Op::Input { name: "x".into() },
        &[],
        &ty(DType::F32, &[c(2)]),
        &env,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
}

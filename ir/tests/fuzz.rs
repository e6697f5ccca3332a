//! Regression tests for what the fuzz targets (`fuzz/`, `scripts/fuzz.sh`) found in
//! `tcc-ir`: each is the smallest input that made the `infer` or `ir_text` target
//! panic, reduced to the API calls it made. Each must now give a value or an
//! error, never a panic (overflow checks included: run them in debug too).

use std::sync::Arc;
use tcc_ir::infer::slice_len;
use tcc_ir::{Constant, DType, Dim, Graph, Op, Shape, Tensor, TensorType, UnaryOp};

fn c(v: i64) -> Dim {
    Dim::constant(v)
}

fn ty(dtype: DType, dims: Vec<Dim>) -> TensorType {
    TensorType::new(dtype, Shape(dims))
}

/// `infer` found `i64::MIN / -1` in a dim (fuzz input `Lix+U/8QAAB+`): the one
/// quotient that overflows panicked in `floor_div`, `ceil_div` (through its
/// exact-division test), `rem` and in evaluating a `floordiv` or `mod` atom, in
/// release builds too. Dims wrap instead, as their other arithmetic does.
#[test]
fn dim_division_of_i64_min_by_minus_one_wraps() {
    let min = c(i64::MIN);
    assert_eq!(min.floor_div(&c(-1)), c(i64::MIN));
    assert_eq!(min.rem(&c(-1)), c(0));
    assert_eq!(min.ceil_div(&c(-1)), c(i64::MIN));
    let a = Dim::sym("a");
    assert_eq!(a.mul(&min).ceil_div(&c(-1)), a.mul(&min));
    assert_eq!(a.mul(&min).floor_div(&c(-1)), a.mul(&min));

    let q = Dim::sym("x").floor_div(&Dim::sym("y"));
    let r = Dim::sym("x").rem(&Dim::sym("y"));
    let env = |s: &str| match s {
        "x" => Some(i64::MIN),
        "y" => Some(-1),
        _ => None,
    };
    assert_eq!(q.eval(&env), Ok(i64::MIN));
    assert_eq!(r.eval(&env), Ok(0));
    // Floor division and its remainder are still floor division's.
    assert_eq!(c(7).floor_div(&c(-2)), c(-4));
    assert_eq!(c(-7).floor_div(&c(2)), c(-4));
    assert_eq!(c(7).rem(&c(-2)), c(-1));
    assert_eq!(c(-7).rem(&c(2)), c(1));
}

/// `infer` found a slice or range step of `i64::MIN`, whose absolute value
/// overflowed: the length is still `ceil(span / |step|)`.
#[test]
fn a_step_of_i64_min_has_a_length() {
    assert_eq!(slice_len(&c(0), &c(-5), i64::MIN), Some(c(1)));
    assert_eq!(slice_len(&c(0), &c(5), i64::MIN), Some(c(0)));
    let mut g = Graph::new();
    let r = g
        .add(
            Op::Range {
                dtype: DType::I64,
                start: c(3),
                limit: c(-4),
                delta: i64::MIN,
            },
            &[],
        )
        .unwrap();
    assert_eq!(g.ty(r), &ty(DType::I64, vec![c(1)]));
}

/// `infer` found the known value of `abs(i64::MIN)`, which overflowed; it wraps,
/// as the interpreter's `abs` does.
#[test]
fn abs_of_i64_min_is_known_without_overflow() {
    let mut g = Graph::new();
    let x = g
        .add(
            Op::Const(Constant {
                name: None,
                value: Arc::new(Tensor::from_vec(vec![2], vec![i64::MIN, -3]).unwrap()),
            }),
            &[],
        )
        .unwrap();
    let y = g.add(Op::Unary(UnaryOp::Abs), &[x]).unwrap();
    let known = g.node(y).known.as_ref().expect("abs of constants is known");
    assert_eq!(known.ints(), Some(vec![i64::MIN, 3]));
}

/// `infer` found a `gather_nd` whose indices' last dim is negative: read as a
/// `usize`, it overflowed `batch_dims + last`. It is refused.
#[test]
fn gather_nd_with_a_negative_index_length_is_refused() {
    let mut g = Graph::new();
    let data = g.add_input("data", ty(DType::F32, vec![c(2), c(3)]));
    let idx = g.add_input("idx", ty(DType::I64, vec![c(2), c(-1)]));
    let e = g
        .add(Op::GatherNd { batch_dims: 1 }, &[data, idx])
        .unwrap_err();
    assert!(e.to_string().contains("non-negative"), "{e}");
}

/// `infer` found a known value of shape `[0, 2^40, 2^40]` (a `dims` node; a
/// constant may have that shape too): it holds no element, but broadcasting it
/// in a binary op computed the strides of its other dims, which overflowed.
/// Such a shape now carries no known value (below), and broadcasting an empty
/// shape reads nothing whatever its other dims.
#[test]
fn an_empty_known_value_with_huge_dims_broadcasts() {
    let huge = [0, 1 << 40, 1 << 40];
    assert!(tcc_ir::infer::bcast_index(&huge, &huge).is_empty());
    let mut g = Graph::new();
    let d = g
        .add(
            Op::Dims {
                dtype: DType::I64,
                shape: vec![0, 1 << 40, 1 << 40],
                values: vec![],
            },
            &[],
        )
        .unwrap();
    let s = g.add(Op::Binary(tcc_ir::BinaryOp::Add), &[d, d]).unwrap();
    assert!(g.node(s).known.is_none());
    assert_eq!(g.ty(s), &ty(DType::I64, vec![c(0), c(1 << 40), c(1 << 40)]));
}

/// `infer` found a `gather` of the known value of a `dims` node of shape
/// `[0, 2^40, 2^40]`: its offsets overflowed. Known values are now kept only for
/// shapes whose dims, a zero counted as 1, multiply to at most `KNOWN_LIMIT`,
/// and only if they hold one value per element.
#[test]
fn known_values_are_dropped_for_huge_empty_shapes() {
    let mut g = Graph::new();
    let d = g
        .add(
            Op::Dims {
                dtype: DType::I64,
                shape: vec![0, 1 << 40, 1 << 40],
                values: vec![],
            },
            &[],
        )
        .unwrap();
    assert!(g.node(d).known.is_none());
    let i = g.add_const(Tensor::from_vec(vec![1], vec![0i64]).unwrap(), None);
    let gathered = g.add(Op::Gather { axis: 1 }, &[d, i]).unwrap();
    assert_eq!(
        g.ty(gathered),
        &ty(DType::I64, vec![c(0), c(1), c(1 << 40)])
    );
    // An empty constant of that shape carries no values either.
    let e = g.add_const(
        Tensor::from_vec(vec![0, 1 << 40, 1 << 40], Vec::<i64>::new()).unwrap(),
        None,
    );
    assert!(g.node(e).known.is_none());
    // A where of three small known values broadcast to 64 x 64 x 64 is not known.
    let col = |shape: Vec<usize>| Tensor::from_vec(shape, vec![1i64; 64]).unwrap();
    let cond = g.add_const(
        Tensor::from_vec(vec![64, 1, 1], vec![true; 64]).unwrap(),
        None,
    );
    let a = g.add_const(col(vec![1, 64, 1]), None);
    let b = g.add_const(col(vec![1, 1, 64]), None);
    let w = g.add(Op::Where, &[cond, a, b]).unwrap();
    assert!(g.node(w).known.is_none());
}

/// `ir_text`-style input: an inline constant whose type overflows `usize` is a
/// parse error, not an overflow.
#[test]
fn an_inline_constant_of_an_overflowing_type_is_refused() {
    let text = "graph() {\n  %0 = const [] : f32[4294967296, 4294967296, 2]\n  return %y = %0\n}\n";
    let e = tcc_ir::text::parse(text, &|_| None).unwrap_err();
    assert!(
        e.to_string().contains("more elements than memory can"),
        "{e}"
    );
}

/// `infer` found a convolution whose weights' channel count times the group overflows an
/// `i64` (`fuzz/artifacts/infer/crash-aa98bbf2...`): the check of the input's channel count
/// multiplied unchecked. Now an error, as is a group beyond `i64`.
#[test]
fn conv_channels_times_group_overflowing_is_refused() {
    let conv = |group: usize| Op::Conv {
        strides: vec![1],
        pads_begin: vec![c(0)],
        pads_end: vec![c(0)],
        dilations: vec![1],
        group,
    };
    let x = ty(DType::F32, vec![c(1), c(6), c(8)]);
    let w = ty(DType::F32, vec![c(4), c(i64::MAX / 2), c(3)]);
    let e = tcc_ir::infer::infer(&conv(4), &[&x, &w], &[None, None]).unwrap_err();
    assert!(e.to_string().contains("more than i64 holds"), "{e}");
    let w = ty(DType::F32, vec![c(4), c(3), c(3)]);
    let e = tcc_ir::infer::infer(&conv(usize::MAX), &[&x, &w], &[None, None]).unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
    // And one that fits still types.
    assert!(tcc_ir::infer::infer(&conv(2), &[&x, &w], &[None, None]).is_ok());
}

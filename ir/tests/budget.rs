//! The interpreter's budget: a node whose result would exceed `MAX_RESULT_BYTES`, or whose
//! size overflows, is an error naming the node and op, before anything is allocated. Each case
//! here would otherwise ask for gigabytes to exabytes (an abort, "capacity overflow", or an
//! out-of-memory kill of the test runner), so a passing run also shows nothing was allocated.

use std::collections::HashMap;
use tcc_ir::interp::{eval, run, Bindings, MAX_RESULT_BYTES};
use tcc_ir::{DType, Dim, Error, Graph, Op, PadMode, Shape, Tensor, TensorType};

/// Runs a graph of constants through `op` and returns the error, which must name the op and
/// the node, and say why.
fn refused(g: &Graph, op: &str, says: &str) -> String {
    match run(g, &HashMap::new()) {
        Ok(_) => panic!("`{op}` ran although its result is over the budget"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                matches!(&e, Error::Eval { op: o, .. } if o == op),
                "the error does not name op `{op}`: {e:?}"
            );
            assert!(msg.contains(says), "`{msg}` does not say `{says}`");
            msg
        }
    }
}

fn c(v: i64) -> Dim {
    Dim::from(v)
}

fn range(limit: i64, dtype: DType) -> Op {
    Op::Range {
        dtype,
        start: c(0),
        limit: c(limit),
        delta: 1,
    }
}

#[test]
fn a_range_over_the_budget_names_its_node_and_op() {
    // Range(0, 2^31, 1) of i64: 16 GiB.
    let mut g = Graph::new();
    let r = g.add(range(1 << 31, DType::I64), &[]).unwrap();
    g.add_output("r", r);
    let msg = refused(&g, "range", &MAX_RESULT_BYTES.to_string());
    assert!(msg.contains(&format!("node {}", r.index())), "{msg}");
    // The whole i64 span: the byte count overflows usize.
    let mut g = Graph::new();
    let r = g
        .add(
            Op::Range {
                dtype: DType::I64,
                start: c(i64::MIN),
                limit: c(i64::MAX),
                delta: 1,
            },
            &[],
        )
        .unwrap();
    g.add_output("r", r);
    refused(&g, "range", "limit");
}

#[test]
fn a_range_checks_its_own_length_when_its_type_cannot_be_evaluated() {
    // The type mentions a symbol that nothing binds, so only the op's own check stands
    // between the attributes and the allocation.
    let ty = TensorType::new(DType::I64, vec![Dim::sym("n")]);
    let err = eval(&range(1 << 40, DType::I64), &[], &ty, &Bindings::default())
        .expect_err("2^40 elements are over the budget");
    assert!(err.to_string().contains("range"), "{err}");
    assert!(err.to_string().contains("limit"), "{err}");
    // Within the budget, the same call works.
    let t = eval(&range(5, DType::I64), &[], &ty, &Bindings::default()).unwrap();
    assert_eq!(t.as_slice::<i64>(), Some(&[0i64, 1, 2, 3, 4][..]));
}

#[test]
fn an_expand_whose_size_is_huge_or_overflows_is_refused() {
    for dims in [
        vec![65536usize, 65536, 65536],
        vec![1 << 32, 1 << 32, 1 << 32],
    ] {
        let mut g = Graph::new();
        let x = g.add_const(Tensor::scalar(1.0f32), None);
        let shape = Shape::fixed(&dims);
        let y = g
            .add(
                Op::Expand {
                    shape: shape.clone(),
                },
                &[x],
            )
            .unwrap();
        g.add_output("y", y);
        refused(&g, "expand", "limit");
        // And when the type cannot be evaluated: the op checks the shape it computes.
        let ty = TensorType::new(
            DType::F32,
            vec![Dim::sym("a"), Dim::sym("b"), Dim::sym("c")],
        );
        let x = Tensor::scalar(1.0f32);
        let err = eval(&Op::Expand { shape }, &[&x], &ty, &Bindings::default())
            .expect_err("over the budget");
        assert!(err.to_string().contains("limit"), "{err}");
    }
}

#[test]
fn an_expand_of_known_values_to_an_overflowing_shape_carries_no_values() {
    // Shape inference keeps known values for small integer tensors; a shape whose element
    // count overflows must not pass for a small one.
    let mut g = Graph::new();
    let x = g.add_const(Tensor::from_vec(vec![1], vec![7i64]).unwrap(), None);
    let big = 1usize << 32;
    let y = g
        .add(
            Op::Expand {
                shape: Shape::fixed(&[big, big, 1]),
            },
            &[x],
        )
        .unwrap();
    assert!(g.known(y).is_none(), "{:?}", g.known(y));
    // Nor can a tensor claim such a shape.
    assert!(Tensor::new(vec![big, big, 1], tcc_ir::TensorData::I64(Vec::new())).is_err());
}

#[test]
fn a_tile_pad_or_conv_over_the_budget_is_refused() {
    let x = Tensor::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let unbound = TensorType::new(DType::F32, vec![Dim::sym("a"), Dim::sym("b")]);
    let env = Bindings::default();
    // Tile: 2^62 repeats overflow; 2^20 x 2^20 repeats are 16 TiB.
    for repeats in [vec![c(1 << 62), c(4)], vec![c(1 << 20), c(1 << 20)]] {
        let err = eval(&Op::Tile { repeats }, &[&x], &unbound, &env).expect_err("tile");
        assert!(err.to_string().starts_with("tile"), "{err}");
    }
    // Pad: pads whose sum overflows, and pads of 2^40.
    for (begin, end) in [
        (i64::MAX, i64::MAX),
        (1 << 40, 0),
        (i64::MIN, 0),
        (-i64::MAX, -i64::MAX),
    ] {
        let op = Op::Pad {
            mode: PadMode::Constant,
            pads_begin: vec![c(begin), c(0)],
            pads_end: vec![c(end), c(0)],
        };
        let zero = Tensor::scalar(0.0f32);
        let err = eval(&op, &[&x, &zero], &unbound, &env).expect_err("pad");
        assert!(err.to_string().starts_with("pad"), "{err}");
    }
    // Conv: pads of 2^40 on a 1-D input.
    let x = Tensor::from_vec(vec![1, 1, 4], vec![1.0f32; 4]).unwrap();
    let w = Tensor::from_vec(vec![1, 1, 1], vec![1.0f32]).unwrap();
    let unbound = TensorType::new(
        DType::F32,
        vec![Dim::sym("a"), Dim::sym("b"), Dim::sym("c")],
    );
    for pad in [1i64 << 40, i64::MAX] {
        let op = Op::Conv {
            strides: vec![1],
            pads_begin: vec![c(pad)],
            pads_end: vec![c(pad)],
            dilations: vec![1],
            group: 1,
        };
        let err = eval(&op, &[&x, &w], &unbound, &env).expect_err("conv");
        assert!(err.to_string().starts_with("conv"), "{err}");
    }
}

#[test]
fn results_within_the_budget_still_run() {
    // A 1 MiB range and a 64 MiB expand (the trial reservation's threshold) are fine.
    let mut g = Graph::new();
    let r = g.add(range(1 << 18, DType::I32), &[]).unwrap();
    let one = g.add_const(Tensor::scalar(1.0f32), None);
    let e = g
        .add(
            Op::Expand {
                shape: Shape::fixed(&[1 << 12, 1 << 12]),
            },
            &[one],
        )
        .unwrap();
    g.add_output("r", r);
    g.add_output("e", e);
    let out = run(&g, &HashMap::new()).expect("within the budget");
    assert_eq!(out[0].1.len(), 1 << 18);
    assert_eq!(out[1].1.len(), 1 << 24);
}

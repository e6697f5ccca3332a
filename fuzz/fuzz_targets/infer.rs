//! Fuzz target: shape and value inference, `tcc_ir::infer` through
//! `Graph::add`.
//!
//! The bytes drive a small graph builder (`arbitrary::Unstructured`): up to
//! three inputs of any dtype and of shapes made of constants (small, huge,
//! negative) and symbolic dims (`a`, `b`, `n` and polynomials, `floordiv`,
//! `mod`, `min` and `max` of them); then up to twelve nodes of every op the IR
//! has, with attributes of the same kinds (axes and permutations in and out
//! of range, zero and negative steps, empty lists), on operands picked among
//! the nodes so far. Constants and `dims` nodes carry known values into the
//! shape arithmetic of later nodes. `Graph::add` infers each node's type and
//! known value and refuses what does not fit; the graph is then verified and
//! printed. Errors are expected; a panic, an abort or an allocation over the
//! limit is a finding.

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use tcc_ir::op::Arity;
use tcc_ir::{
    Activation, AttentionMask, BinaryOp, Body, Constant, DType, Dim, Graph, NodeId, Op, PadMode,
    ReduceKind, ScoreScale, Shape, Tensor, TensorData, TensorType, UnaryOp,
};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut g = Graph::new();
    let _ = build(&mut u, &mut g);
    let _ = tcc_ir::verify::verify(&g);
    let _ = tcc_ir::text::print(&g);
});

/// Adds inputs and nodes to `g` until the bytes run out.
fn build(u: &mut Unstructured, g: &mut Graph) -> Result<()> {
    let mut nodes: Vec<NodeId> = Vec::new();
    for i in 0..u.int_in_range(0..=3)? {
        let ty = TensorType::new(dtype(u)?, shape(u)?);
        nodes.push(g.add_input(&format!("x{i}"), ty));
    }
    for _ in 0..u.int_in_range(1..=12)? {
        let op = op(u)?;
        let count = match op.arity() {
            Arity::Exact(n) => n,
            Arity::AtLeast(n) => n + u.int_in_range(0..=3)?,
        };
        if count > 8 || (count > 0 && nodes.is_empty()) {
            continue;
        }
        let mut operands = Vec::with_capacity(count);
        for _ in 0..count {
            operands.push(*u.choose(&nodes)?);
        }
        if let Ok(id) = g.add(op, &operands) {
            nodes.push(id);
        }
    }
    Ok(())
}

fn dtype(u: &mut Unstructured) -> Result<DType> {
    Ok(*u.choose(&DType::ALL)?)
}

/// An integer, mostly small, sometimes at the edges of `i64`.
fn int(u: &mut Unstructured) -> Result<i64> {
    const EDGES: [i64; 10] = [
        -1,
        -2,
        1 << 31,
        1 << 40,
        1 << 62,
        i64::MAX,
        i64::MIN,
        i64::MAX - 1,
        i64::MIN + 1,
        -(1 << 40),
    ];
    Ok(match u.int_in_range(0..=9)? {
        0 => *u.choose(&EDGES)?,
        1 => u.arbitrary()?,
        _ => u.int_in_range(0..=9)?,
    })
}

/// A `usize`, mostly small, sometimes huge.
fn small(u: &mut Unstructured) -> Result<usize> {
    Ok(match u.int_in_range(0..=15)? {
        0 => u.arbitrary()?,
        1 => usize::MAX,
        _ => u.int_in_range(0..=5)?,
    })
}

fn usizes(u: &mut Unstructured) -> Result<Vec<usize>> {
    let n = u.int_in_range(0..=5)?;
    (0..n).map(|_| small(u)).collect()
}

/// A symbolic or constant dim, nested at most `depth` deep.
fn dim_at(u: &mut Unstructured, depth: u32) -> Result<Dim> {
    let pick = if depth == 0 {
        u.int_in_range(0..=1)?
    } else {
        u.int_in_range(0..=9)?
    };
    Ok(match pick {
        0 => Dim::constant(int(u)?),
        1 => Dim::sym(u.choose(&["a", "b", "n"])?),
        _ => {
            let (x, y) = (dim_at(u, depth - 1)?, dim_at(u, depth - 1)?);
            match pick {
                2 => x.add(&y),
                3 => x.sub(&y),
                4 => x.mul(&y),
                5 => x.floor_div(&y),
                6 => x.ceil_div(&y),
                7 => x.rem(&y),
                8 => x.min_dim(&y),
                _ => x.max_dim(&y),
            }
        }
    })
}

fn dim(u: &mut Unstructured) -> Result<Dim> {
    if u.ratio(3, 4)? {
        Ok(Dim::constant(u.int_in_range(0..=6)?))
    } else {
        dim_at(u, 2)
    }
}

fn dims(u: &mut Unstructured) -> Result<Vec<Dim>> {
    let n = u.int_in_range(0..=4)?;
    (0..n).map(|_| dim(u)).collect()
}

fn shape(u: &mut Unstructured) -> Result<Shape> {
    Ok(Shape(dims(u)?))
}

/// A small constant of any dtype, with arbitrary elements.
fn tensor(u: &mut Unstructured) -> Result<Tensor> {
    let dtype = dtype(u)?;
    let rank = u.int_in_range(0..=2)?;
    let shape: Vec<usize> = (0..rank)
        .map(|_| u.int_in_range(0..=4))
        .collect::<Result<_>>()?;
    let n: usize = shape.iter().product();
    let data = if dtype.is_float() {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(if u.ratio(1, 4)? {
                u.arbitrary::<f64>()?
            } else {
                int(u)? as f64
            });
        }
        TensorData::from_f64(dtype, v)
    } else {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(int(u)?);
        }
        TensorData::from_i64(dtype, v)
    };
    Ok(Tensor::new(shape, data).expect("the element count matches the shape"))
}

fn perm(u: &mut Unstructured) -> Result<Option<Vec<usize>>> {
    Ok(if u.arbitrary()? {
        Some(usizes(u)?)
    } else {
        None
    })
}

fn f32_attr(u: &mut Unstructured) -> Result<f32> {
    Ok(if u.ratio(1, 4)? { u.arbitrary()? } else { 1e-5 })
}

/// A fused body nested at most `depth` deep.
fn body(u: &mut Unstructured, depth: u32) -> Result<Body> {
    let pick = if depth == 0 {
        u.int_in_range(0..=1)?
    } else {
        u.int_in_range(0..=5)?
    };
    Ok(match pick {
        0 => Body::Leaf(u.int_in_range(0..=3)?),
        1 => {
            let t = tensor(u)?;
            let t = if t.len() == 1 {
                t.reshape(vec![]).expect("one element")
            } else {
                Tensor::scalar(1.0f32)
            };
            Body::Scalar(t)
        }
        2 => Body::Unary(*u.choose(&UnaryOp::ALL)?, Box::new(body(u, depth - 1)?)),
        3 => Body::Binary(
            *u.choose(&BinaryOp::ALL)?,
            Box::new(body(u, depth - 1)?),
            Box::new(body(u, depth - 1)?),
        ),
        4 => Body::Where(Box::new([
            body(u, depth - 1)?,
            body(u, depth - 1)?,
            body(u, depth - 1)?,
        ])),
        _ => Body::Cast(dtype(u)?, Box::new(body(u, depth - 1)?)),
    })
}

/// Any op of the IR but `input`, with fuzzed attributes.
fn op(u: &mut Unstructured) -> Result<Op> {
    Ok(match u.int_in_range(0..=40)? {
        0 => Op::Const(Constant {
            name: None,
            value: Arc::new(tensor(u)?),
        }),
        1 => {
            let values = dims(u)?;
            let shape = if u.arbitrary()? {
                vec![values.len()]
            } else {
                usizes(u)?
            };
            Op::Dims {
                dtype: if u.ratio(3, 4)? {
                    DType::I64
                } else {
                    dtype(u)?
                },
                shape,
                values,
            }
        }
        2 | 3 => Op::Unary(*u.choose(&UnaryOp::ALL)?),
        4 | 5 => Op::Binary(*u.choose(&BinaryOp::ALL)?),
        6 => Op::Where,
        7 => Op::Cast { to: dtype(u)? },
        8 => Op::MatMul,
        9 => Op::MatMulInteger {
            saturate_pairs: u.arbitrary()?,
        },
        10 => Op::Conv {
            strides: usizes(u)?,
            pads_begin: dims(u)?,
            pads_end: dims(u)?,
            dilations: usizes(u)?,
            group: small(u)?,
        },
        11 => Op::Pad {
            mode: *u.choose(&PadMode::ALL)?,
            pads_begin: dims(u)?,
            pads_end: dims(u)?,
        },
        12 => Op::Softmax { axis: small(u)? },
        13 => Op::LogSoftmax { axis: small(u)? },
        14 => Op::LayerNorm {
            axis: small(u)?,
            epsilon: f32_attr(u)?,
        },
        15 => Op::Reduce {
            kind: *u.choose(&ReduceKind::ALL)?,
            axes: usizes(u)?,
            keep_dims: u.arbitrary()?,
        },
        16 => Op::ArgReduce {
            max: u.arbitrary()?,
            axis: small(u)?,
            keep_dims: u.arbitrary()?,
            select_last: u.arbitrary()?,
        },
        17 => Op::CumSum {
            axis: small(u)?,
            exclusive: u.arbitrary()?,
            reverse: u.arbitrary()?,
        },
        18 | 19 => Op::Reshape { shape: shape(u)? },
        20 => Op::Transpose { perm: usizes(u)? },
        21 => Op::Expand { shape: shape(u)? },
        22 => Op::Concat { axis: small(u)? },
        23 => {
            let n = u.int_in_range(0..=4)?;
            let mut steps = Vec::with_capacity(n);
            for _ in 0..n {
                steps.push(if u.ratio(3, 4)? {
                    u.int_in_range(-2..=2)?
                } else {
                    int(u)?
                });
            }
            Op::Slice {
                axes: usizes(u)?,
                starts: dims(u)?,
                ends: dims(u)?,
                steps,
            }
        }
        24 => Op::Gather { axis: small(u)? },
        25 => Op::GatherElements { axis: small(u)? },
        26 => Op::GatherNd {
            batch_dims: small(u)?,
        },
        27 => Op::Tile { repeats: dims(u)? },
        28 => Op::Range {
            dtype: dtype(u)?,
            start: dim(u)?,
            limit: dim(u)?,
            delta: int(u)?,
        },
        29 => Op::ShapeOf {
            start: small(u)?,
            end: small(u)?,
        },
        30 => Op::Trilu {
            upper: u.arbitrary()?,
            k: int(u)?,
        },
        31 | 32 => Op::Gemm {
            activation: *u.choose(&Activation::ALL)?,
            bias: u.arbitrary()?,
            perm_a: perm(u)?,
            perm_b: perm(u)?,
            perm_out: perm(u)?,
        },
        33 | 34 => Op::Attention {
            scale: match u.int_in_range(0..=2)? {
                0 => ScoreScale::None,
                1 => ScoreScale::Mul(f32_attr(u)?),
                _ => ScoreScale::Div(f32_attr(u)?),
            },
            mask: *u.choose(&AttentionMask::ALL)?,
            nan_filter: u.arbitrary()?,
            zero_where: u.arbitrary()?,
            causal: u.arbitrary()?,
            causal_min: false,
            perm_q: perm(u)?,
            perm_k: perm(u)?,
            perm_v: perm(u)?,
            perm_out: perm(u)?,
        },
        35 => Op::AddLayerNorm {
            axis: small(u)?,
            epsilon: f32_attr(u)?,
        },
        36 => Op::RmsNorm {
            axis: small(u)?,
            epsilon: f32_attr(u)?,
        },
        // Token symbols: fresh, one the inputs use, and names that are not symbols.
        37 => Op::Pack {
            tokens: (*u.choose(&["t", "tokens", "a", "n", "2t", "", "t 1"])?).into(),
        },
        38 => Op::Unpack,
        39 => Op::PackedAttention {
            scale: match u.int_in_range(0..=2)? {
                0 => ScoreScale::None,
                1 => ScoreScale::Mul(f32_attr(u)?),
                _ => ScoreScale::Div(f32_attr(u)?),
            },
        },
        _ => Op::Fused {
            body: Arc::new(body(u, 3)?),
        },
    })
}

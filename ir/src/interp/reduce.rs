//! Reductions over axes, `ArgReduce` and `CumSum`.
//!
//! Floats accumulate in f64 and round once; integers accumulate in i64 with
//! wrapping and wrap to the element type. `Max` and `Min` of floats propagate
//! NaN, as the elementwise ops do. An empty reduction gives the identity: 0 for
//! `Sum`, 1 for `Prod`, minus infinity (or the type's least value) for `Max`,
//! plus infinity (or the greatest) for `Min`, and NaN for a float `Mean`; the
//! integer `Mean` of nothing is an error.

use super::{broadcast_rows, split_axis, tensor, OpResult};
use crate::dtype::DType;
use crate::op::ReduceKind;
use crate::tensor::{Element, Tensor, TensorData};
use crate::with_data;

/// The least and greatest value of an integer dtype.
fn int_bounds(d: DType) -> (i64, i64) {
    match d {
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        DType::U8 => (0, u8::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Folds every element of `v` (shape `shape`) into the slot of the reduced
/// tensor (shape `kept`, with reduced axes of size 1) that it belongs to.
fn fold<T: Copy, A: Copy>(
    v: &[T],
    shape: &[usize],
    kept: &[usize],
    init: A,
    f: impl Fn(A, T) -> A,
) -> Vec<A> {
    let mut acc = vec![init; kept.iter().product()];
    let mut i = 0;
    broadcast_rows(shape, [kept], |[o], [s], n| {
        for j in 0..n {
            let slot = &mut acc[o + j * s];
            *slot = f(*slot, v[i]);
            i += 1;
        }
    });
    acc
}

fn float_reduce<T: Element>(
    v: &[T],
    shape: &[usize],
    kept: &[usize],
    kind: ReduceKind,
    count: usize,
) -> Vec<T> {
    let acc = match kind {
        ReduceKind::Sum | ReduceKind::Mean => fold(v, shape, kept, 0.0, |a, x| a + x.to_f64()),
        ReduceKind::Prod => fold(v, shape, kept, 1.0, |a, x| a * x.to_f64()),
        ReduceKind::Max => fold(v, shape, kept, f64::NEG_INFINITY, |a: f64, x| {
            let x = x.to_f64();
            if a.is_nan() || x.is_nan() {
                f64::NAN
            } else {
                a.max(x)
            }
        }),
        ReduceKind::Min => fold(v, shape, kept, f64::INFINITY, |a: f64, x| {
            let x = x.to_f64();
            if a.is_nan() || x.is_nan() {
                f64::NAN
            } else {
                a.min(x)
            }
        }),
    };
    let scale = if kind == ReduceKind::Mean {
        count as f64
    } else {
        1.0
    };
    acc.into_iter().map(|a| T::from_f64(a / scale)).collect()
}

fn int_reduce<T: Element>(
    v: &[T],
    shape: &[usize],
    kept: &[usize],
    kind: ReduceKind,
    count: usize,
) -> OpResult<Vec<T>> {
    let (lo, hi) = int_bounds(T::DTYPE);
    let acc = match kind {
        ReduceKind::Sum | ReduceKind::Mean => {
            fold(v, shape, kept, 0i64, |a, x| a.wrapping_add(x.to_i64()))
        }
        ReduceKind::Prod => fold(v, shape, kept, 1i64, |a, x| a.wrapping_mul(x.to_i64())),
        ReduceKind::Max => fold(v, shape, kept, lo, |a, x| a.max(x.to_i64())),
        ReduceKind::Min => fold(v, shape, kept, hi, |a, x| a.min(x.to_i64())),
    };
    if kind == ReduceKind::Mean {
        if count == 0 {
            return Err("the integer mean of an empty set is undefined".into());
        }
        return Ok(acc
            .into_iter()
            .map(|a| T::from_i64(a / count as i64))
            .collect());
    }
    Ok(acc.into_iter().map(T::from_i64).collect())
}

/// Reduces `x` over `axes` (sorted, distinct).
pub(super) fn reduce(
    x: &Tensor,
    kind: ReduceKind,
    axes: &[usize],
    keep_dims: bool,
) -> OpResult<Tensor> {
    let shape = x.shape();
    if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= shape.len()) {
        return Err(format!(
            "axes {axes:?} must be sorted, distinct and below rank {}",
            shape.len()
        ));
    }
    let kept: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let count: usize = axes.iter().map(|&a| shape[a]).product();
    let data = match x.data() {
        TensorData::F32(v) => TensorData::F32(float_reduce(v, shape, &kept, kind, count)),
        TensorData::F64(v) => TensorData::F64(float_reduce(v, shape, &kept, kind, count)),
        TensorData::F16(v) => TensorData::F16(float_reduce(v, shape, &kept, kind, count)),
        TensorData::BF16(v) => TensorData::BF16(float_reduce(v, shape, &kept, kind, count)),
        TensorData::I64(v) => TensorData::I64(int_reduce(v, shape, &kept, kind, count)?),
        TensorData::I32(v) => TensorData::I32(int_reduce(v, shape, &kept, kind, count)?),
        TensorData::I8(v) => TensorData::I8(int_reduce(v, shape, &kept, kind, count)?),
        TensorData::U8(v) => TensorData::U8(int_reduce(v, shape, &kept, kind, count)?),
        TensorData::Bool(_) => return Err("is not defined on bool".into()),
    };
    let out = if keep_dims {
        kept
    } else {
        shape
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect()
    };
    tensor(out, data)
}

fn arg<T: PartialOrd + Copy>(
    v: &[T],
    (outer, len, inner): (usize, usize, usize),
    max: bool,
    select_last: bool,
) -> Vec<i64> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| v[(o * len + k) * inner + i];
            let (mut best, mut best_k) = (at(0), 0);
            for k in 1..len {
                let x = at(k);
                let better = if max { x > best } else { x < best };
                if better || (select_last && x == best) {
                    best = x;
                    best_k = k;
                }
            }
            out.push(best_k as i64);
        }
    }
    out
}

/// The index of the greatest (`max`) or least element along `axis`, as i64.
pub(super) fn arg_reduce(
    x: &Tensor,
    max: bool,
    axis: usize,
    keep_dims: bool,
    select_last: bool,
) -> OpResult<Tensor> {
    let parts = split_axis(x.shape(), axis)?;
    let (outer, len, inner) = parts;
    if len == 0 && outer * inner > 0 {
        return Err(format!("axis {axis} is empty: there is no extreme to find"));
    }
    let idx = if outer * inner == 0 {
        Vec::new()
    } else {
        with_data!(x.data(), v => arg(v, parts, max, select_last))
    };
    let mut shape = x.shape().to_vec();
    if keep_dims {
        shape[axis] = 1;
    } else {
        shape.remove(axis);
    }
    tensor(shape, TensorData::I64(idx))
}

/// The running sums of `v` along the axis that `(outer, len, inner)` splits
/// it around, accumulated in `A` by `add` and converted back by `back`.
fn cumsum_t<T: Element, A: Copy>(
    v: &[T],
    (outer, len, inner): (usize, usize, usize),
    exclusive: bool,
    reverse: bool,
    zero: A,
    add: impl Fn(A, T) -> A,
    back: impl Fn(A) -> T,
) -> Vec<T> {
    let mut out = vec![back(zero); v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = zero;
            for step in 0..len {
                let k = if reverse { len - 1 - step } else { step };
                let at = (o * len + k) * inner + i;
                if exclusive {
                    out[at] = back(acc);
                    acc = add(acc, v[at]);
                } else {
                    acc = add(acc, v[at]);
                    out[at] = back(acc);
                }
            }
        }
    }
    out
}

/// The cumulative sum along `axis`.
pub(super) fn cumsum(x: &Tensor, axis: usize, exclusive: bool, reverse: bool) -> OpResult<Tensor> {
    let p = split_axis(x.shape(), axis)?;
    let (e, r) = (exclusive, reverse);
    fn fadd<T: Element>(a: f64, x: T) -> f64 {
        a + x.to_f64()
    }
    fn iadd<T: Element>(a: i64, x: T) -> i64 {
        a.wrapping_add(x.to_i64())
    }
    let data = match x.data() {
        TensorData::F32(v) => TensorData::F32(cumsum_t(v, p, e, r, 0.0, fadd, f32::from_f64)),
        TensorData::F64(v) => TensorData::F64(cumsum_t(v, p, e, r, 0.0, fadd, f64::from_f64)),
        TensorData::F16(v) => TensorData::F16(cumsum_t(v, p, e, r, 0.0, fadd, Element::from_f64)),
        TensorData::BF16(v) => TensorData::BF16(cumsum_t(v, p, e, r, 0.0, fadd, Element::from_f64)),
        TensorData::I64(v) => TensorData::I64(cumsum_t(v, p, e, r, 0, iadd, i64::from_i64)),
        TensorData::I32(v) => TensorData::I32(cumsum_t(v, p, e, r, 0, iadd, i32::from_i64)),
        TensorData::I8(v) => TensorData::I8(cumsum_t(v, p, e, r, 0, iadd, i8::from_i64)),
        TensorData::U8(v) => TensorData::U8(cumsum_t(v, p, e, r, 0, iadd, u8::from_i64)),
        TensorData::Bool(_) => return Err("is not defined on bool".into()),
    };
    tensor(x.shape().to_vec(), data)
}

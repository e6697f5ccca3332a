//! Ops that make integer tensors from shapes: `Dims`, `Range` and `ShapeOf`.

use super::{check_budget, span_len, tensor, Bindings, OpResult};
use crate::dim::Dim;
use crate::dtype::DType;
use crate::tensor::{Tensor, TensorData};

/// The symbolic `values` evaluated with `env`, as a tensor of `dtype`.
pub(super) fn dims(
    dtype: DType,
    shape: &[usize],
    values: &[Dim],
    env: &Bindings,
) -> OpResult<Tensor> {
    if !dtype.is_int() {
        return Err(format!("dims must have an integer dtype, not {dtype}"));
    }
    let v = values
        .iter()
        .map(|d| env.eval_dim(d))
        .collect::<OpResult<Vec<i64>>>()?;
    tensor(shape.to_vec(), TensorData::from_i64(dtype, v))
}

/// `start, start + delta, ...` up to `limit`, exclusive.
pub(super) fn range(dtype: DType, start: i64, limit: i64, delta: i64) -> OpResult<Tensor> {
    if !dtype.is_int() {
        return Err(format!("range makes integers, not {dtype}"));
    }
    if delta == 0 {
        return Err("delta 0".into());
    }
    // Checked before anything is allocated: the span alone may ask for any size.
    let n = span_len(start, limit, delta);
    check_budget(&[n], dtype)?;
    let v = (0..n as i64).map(|i| start.wrapping_add(i.wrapping_mul(delta)));
    tensor(vec![n], TensorData::from_i64(dtype, v))
}

/// Dims `start..end` of `x`'s shape, as an i64 vector.
pub(super) fn shape_of(x: &Tensor, start: usize, end: usize) -> OpResult<Tensor> {
    let s = x.shape();
    if start > end || end > s.len() {
        return Err(format!("dims {start}..{end} of a rank-{} tensor", s.len()));
    }
    let v: Vec<i64> = s[start..end].iter().map(|&d| d as i64).collect();
    tensor(vec![v.len()], TensorData::I64(v))
}

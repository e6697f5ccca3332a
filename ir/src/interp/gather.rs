//! Indexing: `Gather`, `GatherElements` and `GatherNd`.
//!
//! Indices are i64 or i32; a negative index counts from the end of its axis,
//! and an index outside `-dim..dim` is an error naming it.

use super::{strides, tensor, OpResult};
use crate::dtype::DType;
use crate::tensor::Tensor;

/// The indices as i64, if their dtype is an index type.
fn indices(t: &Tensor) -> OpResult<Vec<i64>> {
    match t.dtype() {
        DType::I64 | DType::I32 => Ok(t.data().to_i64_vec()),
        d => Err(format!("indices must be i64 or i32, got {d}")),
    }
}

/// Resolves index `i` on an axis of size `dim`.
fn resolve(i: i64, dim: usize, axis: usize) -> OpResult<usize> {
    let d = dim as i64;
    let j = if i < 0 { i + d } else { i };
    if (0..d).contains(&j) {
        Ok(j as usize)
    } else {
        Err(format!(
            "index {i} is out of range for axis {axis} of size {dim}"
        ))
    }
}

/// Takes the slices of `data` along `axis` at `idx`: the result's shape is
/// `data[..axis] ++ idx ++ data[axis + 1..]`.
pub(super) fn gather(data: &Tensor, idx: &Tensor, axis: usize) -> OpResult<Tensor> {
    let s = data.shape();
    if axis >= s.len() {
        return Err(format!("axis {axis} is out of range for rank {}", s.len()));
    }
    let ids = indices(idx)?
        .into_iter()
        .map(|i| resolve(i, s[axis], axis))
        .collect::<OpResult<Vec<usize>>>()?;
    let outer: usize = s[..axis].iter().product();
    let inner: usize = s[axis + 1..].iter().product();
    let mut src = Vec::with_capacity(outer * ids.len() * inner);
    for o in 0..outer {
        for &i in &ids {
            let base = (o * s[axis] + i) * inner;
            src.extend(base..base + inner);
        }
    }
    let mut shape = s[..axis].to_vec();
    shape.extend(idx.shape());
    shape.extend(&s[axis + 1..]);
    tensor(shape, data.data().gather(&src))
}

/// ONNX `GatherElements`: the result has the indices' shape, and its element at
/// coordinates `c` is `data` at `c` with `c[axis]` replaced by the index there.
pub(super) fn gather_elements(data: &Tensor, idx: &Tensor, axis: usize) -> OpResult<Tensor> {
    let (s, is) = (data.shape(), idx.shape());
    if axis >= s.len() {
        return Err(format!("axis {axis} is out of range for rank {}", s.len()));
    }
    if is.len() != s.len()
        || is
            .iter()
            .zip(s)
            .enumerate()
            .any(|(a, (i, d))| a != axis && i > d)
    {
        return Err(format!(
            "indices of shape {is:?} do not fit data of shape {s:?} off axis {axis}"
        ));
    }
    let ids = indices(idx)?;
    let st = strides(s);
    let ist = strides(is);
    let mut src = Vec::with_capacity(ids.len());
    for (flat, &i) in ids.iter().enumerate() {
        let mut off = 0;
        for ax in 0..is.len() {
            let c = flat / ist[ax] % is[ax];
            let c = if ax == axis {
                resolve(i, s[axis], axis)?
            } else {
                c
            };
            off += c * st[ax];
        }
        src.push(off);
    }
    tensor(is.to_vec(), data.data().gather(&src))
}

/// ONNX `GatherNd` with `batch_dims` leading dims shared by data and indices.
pub(super) fn gather_nd(data: &Tensor, idx: &Tensor, batch_dims: usize) -> OpResult<Tensor> {
    let (s, is) = (data.shape(), idx.shape());
    let b = batch_dims;
    if is.is_empty() || is.len() <= b || s.len() <= b {
        return Err(format!(
            "indices {is:?} and data {s:?} do not fit batch_dims {b}"
        ));
    }
    let m = is[is.len() - 1];
    if b + m > s.len() {
        return Err(format!(
            "index tuples of length {m} exceed data rank {}",
            s.len()
        ));
    }
    if s[..b] != is[..b] {
        return Err(format!(
            "the batch dims of data {s:?} and indices {is:?} differ"
        ));
    }
    let ids = indices(idx)?;
    let batches: usize = is[..b].iter().product();
    let tuples: usize = is[b..is.len() - 1].iter().product();
    let inner: usize = s[b + m..].iter().product();
    let batch_size: usize = s[b..].iter().product();
    let st = strides(s);
    let mut src = Vec::with_capacity(batches * tuples * inner);
    for batch in 0..batches {
        for t in 0..tuples {
            let tuple = &ids[(batch * tuples + t) * m..][..m];
            let mut off = batch * batch_size;
            for (j, &i) in tuple.iter().enumerate() {
                off += resolve(i, s[b + j], b + j)? * st[b + j];
            }
            src.extend(off..off + inner);
        }
    }
    let mut shape = is[..is.len() - 1].to_vec();
    shape.extend(&s[b + m..]);
    tensor(shape, data.data().gather(&src))
}

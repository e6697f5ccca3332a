//! Normalisations: `Softmax`, `LogSoftmax` and `LayerNorm`.
//!
//! All compute in f64 and round once. Softmax subtracts the line's maximum
//! before exponentiating, so large logits do not overflow.

use super::{broadcast_shapes, split_axis, tensor, OpResult};
use crate::infer::bcast_index;
use crate::tensor::{Element, Tensor, TensorData};

fn softmax_t<T: Element>(v: &[T], (outer, len, inner): (usize, usize, usize), log: bool) -> Vec<T> {
    let mut out = vec![T::from_f64(0.0); v.len()];
    let mut line = vec![0f64; len];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            for (k, x) in line.iter_mut().enumerate() {
                *x = v[at(k)].to_f64();
            }
            let max = line.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = line.iter().map(|x| (x - max).exp()).sum();
            for (k, &x) in line.iter().enumerate() {
                let y = if log {
                    x - max - sum.ln()
                } else {
                    (x - max).exp() / sum
                };
                out[at(k)] = T::from_f64(y);
            }
        }
    }
    out
}

/// Softmax (or, with `log`, log-softmax) along `axis`.
pub(super) fn softmax(x: &Tensor, axis: usize, log: bool) -> OpResult<Tensor> {
    let p = split_axis(x.shape(), axis)?;
    let data = match x.data() {
        TensorData::F32(v) => TensorData::F32(softmax_t(v, p, log)),
        TensorData::F64(v) => TensorData::F64(softmax_t(v, p, log)),
        TensorData::F16(v) => TensorData::F16(softmax_t(v, p, log)),
        TensorData::BF16(v) => TensorData::BF16(softmax_t(v, p, log)),
        d => return Err(format!("is defined on floats, got {}", d.dtype())),
    };
    tensor(x.shape().to_vec(), data)
}

fn layer_norm_t<T: Element>(
    v: &[T],
    scale: &[T],
    bias: &[T],
    (n, sidx, bidx): (usize, &[usize], &[usize]),
    eps: f64,
) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    let mut row = vec![0f64; n];
    for chunk in v.chunks_exact(n) {
        for (r, x) in row.iter_mut().zip(chunk) {
            *r = x.to_f64();
        }
        let mean = row.iter().sum::<f64>() / n as f64;
        let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for (j, &x) in row.iter().enumerate() {
            let y = (x - mean) * inv * scale[sidx[j]].to_f64() + bias[bidx[j]].to_f64();
            out.push(T::from_f64(y));
        }
    }
    out
}

/// Layer normalisation over the axes `axis..rank`, then `* scale + bias`, with
/// `scale` and `bias` broadcast to the normalised shape.
pub(super) fn layer_norm(
    x: &Tensor,
    scale: &Tensor,
    bias: &Tensor,
    axis: usize,
    epsilon: f32,
) -> OpResult<Tensor> {
    if axis >= x.shape().len() {
        return Err(format!(
            "axis {axis} is out of range for shape {:?}",
            x.shape()
        ));
    }
    let norm = &x.shape()[axis..];
    let mut idx = Vec::new();
    for (what, t) in [("scale", scale), ("bias", bias)] {
        if t.dtype() != x.dtype() {
            return Err(format!(
                "{what} has dtype {}, input {}",
                t.dtype(),
                x.dtype()
            ));
        }
        if broadcast_shapes(&[norm, t.shape()])? != norm {
            return Err(format!(
                "{what} of shape {:?} does not broadcast to the normalised shape {norm:?}",
                t.shape()
            ));
        }
        idx.push(bcast_index(norm, t.shape()));
    }
    let n: usize = norm.iter().product();
    let shape = x.shape().to_vec();
    if n == 0 {
        return tensor(shape, x.data().clone());
    }
    let p = (n, idx[0].as_slice(), idx[1].as_slice());
    let eps = epsilon as f64;
    let data = match (x.data(), scale.data(), bias.data()) {
        (TensorData::F32(v), TensorData::F32(s), TensorData::F32(b)) => {
            TensorData::F32(layer_norm_t(v, s, b, p, eps))
        }
        (TensorData::F64(v), TensorData::F64(s), TensorData::F64(b)) => {
            TensorData::F64(layer_norm_t(v, s, b, p, eps))
        }
        (TensorData::F16(v), TensorData::F16(s), TensorData::F16(b)) => {
            TensorData::F16(layer_norm_t(v, s, b, p, eps))
        }
        (TensorData::BF16(v), TensorData::BF16(s), TensorData::BF16(b)) => {
            TensorData::BF16(layer_norm_t(v, s, b, p, eps))
        }
        (d, _, _) => return Err(format!("is defined on floats, got {}", d.dtype())),
    };
    tensor(shape, data)
}

//! Padding elimination's moves: `Pack` (the real tokens of a padded batch, stacked) and
//! `Unpack` (them scattered back, zeros at the padding).
//!
//! The mask is `[b, s]`, bool or an integer type; a nonzero entry marks a real token. Tokens
//! are taken in row-major `(i, j)` order, so token `k` is the `k`-th nonzero entry.

use super::{check_budget, tensor, OpResult};
use crate::dtype::DType;
use crate::tensor::{Element, Tensor};

/// The positions (row-major indices into the mask's `b * s` entries) of the real tokens.
fn real_positions(mask: &Tensor) -> OpResult<Vec<usize>> {
    let d = mask.dtype();
    if mask.shape().len() != 2 || !(d == DType::Bool || d.is_int()) {
        return Err(format!(
            "the mask must be [b, s] of bool or an integer type, got {d}{:?}",
            mask.shape()
        ));
    }
    Ok(mask
        .data()
        .to_i64_vec()
        .into_iter()
        .enumerate()
        .filter_map(|(p, v)| (v != 0).then_some(p))
        .collect())
}

/// The number of real tokens of `mask`: its nonzero entries.
pub(super) fn count_tokens(mask: &Tensor) -> OpResult<usize> {
    Ok(real_positions(mask)?.len())
}

/// The rows of `x` (`[b, s, r..]`) at the mask's nonzero entries, stacked: `[tokens, r..]`.
pub(super) fn pack(x: &Tensor, mask: &Tensor) -> OpResult<Tensor> {
    let real = real_positions(mask)?;
    let s = x.shape();
    if s.len() < 2 || s[..2] != *mask.shape() {
        return Err(format!(
            "x of shape {s:?} does not start with the mask's shape {:?}",
            mask.shape()
        ));
    }
    let row: usize = s[2..].iter().product();
    let mut shape = vec![real.len()];
    shape.extend(&s[2..]);
    // The type's first dim may be a symbol no run binds (inside a fused op's expansion):
    // the size is checked here.
    check_budget(&shape, x.dtype())?;
    let src: Vec<usize> = real.iter().flat_map(|&p| p * row..(p + 1) * row).collect();
    tensor(shape, x.data().gather(&src))
}

/// Row `k` of `y` (`[tokens, r..]`) at the `k`-th nonzero entry of the mask, zeros
/// elsewhere: `[b, s, r..]`. `y` must have a row per nonzero entry.
pub(super) fn unpack(y: &Tensor, mask: &Tensor) -> OpResult<Tensor> {
    let real = real_positions(mask)?;
    let s = y.shape();
    if s.is_empty() {
        return Err("y must have rank 1 or more".into());
    }
    if s[0] != real.len() {
        return Err(format!(
            "y has {} rows, but the mask has {} nonzero entries",
            s[0],
            real.len()
        ));
    }
    let mut shape = mask.shape().to_vec();
    shape.extend(&s[1..]);
    check_budget(&shape, y.dtype())?;
    let row: usize = s[1..].iter().product();
    let positions = mask.shape().iter().product::<usize>();
    let data = crate::with_data!(y.data(), v => scatter_rows(v, &real, positions, row));
    tensor(shape, data)
}

/// `positions` rows of `row` elements each, row `real[k]` taken from row `k` of `v` and the
/// others zero.
fn scatter_rows<T: Element>(
    v: &[T],
    real: &[usize],
    positions: usize,
    row: usize,
) -> crate::tensor::TensorData {
    let zero = T::from_i64(0);
    let mut out = vec![zero; positions * row];
    for (k, &p) in real.iter().enumerate() {
        out[p * row..(p + 1) * row].copy_from_slice(&v[k * row..(k + 1) * row]);
    }
    T::wrap(out)
}

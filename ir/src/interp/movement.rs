//! Data movement: `Reshape`, `Transpose`, `Expand`, `Concat`, `Slice`, `Tile`
//! and `Trilu`.
//!
//! Most of these pick elements of the operand: they build, for each axis of
//! the result, a table of the source offset that each coordinate contributes,
//! and read the source at the sum of the contributions ([`pick`]).

use super::{broadcast_shapes, check_budget, same, span_len, strides, tensor, OpResult};
use crate::tensor::{Element, Tensor};
use crate::with_data;

/// The tensor of shape `out` whose element at coordinates `c` is the element of
/// `x` at flat offset `sum(tables[axis][c[axis]])`.
fn pick(x: &Tensor, out: Vec<usize>, tables: &[Vec<usize>]) -> OpResult<Tensor> {
    let n: usize = out.iter().product();
    let mut idx = Vec::with_capacity(n);
    if n > 0 {
        let r = out.len();
        if r == 0 {
            idx.push(0);
        } else {
            let last = &tables[r - 1];
            let mut pos = vec![0usize; r - 1];
            let mut base: usize = tables[..r - 1].iter().map(|t| t[0]).sum();
            for _ in 0..n / out[r - 1] {
                idx.extend(last.iter().map(|&o| base + o));
                for ax in (0..r - 1).rev() {
                    base -= tables[ax][pos[ax]];
                    pos[ax] += 1;
                    if pos[ax] < out[ax] {
                        base += tables[ax][pos[ax]];
                        break;
                    }
                    pos[ax] = 0;
                    base += tables[ax][0];
                }
            }
        }
    }
    tensor(out, x.data().gather(&idx))
}

/// The same elements with another shape of equal size.
pub(super) fn reshape(x: &Tensor, shape: &[usize]) -> OpResult<Tensor> {
    if shape.iter().product::<usize>() != x.len() {
        return Err(format!(
            "cannot reshape {:?} into {shape:?}: the element counts differ",
            x.shape()
        ));
    }
    tensor(shape.to_vec(), x.data().clone())
}

/// Result axis `i` is operand axis `perm[i]`.
pub(super) fn transpose(x: &Tensor, perm: &[usize]) -> OpResult<Tensor> {
    let r = x.shape().len();
    let mut seen = vec![false; r];
    if perm.len() != r
        || perm
            .iter()
            .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
    {
        return Err(format!("{perm:?} is not a permutation of {r} axes"));
    }
    let st = strides(x.shape());
    let out: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let tables: Vec<Vec<usize>> = perm
        .iter()
        .map(|&p| (0..x.shape()[p]).map(|c| c * st[p]).collect())
        .collect();
    pick(x, out, &tables)
}

/// Broadcasts `x` against `shape`, both ways, as ONNX `Expand` does.
pub(super) fn expand(x: &Tensor, shape: &[usize]) -> OpResult<Tensor> {
    let out = broadcast_shapes(&[x.shape(), shape])?;
    // Before the per-axis tables, which are as long as the result's axes.
    check_budget(&out, x.dtype())?;
    let off = out.len() - x.shape().len();
    let st = strides(x.shape());
    let tables: Vec<Vec<usize>> = out
        .iter()
        .enumerate()
        .map(|(i, &d)| match i.checked_sub(off) {
            Some(j) if x.shape()[j] != 1 => (0..d).map(|c| c * st[j]).collect(),
            _ => vec![0; d],
        })
        .collect();
    pick(x, out, &tables)
}

/// Joins the operands along `axis`.
pub(super) fn concat(xs: &[&Tensor], axis: usize) -> OpResult<Tensor> {
    let first = xs.first().ok_or("needs at least one operand")?;
    let r = first.shape().len();
    if axis >= r {
        return Err(format!("axis {axis} is out of range for rank {r}"));
    }
    let mut out = first.shape().to_vec();
    out[axis] = 0;
    for (i, x) in xs.iter().enumerate() {
        let s = x.shape();
        if x.dtype() != first.dtype()
            || s.len() != r
            || s.iter().enumerate().any(|(j, &d)| j != axis && d != out[j])
        {
            return Err(format!(
                "operand {i} of type {}{s:?} does not fit operand 0 of type {}{:?}",
                x.dtype(),
                first.dtype(),
                first.shape()
            ));
        }
        out[axis] += s[axis];
    }
    let outer: usize = out[..axis].iter().product();
    let data = with_data!(first.data(), f => {
        let mut parts = Vec::with_capacity(xs.len());
        for x in xs {
            let v = same(f, x.data()).ok_or("operand dtypes differ")?;
            parts.push((v, x.shape()[axis..].iter().product::<usize>()));
        }
        let mut v = Vec::with_capacity(out.iter().product());
        for o in 0..outer {
            for (p, chunk) in &parts {
                v.extend_from_slice(&p[o * chunk..(o + 1) * chunk]);
            }
        }
        Element::wrap(v)
    });
    tensor(out, data)
}

/// A strided slice along `axes`; starts and ends are clamped to the ranges
/// the op's contract gives (`0..=dim` for a positive step, `-1..dim` for a
/// negative one).
pub(super) fn slice(
    x: &Tensor,
    axes: &[usize],
    starts: &[i64],
    ends: &[i64],
    steps: &[i64],
) -> OpResult<Tensor> {
    let shape = x.shape();
    if axes.len() != starts.len() || axes.len() != ends.len() || axes.len() != steps.len() {
        return Err("axes, starts, ends and steps must have the same length".into());
    }
    let st = strides(shape);
    let mut out = shape.to_vec();
    let mut tables: Vec<Vec<usize>> = shape
        .iter()
        .zip(&st)
        .map(|(&d, &s)| (0..d).map(|c| c * s).collect())
        .collect();
    for (i, &ax) in axes.iter().enumerate() {
        if ax >= shape.len() || axes[..i].contains(&ax) {
            return Err(format!(
                "axis {ax} is out of range for rank {} or sliced twice",
                shape.len()
            ));
        }
        let (dim, step) = (shape[ax] as i64, steps[i]);
        let (start, end) = match step {
            0 => return Err(format!("step 0 on axis {ax}")),
            s if s > 0 => (starts[i].clamp(0, dim), ends[i].clamp(0, dim)),
            _ => (starts[i].clamp(-1, dim - 1), ends[i].clamp(-1, dim - 1)),
        };
        let len = span_len(start, end, step);
        out[ax] = len;
        tables[ax] = (0..len as i64)
            .map(|c| (start + c * step) as usize * st[ax])
            .collect();
    }
    pick(x, out, &tables)
}

/// Repeats `x` `repeats[i]` times along axis `i`.
pub(super) fn tile(x: &Tensor, repeats: &[i64]) -> OpResult<Tensor> {
    let shape = x.shape();
    if repeats.len() != shape.len() {
        return Err(format!(
            "{} repeats for rank {}",
            repeats.len(),
            shape.len()
        ));
    }
    let st = strides(shape);
    let mut out = Vec::with_capacity(shape.len());
    for (ax, &r) in repeats.iter().enumerate() {
        let r = usize::try_from(r).map_err(|_| format!("negative repeat {r} on axis {ax}"))?;
        let d = shape[ax];
        out.push(
            d.checked_mul(r)
                .ok_or_else(|| format!("axis {ax} of size {d} repeated {r} times overflows"))?,
        );
    }
    // Before the per-axis tables, which are as long as the result's axes.
    check_budget(&out, x.dtype())?;
    let tables: Vec<Vec<usize>> = (0..shape.len())
        .map(|ax| (0..out[ax]).map(|c| (c % shape[ax]) * st[ax]).collect())
        .collect();
    pick(x, out, &tables)
}

fn trilu_t<T: Element>(v: &[T], m: usize, n: usize, upper: bool, k: i64) -> Vec<T> {
    let zero = T::from_i64(0);
    v.iter()
        .enumerate()
        .map(|(flat, &x)| {
            let (i, j) = ((flat / n % m) as i64, (flat % n) as i64);
            let keep = if upper { j - i >= k } else { j - i <= k };
            if keep {
                x
            } else {
                zero
            }
        })
        .collect()
}

/// Keeps the upper (or lower) triangle of the last two axes, offset by `k`.
pub(super) fn trilu(x: &Tensor, upper: bool, k: i64) -> OpResult<Tensor> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(format!("needs rank 2 or more, got {s:?}"));
    }
    let (m, n) = (s[s.len() - 2], s[s.len() - 1]);
    if x.is_empty() {
        return Ok(x.clone());
    }
    let data = with_data!(x.data(), v => Element::wrap(trilu_t(v, m, n, upper, k)));
    tensor(s.to_vec(), data)
}

//! `Pad`: crops negative amounts, then fills positive ones by mode.
//!
//! Each axis gets a table from result coordinate to the source offset it
//! reads, or to nothing (the fill value, in constant mode); the result reads
//! the source at the sum of its coordinates' offsets.

use super::{check_budget, same, strides, tensor, OpResult};
use crate::op::PadMode;
use crate::tensor::{Element, Tensor};
use crate::with_data;

/// The source index, within an axis cropped to `len` elements, that position
/// `j` (which may lie outside `0..len`) reads in `mode`; `None` for the fill
/// value. `len` must be positive for every mode but `Constant`.
fn source(j: i64, len: i64, mode: PadMode) -> Option<i64> {
    if (0..len).contains(&j) {
        return Some(j);
    }
    match mode {
        PadMode::Constant => None,
        PadMode::Edge => Some(j.clamp(0, len - 1)),
        PadMode::Wrap => Some(j.rem_euclid(len)),
        PadMode::Reflect if len == 1 => Some(0),
        PadMode::Reflect => {
            let period = 2 * (len - 1);
            let r = j.rem_euclid(period);
            Some(if r >= len { period - r } else { r })
        }
    }
}

/// Pads (or crops) `x` by `pads_begin` and `pads_end` per axis; `value` is
/// the scalar fill of constant mode.
pub(super) fn pad(
    x: &Tensor,
    value: Option<&Tensor>,
    mode: PadMode,
    pads_begin: &[i64],
    pads_end: &[i64],
) -> OpResult<Tensor> {
    let shape = x.shape();
    let r = shape.len();
    if pads_begin.len() != r || pads_end.len() != r {
        return Err(format!(
            "{} begin and {} end pads for shape {shape:?}",
            pads_begin.len(),
            pads_end.len()
        ));
    }
    let st = strides(shape);
    let mut out = Vec::with_capacity(r);
    // Per axis: the first source element kept, how many are kept, and the
    // padding added before them.
    let mut kept: Vec<(i64, i64, i64)> = Vec::with_capacity(r);
    for ax in 0..r {
        let (pb, pe, n) = (pads_begin[ax], pads_end[ax], shape[ax] as i64);
        let overflow = || format!("axis {ax} of size {n} with pads {pb} and {pe} overflows");
        let lo = pb.checked_neg().ok_or_else(overflow)?.max(0);
        let hi = pe.checked_neg().ok_or_else(overflow)?.max(0);
        // Saturating: a crop beyond the axis is refused just below.
        let len = n.saturating_sub(lo).saturating_sub(hi);
        if len < 0 {
            return Err(format!(
                "axis {ax} of size {n} cannot lose more than it has (pads {pb} and {pe})"
            ));
        }
        let (add_b, add_e) = (pb.max(0), pe.max(0));
        if len == 0 && mode != PadMode::Constant && (add_b > 0 || add_e > 0) {
            return Err(format!(
                "axis {ax} is empty after cropping, so `{}` padding has nothing to repeat",
                mode.name()
            ));
        }
        let total = add_b
            .checked_add(len)
            .and_then(|t| t.checked_add(add_e))
            .ok_or_else(overflow)?;
        let total =
            usize::try_from(total).map_err(|_| format!("axis {ax} would have a negative size"))?;
        out.push(total);
        kept.push((lo, len, add_b));
    }
    // Before the per-axis tables, which are as long as the result's axes.
    check_budget(&out, x.dtype())?;
    let tables: Vec<Vec<Option<usize>>> = kept
        .iter()
        .zip(&out)
        .enumerate()
        .map(|(ax, (&(lo, len, add_b), &total))| {
            (0..total as i64)
                .map(|o| source(o - add_b, len, mode).map(|j| (lo + j) as usize * st[ax]))
                .collect()
        })
        .collect();
    let fill = match (mode, value) {
        (PadMode::Constant, Some(v)) if v.len() == 1 && v.dtype() == x.dtype() => Some(v),
        (PadMode::Constant, v) => {
            return Err(format!(
                "constant mode needs a one-element fill value of dtype {}, got {v:?}",
                x.dtype()
            ))
        }
        _ => None,
    };
    let n: usize = out.iter().product();
    let data = with_data!(x.data(), v => {
        // Only constant mode has positions without a source; the others
        // never read the placeholder zero.
        let f = match fill {
            Some(t) => same(v, t.data()).ok_or("fill dtype differs")?[0],
            None => Element::from_i64(0),
        };
        Element::wrap(gather_padded(v, &out, &tables, n, f))
    });
    tensor(out, data)
}

/// The elements of the result of shape `out`: the source element at the sum
/// of the per-axis offsets, or `fill` where an axis has none.
fn gather_padded<T: Element>(
    v: &[T],
    out: &[usize],
    tables: &[Vec<Option<usize>>],
    n: usize,
    fill: T,
) -> Vec<T> {
    let mut res = Vec::with_capacity(n);
    let r = out.len();
    let mut pos = vec![0usize; r];
    for _ in 0..n {
        let mut flat = Some(0usize);
        for ax in 0..r {
            flat = match (flat, tables[ax][pos[ax]]) {
                (Some(f), Some(o)) => Some(f + o),
                _ => None,
            };
        }
        res.push(match flat {
            Some(f) => v[f],
            None => fill,
        });
        for ax in (0..r).rev() {
            pos[ax] += 1;
            if pos[ax] < out[ax] {
                break;
            }
            pos[ax] = 0;
        }
    }
    res
}

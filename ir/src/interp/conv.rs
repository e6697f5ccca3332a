//! `Conv`: direct N-D convolution through an im2col buffer.
//!
//! For each batch item and channel group, a tile of output positions is
//! gathered into a column buffer `cols[kk][p]` (one row per weight tap `kk`,
//! taps ordered as the weights store them: input channel, then kernel
//! coordinates row-major; padding reads zero), and the output rows are
//! `out[o][p] = sum_kk w[o][kk] * cols[kk][p]`, summed in increasing `kk`
//! with a contiguous inner loop over `p` that vectorises. Tiles keep the
//! buffer within [`MAX_COLS`] elements (or one position's taps, if those are
//! more), so large images do not need a buffer the size of the whole
//! unfolded input.
//!
//! f32 accumulates in f32 and f64 in f64; f16 and bf16 are widened to f32,
//! computed as f32, and rounded back once.

use super::{check_budget, tensor, OpResult};
use crate::tensor::{Element, Tensor, TensorData};
use half::{bf16, f16};
use std::ops::{Add, Mul};

/// The most elements the column buffer of one tile holds.
const MAX_COLS: usize = 1 << 20;

/// The attributes of one convolution, evaluated.
pub(super) struct ConvParams<'a> {
    /// Step per spatial axis.
    pub strides: &'a [usize],
    /// Zeros before each spatial axis.
    pub pads_begin: &'a [i64],
    /// Zeros after each spatial axis.
    pub pads_end: &'a [i64],
    /// Spacing of the kernel taps per spatial axis.
    pub dilations: &'a [usize],
    /// Number of channel groups.
    pub group: usize,
}

/// The sizes of one convolution, checked.
struct Geometry {
    n: usize,
    c: usize,
    m: usize,
    input: Vec<usize>,
    kernel: Vec<usize>,
    out: Vec<usize>,
}

/// Checks the operands against the attributes and computes the output sizes.
fn geometry(x: &[usize], w: &[usize], p: &ConvParams<'_>) -> OpResult<Geometry> {
    if x.len() < 3 || w.len() != x.len() {
        return Err(format!(
            "needs x of rank 3 or more and weights of the same rank, got {x:?} and {w:?}"
        ));
    }
    let sp = x.len() - 2;
    if p.strides.len() != sp
        || p.pads_begin.len() != sp
        || p.pads_end.len() != sp
        || p.dilations.len() != sp
    {
        return Err(format!(
            "{sp} spatial axes need {sp} strides, pads and dilations each"
        ));
    }
    let g = p.group;
    if g == 0 || p.strides.contains(&0) || p.dilations.contains(&0) {
        return Err("group, strides and dilations must be at least 1".into());
    }
    let (n, c, m) = (x[0], x[1], w[0]);
    if w[1].checked_mul(g) != Some(c) || m % g != 0 {
        return Err(format!(
            "x {x:?} and weights {w:?} do not fit group {g}: channels must be weights[1] * group, \
             and group must divide the output channels"
        ));
    }
    let mut out = Vec::with_capacity(sp);
    for i in 0..sp {
        let (pb, pe) = (p.pads_begin[i], p.pads_end[i]);
        if pb < 0 || pe < 0 {
            return Err(format!("negative pads {pb} and {pe} on spatial axis {i}"));
        }
        // In i128, where sizes of usize and pads of i64 cannot overflow.
        let reach = (w[i + 2] as i128 - 1) * p.dilations[i] as i128 + 1;
        let padded = x[i + 2] as i128 + pb as i128 + pe as i128;
        let span = padded - reach;
        if w[i + 2] == 0 || span < 0 {
            return Err(format!(
                "spatial axis {i}: a kernel reaching {reach} does not fit the padded size {padded}"
            ));
        }
        let size = usize::try_from(span / p.strides[i] as i128 + 1)
            .map_err(|_| format!("spatial axis {i}: the padded size {padded} is too large"))?;
        out.push(size);
    }
    Ok(Geometry {
        n,
        c,
        m,
        input: x[2..].to_vec(),
        kernel: w[2..].to_vec(),
        out,
    })
}

/// The convolution of `x` with `w` in the accumulation type `T`.
fn conv_t<T>(x: &[T], w: &[T], geo: &Geometry, p: &ConvParams<'_>) -> Vec<T>
where
    T: Copy + Default + Add<Output = T> + Mul<Output = T>,
{
    let sp = geo.input.len();
    let g = p.group;
    let (cg, mg) = (geo.c / g, geo.m / g);
    let taps: usize = geo.kernel.iter().product();
    let k = cg * taps;
    let positions: usize = geo.out.iter().product();
    let plane: usize = geo.input.iter().product();
    let mut y = vec![T::default(); geo.n * geo.m * positions];
    if y.is_empty() || k == 0 {
        return y;
    }
    // Row-major strides of the input plane, and the kernel coordinates of
    // every tap.
    let mut in_stride = vec![1usize; sp];
    for i in (0..sp.saturating_sub(1)).rev() {
        in_stride[i] = in_stride[i + 1] * geo.input[i + 1];
    }
    let tap_offsets: Vec<Vec<i64>> = (0..taps)
        .map(|t| {
            let mut coords = vec![0i64; sp];
            let mut rest = t;
            for i in (0..sp).rev() {
                coords[i] = (rest % geo.kernel[i]) as i64 * p.dilations[i] as i64;
                rest /= geo.kernel[i];
            }
            coords
        })
        .collect();
    let tile = (MAX_COLS / k).clamp(1, positions);
    let mut cols = vec![T::default(); k * tile];
    let mut acc = vec![T::default(); tile];
    // The first input coordinate that each output position of a tile reads.
    let mut base = vec![0i64; tile * sp];
    for b in 0..geo.n {
        for gi in 0..g {
            let mut p0 = 0;
            while p0 < positions {
                let tp = tile.min(positions - p0);
                for j in 0..tp {
                    let mut rest = p0 + j;
                    for i in (0..sp).rev() {
                        let o = rest % geo.out[i];
                        rest /= geo.out[i];
                        base[j * sp + i] = (o * p.strides[i]) as i64 - p.pads_begin[i];
                    }
                }
                for ci in 0..cg {
                    let xc = &x[(b * geo.c + gi * cg + ci) * plane..][..plane];
                    for (t, offs) in tap_offsets.iter().enumerate() {
                        let row = &mut cols[(ci * taps + t) * tp..][..tp];
                        for (j, r) in row.iter_mut().enumerate() {
                            let mut flat = 0usize;
                            let mut inside = true;
                            for i in 0..sp {
                                let at = base[j * sp + i] + offs[i];
                                if at < 0 || at >= geo.input[i] as i64 {
                                    inside = false;
                                    break;
                                }
                                flat += at as usize * in_stride[i];
                            }
                            *r = if inside { xc[flat] } else { T::default() };
                        }
                    }
                }
                for mi in 0..mg {
                    let o = gi * mg + mi;
                    let wr = &w[o * k..][..k];
                    let acc = &mut acc[..tp];
                    acc.fill(T::default());
                    for (kk, &wv) in wr.iter().enumerate() {
                        let col = &cols[kk * tp..][..tp];
                        for (a, &v) in acc.iter_mut().zip(col) {
                            *a = *a + wv * v;
                        }
                    }
                    y[(b * geo.m + o) * positions + p0..][..tp].copy_from_slice(acc);
                }
                p0 += tp;
            }
        }
    }
    y
}

/// Widens half-precision elements to f32.
fn widen<T: Element>(v: &[T]) -> Vec<f32> {
    v.iter().map(|x| x.to_f64() as f32).collect()
}

/// The convolution of `x` (`[n, c, spatial..]`) with `w` (`[m, c / group,
/// kernel..]`).
pub(super) fn conv(x: &Tensor, w: &Tensor, p: &ConvParams<'_>) -> OpResult<Tensor> {
    let geo = geometry(x.shape(), w.shape(), p)?;
    let mut shape = vec![geo.n, geo.m];
    shape.extend(&geo.out);
    // The result is accumulated in a buffer of its own size before rounding.
    check_budget(&shape, x.dtype())?;
    let data = match (x.data(), w.data()) {
        (TensorData::F32(a), TensorData::F32(b)) => TensorData::F32(conv_t(a, b, &geo, p)),
        (TensorData::F64(a), TensorData::F64(b)) => TensorData::F64(conv_t(a, b, &geo, p)),
        (TensorData::F16(a), TensorData::F16(b)) => {
            let y = conv_t(&widen(a), &widen(b), &geo, p);
            TensorData::F16(y.into_iter().map(f16::from_f32).collect())
        }
        (TensorData::BF16(a), TensorData::BF16(b)) => {
            let y = conv_t(&widen(a), &widen(b), &geo, p);
            TensorData::BF16(y.into_iter().map(bf16::from_f32).collect())
        }
        (a, b) => {
            return Err(format!(
                "needs float operands of one dtype, got {} and {}",
                a.dtype(),
                b.dtype()
            ))
        }
    };
    tensor(shape, data)
}

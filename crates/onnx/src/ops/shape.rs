//! Shape and data-movement ops: `Reshape`, `Flatten`, `Squeeze`,
//! `Unsqueeze` (all to `Reshape` with an explicit shape), `Transpose`,
//! `Concat`, `Split` and `Slice` (to IR slices with normalised bounds),
//! `Gather`, `GatherElements`, `GatherND`, `Expand`, `Tile`, `Shape`, `Size`,
//! `Range` and `ConstantOfShape`.
//!
//! Shape-like inputs (targets, bounds, axes, repeats) must be known at
//! compile time; the IR's known values make the `Shape`/`Gather`/`Concat`
//! chains that exporters write known.

use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use std::cmp::Ordering;
use tcc_ir::{DType, Dim, NodeId, Op, Shape, Tensor, TensorData};

/// Registers the shape ops.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "Reshape", 5, reshape);
    reg(r, "Flatten", 1, flatten);
    reg(r, "Squeeze", 1, squeeze);
    reg(r, "Unsqueeze", 1, unsqueeze);
    reg(r, "Transpose", 1, transpose);
    reg(r, "Concat", 4, concat);
    reg(r, "Split", 2, split);
    reg(r, "Slice", 1, slice);
    reg(r, "Gather", 1, |c| {
        let (x, i) = (c.req(0)?, c.req(1)?);
        let axis = c.axis(c.attr_i("axis", 0)?, c.rank(x))?;
        Ok(vec![c.add(Op::Gather { axis }, &[x, i])?])
    });
    reg(r, "GatherElements", 11, |c| {
        let (x, i) = (c.req(0)?, c.req(1)?);
        let axis = c.axis(c.attr_i("axis", 0)?, c.rank(x))?;
        Ok(vec![c.add(Op::GatherElements { axis }, &[x, i])?])
    });
    reg(r, "GatherND", 11, |c| {
        let (x, i) = (c.req(0)?, c.req(1)?);
        let b = c.attr_i("batch_dims", 0)?;
        let batch_dims =
            usize::try_from(b).map_err(|_| c.attr_err("batch_dims", "must not be negative"))?;
        Ok(vec![c.add(Op::GatherNd { batch_dims }, &[x, i])?])
    });
    reg(r, "Expand", 8, |c| {
        let x = c.req(0)?;
        let shape = Shape(c.dims(1, "shape")?);
        c.check_dims(shape.dims(), c.dtype(x), &format!("the shape {shape}"))?;
        Ok(vec![c.add(Op::Expand { shape }, &[x])?])
    });
    reg(r, "Tile", 6, tile);
    reg(r, "Shape", 1, shape_of);
    reg(r, "Size", 1, |c| {
        let x = c.req(0)?;
        let n = c.ty(x).shape.numel();
        Ok(vec![dims_value(c, vec![], vec![n])?])
    });
    reg(r, "Range", 11, range);
    reg(r, "ConstantOfShape", 9, constant_of_shape);
}

/// `Tile`: the repeats must be sizes, and so must the dims they make
/// (checked here where both are constants, before the IR multiplies them).
fn tile(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let repeats = c.dims(1, "repeats")?;
    let dtype = c.dtype(x);
    c.check_dims(
        &repeats,
        dtype,
        &format!("the repeats {}", Shape(repeats.clone())),
    )?;
    let mut out = Vec::with_capacity(repeats.len());
    for (d, r) in c.shape(x).iter().zip(&repeats) {
        match (d.as_const(), r.as_const()) {
            (Some(a), Some(b)) => out
                .push(Dim::constant(a.checked_mul(b).ok_or_else(|| {
                    c.err(format!("repeating a dim of {a} by {b} overflows"))
                })?)),
            _ => out.push(d.mul(r)),
        }
    }
    c.check_dims(
        &out,
        dtype,
        &format!("the tiled shape {}", Shape(out.clone())),
    )?;
    Ok(vec![c.add(Op::Tile { repeats }, &[x])?])
}

/// An i64 tensor of `values` (a constant if all are).
fn dims_value(c: &mut Ctx, shape: Vec<usize>, values: Vec<Dim>) -> Result<NodeId> {
    match values
        .iter()
        .map(Dim::as_const)
        .collect::<Option<Vec<i64>>>()
    {
        Some(v) => {
            let t = Tensor::new(shape, TensorData::I64(v)).map_err(|m| c.err(m))?;
            c.constant(t)
        }
        None => c.add(
            Op::Dims {
                dtype: DType::I64,
                shape,
                values,
            },
            &[],
        ),
    }
}

/// `Reshape`: 0 copies the input's dim (unless `allowzero`), -1 takes what is
/// left of the element count.
fn reshape(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let target = c.dims(1, "shape")?;
    let allowzero = c.attr_bool("allowzero", false)?;
    let input = c.shape(x);
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, d) in target.iter().enumerate() {
        match d.as_const() {
            Some(0) if !allowzero => out.push(input.get(i).cloned().ok_or_else(|| {
                c.err(format!(
                    "shape {target:?} copies dim {i} (a 0) but the input {} has rank {}",
                    c.ty(x),
                    input.len()
                ))
            })?),
            Some(-1) => {
                if infer.replace(i).is_some() {
                    return Err(c.err(format!("shape {target:?} has more than one -1")));
                }
                out.push(Dim::constant(1));
            }
            Some(v) if v < -1 => {
                return Err(c.err(format!("shape {target:?} has the invalid dim {v}")))
            }
            _ => out.push(d.clone()),
        }
    }
    if let Some(i) = infer {
        if allowzero && target.iter().any(|d| d.is(0)) {
            return Err(c.err(format!(
                "shape {target:?} has both -1 and 0 with allowzero set"
            )));
        }
        let rest = out.iter().fold(Dim::constant(1), |a, d| a.mul(d));
        if rest.is(0) {
            return Err(c.err(format!(
                "shape {target:?}: -1 cannot be inferred next to a 0 dim"
            )));
        }
        let numel = c.ty(x).shape.numel();
        if let (Some(n), Some(r)) = (numel.as_const(), rest.as_const()) {
            if n % r != 0 {
                return Err(c.err(format!(
                    "shape {target:?}: the input's {n} elements cannot be split into rows of \
                     {r} to infer the -1"
                )));
            }
        }
        out[i] = numel.floor_div(&rest);
    }
    c.check_dims(
        &out,
        c.dtype(x),
        &format!("the target shape {}", Shape(out.clone())),
    )?;
    Ok(vec![c.reshape(x, out)?])
}

/// `Flatten`: `[prod(dims[..axis]), prod(dims[axis..])]`.
fn flatten(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let dims = c.shape(x);
    let r = dims.len() as i64;
    let a = c.attr_i("axis", 1)?;
    let axis = if a < 0 { a + r } else { a };
    if axis < 0 || axis > r {
        return Err(c.attr_err("axis", format!("{a} is out of range for rank {r}")));
    }
    let axis = axis as usize;
    let prod = |ds: &[Dim]| ds.iter().fold(Dim::constant(1), |a, d| a.mul(d));
    let out = vec![prod(&dims[..axis]), prod(&dims[axis..])];
    Ok(vec![c.reshape(x, out)?])
}

/// The axes of `Squeeze`/`Unsqueeze`: an attribute before opset 13, an input after.
fn squeeze_axes(c: &Ctx) -> Result<Option<Vec<i64>>> {
    if c.opset() >= 13 {
        c.opt_const_ints(1, "axes")
    } else {
        c.attr_ints("axes")
    }
}

fn squeeze(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let dims = c.shape(x);
    let axes = match squeeze_axes(c)? {
        Some(a) => {
            let axes = c.axes(&a, dims.len())?;
            for &ax in &axes {
                if dims[ax].as_const().is_some_and(|v| v != 1) {
                    return Err(c.err(format!(
                        "cannot squeeze axis {ax} of {}: its size is not 1",
                        c.ty(x)
                    )));
                }
            }
            axes
        }
        // Without axes every dim known to be 1 goes; symbolic dims stay.
        None => (0..dims.len()).filter(|&i| dims[i].is(1)).collect(),
    };
    let out = dims
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, d)| d)
        .collect();
    Ok(vec![c.reshape(x, out)?])
}

fn unsqueeze(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let dims = c.shape(x);
    let given = squeeze_axes(c)?.ok_or_else(|| c.err("needs axes"))?;
    let out_rank = dims.len() + given.len();
    let axes = c.axes(&given, out_rank)?;
    let mut src = dims.into_iter();
    let mut out = Vec::with_capacity(out_rank);
    for i in 0..out_rank {
        if axes.contains(&i) {
            out.push(Dim::constant(1));
        } else {
            out.push(src.next().ok_or_else(|| c.err("axes out of range"))?);
        }
    }
    Ok(vec![c.reshape(x, out)?])
}

fn transpose(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let rank = c.rank(x);
    let perm = match c.attr_ints("perm")? {
        Some(p) => p
            .iter()
            .map(|&a| {
                usize::try_from(a)
                    .map_err(|_| c.attr_err("perm", format!("{p:?} has a negative entry")))
            })
            .collect::<Result<Vec<usize>>>()?,
        None => (0..rank).rev().collect(),
    };
    if perm.iter().enumerate().all(|(i, &p)| i == p) && perm.len() == rank {
        return Ok(vec![x]);
    }
    Ok(vec![c.add(Op::Transpose { perm }, &[x])?])
}

fn concat(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let ins: Vec<NodeId> = (0..c.n_inputs()).filter_map(|i| c.input(i)).collect();
    let first = *ins
        .first()
        .ok_or_else(|| c.err("needs at least one input"))?;
    let a = c
        .attr_opt_i("axis")?
        .ok_or_else(|| c.attr_err("axis", "is required"))?;
    let axis = c.axis(a, c.rank(first))?;
    if ins.len() == 1 {
        return Ok(vec![first]);
    }
    Ok(vec![c.add(Op::Concat { axis }, &ins)?])
}

/// A slice of `x` along one axis, `start..end` with step 1.
fn slice1(c: &mut Ctx, x: NodeId, axis: usize, start: Dim, end: Dim) -> Result<NodeId> {
    c.add(
        Op::Slice {
            axes: vec![axis],
            starts: vec![start],
            ends: vec![end],
            steps: vec![1],
        },
        &[x],
    )
}

/// `Split` into one slice per output: sizes from the `split` input (opset 13)
/// or attribute (before), else equal parts (`num_outputs` from opset 18,
/// where the last part may be smaller).
fn split(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let dims = c.shape(x);
    let axis = c.axis(c.attr_i("axis", 0)?, dims.len())?;
    let dim = dims[axis].clone();
    let given = if c.opset() >= 13 {
        c.opt_const_ints(1, "split")?
    } else {
        c.attr_ints("split")?
    };
    let sizes: Vec<Dim> = match given {
        Some(s) => {
            if let Some(v) = s.iter().find(|&&v| v < 0) {
                return Err(c.err(format!("split sizes {s:?} have the negative size {v}")));
            }
            if s.len() != c.n_outputs() {
                return Err(c.err(format!(
                    "split sizes {s:?} do not match the {} outputs",
                    c.n_outputs()
                )));
            }
            if let Some(d) = dim.as_const() {
                if s.iter().try_fold(0i64, |a, &v| a.checked_add(v)) != Some(d) {
                    return Err(c.err(format!(
                        "split sizes {s:?} do not add up to the dim {d} of axis {axis}"
                    )));
                }
            }
            s.into_iter().map(Dim::constant).collect()
        }
        None => {
            let n = if c.opset() >= 18 {
                match c.attr_opt_i("num_outputs")? {
                    Some(n) if n as usize != c.n_outputs() => {
                        return Err(c.attr_err(
                            "num_outputs",
                            format!("is {n} but the node has {} outputs", c.n_outputs()),
                        ))
                    }
                    Some(n) => n as usize,
                    None => {
                        return Err(
                            c.err("needs either the `split` input or the `num_outputs` attribute")
                        )
                    }
                }
            } else {
                c.n_outputs()
            };
            if n == 0 {
                return Err(c.err("has no outputs"));
            }
            let nd = Dim::constant(n as i64);
            if c.opset() >= 18 {
                // Parts of ceil(dim / n); the last takes what is left.
                let chunk = dim.ceil_div(&nd);
                let last = dim.sub(&chunk.mul(&Dim::constant(n as i64 - 1)));
                let mut v = vec![chunk; n - 1];
                v.push(last);
                v
            } else {
                if let Some(d) = dim.as_const() {
                    if d % n as i64 != 0 {
                        return Err(c.err(format!(
                            "cannot split dim {d} of axis {axis} into {n} equal parts"
                        )));
                    }
                }
                vec![dim.floor_div(&nd); n]
            }
        }
    };
    if sizes.len() == 1 {
        return Ok(vec![x]);
    }
    let mut outs = Vec::with_capacity(sizes.len());
    let mut start = Dim::constant(0);
    for s in sizes {
        let end = start.add(&s);
        outs.push(slice1(c, x, axis, start, end.clone())?);
        start = end;
    }
    Ok(outs)
}

/// Magnitudes from here on are the "to the end" sentinels exporters write.
const SENTINEL: i64 = 1 << 40;

/// Normalises one `Slice` bound against `dim`: a negative bound counts from
/// the end, then the bound is clamped to `[0, dim]` for a positive step and
/// to `[-1, dim - 1]` for a negative one (the IR Slice contract).
fn slice_bound(c: &Ctx, v: &Dim, dim: &Dim, step: i64, what: &str) -> Result<Dim> {
    let (lo, hi) = if step > 0 {
        (Dim::constant(0), dim.clone())
    } else {
        (Dim::constant(-1), dim.sub(&Dim::constant(1)))
    };
    let v = match v.as_const() {
        Some(k) if k >= SENTINEL => return Ok(hi),
        Some(k) if k <= -SENTINEL => return Ok(lo),
        Some(k) if k < 0 => dim.add(v),
        Some(_) => v.clone(),
        None => match v.compare(&Dim::constant(0)) {
            Some(Ordering::Greater | Ordering::Equal) => v.clone(),
            Some(Ordering::Less) => dim.add(v),
            None => {
                return Err(c.err(format!(
                    "cannot tell whether the slice {what} `{v}` counts from the start or the end"
                )))
            }
        },
    };
    Ok(v.max_dim(&lo).min_dim(&hi))
}

/// `Slice`: bounds from inputs (opset 10) or attributes (before), made
/// explicit by [`slice_bound`]; axes sliced whole are dropped.
fn slice(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let dims = c.shape(x);
    let (starts, ends, axes, steps) = if c.opset() >= 10 {
        (
            c.dims(1, "starts")?,
            c.dims(2, "ends")?,
            c.opt_const_ints(3, "axes")?,
            c.opt_const_ints(4, "steps")?,
        )
    } else {
        let get = |name: &str| -> Result<Vec<Dim>> {
            Ok(c.attr_ints(name)?
                .ok_or_else(|| c.attr_err(name, "is required"))?
                .into_iter()
                .map(Dim::constant)
                .collect())
        };
        (get("starts")?, get("ends")?, c.attr_ints("axes")?, None)
    };
    let n = starts.len();
    if ends.len() != n {
        return Err(c.err(format!("{n} starts but {} ends", ends.len())));
    }
    let axes = match axes {
        Some(a) if a.len() != n => return Err(c.err(format!("{n} starts but {} axes", a.len()))),
        Some(a) => c.axes(&a, dims.len())?,
        None => (0..n).collect(),
    };
    if axes.iter().any(|&a| a >= dims.len()) {
        return Err(c.err(format!("{n} starts for rank {}", dims.len())));
    }
    let steps = steps.unwrap_or_else(|| vec![1; n]);
    if steps.len() != n {
        return Err(c.err(format!("{n} starts but {} steps", steps.len())));
    }
    let (mut ax, mut st, mut en, mut sp) = (vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let (a, step) = (axes[i], steps[i]);
        if step == 0 {
            return Err(c.err("slice steps must not be 0"));
        }
        if step == i64::MIN {
            return Err(c.err(format!("slice step {step} is out of range")));
        }
        let d = &dims[a];
        let s = slice_bound(c, &starts[i], d, step, "start")?;
        let e = slice_bound(c, &ends[i], d, step, "end")?;
        if step == 1 && s.is(0) && e == *d {
            continue;
        }
        ax.push(a);
        st.push(s);
        en.push(e);
        sp.push(step);
    }
    if ax.is_empty() {
        return Ok(vec![x]);
    }
    Ok(vec![c.add(
        Op::Slice {
            axes: ax,
            starts: st,
            ends: en,
            steps: sp,
        },
        &[x],
    )?])
}

/// `Shape`, with the `start`/`end` attributes of opset 15 clamped to the rank.
fn shape_of(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let r = c.rank(x) as i64;
    let norm = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = norm(c.attr_i("start", 0)?);
    let end = norm(c.attr_i("end", r)?).max(start);
    Ok(vec![c.add(Op::ShapeOf { start, end }, &[x])?])
}

/// The single element of input `i`, which must be a scalar or a 1-element tensor.
fn scalar_dim(c: &Ctx, i: usize, what: &str) -> Result<Dim> {
    let v = c.dims(i, what)?;
    match v.as_slice() {
        [d] => Ok(d.clone()),
        _ => Err(c.err(format!("{what} must be a scalar, got {} values", v.len()))),
    }
}

/// `Range`: an IR range for integers (bounds may be symbolic, the step must
/// be a constant); a constant computed here for floats.
fn range(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let start = c.req(0)?;
    let dtype = c.dtype(start);
    if dtype.is_int() {
        let s = scalar_dim(c, 0, "start")?;
        let l = scalar_dim(c, 1, "limit")?;
        let d = scalar_dim(c, 2, "delta")?
            .as_const()
            .ok_or_else(|| c.not_known(2, "delta"))?;
        if d == 0 {
            return Err(c.err("delta must not be 0"));
        }
        if d == i64::MIN {
            return Err(c.err(format!("delta {d} is out of range")));
        }
        return Ok(vec![c.add(
            Op::Range {
                dtype,
                start: s,
                limit: l,
                delta: d,
            },
            &[],
        )?]);
    }
    let one = |c: &Ctx, i: usize, what: &str| -> Result<f64> {
        let t = c.const_tensor(i, what)?;
        match t.data().to_f64_vec().as_slice() {
            [v] => Ok(*v),
            v => Err(c.err(format!("{what} must be a scalar, got {} values", v.len()))),
        }
    };
    let (s, l, d) = (
        one(c, 0, "start")?,
        one(c, 1, "limit")?,
        one(c, 2, "delta")?,
    );
    if d == 0.0 || !d.is_finite() || !s.is_finite() || !l.is_finite() {
        return Err(c.err(format!("cannot make a range from {s} to {l} by {d}")));
    }
    // Saturating: a count beyond u64 is over the budget all the same.
    let n = ((l - s) / d).ceil().max(0.0) as u64;
    c.claim_constant(
        &format!("a range from {s} to {l} by {d} ({n} elements)"),
        n,
        dtype,
    )?;
    let n = usize::try_from(n).map_err(|_| c.err(format!("{n} elements do not fit in memory")))?;
    let t = Tensor::new(
        vec![n],
        TensorData::from_f64(dtype, (0..n).map(|i| s + i as f64 * d)),
    )
    .map_err(|m| c.err(m))?;
    Ok(vec![c.constant(t)?])
}

/// `ConstantOfShape`: the `value` scalar (default f32 0) expanded to the shape.
fn constant_of_shape(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let shape = c.dims(0, "shape")?;
    let value = match c.attr_tensor("value")? {
        Some(t) if t.len() == 1 => t.reshape(vec![]).map_err(|m| c.attr_err("value", m))?,
        Some(t) => {
            return Err(c.attr_err("value", format!("must hold one element, got {}", t.len())))
        }
        None => Tensor::scalar(0.0f32),
    };
    c.check_dims(
        &shape,
        value.dtype(),
        &format!("the shape {}", Shape(shape.clone())),
    )?;
    let v = c.constant(value)?;
    if shape.is_empty() {
        return Ok(vec![v]);
    }
    Ok(vec![c.add(
        Op::Expand {
            shape: Shape(shape),
        },
        &[v],
    )?])
}

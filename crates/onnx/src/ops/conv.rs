//! Convolution: ONNX `Conv` to the IR's `Conv`, with `auto_pad` resolved
//! into explicit (possibly symbolic) pads and the bias as a broadcast `Add`.
//! The attribute reading ([`geometry`]) is shared with `ConvInteger`.

use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use tcc_ir::{BinaryOp, Dim, NodeId, Op};

/// Registers the convolutions.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "Conv", 1, conv);
}

/// Reads an attribute of one non-negative integer per spatial axis, or `default`.
fn per_axis(c: &Ctx, name: &str, sp: usize, default: usize) -> Result<Vec<usize>> {
    match c.attr_ints(name)? {
        None => Ok(vec![default; sp]),
        Some(v) if v.len() != sp => Err(c.attr_err(
            name,
            format!("has {} values for {sp} spatial axes: {v:?}", v.len()),
        )),
        Some(v) => v
            .iter()
            .map(|&x| {
                usize::try_from(x)
                    .ok()
                    .filter(|&x| x >= 1)
                    .ok_or_else(|| c.attr_err(name, format!("must be at least 1, got {v:?}")))
            })
            .collect(),
    }
}

/// The geometry of an ONNX convolution (`Conv`, `ConvInteger`), read from
/// the node's attributes and its operands' shapes.
pub(super) struct Geometry {
    /// The kernel's spatial sizes: the weights' dims, or `kernel_shape`
    /// where the weights' are symbolic.
    pub kernel: Vec<Dim>,
    /// Step per spatial axis.
    pub strides: Vec<usize>,
    /// Zeros added before each spatial axis.
    pub pads_begin: Vec<Dim>,
    /// Zeros added after each spatial axis.
    pub pads_end: Vec<Dim>,
    /// Spacing of the kernel taps per spatial axis.
    pub dilations: Vec<usize>,
    /// Number of channel groups.
    pub group: usize,
}

impl Geometry {
    /// The core `Conv` op of this geometry.
    pub fn op(&self) -> Op {
        Op::Conv {
            strides: self.strides.clone(),
            pads_begin: self.pads_begin.clone(),
            pads_end: self.pads_end.clone(),
            dilations: self.dilations.clone(),
            group: self.group,
        }
    }
}

/// Reads the convolution attributes of the node (`kernel_shape`, `strides`,
/// `dilations`, `group`, `auto_pad`, `pads`) for input `x`
/// (`[n, c, spatial..]`) and weights `w` (`[m, c / group, kernel..]`).
///
/// `auto_pad` is resolved here: `VALID` pads nothing; `SAME_UPPER` and
/// `SAME_LOWER` pad so that `out = ceil(in / stride)`, the total
/// `max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - in)` split
/// evenly with the odd element at the end (upper) or the beginning (lower).
/// With symbolic spatial sizes the pads are symbolic dims.
pub(super) fn geometry(c: &Ctx, x: NodeId, w: NodeId) -> Result<Geometry> {
    let (xs, ws) = (c.shape(x), c.shape(w));
    if xs.len() < 3 || ws.len() != xs.len() {
        return Err(c.err(format!(
            "{} needs an input of rank 3 or more and weights of the same rank, got {} and {}",
            c.op_type(),
            c.ty(x),
            c.ty(w)
        )));
    }
    let sp = xs.len() - 2;
    let mut kernel: Vec<Dim> = ws[2..].to_vec();
    if let Some(ks) = c.attr_ints("kernel_shape")? {
        if ks.len() != sp {
            return Err(c.attr_err(
                "kernel_shape",
                format!("has {} values for {sp} spatial axes: {ks:?}", ks.len()),
            ));
        }
        for (i, &k) in ks.iter().enumerate() {
            if kernel[i].as_const().is_some_and(|d| d != k) {
                return Err(c.attr_err(
                    "kernel_shape",
                    format!("{ks:?} does not match the weights {}", c.ty(w)),
                ));
            }
            kernel[i] = Dim::constant(k);
        }
    }
    let strides = per_axis(c, "strides", sp, 1)?;
    let dilations = per_axis(c, "dilations", sp, 1)?;
    let group = c.attr_i("group", 1)?;
    let group = usize::try_from(group)
        .ok()
        .filter(|&g| g >= 1)
        .ok_or_else(|| c.attr_err("group", format!("must be at least 1, got {group}")))?;
    let auto_pad = c.attr_s("auto_pad", "NOTSET")?;
    let (pads_begin, pads_end) = match auto_pad.as_str() {
        "NOTSET" => match c.attr_ints("pads")? {
            None => (vec![Dim::constant(0); sp], vec![Dim::constant(0); sp]),
            Some(p) if p.len() != 2 * sp || p.iter().any(|&v| v < 0) => {
                return Err(c.attr_err(
                    "pads",
                    format!("must be {} non-negative values, got {p:?}", 2 * sp),
                ))
            }
            Some(p) => (
                p[..sp].iter().map(|&v| Dim::constant(v)).collect(),
                p[sp..].iter().map(|&v| Dim::constant(v)).collect(),
            ),
        },
        "VALID" => (vec![Dim::constant(0); sp], vec![Dim::constant(0); sp]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let (mut begin, mut end) = (Vec::with_capacity(sp), Vec::with_capacity(sp));
            for i in 0..sp {
                let (input, s) = (&xs[i + 2], Dim::constant(strides[i] as i64));
                let out = input.ceil_div(&s);
                let reach = kernel[i]
                    .sub(&Dim::constant(1))
                    .mul(&Dim::constant(dilations[i] as i64))
                    .add(&Dim::constant(1));
                let total = out
                    .sub(&Dim::constant(1))
                    .mul(&s)
                    .add(&reach)
                    .sub(input)
                    .max_dim(&Dim::constant(0));
                let half = total.floor_div(&Dim::constant(2));
                let rest = total.sub(&half);
                if auto_pad == "SAME_UPPER" {
                    begin.push(half);
                    end.push(rest);
                } else {
                    begin.push(rest);
                    end.push(half);
                }
            }
            (begin, end)
        }
        other => {
            return Err(c.attr_err(
                "auto_pad",
                format!("must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got `{other}`"),
            ))
        }
    };
    Ok(Geometry {
        kernel,
        strides,
        pads_begin,
        pads_end,
        dilations,
        group,
    })
}

/// `Conv`: `x` is `[n, c, spatial..]`, `w` is `[m, c / group, kernel..]`,
/// and the optional bias `b` is `[m]`; the attributes are read by
/// [`geometry`].
fn conv(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let (x, w) = (c.req(0)?, c.req(1)?);
    let g = geometry(c, x, w)?;
    let sp = g.kernel.len();
    let y = c.add(g.op(), &[x, w])?;
    let Some(b) = c.input(2) else {
        return Ok(vec![y]);
    };
    if c.rank(b) != 1 {
        return Err(c.err(format!("the bias must be a vector, got {}", c.ty(b))));
    }
    // `[m]` becomes `[m, 1, ..]`, which broadcasts over `[n, m, out..]`.
    let mut dims = c.shape(b);
    dims.extend(std::iter::repeat_n(Dim::constant(1), sp));
    let b = c.reshape(b, dims)?;
    Ok(vec![c.binary(BinaryOp::Add, y, b)?])
}

//! Padding: ONNX `Pad` in all its opset forms to the IR's `Pad`.
//!
//! Before opset 11 the pads and the fill value are attributes; from 11 they are inputs, the pads known at compile time
//! (symbolic where they come from shapes) and the fill value an optional
//! scalar input that may be computed at run time. Opset 18 adds an optional
//! `axes` input that names the padded axes; the others get no padding.

use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use tcc_ir::{Dim, NodeId, Op, PadMode};

/// Registers `Pad`.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "Pad", 1, pad);
}

fn pad(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let rank = c.rank(x);
    let mode_name = c.attr_s("mode", "constant")?;
    let mode = PadMode::from_name(&mode_name)
        .filter(|m| *m != PadMode::Wrap || c.opset() >= 19)
        .ok_or_else(|| {
            c.attr_err(
                "mode",
                format!(
                    "must be constant, reflect or edge (or wrap from opset 19), got `{mode_name}`"
                ),
            )
        })?;
    let (pads, axes) = if c.opset() < 11 {
        let p = c
            .attr_ints("pads")?
            .ok_or_else(|| c.attr_err("pads", "is required"))?;
        (p.into_iter().map(Dim::constant).collect::<Vec<_>>(), None)
    } else {
        let axes = if c.opset() >= 18 {
            c.opt_const_ints(3, "axes")?
        } else {
            None
        };
        (c.dims(1, "pads")?, axes)
    };
    let axes = match axes {
        Some(a) => c.axes(&a, rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(c.err(format!(
            "pads {pads:?} must hold {} values, a begin and an end for each of {} axes",
            2 * axes.len(),
            axes.len()
        )));
    }
    let n = axes.len();
    let mut pads_begin = vec![Dim::constant(0); rank];
    let mut pads_end = vec![Dim::constant(0); rank];
    for (i, &ax) in axes.iter().enumerate() {
        pads_begin[ax] = pads[i].clone();
        pads_end[ax] = pads[n + i].clone();
    }
    let op = Op::Pad {
        mode,
        pads_begin,
        pads_end,
    };
    if mode != PadMode::Constant {
        return Ok(vec![c.add(op, &[x])?]);
    }
    let dtype = c.dtype(x);
    let value = if c.opset() < 11 {
        let v = c.attr_f("value", 0.0)?;
        c.scalar(v as f64, dtype)?
    } else {
        match c.input(2) {
            None => c.scalar(0.0, dtype)?,
            Some(v) => {
                let ty = c.ty(v);
                if ty.dtype != dtype || !ty.shape.numel().is(1) || ty.rank() > 1 {
                    return Err(c.err(format!(
                        "the constant value must be one element of {dtype}, got {ty}"
                    )));
                }
                c.reshape(v, vec![])?
            }
        }
    };
    Ok(vec![c.add(op, &[x, value])?])
}

//! Everything else: `Constant` (its value charged to the model's budget of
//! constant bytes), `Identity`, `Dropout` (inference: the input
//! itself and an all-true mask), `Trilu` and `CumSum`.

use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use tcc_ir::{NodeId, Op, Tensor};

/// Registers the remaining ops.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "Constant", 1, constant);
    reg(r, "Identity", 1, |c| Ok(vec![c.req(0)?]));
    reg(r, "Dropout", 1, dropout);
    reg(r, "Trilu", 14, |c| {
        let x = c.req(0)?;
        let upper = c.attr_bool("upper", true)?;
        let k = match c.opt_const_ints(1, "k")? {
            None => 0,
            Some(v) if v.len() == 1 => v[0],
            Some(v) => return Err(c.err(format!("k must be a scalar, got {v:?}"))),
        };
        Ok(vec![c.add(Op::Trilu { upper, k }, &[x])?])
    });
    reg(r, "CumSum", 11, |c| {
        let x = c.req(0)?;
        let a = match c.const_ints(1, "axis")?.as_slice() {
            [a] => *a,
            v => return Err(c.err(format!("axis must be a scalar, got {v:?}"))),
        };
        let axis = c.axis(a, c.rank(x))?;
        let exclusive = c.attr_bool("exclusive", false)?;
        let reverse = c.attr_bool("reverse", false)?;
        Ok(vec![c.add(
            Op::CumSum {
                axis,
                exclusive,
                reverse,
            },
            &[x],
        )?])
    });
}

/// `Constant`: from `value`, `value_float(s)` or `value_int(s)`; string and
/// sparse values are not supported.
fn constant(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let t = if let Some(t) = c.attr_tensor("value")? {
        t
    } else if let Some(v) = c.attr_opt_f("value_float")? {
        Tensor::scalar(v)
    } else if let Some(v) = c.attr_floats("value_floats")? {
        c.claim_constant("value_floats", v.len() as u64, tcc_ir::DType::F32)?;
        Tensor::from_vec(vec![v.len()], v).map_err(|m| c.err(m))?
    } else if let Some(v) = c.attr_opt_i("value_int")? {
        Tensor::scalar(v)
    } else if let Some(v) = c.attr_ints("value_ints")? {
        c.claim_constant("value_ints", v.len() as u64, tcc_ir::DType::I64)?;
        Tensor::from_vec(vec![v.len()], v).map_err(|m| c.err(m))?
    } else {
        for a in ["value_string", "value_strings", "sparse_value"] {
            if c.has_attr(a) {
                return Err(c.attr_err(a, "is not supported: tcc has no string or sparse tensors"));
            }
        }
        return Err(c.err("has no value attribute"));
    };
    Ok(vec![c.constant(t)?])
}

/// `Dropout` at inference: the input itself, and a mask that keeps everything.
/// A model that asks for training mode is rejected.
fn dropout(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    if c.opset() >= 12 {
        if let Some(v) = c.opt_const_ints(2, "training_mode")? {
            if v.iter().any(|&t| t != 0) {
                return Err(c.err("training mode is not supported"));
            }
        }
    } else if c.opset() < 7 && c.attr_i("is_test", 0)? == 0 {
        return Err(c.attr_err("is_test", "training mode is not supported"));
    }
    if c.n_outputs() < 2 {
        return Ok(vec![x]);
    }
    // At inference nothing is dropped: the mask is all true.
    let t = c.scalar(1.0, tcc_ir::DType::Bool)?;
    let shape = c.ty(x).shape;
    let mask = c.add(Op::Expand { shape }, &[t])?;
    Ok(vec![x, mask])
}

//! Reductions: the `ReduceX` family (axes as attribute or, from opset 13 for
//! `ReduceSum` and 18 for the rest, as input; `keepdims`;
//! `noop_with_empty_axes`), the compound reductions lowered to core ops, and
//! `ArgMax`/`ArgMin`.
//!
//! `ReduceL2`, `ReduceSumSquare`, `ReduceLogSum` and `ReduceLogSumExp` expand
//! into several rounding ops and are built through [`Ctx::widened`] (in f32
//! for f16 and bf16, rounded once). The core reductions are one op each;
//! `ReduceL1` rounds once (its `Abs` is exact) and `ArgMax`/`ArgMin` never.

use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use tcc_ir::{BinaryOp, Dim, NodeId, Op, ReduceKind, UnaryOp};

/// Registers the reductions.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "ReduceSum", 1, |c| {
        reduce(c, 13, Kind::Plain(ReduceKind::Sum))
    });
    reg(r, "ReduceMean", 1, |c| {
        reduce(c, 18, Kind::Plain(ReduceKind::Mean))
    });
    reg(r, "ReduceMax", 1, |c| {
        reduce(c, 18, Kind::Plain(ReduceKind::Max))
    });
    reg(r, "ReduceMin", 1, |c| {
        reduce(c, 18, Kind::Plain(ReduceKind::Min))
    });
    reg(r, "ReduceProd", 1, |c| {
        reduce(c, 18, Kind::Plain(ReduceKind::Prod))
    });
    reg(r, "ReduceL1", 1, |c| reduce(c, 18, Kind::L1));
    reg(r, "ReduceL2", 1, |c| {
        reduce(c, 18, Kind::Compound(Compound::L2))
    });
    reg(r, "ReduceSumSquare", 1, |c| {
        reduce(c, 18, Kind::Compound(Compound::SumSquare))
    });
    reg(r, "ReduceLogSum", 1, |c| {
        reduce(c, 18, Kind::Compound(Compound::LogSum))
    });
    reg(r, "ReduceLogSumExp", 1, |c| {
        reduce(c, 18, Kind::Compound(Compound::LogSumExp))
    });
    reg(r, "ArgMax", 1, |c| arg_reduce(c, true));
    reg(r, "ArgMin", 1, |c| arg_reduce(c, false));
}

/// What a `ReduceX` op computes.
#[derive(Clone, Copy)]
enum Kind {
    /// A core reduction.
    Plain(ReduceKind),
    /// `sum(|x|)`.
    L1,
    /// A reduction that rounds more than once.
    Compound(Compound),
}

/// The reductions that expand into several rounding ops.
#[derive(Clone, Copy)]
enum Compound {
    /// `sqrt(sum(x^2))`.
    L2,
    /// `sum(x^2)`.
    SumSquare,
    /// `log(sum(x))`.
    LogSum,
    /// `log(sum(exp(x - m))) + m` with `m = max(x)`, for stability.
    LogSumExp,
}

/// Reads the axes of a `ReduceX` node: the input from opset `input_since`,
/// the attribute before. `None` means "not given".
fn axes_of(c: &Ctx, input_since: i64) -> Result<Option<Vec<i64>>> {
    if c.opset() >= input_since {
        c.opt_const_ints(1, "axes")
    } else {
        c.attr_ints("axes")
    }
}

/// `op` over sorted `axes` (the input itself when there are none).
fn core(c: &mut Ctx, kind: ReduceKind, x: NodeId, axes: &[usize], keep: bool) -> Result<NodeId> {
    if axes.is_empty() {
        return Ok(x);
    }
    c.add(
        Op::Reduce {
            kind,
            axes: axes.to_vec(),
            keep_dims: keep,
        },
        &[x],
    )
}

fn reduce(c: &mut Ctx, input_since: i64, kind: Kind) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let rank = c.rank(x);
    let keep = c.attr_bool("keepdims", true)?;
    let noop = c.attr_bool("noop_with_empty_axes", false)?;
    let given = axes_of(c, input_since)?.unwrap_or_default();
    let mut axes = if given.is_empty() {
        if noop {
            Vec::new()
        } else {
            (0..rank).collect()
        }
    } else {
        c.axes(&given, rank)?
    };
    axes.sort_unstable();
    let y = match kind {
        Kind::Plain(k) => core(c, k, x, &axes, keep)?,
        Kind::L1 => {
            let a = c.unary(UnaryOp::Abs, x)?;
            core(c, ReduceKind::Sum, a, &axes, keep)?
        }
        // `log(sum(exp(x)))` of no axes is `x` itself.
        Kind::Compound(Compound::LogSumExp) if axes.is_empty() => x,
        Kind::Compound(k) => c.widened(&[x], |c, w| compound(c, k, w[0], &axes, keep))?,
    };
    Ok(vec![y])
}

/// `kind` of `x` over `axes` (sorted), in `x`'s dtype.
fn compound(c: &mut Ctx, kind: Compound, x: NodeId, axes: &[usize], keep: bool) -> Result<NodeId> {
    Ok(match kind {
        Compound::L2 => {
            let sq = c.binary(BinaryOp::Mul, x, x)?;
            let s = core(c, ReduceKind::Sum, sq, axes, keep)?;
            c.unary(UnaryOp::Sqrt, s)?
        }
        Compound::SumSquare => {
            let sq = c.binary(BinaryOp::Mul, x, x)?;
            core(c, ReduceKind::Sum, sq, axes, keep)?
        }
        Compound::LogSum => {
            let s = core(c, ReduceKind::Sum, x, axes, keep)?;
            c.unary(UnaryOp::Log, s)?
        }
        Compound::LogSumExp => {
            let m = core(c, ReduceKind::Max, x, axes, true)?;
            let d = c.binary(BinaryOp::Sub, x, m)?;
            let e = c.unary(UnaryOp::Exp, d)?;
            let s = core(c, ReduceKind::Sum, e, axes, true)?;
            let l = c.unary(UnaryOp::Log, s)?;
            let y = c.binary(BinaryOp::Add, l, m)?;
            if keep {
                y
            } else {
                let dims: Vec<Dim> = c
                    .shape(y)
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, d)| d)
                    .collect();
                c.reshape(y, dims)?
            }
        }
    })
}

fn arg_reduce(c: &mut Ctx, max: bool) -> Result<Vec<NodeId>> {
    let x = c.req(0)?;
    let axis = c.axis(c.attr_i("axis", 0)?, c.rank(x))?;
    let keep_dims = c.attr_bool("keepdims", true)?;
    let select_last = c.attr_bool("select_last_index", false)?;
    Ok(vec![c.add(
        Op::ArgReduce {
            max,
            axis,
            keep_dims,
            select_last,
        },
        &[x],
    )?])
}

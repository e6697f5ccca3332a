//! Fused elementwise loops: an expression of elementwise ops evaluated per element in scalar
//! code ([`eval`]), and the same expressions on vectors along a row ([`vec_eval`]), which the
//! fused attention applies inside its softmax passes.

use inkwell::values::{BasicValue, BasicValueEnum, IntValue, PointerValue};
use inkwell::{FloatPredicate, IntPredicate};
use tcc_ir::{DType, Dim, Graph};

use super::{bcast_strides_to, rows_of, strides, Ctx, Parallel};
use crate::error::Result;
use crate::kernels::KernelBuilder;
use crate::lower::scalar::{self, load, store};
use crate::lower::schedule::{Expr, Step};

/// A [`crate::lower::schedule::Kernel::Fused`] step: `expr` of the step's inputs (broadcast to
/// the result), one element at a time, a row per line of the result's innermost axis.
pub(super) fn fused(c: &Ctx<'_, '_>, graph: &Graph, step: &Step, expr: &Expr) -> Result<Parallel> {
    let out_ty = graph.ty(step.node);
    let out_shape = &out_ty.shape;
    let zero = c.kb.i64_const(0);
    let dims = c.dim_list(out_shape.dims())?;
    let mut acc = vec![(zero, c.dim_list(&strides(out_shape))?)];
    for &leaf in &step.inputs {
        acc.push((
            zero,
            c.dim_list(&bcast_strides_to(&graph.ty(leaf).shape, out_shape.dims()))?,
        ));
    }
    let dtype = out_ty.dtype;
    c.strided(&dims, &acc, c.r0, c.r1, &mut |c, offs, _| {
        let mut leaves = Vec::new();
        for (k, &leaf) in step.inputs.iter().enumerate() {
            leaves.push(load(&c.kb, graph.ty(leaf).dtype, c.inputs[k], offs[k + 1])?);
        }
        let v = eval(c, expr, &leaves)?;
        store(&c.kb, dtype, c.dest, offs[0], v)
    })?;
    // A row per line of the innermost axis; its work weighs each element by its expression's
    // cost, so that a loop of library calls (T5's relative-position buckets take a `log` per
    // element of `seq x seq`) splits across threads where as many additions would not.
    let last = out_shape.dims().last().cloned().unwrap_or(Dim::constant(1));
    Ok(Parallel::rows(
        rows_of(out_shape),
        last.mul(&Dim::constant(element_work(expr).max(1))),
    ))
}

/// The work of one element of `e`, in simple operations: 1 an op, [`CALL_WORK`] a
/// transcendental function or a float `pow` (a call into the C library, or `erf`'s inline
/// polynomials).
fn element_work(e: &Expr) -> i64 {
    use tcc_ir::BinaryOp as B;
    match e {
        Expr::Leaf(..) | Expr::Scalar(_) => 0,
        Expr::Unary(u, x, d) => {
            let call = d.is_float() && u.is_transcendental();
            (if call { CALL_WORK } else { 1 }) + element_work(x)
        }
        Expr::Binary(op, x, y, d) => {
            let call = *op == B::Pow && d.is_float();
            (if call { CALL_WORK } else { 1 }) + element_work(x) + element_work(y)
        }
        Expr::Where(parts, _) => 1 + parts.iter().map(element_work).sum::<i64>(),
        Expr::Cast(x, _) => 1 + element_work(x),
    }
}

/// The work [`element_work`] counts for a call to a transcendental function: tens of
/// operations (glibc's `log` and `exp` in f64 take 15-25 ns here).
const CALL_WORK: i64 = 32;

/// Evaluates a fused expression.
pub(super) fn eval<'ctx>(
    c: &Ctx<'_, 'ctx>,
    e: &Expr,
    leaves: &[BasicValueEnum<'ctx>],
) -> Result<BasicValueEnum<'ctx>> {
    Ok(match e {
        Expr::Leaf(k, _) => leaves[*k],
        Expr::Scalar(t) => scalar::constant(&c.kb, t),
        Expr::Unary(u, x, _) => {
            let d = x.dtype();
            scalar::unary(c.m, &c.kb, *u, d, eval(c, x, leaves)?)?
        }
        Expr::Binary(op, x, y, _) => {
            let d = x.dtype();
            let xv = eval(c, x, leaves)?;
            let yv = eval(c, y, leaves)?;
            if *op == tcc_ir::BinaryOp::Pow {
                // The exponent may be of another dtype than the base.
                scalar::pow(c.m, &c.kb, d, y.dtype(), xv, yv)?
            } else {
                scalar::binary(c.m, &c.kb, *op, d, xv, yv)?
            }
        }
        Expr::Where(parts, _) => {
            let cond = eval(c, &parts[0], leaves)?.into_int_value();
            let a = eval(c, &parts[1], leaves)?;
            let b = eval(c, &parts[2], leaves)?;
            c.b().build_select(cond, a, b, "w").map_err(c.kb.err())?
        }
        Expr::Cast(x, to) => {
            let from = x.dtype();
            scalar::cast(&c.kb, from, *to, eval(c, x, leaves)?)?
        }
    })
}

/// A leaf of a row expression in vectors: its element at the row's start, and whether it
/// runs along the row (stride 1) or is one value for the whole row (stride 0).
#[derive(Clone, Copy)]
pub(super) struct RowLeafRef<'ctx> {
    pub(super) ptr: PointerValue<'ctx>,
    pub(super) dtype: DType,
    pub(super) contiguous: bool,
}

/// Whether [`vec_eval`] computes `e`: f32 and bool values only, the ops below; `leaf_ok(k)`
/// says whether leaf `k` can be read in vectors.
pub(super) fn vec_supported(e: &Expr, leaf_ok: &dyn Fn(usize) -> bool) -> bool {
    use tcc_ir::{BinaryOp as B, UnaryOp as U};
    let vt = |d: DType| matches!(d, DType::F32 | DType::Bool);
    match e {
        Expr::Leaf(k, d) => vt(*d) && leaf_ok(*k),
        Expr::Scalar(t) => vt(t.dtype()) && t.len() == 1,
        Expr::Unary(u, x, d) => {
            vt(*d)
                && matches!(
                    (u, x.dtype()),
                    (U::Neg | U::Abs | U::IsNaN, DType::F32) | (U::Not, DType::Bool)
                )
                && vec_supported(x, leaf_ok)
        }
        Expr::Binary(op, x, y, d) => {
            vt(*d)
                && x.dtype() == y.dtype()
                && matches!(
                    (op, x.dtype()),
                    (
                        B::Add
                            | B::Sub
                            | B::Mul
                            | B::Div
                            | B::Min
                            | B::Max
                            | B::Equal
                            | B::Less
                            | B::LessEqual
                            | B::Greater
                            | B::GreaterEqual,
                        DType::F32,
                    ) | (B::And | B::Or | B::Xor, DType::Bool)
                )
                && vec_supported(x, leaf_ok)
                && vec_supported(y, leaf_ok)
        }
        Expr::Where(parts, d) => vt(*d) && parts.iter().all(|p| vec_supported(p, leaf_ok)),
        Expr::Cast(..) => false,
    }
}

/// Evaluates `e` (checked by [`vec_supported`]) on one vector of a row at column `j`: leaf 0
/// is `x`, leaf `k` is `leaves[k - 1]`. Each op is the IEEE operation the scalar kernel emits
/// (the same predicates, `llvm.minimum` / `llvm.maximum`), lane by lane.
pub(super) fn vec_eval<'ctx>(
    kb: &KernelBuilder<'_, 'ctx>,
    e: &Expr,
    x: inkwell::values::VectorValue<'ctx>,
    leaves: &[RowLeafRef<'ctx>],
    j: IntValue<'ctx>,
    mask: Option<inkwell::values::VectorValue<'ctx>>,
) -> Result<inkwell::values::VectorValue<'ctx>> {
    use inkwell::values::VectorValue as V;
    use tcc_ir::{BinaryOp as B, UnaryOp as U};
    let b = kb.builder();
    let ctx = kb.context();
    let lanes = kb.lanes();
    let i8v = ctx.i8_type().vec_type(lanes);
    let to_bool = |v: V<'ctx>| -> Result<V<'ctx>> {
        b.build_int_compare(IntPredicate::NE, v, i8v.const_zero(), "b")
            .map_err(kb.err())
    };
    let rec = |e: &Expr| vec_eval(kb, e, x, leaves, j, mask);
    Ok(match e {
        Expr::Leaf(0, _) => x,
        Expr::Leaf(k, _) => {
            let leaf = leaves[*k - 1];
            match (leaf.dtype, leaf.contiguous) {
                (DType::F32, true) => kb.load_f32(leaf.ptr, j, mask)?,
                (DType::Bool, true) => {
                    // SAFETY: j is a column of the row the leaf covers.
                    let p = unsafe { b.build_in_bounds_gep(ctx.i8_type(), leaf.ptr, &[j], "lp") }
                        .map_err(kb.err())?;
                    let raw = match mask {
                        None => {
                            let l = b.build_load(i8v, p, "lb").map_err(kb.err())?;
                            // Bytes of a bool tensor: only 1-byte alignment is known.
                            l.as_instruction_value()
                                .ok_or_else(|| kb.internal("a load is not an instruction"))?
                                .set_alignment(1)
                                .map_err(|_| kb.internal("could not set a load's alignment"))?;
                            l.into_vector_value()
                        }
                        Some(m) => {
                            let f = kb.intrinsic(
                                "llvm.masked.load",
                                &[i8v.into(), p.get_type().into()],
                            )?;
                            kb.call(
                                f,
                                &[
                                    p.into(),
                                    ctx.i32_type().const_int(1, false).into(),
                                    m.into(),
                                    i8v.const_zero().into(),
                                ],
                                "lb",
                            )?
                            .into_vector_value()
                        }
                    };
                    to_bool(raw)?
                }
                (d, _) => {
                    let one = load(kb, d, leaf.ptr, kb.i64_const(0))?;
                    kb.splat(one, "ls")?
                }
            }
        }
        Expr::Scalar(t) => kb.splat(scalar::constant(kb, t), "sc")?,
        Expr::Unary(u, a, _) => {
            let a = rec(a)?;
            match u {
                U::Neg => b.build_float_neg(a, "neg").map_err(kb.err())?,
                U::Abs => {
                    let f = kb.intrinsic("llvm.fabs", &[a.get_type().into()])?;
                    kb.call(f, &[a.into()], "abs")?.into_vector_value()
                }
                U::IsNaN => b
                    .build_float_compare(FloatPredicate::UNO, a, a, "nan")
                    .map_err(kb.err())?,
                U::Not => b.build_not(a, "not").map_err(kb.err())?,
                U::Sqrt
                | U::Exp
                | U::Log
                | U::Erf
                | U::Tanh
                | U::Sigmoid
                | U::Relu
                | U::Reciprocal
                | U::Floor
                | U::Ceil
                | U::Round
                | U::Sign
                | U::Sin
                | U::Cos
                | U::Tan
                | U::Asin
                | U::Acos
                | U::Atan
                | U::Sinh
                | U::Cosh
                | U::Asinh
                | U::Acosh
                | U::Atanh => {
                    return Err(
                        kb.internal("an op without a vector form (vec_supported refuses it)")
                    )
                }
            }
        }
        Expr::Binary(op, p, q, _) => {
            let (p, q) = (rec(p)?, rec(q)?);
            let fcmp = |pred| b.build_float_compare(pred, p, q, "cmp").map_err(kb.err());
            match op {
                B::Add => b.build_float_add(p, q, "add").map_err(kb.err())?,
                B::Sub => b.build_float_sub(p, q, "sub").map_err(kb.err())?,
                B::Mul => b.build_float_mul(p, q, "mul").map_err(kb.err())?,
                B::Div => b.build_float_div(p, q, "div").map_err(kb.err())?,
                B::Min | B::Max => {
                    let name = if *op == B::Min {
                        "llvm.minimum"
                    } else {
                        "llvm.maximum"
                    };
                    let f = kb.intrinsic(name, &[p.get_type().into()])?;
                    kb.call(f, &[p.into(), q.into()], "mm")?.into_vector_value()
                }
                B::Equal => fcmp(FloatPredicate::OEQ)?,
                B::Less => fcmp(FloatPredicate::OLT)?,
                B::LessEqual => fcmp(FloatPredicate::OLE)?,
                B::Greater => fcmp(FloatPredicate::OGT)?,
                B::GreaterEqual => fcmp(FloatPredicate::OGE)?,
                B::And => b.build_and(p, q, "and").map_err(kb.err())?,
                B::Or => b.build_or(p, q, "or").map_err(kb.err())?,
                B::Xor => b.build_xor(p, q, "xor").map_err(kb.err())?,
                B::Pow | B::Mod | B::FMod => {
                    return Err(
                        kb.internal("an op without a vector form (vec_supported refuses it)")
                    )
                }
            }
        }
        Expr::Where(parts, _) => {
            let cnd = rec(&parts[0])?;
            let (p, q) = (rec(&parts[1])?, rec(&parts[2])?);
            b.build_select(cnd, p, q, "w")
                .map_err(kb.err())?
                .into_vector_value()
        }
        Expr::Cast(..) => return Err(kb.internal("a cast in a vector row expression")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcc_ir::{BinaryOp, UnaryOp};

    fn leaf(k: usize, d: DType) -> Box<Expr> {
        Box::new(Expr::Leaf(k, d))
    }

    /// A loop of library calls weighs as much as tens of additions per element: T5's bucket
    /// loop (a `log` of each of `seq x seq` elements) must split across threads at sizes where
    /// the same loop of additions runs as one task.
    #[test]
    fn library_calls_weigh_more_than_arithmetic() {
        let f = DType::F32;
        let add = Expr::Binary(BinaryOp::Add, leaf(0, f), leaf(1, f), f);
        assert_eq!(element_work(&add), 1);
        let log = Expr::Binary(
            BinaryOp::Add,
            Box::new(Expr::Unary(UnaryOp::Log, leaf(0, f), f)),
            leaf(1, f),
            f,
        );
        assert_eq!(element_work(&log), CALL_WORK + 1);
        let pow = Expr::Binary(BinaryOp::Pow, leaf(0, f), leaf(1, f), f);
        assert_eq!(element_work(&pow), CALL_WORK);
        // Integer `pow` is a loop of multiplications, not a call; `neg` is one op.
        let ipow = Expr::Binary(
            BinaryOp::Pow,
            leaf(0, DType::I64),
            leaf(1, DType::I64),
            DType::I64,
        );
        assert_eq!(element_work(&ipow), 1);
        let neg = Expr::Unary(UnaryOp::Neg, leaf(0, f), f);
        assert_eq!(element_work(&neg), 1);
        // 128 x 128 elements of `log`: above the threshold that splits a step; of `add`, below.
        let elements = 128 * 128;
        assert!(elements * element_work(&log) >= crate::lower::run::PARALLEL_WORK);
        assert!(elements * element_work(&add) < crate::lower::run::PARALLEL_WORK);
    }
}

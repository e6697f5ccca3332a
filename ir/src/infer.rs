//! Type inference: the result type of every op, and the value of small integer
//! results where shapes and constants determine it.
//!
//! The second part is what folds the shape arithmetic that exporters write
//! (`Shape`, `Gather`, `Unsqueeze`, `Concat` feeding a `Reshape`): each step
//! carries its elements as [`Dim`]s, so the importer can read the target of a
//! `Reshape` as `[batch, seq, 2, 64]` and the `Shape` chain becomes dead code.

use crate::dim::Dim;
use crate::dtype::DType;
use crate::error::{invalid, Result};
use crate::op::{BinaryOp, Op, PadMode, UnaryOp};
use crate::shape::{broadcast, Shape, TensorType};
use crate::tensor::TensorData;

/// Infers the types of a fused op's expansion.
struct TypeBuilder;

impl crate::fused::Builder for TypeBuilder {
    type Value = TensorType;

    fn op(&mut self, op: Op, args: &[TensorType]) -> Result<TensorType> {
        let tys: Vec<&TensorType> = args.iter().collect();
        Ok(infer(&op, &tys, &vec![None; args.len()])?.0)
    }

    fn constant(&mut self, value: crate::tensor::Tensor) -> Result<TensorType> {
        Ok(TensorType::new(value.dtype(), Shape::fixed(value.shape())))
    }

    fn rank(&self, value: &TensorType) -> usize {
        value.rank()
    }

    fn dims(&self, value: &TensorType) -> Vec<crate::Dim> {
        value.shape.dims().to_vec()
    }
}

/// Integer tensors with at most this many elements carry known values.
pub const KNOWN_LIMIT: usize = 256;

/// True if a tensor of `shape` is small enough to carry known values: the
/// product of its dims, a zero dim counted as 1, is at most [`KNOWN_LIMIT`].
/// Counting zeros as 1 keeps an empty tensor of shape `[0, 2^40, 2^40]` (a
/// valid constant) from carrying values whose strides and offsets overflow.
fn fits_known(shape: &[usize]) -> bool {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d.max(1)))
        .is_some_and(|n| n <= KNOWN_LIMIT)
}

/// `known` if it keeps the invariants every consumer of known values relies
/// on: its shape [`fits_known`] and it holds one value per element. A value
/// that breaks them (a `reshape` whose element counts agree only modulo 2^64,
/// a `dims` node of a huge empty shape) is dropped: known values only make
/// shape arithmetic foldable, so doing without them is always right.
fn checked_known(known: Option<Known>) -> Option<Known> {
    known.filter(|k| {
        fits_known(&k.shape) && crate::shape::checked_numel(&k.shape) == Some(k.values.len())
    })
}

/// The elements of a small integer (or bool) tensor, known at compile time as
/// symbolic dims. Bools are 0 and 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Known {
    /// The tensor's concrete shape.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub values: Vec<Dim>,
}

impl Known {
    /// The elements as constants, if all are.
    pub fn ints(&self) -> Option<Vec<i64>> {
        self.values.iter().map(Dim::as_const).collect()
    }
}

/// Infers the result type of `op` on operands of types `tys`, and its value
/// where `known` values of the operands determine it.
///
/// Fails with [`crate::Error::Invalid`] when the operands do not fit the op:
/// wrong dtypes, axes out of range, or shapes that cannot agree.
pub fn infer(
    op: &Op,
    tys: &[&TensorType],
    known: &[Option<&Known>],
) -> Result<(TensorType, Option<Known>)> {
    let name = op.name();
    let err = |m: String| invalid(name, m);
    let t0 = tys.first().copied();
    let k0 = known.first().copied().flatten();
    let rank0 = t0.map(|t| t.rank()).unwrap_or(0);
    let check_axis = |axis: usize, rank: usize| -> Result<()> {
        if axis >= rank {
            Err(invalid(
                name,
                format!("axis {axis} is out of range for rank {rank}"),
            ))
        } else {
            Ok(())
        }
    };

    let out: (TensorType, Option<Known>) = match op {
        Op::Gemm { .. }
        | Op::QGemm { .. }
        | Op::Attention { .. }
        | Op::AddLayerNorm { .. }
        | Op::RmsNorm { .. }
        | Op::Fused { .. } => {
            let dtype = t0.map(|t| t.dtype).unwrap_or(DType::F32);
            let args: Vec<TensorType> = tys.iter().map(|t| (*t).clone()).collect();
            let ty = crate::fused::expand(op, &args, dtype, &mut TypeBuilder)
                .map_err(|e| err(format!("in its expansion: {e}")))?;
            (ty, None)
        }
        Op::PackedAttention { .. } => {
            let (q, k, v, m) = (tys[0], tys[1], tys[2], tys[3]);
            for (what, t) in [("q", q), ("k", k), ("v", v)] {
                if t.rank() != 3 {
                    return Err(err(format!(
                        "{what} must be packed heads [tokens, h, d], got {t}"
                    )));
                }
            }
            float_only(name, q)?;
            for (what, t) in [("k", k), ("v", v)] {
                if t.dtype != q.dtype {
                    return Err(err(format!("{what} is {t}, q is {q}")));
                }
                let (a, b) = (&t.shape.dims()[0], &q.shape.dims()[0]);
                if dims_differ(a, b) {
                    return Err(err(format!(
                        "{what} has {a} tokens, q {b}: they must be packed by one mask"
                    )));
                }
            }
            check_mask(name, m)?;
            let args: Vec<TensorType> = tys.iter().map(|t| (*t).clone()).collect();
            let mut ty = crate::fused::expand(op, &args, q.dtype, &mut TypeBuilder)
                .map_err(|e| err(format!("in its expansion: {e}")))?;
            // The expansion's `pack` makes as many rows as `q` has (it names `q`'s first dim
            // when that is a symbol): say so when it is not one.
            ty.shape.0[0] = q.shape.dims()[0].clone();
            (ty, None)
        }
        Op::Pack { tokens } => {
            let (x, m) = (tys[0], tys[1]);
            if !crate::dim::is_symbol_name(tokens) {
                return Err(err(format!(
                    "tokens must be a symbol name ([A-Za-z_][A-Za-z0-9_]*), got `{tokens}`"
                )));
            }
            if x.rank() < 2 {
                return Err(err(format!(
                    "x must be [b, s, ..] (rank 2 or more), got {x}"
                )));
            }
            check_mask(name, m)?;
            let xd = x.shape.dims();
            if xd[..2]
                .iter()
                .zip(m.shape.dims())
                .any(|(a, b)| dims_differ(a, b))
            {
                return Err(err(format!(
                    "x of shape {} does not start with the mask's dims {}",
                    x.shape, m.shape
                )));
            }
            let mut dims = vec![Dim::sym(tokens)];
            dims.extend(xd[2..].iter().cloned());
            (TensorType::new(x.dtype, dims), None)
        }
        Op::Unpack => {
            let (y, m) = (tys[0], tys[1]);
            if y.rank() < 1 {
                return Err(err(format!(
                    "y must be packed rows [tokens, ..] (rank 1 or more), got {y}"
                )));
            }
            check_mask(name, m)?;
            let mut dims = m.shape.dims().to_vec();
            dims.extend(y.shape.dims()[1..].iter().cloned());
            (TensorType::new(y.dtype, dims), None)
        }
        Op::Input { .. } => return Err(err("inputs have no operands to infer from".into())),
        Op::Const(c) => {
            let v = &c.value;
            let ty = TensorType::new(v.dtype(), Shape::fixed(v.shape()));
            let k = (matches!(
                v.dtype(),
                DType::I64 | DType::I32 | DType::I8 | DType::U8 | DType::Bool
            ) && fits_known(v.shape()))
            .then(|| Known {
                shape: v.shape().to_vec(),
                values: v.data().to_i64_vec().into_iter().map(Dim::from).collect(),
            });
            (ty, k)
        }
        Op::Dims {
            dtype,
            shape,
            values,
        } => {
            if !dtype.is_int() {
                return Err(err(format!("dims must have an integer dtype, not {dtype}")));
            }
            if crate::shape::checked_numel(shape) != Some(values.len()) {
                return Err(err(format!(
                    "shape {shape:?} does not hold {} values",
                    values.len()
                )));
            }
            (
                TensorType::new(*dtype, Shape::fixed(shape)),
                Some(Known {
                    shape: shape.clone(),
                    values: values.clone(),
                }),
            )
        }
        Op::Unary(u) => {
            let t = t0.unwrap();
            match u {
                UnaryOp::Not if t.dtype != DType::Bool => {
                    return Err(err(format!("needs bool, got {}", t.dtype)))
                }
                UnaryOp::Not => {}
                _ if u.float_only() && !t.dtype.is_float() => {
                    return Err(err(format!("is defined on floats, got {}", t.dtype)))
                }
                _ if !t.dtype.is_numeric() => {
                    return Err(err(format!("is defined on numbers, got {}", t.dtype)))
                }
                _ => {}
            }
            let dtype = if *u == UnaryOp::IsNaN {
                DType::Bool
            } else {
                t.dtype
            };
            let k = match (u, k0) {
                (UnaryOp::Neg, Some(k)) => Some(map_known(k, |d| Some(d.neg()))),
                (UnaryOp::Abs, Some(k)) => k
                    .ints()
                    .map(|v| const_known(&k.shape, v.into_iter().map(i64::wrapping_abs))),
                (UnaryOp::Not, Some(k)) => k
                    .ints()
                    .map(|v| const_known(&k.shape, v.into_iter().map(|x| (x == 0) as i64))),
                _ => None,
            }
            .flatten();
            (TensorType::new(dtype, t.shape.clone()), k)
        }
        Op::Binary(b) => {
            let (a, c) = (tys[0], tys[1]);
            if *b != BinaryOp::Pow && a.dtype != c.dtype {
                return Err(err(format!(
                    "operand dtypes differ: {} and {}",
                    a.dtype, c.dtype
                )));
            }
            if b.is_logical() && a.dtype != DType::Bool {
                return Err(err(format!("needs bool operands, got {}", a.dtype)));
            }
            if !b.is_logical() && !a.dtype.is_numeric() && *b != BinaryOp::Equal {
                return Err(err(format!("needs numeric operands, got {}", a.dtype)));
            }
            let shape = broadcast(&a.shape, &c.shape).map_err(err)?;
            let dtype = if b.is_comparison() {
                DType::Bool
            } else {
                a.dtype
            };
            let k = match (known[0], known[1], shape.as_fixed()) {
                (Some(x), Some(y), Some(out)) if !a.dtype.is_float() => {
                    binary_known(*b, x, y, &out)
                }
                _ => None,
            };
            (TensorType::new(dtype, shape), k)
        }
        Op::Where => {
            let (c, a, b) = (tys[0], tys[1], tys[2]);
            if c.dtype != DType::Bool {
                return Err(err(format!("condition must be bool, got {}", c.dtype)));
            }
            if a.dtype != b.dtype {
                return Err(err(format!(
                    "branch dtypes differ: {} and {}",
                    a.dtype, b.dtype
                )));
            }
            let shape =
                broadcast(&broadcast(&c.shape, &a.shape).map_err(err)?, &b.shape).map_err(err)?;
            let k = match (known[0], known[1], known[2], shape.as_fixed()) {
                (Some(kc), Some(ka), Some(kb), Some(out)) if fits_known(&out) => {
                    kc.ints().map(|cv| {
                        let (ic, ia, ib) = (
                            bcast_index(&out, &kc.shape),
                            bcast_index(&out, &ka.shape),
                            bcast_index(&out, &kb.shape),
                        );
                        let values = (0..ic.len())
                            .map(|i| {
                                if cv[ic[i]] != 0 {
                                    ka.values[ia[i]].clone()
                                } else {
                                    kb.values[ib[i]].clone()
                                }
                            })
                            .collect();
                        Known { shape: out, values }
                    })
                }
                _ => None,
            };
            (TensorType::new(a.dtype, shape), k)
        }
        Op::Cast { to } => {
            let t = t0.unwrap();
            let k = match k0 {
                Some(k) if to.is_int() && !t.dtype.is_float() => Some(k.clone()),
                Some(k) if *to == DType::Bool => k
                    .ints()
                    .and_then(|v| const_known(&k.shape, v.into_iter().map(|x| (x != 0) as i64))),
                _ => None,
            };
            (TensorType::new(*to, t.shape.clone()), k)
        }
        Op::MatMul => {
            let (a, b) = (tys[0], tys[1]);
            if a.dtype != b.dtype {
                return Err(err(format!(
                    "operand dtypes differ: {} and {}",
                    a.dtype, b.dtype
                )));
            }
            if !a.dtype.is_numeric() {
                return Err(err(format!("needs numeric operands, got {}", a.dtype)));
            }
            let dims = matmul_shape(a, b).map_err(err)?;
            (TensorType::new(a.dtype, dims), None)
        }
        Op::MatMulInteger { saturate_pairs } => {
            let (a, b, az, bz) = (tys[0], tys[1], tys[2], tys[3]);
            for (what, t) in [("a", a), ("b", b)] {
                if !matches!(t.dtype, DType::U8 | DType::I8) || t.rank() < 2 {
                    return Err(err(format!(
                        "{what} must be a u8 or i8 matrix (rank 2 or more), got {t}"
                    )));
                }
            }
            if *saturate_pairs && (a.dtype, b.dtype) != (DType::U8, DType::I8) {
                return Err(err(format!(
                    "saturate_pairs models u8 x i8 products, got {} x {}",
                    a.dtype, b.dtype
                )));
            }
            let dims = matmul_shape(a, b).map_err(err)?;
            let (ad, bd) = (a.shape.dims(), b.shape.dims());
            let (ra, rb) = (ad.len(), bd.len());
            let mut a_rows = ad.to_vec();
            a_rows[ra - 1] = Dim::constant(1);
            let mut b_cols = bd.to_vec();
            b_cols[rb - 2] = Dim::constant(1);
            for (what, zp, of, target) in [
                ("a_zp", az, a, Shape(a_rows)),
                ("b_zp", bz, b, Shape(b_cols)),
            ] {
                if zp.dtype != of.dtype {
                    return Err(err(format!(
                        "{what} has dtype {}, its operand {}",
                        zp.dtype, of.dtype
                    )));
                }
                if broadcast(&zp.shape, &target).ok().as_ref() != Some(&target) {
                    return Err(err(format!(
                        "{what} of shape {} does not broadcast to {target}",
                        zp.shape
                    )));
                }
            }
            (TensorType::new(DType::I32, dims), None)
        }
        Op::Conv {
            strides,
            pads_begin,
            pads_end,
            dilations,
            group,
        } => {
            let (x, w) = (tys[0], tys[1]);
            (
                conv_type(x, w, strides, pads_begin, pads_end, dilations, *group).map_err(err)?,
                None,
            )
        }
        Op::Pad {
            mode,
            pads_begin,
            pads_end,
        } => {
            let t = t0.unwrap();
            if pads_begin.len() != t.rank() || pads_end.len() != t.rank() {
                return Err(err(format!(
                    "{} begin and {} end pads for rank {}",
                    pads_begin.len(),
                    pads_end.len(),
                    t.rank()
                )));
            }
            if *mode == PadMode::Constant {
                let v = tys[1];
                if v.dtype != t.dtype || v.rank() != 0 {
                    return Err(err(format!(
                        "the fill value must be a {} scalar, got {v}",
                        t.dtype
                    )));
                }
            }
            let mut dims = Vec::with_capacity(t.rank());
            for (axis, d) in t.shape.dims().iter().enumerate() {
                let n = d.add(&pads_begin[axis]).add(&pads_end[axis]);
                if n.as_const().is_some_and(|v| v < 0) {
                    return Err(err(format!(
                        "axis {axis} of size {d} cannot lose more than it has (pads {} and {})",
                        pads_begin[axis], pads_end[axis]
                    )));
                }
                dims.push(n);
            }
            (TensorType::new(t.dtype, dims), None)
        }
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            let t = t0.unwrap();
            float_only(name, t)?;
            check_axis(*axis, t.rank())?;
            (t.clone(), None)
        }
        Op::LayerNorm { axis, .. } => {
            let t = t0.unwrap();
            float_only(name, t)?;
            check_axis(*axis, t.rank())?;
            let norm = Shape(t.shape.dims()[*axis..].to_vec());
            for (what, s) in [("scale", tys[1]), ("bias", tys[2])] {
                if s.dtype != t.dtype {
                    return Err(err(format!(
                        "{what} has dtype {}, input {}",
                        s.dtype, t.dtype
                    )));
                }
                let b = broadcast(&norm, &s.shape).map_err(|m| err(format!("{what}: {m}")))?;
                if b.rank() != norm.rank() {
                    return Err(err(format!(
                        "{what} of shape {} has more axes than the normalised {}",
                        s.shape, norm
                    )));
                }
            }
            (t.clone(), None)
        }
        Op::Reduce {
            axes, keep_dims, ..
        } => {
            let t = t0.unwrap();
            if !t.dtype.is_numeric() {
                return Err(err(format!("needs numbers, got {}", t.dtype)));
            }
            check_sorted_axes(name, axes, t.rank())?;
            let mut dims = Vec::new();
            for (i, d) in t.shape.dims().iter().enumerate() {
                if !axes.contains(&i) {
                    dims.push(d.clone());
                } else if *keep_dims {
                    dims.push(Dim::constant(1));
                }
            }
            (TensorType::new(t.dtype, dims), None)
        }
        Op::ArgReduce {
            axis, keep_dims, ..
        } => {
            let t = t0.unwrap();
            check_axis(*axis, t.rank())?;
            let mut dims = t.shape.0.clone();
            if *keep_dims {
                dims[*axis] = Dim::constant(1);
            } else {
                dims.remove(*axis);
            }
            (TensorType::new(DType::I64, dims), None)
        }
        Op::CumSum { axis, .. } => {
            let t = t0.unwrap();
            check_axis(*axis, t.rank())?;
            (t.clone(), None)
        }
        Op::Reshape { shape } => {
            let t = t0.unwrap();
            if let Some(d) = t.shape.numel().sub(&shape.numel()).as_const() {
                if d != 0 {
                    return Err(err(format!(
                        "cannot reshape {} into {}: the element counts differ",
                        t.shape, shape
                    )));
                }
            }
            let k = match (k0, shape.as_fixed()) {
                (Some(k), Some(s)) => Some(Known {
                    shape: s,
                    values: k.values.clone(),
                }),
                _ => None,
            };
            (TensorType::new(t.dtype, shape.clone()), k)
        }
        Op::Transpose { perm } => {
            let t = t0.unwrap();
            let mut seen = vec![false; t.rank()];
            if perm.len() != t.rank()
                || perm
                    .iter()
                    .any(|&p| p >= t.rank() || std::mem::replace(&mut seen[p], true))
            {
                return Err(err(format!(
                    "{perm:?} is not a permutation of {} axes",
                    t.rank()
                )));
            }
            let dims = perm
                .iter()
                .map(|&p| t.shape.0[p].clone())
                .collect::<Vec<_>>();
            (TensorType::new(t.dtype, dims), None)
        }
        Op::Expand { shape } => {
            let t = t0.unwrap();
            let out = broadcast(&t.shape, shape).map_err(err)?;
            let k = match (k0, out.as_fixed()) {
                (Some(k), Some(o)) if fits_known(&o) => {
                    let idx = bcast_index(&o, &k.shape);
                    Some(Known {
                        shape: o,
                        values: idx.into_iter().map(|i| k.values[i].clone()).collect(),
                    })
                }
                _ => None,
            };
            (TensorType::new(t.dtype, out), k)
        }
        Op::Concat { axis } => {
            let t = t0.unwrap();
            check_axis(*axis, t.rank())?;
            let mut dims = t.shape.0.clone();
            for (i, o) in tys.iter().enumerate().skip(1) {
                if o.dtype != t.dtype || o.rank() != t.rank() {
                    return Err(err(format!("operand {i} is {o}, operand 0 is {t}")));
                }
                for (j, d) in o.shape.dims().iter().enumerate() {
                    if j == *axis {
                        dims[j] = dims[j].add(d);
                    } else if let (Some(x), Some(y)) = (dims[j].as_const(), d.as_const()) {
                        if x != y {
                            return Err(err(format!(
                                "operand {i} of shape {} does not match {} off the axis",
                                o.shape, t.shape
                            )));
                        }
                    }
                }
            }
            let k = if known.iter().all(|k| k.is_some()) {
                let ks: Vec<&Known> = known.iter().map(|k| k.unwrap()).collect();
                Some(concat_known(&ks, *axis))
            } else {
                None
            };
            (TensorType::new(t.dtype, dims), k)
        }
        Op::Slice {
            axes,
            starts,
            ends,
            steps,
        } => {
            let t = t0.unwrap();
            if axes.len() != starts.len() || axes.len() != ends.len() || axes.len() != steps.len() {
                return Err(err(
                    "axes, starts, ends and steps must have the same length".into(),
                ));
            }
            let mut dims = t.shape.0.clone();
            for (i, &ax) in axes.iter().enumerate() {
                check_axis(ax, t.rank())?;
                if axes[..i].contains(&ax) {
                    return Err(err(format!("axis {ax} is sliced twice")));
                }
                dims[ax] = slice_len(&starts[i], &ends[i], steps[i])
                    .ok_or_else(|| err("step 0".into()))?;
            }
            let k = match (
                k0,
                dims.iter()
                    .map(|d| d.as_const())
                    .collect::<Option<Vec<_>>>(),
            ) {
                (Some(k), Some(_)) => slice_known(k, axes, starts, ends, steps),
                _ => None,
            };
            (TensorType::new(t.dtype, dims), k)
        }
        Op::Gather { axis } => {
            let (t, i) = (tys[0], tys[1]);
            check_axis(*axis, t.rank())?;
            index_dtype(name, i)?;
            let mut dims = t.shape.0[..*axis].to_vec();
            dims.extend(i.shape.0.iter().cloned());
            dims.extend(t.shape.0[axis + 1..].iter().cloned());
            let k = match (known[0], known[1]) {
                (Some(kd), Some(ki)) => gather_known(kd, ki, *axis),
                _ => None,
            };
            (TensorType::new(t.dtype, dims), k)
        }
        Op::GatherElements { axis } => {
            let (t, i) = (tys[0], tys[1]);
            check_axis(*axis, t.rank())?;
            index_dtype(name, i)?;
            if i.rank() != t.rank() {
                return Err(err(format!(
                    "indices have rank {}, data {}",
                    i.rank(),
                    t.rank()
                )));
            }
            (TensorType::new(t.dtype, i.shape.clone()), None)
        }
        Op::GatherNd { batch_dims } => {
            let (t, i) = (tys[0], tys[1]);
            index_dtype(name, i)?;
            let b = *batch_dims;
            if i.rank() < 1 || i.rank() <= b || t.rank() <= b {
                return Err(err(format!(
                    "indices {} and data {} do not fit batch_dims {b}",
                    i.shape, t.shape
                )));
            }
            let last = i.shape.0[i.rank() - 1]
                .as_const()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| {
                    err("the last dim of the indices must be a non-negative constant".into())
                })?;
            if b.checked_add(last).is_none_or(|n| n > t.rank()) {
                return Err(err(format!(
                    "index tuples of length {last} exceed data rank {}",
                    t.rank()
                )));
            }
            let mut dims = i.shape.0[..i.rank() - 1].to_vec();
            dims.extend(t.shape.0[b + last..].iter().cloned());
            (TensorType::new(t.dtype, dims), None)
        }
        Op::Tile { repeats } => {
            let t = t0.unwrap();
            if repeats.len() != t.rank() {
                return Err(err(format!(
                    "{} repeats for rank {}",
                    repeats.len(),
                    t.rank()
                )));
            }
            let dims = t
                .shape
                .0
                .iter()
                .zip(repeats)
                .map(|(d, r)| d.mul(r))
                .collect::<Vec<_>>();
            (TensorType::new(t.dtype, dims), None)
        }
        Op::Range {
            dtype,
            start,
            limit,
            delta,
        } => {
            if !dtype.is_int() {
                return Err(err(format!("range makes integers, not {dtype}")));
            }
            let len = slice_len(start, limit, *delta).ok_or_else(|| err("delta 0".into()))?;
            let k = match (start.as_const(), len.as_const()) {
                (Some(s), Some(n)) if (n as usize) <= KNOWN_LIMIT => Some(Known {
                    shape: vec![n as usize],
                    // Wrapping, as the coefficients of dims do.
                    values: (0..n)
                        .map(|i| Dim::constant(s.wrapping_add(i.wrapping_mul(*delta))))
                        .collect(),
                }),
                _ => None,
            };
            (TensorType::new(*dtype, vec![len]), k)
        }
        Op::ShapeOf { start, end } => {
            let t = t0.unwrap();
            if start > end || *end > t.rank() {
                return Err(err(format!(
                    "dims {start}..{end} of a rank-{} tensor",
                    t.rank()
                )));
            }
            let values = t.shape.0[*start..*end].to_vec();
            (
                TensorType::new(DType::I64, Shape::fixed(&[values.len()])),
                Some(Known {
                    shape: vec![values.len()],
                    values,
                }),
            )
        }
        Op::Trilu { .. } => {
            let t = t0.unwrap();
            if t.rank() < 2 {
                return Err(err(format!("needs rank 2 or more, got {}", t.rank())));
            }
            (t.clone(), None)
        }
    };
    let _ = rank0;
    Ok((out.0, checked_known(out.1)))
}

/// The result type of `Conv` on `x` and `w`, or what is wrong.
fn conv_type(
    x: &TensorType,
    w: &TensorType,
    strides: &[usize],
    pads_begin: &[Dim],
    pads_end: &[Dim],
    dilations: &[usize],
    group: usize,
) -> std::result::Result<TensorType, String> {
    if !x.dtype.is_float() || w.dtype != x.dtype {
        return Err(format!(
            "needs float operands of one dtype, got {} and {}",
            x.dtype, w.dtype
        ));
    }
    if x.rank() < 3 || w.rank() != x.rank() {
        return Err(format!(
            "needs x of rank 3 or more and weights of the same rank, got {} and {}",
            x.shape, w.shape
        ));
    }
    let sp = x.rank() - 2;
    if strides.len() != sp
        || pads_begin.len() != sp
        || pads_end.len() != sp
        || dilations.len() != sp
    {
        return Err(format!(
            "{sp} spatial axes need {sp} strides, pads and dilations each, got {}, {} + {} and {}",
            strides.len(),
            pads_begin.len(),
            pads_end.len(),
            dilations.len()
        ));
    }
    if group == 0 || strides.contains(&0) || dilations.contains(&0) {
        return Err(format!(
            "group {group}, strides {strides:?} and dilations {dilations:?} must be at least 1"
        ));
    }
    if let Some(p) = pads_begin
        .iter()
        .chain(pads_end)
        .find(|p| p.as_const().is_some_and(|v| v < 0))
    {
        return Err(format!("pads must not be negative, got {p}"));
    }
    let (xd, wd) = (x.shape.dims(), w.shape.dims());
    let g = i64::try_from(group).map_err(|_| format!("group {group} is too large"))?;
    if let (Some(c), Some(cg)) = (xd[1].as_const(), wd[1].as_const()) {
        // Checked: a weights' channel count times the group may overflow (a fuzzer's case).
        match cg.checked_mul(g) {
            Some(taken) if taken == c => {}
            taken => {
                return Err(format!(
                    "x has {c} channels, but weights {} with group {group} take {}",
                    w.shape,
                    taken.map_or("more than i64 holds".to_string(), |t| t.to_string())
                ))
            }
        }
    }
    if let Some(m) = wd[0].as_const() {
        if m % g != 0 {
            return Err(format!(
                "{m} output channels do not split into {group} groups"
            ));
        }
    }
    let mut dims = vec![xd[0].clone(), wd[0].clone()];
    for i in 0..sp {
        let (input, k) = (&xd[i + 2], &wd[i + 2]);
        let reach = k
            .sub(&Dim::constant(1))
            .mul(&Dim::constant(dilations[i] as i64))
            .add(&Dim::constant(1));
        let span = input.add(&pads_begin[i]).add(&pads_end[i]).sub(&reach);
        let out = span
            .floor_div(&Dim::constant(strides[i] as i64))
            .add(&Dim::constant(1));
        if out.as_const().is_some_and(|v| v < 1) {
            return Err(format!(
                "spatial axis {i}: the kernel reaches {reach} elements, more than the {} of the padded input",
                input.add(&pads_begin[i]).add(&pads_end[i])
            ));
        }
        dims.push(out);
    }
    Ok(TensorType::new(x.dtype, dims))
}

/// The result dims of a batched matrix product of `a` (`[.., m, k]`) by `b`
/// (`[.., k, n]`): the broadcast batch dims, then `m` and `n`.
fn matmul_shape(a: &TensorType, b: &TensorType) -> std::result::Result<Vec<Dim>, String> {
    if a.rank() < 2 || b.rank() < 2 {
        return Err(format!(
            "operands must have rank 2 or more, got {} and {}",
            a.shape, b.shape
        ));
    }
    let (ad, bd) = (a.shape.dims(), b.shape.dims());
    let (ra, rb) = (ad.len(), bd.len());
    if let (Some(x), Some(y)) = (ad[ra - 1].as_const(), bd[rb - 2].as_const()) {
        if x != y {
            return Err(format!("inner dims differ: {} and {}", a.shape, b.shape));
        }
    }
    let batch = broadcast(&Shape(ad[..ra - 2].to_vec()), &Shape(bd[..rb - 2].to_vec()))?;
    let mut dims = batch.0;
    dims.push(ad[ra - 2].clone());
    dims.push(bd[rb - 1].clone());
    Ok(dims)
}

/// Checks a key-padding mask (of `pack`, `unpack` and `packed_attention`): `[b, s]`, bool or
/// an integer type, whose nonzero entries mark the real tokens.
fn check_mask(name: &str, m: &TensorType) -> Result<()> {
    if m.rank() != 2 || !(m.dtype == DType::Bool || m.dtype.is_int()) {
        return Err(invalid(
            name,
            format!("the mask must be [b, s] of bool or an integer type, got {m}"),
        ));
    }
    Ok(())
}

/// True if two sizes cannot be equal: they differ by a constant other than 0 (`4` and `5`,
/// `seq` and `seq + 1`), as a reshape's element counts are compared. Sizes that may agree
/// for some binding of the symbols (`batch` and `2`) are checked by the interpreter.
fn dims_differ(a: &Dim, b: &Dim) -> bool {
    a.sub(b).as_const().is_some_and(|d| d != 0)
}

fn float_only(name: &str, t: &TensorType) -> Result<()> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        Err(invalid(
            name,
            format!("is defined on floats, got {}", t.dtype),
        ))
    }
}

fn index_dtype(name: &str, t: &TensorType) -> Result<()> {
    if matches!(t.dtype, DType::I64 | DType::I32) {
        Ok(())
    } else {
        Err(invalid(
            name,
            format!("indices must be i64 or i32, got {}", t.dtype),
        ))
    }
}

fn check_sorted_axes(name: &str, axes: &[usize], rank: usize) -> Result<()> {
    if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= rank) {
        return Err(invalid(
            name,
            format!("axes {axes:?} must be sorted, distinct and below rank {rank}"),
        ));
    }
    Ok(())
}

/// The number of elements of `start, start + step, ...` before `end`:
/// `max(0, ceil((end - start) / step))`. `None` for step 0.
pub fn slice_len(start: &Dim, end: &Dim, step: i64) -> Option<Dim> {
    if step == 0 {
        return None;
    }
    let span = if step > 0 {
        end.sub(start)
    } else {
        start.sub(end)
    };
    if let Some(span) = span.as_const() {
        // In 128 bits: `span + |step| - 1` may overflow i64, and |i64::MIN| does.
        let n = if span <= 0 {
            0
        } else {
            (i128::from(span) - 1) / i128::from(step).abs() + 1
        };
        return Some(Dim::constant(n as i64));
    }
    Some(
        // `saturating_abs`: |i64::MIN| is one past i64::MAX, and dividing an
        // i64 span by either gives the same ceiling.
        span.ceil_div(&Dim::constant(step.saturating_abs()))
            .max_dim(&Dim::constant(0)),
    )
}

/// For each element of `out`, the flat index of the element of a tensor of
/// shape `inp` that numpy broadcasting reads.
///
/// An empty `out` (a zero dim) reads nothing, whatever the other dims: a
/// tensor of shape `[0, 2^40, 2^40]` is a valid constant, and the strides of
/// its other dims would overflow.
pub fn bcast_index(out: &[usize], inp: &[usize]) -> Vec<usize> {
    if out.contains(&0) {
        return Vec::new();
    }
    let n: usize = out.iter().product();
    let r = out.len();
    let off = r - inp.len();
    let mut strides = vec![0usize; r];
    let mut s = 1;
    for i in (0..inp.len()).rev() {
        strides[i + off] = if inp[i] == 1 { 0 } else { s };
        s *= inp[i];
    }
    let mut idx = Vec::with_capacity(n);
    let mut pos = vec![0usize; r];
    for _ in 0..n {
        idx.push(pos.iter().zip(&strides).map(|(p, s)| p * s).sum());
        for ax in (0..r).rev() {
            pos[ax] += 1;
            if pos[ax] < out[ax] {
                break;
            }
            pos[ax] = 0;
        }
    }
    idx
}

fn map_known(k: &Known, f: impl Fn(&Dim) -> Option<Dim>) -> Option<Known> {
    Some(Known {
        shape: k.shape.clone(),
        values: k.values.iter().map(f).collect::<Option<_>>()?,
    })
}

fn const_known(shape: &[usize], v: impl Iterator<Item = i64>) -> Option<Known> {
    Some(Known {
        shape: shape.to_vec(),
        values: v.map(Dim::from).collect(),
    })
}

fn binary_known(b: BinaryOp, x: &Known, y: &Known, out: &[usize]) -> Option<Known> {
    if !fits_known(out) {
        return None;
    }
    let (ix, iy) = (bcast_index(out, &x.shape), bcast_index(out, &y.shape));
    let mut values = Vec::with_capacity(ix.len());
    for (&i, &j) in ix.iter().zip(&iy) {
        let (a, c) = (&x.values[i], &y.values[j]);
        let consts = a.as_const().zip(c.as_const());
        let v = match b {
            BinaryOp::Add => a.add(c),
            BinaryOp::Sub => a.sub(c),
            BinaryOp::Mul => a.mul(c),
            BinaryOp::Div => match consts {
                Some((_, 0)) => return None,
                Some((p, q)) => Dim::constant(p.wrapping_div(q)),
                // Sizes are non-negative, where truncation and floor agree.
                None => a.floor_div(c),
            },
            BinaryOp::Mod => match consts {
                Some((_, 0)) => return None,
                _ => a.rem(c),
            },
            BinaryOp::Min => a.min_dim(c),
            BinaryOp::Max => a.max_dim(c),
            BinaryOp::Equal => match consts {
                Some((p, q)) => Dim::constant((p == q) as i64),
                None if a == c => Dim::constant(1),
                // Symbols are at least 1: `seq` is never -1, `seq + 1` never `seq`.
                None if strictly_apart(a, c) => Dim::constant(0),
                None => return None,
            },
            BinaryOp::Less | BinaryOp::LessEqual | BinaryOp::Greater | BinaryOp::GreaterEqual => {
                let (p, q) = consts?;
                let r = match b {
                    BinaryOp::Less => p < q,
                    BinaryOp::LessEqual => p <= q,
                    BinaryOp::Greater => p > q,
                    _ => p >= q,
                };
                Dim::constant(r as i64)
            }
            BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => {
                let (p, q) = consts?;
                let (p, q) = (p != 0, q != 0);
                Dim::constant(match b {
                    BinaryOp::And => p && q,
                    BinaryOp::Or => p || q,
                    _ => p != q,
                } as i64)
            }
            BinaryOp::Pow | BinaryOp::FMod => return None,
        };
        values.push(v);
    }
    Some(Known {
        shape: out.to_vec(),
        values,
    })
}

/// True if `a > b` or `a < b` for every binding of the symbols.
fn strictly_apart(a: &Dim, b: &Dim) -> bool {
    let one = Dim::constant(1);
    let ge = |x: &Dim, y: &Dim| {
        matches!(
            x.compare(y),
            Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
        )
    };
    ge(a, &b.add(&one)) || ge(b, &a.add(&one))
}

fn concat_known(ks: &[&Known], axis: usize) -> Known {
    let outer: usize = ks[0].shape[..axis].iter().product();
    let mut shape = ks[0].shape.clone();
    shape[axis] = ks.iter().map(|k| k.shape[axis]).sum();
    let mut values = Vec::new();
    for o in 0..outer {
        for k in ks {
            let chunk: usize = k.shape[axis..].iter().product();
            values.extend(k.values[o * chunk..(o + 1) * chunk].iter().cloned());
        }
    }
    Known { shape, values }
}

fn slice_known(
    k: &Known,
    axes: &[usize],
    starts: &[Dim],
    ends: &[Dim],
    steps: &[i64],
) -> Option<Known> {
    let mut ranges: Vec<Vec<usize>> = k.shape.iter().map(|&d| (0..d).collect()).collect();
    for (i, &ax) in axes.iter().enumerate() {
        let (s, e, st) = (starts[i].as_const()?, ends[i].as_const()?, steps[i]);
        let mut v = Vec::new();
        let mut p = s;
        while (st > 0 && p < e) || (st < 0 && p > e) {
            v.push(usize::try_from(p).ok().filter(|&p| p < k.shape[ax])?);
            p += st;
        }
        ranges[ax] = v;
    }
    let shape: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
    let mut strides = vec![1usize; k.shape.len()];
    for i in (0..k.shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * k.shape[i + 1];
    }
    let mut values = Vec::new();
    let n: usize = shape.iter().product();
    let mut pos = vec![0usize; shape.len()];
    for _ in 0..n {
        let flat: usize = pos
            .iter()
            .enumerate()
            .map(|(ax, &p)| ranges[ax][p] * strides[ax])
            .sum();
        values.push(k.values[flat].clone());
        for ax in (0..shape.len()).rev() {
            pos[ax] += 1;
            if pos[ax] < shape[ax] {
                break;
            }
            pos[ax] = 0;
        }
    }
    Some(Known { shape, values })
}

fn gather_known(data: &Known, idx: &Known, axis: usize) -> Option<Known> {
    let ids = idx.ints()?;
    let dim = data.shape[axis] as i64;
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis + 1..].iter().product();
    let mut shape = data.shape[..axis].to_vec();
    shape.extend(&idx.shape);
    shape.extend(&data.shape[axis + 1..]);
    if !fits_known(&shape) {
        return None;
    }
    let mut values = Vec::new();
    for o in 0..outer {
        for &i in &ids {
            let i = if i < 0 { i + dim } else { i };
            if i < 0 || i >= dim {
                return None;
            }
            let base = (o * data.shape[axis] + i as usize) * inner;
            values.extend(data.values[base..base + inner].iter().cloned());
        }
    }
    Some(Known { shape, values })
}

/// Converts known constant values to tensor data of `dtype`, if all are constants.
pub fn known_to_data(k: &Known, dtype: DType) -> Option<TensorData> {
    Some(TensorData::from_i64(dtype, k.ints()?))
}

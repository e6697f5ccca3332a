//! `key_mask`: which values of a graph are functions of a key-padding mask input, the
//! analysis that padding elimination stands on.
//!
//! torch exports build attention's additive mask from the `attention_mask` input through
//! casts, unsqueezes, `(1 - mask) * min`, `where(mask, 0, -inf)` and, in recent
//! transformers, a vmap-style gather of the flattened mask at `batch_index * seq +
//! position` and-ed with an always-true query condition. Rather than match each exporter's
//! pattern, this module interprets the graph abstractly: every value gets a [`Fact`] that
//! says what it is in terms of the mask `m: [batch, seq]`, computed op by op from its
//! operands' facts ([`transfer`]). A value whose fact is a [`Fact::Mask`] placed at axes
//! `(b, j)` has, at every index `idx`, one value where `m[idx[b], idx[j]]` is nonzero (a real
//! token) and another where it is zero (padding), whatever its other indices are; so an
//! additive attention mask with fact `Mask { valid: 0, padded: <= -1e4 }` at `b = 0` and `j =
//! last axis` is exactly a key-padding mask, which depends on neither the query nor the head.
//!
//! The analysis assumes the mask input holds only 0 and 1 (as tokenizers make it): `(1 -
//! m) * min` is then `min` or 0. A compiled model that relies on it checks it at run time.
//! Facts are sound over-approximations: any op the analysis does not understand gives
//! [`Fact::Unknown`], and nothing built on Unknown is ever recognised.

use std::collections::HashMap;
use std::sync::Arc;

use tcc_ir::{BinaryOp, DType, Dim, Graph, NodeId, Op, ReduceKind, TensorType, UnaryOp};

/// A value of one element of a mask fact, at real or at padded positions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val {
    /// A number (of the value's dtype, exactly representable in it).
    Num(f64),
    /// A boolean.
    Bool(bool),
}

/// Where a mask fact's value reads the mask: `m[idx[b], idx[j]]` of the input `m`.
#[derive(Clone, Debug, PartialEq)]
pub struct At {
    /// The mask input's name.
    pub m: Arc<str>,
    /// The axis of the value that indexes the batch.
    pub b: usize,
    /// The axis that indexes the position (the key, in an attention mask).
    pub j: usize,
}

impl At {
    /// The same mask read at other axes, if both are known.
    fn moved(&self, b: Option<usize>, j: Option<usize>) -> Option<At> {
        Some(At {
            m: self.m.clone(),
            b: b?,
            j: j?,
        })
    }
}

/// What a value is in terms of a mask input.
#[derive(Clone, Debug, PartialEq)]
pub enum Fact {
    /// Nothing known.
    Unknown,
    /// Every element equals this value.
    Splat(Val),
    /// Integer index arithmetic: element `idx` equals `c + sum(coef[a] * idx[a])`, one
    /// coefficient per axis (as `range(0, n)` reshaped and scaled builds).
    Affine {
        /// The constant term.
        c: Dim,
        /// Per axis of the value.
        coef: Vec<Dim>,
    },
    /// Element `idx` is `valid` where `m[idx[at.b], idx[at.j]] != 0` and `padded` where it is
    /// 0.
    Mask {
        /// Where it reads the mask.
        at: At,
        /// The value at real positions.
        valid: Val,
        /// The value at padded positions.
        padded: Val,
    },
    /// Element `idx` depends only on whether sequence `idx[b]` has a real token: `nonempty`
    /// if it has one, `empty` if it has none (as the maximum over the keys of an additive
    /// key mask is: 0, or `-inf` for a row whose keys are all masked).
    PerSeq {
        /// The mask input's name.
        m: Arc<str>,
        /// The batch axis.
        b: usize,
        /// The value for a sequence with a real token.
        nonempty: Val,
        /// The value for a sequence with none.
        empty: Val,
    },
    /// Integer index tuples along the last axis (of size `parts.len()`), as a `concat` of
    /// affine values builds the indices of a `gather_nd`: part `k` is the affine value
    /// `(c, coef)` over the other axes.
    Tuple {
        /// Per tuple element, the constant term and the coefficients of the leading axes.
        parts: Vec<(Dim, Vec<Dim>)>,
    },
    /// The mask flattened row-major along axis `row` (the other axes of size 1): element `r`
    /// of that axis reads `m[r / seq, r % seq]`.
    Flat {
        /// The mask input's name.
        m: Arc<str>,
        /// The mask's dims, `[batch, seq]`.
        dims: [Dim; 2],
        /// The flattened axis.
        row: usize,
        /// The value at real positions.
        valid: Val,
        /// The value at padded positions.
        padded: Val,
    },
}

/// What [`transfer`] knows of an operand: its type, its fact and, for a constant, its value.
#[derive(Clone, Copy, Debug)]
pub struct Operand<'a> {
    /// The type.
    pub ty: &'a TensorType,
    /// The fact.
    pub fact: &'a Fact,
    /// The value, for a constant.
    pub value: Option<&'a tcc_ir::Tensor>,
}

/// The facts of every node of `graph` whose value is a function of one of `masks` (rank-2
/// inputs `[batch, seq]`, usually the one `attention_mask`), by node.
pub fn analyse(graph: &Graph, masks: &[NodeId]) -> HashMap<NodeId, Fact> {
    let mut facts: HashMap<NodeId, Fact> = HashMap::new();
    for id in graph.topo_order() {
        let fact = match graph.op(id) {
            Op::Input { name } if masks.contains(&id) => input_fact(name, graph.ty(id)),
            op => {
                let operands = graph.operands(id);
                let args: Vec<Operand> = operands
                    .iter()
                    .map(|&o| Operand {
                        ty: graph.ty(o),
                        fact: facts.get(&o).unwrap_or(&Fact::Unknown),
                        value: graph.const_value(o).map(|v| &**v),
                    })
                    .collect();
                transfer(op, graph.ty(id), &args)
            }
        };
        if fact != Fact::Unknown {
            facts.insert(id, fact);
        }
    }
    facts
}

/// The rank-2 integer or bool inputs of `graph` whose dims are the first input's first two
/// (`[batch, seq]`): the candidates for a key-padding mask.
pub fn mask_candidates(graph: &Graph) -> Vec<NodeId> {
    let Some(&first) = graph.inputs().first() else {
        return Vec::new();
    };
    let lead = graph
        .ty(first)
        .shape
        .dims()
        .iter()
        .take(2)
        .cloned()
        .collect::<Vec<_>>();
    graph
        .inputs()
        .iter()
        .copied()
        .filter(|&id| {
            let ty = graph.ty(id);
            ty.shape.rank() == 2
                && ty.shape.dims() == lead.as_slice()
                && (ty.dtype == DType::Bool || ty.dtype.is_int())
        })
        .collect()
}

/// If `fact` is an additive key-padding mask for scores of rank `rank` (`[batch, heads,
/// queries, keys]`, or any rank with the batch first and the keys last): 0 at real keys and
/// at most -1e4 at padded ones (`-inf`, torch's `finfo.min`, `-10000`), so that a padded
/// key's exponential in the softmax is exactly 0. Returns the mask input's name.
pub fn additive_key_mask(fact: &Fact, rank: usize) -> Option<&str> {
    match fact {
        Fact::Mask {
            at,
            valid: Val::Num(v),
            padded: Val::Num(p),
        } if *v == 0.0 && *p <= -1e4 && at.b == 0 && at.j + 1 == rank => Some(&at.m),
        _ => None,
    }
}

/// True if `fact` is false at every index of a sequence with a real token, the batch on axis
/// 0: the condition of attention's `zero_where` (rows whose keys are all masked), which no
/// real query row meets.
pub fn false_for_real_sequences(fact: &Fact) -> bool {
    matches!(
        fact,
        Fact::PerSeq {
            b: 0,
            nonempty: Val::Bool(false),
            ..
        }
    )
}

/// If `fact` is a boolean key-padding mask (true at real keys, false at padded ones) for
/// scores of rank `rank`, the mask input's name.
pub fn bool_key_mask(fact: &Fact, rank: usize) -> Option<&str> {
    match fact {
        Fact::Mask {
            at,
            valid: Val::Bool(true),
            padded: Val::Bool(false),
        } if at.b == 0 && at.j + 1 == rank => Some(&at.m),
        _ => None,
    }
}

/// The fact of the mask input `name` of type `ty` (`[batch, seq]`): its values, 1 (true) at
/// real positions and 0 at padded ones.
pub fn input_fact(name: &str, ty: &TensorType) -> Fact {
    let (valid, padded) = if ty.dtype == DType::Bool {
        (Val::Bool(true), Val::Bool(false))
    } else {
        (Val::Num(1.0), Val::Num(0.0))
    };
    Fact::Mask {
        at: At {
            m: name.into(),
            b: 0,
            j: 1,
        },
        valid,
        padded,
    }
}

/// The fact of the result (of type `ty`) of `op` on `operands`.
pub fn transfer(op: &Op, ty: &TensorType, operands: &[Operand]) -> Fact {
    let rank = ty.shape.rank();
    let dtype = ty.dtype;
    let args: Vec<&Fact> = operands.iter().map(|o| o.fact).collect();
    let shape_of = |k: usize| operands[k].ty.shape.dims().to_vec();
    match op {
        Op::Const(c) => splat_of_const(&c.value, ty),
        Op::Dims { values, .. } => match values.as_slice() {
            [v] => Fact::Affine {
                c: v.clone(),
                coef: vec![Dim::constant(0); rank],
            },
            _ => Fact::Unknown,
        },
        Op::Range { start, delta, .. } => Fact::Affine {
            c: start.clone(),
            coef: vec![Dim::constant(*delta)],
        },
        Op::Cast { to } => match args[0] {
            Fact::Splat(v) => cast_val(*v, *to).map_or(Fact::Unknown, Fact::Splat),
            Fact::Mask { at, valid, padded } => {
                match (cast_val(*valid, *to), cast_val(*padded, *to)) {
                    (Some(valid), Some(padded)) => Fact::Mask {
                        at: at.clone(),
                        valid,
                        padded,
                    },
                    _ => Fact::Unknown,
                }
            }
            Fact::Flat {
                m,
                dims,
                row,
                valid,
                padded,
            } => match (cast_val(*valid, *to), cast_val(*padded, *to)) {
                (Some(valid), Some(padded)) => Fact::Flat {
                    m: m.clone(),
                    dims: dims.clone(),
                    row: *row,
                    valid,
                    padded,
                },
                _ => Fact::Unknown,
            },
            a @ Fact::Affine { .. } if to.is_int() => a.clone(),
            _ => Fact::Unknown,
        },
        Op::Unary(u) => {
            let f = |v: Val| unary(*u, v, dtype);
            match args[0] {
                Fact::Splat(v) => f(*v).map_or(Fact::Unknown, Fact::Splat),
                Fact::Mask { at, valid, padded } => match (f(*valid), f(*padded)) {
                    (Some(valid), Some(padded)) => Fact::Mask {
                        at: at.clone(),
                        valid,
                        padded,
                    },
                    _ => Fact::Unknown,
                },
                _ => Fact::Unknown,
            }
        }
        Op::Binary(op) => {
            let (ra, rb) = (shape_of(0).len(), shape_of(1).len());
            binary(
                *op,
                &lift(args[0], rank - ra),
                &lift(args[1], rank - rb),
                dtype,
            )
        }
        Op::Where => {
            let lifted: Vec<Fact> = (0..3)
                .map(|k| lift(args[k], rank - shape_of(k).len()))
                .collect();
            select(&lifted[0], &lifted[1], &lifted[2])
        }
        Op::Reshape { .. } | Op::Expand { .. } => {
            let from = shape_of(0);
            reshape(
                args[0],
                &from,
                ty.shape.dims(),
                matches!(op, Op::Expand { .. }),
            )
        }
        Op::Transpose { perm } => match args[0] {
            Fact::Splat(v) => Fact::Splat(*v),
            Fact::Mask { at, valid, padded } => {
                let pos = |a: usize| perm.iter().position(|&p| p == a);
                let moved = at.moved(pos(at.b), pos(at.j));
                mask_of_at(moved, Some(*valid), Some(*padded))
            }
            _ => Fact::Unknown,
        },
        Op::Gather { axis: 0 } => gather(args[0], args[1], &shape_of(0), &shape_of(1)),
        Op::Reduce {
            kind,
            axes,
            keep_dims: true,
        } => match args[0] {
            // Over the keys only: a sequence with a real token reaches `valid` (a maximum
            // when `valid` is the larger, a minimum when the smaller), one without only
            // `padded`.
            Fact::Mask {
                at,
                valid: Val::Num(v),
                padded: Val::Num(p),
            } if axes.as_slice() == [at.j]
                && ((*kind == ReduceKind::Max && v >= p)
                    || (*kind == ReduceKind::Min && v <= p)) =>
            {
                Fact::PerSeq {
                    m: at.m.clone(),
                    b: at.b,
                    nonempty: Val::Num(*v),
                    empty: Val::Num(*p),
                }
            }
            Fact::Splat(v) if matches!(kind, ReduceKind::Max | ReduceKind::Min) => Fact::Splat(*v),
            _ => Fact::Unknown,
        },
        Op::GatherNd { batch_dims: 0 } => gather_nd(args[0], args[1], &shape_of(0), &shape_of(1)),
        Op::Concat { axis } if *axis + 1 == rank => {
            // Affine values of last axis 1, side by side: index tuples.
            let mut parts = Vec::new();
            for (k, a) in args.iter().enumerate() {
                let dims = shape_of(k);
                match a {
                    Fact::Affine { c, coef } if dims.last().is_some_and(|d| d.is(1)) => {
                        parts.push((c.clone(), coef[..coef.len() - 1].to_vec()));
                    }
                    Fact::Tuple { parts: p } => parts.extend(p.iter().cloned()),
                    _ => return Fact::Unknown,
                }
            }
            Fact::Tuple { parts }
        }
        _ => Fact::Unknown,
    }
}

/// A constant all of whose elements are equal: its splat; an integer one of one element: an
/// affine value with no coefficient, so that index arithmetic can use it.
fn splat_of_const(t: &tcc_ir::Tensor, ty: &TensorType) -> Fact {
    let values = t.data().to_f64_vec();
    let Some(&first) = values.first() else {
        return Fact::Unknown;
    };
    if values.iter().any(|v| v.to_bits() != first.to_bits()) {
        return Fact::Unknown;
    }
    if ty.dtype == DType::Bool {
        Fact::Splat(Val::Bool(first != 0.0))
    } else if ty.dtype.is_int() && values.len() == 1 {
        Fact::Affine {
            c: Dim::constant(first as i64),
            coef: vec![Dim::constant(0); ty.shape.rank()],
        }
    } else {
        Fact::Splat(Val::Num(first))
    }
}

/// `fact` of a value broadcast to `extra` more leading axes.
fn lift(fact: &Fact, extra: usize) -> Fact {
    match fact {
        Fact::Mask { at, valid, padded } => Fact::Mask {
            at: At {
                m: at.m.clone(),
                b: at.b + extra,
                j: at.j + extra,
            },
            valid: *valid,
            padded: *padded,
        },
        Fact::Affine { c, coef } => Fact::Affine {
            c: c.clone(),
            coef: std::iter::repeat_n(Dim::constant(0), extra)
                .chain(coef.iter().cloned())
                .collect(),
        },
        Fact::PerSeq {
            m,
            b,
            nonempty,
            empty,
        } => Fact::PerSeq {
            m: m.clone(),
            b: b + extra,
            nonempty: *nonempty,
            empty: *empty,
        },
        Fact::Flat { .. } if extra > 0 => Fact::Unknown,
        other => other.clone(),
    }
}

/// A splat's value of an affine fact with no coefficient and a constant term.
fn affine_splat(fact: &Fact) -> Option<f64> {
    match fact {
        Fact::Affine { c, coef } if coef.iter().all(|d| d.is(0)) => c.as_const().map(|v| v as f64),
        Fact::Splat(Val::Num(v)) => Some(*v),
        _ => None,
    }
}

/// The binary op `op` on two facts of operands aligned to the result's rank.
fn binary(op: BinaryOp, a: &Fact, b: &Fact, dtype: DType) -> Fact {
    let f = |x: Val, y: Val| apply(op, x, y, dtype);
    // Index arithmetic first: affine values with affine or constant operands.
    if let (Fact::Affine { c: ca, coef: fa }, Fact::Affine { c: cb, coef: fb }) = (a, b) {
        let scalar = |c: &Dim, coef: &[Dim]| coef.iter().all(|d| d.is(0)).then(|| c.clone());
        match op {
            BinaryOp::Add | BinaryOp::Sub => {
                let g = |x: &Dim, y: &Dim| {
                    if op == BinaryOp::Add {
                        x.add(y)
                    } else {
                        x.sub(y)
                    }
                };
                return Fact::Affine {
                    c: g(ca, cb),
                    coef: fa.iter().zip(fb).map(|(x, y)| g(x, y)).collect(),
                };
            }
            BinaryOp::Mul => {
                if let Some(k) = scalar(cb, fb) {
                    return Fact::Affine {
                        c: ca.mul(&k),
                        coef: fa.iter().map(|x| x.mul(&k)).collect(),
                    };
                }
                if let Some(k) = scalar(ca, fa) {
                    return Fact::Affine {
                        c: cb.mul(&k),
                        coef: fb.iter().map(|x| x.mul(&k)).collect(),
                    };
                }
                return Fact::Unknown;
            }
            BinaryOp::GreaterEqual | BinaryOp::Greater => {
                // c + sum(coef * idx) against a constant: true everywhere when its least
                // value (indices and coefficients non-negative) passes.
                let (Some(k), Some(c)) = (scalar(cb, fb).and_then(|d| d.as_const()), ca.as_const())
                else {
                    return Fact::Unknown;
                };
                let nonneg = fa.iter().all(|d| d.as_const().is_some_and(|v| v >= 0));
                let holds = if op == BinaryOp::GreaterEqual {
                    c >= k
                } else {
                    c > k
                };
                return if nonneg && holds {
                    Fact::Splat(Val::Bool(true))
                } else {
                    Fact::Unknown
                };
            }
            _ => {}
        }
    }
    // A constant affine value is a splat for what follows.
    let as_splat = |x: &Fact| -> Fact {
        match affine_splat(x) {
            Some(v) if matches!(x, Fact::Affine { .. }) => Fact::Splat(Val::Num(v)),
            _ => x.clone(),
        }
    };
    let (a, b) = (as_splat(a), as_splat(b));
    match (&a, &b) {
        (Fact::Splat(x), Fact::Splat(y)) => f(*x, *y).map_or(Fact::Unknown, Fact::Splat),
        (Fact::Mask { at, valid, padded }, Fact::Splat(y)) => {
            mask_of(at, f(*valid, *y), f(*padded, *y))
        }
        (Fact::Splat(x), Fact::Mask { at, valid, padded }) => {
            mask_of(at, f(*x, *valid), f(*x, *padded))
        }
        (
            Fact::PerSeq {
                m,
                b,
                nonempty,
                empty,
            },
            Fact::Splat(y),
        ) => match (f(*nonempty, *y), f(*empty, *y)) {
            (Some(nonempty), Some(empty)) => Fact::PerSeq {
                m: m.clone(),
                b: *b,
                nonempty,
                empty,
            },
            _ => Fact::Unknown,
        },
        (
            Fact::Mask {
                at: p,
                valid: v1,
                padded: p1,
            },
            Fact::Mask {
                at: q,
                valid: v2,
                padded: p2,
            },
        ) if p == q => mask_of(p, f(*v1, *v2), f(*p1, *p2)),
        _ => Fact::Unknown,
    }
}

/// A mask fact of two values, if both are known.
fn mask_of(at: &At, valid: Option<Val>, padded: Option<Val>) -> Fact {
    mask_of_at(Some(at.clone()), valid, padded)
}

/// A mask fact, if its place and both values are known.
fn mask_of_at(at: Option<At>, valid: Option<Val>, padded: Option<Val>) -> Fact {
    match (at, valid, padded) {
        (Some(at), Some(valid), Some(padded)) => Fact::Mask { at, valid, padded },
        _ => Fact::Unknown,
    }
}

/// `where(c, x, y)` on facts aligned to the result's rank.
fn select(c: &Fact, x: &Fact, y: &Fact) -> Fact {
    let splat = |f: &Fact| -> Option<Val> {
        match f {
            Fact::Splat(v) => Some(*v),
            _ => affine_splat(f).map(Val::Num),
        }
    };
    match c {
        Fact::Splat(Val::Bool(true)) => x.clone(),
        Fact::Splat(Val::Bool(false)) => y.clone(),
        Fact::Mask {
            at,
            valid: Val::Bool(cv),
            padded: Val::Bool(cp),
        } => {
            let pick = |take_x: bool| if take_x { x } else { y };
            // Each side a splat, or a mask fact read at the same place.
            let at_side = |f: &Fact, real: bool| -> Option<Val> {
                match f {
                    Fact::Mask {
                        at: a,
                        valid,
                        padded,
                    } if a == at => Some(if real { *valid } else { *padded }),
                    _ => splat(f),
                }
            };
            mask_of(at, at_side(pick(*cv), true), at_side(pick(*cp), false))
        }
        _ => Fact::Unknown,
    }
}

/// A reshape (or an expand, which only broadcasts) from dims `from` to dims `to`: mask facts
/// follow their axes when the axes of size other than 1 keep their order and sizes; the
/// mask `[batch, seq]` flattened into one axis of `batch * seq` becomes [`Fact::Flat`].
fn reshape(fact: &Fact, from: &[Dim], to: &[Dim], expand: bool) -> Fact {
    let big =
        |dims: &[Dim]| -> Vec<usize> { (0..dims.len()).filter(|&a| !dims[a].is(1)).collect() };
    match fact {
        Fact::Splat(v) => Fact::Splat(*v),
        Fact::Mask { at, valid, padded } if expand => {
            // Broadcast: right-aligned; the mask's axes keep their sizes.
            let extra = to.len() - from.len();
            let (b, j) = (at.b + extra, at.j + extra);
            if to.get(b) == from.get(at.b) && to.get(j) == from.get(at.j) {
                Fact::Mask {
                    at: At {
                        m: at.m.clone(),
                        b,
                        j,
                    },
                    valid: *valid,
                    padded: *padded,
                }
            } else {
                Fact::Unknown
            }
        }
        Fact::Mask { at, valid, padded } => {
            let (bf, bt) = (big(from), big(to));
            let same = bf.len() == bt.len() && bf.iter().zip(&bt).all(|(&x, &y)| from[x] == to[y]);
            if same {
                let map = |a: usize| bf.iter().position(|&x| x == a).map(|k| bt[k]);
                return mask_of_at(at.moved(map(at.b), map(at.j)), Some(*valid), Some(*padded));
            }
            // [batch, seq] (with unit axes) into one axis of batch * seq.
            let flat = from[at.b].mul(&from[at.j]);
            if bf == [at.b, at.j] && at.j == at.b + 1 && bt.len() == 1 && to[bt[0]] == flat {
                return Fact::Flat {
                    m: at.m.clone(),
                    dims: [from[at.b].clone(), from[at.j].clone()],
                    row: bt[0],
                    valid: *valid,
                    padded: *padded,
                };
            }
            Fact::Unknown
        }
        Fact::Affine { c, coef } if expand => {
            // Broadcast: right-aligned; a broadcast axis carries no index.
            let extra = to.len() - from.len();
            let mut out = vec![Dim::constant(0); to.len()];
            for (a, d) in from.iter().enumerate() {
                if !d.is(1) {
                    out[a + extra] = coef[a].clone();
                }
            }
            Fact::Affine {
                c: c.clone(),
                coef: out,
            }
        }
        Fact::Affine { c, coef } if !expand => {
            let (bf, bt) = (big(from), big(to));
            let same = bf.len() == bt.len() && bf.iter().zip(&bt).all(|(&x, &y)| from[x] == to[y]);
            // Unit axes carry no index: their coefficients do not matter.
            if !same {
                return Fact::Unknown;
            }
            let mut out = vec![Dim::constant(0); to.len()];
            for (&x, &y) in bf.iter().zip(&bt) {
                out[y] = coef[x].clone();
            }
            Fact::Affine {
                c: c.clone(),
                coef: out,
            }
        }
        _ => Fact::Unknown,
    }
}

/// `gather(data, index)` along axis 0: the flattened mask read at `batch_index * seq +
/// position` (an affine index with coefficient `seq` on one axis of `batch` elements and 1
/// on one of `seq`) is the mask at those axes.
fn gather(data: &Fact, index: &Fact, data_dims: &[Dim], index_dims: &[Dim]) -> Fact {
    let (
        Fact::Flat {
            m,
            dims: [batch, seq],
            row: 0,
            valid,
            padded,
        },
        Fact::Affine { c, coef },
    ) = (data, index)
    else {
        return Fact::Unknown;
    };
    if !c.is(0) || data_dims[1..].iter().any(|d| !d.is(1)) {
        return Fact::Unknown;
    }
    let nonzero: Vec<usize> = (0..coef.len()).filter(|&a| !coef[a].is(0)).collect();
    let [x, y] = nonzero.as_slice() else {
        return Fact::Unknown;
    };
    let (b, j) = if coef[*x] == *seq && coef[*y].is(1) {
        (*x, *y)
    } else if coef[*y] == *seq && coef[*x].is(1) {
        (*y, *x)
    } else {
        return Fact::Unknown;
    };
    if index_dims[b] != *batch || index_dims[j] != *seq {
        return Fact::Unknown;
    }
    // The result's axes: the index's, then data's trailing unit axes.
    Fact::Mask {
        at: At { m: m.clone(), b, j },
        valid: *valid,
        padded: *padded,
    }
}

/// `gather_nd(data, indices)` with no batch dims: the mask `[batch, seq]` read at index
/// tuples `(i, j)` where `i` is one axis's index (of `batch` elements) and `j` another's (of
/// `seq`) is the mask at those axes.
fn gather_nd(data: &Fact, index: &Fact, data_dims: &[Dim], index_dims: &[Dim]) -> Fact {
    let (Fact::Mask { at, valid, padded }, Fact::Tuple { parts }) = (data, index) else {
        return Fact::Unknown;
    };
    if data_dims.len() != 2 || parts.len() != 2 || (at.b, at.j) != (0, 1) {
        return Fact::Unknown;
    }
    // Each part the plain index of one axis of the data dim's extent.
    let axis_of = |(c, coef): &(Dim, Vec<Dim>), extent: &Dim| -> Option<usize> {
        let nonzero: Vec<usize> = (0..coef.len()).filter(|&a| !coef[a].is(0)).collect();
        match nonzero.as_slice() {
            [a] if c.is(0) && coef[*a].is(1) && index_dims[*a] == *extent => Some(*a),
            _ => None,
        }
    };
    match (
        axis_of(&parts[0], &data_dims[0]),
        axis_of(&parts[1], &data_dims[1]),
    ) {
        (Some(b), Some(j)) if b != j => Fact::Mask {
            at: At {
                m: at.m.clone(),
                b,
                j,
            },
            valid: *valid,
            padded: *padded,
        },
        _ => Fact::Unknown,
    }
}

/// `v` cast to `to`, if representable as a [`Val`].
fn cast_val(v: Val, to: DType) -> Option<Val> {
    Some(match (v, to) {
        (Val::Bool(b), DType::Bool) => Val::Bool(b),
        (Val::Bool(b), _) => Val::Num(if b { 1.0 } else { 0.0 }),
        (Val::Num(x), DType::Bool) => Val::Bool(x != 0.0),
        (Val::Num(x), t) => Val::Num(round_to(x, t)?),
    })
}

/// `x` rounded to `dtype` as the interpreter would store it; `None` for an integer out of
/// range or a fraction in an integer type.
fn round_to(x: f64, dtype: DType) -> Option<f64> {
    match dtype {
        DType::F32 => Some(x as f32 as f64),
        DType::F64 => Some(x),
        t if t.is_int() => (x.fract() == 0.0 && x.abs() < 9.0e15).then_some(x),
        _ => None,
    }
}

/// A unary op on one value.
fn unary(op: UnaryOp, v: Val, dtype: DType) -> Option<Val> {
    match (op, v) {
        (UnaryOp::Not, Val::Bool(b)) => Some(Val::Bool(!b)),
        (UnaryOp::Neg, Val::Num(x)) => round_to(-x, dtype).map(Val::Num),
        _ => None,
    }
}

/// A binary op on two values, rounded to the result's dtype.
fn apply(op: BinaryOp, x: Val, y: Val, dtype: DType) -> Option<Val> {
    use BinaryOp::*;
    match (x, y) {
        (Val::Num(a), Val::Num(b)) => {
            let num = |v: f64| round_to(v, dtype).map(Val::Num);
            match op {
                Add => num(a + b),
                Sub => num(a - b),
                Mul => num(a * b),
                Div if b != 0.0 => num(a / b),
                Min => num(a.min(b)),
                Max => num(a.max(b)),
                Equal => Some(Val::Bool(a == b)),
                Less => Some(Val::Bool(a < b)),
                LessEqual => Some(Val::Bool(a <= b)),
                Greater => Some(Val::Bool(a > b)),
                GreaterEqual => Some(Val::Bool(a >= b)),
                _ => None,
            }
        }
        (Val::Bool(a), Val::Bool(b)) => match op {
            And => Some(Val::Bool(a && b)),
            Or => Some(Val::Bool(a || b)),
            Xor => Some(Val::Bool(a != b)),
            Equal => Some(Val::Bool(a == b)),
            _ => None,
        },
        _ => None,
    }
}

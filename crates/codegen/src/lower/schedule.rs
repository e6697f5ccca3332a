//! The schedule: the graph's nodes grouped into kernels, in an order where every kernel runs
//! after the kernels it reads.
//!
//! [`schedule`] walks [`Graph::topo_order`] and makes one [`Step`] per node: code generation
//! matches no patterns across nodes. What the IR shows (`tcc compile --emit ir`) is what runs;
//! every fusion is the optimiser's (`tcc_passes::egraph`), as a fused op.
//! - an elementwise op (`Unary`, `Binary`, `Where`, `Cast`) is a [`Kernel::Fused`] loop of
//!   one op (scalar constants become immediates), and a `fused` op a loop of its body;
//! - an `f32` `MatMul` by a constant `f32` matrix is [`Kernel::GemmConstB`], any other `f32`
//!   `MatMul` [`Kernel::MatMul`] (runtime `B`); a `gemm` is either, with its epilogue and
//!   with its permutations read and written in place;
//! - `attention` is [`Kernel::Attention`], `add_layer_norm` and `rms_norm` their own row
//!   kernels ([`fused_step`] lists the forms each supports);
//! - `Reshape` is a view (no kernel), `Input` and `Const` need none;
//! - every other op is [`Kernel::Op`], its own kernel;
//! - a graph output that is not computed by a kernel into its own buffer (an input, a constant,
//!   a view, or a node named by two outputs) gets a [`Kernel::Copy`] into the output buffer.

use std::collections::HashSet;
use std::sync::Arc;

use tcc_ir::{
    Activation, AttentionMask, BinaryOp, Body, DType, Graph, NodeId, Op, Shape, Tensor, TensorData,
    TensorType, UnaryOp,
};

use super::ops::unsupported_node;
use crate::error::Result;

/// An elementwise expression over a fused kernel's leaves.
#[derive(Clone, Debug)]
pub enum Expr {
    /// Leaf `i` of the step's inputs, of this dtype.
    Leaf(usize, DType),
    /// A scalar constant.
    Scalar(Arc<Tensor>),
    /// A unary op; the dtype is the result's.
    Unary(UnaryOp, Box<Expr>, DType),
    /// A binary op; the dtype is the result's.
    Binary(BinaryOp, Box<Expr>, Box<Expr>, DType),
    /// `where(c, a, b)`; the dtype is the result's.
    Where(Box<[Expr; 3]>, DType),
    /// A conversion to the dtype.
    Cast(Box<Expr>, DType),
}

impl Expr {
    /// The element type of the expression's value.
    pub fn dtype(&self) -> DType {
        match self {
            Expr::Leaf(_, d)
            | Expr::Unary(_, _, d)
            | Expr::Binary(_, _, _, d)
            | Expr::Where(_, d)
            | Expr::Cast(_, d) => *d,
            Expr::Scalar(t) => t.dtype(),
        }
    }
}

/// What a step computes.
#[derive(Clone, Debug)]
pub enum Kernel {
    /// A fused elementwise loop over the result's index space; inputs are the leaves.
    Fused(Expr),
    /// `act(A · B + bias)` with `B` (`k x n`) known at compile time; input 0 is `A`.
    GemmConstB {
        /// The constant `B`.
        b: Arc<Tensor>,
        /// The bias folded from a following `Add` (or a `gemm` node's constant bias operand).
        bias: Option<Vec<f32>>,
        /// The activation folded from the following ops (or a `gemm` node's).
        activation: Activation,
    },
    /// An `f32` batched matrix product of two runtime operands (inputs 0 and 1, the sources of
    /// the operands): operand `i` of the product is `inputs[i]` transposed by `perms[i]` if
    /// given; the product, of shape `product`, is written transposed by `out_perm` if given
    /// (the step's node is then that `Transpose`, or a `gemm` node with that `perm_out`).
    MatMul {
        /// The product's shape, before `out_perm`.
        product: Shape,
        /// Per operand, the permutation that makes it from its source.
        perms: [Option<Vec<usize>>; 2],
        /// The permutation applied to the product.
        out_perm: Option<Vec<usize>>,
    },
    /// Attention, `g(softmax(f(Q·K))) · V` over the last axis, without materialising the
    /// scores: per batch matrix, `K` and `V` are packed once, then blocks of query rows go
    /// through `Q·K`, `f` (an elementwise expression of the scores, such as a scale and a
    /// mask), the softmax and `g` (an elementwise expression of the probabilities, such as
    /// torch's `where(isnan(p), 0, p)`) in a scratch block, and straight on into `· V`.
    /// Inputs: the sources of `Q`, `K` and `V`, then the other leaves of `f` (leaf 0 of `f` is
    /// the scores), then those of `g` (leaf 0 of `g` is the probabilities). Each value is
    /// computed by the same code, in the same order, as the unfused kernels would: the results
    /// are identical. The result (`[.., m, dv]`, before `out_perm`) has the scores' batch dims.
    Attention {
        /// The shape of the scores `Q·K` (`[.., m, n]`), which is also that of `f`'s and the
        /// softmax's results.
        scores: Shape,
        /// The factor applied to `Q·K` in its GEMM's epilogue (`alpha`, rounded once as a
        /// separate multiply would be): the op's `scale=mul(c)`; 1 otherwise.
        alpha: f32,
        /// The expression between `Q·K` (times `alpha`) and the softmax (`f`).
        expr: Expr,
        /// The expression between the softmax and `· V` (`g`), if any.
        post: Option<Expr>,
        /// How many leaves `f` has besides the scores (inputs `3..3 + pre_leaves`).
        pre_leaves: usize,
        /// The permutations that make `Q`, `K` and `V` from their sources.
        perms: [Option<Vec<usize>>; 3],
        /// The permutation applied to the result (the step's node is then that `Transpose`).
        out_perm: Option<Vec<usize>>,
        /// Whether query `i` of `m` sees only keys `j <= i + n - m` (after `f`; the others
        /// score `-inf`): the kernel skips the key blocks no row of a query block sees.
        causal: bool,
        /// With `causal`, the unseen keys score `f32::MIN` instead (see
        /// [`Op::Attention`]): a row whose seen scores are all `f32::MIN` or less (with keys)
        /// is the mean of `V`'s rows.
        causal_min: bool,
    },
    /// A copy of input 0 into an output buffer.
    Copy,
    /// The node's op on its operands.
    Op(Op),
}

/// Where a step's result goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// The value of this node.
    Node(NodeId),
    /// Output `j` of the graph (a copy).
    Output(usize),
}

/// One kernel of the schedule.
#[derive(Clone, Debug)]
pub struct Step {
    /// The value it computes.
    pub dest: Dest,
    /// The node whose type the result has (for a copy, the copied node).
    pub node: NodeId,
    /// What it computes.
    pub kernel: Kernel,
    /// The values it reads, in the kernel's order.
    pub inputs: Vec<NodeId>,
}

/// True for the ops a fused elementwise kernel computes.
pub fn is_elementwise(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast { .. }
    )
}

/// Refuses a graph whose outputs' dims use a derived symbol (a `pack`'s token count, which
/// only the run knows, and which the caller's `output_dims` cannot be told), naming the
/// output. Called before anything is sized from the graph.
pub fn check_supported(graph: &Graph) -> Result<()> {
    let inputs = graph.input_symbols();
    for (name, id) in graph.outputs() {
        let derived = graph
            .ty(*id)
            .shape
            .dims()
            .iter()
            .any(|d| d.symbols().iter().any(|s| !inputs.contains(s)));
        if derived {
            return Err(unsupported_node(
                graph,
                *id,
                format!(
                    "the output `{name}` is sized by a pack's token count, which only the run \
                     knows: unpack it to the mask's [batch, seq] first"
                ),
            ));
        }
    }
    Ok(())
}

/// Builds the schedule of `graph`: one step per node (views, inputs and constants aside), in
/// topological order. Fails, naming the node, on a fused op of a form no kernel computes (see
/// [`fused_step`]) and on the ops [`check_supported`] refuses.
pub fn schedule(graph: &Graph) -> Result<Vec<Step>> {
    check_supported(graph)?;
    let mut steps = Vec::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let step = |kernel: Kernel, inputs: Vec<NodeId>| Step {
            dest: Dest::Node(id),
            node: id,
            kernel,
            inputs,
        };
        match &node.op {
            Op::Input { .. } | Op::Const(_) | Op::Reshape { .. } => {}
            // 16-bit floats (as the result or an operand) go to `Kernel::Op`, which reports
            // them as unsupported.
            op if is_elementwise(op)
                && !is_half(node.ty.dtype)
                && !graph
                    .operands(id)
                    .iter()
                    .any(|&o| is_half(graph.ty(o).dtype)) =>
            {
                let mut inputs = Vec::new();
                let expr = op_expr(graph, id, &mut inputs);
                steps.push(step(Kernel::Fused(expr), inputs));
            }
            Op::MatMul if f32_product(graph, id) => {
                let ops = graph.operands(id);
                let const_b = graph
                    .const_value(ops[1])
                    .filter(|t| t.shape().len() == 2 && t.dtype() == DType::F32);
                steps.push(match const_b {
                    Some(b) => step(
                        Kernel::GemmConstB {
                            b: b.clone(),
                            bias: None,
                            activation: Activation::None,
                        },
                        vec![ops[0]],
                    ),
                    None => step(
                        Kernel::MatMul {
                            product: node.ty.shape.clone(),
                            perms: [None, None],
                            out_perm: None,
                        },
                        ops,
                    ),
                });
            }
            // Its own kernel over the packed layout (`ops::attention::packed_attention`).
            op @ Op::PackedAttention { .. } => {
                steps.push(step(Kernel::Op(op.clone()), graph.operands(id)))
            }
            op if tcc_ir::fused::is_fused(op) => steps.push(fused_step(graph, id)?),
            op => steps.push(step(Kernel::Op(op.clone()), graph.operands(id))),
        }
    }
    Ok(steps)
}

/// One core op of a fused op's expansion, with its operands' and its result's types.
#[derive(Clone, Debug)]
pub struct ExpandedOp {
    /// The core op.
    pub op: Op,
    /// Its operands' types.
    pub args: Vec<TensorType>,
    /// Its result's type.
    pub ty: TensorType,
}

/// Types the expansion of a fused op ([`tcc_ir::fused::expand`]) op by op, as the IR's type
/// inference does, and records every op.
struct ExpansionTypes {
    ops: Vec<ExpandedOp>,
}

impl tcc_ir::fused::Builder for ExpansionTypes {
    type Value = TensorType;

    fn op(&mut self, op: Op, args: &[TensorType]) -> tcc_ir::Result<TensorType> {
        let tys: Vec<&TensorType> = args.iter().collect();
        let (ty, _) = tcc_ir::infer::infer(&op, &tys, &vec![None; args.len()])?;
        self.ops.push(ExpandedOp {
            op,
            args: args.to_vec(),
            ty: ty.clone(),
        });
        Ok(ty)
    }

    fn constant(&mut self, value: Tensor) -> tcc_ir::Result<TensorType> {
        Ok(TensorType::new(value.dtype(), Shape::fixed(value.shape())))
    }

    fn rank(&self, value: &TensorType) -> usize {
        value.rank()
    }

    fn dims(&self, value: &TensorType) -> Vec<tcc_ir::Dim> {
        value.shape.dims().to_vec()
    }
}

/// The core ops of the expansion of the fused node `id`, in order, with their types (the same
/// expansion and the same inference the IR types the node by). `None` for a core op.
pub fn expansion(graph: &Graph, id: NodeId) -> Option<tcc_ir::Result<Vec<ExpandedOp>>> {
    let op = graph.op(id);
    if !tcc_ir::fused::is_fused(op) {
        return None;
    }
    let args: Vec<TensorType> = graph
        .operands(id)
        .iter()
        .map(|&o| graph.ty(o).clone())
        .collect();
    let dtype = args.first().map(|t| t.dtype).unwrap_or(DType::F32);
    let mut b = ExpansionTypes { ops: Vec::new() };
    Some(tcc_ir::fused::expand(op, &args, dtype, &mut b).map(|_| b.ops))
}

/// The step of a fused op node: each fused op is one kernel.
///
/// The forms code generation supports (the optimiser's rewrites must produce only these; any
/// other is an [`crate::Error::Unsupported`] naming the node):
///
/// - **`gemm`** (operands `a`, `b`, and `bias` if `bias`): `a` and `b` `f32` of rank 2 or more.
///   - With `b` a constant `f32` matrix of rank 2 (`[k, n]`) and no `perm_a`, `perm_b` or
///     `perm_out`: the packed-B GEMM ([`Kernel::GemmConstB`]) with any activation, and, if
///     `bias`, a constant `f32` bias of shape `[n]` or `[1, .., 1, n]` folded into the
///     epilogue (a bias that is not such a constant is unsupported).
///   - Otherwise, the runtime-B product ([`Kernel::MatMul`]), which has no epilogue: `bias`
///     must be false and `activation` `none`; `a` is read through `perm_a` in place, which must
///     keep the last axis last (`perm_a[r - 1] == r - 1`: the GEMM copies rows of `A`); `b`
///     through any `perm_b`; the product is written through `perm_out` in place, which must
///     also keep the last axis last (the GEMM stores rows).
/// - **`attention`** (operands `q`, `kt`, `v`, and `mask` if `mask`): `q`, `kt` and `v` `f32`
///   of rank 2 or more; `perm_q` and `perm_out`, if given, keep the last axis last (`perm_k`
///   and `perm_v` may be any); an `f32` `mask` that broadcasts to the scores without growing
///   them (the scores `Q · Kt` have the shape of `scale(Q · Kt) + mask`); `V` that does not
///   broadcast the batch (the result's batch dims are the scores'). One
///   [`Kernel::Attention`] with `f = scale(s) + mask` and `g = where(isnan(p), 0, p)` if
///   `nan_filter`.
/// - **`add_layer_norm`** and **`rms_norm`**: their own kernels ([`Kernel::Op`]), for `f32` and
///   `f64`; `rms_norm`'s `scale` must not broadcast `x` to a larger shape.
/// - **`fused`**: one elementwise loop ([`Kernel::Fused`]) over the result, any body, operand
///   dtypes and broadcasting, but no 16-bit floats.
pub fn fused_step(graph: &Graph, id: NodeId) -> Result<Step> {
    let unsupported = |why: &str| unsupported_node(graph, id, why);
    let ops = graph.operands(id);
    let node = graph.node(id);
    let expanded = match expansion(graph, id) {
        Some(Ok(e)) => e,
        Some(Err(e)) => return Err(unsupported(&format!("its expansion does not type: {e}"))),
        None => return Err(unsupported("not a fused op (internal error)")),
    };
    let step = |kernel: Kernel, inputs: Vec<NodeId>| Step {
        dest: Dest::Node(id),
        node: id,
        kernel,
        inputs,
    };
    let keeps_last = |p: &Option<Vec<usize>>| {
        p.as_ref()
            .is_none_or(|p| p.last().is_some_and(|&l| l + 1 == p.len()))
    };
    let f32_matrix = |o: NodeId| graph.ty(o).dtype == DType::F32 && graph.ty(o).rank() >= 2;
    let first_matmul = || {
        expanded
            .iter()
            .find(|e| e.op == Op::MatMul)
            .ok_or_else(|| unsupported("its expansion has no product (internal error)"))
    };
    match &node.op {
        Op::Gemm {
            activation,
            bias,
            perm_a,
            perm_b,
            perm_out,
        } => {
            let (a, b) = (ops[0], ops[1]);
            if !f32_matrix(a) || !f32_matrix(b) {
                return Err(unsupported("a gemm needs f32 operands of rank 2 or more"));
            }
            let const_b = graph
                .const_value(b)
                .filter(|t| t.shape().len() == 2 && t.dtype() == DType::F32);
            if let (Some(bt), None, None, None) = (const_b, perm_a, perm_b, perm_out) {
                let n = bt.shape()[1];
                let bias = if *bias {
                    let ct = graph.const_value(ops[2]);
                    match ct.map(|t| (t.data(), t.shape())) {
                        Some((TensorData::F32(v), shape))
                            if shape.last() == Some(&n)
                                && shape.iter().rev().skip(1).all(|&d| d == 1) =>
                        {
                            Some(v.clone())
                        }
                        _ => {
                            return Err(unsupported(&format!(
                                "the bias of a gemm must be a constant f32 of shape [{n}] or \
                                 [1, .., 1, {n}]"
                            )))
                        }
                    }
                } else {
                    None
                };
                return Ok(step(
                    Kernel::GemmConstB {
                        b: bt.clone(),
                        bias,
                        activation: *activation,
                    },
                    vec![a],
                ));
            }
            if *bias || *activation != Activation::None {
                return Err(unsupported(
                    "a gemm with a bias or an activation needs a constant f32 [k, n] B and no \
                     permutations (the runtime-B product has no epilogue)",
                ));
            }
            if !keeps_last(perm_a) {
                return Err(unsupported(
                    "perm_a moves A's last axis (the GEMM reads rows of A in place)",
                ));
            }
            if !keeps_last(perm_out) {
                return Err(unsupported(
                    "perm_out moves the product's last axis (the GEMM writes rows in place)",
                ));
            }
            Ok(step(
                Kernel::MatMul {
                    product: first_matmul()?.ty.shape.clone(),
                    perms: [perm_a.clone(), perm_b.clone()],
                    out_perm: perm_out.clone(),
                },
                vec![a, b],
            ))
        }
        Op::Attention {
            scale,
            mask,
            nan_filter,
            zero_where,
            causal,
            causal_min,
            perm_q,
            perm_k,
            perm_v,
            perm_out,
        } => {
            if *causal_min && (*zero_where || !*causal) {
                return Err(unsupported(
                    "attention with causal_min needs causal and no zero_where",
                ));
            }
            if !ops[..3].iter().all(|&o| f32_matrix(o)) {
                return Err(unsupported(
                    "attention needs f32 q, kt and v of rank 2 or more",
                ));
            }
            if !keeps_last(perm_q) {
                return Err(unsupported(
                    "perm_q moves Q's last axis (the GEMM reads rows of Q in place)",
                ));
            }
            if !keeps_last(perm_out) {
                return Err(unsupported(
                    "perm_out moves the result's last axis (the GEMM writes rows in place)",
                ));
            }
            let scores = first_matmul()?.ty.shape.clone();
            let r = scores.rank();
            let softmax = expanded
                .iter()
                .find(|e| matches!(e.op, Op::Softmax { .. }))
                .ok_or_else(|| unsupported("its expansion has no softmax (internal error)"))?;
            if softmax.ty.shape != scores {
                return Err(unsupported(
                    "the mask broadcasts the scores to a larger shape",
                ));
            }
            let out = &expanded
                .iter()
                .rev()
                .find(|e| e.op == Op::MatMul)
                .ok_or_else(|| unsupported("its expansion has no product (internal error)"))?
                .ty
                .shape;
            if out.rank() != r || out.dims()[..r - 2] != scores.dims()[..r - 2] {
                return Err(unsupported(
                    "V broadcasts the scores' batch dims to larger ones",
                ));
            }
            let f32_scalar = |v: f32| {
                Box::new(Expr::Scalar(Arc::new(tcc_ir::fused::scalar(
                    DType::F32,
                    f64::from(v),
                ))))
            };
            let s = Box::new(Expr::Leaf(0, DType::F32));
            // A factor is the product's own epilogue (`alpha`): the same one rounding of the
            // same product, without a pass over the scores for it.
            let (alpha, divisor) = scale.factor_and_divisor();
            let mut expr = match divisor {
                Some(c) => Expr::Binary(BinaryOp::Div, s, f32_scalar(c), DType::F32),
                None => *s,
            };
            let mut inputs = ops[..3].to_vec();
            match mask {
                AttentionMask::None => {}
                AttentionMask::Add => {
                    expr = Expr::Binary(
                        BinaryOp::Add,
                        Box::new(expr),
                        Box::new(Expr::Leaf(1, DType::F32)),
                        DType::F32,
                    );
                    inputs.push(ops[3]);
                }
                AttentionMask::Bool => {
                    expr = Expr::Where(
                        Box::new([
                            Expr::Leaf(1, DType::Bool),
                            expr,
                            *f32_scalar(f32::NEG_INFINITY),
                        ]),
                        DType::F32,
                    );
                    inputs.push(ops[3]);
                }
            }
            // g: the NaN filter, then the zeroing (leaf 1 of g, the last input), in the
            // expansion's order.
            let mut post = nan_filter.then(|| {
                let p = Expr::Leaf(0, DType::F32);
                Expr::Where(
                    Box::new([
                        Expr::Unary(UnaryOp::IsNaN, Box::new(p.clone()), DType::Bool),
                        *f32_scalar(0.0),
                        p,
                    ]),
                    DType::F32,
                )
            });
            if *zero_where {
                let cond = *ops.last().expect("zero_where has its condition operand");
                if graph.ty(cond).dtype != DType::Bool {
                    return Err(unsupported("the zero_where condition must be bool"));
                }
                let zeroed = expanded.iter().rev().find(|e| e.op == Op::Where);
                if zeroed.is_none_or(|e| e.ty.shape != scores) {
                    return Err(unsupported(
                        "the zero_where condition broadcasts the scores to a larger shape",
                    ));
                }
                let p = post.take().unwrap_or(Expr::Leaf(0, DType::F32));
                post = Some(Expr::Where(
                    Box::new([Expr::Leaf(1, DType::Bool), *f32_scalar(0.0), p]),
                    DType::F32,
                ));
                inputs.push(cond);
            }
            Ok(step(
                Kernel::Attention {
                    scores,
                    alpha,
                    expr,
                    post,
                    pre_leaves: usize::from(mask.is_some()),
                    perms: [perm_q.clone(), perm_k.clone(), perm_v.clone()],
                    out_perm: perm_out.clone(),
                    causal: *causal,
                    causal_min: *causal_min,
                },
                inputs,
            ))
        }
        Op::AddLayerNorm { .. } | Op::RmsNorm { .. } | Op::QGemm { .. } => {
            Ok(step(Kernel::Op(node.op.clone()), ops))
        }
        Op::Fused { body } => {
            let leaves: Vec<DType> = ops.iter().map(|&o| graph.ty(o).dtype).collect();
            let expr = body_expr(body, &leaves).map_err(|e| unsupported(&e))?;
            if is_half(node.ty.dtype) || has_half(&expr) {
                return Err(unsupported(
                    "16-bit floats are not supported by the code generator yet",
                ));
            }
            if expr.dtype() != node.ty.dtype {
                return Err(unsupported(&format!(
                    "the body computes {}, the node is {} (internal error)",
                    expr.dtype(),
                    node.ty.dtype
                )));
            }
            Ok(step(Kernel::Fused(expr), ops))
        }
        _ => Err(unsupported("not a fused op (internal error)")),
    }
}

/// The expression of a fused op's body: leaf `k` is operand `k` (of dtype `leaves[k]`), each
/// sub-expression of the dtype the IR's inference gives it (bool for comparisons and `isnan`,
/// the target of a cast, the first operand's otherwise; a `where` its branches').
fn body_expr(body: &Body, leaves: &[DType]) -> std::result::Result<Expr, String> {
    let rec = |b: &Body| body_expr(b, leaves);
    Ok(match body {
        Body::Leaf(k) => Expr::Leaf(
            *k,
            *leaves
                .get(*k)
                .ok_or_else(|| format!("the body reads operand {k} of {}", leaves.len()))?,
        ),
        Body::Scalar(t) => {
            if t.len() != 1 {
                return Err(format!("a body constant of {} elements", t.len()));
            }
            Expr::Scalar(Arc::new(t.clone()))
        }
        Body::Unary(u, x) => {
            let x = rec(x)?;
            let d = if *u == UnaryOp::IsNaN {
                DType::Bool
            } else {
                x.dtype()
            };
            Expr::Unary(*u, Box::new(x), d)
        }
        Body::Binary(op, x, y) => {
            let (x, y) = (rec(x)?, rec(y)?);
            let d = if op.is_comparison() {
                DType::Bool
            } else {
                x.dtype()
            };
            Expr::Binary(*op, Box::new(x), Box::new(y), d)
        }
        Body::Where(p) => {
            let [c, a, b] = [rec(&p[0])?, rec(&p[1])?, rec(&p[2])?];
            let d = a.dtype();
            Expr::Where(Box::new([c, a, b]), d)
        }
        Body::Cast(to, x) => Expr::Cast(Box::new(rec(x)?), *to),
    })
}

/// True if any value of `e` is a 16-bit float.
fn has_half(e: &Expr) -> bool {
    is_half(e.dtype())
        || match e {
            Expr::Leaf(..) | Expr::Scalar(_) => false,
            Expr::Unary(_, x, _) | Expr::Cast(x, _) => has_half(x),
            Expr::Binary(_, x, y, _) => has_half(x) || has_half(y),
            Expr::Where(p, _) => p.iter().any(has_half),
        }
}

/// True for a `MatMul` of `f32` operands of rank 2 or more: a GEMM kernel's.
fn f32_product(graph: &Graph, id: NodeId) -> bool {
    graph.ty(id).dtype == DType::F32
        && graph
            .operands(id)
            .iter()
            .all(|&o| graph.ty(o).rank() >= 2 && graph.ty(o).dtype == DType::F32)
}

fn is_half(d: DType) -> bool {
    matches!(d, DType::F16 | DType::BF16)
}

/// The expression of the elementwise node `id` over its operands (collected into `leaves`,
/// each once); one-element constants become immediates.
fn op_expr(graph: &Graph, id: NodeId, leaves: &mut Vec<NodeId>) -> Expr {
    let d = graph.ty(id).dtype;
    let mut sub = |o: NodeId| -> Box<Expr> {
        if let Some(t) = graph.const_value(o) {
            if t.len() == 1 && !is_half(t.dtype()) {
                return Box::new(Expr::Scalar(t.clone()));
            }
        }
        let k = leaves.iter().position(|&l| l == o).unwrap_or_else(|| {
            leaves.push(o);
            leaves.len() - 1
        });
        Box::new(Expr::Leaf(k, graph.ty(o).dtype))
    };
    let ops = graph.operands(id);
    match graph.op(id) {
        Op::Unary(u) => Expr::Unary(*u, sub(ops[0]), d),
        Op::Binary(b) => {
            let x = sub(ops[0]);
            let y = sub(ops[1]);
            Expr::Binary(*b, x, y, d)
        }
        Op::Where => {
            let c = *sub(ops[0]);
            let a = *sub(ops[1]);
            let b = *sub(ops[2]);
            Expr::Where(Box::new([c, a, b]), d)
        }
        Op::Cast { to } => Expr::Cast(sub(ops[0]), *to),
        op => unreachable!("op_expr of the non-elementwise `{}`", op.name()),
    }
}

/// Adds a copy step for each output whose value is not written into its buffer by a kernel,
/// and returns, per output, whether a kernel writes it directly.
pub fn add_output_copies(graph: &Graph, steps: &mut Vec<Step>) -> Vec<bool> {
    let computed: HashSet<NodeId> = steps
        .iter()
        .filter_map(|s| match s.dest {
            Dest::Node(n) => Some(n),
            Dest::Output(_) => None,
        })
        .collect();
    let mut claimed = HashSet::new();
    let mut direct = Vec::new();
    for (j, (_, id)) in graph.outputs().iter().enumerate() {
        if computed.contains(id) && claimed.insert(*id) {
            direct.push(true);
        } else {
            direct.push(false);
            steps.push(Step {
                dest: Dest::Output(j),
                node: *id,
                kernel: Kernel::Copy,
                inputs: vec![*id],
            });
        }
    }
    direct
}

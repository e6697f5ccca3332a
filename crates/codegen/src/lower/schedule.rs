//! The schedule: the graph's nodes grouped into kernels, in an order where every kernel runs
//! after the kernels it reads.
//!
//! [`schedule`] walks [`Graph::topo_order`] and makes one [`Step`] per kernel:
//! - maximal chains of elementwise ops (`Unary`, `Binary`, `Where`, `Cast`) become one
//!   [`Kernel::Fused`] loop: an operand is computed inside its user's loop (not materialised)
//!   when it is elementwise itself, has the user's shape, is not a graph output and has no other
//!   user; scalar constants become immediates;
//! - a `MatMul` of an `f32` operand by a constant `f32` matrix becomes [`Kernel::GemmConstB`],
//!   and absorbs a following `Add` of a constant `[n]` bias and a `Relu` or a GELU (exact,
//!   `x * 0.5 * (1 + erf(x / sqrt 2))`, or tanh's, `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715
//!   x^3)))`, in any association, also read through a reshape that keeps the rows) into the
//!   GEMM's epilogue;
//! - any other `f32` `MatMul` becomes [`Kernel::MatMul`] (runtime `B`), which reads
//!   transposed operands in place and writes a transposed result in place: a `Transpose`
//!   operand whose users are all such products is read through permuted strides (for `A`,
//!   only if its last axis stays last: the GEMM copies rows of `A`), and a sole `Transpose`
//!   user that keeps the last axis last receives the product directly (attention's
//!   `[b, s, h, d]` to `[b, h, s, d]` and back cost no copies);
//! - a fused op (`gemm`, `attention`, `fused`, `add_layer_norm`, `rms_norm`, written by the
//!   optimiser) is one kernel, [`fused_step`]: the same kernels as the patterns above, with the
//!   fused node's operands as the inputs (its doc lists the forms that are supported);
//! - `Reshape` is a view (no kernel), `Input` and `Const` need none;
//! - every other op is [`Kernel::Op`], its own kernel;
//! - a graph output that is not computed by a kernel into its own buffer (an input, a constant,
//!   a view, or a node named by two outputs) gets a [`Kernel::Copy`] into the output buffer.

use std::collections::HashSet;
use std::sync::Arc;

use tcc_ir::{
    Activation, BinaryOp, Body, DType, Graph, NodeId, Op, ScoreScale, Shape, Tensor, TensorData,
    TensorType, UnaryOp,
};

use super::kernels::unsupported_node;
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
        /// The expression between `Q·K` and the softmax (`f`).
        expr: Expr,
        /// The expression between the softmax and `· V` (`g`), if any.
        post: Option<Expr>,
        /// How many leaves `f` has besides the scores (inputs `3..3 + pre_leaves`).
        pre_leaves: usize,
        /// The permutations that make `Q`, `K` and `V` from their sources.
        perms: [Option<Vec<usize>>; 3],
        /// The permutation applied to the result (the step's node is then that `Transpose`).
        out_perm: Option<Vec<usize>>,
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

/// The `f32` value of a scalar `f32` constant node.
fn scalar_f32(graph: &Graph, id: NodeId) -> Option<f32> {
    let t = graph.const_value(id)?;
    match t.data() {
        TensorData::F32(v) if v.len() == 1 => Some(v[0]),
        _ => None,
    }
}

/// The single user of `id` (used once or more by one node), if it is not a graph output.
fn sole_user(graph: &Graph, id: NodeId) -> Option<NodeId> {
    if graph.is_output(id) {
        return None;
    }
    let users = graph.users(id);
    let first = *users.first()?;
    users.iter().all(|&u| u == first).then_some(first)
}

/// The other operand of a binary node `id` whose one operand is `x`.
fn other_operand(graph: &Graph, id: NodeId, x: NodeId) -> Option<NodeId> {
    let ops = graph.operands(id);
    match ops.as_slice() {
        [a, b] if *a == x => Some(*b),
        [a, b] if *b == x => Some(*a),
        _ => None,
    }
}

fn is_binary(graph: &Graph, id: NodeId, op: BinaryOp) -> bool {
    graph.op(id) == &Op::Binary(op)
}

/// A scalar f32 constant close to `want` (relative 1e-6).
fn is_const_near(graph: &Graph, id: NodeId, want: f32) -> bool {
    scalar_f32(graph, id).is_some_and(|v| (v - want).abs() <= 1e-6 * want.abs())
}

/// A binary node `id` of `op` with `x` as one operand and a scalar constant near `c` as the
/// other (either order for commutative ops; `x` first for `Div` and `Pow`).
fn is_binary_with_const(graph: &Graph, id: NodeId, op: BinaryOp, x: NodeId, c: f32) -> bool {
    if !is_binary(graph, id, op) {
        return false;
    }
    let ops = graph.operands(id);
    match op {
        BinaryOp::Div | BinaryOp::Pow => ops[0] == x && is_const_near(graph, ops[1], c),
        _ => other_operand(graph, id, x).is_some_and(|o| o != x && is_const_near(graph, o, c)),
    }
}

/// Matches a GELU of `x` by its structure around the `1 + f` factor (`f + 1` too), in any
/// association of the product `0.5 · x · (1 + f)` (TorchScript's `(x * 0.5) * (1 + erf)` and
/// `(x * (1 + erf)) * 0.5`, dynamo's `x * (0.5 * (1 + erf))`, ...):
/// - erf: `f = erf(x / sqrt 2)` or `erf(x * (1 / sqrt 2))`;
/// - tanh: `f = tanh(sqrt(2 / pi) · (x + 0.044715 · x^3))`, `x^3` as `pow(x, 3)` or products
///   (GPT-2's `gelu_new`, torch's `gelu(approximate="tanh")`).
///
/// Every node between `x` and the result must have its one user inside the pattern, and
/// every user of `x` must be in it. Returns the result, the nodes covered and the activation.
fn match_gelu(graph: &Graph, x: NodeId) -> Option<(NodeId, Vec<NodeId>, Activation)> {
    if graph.is_output(x) {
        return None;
    }
    let shape = graph.ty(x).shape.clone();
    let x_users = graph.users(x);
    // The `1 + f` factor: an Add of 1 and an Erf or Tanh whose argument comes from x.
    for &start in &x_users {
        let mut nodes: Vec<NodeId> = Vec::new();
        let (f, act) =
            if is_binary_with_const(graph, start, BinaryOp::Div, x, std::f32::consts::SQRT_2)
                || is_binary_with_const(
                    graph,
                    start,
                    BinaryOp::Mul,
                    x,
                    std::f32::consts::FRAC_1_SQRT_2,
                )
            {
                let erf = sole_user(graph, start)?;
                if graph.op(erf) != &Op::Unary(UnaryOp::Erf) {
                    continue;
                }
                nodes.extend([start, erf]);
                (erf, Activation::GeluErf)
            } else {
                // tanh: start is x^3 (pow, or x*x then *x) or the inner `x + k x^3`.
                let cube = if is_binary_with_const(graph, start, BinaryOp::Pow, x, 3.0) {
                    nodes.push(start);
                    start
                } else if is_binary(graph, start, BinaryOp::Mul)
                    && graph.operands(start).iter().all(|&o| o == x)
                {
                    let c3 = sole_user(graph, start)?;
                    if !is_binary(graph, c3, BinaryOp::Mul)
                        || other_operand(graph, c3, start) != Some(x)
                    {
                        continue;
                    }
                    nodes.extend([start, c3]);
                    c3
                } else {
                    continue;
                };
                let scaled = sole_user(graph, cube)?;
                if !is_binary_with_const(graph, scaled, BinaryOp::Mul, cube, 0.044715) {
                    continue;
                }
                let inner = sole_user(graph, scaled)?;
                if !is_binary(graph, inner, BinaryOp::Add)
                    || other_operand(graph, inner, scaled) != Some(x)
                {
                    continue;
                }
                let arg = sole_user(graph, inner)?;
                if !is_binary_with_const(graph, arg, BinaryOp::Mul, inner, 0.797_884_6) {
                    continue;
                }
                let tanh = sole_user(graph, arg)?;
                if graph.op(tanh) != &Op::Unary(UnaryOp::Tanh) {
                    continue;
                }
                nodes.extend([scaled, inner, arg, tanh]);
                (tanh, Activation::GeluTanh)
            };
        let plus = sole_user(graph, f)?;
        if !is_binary_with_const(graph, plus, BinaryOp::Add, f, 1.0) {
            continue;
        }
        nodes.push(plus);
        // The product of {x, 0.5, plus}, in any association.
        let m1 = sole_user(graph, plus)?;
        if !is_binary(graph, m1, BinaryOp::Mul) {
            continue;
        }
        let o1 = other_operand(graph, m1, plus)?;
        let result = if o1 == x {
            let m2 = sole_user(graph, m1)?;
            if !is_binary_with_const(graph, m2, BinaryOp::Mul, m1, 0.5) {
                continue;
            }
            nodes.extend([m1, m2]);
            m2
        } else if is_const_near(graph, o1, 0.5) {
            let m2 = sole_user(graph, m1)?;
            if !is_binary(graph, m2, BinaryOp::Mul) || other_operand(graph, m2, m1) != Some(x) {
                continue;
            }
            nodes.extend([m1, m2]);
            m2
        } else if is_binary_with_const(graph, o1, BinaryOp::Mul, x, 0.5)
            && sole_user(graph, o1) == Some(m1)
        {
            nodes.extend([o1, m1]);
            m1
        } else {
            continue;
        };
        // Every inner node used once, inside; every user of x inside; one shape throughout.
        let inside = |n: NodeId| nodes.contains(&n);
        let ok = nodes.iter().all(|&n| {
            graph.ty(n).shape == shape
                && graph.ty(n).dtype == DType::F32
                && (n == result
                    || (!graph.is_output(n) && graph.users(n).iter().all(|&u| inside(u))))
        }) && x_users.iter().all(|&u| inside(u));
        if ok {
            return Some((result, nodes, act));
        }
    }
    None
}

/// Builds the schedule of `graph`. Fails, naming the node, on a fused op of a form no kernel
/// computes (see [`fused_step`]).
pub fn schedule(graph: &Graph) -> Result<Vec<Step>> {
    let order = graph.topo_order();
    let mut covered: HashSet<NodeId> = HashSet::new();
    let mut steps = Vec::new();
    // GEMMs first decide what they absorb.
    let mut gemm_of: std::collections::HashMap<NodeId, Step> = Default::default();
    for &id in &order {
        if graph.op(id) != &Op::MatMul {
            continue;
        }
        let ops = graph.operands(id);
        let (a, b) = (ops[0], ops[1]);
        let Some(bt) = graph.const_value(b) else {
            continue;
        };
        if bt.shape().len() != 2
            || bt.dtype() != DType::F32
            || graph.ty(a).dtype != DType::F32
            || graph.ty(a).rank() < 2
        {
            continue;
        }
        let n = bt.shape()[1];
        let mut result = id;
        let mut bias = None;
        let mut activation = Activation::None;
        if let Some(add) = sole_user(graph, id) {
            if is_binary(graph, add, BinaryOp::Add) && graph.ty(add).shape == graph.ty(id).shape {
                if let Some(c) = other_operand(graph, add, id) {
                    if let Some(ct) = graph.const_value(c) {
                        if let (TensorData::F32(v), true) = (
                            ct.data(),
                            ct.shape().last() == Some(&n)
                                && ct.shape().iter().rev().skip(1).all(|&d| d == 1),
                        ) {
                            bias = Some(v.clone());
                            covered.insert(add);
                            result = add;
                        }
                    }
                }
            }
        }
        if let Some(relu) = sole_user(graph, result) {
            if graph.op(relu) == &Op::Unary(UnaryOp::Relu) {
                covered.insert(relu);
                result = relu;
                activation = Activation::Relu;
            }
        }
        if activation == Activation::None {
            // The GELU may read the product through a reshape that keeps its rows (GPT-2's
            // Conv1D views its 2-D product back as [batch, seq, n]): the same buffer.
            let view = sole_user(graph, result).filter(|&r| {
                matches!(graph.op(r), Op::Reshape { .. })
                    && graph.ty(r).shape.dims().last() == graph.ty(result).shape.dims().last()
            });
            let candidates = std::iter::once((result, None)).chain(view.map(|v| (v, Some(v))));
            for (x, via) in candidates {
                if let Some((end, nodes, act)) = match_gelu(graph, x) {
                    covered.extend(nodes);
                    covered.extend(via);
                    result = end;
                    activation = act;
                    break;
                }
            }
        }
        gemm_of.insert(
            result,
            Step {
                dest: Dest::Node(result),
                node: result,
                kernel: Kernel::GemmConstB {
                    b: bt.clone(),
                    bias,
                    activation,
                },
                inputs: vec![a],
            },
        );
        covered.insert(id);
    }
    // Attention: softmax(f(Q·K)) · V in one kernel.
    for &id in &order {
        if let Some((step, nodes)) = match_attention(graph, id) {
            covered.extend(nodes);
            gemm_of.insert(id, step);
        }
    }
    // A node that will be computed inside its user's fused loop.
    let inlined = |id: NodeId| -> bool {
        let node = graph.node(id);
        if covered.contains(&id) || !is_elementwise(&node.op) || is_half(node.ty.dtype) {
            return false;
        }
        match sole_user(graph, id) {
            Some(user) => {
                is_elementwise(graph.op(user))
                    && graph.ty(user).shape == node.ty.shape
                    && !is_half(graph.ty(user).dtype)
            }
            None => false,
        }
    };
    for &id in &order {
        if let Some(step) = gemm_of.remove(&id) {
            steps.push(step);
            continue;
        }
        if covered.contains(&id) {
            continue;
        }
        let node = graph.node(id);
        match &node.op {
            Op::Input { .. } | Op::Const(_) | Op::Reshape { .. } => {}
            op if is_elementwise(op) && !is_half(node.ty.dtype) => {
                if inlined(id) {
                    continue;
                }
                let mut inputs = Vec::new();
                let expr = build_expr(graph, id, &inlined, &mut inputs, true);
                steps.push(Step {
                    dest: Dest::Node(id),
                    node: id,
                    kernel: Kernel::Fused(expr),
                    inputs,
                });
            }
            Op::MatMul if runtime_matmul(graph, id) => {
                let ops = graph.operands(id);
                let mut inputs = Vec::new();
                let mut perms = [None, None];
                for (i, &o) in ops.iter().enumerate() {
                    match folded_transpose(graph, o, i) {
                        Some((src, perm)) => {
                            inputs.push(src);
                            perms[i] = Some(perm);
                        }
                        None => inputs.push(o),
                    }
                }
                let (dest, out_perm) = match output_transpose(graph, id) {
                    Some((t, perm)) => (t, Some(perm)),
                    None => (id, None),
                };
                steps.push(Step {
                    dest: Dest::Node(dest),
                    node: dest,
                    kernel: Kernel::MatMul {
                        product: graph.ty(id).shape.clone(),
                        perms,
                        out_perm,
                    },
                    inputs,
                });
            }
            op if tcc_ir::fused::is_fused(op) => steps.push(fused_step(graph, id)?),
            Op::Transpose { .. } if folded_everywhere(graph, id) => {}
            Op::Transpose { .. }
                if graph.operands(id).first().is_some_and(|&m| {
                    output_transpose(graph, m) == Some((id, perm_of(graph, id)))
                }) => {}
            op => steps.push(Step {
                dest: Dest::Node(id),
                node: id,
                kernel: Kernel::Op(op.clone()),
                inputs: graph.operands(id),
            }),
        }
    }
    Ok(steps)
}

/// Matches attention at its `P·V` product `pv`: `pv = softmax(f(qk)) · V`, with `qk` a runtime
/// `MatMul`, `f` a tree of elementwise ops of the scores' shape (or nothing), a softmax over
/// the last axis, every intermediate used once and not a graph output, all `f32`. Returns the
/// step and the nodes it covers (the step is scheduled at `pv`).
fn match_attention(graph: &Graph, pv: NodeId) -> Option<(Step, Vec<NodeId>)> {
    if !runtime_matmul(graph, pv) {
        return None;
    }
    let [y, v] = graph.operands(pv)[..] else {
        return None;
    };
    // g: elementwise f32 nodes of y's shape from y down to the softmax, every user of each in
    // the tree (or pv, for y).
    let mut post_tree = Vec::new();
    let mut sm = None;
    let mut stack = vec![y];
    while let Some(n) = stack.pop() {
        if post_tree.contains(&n) {
            continue;
        }
        let node = graph.node(n);
        if matches!(node.op, Op::Softmax { .. }) {
            if sm.is_some_and(|s| s != n) {
                return None;
            }
            sm = Some(n);
            continue;
        }
        if graph.is_output(n) {
            continue;
        }
        let users = graph.users(n);
        let inner = if n == y {
            users.iter().all(|&u| u == pv)
        } else {
            users.iter().all(|&u| post_tree.contains(&u))
        };
        // Inner nodes may be of other types (a mask's booleans), the root is f32.
        if inner
            && is_elementwise(&node.op)
            && !is_half(node.ty.dtype)
            && (n != y || node.ty.dtype == DType::F32)
            && node.ty.shape == graph.ty(y).shape
        {
            post_tree.push(n);
            stack.extend(graph.operands(n));
        }
    }
    let sm = sm?;
    let sm_users = graph.users(sm);
    let post_ok = if y == sm {
        sole_user(graph, sm) == Some(pv)
    } else {
        !post_tree.is_empty()
            && !graph.is_output(sm)
            && sm_users.iter().all(|&u| post_tree.contains(&u))
    };
    if !post_ok || v == y {
        return None;
    }
    let Op::Softmax { axis } = graph.op(sm) else {
        return None;
    };
    let scores = graph.ty(sm);
    let r = scores.rank();
    if r < 2 || *axis != r - 1 || scores.dtype != DType::F32 {
        return None;
    }
    if graph.ty(y).shape != scores.shape
        || graph.ty(pv).shape.dims()[..r - 2] != scores.shape.dims()[..r - 2]
    {
        return None;
    }
    // The tree of f: elementwise f32 nodes of the scores' shape, each used once, down to qk.
    let x = graph.operands(sm)[0];
    let mut tree = Vec::new();
    let mut qk = None;
    let mut stack = vec![x];
    while let Some(n) = stack.pop() {
        let node = graph.node(n);
        if runtime_matmul(graph, n) && node.ty.shape == scores.shape {
            if qk.is_some() {
                return None;
            }
            qk = Some(n);
            continue;
        }
        let inner = if n == x {
            sole_user(graph, x) == Some(sm)
        } else {
            sole_user(graph, n).is_some_and(|u| tree.contains(&u))
        };
        if inner
            && is_elementwise(&node.op)
            && !is_half(node.ty.dtype)
            && (n != x || node.ty.dtype == DType::F32)
            && node.ty.shape == scores.shape
        {
            tree.push(n);
            stack.extend(graph.operands(n));
        }
    }
    let qk = qk?;
    let user = sole_user(graph, qk)?;
    if !(user == sm || tree.contains(&user)) {
        return None;
    }
    if tree.is_empty() && x != qk {
        return None;
    }
    let mut leaves = vec![qk];
    let expr = if tree.is_empty() {
        Expr::Leaf(0, DType::F32)
    } else {
        let inlined = |n: NodeId| tree.contains(&n);
        build_expr(graph, x, &inlined, &mut leaves, true)
    };
    if leaves.iter().skip(1).any(|&l| l == qk) {
        return None;
    }
    let [q, k] = graph.operands(qk)[..] else {
        return None;
    };
    let mut inputs = Vec::new();
    let mut perms = [None, None, None];
    for (i, (o, operand)) in [(q, 0), (k, 1), (v, 1)].into_iter().enumerate() {
        match folded_transpose(graph, o, operand) {
            Some((src, perm)) => {
                inputs.push(src);
                perms[i] = Some(perm);
            }
            None => inputs.push(o),
        }
    }
    inputs.extend(&leaves[1..]);
    let post = if y == sm {
        None
    } else {
        let mut post_leaves = vec![sm];
        let inlined = |n: NodeId| post_tree.contains(&n);
        let e = build_expr(graph, y, &inlined, &mut post_leaves, true);
        if post_leaves[1..]
            .iter()
            .any(|l| tree.contains(l) || *l == qk)
        {
            return None;
        }
        inputs.extend(&post_leaves[1..]);
        Some(e)
    };
    let (dest, out_perm) = match output_transpose(graph, pv) {
        Some((t, perm)) => (t, Some(perm)),
        None => (pv, None),
    };
    let pre_leaves = leaves.len() - 1;
    let mut covered = tree;
    covered.extend(post_tree);
    covered.extend([qk, sm, pv]);
    Some((
        Step {
            dest: Dest::Node(dest),
            node: dest,
            kernel: Kernel::Attention {
                scores: scores.shape.clone(),
                expr,
                post,
                pre_leaves,
                perms,
                out_perm,
            },
            inputs,
        },
        covered,
    ))
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
            perm_q,
            perm_k,
            perm_v,
            perm_out,
        } => {
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
            let mut expr = match *scale {
                ScoreScale::None => *s,
                ScoreScale::Mul(c) => Expr::Binary(BinaryOp::Mul, s, f32_scalar(c), DType::F32),
                ScoreScale::Div(c) => Expr::Binary(BinaryOp::Div, s, f32_scalar(c), DType::F32),
            };
            let mut inputs = ops[..3].to_vec();
            if *mask {
                expr = Expr::Binary(
                    BinaryOp::Add,
                    Box::new(expr),
                    Box::new(Expr::Leaf(1, DType::F32)),
                    DType::F32,
                );
                inputs.push(ops[3]);
            }
            let post = nan_filter.then(|| {
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
            Ok(step(
                Kernel::Attention {
                    scores,
                    expr,
                    post,
                    pre_leaves: usize::from(*mask),
                    perms: [perm_q.clone(), perm_k.clone(), perm_v.clone()],
                    out_perm: perm_out.clone(),
                },
                inputs,
            ))
        }
        Op::AddLayerNorm { .. } | Op::RmsNorm { .. } => Ok(step(Kernel::Op(node.op.clone()), ops)),
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

/// True for a `MatMul` that becomes [`Kernel::MatMul`]: `f32`, operands of rank 2 or more,
/// not a GEMM with a constant `B` (those are scheduled first).
fn runtime_matmul(graph: &Graph, id: NodeId) -> bool {
    graph.op(id) == &Op::MatMul
        && graph.ty(id).dtype == DType::F32
        && graph
            .operands(id)
            .iter()
            .all(|&o| graph.ty(o).rank() >= 2 && graph.ty(o).dtype == DType::F32)
}

fn perm_of(graph: &Graph, id: NodeId) -> Vec<usize> {
    match graph.op(id) {
        Op::Transpose { perm } => perm.clone(),
        _ => Vec::new(),
    }
}

/// If operand `i` of a runtime `MatMul` (`o`) is a `Transpose` the product can read in place:
/// its source and permutation. `A` (operand 0) must keep its last axis last.
fn folded_transpose(graph: &Graph, o: NodeId, i: usize) -> Option<(NodeId, Vec<usize>)> {
    let Op::Transpose { perm } = graph.op(o) else {
        return None;
    };
    let r = perm.len();
    if r < 2 || (i == 0 && perm[r - 1] != r - 1) {
        return None;
    }
    let src = graph.operands(o)[0];
    // A product that writes its result into this Transpose leaves no source to read.
    if output_transpose(graph, src).is_some_and(|(t, _)| t == o) {
        return None;
    }
    Some((src, perm.clone()))
}

/// True if every user of the `Transpose` `id` reads it in place (a runtime `MatMul` folding it),
/// so it needs no kernel of its own.
fn folded_everywhere(graph: &Graph, id: NodeId) -> bool {
    if graph.is_output(id) {
        return false;
    }
    let users = graph.users(id);
    !users.is_empty()
        && users.iter().all(|&u| {
            runtime_matmul(graph, u)
                && graph
                    .operands(u)
                    .iter()
                    .enumerate()
                    .all(|(i, &o)| o != id || folded_transpose(graph, o, i).is_some())
        })
}

/// If the runtime `MatMul` `id` has one user, a `Transpose` that keeps the last axis last, and
/// is not a graph output: that `Transpose` and its permutation (the product is written there).
fn output_transpose(graph: &Graph, id: NodeId) -> Option<(NodeId, Vec<usize>)> {
    if !runtime_matmul(graph, id) {
        return None;
    }
    let t = sole_user(graph, id)?;
    let Op::Transpose { perm } = graph.op(t) else {
        return None;
    };
    let r = perm.len();
    (r >= 2 && perm[r - 1] == r - 1 && graph.operands(t)[0] == id).then(|| (t, perm.clone()))
}

fn is_half(d: DType) -> bool {
    matches!(d, DType::F16 | DType::BF16)
}

/// The expression of `id`, inlining operands as `inlined` says and collecting leaves.
fn build_expr(
    graph: &Graph,
    id: NodeId,
    inlined: &dyn Fn(NodeId) -> bool,
    leaves: &mut Vec<NodeId>,
    root: bool,
) -> Expr {
    let node = graph.node(id);
    if let Some(t) = graph.const_value(id) {
        if t.len() == 1 && !is_half(t.dtype()) {
            return Expr::Scalar(t.clone());
        }
    }
    if !root && !inlined(id) {
        let k = leaves.iter().position(|&l| l == id).unwrap_or_else(|| {
            leaves.push(id);
            leaves.len() - 1
        });
        return Expr::Leaf(k, node.ty.dtype);
    }
    let ops = graph.operands(id);
    let mut sub = |o: NodeId| build_expr(graph, o, inlined, leaves, false);
    let d = node.ty.dtype;
    match &node.op {
        Op::Unary(u) => Expr::Unary(*u, Box::new(sub(ops[0])), d),
        Op::Binary(b) => {
            let x = sub(ops[0]);
            let y = sub(ops[1]);
            Expr::Binary(*b, Box::new(x), Box::new(y), d)
        }
        Op::Where => {
            let c = sub(ops[0]);
            let a = sub(ops[1]);
            let b = sub(ops[2]);
            Expr::Where(Box::new([c, a, b]), d)
        }
        Op::Cast { to } => Expr::Cast(Box::new(sub(ops[0])), *to),
        // Only elementwise nodes are roots or inlined.
        _ => {
            leaves.push(id);
            Expr::Leaf(leaves.len() - 1, d)
        }
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

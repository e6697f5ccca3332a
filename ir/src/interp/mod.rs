//! The reference interpreter: runs a graph on concrete tensors.
//!
//! Plainly correct over fast: it is the oracle that every rewrite and every
//! kernel is checked against. The one exception is `MatMul`, the hot spot of
//! every transformer, which gets a cache-blocked, multi-threaded f32 kernel so
//! that whole models run in tests (see `matmul.rs`).
//!
//! [`run`] binds the shape symbols from the inputs, evaluates the nodes in
//! [`Graph::topo_order`] through [`eval`], drops every value after its last
//! use, and checks each result against the node's type. A `pack` binds its
//! derived `tokens` symbol to its mask's count of nonzero entries before it
//! runs (a later `pack` of the same symbol must count as many). [`eval`]
//! evaluates one op; the op families live in one file each:
//!
//! - `elementwise`: unary and binary ops, `Where` and `Cast`, with numpy
//!   broadcasting;
//! - `matmul`: batched matrix products;
//! - `reduce`: reductions, `ArgReduce` and `CumSum`;
//! - `norm`: `Softmax`, `LogSoftmax` and `LayerNorm`;
//! - `movement`: `Reshape`, `Transpose`, `Expand`, `Concat`, `Slice`,
//!   `Tile` and `Trilu`;
//! - `gather`: `Gather`, `GatherElements` and `GatherNd`;
//! - `pack`: `Pack` and `Unpack`, padding elimination's moves between a padded
//!   batch and its real tokens;
//! - `conv`: `Conv`, through an im2col buffer;
//! - `pad`: `Pad` in its four modes;
//! - `shape_ops`: `Dims`, `Range` and `ShapeOf`.
//!
//! Float ops on f32, f16 and bf16 compute in f64 and round back to the
//! element type once, except `MatMul` on f32, which accumulates in f32, and
//! `Conv`, which accumulates in f32 for f32, f16 and bf16 operands (rounding
//! f16 and bf16 back once).
//!
//! **A budget per result.** A graph is untrusted input, and a few bytes of
//! attributes (`range` to 2^40, `expand` to `[65536, 65536, 65536]`) can ask
//! for any amount of memory. Before an op runs, [`eval`] evaluates the size of
//! the node's type and refuses a result of more than [`MAX_RESULT_BYTES`]
//! (with checked arithmetic, so sizes that overflow are refused too); `range`,
//! `expand`, `tile`, `pad`, `pack` and `unpack` also check the sizes they
//! compute themselves. A result of at least [`PROBE_BYTES`] is first reserved
//! on trial, with room for an index per element as the movement ops build, so
//! that memory the system will not give (an address-space limit, an exhausted
//! machine) is an error naming the node and op rather than an abort. The trial
//! is best effort: it does not hold the memory it found, and an op's own
//! scratch is not counted.

mod conv;
mod elementwise;
mod gather;
mod matmul;
mod movement;
mod norm;
mod pack;
mod pad;
mod reduce;
mod shape_ops;

use crate::dim::Dim;
use crate::dtype::DType;
use crate::error::{invalid, Error, Result};
use crate::graph::{Graph, NodeId};
use crate::op::Op;
use crate::shape::{checked_numel, Shape, TensorType};
use crate::tensor::Tensor;
use std::borrow::Cow;
use std::collections::HashMap;

/// Values of the shape symbols for one run, bound from the inputs' sizes.
#[derive(Clone, Debug, Default)]
pub struct Bindings {
    /// Symbol name to size.
    pub values: HashMap<String, i64>,
}

impl Bindings {
    /// Looks a symbol up.
    pub fn get(&self, name: &str) -> Option<i64> {
        self.values.get(name).copied()
    }

    /// Binds `name` to `value`, replacing any earlier binding.
    pub fn insert(&mut self, name: &str, value: i64) {
        self.values.insert(name.to_string(), value);
    }

    /// Evaluates a dim; fails on an unbound symbol or a division by zero.
    pub fn eval_dim(&self, d: &Dim) -> std::result::Result<i64, String> {
        d.eval(&|s| self.get(s))
    }

    /// Evaluates every dim of a shape; fails on an unbound symbol or a
    /// negative size.
    pub fn eval_shape(&self, s: &Shape) -> std::result::Result<Vec<usize>, String> {
        s.eval(&|name| self.get(name))
    }
}

/// The result of evaluating one op, before the node's context is added.
pub(crate) type OpResult<T> = std::result::Result<T, String>;

/// The most bytes one result of the interpreter may hold: 4 GiB (2^30 `f32`
/// elements, 2^29 `i64`). A larger result is an error naming the node and op.
pub const MAX_RESULT_BYTES: usize = 1 << 32;

/// Results of at least this many bytes (64 MiB) are reserved on trial before
/// the op runs; see the module documentation.
pub const PROBE_BYTES: usize = 64 << 20;

/// Checks that a result of `shape` and `dtype` fits [`MAX_RESULT_BYTES`] and,
/// from [`PROBE_BYTES`] on, that memory for it (and an index per element) can
/// be reserved now.
pub(crate) fn check_budget(shape: &[usize], dtype: DType) -> OpResult<()> {
    let too_big = || {
        format!(
            "its result of shape {shape:?} and dtype {dtype} would need more than \
             the interpreter's limit of {MAX_RESULT_BYTES} bytes per result"
        )
    };
    let n = checked_numel(shape).ok_or_else(too_big)?;
    let bytes = n.checked_mul(dtype.size_bytes()).ok_or_else(too_big)?;
    if bytes > MAX_RESULT_BYTES {
        return Err(too_big());
    }
    if bytes >= PROBE_BYTES {
        let trial = n
            .checked_mul(std::mem::size_of::<usize>())
            .and_then(|index| index.checked_add(bytes))
            .ok_or_else(too_big)?;
        let mut probe: Vec<u8> = Vec::new();
        probe.try_reserve_exact(trial).map_err(|_| {
            format!(
                "its result of shape {shape:?} and dtype {dtype} ({bytes} bytes) \
                 cannot be allocated: the system refused {trial} bytes"
            )
        })?;
    }
    Ok(())
}

/// Evaluates a fused op's expansion, one core op at a time: a fused op means exactly this.
struct TensorBuilder<'a> {
    env: &'a Bindings,
}

impl crate::fused::Builder for TensorBuilder<'_> {
    type Value = Tensor;

    fn op(&mut self, op: Op, args: &[Tensor]) -> Result<Tensor> {
        let tys: Vec<TensorType> = args
            .iter()
            .map(|t| TensorType::new(t.dtype(), Shape::fixed(t.shape())))
            .collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let (ty, _) = crate::infer::infer(&op, &refs, &vec![None; args.len()])?;
        let operands: Vec<&Tensor> = args.iter().collect();
        eval(&op, &operands, &ty, self.env)
    }

    fn constant(&mut self, value: Tensor) -> Result<Tensor> {
        Ok(value)
    }

    fn rank(&self, value: &Tensor) -> usize {
        value.shape().len()
    }

    fn dims(&self, value: &Tensor) -> Vec<crate::Dim> {
        value
            .shape()
            .iter()
            .map(|&d| Dim::constant(d as i64))
            .collect()
    }
}

/// Runs `graph` on `inputs` (keyed by input name) and returns the outputs in
/// graph order with their names.
///
/// Every graph input must be given with its declared dtype and rank; its sizes
/// bind the symbols of its declared shape (see [`bind_inputs`]). Nodes that no
/// output depends on are not evaluated. After each node, the result's shape
/// and dtype are checked against the node's type; a symbol that the inputs do
/// not bind but that appears alone as a dim of a node's type is bound from the
/// first result it sizes. A `pack`'s `tokens` symbol is bound before the pack
/// runs, to its mask's number of nonzero entries, which must be at least 1;
/// when an earlier `pack` bound it already, the counts must agree (an error
/// naming the node otherwise).
pub fn run(graph: &Graph, inputs: &HashMap<String, Tensor>) -> Result<Vec<(String, Tensor)>> {
    let mut env = bind_inputs(graph, inputs)?;
    let order = graph.topo_order();
    let bound = order.iter().map(|n| n.index() + 1).max().unwrap_or(0);

    // Which nodes the outputs need, and how many uses each value has left:
    // one per operand edge of a live user, plus one per output naming it.
    let mut live = vec![false; bound];
    let mut stack: Vec<NodeId> = graph.outputs().iter().map(|(_, o)| *o).collect();
    while let Some(n) = stack.pop() {
        if !std::mem::replace(&mut live[n.index()], true) {
            stack.extend(graph.operands(n));
        }
    }
    let mut uses = vec![0usize; bound];
    let mut operands: Vec<Vec<NodeId>> = vec![Vec::new(); bound];
    for &n in &order {
        if live[n.index()] {
            operands[n.index()] = graph.operands(n);
            for o in &operands[n.index()] {
                uses[o.index()] += 1;
            }
        }
    }
    for (_, o) in graph.outputs() {
        uses[o.index()] += 1;
    }

    let mut values: Vec<Option<Cow<'_, Tensor>>> = vec![None; bound];
    for &id in &order {
        if !live[id.index()] {
            continue;
        }
        let node = graph.node(id);
        let fail = |message: String| {
            let message = match &node.origin {
                Some(origin) => format!("{message} (from `{origin}`)"),
                None => message,
            };
            Error::Eval {
                node: id.index(),
                op: node.op.name().to_string(),
                message,
            }
        };
        let result: Cow<'_, Tensor> = match &node.op {
            Op::Input { name } => match inputs.get(name) {
                Some(t) => Cow::Borrowed(t),
                None => return Err(fail(format!("input `{name}` was not bound"))),
            },
            Op::Const(c) => Cow::Borrowed(&*c.value),
            op => {
                let ops = &operands[id.index()];
                let mut args: Vec<&Tensor> = Vec::with_capacity(ops.len());
                for o in ops {
                    match &values[o.index()] {
                        Some(v) => args.push(v),
                        None => {
                            return Err(fail(format!(
                                "operand node {} has no value (not evaluated or dropped early)",
                                o.index()
                            )))
                        }
                    }
                }
                if let (Op::Pack { tokens }, Some(mask)) = (op, args.get(1)) {
                    bind_tokens(tokens, mask, &mut env).map_err(&fail)?;
                }
                let t = eval_op(op, &args, &node.ty, &env).map_err(&fail)?;
                Cow::Owned(t)
            }
        };
        check_result(&node.ty, &result, &mut env).map_err(&fail)?;
        values[id.index()] = Some(result);
        for o in &operands[id.index()] {
            uses[o.index()] -= 1;
            if uses[o.index()] == 0 {
                values[o.index()] = None;
            }
        }
    }

    let mut out = Vec::with_capacity(graph.outputs().len());
    for (i, (name, id)) in graph.outputs().iter().enumerate() {
        uses[id.index()] -= 1;
        let v = if uses[id.index()] == 0 {
            values[id.index()].take()
        } else {
            values[id.index()].clone()
        };
        let v = v.ok_or_else(|| Error::Verify(format!("output {i} `{name}` has no value")))?;
        out.push((name.clone(), v.into_owned()));
    }
    Ok(out)
}

/// Binds the shape symbols from the inputs' sizes, checking each input.
///
/// For every graph input, the tensor must be given, with the declared dtype and
/// rank. A dim that is a bare symbol binds it (or must equal its earlier
/// binding), a constant dim must match, and compound dims (`seq + 1`) are
/// checked once every input has been bound.
pub fn bind_inputs(graph: &Graph, inputs: &HashMap<String, Tensor>) -> Result<Bindings> {
    let mut env = Bindings::default();
    let mut compound: Vec<(String, usize, Dim, usize)> = Vec::new();
    for &id in graph.inputs() {
        let name = match graph.op(id) {
            Op::Input { name } => name,
            other => {
                return Err(Error::Verify(format!(
                    "graph input node {} is a `{}`, not an input",
                    id.index(),
                    other.name()
                )))
            }
        };
        let ty = graph.ty(id);
        let bad = |message: String| Error::Input {
            name: name.clone(),
            message,
        };
        let t = inputs
            .get(name)
            .ok_or_else(|| bad(format!("missing; expected a tensor of type {ty}")))?;
        if t.dtype() != ty.dtype {
            return Err(bad(format!(
                "has dtype {}, but the graph declares {ty}",
                t.dtype()
            )));
        }
        if t.shape().len() != ty.rank() {
            return Err(bad(format!(
                "has shape {:?} of rank {}, but the graph declares {ty}",
                t.shape(),
                t.shape().len()
            )));
        }
        for (axis, (d, &size)) in ty.shape.dims().iter().zip(t.shape()).enumerate() {
            if let Some(c) = d.as_const() {
                if c != size as i64 {
                    return Err(bad(format!(
                        "has size {size} on axis {axis}, but the graph declares {ty}"
                    )));
                }
            } else if let Some(s) = d.as_sym() {
                match env.get(s) {
                    Some(v) if v != size as i64 => {
                        return Err(bad(format!(
                            "has size {size} on axis {axis}, but `{s}` is already bound to {v}"
                        )))
                    }
                    Some(_) => {}
                    None => env.insert(s, size as i64),
                }
            } else {
                compound.push((name.clone(), axis, d.clone(), size));
            }
        }
    }
    for (name, axis, d, size) in compound {
        let v = env.eval_dim(&d).map_err(|m| Error::Input {
            name: name.clone(),
            message: format!("cannot evaluate dim `{d}` of axis {axis}: {m}"),
        })?;
        if v != size as i64 {
            return Err(Error::Input {
                name,
                message: format!("has size {size} on axis {axis}, but `{d}` evaluates to {v}"),
            });
        }
    }
    Ok(env)
}

/// Binds a `pack`'s derived symbol `tokens` to the number of nonzero entries of
/// its `mask`, before the pack runs (so that its type, and the budget, can be
/// evaluated). If the symbol is bound already (by an earlier `pack` over the
/// same mask), the counts must agree. A mask without a nonzero entry is
/// refused: a symbol stands for a size of at least 1 (the simplifier relies on
/// it, and the runtime refuses 0 for an input's symbol likewise).
fn bind_tokens(tokens: &str, mask: &Tensor, env: &mut Bindings) -> OpResult<()> {
    let count = pack::count_tokens(mask)? as i64;
    if count == 0 {
        return Err(format!(
            "its mask has no nonzero entry, but the symbol `{tokens}` it binds must be at \
             least 1, as every symbol"
        ));
    }
    match env.get(tokens) {
        Some(v) if v != count => Err(format!(
            "its mask has {count} nonzero entries, but the symbol `{tokens}` is already bound \
             to {v}"
        )),
        Some(_) => Ok(()),
        None => {
            env.insert(tokens, count);
            Ok(())
        }
    }
}

/// Checks a node's result against its type, binding any bare symbol of the
/// type that is still unbound.
fn check_result(ty: &TensorType, t: &Tensor, env: &mut Bindings) -> OpResult<()> {
    if t.dtype() != ty.dtype {
        return Err(format!(
            "result has dtype {}, but the node's type is {ty}",
            t.dtype()
        ));
    }
    if t.shape().len() != ty.rank() {
        return Err(format!(
            "result has shape {:?}, but the node's type is {ty}",
            t.shape()
        ));
    }
    for (d, &size) in ty.shape.dims().iter().zip(t.shape()) {
        if let Some(s) = d.as_sym() {
            if env.get(s).is_none() {
                env.insert(s, size as i64);
            }
        }
    }
    let want = env
        .eval_shape(&ty.shape)
        .map_err(|m| format!("cannot evaluate the node's type {ty}: {m}"))?;
    if want != t.shape() {
        return Err(format!(
            "result has shape {:?}, but the node's type {ty} evaluates to {want:?}",
            t.shape()
        ));
    }
    Ok(())
}

/// Evaluates one op on concrete operands. `ty` is the node's inferred type and
/// `env` binds the symbols its attributes and type may mention.
///
/// Fails with [`Error::Invalid`] naming the op when the operands do not fit it
/// (wrong count, dtype or shape, an index out of range, an integer division by
/// zero). `Input` cannot be evaluated on its own: [`run`] supplies inputs.
pub fn eval(op: &Op, operands: &[&Tensor], ty: &TensorType, env: &Bindings) -> Result<Tensor> {
    eval_op(op, operands, ty, env).map_err(|m| invalid(op.name(), m))
}

fn eval_op(op: &Op, x: &[&Tensor], ty: &TensorType, env: &Bindings) -> OpResult<Tensor> {
    use crate::op::Arity;
    let ok = match op.arity() {
        Arity::Exact(n) => x.len() == n,
        Arity::AtLeast(n) => x.len() >= n,
    };
    if !ok {
        return Err(format!("takes {:?} operands, got {}", op.arity(), x.len()));
    }
    // The budget, from the node's type. A type that mentions a symbol not
    // bound yet (a size known only from the result) is checked by the ops
    // that compute sizes of their own.
    if let Ok(shape) = env.eval_shape(&ty.shape) {
        check_budget(&shape, ty.dtype)?;
    }
    match op {
        Op::Input { name } => Err(format!(
            "input `{name}` has no value of its own; `run` binds inputs"
        )),
        Op::Const(c) => Ok((*c.value).clone()),
        Op::Dims {
            dtype,
            shape,
            values,
        } => shape_ops::dims(*dtype, shape, values, env),
        Op::Unary(u) => elementwise::unary(*u, x[0]),
        Op::Binary(b) => elementwise::binary(*b, x[0], x[1]),
        Op::Where => elementwise::select(x[0], x[1], x[2]),
        Op::Cast { to } => Ok(x[0].cast(*to)),
        Op::MatMul => matmul::matmul(x[0], x[1]),
        Op::MatMulInteger { saturate_pairs } => matmul::matmul_integer(x, *saturate_pairs),
        Op::Conv {
            strides,
            pads_begin,
            pads_end,
            dilations,
            group,
        } => {
            let (pads_begin, pads_end) = (eval_dims(pads_begin, env)?, eval_dims(pads_end, env)?);
            let p = conv::ConvParams {
                strides,
                pads_begin: &pads_begin,
                pads_end: &pads_end,
                dilations,
                group: *group,
            };
            conv::conv(x[0], x[1], &p)
        }
        Op::Pad {
            mode,
            pads_begin,
            pads_end,
        } => {
            let (pads_begin, pads_end) = (eval_dims(pads_begin, env)?, eval_dims(pads_end, env)?);
            pad::pad(x[0], x.get(1).copied(), *mode, &pads_begin, &pads_end)
        }
        Op::Softmax { axis } => norm::softmax(x[0], *axis, false),
        Op::LogSoftmax { axis } => norm::softmax(x[0], *axis, true),
        Op::LayerNorm { axis, epsilon } => norm::layer_norm(x[0], x[1], x[2], *axis, *epsilon),
        Op::Reduce {
            kind,
            axes,
            keep_dims,
        } => reduce::reduce(x[0], *kind, axes, *keep_dims),
        Op::ArgReduce {
            max,
            axis,
            keep_dims,
            select_last,
        } => reduce::arg_reduce(x[0], *max, *axis, *keep_dims, *select_last),
        Op::CumSum {
            axis,
            exclusive,
            reverse,
        } => reduce::cumsum(x[0], *axis, *exclusive, *reverse),
        Op::Reshape { shape } => movement::reshape(x[0], &env.eval_shape(shape)?),
        Op::Transpose { perm } => movement::transpose(x[0], perm),
        Op::Expand { shape } => movement::expand(x[0], &env.eval_shape(shape)?),
        Op::Concat { axis } => movement::concat(x, *axis),
        Op::Slice {
            axes,
            starts,
            ends,
            steps,
        } => {
            let starts = eval_dims(starts, env)?;
            let ends = eval_dims(ends, env)?;
            movement::slice(x[0], axes, &starts, &ends, steps)
        }
        Op::Gather { axis } => gather::gather(x[0], x[1], *axis),
        Op::GatherElements { axis } => gather::gather_elements(x[0], x[1], *axis),
        Op::GatherNd { batch_dims } => gather::gather_nd(x[0], x[1], *batch_dims),
        Op::Tile { repeats } => movement::tile(x[0], &eval_dims(repeats, env)?),
        Op::Range {
            dtype,
            start,
            limit,
            delta,
        } => shape_ops::range(*dtype, env.eval_dim(start)?, env.eval_dim(limit)?, *delta),
        Op::ShapeOf { start, end } => shape_ops::shape_of(x[0], *start, *end),
        Op::Trilu { upper, k } => movement::trilu(x[0], *upper, *k),
        Op::Pack { .. } => pack::pack(x[0], x[1]),
        Op::Unpack => pack::unpack(x[0], x[1]),
        Op::Gemm { .. }
        | Op::QGemm { .. }
        | Op::Attention { .. }
        | Op::AddLayerNorm { .. }
        | Op::RmsNorm { .. }
        | Op::Fused { .. }
        | Op::PackedAttention { .. } => {
            let dtype = x.first().map(|t| t.dtype()).unwrap_or(ty.dtype);
            let args: Vec<Tensor> = x.iter().map(|t| (*t).clone()).collect();
            crate::fused::expand(op, &args, dtype, &mut TensorBuilder { env })
                .map_err(|e| format!("in its expansion: {e}"))
        }
    }
    .and_then(|t| {
        // The op decides the result's dtype; the node's type must agree.
        if t.dtype() == ty.dtype {
            Ok(t)
        } else {
            Err(format!(
                "computed a {} result, but the node's type is {ty}",
                t.dtype()
            ))
        }
    })
}

fn eval_dims(dims: &[Dim], env: &Bindings) -> OpResult<Vec<i64>> {
    dims.iter().map(|d| env.eval_dim(d)).collect()
}

/// Row-major strides of `shape`, in elements.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Builds a tensor whose element count is known to match its shape.
pub(crate) fn tensor(shape: Vec<usize>, data: crate::tensor::TensorData) -> OpResult<Tensor> {
    Tensor::new(shape, data).map_err(|m| format!("internal error: {m}"))
}

/// Borrows `d` as the element type of `like`, if it holds that type.
pub(crate) fn same<'a, T: crate::tensor::Element>(
    _like: &[T],
    d: &'a crate::tensor::TensorData,
) -> Option<&'a [T]> {
    T::slice(d)
}

/// The number of elements of `start, start + step, ...` before `end`:
/// `max(0, ceil((end - start) / step))`, or for a negative step
/// `max(0, ceil((start - end) / -step))`. `step` must not be 0.
pub(crate) fn span_len(start: i64, end: i64, step: i64) -> usize {
    let (span, step) = if step > 0 {
        (end as i128 - start as i128, step as i128)
    } else {
        (start as i128 - end as i128, -(step as i128))
    };
    if span <= 0 {
        0
    } else {
        usize::try_from((span + step - 1) / step).unwrap_or(usize::MAX)
    }
}

/// Splits `shape` around `axis` into (outer, len, inner) element counts.
pub(crate) fn split_axis(shape: &[usize], axis: usize) -> OpResult<(usize, usize, usize)> {
    if axis >= shape.len() {
        return Err(format!("axis {axis} is out of range for shape {shape:?}"));
    }
    Ok((
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    ))
}

/// Calls `f(offsets, steps, len)` for each row of the broadcast of `ins` to
/// `out`: the row's elements are at `offsets[k] + j * steps[k]` in operand `k`
/// for `j` in `0..len`, in row-major output order.
///
/// Every operand must broadcast to `out` (rank at most `out`'s, each dim equal
/// to `out`'s or 1); callers check that with [`broadcast_shapes`].
pub(crate) fn broadcast_rows<const N: usize>(
    out: &[usize],
    ins: [&[usize]; N],
    mut f: impl FnMut([usize; N], [usize; N], usize),
) {
    let total: usize = out.iter().product();
    if total == 0 {
        return;
    }
    let r = out.len();
    if r == 0 {
        f([0; N], [0; N], 1);
        return;
    }
    let mut st = vec![[0usize; N]; r];
    for (k, sh) in ins.iter().enumerate() {
        let off = r - sh.len();
        let mut s = 1;
        for i in (0..sh.len()).rev() {
            st[i + off][k] = if sh[i] == 1 { 0 } else { s };
            s *= sh[i];
        }
    }
    let inner = out[r - 1];
    let steps = st[r - 1];
    let mut pos = vec![0usize; r - 1];
    let mut base = [0usize; N];
    for _ in 0..total / inner {
        f(base, steps, inner);
        for ax in (0..r - 1).rev() {
            pos[ax] += 1;
            for k in 0..N {
                base[k] += st[ax][k];
            }
            if pos[ax] < out[ax] {
                break;
            }
            for k in 0..N {
                base[k] -= st[ax][k] * out[ax];
            }
            pos[ax] = 0;
        }
    }
}

/// The numpy broadcast of concrete shapes; fails if two sizes differ and
/// neither is 1.
pub(crate) fn broadcast_shapes(shapes: &[&[usize]]) -> OpResult<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[i + off];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(format!("shapes {shapes:?} cannot be broadcast"));
            }
        }
    }
    Ok(out)
}

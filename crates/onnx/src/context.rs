//! The context an op importer works in: the ONNX node (name, op type, opset,
//! attributes, inputs) and the graph being built, with helpers that attach
//! the node's name and op type to every error, and [`Ctx::widened`], which
//! keeps a lowering into several core ops on f16 and bf16 to one rounding.
//!
//! Every IR node an importer adds goes through [`Ctx::add`], which refuses a
//! result whose constant dims are negative or span more than
//! [`MAX_STATIC_BYTES`]; constants read from attributes or made by an
//! importer are charged to the model's budget of constant bytes
//! ([`crate::load::MAX_TENSOR_BYTES`], [`crate::load::MAX_TOTAL_BYTES`]).

use crate::error::{Error, Result};
use crate::import::ImportOptions;
use crate::load::{check_tensor_bytes, declared, tensor_from_proto_as, Budget};
use crate::ops::schema::attr_type;
use crate::proto;
use crate::proto::attribute_proto::AttributeType;
use std::path::Path;
use std::sync::Arc;
use tcc_ir::{BinaryOp, DType, Dim, Graph, NodeId, Op, Tensor, TensorData, TensorType, UnaryOp};

/// The most bytes a tensor's constant dims may span (the product of its
/// constant dims times its element size): 2^48 bytes, 256 TiB. No real
/// model comes near it; beyond it the sizes and offsets that code generation
/// and the runtime compute from the dims could overflow 64 bits. Symbolic
/// dims are bound at run time and checked there.
pub const MAX_STATIC_BYTES: u64 = 1 << 48;

/// One ONNX node being imported.
pub struct Ctx<'a> {
    graph: &'a mut Graph,
    node: &'a proto::NodeProto,
    name: String,
    opset: i64,
    inputs: Vec<Option<NodeId>>,
    base_dir: &'a Path,
    options: &'a ImportOptions,
    budget: &'a Budget,
}

/// Checks that `dims` are sizes: no constant is negative, and the product of
/// the non-zero constants times `elem_bytes` is at most [`MAX_STATIC_BYTES`]
/// (zeros are left out so that an empty tensor cannot carry a huge dim). The
/// error message describes the problem; `what` names the dims in it and is
/// only called on failure.
pub(crate) fn check_dims(
    dims: &[Dim],
    elem_bytes: u64,
    what: impl FnOnce() -> String,
) -> std::result::Result<(), String> {
    let mut bytes = Some(elem_bytes.max(1));
    for d in dims {
        match d.as_const() {
            Some(v) if v < 0 => return Err(format!("{} has the negative dim {v}", what())),
            Some(0) | None => {}
            Some(v) => bytes = bytes.and_then(|b| b.checked_mul(v as u64)),
        }
    }
    if bytes.is_none_or(|b| b > MAX_STATIC_BYTES) {
        return Err(format!(
            "{} spans more than tcc's limit of {} for the constant part of a shape",
            what(),
            crate::load::human_bytes(MAX_STATIC_BYTES)
        ));
    }
    Ok(())
}

impl<'a> Ctx<'a> {
    /// A context for `node`, whose inputs resolve to `inputs` (`None` for an
    /// empty name: an absent optional input).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        graph: &'a mut Graph,
        node: &'a proto::NodeProto,
        name: String,
        opset: i64,
        inputs: Vec<Option<NodeId>>,
        base_dir: &'a Path,
        options: &'a ImportOptions,
        budget: &'a Budget,
    ) -> Ctx<'a> {
        Ctx {
            graph,
            node,
            name,
            opset,
            inputs,
            base_dir,
            options,
            budget,
        }
    }

    /// The options of this import.
    pub fn options(&self) -> &ImportOptions {
        self.options
    }

    /// The node's name (or, for an unnamed node, its first output's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ONNX op type.
    pub fn op_type(&self) -> &str {
        self.node.op_type()
    }

    /// The opset version of the node's domain.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// The graph being built.
    pub fn graph(&self) -> &Graph {
        self.graph
    }

    /// The graph being built, for changes the helpers do not cover.
    pub fn graph_mut(&mut self) -> &mut Graph {
        self.graph
    }

    /// How many inputs the node lists (absent optional ones included).
    pub fn n_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// How many outputs the node declares.
    pub fn n_outputs(&self) -> usize {
        self.node.output.len()
    }

    /// Input `i`, or `None` if it is absent (beyond the list or named `""`).
    pub fn input(&self, i: usize) -> Option<NodeId> {
        self.inputs.get(i).copied().flatten()
    }

    /// Input `i`, which the op requires.
    pub fn req(&self, i: usize) -> Result<NodeId> {
        self.input(i)
            .ok_or_else(|| self.err(format!("needs input {i}, which is missing")))
    }

    /// The type of node `id`.
    pub fn ty(&self, id: NodeId) -> TensorType {
        self.graph.ty(id).clone()
    }

    /// The rank of node `id`.
    pub fn rank(&self, id: NodeId) -> usize {
        self.graph.ty(id).rank()
    }

    /// The dims of node `id`.
    pub fn shape(&self, id: NodeId) -> Vec<Dim> {
        self.graph.ty(id).shape.0.clone()
    }

    /// The dtype of node `id`.
    pub fn dtype(&self, id: NodeId) -> DType {
        self.graph.ty(id).dtype
    }

    /// An error about this node.
    pub fn err(&self, message: impl Into<String>) -> Error {
        Error::Node {
            node: self.name.clone(),
            op: self.op_type().to_string(),
            message: message.into(),
        }
    }

    /// An error about attribute `attr` of this node.
    pub fn attr_err(&self, attr: &str, message: impl Into<String>) -> Error {
        Error::Attribute {
            node: self.name.clone(),
            op: self.op_type().to_string(),
            attr: attr.to_string(),
            message: message.into(),
        }
    }

    /// The error for a shape-like input `i` that is not known at compile time.
    pub fn not_known(&self, i: usize, what: &str) -> Error {
        Error::NotKnown {
            node: self.name.clone(),
            op: self.op_type().to_string(),
            index: i,
            what: what.to_string(),
        }
    }

    // ----- Graph building ------------------------------------------------------

    /// Adds an IR node that remembers this ONNX node as its origin; an IR
    /// error is wrapped with the node's name and op type. Fails if the
    /// result's shape has a negative constant dim or constant dims spanning
    /// more than [`MAX_STATIC_BYTES`].
    pub fn add(&mut self, op: Op, operands: &[NodeId]) -> Result<NodeId> {
        let id = self
            .graph
            .add_with_origin(op, operands, Some(&self.name))
            .map_err(|source| Error::Ir {
                node: self.name.clone(),
                op: self.node.op_type().to_string(),
                source,
            })?;
        let ty = self.graph.ty(id);
        check_dims(ty.shape.dims(), ty.dtype.size_bytes() as u64, || {
            format!("the result {ty}")
        })
        .map_err(|m| self.err(m))?;
        Ok(id)
    }

    /// Checks dims that an importer is about to build an op from (a target
    /// shape, repeats, split sizes): none may be negative and together they
    /// may not span more than [`MAX_STATIC_BYTES`] of `dtype`. `what` names
    /// them in the error.
    pub fn check_dims(&self, dims: &[Dim], dtype: DType, what: &str) -> Result<()> {
        check_dims(dims, dtype.size_bytes() as u64, || what.to_string()).map_err(|m| self.err(m))
    }

    /// Charges a constant of `count` elements of `dtype` that this importer
    /// is about to allocate to the model's budget; fails, before anything is
    /// allocated, if it is over [`crate::load::MAX_TENSOR_BYTES`] or takes
    /// the model's constants over [`crate::load::MAX_TOTAL_BYTES`]. `what`
    /// describes the constant in the error.
    pub fn claim_constant(&self, what: &str, count: u64, dtype: DType) -> Result<()> {
        let as_node = |e: Error| match e {
            Error::TooLarge { message, .. } => self.err(format!("{what}: {message}")),
            other => other,
        };
        let bytes = check_tensor_bytes(&self.name, &format!("{count} elements"), count, dtype)
            .map_err(as_node)?;
        self.budget.claim(&self.name, bytes).map_err(as_node)
    }

    /// Adds a constant tensor.
    pub fn constant(&mut self, t: Tensor) -> Result<NodeId> {
        self.add(
            Op::Const(tcc_ir::Constant {
                name: None,
                value: Arc::new(t),
            }),
            &[],
        )
    }

    /// Adds a rank-0 constant `v` of `dtype` (converted as `Cast` does).
    pub fn scalar(&mut self, v: f64, dtype: DType) -> Result<NodeId> {
        let t = Tensor::new(vec![], TensorData::from_f64(dtype, [v])).map_err(|m| self.err(m))?;
        self.constant(t)
    }

    /// Adds `op(x)`.
    pub fn unary(&mut self, op: UnaryOp, x: NodeId) -> Result<NodeId> {
        self.add(Op::Unary(op), &[x])
    }

    /// Adds `op(a, b)`.
    pub fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.add(Op::Binary(op), &[a, b])
    }

    /// Adds `op(x, v)` with `v` a scalar constant of `x`'s dtype.
    pub fn binary_scalar(&mut self, op: BinaryOp, x: NodeId, v: f64) -> Result<NodeId> {
        let c = self.scalar(v, self.dtype(x))?;
        self.binary(op, x, c)
    }

    /// Adds a reshape of `x` to `dims`, or returns `x` if it already has them.
    pub fn reshape(&mut self, x: NodeId, dims: Vec<Dim>) -> Result<NodeId> {
        if self.shape(x) == dims {
            return Ok(x);
        }
        self.add(
            Op::Reshape {
                shape: tcc_ir::Shape(dims),
            },
            &[x],
        )
    }

    /// Adds a cast of `x` to `to`, or returns `x` if it already has that dtype.
    pub fn cast(&mut self, x: NodeId, to: DType) -> Result<NodeId> {
        if self.dtype(x) == to {
            return Ok(x);
        }
        self.add(Op::Cast { to }, &[x])
    }

    /// Builds a lowering that expands one ONNX op into several rounding core
    /// ops so that, on f16 and bf16, it still rounds once, as the ONNX op does.
    ///
    /// Each core op on f16 or bf16 rounds its result to 16 bits, so an
    /// expansion built in those types would round after every step and miss
    /// the ONNX result by an ulp or two. When any of `operands` is f16 or
    /// bf16, those operands are cast up to f32, `build` constructs the
    /// expansion on the f32 values (scalars made with
    /// [`Ctx::binary_scalar`] follow them to f32), and an f32 result is cast
    /// back to the dtype of the first f16 or bf16 operand; a result of any
    /// other dtype (a quantised integer, say) is returned as it is. With no
    /// f16 or bf16 operand, `build` gets `operands` unchanged and the graph
    /// holds no extra casts.
    ///
    /// Operands that are not floats pass through as they are; `build` may use
    /// other nodes too, but those are not cast.
    pub fn widened(
        &mut self,
        operands: &[NodeId],
        build: impl FnOnce(&mut Self, &[NodeId]) -> Result<NodeId>,
    ) -> Result<NodeId> {
        let narrow = operands
            .iter()
            .map(|&x| self.dtype(x))
            .find(|d| matches!(d, DType::F16 | DType::BF16));
        let Some(narrow) = narrow else {
            return build(self, operands);
        };
        let mut wide = Vec::with_capacity(operands.len());
        for &x in operands {
            wide.push(match self.dtype(x) {
                DType::F16 | DType::BF16 => self.cast(x, DType::F32)?,
                _ => x,
            });
        }
        let y = build(self, &wide)?;
        if self.dtype(y) == DType::F32 {
            self.cast(y, narrow)
        } else {
            Ok(y)
        }
    }

    // ----- Compile-time values of inputs --------------------------------------

    /// The elements of input `i` as constants; fails if the input is missing or
    /// its value is not known at compile time. `what` names the input's role.
    pub fn const_ints(&self, i: usize, what: &str) -> Result<Vec<i64>> {
        let id = self
            .input(i)
            .ok_or_else(|| self.err(format!("needs input {i} ({what}), which is missing")))?;
        self.graph
            .known_ints(id)
            .ok_or_else(|| self.not_known(i, what))
    }

    /// Like [`Ctx::const_ints`], but `None` for an absent input.
    pub fn opt_const_ints(&self, i: usize, what: &str) -> Result<Option<Vec<i64>>> {
        match self.input(i) {
            None => Ok(None),
            Some(_) => self.const_ints(i, what).map(Some),
        }
    }

    /// The elements of input `i` as dims (symbolic where they come from
    /// shapes); fails if the value is not known at compile time.
    pub fn dims(&self, i: usize, what: &str) -> Result<Vec<Dim>> {
        let id = self
            .input(i)
            .ok_or_else(|| self.err(format!("needs input {i} ({what}), which is missing")))?;
        self.graph
            .known(id)
            .map(|k| k.values.clone())
            .ok_or_else(|| self.not_known(i, what))
    }

    /// The value of input `i` if it is a constant tensor (any dtype); fails if
    /// it is computed at run time.
    pub fn const_tensor(&self, i: usize, what: &str) -> Result<Arc<Tensor>> {
        let id = self
            .input(i)
            .ok_or_else(|| self.err(format!("needs input {i} ({what}), which is missing")))?;
        if let Some(t) = self.graph.const_value(id) {
            return Ok(t.clone());
        }
        let ty = self.graph.ty(id);
        if let (Some(ints), Some(shape)) = (self.graph.known_ints(id), ty.shape.as_fixed()) {
            return Tensor::new(shape, TensorData::from_i64(ty.dtype, ints))
                .map(Arc::new)
                .map_err(|m| self.err(m));
        }
        Err(self.not_known(i, what))
    }

    /// Normalises a possibly negative `axis` against `rank`.
    pub fn axis(&self, axis: i64, rank: usize) -> Result<usize> {
        let r = rank as i64;
        let a = if axis < 0 { axis + r } else { axis };
        if a < 0 || a >= r {
            return Err(self.err(format!("axis {axis} is out of range for rank {rank}")));
        }
        Ok(a as usize)
    }

    /// Normalises a list of axes; fails on duplicates.
    pub fn axes(&self, axes: &[i64], rank: usize) -> Result<Vec<usize>> {
        let mut out = Vec::with_capacity(axes.len());
        for &a in axes {
            let n = self.axis(a, rank)?;
            if out.contains(&n) {
                return Err(self.err(format!("axis {a} appears twice in {axes:?}")));
            }
            out.push(n);
        }
        Ok(out)
    }

    // ----- Attributes ----------------------------------------------------------

    /// The attribute `name`, if the node has it.
    pub fn attr(&self, name: &str) -> Option<&'a proto::AttributeProto> {
        self.node.attribute.iter().find(|a| a.name() == name)
    }

    /// True if the node has attribute `name`.
    pub fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    fn typed(&self, name: &str, want: AttributeType) -> Result<Option<&'a proto::AttributeProto>> {
        let Some(a) = self.attr(name) else {
            return Ok(None);
        };
        if a.ref_attr_name.is_some() {
            return Err(self.attr_err(
                name,
                "refers to a function attribute, which tcc does not support",
            ));
        }
        let t = attr_type(a).map_err(|m| self.attr_err(name, m))?;
        if t != want {
            return Err(self.attr_err(
                name,
                format!(
                    "must be of type {}, but it is {}",
                    want.as_str_name(),
                    t.as_str_name()
                ),
            ));
        }
        Ok(Some(a))
    }

    /// Integer attribute `name`, or `default`.
    pub fn attr_i(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self
            .typed(name, AttributeType::Int)?
            .map_or(default, |a| a.i()))
    }

    /// Integer attribute `name` if present.
    pub fn attr_opt_i(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.typed(name, AttributeType::Int)?.map(|a| a.i()))
    }

    /// Boolean attribute `name` (an integer, 0 or 1), or `default`.
    pub fn attr_bool(&self, name: &str, default: bool) -> Result<bool> {
        match self.attr_i(name, default as i64)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.attr_err(name, format!("must be 0 or 1, got {v}"))),
        }
    }

    /// Float attribute `name`, or `default`.
    pub fn attr_f(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self
            .typed(name, AttributeType::Float)?
            .map_or(default, |a| a.f()))
    }

    /// Float attribute `name` if present.
    pub fn attr_opt_f(&self, name: &str) -> Result<Option<f32>> {
        Ok(self.typed(name, AttributeType::Float)?.map(|a| a.f()))
    }

    /// String attribute `name`, or `default`.
    pub fn attr_s(&self, name: &str, default: &str) -> Result<String> {
        match self.typed(name, AttributeType::String)? {
            None => Ok(default.to_string()),
            Some(a) => String::from_utf8(a.s().to_vec())
                .map_err(|_| self.attr_err(name, "is not valid UTF-8")),
        }
    }

    /// Integer list attribute `name` if present.
    pub fn attr_ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self
            .typed(name, AttributeType::Ints)?
            .map(|a| a.ints.clone()))
    }

    /// Float list attribute `name` if present.
    pub fn attr_floats(&self, name: &str) -> Result<Option<Vec<f32>>> {
        Ok(self
            .typed(name, AttributeType::Floats)?
            .map(|a| a.floats.clone()))
    }

    /// Tensor attribute `name` if present, converted (external data is read
    /// relative to the model's directory). Its declared size is checked and
    /// charged to the model's budget before its data is read.
    pub fn attr_tensor(&self, name: &str) -> Result<Option<Tensor>> {
        match self.typed(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => {
                let t =
                    a.t.as_ref()
                        .ok_or_else(|| self.attr_err(name, "holds no tensor"))?;
                // An unnamed value is named after its node and attribute.
                let label = if t.name().is_empty() {
                    format!("{}.{name}", self.name)
                } else {
                    t.name().to_string()
                };
                let (.., bytes) = declared(t, &label)?;
                self.budget.claim(&label, bytes)?;
                tensor_from_proto_as(t, &label, Some(self.base_dir)).map(Some)
            }
        }
    }

    /// The target dtype of attribute `name` (an ONNX data type code).
    pub fn attr_dtype(&self, name: &str) -> Result<Option<DType>> {
        match self.attr_opt_i(name)? {
            None => Ok(None),
            Some(code) => crate::load::dtype_from_onnx(code as i32)
                .map(Some)
                .map_err(|m| self.attr_err(name, m)),
        }
    }
}

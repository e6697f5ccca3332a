//! The e-graph's language: one e-node per IR op, mirroring [`tcc_ir::Op`] variant for variant.
//!
//! An [`ENode`] holds the IR op itself (so converting back to a graph needs no second
//! vocabulary), its text-form name (the discriminant: all `gemm` nodes sort together) and a
//! key that makes the op hashable and ordered: the text form of its attributes, in which
//! floats print so that they parse back to the same bits. Constants are keyed by the index of
//! the IR node they came from (or a number the rewrite that made them chose), never by value,
//! and inputs by name.
//!
//! A pattern may name an op with attributes by its name alone (`(softmax ?x)`): such a node
//! is a *wildcard* that matches every op of that name, and the rule's applier reads the
//! attributes from the e-class. Ops without attributes (`add`, `erf`, `matmul`, `where`)
//! match exactly. A wildcard must not stand in a subterm whose variables are all bound
//! earlier in the pattern: egg looks such a ground subterm up by hash, which only finds
//! exact e-nodes (bind the class to a variable instead and check it in the applier).

use egg::{FromOp, Id, Language};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tcc_ir::Op;

/// An e-node: an IR op and its operand e-classes.
#[derive(Clone)]
pub struct ENode {
    /// The op's text-form name: the discriminant.
    name: &'static str,
    /// Attributes (or constant id, or input name) as text; empty for a wildcard.
    key: Arc<str>,
    /// The op; `None` for a pattern's wildcard.
    op: Option<Arc<Op>>,
    /// The operands.
    children: Vec<Id>,
}

impl ENode {
    /// The e-node of `op` on `children`. `const_id` keys a constant (the IR node it came
    /// from); other ops ignore it.
    pub fn new(op: Op, children: Vec<Id>, const_id: usize) -> ENode {
        let key: Arc<str> = match &op {
            Op::Const(_) => format!("#{const_id}").into(),
            Op::Input { name } => name.as_str().into(),
            op => {
                let mut s = String::new();
                for (i, (k, v)) in op.attrs().iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    s.push_str(k);
                    s.push('=');
                    s.push_str(v);
                }
                s.into()
            }
        };
        ENode {
            name: op.name(),
            key,
            op: Some(Arc::new(op)),
            children,
        }
    }

    /// The e-node of a constant made by a rule, keyed by its value (so two rules that make
    /// the same constant share it, and different values never merge).
    pub fn constant(value: tcc_ir::Tensor) -> ENode {
        let key: Arc<str> = format!(
            "={}{:?}{:?}",
            value.dtype(),
            value.shape(),
            value.data().to_le_bytes()
        )
        .into();
        ENode {
            name: "const",
            key,
            op: Some(Arc::new(Op::Const(tcc_ir::Constant {
                name: None,
                value: Arc::new(value),
            }))),
            children: vec![],
        }
    }

    /// True for a constant of the graph being optimised (not one a rule made).
    pub fn is_graph_constant(&self) -> bool {
        self.name == "const" && self.key.starts_with('#')
    }

    /// The e-node of a constant made by a rule from other constants, keyed by how it was
    /// made (`concat1(12, 15, 18)`: the classes it came from), which determines its value.
    pub fn derived_constant(key: String, value: tcc_ir::Tensor) -> ENode {
        ENode {
            name: "const",
            key: format!("={key}").into(),
            op: Some(Arc::new(Op::Const(tcc_ir::Constant {
                name: None,
                value: Arc::new(value),
            }))),
            children: vec![],
        }
    }

    /// The IR op (`None` only for a pattern's wildcard, never in an e-graph).
    pub fn op(&self) -> &Op {
        self.op
            .as_deref()
            .expect("wildcard e-nodes live in patterns only")
    }

    /// The op's text-form name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The operand e-classes.
    pub fn args(&self) -> &[Id] {
        &self.children
    }
}

impl PartialEq for ENode {
    fn eq(&self, other: &ENode) -> bool {
        self.name == other.name && self.key == other.key && self.children == other.children
    }
}

impl Eq for ENode {}

impl Hash for ENode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.key.hash(state);
        self.children.hash(state);
    }
}

impl PartialOrd for ENode {
    fn partial_cmp(&self, other: &ENode) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ENode {
    fn cmp(&self, other: &ENode) -> Ordering {
        (self.name, &*self.key, &self.children).cmp(&(other.name, &*other.key, &other.children))
    }
}

impl fmt::Debug for ENode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if !self.key.is_empty() {
            write!(f, "<{}>", self.key)?;
        }
        write!(f, "{:?}", self.children)
    }
}

impl fmt::Display for ENode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl Language for ENode {
    type Discriminant = &'static str;

    fn discriminant(&self) -> &'static str {
        self.name
    }

    fn matches(&self, other: &ENode) -> bool {
        self.name == other.name
            && self.children.len() == other.children.len()
            && (self.op.is_none() || other.op.is_none() || self.key == other.key)
    }

    fn children(&self) -> &[Id] {
        &self.children
    }

    fn children_mut(&mut self) -> &mut [Id] {
        &mut self.children
    }
}

/// The names an op can have in a pattern, leaked once so that e-nodes can hold `&'static str`.
fn static_name(name: &str) -> Option<&'static str> {
    use tcc_ir::{BinaryOp, ReduceKind, UnaryOp};
    const OTHER: [&str; 38] = [
        "input",
        "const",
        "dims",
        "where",
        "cast",
        "matmul",
        "matmul_integer",
        "conv",
        "pad",
        "softmax",
        "log_softmax",
        "layer_norm",
        "argmax",
        "argmin",
        "cumsum",
        "reshape",
        "transpose",
        "expand",
        "concat",
        "slice",
        "gather",
        "gather_elements",
        "gather_nd",
        "tile",
        "range",
        "shape",
        "trilu",
        "gemm",
        "attention",
        "add_layer_norm",
        "rms_norm",
        "fused",
        "pack",
        "unpack",
        "packed_attention",
        "reduce_sum",
        "reduce_mean",
        "reduce_max",
    ];
    UnaryOp::ALL
        .iter()
        .map(|u| u.name())
        .chain(BinaryOp::ALL.iter().map(|b| b.name()))
        .chain(ReduceKind::ALL.iter().map(|r| r.name()))
        .chain(OTHER)
        .find(|n| *n == name)
}

/// The error of parsing a pattern's op.
#[derive(Debug)]
pub struct UnknownOp(String);

impl fmt::Display for UnknownOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown op `{}` in a pattern", self.0)
    }
}

impl FromOp for ENode {
    type Error = UnknownOp;

    /// An op without attributes (`add`, `erf`, `matmul`) parses to itself; an op with
    /// attributes to a wildcard of its name.
    fn from_op(op: &str, children: Vec<Id>) -> Result<ENode, UnknownOp> {
        if let Ok(parsed) = Op::from_parts(op, &[]) {
            if !matches!(parsed, Op::Input { .. } | Op::Const(_)) {
                return Ok(ENode::new(parsed, children, 0));
            }
        }
        let name = static_name(op).ok_or_else(|| UnknownOp(op.to_string()))?;
        Ok(ENode {
            name,
            key: "".into(),
            op: None,
            children,
        })
    }
}

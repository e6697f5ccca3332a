//! The e-class analysis: every e-class's type, as [`tcc_ir::infer`] gives it.
//!
//! Each class carries its [`TensorType`] (dtype and symbolic shape), the small integer value
//! inference knows ([`Known`]), and, for a constant, its tensor. All e-nodes of a class
//! compute one value, so [`Analysis::merge`] asserts that their types agree: a rewrite that
//! merged tensors of different shapes would be a bug in the rule, caught where it happens.
//! It also carries what the class is in terms of a key-padding mask input
//! ([`crate::key_mask`]), for the rules of padding elimination.

use super::lang::ENode;
use crate::key_mask::{self, Fact, Operand};
use egg::{Analysis, DidMerge, EGraph, Id};
use std::collections::HashMap;
use std::sync::Arc;
use tcc_ir::{infer::infer, Known, Op, Tensor, TensorData, TensorType};

/// The e-graph of the optimiser.
pub type TensorGraph = EGraph<ENode, TensorAnalysis>;

/// What the analysis knows of an e-class.
#[derive(Clone, Debug)]
pub struct Data {
    /// The dtype and shape.
    pub ty: TensorType,
    /// The elements of a small integer result, where inference knows them.
    pub known: Option<Known>,
    /// The value, for a constant.
    pub value: Option<Arc<Tensor>>,
    /// True for a constant of the graph itself (not one a rule derived from others).
    pub graph_constant: bool,
    /// What the class is in terms of a mask input ([`crate::key_mask::Fact`]).
    pub mask: Fact,
}

impl Data {
    /// The one element of a constant with one element, as f64.
    pub fn scalar(&self) -> Option<f64> {
        let v = self.value.as_ref()?;
        (v.len() == 1).then(|| v.data().to_f64_vec()[0])
    }

    /// True for an `f32` constant whose one element is `want` to within 1e-6 relative.
    pub fn is_f32_near(&self, want: f64) -> bool {
        self.ty.dtype == tcc_ir::DType::F32
            && self
                .scalar()
                .is_some_and(|v| (v - want).abs() <= 1e-6 * want.abs())
    }

    /// True for an `f32` constant whose one element is exactly the f32 nearest `want`.
    pub fn is_f32_exactly(&self, want: f32) -> bool {
        matches!(
            self.value.as_deref().map(Tensor::data),
            Some(TensorData::F32(v)) if v.len() == 1 && v[0].to_bits() == want.to_bits()
        )
    }
}

/// The analysis: types by inference. Input types come from the graph being optimised.
#[derive(Debug, Default)]
pub struct TensorAnalysis {
    /// The types of the graph's inputs, by name.
    pub inputs: HashMap<String, TensorType>,
    /// The inputs that may be key-padding masks ([`crate::key_mask::mask_candidates`]).
    pub mask_inputs: Vec<String>,
}

impl TensorAnalysis {
    /// The type `op` would have on the classes `args`; an error if it does not fit them.
    pub fn infer(
        egraph: &TensorGraph,
        op: &Op,
        args: &[Id],
    ) -> tcc_ir::Result<(TensorType, Option<Known>)> {
        let tys: Vec<&TensorType> = args.iter().map(|&a| &egraph[a].data.ty).collect();
        let known: Vec<Option<&Known>> = args
            .iter()
            .map(|&a| egraph[a].data.known.as_ref())
            .collect();
        infer(op, &tys, &known)
    }
}

impl Analysis<ENode> for TensorAnalysis {
    type Data = Data;

    /// Infers the type of `enode`. Every e-node reaches the e-graph through
    /// [`super::convert`] or a rule's applier, both of which check that inference succeeds
    /// first, so a failure here is a bug in the optimiser.
    fn make(egraph: &mut TensorGraph, enode: &ENode, _id: Id) -> Data {
        let op = enode.op();
        match op {
            Op::Input { name } => {
                let ty = egraph.analysis.inputs[name].clone();
                let mask = if egraph.analysis.mask_inputs.contains(name) {
                    key_mask::input_fact(name, &ty)
                } else {
                    Fact::Unknown
                };
                Data {
                    ty,
                    known: None,
                    value: None,
                    graph_constant: false,
                    mask,
                }
            }
            Op::Const(c) => {
                let (ty, known) = infer(op, &[], &[]).expect("constants always type-check");
                let mask = key_mask::transfer(op, &ty, &[]);
                Data {
                    ty,
                    known,
                    value: Some(c.value.clone()),
                    graph_constant: enode.is_graph_constant(),
                    mask,
                }
            }
            _ => {
                let (ty, known) = Self::infer(egraph, op, enode.args()).unwrap_or_else(|e| {
                    panic!("the optimiser added an ill-typed e-node {enode:?}: {e}")
                });
                let operands: Vec<Operand> = enode
                    .args()
                    .iter()
                    .map(|&a| {
                        let d = &egraph[a].data;
                        Operand {
                            ty: &d.ty,
                            fact: &d.mask,
                            value: d.value.as_deref(),
                        }
                    })
                    .collect();
                let mask = key_mask::transfer(op, &ty, &operands);
                Data {
                    ty,
                    known,
                    value: None,
                    graph_constant: false,
                    mask,
                }
            }
        }
    }

    /// Asserts that the two classes have one type; keeps what either knows.
    fn merge(&mut self, a: &mut Data, b: Data) -> DidMerge {
        assert_eq!(
            a.ty, b.ty,
            "the optimiser merged e-classes of different types: a rule is unsound"
        );
        let mut changed_a = false;
        if a.known.is_none() && b.known.is_some() {
            a.known = b.known.clone();
            changed_a = true;
        }
        if a.value.is_none() && b.value.is_some() {
            a.value = b.value.clone();
            changed_a = true;
        }
        // Facts are exact descriptions of the one value: either side's is true.
        let (a_unknown, b_unknown) = (a.mask == Fact::Unknown, b.mask == Fact::Unknown);
        if a_unknown && !b_unknown {
            a.mask = b.mask.clone();
            changed_a = true;
        }
        DidMerge(
            changed_a,
            (b.known.is_none() && a.known.is_some())
                || (b.value.is_none() && a.value.is_some())
                || (b_unknown && !a_unknown),
        )
    }
}

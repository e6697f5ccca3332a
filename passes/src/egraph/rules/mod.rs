//! The rewrite rules, by topic. Each rule is named data: a kebab-case name, a one-line
//! statement of its math, and its [`Exactness`]; RULES.md lists them all.
//!
//! Rules search with egg patterns; an op with attributes appears in a pattern by its name
//! alone and matches any attributes (see [`super::lang`]), and the applier, plain Rust,
//! reads the attributes and checks the rule's side conditions on the e-classes' types and
//! constants before it adds anything. An applier only ever adds an e-node whose inferred type
//! equals the matched class's, so no rule can merge values of different types.

pub mod attention;
pub mod canonical;
pub mod conv;
pub mod fusion;
pub mod norm;
pub mod projection;
pub mod quant;
pub mod reassociate;

use super::analysis::{Data, TensorAnalysis, TensorGraph};
use super::lang::ENode;
use egg::{Applier, Id, Pattern, PatternAst, Rewrite, Subst, Symbol, Var};
use tcc_ir::{Activation, Op};

/// What a rule promises about the numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exactness {
    /// Both sides compute bit-identical results (by the IR's semantics).
    Exact,
    /// Rounding may change (a reassociation, another but equivalent formula): off unless
    /// [`super::Config::reassociate`] allows it.
    Reassociating,
}

impl Exactness {
    /// The tag RULES.md and `--explain` print.
    pub fn tag(self) -> &'static str {
        match self {
            Exactness::Exact => "exact",
            Exactness::Reassociating => "reassociating",
        }
    }
}

/// A rule: a rewrite with its math and exactness.
pub struct Rule {
    /// The rewrite (its name is the rule's).
    pub rewrite: Rewrite<ENode, TensorAnalysis>,
    /// The math it states, one line.
    pub math: &'static str,
    /// Exact or reassociating.
    pub exactness: Exactness,
}

impl Rule {
    /// The rule's kebab-case name.
    pub fn name(&self) -> &str {
        self.rewrite.name.as_str()
    }
}

/// Every rule, in topic order.
pub fn all() -> Vec<Rule> {
    let mut v = canonical::rules();
    v.extend(fusion::rules());
    v.extend(attention::rules());
    v.extend(norm::rules());
    v.extend(projection::rules());
    v.extend(conv::rules());
    v.extend(quant::rules());
    v.extend(reassociate::rules());
    v
}

/// What an applier works with: the e-graph, and adds that check types.
pub struct Ctx<'a> {
    /// The e-graph, to read.
    pub eg: &'a mut TensorGraph,
}

impl Ctx<'_> {
    /// Adds `op` on `args` if it type-checks; `None` if it does not.
    pub fn add(&mut self, op: Op, args: Vec<Id>) -> Option<Id> {
        TensorAnalysis::infer(self.eg, &op, &args).ok()?;
        Some(self.eg.add(ENode::new(op, args, 0)))
    }

    /// Adds a constant (rule constants are keyed by value).
    pub fn constant(&mut self, value: tcc_ir::Tensor) -> Id {
        self.eg.add(ENode::constant(value))
    }

    /// Adds a constant derived from other constants, keyed by `key` (which must determine
    /// the value: the classes it came from and how).
    pub fn derived_constant(&mut self, key: String, value: tcc_ir::Tensor) -> Id {
        self.eg.add(ENode::derived_constant(key, value))
    }
}

/// An applier written in Rust: `f` reads the match, adds e-nodes through the [`Ctx`] and
/// returns the classes equal to the matched class; each is merged with it only if its type
/// is the class's.
pub struct FnApplier<F>(pub F);

impl<F> Applier<ENode, TensorAnalysis> for FnApplier<F>
where
    F: Fn(&mut Ctx, Id, &Subst) -> Vec<Id> + Send + Sync,
{
    fn apply_one(
        &self,
        egraph: &mut TensorGraph,
        eclass: Id,
        subst: &Subst,
        _searcher_ast: Option<&PatternAst<ENode>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        let found = (self.0)(&mut Ctx { eg: egraph }, eclass, subst);
        let mut changed = Vec::new();
        for id in found {
            if egraph[id].data.ty == egraph[eclass].data.ty && egraph.union(eclass, id) {
                changed.push(eclass);
            }
        }
        changed
    }
}

/// A rule from a pattern and a Rust applier.
pub fn rule<F>(
    name: &'static str,
    exactness: Exactness,
    math: &'static str,
    pattern: &str,
    f: F,
) -> Rule
where
    F: Fn(&mut Ctx, Id, &Subst) -> Vec<Id> + Send + Sync + 'static,
{
    let searcher: Pattern<ENode> = pattern
        .parse()
        .unwrap_or_else(|e| panic!("rule `{name}`: bad pattern `{pattern}`: {e}"));
    Rule {
        rewrite: Rewrite::new(name, searcher, FnApplier(f))
            .unwrap_or_else(|e| panic!("rule `{name}`: {e}")),
        math,
        exactness,
    }
}

/// A gemm e-node's parts, the view every rule on gemms reads them through.
#[derive(Clone, Debug)]
pub struct Gemm {
    /// The epilogue's activation.
    pub activation: Activation,
    /// Whether operand 2 is a bias.
    pub bias: bool,
    /// Operand 0's permutation.
    pub perm_a: Option<Vec<usize>>,
    /// Operand 1's permutation.
    pub perm_b: Option<Vec<usize>>,
    /// The result's permutation.
    pub perm_out: Option<Vec<usize>>,
    /// The operand classes.
    pub args: Vec<Id>,
}

impl Gemm {
    /// A gemm of `args` with no bias, activation or permutation.
    pub fn plain(args: Vec<Id>) -> Gemm {
        Gemm {
            activation: Activation::None,
            bias: false,
            perm_a: None,
            perm_b: None,
            perm_out: None,
            args,
        }
    }

    /// The op.
    pub fn op(&self) -> Op {
        Op::Gemm {
            activation: self.activation,
            bias: self.bias,
            perm_a: self.perm_a.clone(),
            perm_b: self.perm_b.clone(),
            perm_out: self.perm_out.clone(),
        }
    }

    /// No activation and no permutation (a bias or not).
    pub fn is_unpermuted_linear(&self) -> bool {
        self.activation == Activation::None
            && self.perm_a.is_none()
            && self.perm_b.is_none()
            && self.perm_out.is_none()
    }

    /// A plain constant-B gemm: no bias, activation or permutation yet, `B` a constant matrix.
    pub fn is_plain_const_b(&self, c: &Ctx) -> bool {
        !self.bias
            && self.is_unpermuted_linear()
            && is_const(c.eg, self.args[1])
            && data(c.eg, self.args[1]).ty.rank() == 2
    }

    /// A runtime gemm: `B` computed, no bias or activation.
    pub fn is_runtime(&self, c: &Ctx) -> bool {
        !self.bias && self.activation == Activation::None && !is_const(c.eg, self.args[1])
    }
}

/// The gemm e-nodes of class `id`.
pub fn gemms(c: &Ctx, id: Id) -> Vec<Gemm> {
    nodes(c.eg, id)
        .filter_map(|n| match n.op() {
            Op::Gemm {
                activation,
                bias,
                perm_a,
                perm_b,
                perm_out,
            } => Some(Gemm {
                activation: *activation,
                bias: *bias,
                perm_a: perm_a.clone(),
                perm_b: perm_b.clone(),
                perm_out: perm_out.clone(),
                args: n.args().to_vec(),
            }),
            _ => None,
        })
        .collect()
}

/// The class bound to `?name`.
pub fn var(subst: &Subst, name: &str) -> Id {
    let v: Var = name.parse().expect("pattern variables start with `?`");
    subst[v]
}

/// The e-nodes of a class.
pub fn nodes(egraph: &TensorGraph, id: Id) -> impl Iterator<Item = &ENode> {
    egraph[id].nodes.iter()
}

/// The analysis data of a class.
pub fn data(egraph: &TensorGraph, id: Id) -> &Data {
    &egraph[id].data
}

/// True if the class is a constant.
pub fn is_const(egraph: &TensorGraph, id: Id) -> bool {
    egraph[id].data.value.is_some()
}

/// True for a permutation that keeps the last axis last.
pub fn keeps_last(perm: &[usize]) -> bool {
    perm.last().is_some_and(|&l| l + 1 == perm.len())
}

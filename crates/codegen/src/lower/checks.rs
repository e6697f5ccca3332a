//! The size checks: the relations between sizes that a graph's types assume and cannot prove,
//! and `check_sizes`, the generated function the runtime calls before every run.
//!
//! Type inference types a symbolic size against another assuming the operands fit at run time
//! (`[s]` added to `[t]` is `[max(s, t)]`; a reshape of `[batch, seq, 8]` to `[4096, 4096]`,
//! or to `[floordiv(8*batch*seq, 3), 3]` for a target `[-1, 3]`, types because the counts
//! could agree), and the interpreter checks them when it runs the op. The kernels index by
//! those types, so a run whose sizes do not fit must stop before any kernel reads or writes out
//! of bounds, and before anything (outputs, the arena) is sized from them. [`size_checks`]
//! lists, for the nodes the outputs need, in the order they run:
//!
//! - every axis of a result is at least 0 (`seq - 3`, a reshape's `-1` next to a negative dim);
//! - every result of symbolic size holds at most [`MAX_BYTES`], with no `i64` overflow in its
//!   sizes (they are `i64` arithmetic everywhere else);
//! - a reshape keeps the element count (which also makes a `-1` resolved by floor division
//!   exact, and a `0` copied from the operand right);
//! - broadcasting: each operand axis of an elementwise op, `where`, `cast` and `expand` (and
//!   each axis of `expand`'s target shape) is the result's or 1;
//! - a matrix product's inner sizes agree and its batch axes broadcast; `matmul_integer`'s zero
//!   points broadcast to their operand's rows or columns;
//! - `concat`'s operands agree off the axis; `layer_norm`'s scale and bias broadcast to the
//!   normalised axes;
//! - a `slice` reads inside its axis;
//! - `gather_elements`'s indices are no larger than the data off the axis; `gather_nd`'s batch
//!   axes agree;
//! - `pad` crops no more than an axis has, and the repeating modes keep an element to repeat;
//! - `conv`'s channels are its weights' times the group, its pads are not negative and its
//!   kernel fits the padded input;
//! - `arg_max` and `arg_min` have an element to pick (also when the result is empty, where the
//!   interpreter does not mind), an integer mean has elements to average.
//!
//! A fused op is checked as its expansion (`tcc_ir::fused::expand`), core op by core op, since
//! that is what it means and what the interpreter checks. A relation that holds for every
//! binding of the symbols (the same polynomial on both sides, an operand size of 1, a
//! difference that is at least 0 when every symbol is at least 1) is not checked; each relation
//! is checked once, under the message of the first node that needs it, and a size bound
//! implied by a larger one is left out.
//!
//! Each check's message names the node (its ONNX name, or its IR number) and op and shows the
//! sizes: `{k}` placeholders stand for the values the check reports, which the runtime fills
//! in and follows with the symbols' values (`reshape node `r`: 80 elements ([batch, seq, 8])
//! cannot make [26, 3] ([floordiv(8*batch*seq, 3), 3]), which holds 78 (with batch = 2,
//! seq = 5)`).

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::Arc;

use inkwell::builder::Builder;
use inkwell::module::Module;
use inkwell::values::{FunctionValue, IntValue, PointerValue};
use inkwell::IntPredicate;
use tcc_ir::dim::Atom;
use tcc_ir::{Dim, Graph, NodeId, Op, PadMode, ReduceKind, Shape, TensorType};

use super::dims::DimEmitter;
use crate::abi::{self, CHECK_VALUES};
use crate::error::{Error, Result};

/// The most bytes one tensor of symbolic size may hold: 2^44, 16 TiB (the messages say so). Far beyond any machine's
/// memory, and small enough that the arena's sum of slot sizes cannot overflow an `i64`.
pub const MAX_BYTES: i64 = 1 << 44;

/// A relation between sizes, checked at run time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Relation {
    /// `a == b`. Values: `a`, `b`.
    Equal(Dim, Dim),
    /// `a == b || a == 1` (`a` broadcasts to `b`). Values: `a`, `b`.
    Broadcast(Dim, Dim),
    /// `a >= b`. Values: `a`, `b`.
    AtLeast(Dim, Dim),
    /// The products of two shapes agree. Values: the products, then the second shape's dims
    /// (as many as fit).
    SameCount(Vec<Dim>, Vec<Dim>),
    /// A slice reads inside its axis: `len <= 0`, or `start` and
    /// `last = start + (len - 1) * step` both in `[0, dim)`. Values: `start`, `last`, `dim`,
    /// `len`.
    InBounds {
        /// The first index read.
        start: Dim,
        /// How many indices are read.
        len: Dim,
        /// The step between them.
        step: i64,
        /// The axis's size.
        dim: Dim,
    },
    /// A tensor of these dims and element size holds at most [`MAX_BYTES`]. Values: the
    /// element count, the bytes.
    Fits {
        /// The dims.
        dims: Vec<Dim>,
        /// The element size in bytes.
        elem: i64,
    },
}

/// One run-time check: a relation and the message of its failure.
#[derive(Clone, Debug)]
pub struct SizeCheck {
    /// What must hold.
    pub relation: Relation,
    /// The message: `{k}` stands for the relation's value `k`, `{{` and `}}` for braces.
    pub message: String,
}

/// What makes two relations the same check.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Equal(Dim, Dim),
    Broadcast(Dim, Dim),
    AtLeast(Dim),
    InBounds(Relation),
    Fits(Dim),
}

/// The checks of the nodes the outputs of `graph` need, in the order the nodes run; see the
/// module documentation.
pub fn size_checks(graph: &Graph) -> Vec<SizeCheck> {
    let mut live = HashSet::new();
    let mut stack: Vec<NodeId> = graph.outputs().iter().map(|(_, id)| *id).collect();
    while let Some(id) = stack.pop() {
        if live.insert(id) {
            stack.extend(graph.operands(id));
        }
    }
    let bounds = super::derived_symbols(graph);
    let mut c = Collector::default();
    // A symbol that the types need at least 1 is checked first, naming the node that needs it;
    // the others may be 0, and a relation is left out only if it holds there too.
    let mut needs_one = Vec::new();
    for (symbol, verdict) in tcc_ir::zero::zero_sizes(graph) {
        match verdict {
            Ok(()) => c.zero.push(symbol),
            Err(n) => needs_one.push(SizeCheck {
                message: format!(
                    "`{}` is {{0}}, but {} needs it at least 1: {}",
                    quote(&symbol),
                    node_label(graph, n.node),
                    quote(&n.why)
                ),
                relation: Relation::AtLeast(Dim::sym(&symbol), Dim::constant(1)),
            }),
        }
    }
    for id in graph.topo_order() {
        if !live.contains(&id) {
            continue;
        }
        let op = graph.op(id);
        if matches!(op, Op::Input { .. } | Op::Const(_) | Op::Dims { .. }) {
            continue; // The runtime checks inputs; leaves have fixed sizes.
        }
        let label = node_label(graph, id);
        let ty = graph.ty(id);
        // A size of a derived symbol (a pack's token count) is at most its bound, the mask's
        // entry count, which the arena is sized for: the bound's size is checked.
        let bounded = TensorType::new(
            ty.dtype,
            Shape(
                ty.shape
                    .dims()
                    .iter()
                    .map(|d| super::bounded(d, &bounds))
                    .collect(),
            ),
        );
        result_checks(&mut c, &label, &bounded);
        match super::schedule::expansion(graph, id) {
            // A fused node whose expansion does not type is refused by the schedule.
            Some(expanded) => {
                for e in expanded.iter().flatten() {
                    let args: Vec<&TensorType> = e.args.iter().collect();
                    let inner = format!("{label} (in its expansion, {})", e.op.name());
                    op_checks(&mut c, &inner, &e.op, &args, &e.ty);
                }
            }
            None => {
                let operands = graph.operands(id);
                let args: Vec<&TensorType> = operands.iter().map(|&o| graph.ty(o)).collect();
                op_checks(&mut c, &label, op, &args, ty);
            }
        }
    }
    needs_one.extend(c.finish());
    needs_one
}

/// True if the relation reads a symbol that is not one of `inputs` (a derived one, which the
/// checks, run before any step, cannot know).
pub fn reads_derived(relation: &Relation, inputs: &[std::sync::Arc<str>]) -> bool {
    let dims: Vec<&Dim> = match relation {
        Relation::Equal(a, b) | Relation::Broadcast(a, b) | Relation::AtLeast(a, b) => vec![a, b],
        Relation::SameCount(x, y) => x.iter().chain(y).collect(),
        Relation::InBounds {
            start, len, dim, ..
        } => vec![start, len, dim],
        Relation::Fits { dims, .. } => dims.iter().collect(),
    };
    dims.iter()
        .any(|d| d.symbols().iter().any(|s| !inputs.contains(s)))
}

#[derive(Default)]
struct Collector {
    checks: Vec<SizeCheck>,
    seen: HashSet<Key>,
    /// The input symbols that may be 0 at run time.
    zero: Vec<Arc<str>>,
}

/// Whether the relation holds for every binding of the symbols, each at least 1, as far as it
/// can be told.
fn holds_from_one(relation: &Relation) -> bool {
    match relation {
        Relation::Equal(a, b) => a == b,
        Relation::Broadcast(a, b) => a == b || a.is(1),
        Relation::AtLeast(a, b) => at_least(a, b),
        Relation::SameCount(x, y) => numel(x) == numel(y),
        Relation::InBounds { len, .. } => at_least(&Dim::constant(0), len),
        Relation::Fits { dims, elem } => {
            let bytes = numel(dims).mul(&Dim::constant(*elem));
            upper_bound(&bytes).is_some_and(|b| b <= MAX_BYTES)
                && dims
                    .iter()
                    .all(|d| lower_bound(d).is_some_and(|lb| lb >= 0))
        }
    }
}

impl Relation {
    /// The relation with symbols replaced as `map` says.
    fn substitute(&self, map: &dyn Fn(&str) -> Option<Dim>) -> Relation {
        let d = |x: &Dim| x.substitute(map);
        let all = |xs: &[Dim]| xs.iter().map(d).collect();
        match self {
            Relation::Equal(a, b) => Relation::Equal(d(a), d(b)),
            Relation::Broadcast(a, b) => Relation::Broadcast(d(a), d(b)),
            Relation::AtLeast(a, b) => Relation::AtLeast(d(a), d(b)),
            Relation::SameCount(x, y) => Relation::SameCount(all(x), all(y)),
            Relation::InBounds {
                start,
                len,
                step,
                dim,
            } => Relation::InBounds {
                start: d(start),
                len: d(len),
                step: *step,
                dim: d(dim),
            },
            Relation::Fits { dims, elem } => Relation::Fits {
                dims: all(dims),
                elem: *elem,
            },
        }
    }
}

impl Collector {
    /// Adds a check unless the relation holds for every binding or is already checked.
    fn push(&mut self, relation: Relation, message: String) {
        if self.holds_always(&relation) {
            return;
        }
        let key = match &relation {
            Relation::Equal(a, b) => Key::Equal(a.clone().min(b.clone()), a.clone().max(b.clone())),
            Relation::Broadcast(a, b) => {
                let equal = Key::Equal(a.clone().min(b.clone()), a.clone().max(b.clone()));
                if self.seen.contains(&equal) {
                    return;
                }
                Key::Broadcast(a.clone(), b.clone())
            }
            Relation::AtLeast(a, b) => Key::AtLeast(a.sub(b)),
            Relation::SameCount(x, y) => {
                let (p, q) = (numel(x), numel(y));
                Key::Equal(p.clone().min(q.clone()), p.max(q))
            }
            Relation::InBounds { .. } => Key::InBounds(relation.clone()),
            Relation::Fits { dims, elem } => Key::Fits(numel(dims).mul(&Dim::constant(*elem))),
        };
        if self.seen.insert(key) {
            self.checks.push(SizeCheck { relation, message });
        }
    }

    /// Whether the relation holds for every binding of the symbols: each at least 1, and also
    /// with the symbols that may be 0 ([`tcc_ir::zero`]) at 0, one at a time and all at once.
    fn holds_always(&self, relation: &Relation) -> bool {
        if !holds_from_one(relation) {
            return false;
        }
        let at_zero = |zero: &[Arc<str>]| {
            let map = |s: &str| zero.iter().any(|z| &**z == s).then(|| Dim::constant(0));
            holds_from_one(&relation.substitute(&map))
        };
        self.zero.iter().all(|s| at_zero(std::slice::from_ref(s)))
            && (self.zero.len() < 2 || at_zero(&self.zero))
    }
    /// The checks, without size bounds that a larger one implies.
    fn finish(self) -> Vec<SizeCheck> {
        let bytes = |c: &SizeCheck| match &c.relation {
            Relation::Fits { dims, elem } => Some(numel(dims).mul(&Dim::constant(*elem))),
            _ => None,
        };
        let fits: Vec<(usize, Dim)> = self
            .checks
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, bytes(c)?)))
            .collect();
        // Quadratic in the distinct symbolic sizes, a few dozen in a transformer.
        let implied: HashSet<usize> = if fits.len() > 2000 {
            HashSet::new()
        } else {
            fits.iter()
                .filter(|(i, b)| {
                    fits.iter()
                        .any(|(j, larger)| j != i && larger != b && at_least(larger, b))
                })
                .map(|(i, _)| *i)
                .collect()
        };
        self.checks
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !implied.contains(i))
            .map(|(_, c)| c)
            .collect()
    }
}

/// `a >= b` for every binding of the symbols (each at least 1), as far as it can be told:
/// by [`Dim::compare`], by a lower bound of `a - b` ([`lower_bound`]), or by covering each
/// negative term of `a - b` with positive terms of larger monomials ([`covered`]).
fn at_least(a: &Dim, b: &Dim) -> bool {
    if a == b
        || matches!(
            a.compare(b),
            Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
        )
    {
        return true;
    }
    let d = a.sub(b);
    lower_bound(&d).is_some_and(|lb| lb >= 0) || covered(&d)
}

/// A lower bound of `d` when every symbol is at least 1, if one can be given: constants, and
/// monomials of positive coefficient whose atoms have non-negative lower bounds.
fn lower_bound(d: &Dim) -> Option<i64> {
    let mut total: i64 = 0;
    for (monomial, coefficient) in d.terms() {
        if monomial.is_empty() {
            total = total.checked_add(coefficient)?;
            continue;
        }
        if coefficient < 0 {
            return None;
        }
        total = total.checked_add(coefficient.checked_mul(monomial_lower_bound(monomial)?)?)?;
    }
    Some(total)
}

/// The product of the atoms' lower bounds, if each is at least 0.
fn monomial_lower_bound(monomial: &[Atom]) -> Option<i64> {
    monomial.iter().try_fold(1i64, |p, atom| {
        let lb = atom_lower_bound(atom)?;
        (lb >= 0).then(|| p.checked_mul(lb)).flatten()
    })
}

fn atom_lower_bound(atom: &Atom) -> Option<i64> {
    match atom {
        Atom::Sym(_) => Some(1),
        Atom::FloorDiv(x, y) => {
            let (lx, ly) = (lower_bound(x)?, lower_bound(y)?);
            if lx < 0 || ly < 1 {
                return None;
            }
            // At least 0; at least floor(lx / y) for a constant divisor.
            Some(y.as_const().map_or(0, |c| lx / c))
        }
        Atom::Mod(_, y) => (lower_bound(y)? >= 1).then_some(0),
        Atom::Min(x, y) => Some(lower_bound(x)?.min(lower_bound(y)?)),
        Atom::Max(x, y) => match (lower_bound(x), lower_bound(y)) {
            (Some(p), Some(q)) => Some(p.max(q)),
            (Some(p), None) | (None, Some(p)) => Some(p),
            (None, None) => None,
        },
    }
}

/// An upper bound of `d` when every symbol is at least 1, if one can be given (a symbol has
/// none, `min(512, seq)` has 512).
fn upper_bound(d: &Dim) -> Option<i64> {
    let mut total: i64 = 0;
    for (monomial, coefficient) in d.terms() {
        let term = if coefficient >= 0 {
            let ub = monomial.iter().try_fold(1i64, |p, atom| {
                let (lb, ub) = (atom_lower_bound(atom)?, atom_upper_bound(atom)?);
                (lb >= 0).then(|| p.checked_mul(ub)).flatten()
            })?;
            coefficient.checked_mul(ub)?
        } else {
            coefficient.checked_mul(monomial_lower_bound(monomial)?)?
        };
        total = total.checked_add(term)?;
    }
    Some(total)
}

fn atom_upper_bound(atom: &Atom) -> Option<i64> {
    match atom {
        Atom::Sym(_) => None,
        // floor(x / y) <= x for x >= 0 and y >= 1.
        Atom::FloorDiv(x, y) => {
            (lower_bound(x)? >= 0 && lower_bound(y)? >= 1).then_some(upper_bound(x)?)
        }
        Atom::Mod(_, y) => (lower_bound(y)? >= 1).then(|| upper_bound(y).map(|u| u - 1))?,
        Atom::Min(x, y) => match (upper_bound(x), upper_bound(y)) {
            (Some(p), Some(q)) => Some(p.min(q)),
            (Some(p), None) | (None, Some(p)) => Some(p),
            (None, None) => None,
        },
        Atom::Max(x, y) => Some(upper_bound(x)?.max(upper_bound(y)?)),
    }
}

/// Whether `d >= 0` because each negative term is covered by positive terms whose monomials
/// contain its own (with symbols at least 1, `2048*batch*seq >= 8*seq`) and every atom is at
/// least 0 (at least 1 where a larger monomial has it over the smaller).
fn covered(d: &Dim) -> bool {
    let mut positive: Vec<(Vec<Atom>, i64)> = Vec::new();
    let mut negative: Vec<(Vec<Atom>, i64)> = Vec::new();
    for (monomial, coefficient) in d.terms() {
        if monomial_lower_bound(monomial).is_none() {
            return false;
        }
        if coefficient > 0 {
            positive.push((monomial.to_vec(), coefficient));
        } else {
            negative.push((monomial.to_vec(), -coefficient));
        }
    }
    // The largest monomials first, so that small ones keep the most covers.
    negative.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    for (m, mut need) in negative {
        for (p, left) in positive.iter_mut() {
            if need == 0 {
                break;
            }
            if *left == 0 || !contains(p, &m) {
                continue;
            }
            let take = need.min(*left);
            *left -= take;
            need -= take;
        }
        if need > 0 {
            return false;
        }
    }
    true
}

/// Whether monomial `big` is at least `small`: `small`'s atoms are among `big`'s (as a
/// multiset) and each of `big`'s others is at least 1.
fn contains(big: &[Atom], small: &[Atom]) -> bool {
    let mut rest: Vec<&Atom> = big.iter().collect();
    for a in small {
        match rest.iter().position(|b| *b == a) {
            Some(i) => {
                rest.swap_remove(i);
            }
            None => return false,
        }
    }
    rest.iter()
        .all(|a| atom_lower_bound(a).is_some_and(|lb| lb >= 1))
}

fn numel(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::constant(1), |a, d| a.mul(d))
}

/// Text from the model for a message: braces doubled (they are placeholders), control
/// characters replaced, at most 120 characters.
fn quote(text: &str) -> String {
    let mut out = String::new();
    for (i, ch) in text.chars().enumerate() {
        if i == 120 {
            out.push_str("...");
            break;
        }
        match ch {
            '{' => out.push_str("{{"),
            '}' => out.push_str("}}"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// `reshape node `name`` (the ONNX node the IR node came from) or `reshape node %12`.
fn node_label(graph: &Graph, id: NodeId) -> String {
    let node = graph.node(id);
    match &node.origin {
        Some(origin) => format!("{} node `{}`", node.op.name(), quote(origin)),
        None => format!("{} node %{}", node.op.name(), id.index()),
    }
}

/// Value `k` with the dim's expression after it when it is not a constant: `{0} (`seq`)`.
fn size(k: usize, d: &Dim) -> String {
    if d.as_const().is_some() {
        format!("{{{k}}}")
    } else {
        format!("{{{k}}} (`{}`)", quote(&d.to_string()))
    }
}

fn shape_text(dims: &[Dim]) -> String {
    quote(&Shape(dims.to_vec()).to_string())
}

/// Checks on a node's result: axes at least 0, and a size that fits.
fn result_checks(c: &mut Collector, label: &str, ty: &TensorType) {
    let dims = ty.shape.dims();
    for (a, d) in dims.iter().enumerate() {
        c.push(
            Relation::AtLeast(d.clone(), Dim::constant(0)),
            format!(
                "{label}: axis {a} of its result, `{}`, is {{0}}, but a size cannot be negative",
                quote(&d.to_string())
            ),
        );
    }
    c.push(
        Relation::Fits {
            dims: dims.to_vec(),
            elem: ty.dtype.size_bytes() as i64,
        },
        format!(
            "{label}: its result {} of {} would hold {{0}} elements, {{1}} bytes, more than \
             the 2^44 bytes (16 TiB) a tensor may hold",
            shape_text(dims),
            ty.dtype
        ),
    );
}

/// The checks of one core op with operands of types `args` and a result of type `ty`.
fn op_checks(c: &mut Collector, label: &str, op: &Op, args: &[&TensorType], ty: &TensorType) {
    let out = ty.shape.dims();
    let dims = |i: usize| args.get(i).map_or(&[][..], |t| t.shape.dims());
    // Broadcasting `shape` (right-aligned) against `target`, naming the shape by `what`.
    let broadcast = |c: &mut Collector, what: &str, shape: &[Dim], target: &[Dim]| {
        let n = shape.len().min(target.len());
        for i in 0..n {
            let (a, d, t) = (
                shape.len() - n + i,
                &shape[shape.len() - n + i],
                &target[target.len() - n + i],
            );
            c.push(
                Relation::Broadcast(d.clone(), t.clone()),
                format!(
                    "{label}: {what}'s axis {a} has size {}, which does not broadcast to {}",
                    size(0, d),
                    size(1, t)
                ),
            );
        }
    };
    match op {
        Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast { .. } => {
            for i in 0..args.len() {
                broadcast(c, &format!("operand {i}"), dims(i), out);
            }
        }
        Op::Expand { shape } => {
            broadcast(c, "the operand", dims(0), out);
            broadcast(c, "the target shape", shape.dims(), out);
        }
        Op::Reshape { .. } => {
            let (x, y) = (dims(0), out);
            let shown = y.len().min(CHECK_VALUES - 2);
            let mut target: Vec<String> = (0..shown).map(|k| format!("{{{}}}", k + 2)).collect();
            if shown < y.len() {
                target.push("...".into());
            }
            let symbolic = if y.iter().all(|d| d.as_const().is_some()) {
                String::new()
            } else {
                format!(" ({})", shape_text(y))
            };
            c.push(
                Relation::SameCount(x.to_vec(), y.to_vec()),
                format!(
                    "{label}: {{0}} elements ({}) cannot make [{}]{symbolic}, which holds {{1}}",
                    shape_text(x),
                    target.join(", ")
                ),
            );
        }
        Op::MatMul | Op::MatMulInteger { .. } => {
            let (a, b) = (dims(0), dims(1));
            if a.len() >= 2 && b.len() >= 2 {
                let (k1, k2) = (&a[a.len() - 1], &b[b.len() - 2]);
                c.push(
                    Relation::Equal(k1.clone(), k2.clone()),
                    format!(
                        "{label}: the inner sizes differ: the first operand's last axis has {}, \
                         the second's second to last {}",
                        size(0, k1),
                        size(1, k2)
                    ),
                );
                let batch = &out[..out.len().saturating_sub(2)];
                broadcast(c, "the first operand", &a[..a.len() - 2], batch);
                broadcast(c, "the second operand", &b[..b.len() - 2], batch);
            }
            if matches!(op, Op::MatMulInteger { .. }) && a.len() >= 2 && b.len() >= 2 {
                let mut rows = a.to_vec();
                rows[a.len() - 1] = Dim::constant(1);
                let mut cols = b.to_vec();
                cols[b.len() - 2] = Dim::constant(1);
                broadcast(c, "the first zero point", dims(2), &rows);
                broadcast(c, "the second zero point", dims(3), &cols);
            }
        }
        Op::Concat { axis } => {
            for i in 0..args.len() {
                for (a, d) in dims(i).iter().enumerate() {
                    if a != *axis && a < out.len() {
                        c.push(
                            Relation::Equal(d.clone(), out[a].clone()),
                            format!(
                                "{label}: operand {i}'s axis {a} has size {}, the result's {}; \
                                 the operands may differ only along axis {axis}",
                                size(0, d),
                                size(1, &out[a])
                            ),
                        );
                    }
                }
            }
        }
        Op::LayerNorm { axis, .. } => {
            let norm = &out[(*axis).min(out.len())..];
            broadcast(c, "the scale", dims(1), norm);
            broadcast(c, "the bias", dims(2), norm);
        }
        Op::Slice {
            axes,
            starts,
            ends,
            steps,
        } => {
            let x = dims(0);
            for (k, &ax) in axes.iter().enumerate() {
                let (Some(dim), Some(len), Some(start), Some(end), Some(&step)) = (
                    x.get(ax),
                    out.get(ax),
                    starts.get(k),
                    ends.get(k),
                    steps.get(k),
                ) else {
                    continue;
                };
                let inside = if step > 0 {
                    at_least(start, &Dim::constant(0)) && at_least(dim, end)
                } else {
                    at_least(&dim.sub(&Dim::constant(1)), start)
                        && at_least(end, &Dim::constant(-1))
                };
                if inside {
                    continue;
                }
                c.push(
                    Relation::InBounds {
                        start: start.clone(),
                        len: len.clone(),
                        step,
                        dim: dim.clone(),
                    },
                    format!(
                        "{label}: reads indices {{0}} to {{1}} (from `{}` in steps of {step}) of \
                         axis {ax} of its operand, which has {}",
                        quote(&start.to_string()),
                        size(2, dim)
                    ),
                );
            }
        }
        Op::GatherElements { axis } => {
            let (d, i) = (dims(0), dims(1));
            for (a, (dd, id)) in d.iter().zip(i).enumerate() {
                if a != *axis {
                    c.push(
                        Relation::AtLeast(dd.clone(), id.clone()),
                        format!(
                            "{label}: the indices' axis {a} has size {}, more than the data's {}",
                            size(1, id),
                            size(0, dd)
                        ),
                    );
                }
            }
        }
        Op::GatherNd { batch_dims } => {
            let (d, i) = (dims(0), dims(1));
            for a in 0..(*batch_dims).min(d.len()).min(i.len()) {
                c.push(
                    Relation::Equal(d[a].clone(), i[a].clone()),
                    format!(
                        "{label}: batch axis {a} differs: the data has {}, the indices {}",
                        size(0, &d[a]),
                        size(1, &i[a])
                    ),
                );
            }
        }
        Op::Pad {
            mode,
            pads_begin,
            pads_end,
        } => {
            let zero = Dim::constant(0);
            for (a, d) in dims(0).iter().enumerate() {
                let (Some(pb), Some(pe)) = (pads_begin.get(a), pads_end.get(a)) else {
                    continue;
                };
                let kept = d.add(&pb.min_dim(&zero)).add(&pe.min_dim(&zero));
                c.push(
                    Relation::AtLeast(kept.clone(), zero.clone()),
                    format!(
                        "{label}: axis {a} of size `{}` cannot lose more than it has to the \
                         pads `{}` and `{}`: it would keep {{0}}",
                        quote(&d.to_string()),
                        quote(&pb.to_string()),
                        quote(&pe.to_string())
                    ),
                );
                let adds = !(at_least(&zero, pb) && at_least(&zero, pe));
                if *mode != PadMode::Constant && adds {
                    c.push(
                        Relation::AtLeast(kept, Dim::constant(1)),
                        format!(
                            "{label}: `{}` padding of axis {a} needs an element to repeat, but \
                             the axis keeps {{0}}",
                            mode.name()
                        ),
                    );
                }
            }
        }
        Op::Conv {
            pads_begin,
            pads_end,
            group,
            ..
        } => {
            let (x, w) = (dims(0), dims(1));
            if x.len() >= 2 && w.len() >= 2 {
                let taken = w[1].mul(&Dim::constant(*group as i64));
                c.push(
                    Relation::Equal(x[1].clone(), taken.clone()),
                    format!(
                        "{label}: the input has {} channels, the weights with group {group} take {}",
                        size(0, &x[1]),
                        size(1, &taken)
                    ),
                );
            }
            for (i, p) in pads_begin.iter().chain(pads_end).enumerate() {
                c.push(
                    Relation::AtLeast(p.clone(), Dim::constant(0)),
                    format!("{label}: pad {i}, `{}`, is {{0}}", quote(&p.to_string())),
                );
            }
            for (i, d) in out.iter().enumerate().skip(2) {
                c.push(
                    Relation::AtLeast(d.clone(), Dim::constant(1)),
                    format!(
                        "{label}: the kernel does not fit spatial axis {} of the padded input: \
                         the output would have {{0}} positions",
                        i - 2
                    ),
                );
            }
        }
        Op::ArgReduce { axis, .. } => {
            if let Some(d) = dims(0).get(*axis) {
                c.push(
                    Relation::AtLeast(d.clone(), Dim::constant(1)),
                    format!(
                        "{label}: axis {axis} has {} elements: there is no extreme to find",
                        size(0, d)
                    ),
                );
            }
        }
        Op::Reduce {
            kind: ReduceKind::Mean,
            axes,
            ..
        } if !ty.dtype.is_float() => {
            let x = dims(0);
            let count = numel(
                &axes
                    .iter()
                    .filter_map(|&a| x.get(a).cloned())
                    .collect::<Vec<_>>(),
            );
            c.push(
                Relation::AtLeast(count.clone(), Dim::constant(1)),
                format!(
                    "{label}: the integer mean of {} elements is undefined",
                    size(0, &count)
                ),
            );
        }
        _ => {}
    }
}

/// Evaluates dims in `i64` with every overflow recorded (in `i128`, saturated to `i64`), so a
/// check fails instead of comparing wrapped values.
struct Checked<'a, 'ctx> {
    d: DimEmitter<'a, 'ctx>,
    b: &'a Builder<'ctx>,
    overflow: Cell<IntValue<'ctx>>,
}

impl<'a, 'ctx> Checked<'a, 'ctx> {
    fn err(&self) -> impl FnOnce(inkwell::builder::BuilderError) -> Error {
        Error::builder("tcc_check_sizes")
    }

    fn flag(&self, bad: IntValue<'ctx>) -> Result<()> {
        let any = self
            .b
            .build_or(self.overflow.get(), bad, "ovf")
            .map_err(self.err())?;
        self.overflow.set(any);
        Ok(())
    }

    /// `x op y` in `i128`, saturated to `i64`.
    fn wide(&self, x: IntValue<'ctx>, y: IntValue<'ctx>, mul: bool) -> Result<IntValue<'ctx>> {
        let b = self.b;
        let context = x.get_type().get_context();
        let (i64t, i128t) = (context.i64_type(), context.i128_type());
        let xw = b.build_int_s_extend(x, i128t, "xw").map_err(self.err())?;
        let yw = b.build_int_s_extend(y, i128t, "yw").map_err(self.err())?;
        let r = if mul {
            b.build_int_mul(xw, yw, "pw")
        } else {
            b.build_int_add(xw, yw, "sw")
        }
        .map_err(self.err())?;
        let max = i128t.const_int(i64::MAX as u64, false);
        let min = b
            .build_int_s_extend(i64t.const_int(i64::MIN as u64, true), i128t, "min")
            .map_err(self.err())?;
        let hi = b
            .build_int_compare(IntPredicate::SGT, r, max, "hi")
            .map_err(self.err())?;
        let lo = b
            .build_int_compare(IntPredicate::SLT, r, min, "lo")
            .map_err(self.err())?;
        self.flag(b.build_or(hi, lo, "out").map_err(self.err())?)?;
        let t = b.build_int_truncate(r, i64t, "t").map_err(self.err())?;
        let t = b
            .build_select(lo, self.d.constant(i64::MIN), t, "t")
            .map_err(self.err())?
            .into_int_value();
        Ok(b.build_select(hi, self.d.constant(i64::MAX), t, "t")
            .map_err(self.err())?
            .into_int_value())
    }

    fn mul(&self, x: IntValue<'ctx>, y: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        self.wide(x, y, true)
    }

    fn add(&self, x: IntValue<'ctx>, y: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        self.wide(x, y, false)
    }

    fn dim(&self, dim: &Dim) -> Result<IntValue<'ctx>> {
        if let Some(c) = dim.as_const() {
            return Ok(self.d.constant(c));
        }
        let mut total: Option<IntValue<'ctx>> = None;
        for (monomial, coefficient) in dim.terms() {
            let mut term: Option<IntValue<'ctx>> = None;
            for atom in monomial {
                let v = self.atom(atom)?;
                term = Some(match term {
                    None => v,
                    Some(t) => self.mul(t, v)?,
                });
            }
            let term = match (term, coefficient) {
                (None, c) => self.d.constant(c),
                (Some(t), 1) => t,
                (Some(t), c) => self.mul(t, self.d.constant(c))?,
            };
            total = Some(match total {
                None => term,
                Some(s) => self.add(s, term)?,
            });
        }
        Ok(total.unwrap_or_else(|| self.d.constant(0)))
    }

    fn atom(&self, atom: &Atom) -> Result<IntValue<'ctx>> {
        let b = self.b;
        match atom {
            Atom::Sym(name) => self.d.symbol(name),
            Atom::FloorDiv(x, y) | Atom::Mod(x, y) => {
                let (x, y) = (self.dim(x)?, self.dim(y)?);
                // i64::MIN / -1 overflows (and traps): divide by 1 instead, and fail.
                let x_min = b
                    .build_int_compare(IntPredicate::EQ, x, self.d.constant(i64::MIN), "xmin")
                    .map_err(self.err())?;
                let y_m1 = b
                    .build_int_compare(IntPredicate::EQ, y, self.d.constant(-1), "ym1")
                    .map_err(self.err())?;
                let bad = b.build_and(x_min, y_m1, "bad").map_err(self.err())?;
                self.flag(bad)?;
                let y = b
                    .build_select(bad, self.d.constant(1), y, "y")
                    .map_err(self.err())?
                    .into_int_value();
                if matches!(atom, Atom::FloorDiv(..)) {
                    self.d.floor_div(x, y)
                } else {
                    self.d.floor_mod(x, y)
                }
            }
            Atom::Min(x, y) | Atom::Max(x, y) => {
                let (x, y) = (self.dim(x)?, self.dim(y)?);
                let p = if matches!(atom, Atom::Min(..)) {
                    IntPredicate::SLT
                } else {
                    IntPredicate::SGT
                };
                let c = b.build_int_compare(p, x, y, "cmp").map_err(self.err())?;
                Ok(b.build_select(c, x, y, "sel")
                    .map_err(self.err())?
                    .into_int_value())
            }
        }
    }

    /// The product of `dims`, saturated.
    fn product(&self, dims: &[Dim]) -> Result<IntValue<'ctx>> {
        let mut p = self.d.constant(1);
        for d in dims {
            p = self.mul(p, self.dim(d)?)?;
        }
        Ok(p)
    }

    fn cmp(&self, p: IntPredicate, x: IntValue<'ctx>, y: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        self.b.build_int_compare(p, x, y, "c").map_err(self.err())
    }

    /// The values a relation reports and whether it holds (overflow aside).
    fn relation(&self, r: &Relation) -> Result<(Vec<IntValue<'ctx>>, IntValue<'ctx>)> {
        let b = self.b;
        let e = || Error::builder("tcc_check_sizes");
        Ok(match r {
            Relation::Equal(x, y) => {
                let (x, y) = (self.dim(x)?, self.dim(y)?);
                (vec![x, y], self.cmp(IntPredicate::EQ, x, y)?)
            }
            Relation::Broadcast(x, y) => {
                let (x, y) = (self.dim(x)?, self.dim(y)?);
                let same = self.cmp(IntPredicate::EQ, x, y)?;
                let one = self.cmp(IntPredicate::EQ, x, self.d.constant(1))?;
                (vec![x, y], b.build_or(same, one, "bc").map_err(e())?)
            }
            Relation::AtLeast(x, y) => {
                let (x, y) = (self.dim(x)?, self.dim(y)?);
                (vec![x, y], self.cmp(IntPredicate::SGE, x, y)?)
            }
            Relation::SameCount(x, y) => {
                let (p, q) = (self.product(x)?, self.product(y)?);
                let mut values = vec![p, q];
                for d in y.iter().take(CHECK_VALUES - 2) {
                    values.push(self.dim(d)?);
                }
                (values, self.cmp(IntPredicate::EQ, p, q)?)
            }
            Relation::InBounds {
                start,
                len,
                step,
                dim,
            } => {
                let (s, n, d) = (self.dim(start)?, self.dim(len)?, self.dim(dim)?);
                let n1 = self.add(n, self.d.constant(-1))?;
                let last = self.add(s, self.mul(n1, self.d.constant(*step))?)?;
                let zero = self.d.constant(0);
                let mut ok = self.cmp(IntPredicate::SGE, s, zero)?;
                for (p, x, y) in [
                    (IntPredicate::SLT, s, d),
                    (IntPredicate::SGE, last, zero),
                    (IntPredicate::SLT, last, d),
                ] {
                    let c = self.cmp(p, x, y)?;
                    ok = b.build_and(ok, c, "in").map_err(e())?;
                }
                let empty = self.cmp(IntPredicate::SLE, n, zero)?;
                (
                    vec![s, last, d, n],
                    b.build_or(empty, ok, "ib").map_err(e())?,
                )
            }
            Relation::Fits { dims, elem } => {
                let n = self.product(dims)?;
                let bytes = self.mul(n, self.d.constant(*elem))?;
                let ok = self.cmp(IntPredicate::SLE, bytes, self.d.constant(MAX_BYTES))?;
                (vec![n, bytes], ok)
            }
        })
    }
}

/// Emits `int32_t NAME(const int64_t *symbols, int64_t *values)` (`tcc_check_sizes`, or a
/// form's when a library holds several): evaluates the checks in order and returns -1 if all
/// hold, else the index of the first that fails (or overflows `i64` on the way) after writing
/// its values to `values`.
pub fn emit_check_sizes<'ctx>(
    module: &Module<'ctx>,
    names: &[Arc<str>],
    checks: &[SizeCheck],
    name: &str,
) -> Result<FunctionValue<'ctx>> {
    let context = module.get_context();
    let function = module.add_function(name, abi::check_sizes_fn_type(context), None);
    let e = || Error::builder(name);
    let b = context.create_builder();
    b.position_at_end(context.append_basic_block(function, "entry"));
    let param = |n: u32| -> Result<PointerValue<'ctx>> {
        Ok(function
            .get_nth_param(n)
            .ok_or_else(|| Error::Internal {
                function: name.into(),
                message: "a parameter is missing",
            })?
            .into_pointer_value())
    };
    let (symbols, values) = (param(0)?, param(1)?);
    let i1 = context.bool_type();
    let i64t = context.i64_type();
    let i32t = context.i32_type();
    let checked = Checked {
        d: DimEmitter::new(&b, symbols, names, name),
        b: &b,
        overflow: Cell::new(i1.const_zero()),
    };
    for (k, check) in checks.iter().enumerate() {
        checked.overflow.set(i1.const_zero());
        let (vals, holds) = checked.relation(&check.relation)?;
        let no_overflow = b.build_not(checked.overflow.get(), "nov").map_err(e())?;
        let ok = b.build_and(holds, no_overflow, "ok").map_err(e())?;
        let fail = context.append_basic_block(function, &format!("fail{k}"));
        let next = context.append_basic_block(function, &format!("check{}", k + 1));
        b.build_conditional_branch(ok, next, fail).map_err(e())?;
        b.position_at_end(fail);
        for (i, v) in vals.iter().take(CHECK_VALUES).enumerate() {
            // SAFETY: the runtime passes room for CHECK_VALUES values.
            let p = unsafe {
                b.build_in_bounds_gep(i64t, values, &[i64t.const_int(i as u64, false)], "v")
                    .map_err(e())?
            };
            b.build_store(p, *v).map_err(e())?;
        }
        b.build_return(Some(&i32t.const_int(k as u64, false)))
            .map_err(e())?;
        b.position_at_end(next);
    }
    b.build_return(Some(&i32t.const_int(u64::MAX, true)))
        .map_err(e())?;
    Ok(function)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Dim {
        Dim::parse(text).unwrap()
    }

    #[test]
    fn relations_that_hold_for_every_binding_are_proved_and_others_not() {
        for (a, b) in [
            ("2048*batch*seq", "8*seq"),
            ("8192*batch*seq", "8*batch*seq + 8*batch"),
            ("seq", "min(seq, 1024)"),
            ("1024", "min(seq, 1024)"),
            ("floordiv(8*seq, 3)", "2"),
            ("max(0, seq - 3)", "0"),
        ] {
            assert!(at_least(&d(a), &d(b)), "{a} >= {b}");
        }
        for (a, b) in [
            ("seq", "4"),
            ("4*batch*seq*seq", "2048*batch*seq"),
            ("seq - 3", "0"),
            ("floordiv(8*seq, 3)", "3"),
            ("seq", "seq + 1"),
        ] {
            assert!(!at_least(&d(a), &d(b)), "{a} >= {b} is not provable");
        }
        assert_eq!(upper_bound(&d("512*min(512, seq)")), Some(262_144));
        assert_eq!(upper_bound(&d("seq")), None);
        assert_eq!(lower_bound(&d("floordiv(8*seq, 3)")), Some(2));
    }

    #[test]
    fn each_relation_is_checked_once_under_the_first_node_and_proved_ones_not_at_all() {
        let g = tcc_ir::text::parse(
            r#"
graph(%a: f32[s], %b: f32[t], %c: f32[batch, seq, 8]) {
  %x = add(%a, %b) : f32[max(s, t)]
  %y = mul(%a, %b) : f32[max(s, t)]
  %z = sub(%x, %y) : f32[max(s, t)]
  %r = reshape<shape=[batch, seq, 2, 4]>(%c) : f32[batch, seq, 2, 4]
  %q = reshape<shape=[floordiv(8*batch*seq, 3), 3]>(%c) : f32[floordiv(8*batch*seq, 3), 3]
  return %z = %z
  return %r = %r
  return %q = %q
}
"#,
            &|_| None,
        )
        .unwrap();
        let checks = size_checks(&g);
        let kinds: Vec<&str> = checks
            .iter()
            .map(|c| match c.relation {
                Relation::Broadcast(..) => "broadcast",
                Relation::SameCount(..) => "count",
                Relation::Fits { .. } => "fits",
                _ => "other",
            })
            .collect();
        // `s` and `t` at least 1 first (`max(s, t)` is `t` at s = 0 only if t = 1, the add's
        // inference says); `a` and `b` against `max(s, t)` once each, named after the add;
        // the exact reshape needs nothing; the one with a floor division its count; a size
        // bound per distinct symbolic size (the mul's and sub's are the add's).
        assert_eq!(
            kinds,
            [
                "other",
                "other",
                "fits",
                "broadcast",
                "broadcast",
                "fits",
                "fits",
                "count"
            ],
            "{checks:#?}"
        );
        for (c, s) in checks.iter().zip(["s", "t"]) {
            assert_eq!(c.relation, Relation::AtLeast(Dim::sym(s), Dim::constant(1)));
            assert!(
                c.message
                    .starts_with(&format!("`{s}` is {{0}}, but add node %")),
                "{}",
                c.message
            );
        }
        for c in checks
            .iter()
            .filter(|c| matches!(c.relation, Relation::Broadcast(..)))
        {
            assert!(c.message.starts_with("add node %"), "{}", c.message);
        }
        let count = checks.last().unwrap();
        assert!(
            count.message.contains(
                "{0} elements ([batch, seq, 8]) cannot make [{2}, {3}] \
                 ([floordiv(8*batch*seq, 3), 3]), which holds {1}"
            ),
            "{}",
            count.message
        );
    }

    #[test]
    fn names_from_the_model_cannot_make_placeholders() {
        assert_eq!(quote("a{0}b}"), "a{{0}}b}}");
        assert_eq!(quote("x\ny"), "x?y");
        assert!(quote(&"n".repeat(500)).ends_with("..."));
    }
}

//! Extraction: one e-node per needed e-class, chosen by the cost model with a DAG cost.
//!
//! egg's `Extractor` sums costs over trees, so a class used twice (a GEMM feeding two users)
//! counts twice and a fusion that copies it into both users looks cheap. This is a greedy DAG
//! extractor instead (extraction-gym's `greedy-dag`): the cost of choosing an e-node is its
//! own cost plus the costs of the *set* of classes its operands need, each counted once.
//! Classes are relaxed in id order until no choice improves; ties keep the earlier choice,
//! and e-nodes are tried in their sorted order, so extraction is deterministic.
//!
//! Greedy DAG extraction still charges a class to the first user that needs it. A second,
//! local step therefore revisits every selected class with the whole selection in view: an
//! e-node whose operands are selected anyway costs only itself (a pre-LN model's residual sum
//! is needed by the next layer, so `layer_norm(sum)` beats `add_layer_norm(x, r)` there).

use super::analysis::TensorGraph;
use super::cost::CostModel;
use super::lang::ENode;
use egg::Id;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// The chosen e-node of every class reachable from the roots, and the DAG cost of them all.
pub struct Extraction {
    /// The choice per class (canonical ids).
    pub choice: HashMap<Id, ENode>,
    /// The sum of the chosen e-nodes' costs, each class once, in ns.
    pub cost: f64,
    /// Where the cost model chose between ops: per (chosen op, cheapest other op) pair.
    pub choices: Vec<Choice>,
}

/// The classes where one op was chosen over another, summed over the classes: each cost is
/// the e-node's own cost plus that of everything it needs, each class once (at the hinted
/// sizes, in ns).
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// The chosen e-node's op (with its operands' types where the other is the same op).
    pub chosen: String,
    /// Another op in the same classes (its cheapest e-node in each); the same op on other
    /// operands (a reassociated product) is named with its operands' types.
    pub over: String,
    /// How many classes.
    pub count: usize,
    /// The chosen forms' summed cost.
    pub chosen_cost: f64,
    /// The alternatives' summed cost.
    pub over_cost: f64,
}

/// A class's cost set: every class its best choice needs (itself included), with its own cost.
type Set = Rc<BTreeMap<Id, f64>>;

/// Per class: the total of its best choice, that choice's set, and the e-node's index.
type Best = HashMap<Id, (f64, Set, usize)>;

/// The cost under `model` of what a choice computes for `roots`: each class it needs once,
/// its chosen e-node's own cost.
pub fn choice_cost(
    egraph: &TensorGraph,
    model: &CostModel,
    choice: &HashMap<Id, ENode>,
    roots: &[Id],
) -> f64 {
    needed(egraph, choice, roots)
        .into_iter()
        .map(|c| enode_cost(egraph, model, &choice[&c], c))
        .sum()
}

/// The classes a choice needs for `roots` (canonical ids, in id order).
pub fn needed(egraph: &TensorGraph, choice: &HashMap<Id, ENode>, roots: &[Id]) -> Vec<Id> {
    let mut seen: std::collections::BTreeSet<Id> = Default::default();
    let mut stack: Vec<Id> = roots.iter().map(|&r| egraph.find(r)).collect();
    while let Some(c) = stack.pop() {
        if seen.insert(c) {
            if let Some(n) = choice.get(&c) {
                stack.extend(n.args().iter().map(|&a| egraph.find(a)));
            }
        }
    }
    seen.into_iter()
        .filter(|c| choice.contains_key(c))
        .collect()
}

/// The e-node's own cost.
pub fn enode_cost(egraph: &TensorGraph, model: &CostModel, node: &ENode, class: Id) -> f64 {
    let args: Vec<&tcc_ir::TensorType> = node.args().iter().map(|&a| &egraph[a].data.ty).collect();
    model.op_cost(
        node.op(),
        &args,
        &super::cost::repeats(node.args()),
        &egraph[class].data.ty,
    )
}

/// Extracts the cheapest DAG for `roots`.
pub fn extract(egraph: &TensorGraph, model: &CostModel, roots: &[Id]) -> Extraction {
    let mut classes: Vec<Id> = egraph.classes().map(|c| c.id).collect();
    classes.sort();
    // Own costs, once.
    let mut own: HashMap<(Id, usize), f64> = HashMap::new();
    for &c in &classes {
        for (i, n) in egraph[c].nodes.iter().enumerate() {
            own.insert((c, i), enode_cost(egraph, model, n, c));
        }
    }
    let mut best: Best = HashMap::new();
    loop {
        let mut changed = false;
        for &c in &classes {
            for (i, n) in egraph[c].nodes.iter().enumerate() {
                let mut set: BTreeMap<Id, f64> = BTreeMap::new();
                let mut ok = true;
                for &a in n.args() {
                    let a = egraph.find(a);
                    match best.get(&a) {
                        Some((_, s, _)) => {
                            set.extend(s.iter().map(|(k, v)| (*k, *v)));
                        }
                        None => {
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok || set.contains_key(&c) {
                    continue;
                }
                let own_cost = own[&(c, i)];
                set.insert(c, own_cost);
                let total: f64 = set.values().sum();
                let better = match best.get(&c) {
                    None => true,
                    Some((t, _, _)) => total < *t * (1.0 - 1e-12) - 1e-9,
                };
                if better {
                    best.insert(c, (total, Rc::new(set), i));
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    // The greedy choice, then local improvement against the whole selection.
    let mut pick: HashMap<Id, usize> = best.iter().map(|(&c, (_, _, i))| (c, *i)).collect();
    let roots: Vec<Id> = roots.iter().map(|&r| egraph.find(r)).collect();
    for _ in 0..8 {
        if !refine(egraph, &own, &best, &mut pick, &roots) {
            break;
        }
    }
    let needed = reachable(egraph, &pick, &roots);
    let cost = needed.iter().map(|&c| own[&(c, pick[&c])]).sum();
    let choices = choices(egraph, &own, &best, &pick, &needed);
    let choice = needed
        .into_iter()
        .map(|c| (c, egraph[c].nodes[pick[&c]].clone()))
        .collect();
    Extraction {
        choice,
        cost,
        choices,
    }
}

/// The DAG cost of choosing e-node `i` of class `c`: its own cost and the best sets of its
/// operands, each class once; `None` if an operand has no cost or it would be a cycle.
fn dag_cost(
    egraph: &TensorGraph,
    own: &HashMap<(Id, usize), f64>,
    best: &Best,
    c: Id,
    i: usize,
) -> Option<f64> {
    let mut set: BTreeMap<Id, f64> = BTreeMap::new();
    for &a in egraph[c].nodes[i].args() {
        let (_, s, _) = best.get(&egraph.find(a))?;
        set.extend(s.iter().map(|(k, v)| (*k, *v)));
    }
    if set.contains_key(&c) {
        return None;
    }
    Some(own[&(c, i)] + set.values().sum::<f64>())
}

/// Per selected class and per other op in it (its cheapest e-node, where finite): the choice
/// made, summed by (chosen, other) op pair, in name order.
fn choices(
    egraph: &TensorGraph,
    own: &HashMap<(Id, usize), f64>,
    best: &Best,
    pick: &HashMap<Id, usize>,
    needed: &[Id],
) -> Vec<Choice> {
    let mut by_pair: BTreeMap<(String, String), Choice> = BTreeMap::new();
    // An e-node named with its operands' types, to tell the same op on other operands apart.
    let typed = |c: Id, j: usize| {
        let n = &egraph[c].nodes[j];
        let args: Vec<String> = n
            .args()
            .iter()
            .map(|&a| egraph[a].data.ty.to_string())
            .collect();
        format!("{}({})", n.name(), args.join(", "))
    };
    for &c in needed {
        let i = pick[&c];
        let chosen = egraph[c].nodes[i].name();
        let Some(chosen_cost) = dag_cost(egraph, own, best, c, i) else {
            continue;
        };
        // The cheapest e-node of each other op in the class, and of the same op (attributes
        // too) on operands of other types.
        let mut others: BTreeMap<(String, String), f64> = BTreeMap::new();
        for j in 0..egraph[c].nodes.len() {
            let name = egraph[c].nodes[j].name();
            let key = if name != chosen {
                (chosen.to_string(), name.to_string())
            } else if egraph[c].nodes[j].op() == egraph[c].nodes[i].op()
                && typed(c, j) != typed(c, i)
            {
                (typed(c, i), typed(c, j))
            } else {
                continue;
            };
            if let Some(k) = dag_cost(egraph, own, best, c, j) {
                let e = others.entry(key).or_insert(k);
                *e = e.min(k);
            }
        }
        for ((chosen, over), over_cost) in others {
            let e = by_pair
                .entry((chosen.clone(), over.clone()))
                .or_insert(Choice {
                    chosen,
                    over,
                    count: 0,
                    chosen_cost: 0.0,
                    over_cost: 0.0,
                });
            e.count += 1;
            e.chosen_cost += chosen_cost;
            e.over_cost += over_cost;
        }
    }
    by_pair.into_values().collect()
}

/// The classes the current picks need for `roots`, in id order.
fn reachable(egraph: &TensorGraph, pick: &HashMap<Id, usize>, roots: &[Id]) -> Vec<Id> {
    let mut seen: std::collections::BTreeSet<Id> = Default::default();
    let mut stack: Vec<Id> = roots.to_vec();
    while let Some(c) = stack.pop() {
        if seen.insert(c) {
            for &a in egraph[c].nodes[pick[&c]].args() {
                stack.push(egraph.find(a));
            }
        }
    }
    seen.into_iter().collect()
}

/// One round of local improvement: each needed class takes the e-node whose own cost plus
/// the greedy cost of the classes it would newly need is least, given everything else that
/// is already selected (greedy DAG extraction cannot see that a class it charges to one user
/// is needed by another anyway: a residual sum that is also a layer norm's input). Returns
/// whether any pick changed.
fn refine(
    egraph: &TensorGraph,
    own: &HashMap<(Id, usize), f64>,
    best: &Best,
    pick: &mut HashMap<Id, usize>,
    roots: &[Id],
) -> bool {
    let mut changed = false;
    // The needed classes, recomputed only after a pick changes.
    let mut needed: std::collections::HashSet<Id> =
        reachable(egraph, pick, roots).into_iter().collect();
    for c in reachable(egraph, pick, roots) {
        if !needed.contains(&c) {
            continue;
        }
        let marginal = |i: usize| -> Option<f64> {
            let node = &egraph[c].nodes[i];
            let mut extra: BTreeMap<Id, f64> = BTreeMap::new();
            for &a in node.args() {
                let a = egraph.find(a);
                if needed.contains(&a) {
                    continue;
                }
                let (_, set, _) = best.get(&a)?;
                if set.contains_key(&c) {
                    return None;
                }
                extra.extend(
                    set.iter()
                        .filter(|(k, _)| !needed.contains(k))
                        .map(|(k, v)| (*k, *v)),
                );
            }
            Some(own[&(c, i)] + extra.values().sum::<f64>())
        };
        let current = pick[&c];
        let Some(mut best_cost) = marginal(current) else {
            continue;
        };
        let mut best_i = current;
        for i in 0..egraph[c].nodes.len() {
            if i == current {
                continue;
            }
            let Some(m) = marginal(i) else { continue };
            if m < best_cost * (1.0 - 1e-9) - 1e-9 && !reaches(egraph, pick, &egraph[c].nodes[i], c)
            {
                best_cost = m;
                best_i = i;
            }
        }
        if best_i != current {
            pick.insert(c, best_i);
            changed = true;
            needed = reachable(egraph, pick, roots).into_iter().collect();
        }
    }
    changed
}

/// True if choosing `node` for class `c` would make a cycle under the current picks.
fn reaches(egraph: &TensorGraph, pick: &HashMap<Id, usize>, node: &ENode, c: Id) -> bool {
    let mut seen: std::collections::HashSet<Id> = Default::default();
    let mut stack: Vec<Id> = node.args().iter().map(|&a| egraph.find(a)).collect();
    while let Some(x) = stack.pop() {
        if x == c {
            return true;
        }
        if seen.insert(x) {
            if let Some(&i) = pick.get(&x) {
                stack.extend(egraph[x].nodes[i].args().iter().map(|&a| egraph.find(a)));
            }
        }
    }
    false
}

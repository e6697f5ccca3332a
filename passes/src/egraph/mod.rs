//! `egraph`: the optimiser. The graph goes into an e-graph, the rules (`rules/`) saturate it
//! within explicit limits, and the cost model (`cost`) picks one e-node per needed class
//! (`extract`, a DAG cost), from which the graph is rebuilt (`convert`).
//!
//! Every fusion tcc makes is a rule here, and its result is an IR op that prints, parses,
//! verifies and interprets ([`tcc_ir::fused`]); code generation lowers each op to one
//! kernel. The run is bounded by iterations, e-nodes and time; the limits are sized so that a
//! BERT-sized model saturates well inside them (so the time limit cannot change the result on
//! a fast machine), and the stop reason is reported by [`Explanation`].

pub mod analysis;
pub mod convert;
pub mod cost;
pub mod extract;
pub mod lang;
pub mod padding;
pub mod rules;

use crate::error::Result;
use crate::pass::Pass;
use egg::{Runner, StopReason};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tcc_ir::Graph;

pub use cost::CostModel;
pub use egg;
pub use rules::{Exactness, Rule};

/// The optimiser's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// At most this many rounds of rule applications.
    pub iter_limit: usize,
    /// Stop once the e-graph has this many e-nodes.
    pub node_limit: usize,
    /// Stop after this long.
    pub time_limit: Duration,
    /// Allow the rules tagged [`Exactness::Reassociating`] (on by default: each changes a
    /// result by at most an ulp or two of the value it rewrites, see RULES.md).
    pub reassociate: bool,
    /// The cost model extraction uses.
    pub cost: CostModel,
    /// Also extract at other values of each input symbol and report where the chosen form
    /// changes ([`Explanation::crossovers`]); `--explain` sets it.
    pub sweep: bool,
    /// Padding elimination: the pipeline runs [`crate::RemovePadding`] before the
    /// optimiser, which then moves its packs toward the inputs ([`padding`]).
    pub remove_padding: Option<crate::RemovePadding>,
    /// Int8 quantisation before the optimiser (its pass runs first when this is set; see
    /// [`crate::Quantize`]). Not part of the optimiser: the pipeline reads it from here.
    pub quantize: Option<crate::Quantize>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            iter_limit: 32,
            node_limit: 200_000,
            time_limit: Duration::from_secs(20),
            reassociate: true,
            cost: CostModel::default(),
            sweep: false,
            remove_padding: None,
            quantize: None,
        }
    }
}

/// One round of rule applications.
#[derive(Clone, Debug)]
pub struct Iteration {
    /// E-nodes after the round.
    pub enodes: usize,
    /// E-classes after the round.
    pub eclasses: usize,
    /// Matches applied in the round.
    pub applied: usize,
}

/// What a run of the optimiser did, for `tcc compile --explain`.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// Each rule that fired, with how many times, in rule order.
    pub fired: Vec<(String, usize)>,
    /// The number of rules that were enabled.
    pub rules: usize,
    /// The rounds.
    pub iterations: Vec<Iteration>,
    /// Why saturation stopped.
    pub stop_reason: String,
    /// Time from graph to graph.
    pub time: Duration,
    /// The cost model's estimate for the graph before, in ns.
    pub cost_before: f64,
    /// And after.
    pub cost_after: f64,
    /// E-nodes at the end.
    pub enodes: usize,
    /// E-classes at the end.
    pub eclasses: usize,
    /// Where the cost model chose between forms (fused or not, merged or not).
    pub choices: Vec<extract::Choice>,
    /// Where the chosen forms change with a symbol's value, the other symbols at their hints
    /// (with [`Config::sweep`]).
    pub crossovers: Vec<Crossover>,
}

/// A size at which extraction picks other forms.
#[derive(Clone, Debug, PartialEq)]
pub struct Crossover {
    /// The symbol.
    pub symbol: String,
    /// The largest value at which the form chosen below is the cheaper (to one unit: the
    /// forms' whole costs are bisected between extractions at 1, 4, 16, .., 16384).
    pub below: i64,
    /// The smallest value at which the form chosen above is the cheaper.
    pub above: i64,
    /// The classes whose chosen e-node differs across the change.
    pub classes: usize,
    /// The DAG cost of each side's choice at `above`, in ns: the form chosen below, then the
    /// one chosen above.
    pub costs_at_above: (f64, f64),
    /// The values at which extraction gave each side's form (the sweep's samples around the
    /// crossover): extracting at them gives those forms again.
    pub samples: (i64, i64),
    /// What each side's form saves at its own sample, as a fraction of the other form's
    /// cost there: `(1 - lower / upper at samples.0, 1 - upper / lower at samples.1)`.
    pub savings: (f64, f64),
}

impl Crossover {
    /// True if each side's form saves at least [`MIN_FORM_SAVING`] of the other's cost at
    /// its sample: worth a form of its own in a library.
    pub fn worth_a_form(&self) -> bool {
        self.savings.0 >= MIN_FORM_SAVING && self.savings.1 >= MIN_FORM_SAVING
    }
}

/// A crossover whose forms save less than this fraction of the cost on either side is not
/// worth a second form in a library (its code and compile time).
pub const MIN_FORM_SAVING: f64 = 0.01;

impl fmt::Display for Explanation {
    /// The rules that fired, the e-graph per round, the stop reason and the costs; the last
    /// line is `tcc explain: rules=R iterations=I enodes=N eclasses=C time=T ms
    /// cost_before=X cost_after=Y` (costs in µs at the hinted sizes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "rules fired:")?;
        for (name, n) in &self.fired {
            writeln!(f, "  {name:<28} {n}")?;
        }
        writeln!(f, "iterations:")?;
        for (i, it) in self.iterations.iter().enumerate() {
            writeln!(
                f,
                "  {i:>3}: {:>7} e-nodes {:>7} e-classes {:>6} applied",
                it.enodes, it.eclasses, it.applied
            )?;
        }
        writeln!(f, "stop reason: {}", self.stop_reason)?;
        if !self.choices.is_empty() {
            writeln!(
                f,
                "choices (cost model, µs at the hinted sizes, each with what it needs):"
            )?;
            for c in &self.choices {
                writeln!(
                    f,
                    "  {:>4} x {:<16} {:>10.1}  over {:<16} {:>10.1}",
                    c.count,
                    c.chosen,
                    c.chosen_cost / 1e3,
                    c.over,
                    c.over_cost / 1e3
                )?;
            }
        }
        for c in &self.crossovers {
            writeln!(
                f,
                "size-dependent choice: {n} classes take other forms at larger {sym}; the cost model prefers the smaller {sym}'s forms up to {sym} = {b} and the larger's from {sym} = {a} ({x:.1} µs against {y:.1} µs there; each saves {s0:.1}% at {sym} = {v0} and {s1:.1}% at {sym} = {v1}); {lib}",
                sym = c.symbol,
                b = c.below,
                a = c.above,
                n = c.classes,
                x = c.costs_at_above.0 / 1e3,
                y = c.costs_at_above.1 / 1e3,
                s0 = c.savings.0 * 100.0,
                s1 = c.savings.1 * 100.0,
                v0 = c.samples.0,
                v1 = c.samples.1,
                lib = if c.worth_a_form() {
                    format!("a compiled library holds the forms of each side and picks one per call by {}", c.symbol)
                } else {
                    format!("too little for a form of its own (under {}%): a library holds the hinted sizes' form", MIN_FORM_SAVING * 100.0)
                },
            )?;
        }
        writeln!(
            f,
            "cost: {:.1} µs before, {:.1} µs after",
            self.cost_before / 1e3,
            self.cost_after / 1e3
        )?;
        write!(
            f,
            "tcc explain: rules={} iterations={} enodes={} eclasses={} time={:.1} ms cost_before={:.1} cost_after={:.1}",
            self.rules,
            self.iterations.len(),
            self.enodes,
            self.eclasses,
            self.time.as_secs_f64() * 1e3,
            self.cost_before / 1e3,
            self.cost_after / 1e3
        )
    }
}

/// The forms a library should hold when extraction's choice depends on a symbol's value:
/// the symbol, the bounds between forms (form `k` for `bounds[k - 1] <= value < bounds[k]`)
/// and, per form, the value to extract it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormPlan {
    /// The symbol whose value picks the form.
    pub symbol: String,
    /// The bounds, increasing: where the cost model's whole costs of the neighbouring forms
    /// cross ([`Crossover::above`]).
    pub bounds: Vec<i64>,
    /// Per form, the symbol's value to optimise it at: a value inside its range at which the
    /// sweep's extraction gave that form ([`Crossover::samples`]; extraction is greedy, so
    /// near a bound it may still give the other side's form).
    pub at: Vec<i64>,
}

/// At most this many forms per library (the crossovers of a symbol beyond them are ignored:
/// each form costs its code and compile time).
pub const MAX_FORMS: usize = 4;

/// The forms to compile from the crossovers of an optimiser run ([`Explanation::crossovers`],
/// in input-symbol order) that are [`Crossover::worth_a_form`]: the first symbol with such
/// crossovers decides (the others keep their hints), with one form per range between its
/// crossovers, at most [`MAX_FORMS`]. `None` when nothing depends on the sizes enough.
pub fn plan_forms(crossovers: &[Crossover]) -> Option<FormPlan> {
    let worth: Vec<&Crossover> = crossovers.iter().filter(|c| c.worth_a_form()).collect();
    let symbol = worth.first()?.symbol.clone();
    let mut cs: Vec<&Crossover> = worth.into_iter().filter(|c| c.symbol == symbol).collect();
    cs.sort_by_key(|c| c.above);
    cs.dedup_by_key(|c| c.above);
    cs.truncate(MAX_FORMS - 1);
    let bounds = cs.iter().map(|c| c.above).collect();
    let at = std::iter::once(cs[0].samples.0)
        .chain(cs.iter().map(|c| c.samples.1))
        .collect();
    Some(FormPlan { symbol, bounds, at })
}

/// `cost` with a hint for each `pack`'s token symbol of `graph` that has none: half of its
/// mask's elements at the hints (the padded batches padding elimination is for are about
/// half real tokens; an exact count is a run's, not the compiler's).
fn with_token_hints(cost: &CostModel, graph: &Graph) -> CostModel {
    let mut model = cost.clone();
    for id in graph.topo_order() {
        if let tcc_ir::Op::Pack { tokens } = graph.op(id) {
            if model.hints.contains_key(&**tokens) {
                continue;
            }
            let mask = graph.operands(id)[1];
            let env = |s: &str| Some(*cost.hints.get(s).unwrap_or(&cost.default_dim));
            let n = graph
                .ty(mask)
                .shape
                .numel()
                .eval(&env)
                .unwrap_or(cost.default_dim);
            model.hints.insert(tokens.to_string(), (n / 2).max(1));
        }
    }
    model
}

/// The cost model's estimate for a whole graph, in ns: each node once.
pub fn graph_cost(graph: &Graph, model: &CostModel) -> f64 {
    graph
        .topo_order()
        .into_iter()
        .map(|id| {
            let args: Vec<_> = graph.operands(id).iter().map(|&o| graph.ty(o)).collect();
            let ops = graph.operands(id);
            model.op_cost(graph.op(id), &args, &cost::repeats(&ops), graph.ty(id))
        })
        .sum()
}

/// The rules `config` enables.
pub fn enabled_rules(config: &Config) -> Vec<Rule> {
    rules::all()
        .into_iter()
        .filter(|r| config.reassociate || r.exactness == Exactness::Exact)
        .collect()
}

/// Optimises `graph`: saturation, extraction, rebuild. Returns the new graph and what
/// happened.
pub fn optimize(graph: &Graph, config: &Config) -> Result<(Graph, Explanation)> {
    let start = Instant::now();
    let rules = enabled_rules(config);
    let mut loaded = convert::to_egraph(graph);
    let egraph = std::mem::take(&mut loaded.egraph);
    let rewrites: Vec<_> = rules.iter().map(|r| &r.rewrite).collect();
    // Every rule is targeted and bounded, so no rule is ever banned for matching often (egg's
    // default backoff scheduler would ban one on a large model and could stop it short).
    let runner = Runner::default()
        .with_scheduler(egg::SimpleScheduler)
        .with_egraph(egraph)
        .with_iter_limit(config.iter_limit)
        .with_node_limit(config.node_limit)
        .with_time_limit(config.time_limit)
        .run(rewrites);
    let stop_reason = match &runner.stop_reason {
        Some(StopReason::Saturated) => "saturated".to_string(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("e-node limit ({n})"),
        Some(StopReason::TimeLimit(t)) => format!("time limit ({t:.1} s)"),
        Some(StopReason::Other(s)) => s.clone(),
        None => "not run".to_string(),
    };
    // Padding elimination: the packs the remove-padding pass wrote, moved toward the inputs.
    let mut egraph = runner.egraph;
    let packs: Vec<egg::Id> = egraph
        .classes()
        .filter(|c| {
            c.nodes
                .iter()
                .any(|n| matches!(n.op(), tcc_ir::Op::Pack { .. }))
        })
        .map(|c| c.id)
        .collect();
    let sunk = if packs.is_empty() {
        0
    } else {
        padding::sink(&mut egraph, &packs)
    };
    let cost_model = with_token_hints(&config.cost, graph);
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    if sunk > 0 {
        counts.insert("pack-sink".to_string(), sunk);
    }
    let iterations = runner
        .iterations
        .iter()
        .map(|it| {
            let mut applied = 0;
            for (name, n) in &it.applied {
                *counts.entry(name.to_string()).or_default() += n;
                applied += n;
            }
            Iteration {
                enodes: it.egraph_nodes,
                eclasses: it.egraph_classes,
                applied,
            }
        })
        .collect();
    loaded.egraph = egraph;
    let eg = &loaded.egraph;
    loaded.outputs = loaded.outputs.iter().map(|&o| eg.find(o)).collect();
    let mut origins = std::collections::HashMap::new();
    for (k, v) in std::mem::take(&mut loaded.origins) {
        origins.entry(eg.find(k)).or_insert(v);
    }
    loaded.origins = origins;
    let extraction = extract::extract(eg, &cost_model, &loaded.outputs);
    let out = convert::from_egraph(&loaded, &extraction.choice, graph)?;
    if !packs.is_empty() {
        // Padding elimination must have reached every attention: one left on the padded
        // batch means an op on the way mixes tokens, and the padded tokens are computed.
        if let Some(id) = out
            .topo_order()
            .into_iter()
            .find(|&id| matches!(out.op(id), tcc_ir::Op::Attention { .. }))
        {
            let node = match &out.node(id).origin {
                Some(o) => format!("`{o}`"),
                None => format!("%{}", id.index()),
            };
            return Err(crate::Error::Padding {
                why: format!(
                    "the attention {node} still runs on the padded batch: an op between it and \
                     the outputs mixes tokens (or its operands are not laid out as [batch, seq, \
                     heads, dim]), so padded tokens would still be computed"
                ),
            });
        }
    }
    let fired = rules
        .iter()
        .filter_map(|r| {
            let n = counts.get(r.name()).copied().unwrap_or(0);
            (n > 0).then(|| (r.name().to_string(), n))
        })
        .collect();
    let explanation = Explanation {
        fired,
        rules: rules.len(),
        iterations,
        stop_reason,
        time: start.elapsed(),
        cost_before: graph_cost(graph, &cost_model),
        cost_after: graph_cost(&out, &cost_model),
        enodes: loaded.egraph.total_number_of_nodes(),
        eclasses: loaded.egraph.number_of_classes(),
        choices: extraction.choices,
        crossovers: if config.sweep {
            crossovers(eg, &config.cost, &loaded.outputs, graph)
        } else {
            Vec::new()
        },
    };
    Ok((out, explanation))
}

/// Per input symbol of `graph`, the values at which extraction changes its choice, the other
/// symbols at their hints: extraction at 1, 4, 16, .., 16384, then, between two neighbours
/// that differ, bisection for the value where the upper form's whole cost falls to the lower
/// one's.
fn crossovers(
    eg: &analysis::TensorGraph,
    cost: &CostModel,
    roots: &[egg::Id],
    graph: &Graph,
) -> Vec<Crossover> {
    let mut out = Vec::new();
    for symbol in graph.input_symbols() {
        let symbol = symbol.to_string();
        let at = |v: i64| {
            let mut model = cost.clone();
            model.hints.insert(symbol.clone(), v);
            extract::extract(eg, &with_token_hints(&model, graph), roots)
        };
        // The same graph: the same e-node in every class the roots need.
        let same = |a: &extract::Extraction, b: &extract::Extraction| {
            let na = extract::needed(eg, &a.choice, roots);
            na == extract::needed(eg, &b.choice, roots)
                && na.iter().all(|c| a.choice[c] == b.choice[c])
        };
        let samples: Vec<i64> = (0..8).map(|k| 4i64.pow(k)).collect();
        let (mut prev_v, mut prev_e) = (samples[0], at(samples[0]));
        for &v in &samples[1..] {
            let e = at(v);
            if !same(&prev_e, &e) {
                // Two forms: where does the upper one become the cheaper? Bisect on their
                // whole costs (the greedy extraction itself may switch a little off it).
                let cost_at = |choice: &std::collections::HashMap<egg::Id, lang::ENode>, v: i64| {
                    let mut model = cost.clone();
                    model.hints.insert(symbol.clone(), v);
                    extract::choice_cost(eg, &with_token_hints(&model, graph), choice, roots)
                };
                let upper_wins = |v: i64| cost_at(&e.choice, v) <= cost_at(&prev_e.choice, v);
                let (mut lo, mut hi) = (prev_v, v);
                if upper_wins(lo) || !upper_wins(hi) {
                    // Not a clean crossing between these two samples: report the samples.
                    hi = v;
                } else {
                    while hi - lo > 1 {
                        let mid = lo + (hi - lo) / 2;
                        if upper_wins(mid) {
                            hi = mid;
                        } else {
                            lo = mid;
                        }
                    }
                }
                let classes = extract::needed(eg, &e.choice, roots)
                    .iter()
                    .filter(|c| prev_e.choice.get(c) != Some(&e.choice[c]))
                    .count();
                out.push(Crossover {
                    symbol: symbol.clone(),
                    below: lo,
                    above: hi,
                    classes,
                    costs_at_above: (cost_at(&prev_e.choice, hi), cost_at(&e.choice, hi)),
                    samples: (prev_v, v),
                    savings: (
                        1.0 - cost_at(&prev_e.choice, prev_v) / cost_at(&e.choice, prev_v),
                        1.0 - cost_at(&e.choice, v) / cost_at(&prev_e.choice, v),
                    ),
                });
            }
            prev_v = v;
            prev_e = e;
        }
    }
    out
}

/// The optimiser as a pass. The explanation of its last run is kept for the caller.
#[derive(Debug, Default)]
pub struct EGraphPass {
    /// Its settings.
    pub config: Config,
    /// The explanation of the last run.
    pub last: Arc<Mutex<Option<Explanation>>>,
}

impl Pass for EGraphPass {
    fn name(&self) -> &'static str {
        "egraph"
    }

    fn description(&self) -> &'static str {
        "equality saturation with the fusion rules, then extraction by the cost model"
    }

    fn run(&self, graph: &mut Graph) -> Result<bool> {
        let (out, explanation) = optimize(graph, &self.config)?;
        let changed = tcc_ir::text::print(&out) != tcc_ir::text::print(graph);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(explanation);
        }
        if changed {
            *graph = out;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crossing(symbol: &str, above: i64) -> Crossover {
        Crossover {
            symbol: symbol.into(),
            below: above - 1,
            above,
            classes: 1,
            costs_at_above: (1.0, 1.0),
            samples: (above / 2, above * 2),
            savings: (0.1, 0.3),
        }
    }

    #[test]
    fn forms_are_planned_per_range_of_the_first_symbol_at_the_sweeps_samples() {
        assert_eq!(plan_forms(&[]), None);
        let p = plan_forms(&[crossing("seq", 114)]).unwrap();
        assert_eq!(
            (p.symbol.as_str(), p.bounds.clone(), p.at),
            ("seq", vec![114], vec![57, 228])
        );
        // Several crossovers of one symbol, unordered and repeated; another symbol's ignored.
        let p = plan_forms(&[
            crossing("seq", 900),
            crossing("seq", 20),
            crossing("batch", 4),
            crossing("seq", 20),
        ])
        .unwrap();
        assert_eq!((p.bounds, p.at), (vec![20, 900], vec![10, 40, 1800]));
        // At most MAX_FORMS forms.
        let many: Vec<_> = (1..10).map(|k| crossing("seq", 10 * k)).collect();
        let p = plan_forms(&many).unwrap();
        assert_eq!(p.bounds.len(), MAX_FORMS - 1);
        assert_eq!(p.at.len(), MAX_FORMS);
        // A crossover whose forms save little on one side is no form of its own.
        let mut slight = crossing("seq", 9);
        slight.savings = (0.3, 0.0001);
        assert_eq!(plan_forms(&[slight.clone()]), None);
        let p = plan_forms(&[slight, crossing("seq", 300)]).unwrap();
        assert_eq!(p.bounds, vec![300]);
    }
}

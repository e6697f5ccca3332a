//! `quantize`: int8 quantisation of the matrix products by constant weights, with an accuracy
//! gate. Not an equality (the results change), so a pass of its own before the optimiser,
//! which then fuses what it writes into `qgemm` ops (`qgemm-dynamic`, RULES.md).
//!
//! Each `matmul(a, W)` of an f32 `a` by a constant f32 matrix `W [k, n]` becomes the chain of
//! dynamic quantisation, one scale per row of `a` and one per column of `W`:
//!
//! - weights, per output channel, symmetric: `sw[j] = max_k |W[k, j]| / 127` (1 for a zero
//!   column), `Wq = i8(round(W / sw))`, in `[-127, 127]`;
//! - activations, per row (per token), asymmetric as ONNX's `DynamicQuantizeLinear` is per
//!   tensor: `lo = min(0, min_k a)`, `hi = max(0, max_k a)`, `sa = max((hi - lo) / 255,
//!   1e-30)` (a zero row gets a normal scale, not 0), `za = u8(round(clamp(-lo / sa, 0,
//!   255)))`, `q = u8(clamp(round(a / sa) + za, 0, 255))`;
//! - `f32(matmul_integer(q, Wq, za, 0)) * (sa * sw)`, the u8 x s8 products exact in i32 (what
//!   VNNI computes; the kernels without VNNI widen to i16 rather than saturate).
//!
//! The gate ([`Gate`]): on calibration inputs, the original and the quantised graphs run in the
//! interpreter, and the products whose quantisation costs the most accuracy stay f32 until the
//! outputs' cosine similarity with the f32 ones reaches the bar: first every product is
//! quantised; if that misses the bar, each product's own effect is measured (the cosine with
//! all the others quantised and it kept f32), and the fewest products at the head of that
//! order that meet the bar are found by bisection and kept f32 (`n + log2 n` runs of the
//! calibration inputs for `n` products). The similarity of an output `[batch, seq, hidden]` next to an attention mask input
//! `[batch, seq]` is that of its mask-weighted mean over the sequence (a sentence embedding),
//! else of each batch row flattened; the score is the smallest over outputs, rows and cases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::pass::Pass;
use tcc_ir::{BinaryOp, DType, Graph, NodeId, Op, ReduceKind, Tensor, UnaryOp};

/// The smallest activation scale: keeps a row of zeros (scale 0) from dividing by zero, and
/// is a normal f32, so no subnormal reaches the kernels.
pub const MIN_SCALE: f32 = 1e-30;

/// The accuracy gate: calibration inputs and the bar.
#[derive(Clone, Debug)]
pub struct Gate {
    /// The smallest cosine similarity allowed between quantised and f32 outputs.
    pub min_cosine: f64,
    /// The calibration cases, each the inputs by name.
    pub cases: Vec<HashMap<String, Tensor>>,
}

/// What the pass did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The products quantised, by name.
    pub quantised: Vec<String>,
    /// The products kept f32 by the gate, by name.
    pub kept_f32: Vec<String>,
    /// The cosine reached on the calibration cases, if a gate ran.
    pub cosine: Option<f64>,
    /// The cosine with every product quantised, if a gate ran.
    pub cosine_all: Option<f64>,
    /// How the outputs were compared, if a gate ran.
    pub measure: Option<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.quantised.len() + self.kept_f32.len();
        match (self.cosine, self.cosine_all) {
            (Some(c), Some(all)) => {
                writeln!(
                    f,
                    "tcc quantize: {} of {total} products int8, {} kept f32; cosine {c:.6} on the \
                     calibration inputs ({}; {all:.6} with all int8)",
                    self.quantised.len(),
                    self.kept_f32.len(),
                    self.measure.as_deref().unwrap_or("outputs"),
                )?;
                for name in &self.kept_f32 {
                    writeln!(f, "tcc quantize: kept f32: {name}")?;
                }
                Ok(())
            }
            _ => writeln!(
                f,
                "tcc quantize: {} of {total} products int8; no accuracy gate applied (give \
                 --calibrate CASES.npz with --min-cosine)",
                self.quantised.len()
            ),
        }
    }
}

/// The pass: quantises every eligible product, or as the gate allows.
#[derive(Clone, Debug, Default)]
pub struct Quantize {
    /// The accuracy gate, if any.
    pub gate: Option<Gate>,
    /// What the last run did.
    pub last: Arc<Mutex<Option<Report>>>,
}

/// The matrix products the pass quantises: `matmul(a, W)`, `a` f32 of rank 2 or more, `W` a
/// constant f32 `[k, n]`. In topological order.
pub fn candidates(graph: &Graph) -> Vec<NodeId> {
    graph
        .topo_order()
        .into_iter()
        .filter(|&id| {
            if !matches!(graph.op(id), Op::MatMul) {
                return false;
            }
            let ops = graph.operands(id);
            let (a, w) = (graph.ty(ops[0]), graph.ty(ops[1]));
            a.dtype == DType::F32
                && a.rank() >= 2
                && w.dtype == DType::F32
                && w.rank() == 2
                && graph.const_value(ops[1]).is_some()
        })
        .collect()
}

/// A product's name for reports: its ONNX node's, else its IR number.
pub fn product_name(graph: &Graph, id: NodeId) -> String {
    let (k, n) = w_dims(graph, id);
    match &graph.node(id).origin {
        Some(o) => format!("{o} ({k}x{n})"),
        None => format!("%{} ({k}x{n})", id.index()),
    }
}

fn w_dims(graph: &Graph, id: NodeId) -> (usize, usize) {
    let w = graph.operands(id)[1];
    graph
        .const_value(w)
        .map(|t| (t.shape()[0], t.shape()[1]))
        .unwrap_or((0, 0))
}

/// Per-column symmetric int8 weights and their scales.
pub fn quantise_weights(w: &Tensor) -> Result<(Tensor, Tensor)> {
    let (k, n) = (w.shape()[0], w.shape()[1]);
    let v = w.data().to_f64_vec();
    let mut scales = vec![1.0f32; n];
    for (j, s) in scales.iter_mut().enumerate() {
        let m = (0..k).map(|i| v[i * n + j].abs()).fold(0.0f64, f64::max) as f32;
        if m > 0.0 && m.is_finite() {
            *s = m / 127.0;
        }
    }
    let q: Vec<i8> = (0..k * n)
        .map(|x| {
            let s = f64::from(scales[x % n]);
            (v[x] / s).round_ties_even().clamp(-127.0, 127.0) as i8
        })
        .collect();
    let wq = Tensor::from_vec(vec![k, n], q).map_err(|e| Error::Quantize { why: e })?;
    let sw = Tensor::from_vec(vec![n], scales).map_err(|e| Error::Quantize { why: e })?;
    Ok((wq, sw))
}

/// Rewrites the product `id` (one of [`candidates`]) as dynamic int8 quantisation (see the
/// module documentation); its users read the dequantised result.
fn quantise_product(graph: &mut Graph, id: NodeId) -> Result<()> {
    let ops = graph.operands(id);
    let (a, w) = (ops[0], ops[1]);
    let wt = graph
        .const_value(w)
        .cloned()
        .ok_or_else(|| Error::Quantize {
            why: "the weights are not a constant".into(),
        })?;
    let (wq, sw) = quantise_weights(&wt)?;
    let origin = graph.node(id).origin.clone();
    let o = origin.as_deref();
    let scalar = |g: &mut Graph, v: f32| g.add_const(Tensor::scalar(v), None);
    let last = graph.ty(a).rank() - 1;
    let reduce = |g: &mut Graph, kind| {
        g.add_with_origin(
            Op::Reduce {
                kind,
                axes: vec![last],
                keep_dims: true,
            },
            &[a],
            o,
        )
    };
    let bin = |g: &mut Graph, op, x, y| g.add_with_origin(Op::Binary(op), &[x, y], o);
    let un = |g: &mut Graph, op, x| g.add_with_origin(Op::Unary(op), &[x], o);
    let cast = |g: &mut Graph, to, x| g.add_with_origin(Op::Cast { to }, &[x], o);
    let zero = scalar(graph, 0.0);
    let c255 = scalar(graph, 255.0);
    let tiny = scalar(graph, MIN_SCALE);
    // The row scale and zero point.
    let mx = reduce(graph, ReduceKind::Max)?;
    let mn = reduce(graph, ReduceKind::Min)?;
    let hi = bin(graph, BinaryOp::Max, mx, zero)?;
    let lo = bin(graph, BinaryOp::Min, mn, zero)?;
    let range = bin(graph, BinaryOp::Sub, hi, lo)?;
    let sa = bin(graph, BinaryOp::Div, range, c255)?;
    let sa = bin(graph, BinaryOp::Max, sa, tiny)?;
    let lo_s = bin(graph, BinaryOp::Div, lo, sa)?;
    let zp = bin(graph, BinaryOp::Sub, zero, lo_s)?;
    let zp = bin(graph, BinaryOp::Max, zp, zero)?;
    let zp = bin(graph, BinaryOp::Min, zp, c255)?;
    let zp = un(graph, UnaryOp::Round, zp)?;
    let za = cast(graph, DType::U8, zp)?;
    // The quantised rows, as QuantizeLinear to u8.
    let d = bin(graph, BinaryOp::Div, a, sa)?;
    let r = un(graph, UnaryOp::Round, d)?;
    let zf = cast(graph, DType::F32, za)?;
    let t = bin(graph, BinaryOp::Add, r, zf)?;
    let t = bin(graph, BinaryOp::Max, t, zero)?;
    let t = bin(graph, BinaryOp::Min, t, c255)?;
    let q = cast(graph, DType::U8, t)?;
    // The product and its dequantisation.
    let name = |suffix: &str| o.map(|o| format!("{o}.{suffix}"));
    let wq = graph.add_const(wq, name("quantized"));
    let sw = graph.add_const(sw, name("scale"));
    let zw = graph.add_const(Tensor::scalar(0i8), None);
    let acc = graph.add_with_origin(
        Op::MatMulInteger {
            saturate_pairs: false,
        },
        &[q, wq, za, zw],
        o,
    )?;
    let accf = cast(graph, DType::F32, acc)?;
    let s = bin(graph, BinaryOp::Mul, sa, sw)?;
    let y = bin(graph, BinaryOp::Mul, accf, s)?;
    if graph.ty(y) != graph.ty(id) {
        return Err(Error::Quantize {
            why: format!(
                "the quantised product of {} is {}, not {}",
                product_name(graph, id),
                graph.ty(y),
                graph.ty(id)
            ),
        });
    }
    graph.replace_all_uses(id, y)?;
    Ok(())
}

/// `graph` with the products `which` quantised.
pub fn quantised(graph: &Graph, which: &[NodeId]) -> Result<Graph> {
    let mut g = graph.clone();
    for &id in which {
        quantise_product(&mut g, id)?;
    }
    g.remove_dead();
    Ok(g)
}

/// How outputs are compared: per output, the mask input to pool by, if any.
struct Measure {
    /// Per output (in order), the name of the `[batch, seq]` mask input its
    /// `[batch, seq, hidden]` is pooled by.
    pooled: Vec<Option<String>>,
}

impl Measure {
    fn of(graph: &Graph) -> Measure {
        let mask = graph.inputs().iter().find_map(|&i| match graph.op(i) {
            Op::Input { name } if name.contains("mask") && graph.ty(i).rank() == 2 => {
                Some((name.clone(), graph.ty(i).shape.dims().to_vec()))
            }
            _ => None,
        });
        let pooled = graph
            .outputs()
            .iter()
            .map(|(_, o)| {
                let dims = graph.ty(*o).shape.dims();
                mask.as_ref()
                    .filter(|(_, m)| dims.len() == 3 && dims[..2] == m[..])
                    .map(|(n, _)| n.clone())
            })
            .collect();
        Measure { pooled }
    }

    fn describe(&self, graph: &Graph) -> String {
        let parts: Vec<String> = graph
            .outputs()
            .iter()
            .zip(&self.pooled)
            .map(|((name, _), p)| match p {
                Some(m) => format!("`{name}` mean-pooled over `{m}`"),
                None => format!("`{name}` per batch row"),
            })
            .collect();
        parts.join(", ")
    }

    /// The vectors compared for output `k` of a case: one per batch row.
    fn vectors(&self, k: usize, out: &Tensor, inputs: &HashMap<String, Tensor>) -> Vec<Vec<f64>> {
        let v = out.data().to_f64_vec();
        let shape = out.shape();
        let rows = shape.first().copied().unwrap_or(1).max(1);
        let per = v.len() / rows.max(1);
        match &self.pooled[k] {
            Some(m) if inputs.contains_key(m) => {
                let mask = inputs[m].data().to_f64_vec();
                let (s, h) = (shape[1], shape[2]);
                (0..shape[0])
                    .map(|b| {
                        let mut sum = vec![0.0; h];
                        let mut count = 0.0;
                        for t in 0..s {
                            let w = mask[b * s + t];
                            count += w;
                            for (j, x) in sum.iter_mut().enumerate() {
                                *x += w * v[(b * s + t) * h + j];
                            }
                        }
                        sum.iter().map(|x| x / count.max(1e-9)).collect()
                    })
                    .collect()
            }
            _ => v.chunks(per.max(1)).map(|c| c.to_vec()).collect(),
        }
    }
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if na == 0.0 && nb == 0.0 {
        1.0
    } else if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Runs the gate's cases through `graph` in the interpreter.
fn outputs(graph: &Graph, gate: &Gate) -> Result<Vec<Vec<Tensor>>> {
    gate.cases
        .iter()
        .enumerate()
        .map(|(k, case)| {
            tcc_ir::interp::run(graph, case)
                .map(|o| o.into_iter().map(|(_, t)| t).collect())
                .map_err(|e| Error::Quantize {
                    why: format!("calibration case {k} does not run in the interpreter: {e}"),
                })
        })
        .collect()
}

/// The smallest cosine between `got` and `want` over outputs, rows and cases.
fn score(measure: &Measure, gate: &Gate, want: &[Vec<Tensor>], got: &[Vec<Tensor>]) -> f64 {
    let mut worst = 1.0f64;
    for ((w, g), inputs) in want.iter().zip(got).zip(&gate.cases) {
        for (k, (wo, go)) in w.iter().zip(g).enumerate() {
            let (wv, gv) = (
                measure.vectors(k, wo, inputs),
                measure.vectors(k, go, inputs),
            );
            for (a, b) in wv.iter().zip(&gv) {
                let c = cosine(a, b);
                worst = worst.min(if c.is_nan() { -1.0 } else { c });
            }
        }
    }
    worst
}

/// Chooses the products to quantise and rewrites `graph`; the report says which.
pub fn quantize(graph: &mut Graph, gate: Option<&Gate>) -> Result<Report> {
    let all = candidates(graph);
    let names: HashMap<NodeId, String> = all
        .iter()
        .map(|&id| (id, product_name(graph, id)))
        .collect();
    let Some(gate) = gate else {
        *graph = quantised(graph, &all)?;
        return Ok(Report {
            quantised: all.iter().map(|id| names[id].clone()).collect(),
            ..Default::default()
        });
    };
    if gate.cases.is_empty() {
        return Err(Error::Quantize {
            why: "the calibration inputs hold no case".into(),
        });
    }
    // The calibration archive may hold reference outputs too: keep the model's inputs.
    let inputs: Vec<String> = graph
        .inputs()
        .iter()
        .filter_map(|&i| match graph.op(i) {
            Op::Input { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let mut gate = gate.clone();
    for case in &mut gate.cases {
        case.retain(|name, _| inputs.contains(name));
        if let Some(missing) = inputs.iter().find(|n| !case.contains_key(*n)) {
            return Err(Error::Quantize {
                why: format!("the calibration inputs have no array `{missing}`"),
            });
        }
    }
    let gate = &gate;
    let measure = Measure::of(graph);
    let want = outputs(graph, gate)?;
    let score_of = |keep: &[NodeId]| -> Result<f64> {
        let which: Vec<NodeId> = all
            .iter()
            .copied()
            .filter(|id| !keep.contains(id))
            .collect();
        let g = quantised(graph, &which)?;
        Ok(score(&measure, gate, &want, &outputs(&g, gate)?))
    };
    let cosine_all = score_of(&[])?;
    let mut keep: Vec<NodeId> = Vec::new();
    let mut reached = cosine_all;
    if cosine_all < gate.min_cosine {
        // Each product's own effect: the score with it alone kept f32.
        let mut effect: Vec<(f64, NodeId)> = Vec::new();
        for &id in &all {
            effect.push((score_of(&[id])?, id));
        }
        effect.sort_by(|x, y| y.0.total_cmp(&x.0));
        let order: Vec<NodeId> = effect.iter().map(|e| e.1).collect();
        // The fewest of that order that reach the bar, by bisection (the score grows with
        // the products kept, as a rule; all kept is the f32 model itself, cosine 1).
        let (mut lo, mut hi) = (1, order.len());
        let mut at_hi = 1.0;
        while lo < hi {
            let mid = (lo + hi) / 2;
            let s = score_of(&order[..mid])?;
            if s >= gate.min_cosine {
                (hi, at_hi) = (mid, s);
            } else {
                lo = mid + 1;
            }
        }
        keep = order[..hi].to_vec();
        reached = if hi == order.len() {
            score_of(&keep)?
        } else {
            at_hi
        };
    }
    let which: Vec<NodeId> = all
        .iter()
        .copied()
        .filter(|id| !keep.contains(id))
        .collect();
    let report = Report {
        quantised: which.iter().map(|id| names[id].clone()).collect(),
        kept_f32: keep.iter().map(|id| names[id].clone()).collect(),
        cosine: Some(reached),
        cosine_all: Some(cosine_all),
        measure: Some(measure.describe(graph)),
    };
    *graph = quantised(graph, &which)?;
    Ok(report)
}

impl Pass for Quantize {
    fn name(&self) -> &'static str {
        "quantize"
    }

    fn description(&self) -> &'static str {
        "int8 quantisation of the products by constant weights (per-channel weights, per-row \
         activations), kept f32 where an accuracy gate on calibration inputs says so"
    }

    fn run(&self, graph: &mut Graph) -> Result<bool> {
        let report = quantize(graph, self.gate.as_ref())?;
        let changed = !report.quantised.is_empty();
        if let Ok(mut last) = self.last.lock() {
            *last = Some(report);
        }
        Ok(changed)
    }
}

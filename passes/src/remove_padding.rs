//! `remove-padding`: the step of padding elimination that changes values, and the checks
//! that it is exact where it matters.
//!
//! It finds the key-padding mask input (the one `m: [batch, seq]` that every attention's
//! softmax adds as a key-padding mask, by [`crate::key_mask`]; or the input named by
//! [`RemovePadding::mask`]) and rewrites each output `o` of shape `[batch, seq, ..]` as
//! `unpack(pack(o, m), m)`: the real tokens' rows unchanged, zeros at the padded positions
//! (where ONNX Runtime leaves values no caller should read). The optimiser then moves the
//! `pack` toward the inputs ([`crate::egraph::padding`]), so that every token-wise op runs on
//! the real tokens only, and chooses the packed forms by cost.
//!
//! It refuses (with [`Error::Padding`]) a model where it cannot show that a real token's
//! result ignores the padding: no mask input found, an attention-like softmax (over an axis
//! of `seq` keys) whose added mask is not a key-padding mask of `m` (a causal or general 2-D
//! mask, or none at all: then padded keys reach real tokens), or an output that is not one
//! row per token (a pooler reads across the sequence). The optimiser refuses afterwards a
//! graph where an attention still runs on the padded batch (an op on the way mixes tokens).

use crate::error::{Error, Result};
use crate::key_mask;
use crate::pass::Pass;
use std::sync::Arc;
use tcc_ir::{BinaryOp, Graph, NodeId, Op};

/// The pass. With `mask` set, that input is the mask; otherwise it is found.
#[derive(Clone, Debug, Default)]
pub struct RemovePadding {
    /// The mask input's name, if given.
    pub mask: Option<String>,
}

/// The name of the token symbol: `tokens`, or `tokens_N` if an input symbol has that name.
fn token_symbol(graph: &Graph) -> Arc<str> {
    let taken = graph.input_symbols();
    let mut name = "tokens".to_string();
    let mut k = 1;
    while taken.iter().any(|s| **s == *name) {
        name = format!("tokens_{k}");
        k += 1;
    }
    name.into()
}

fn node_name(graph: &Graph, id: NodeId) -> String {
    match &graph.node(id).origin {
        Some(o) => format!("`{o}` (%{})", id.index()),
        None => format!("%{}", id.index()),
    }
}

fn input_name(graph: &Graph, id: NodeId) -> Option<&str> {
    match graph.op(id) {
        Op::Input { name } => Some(name),
        _ => None,
    }
}

/// The mask input: `wanted`, or the one input every attention softmax adds as a key-padding
/// mask; an error naming the softmax whose mask is not one.
pub fn find_mask(graph: &Graph, wanted: Option<&str>) -> Result<NodeId> {
    let fail = |why: String| Err(Error::Padding { why });
    let candidates = key_mask::mask_candidates(graph);
    let named = match wanted {
        Some(name) => {
            let Some(&id) = graph
                .inputs()
                .iter()
                .find(|&&i| input_name(graph, i) == Some(name))
            else {
                let names: Vec<&str> = graph
                    .inputs()
                    .iter()
                    .filter_map(|&i| input_name(graph, i))
                    .collect();
                return fail(format!(
                    "the model has no input `{name}` (its inputs: {})",
                    names.join(", ")
                ));
            };
            if !candidates.contains(&id) {
                return fail(format!(
                    "the input `{name}` ({}) is not a mask of the first input's [batch, seq] \
                     dims of bool or integer type",
                    graph.ty(id)
                ));
            }
            Some(id)
        }
        None => None,
    };
    let masks = named.map_or(candidates.clone(), |id| vec![id]);
    let facts = key_mask::analyse(graph, &masks);
    let mut found: Option<&str> = None;
    let mut softmaxes = 0;
    for id in graph.topo_order() {
        let Op::Softmax { axis } = graph.op(id) else {
            continue;
        };
        let ty = graph.ty(id);
        // Attention-like: over the keys of a [batch, .., seq] mask's sequence, scores of rank
        // 3 or more.
        let keys = &ty.shape.dims()[*axis];
        let over_seq = masks
            .iter()
            .any(|&m| graph.ty(m).shape.dims().get(1) == Some(keys));
        if ty.rank() < 3 || *axis + 1 != ty.rank() || !over_seq {
            continue;
        }
        softmaxes += 1;
        let x = graph.operands(id)[0];
        let recognised = match graph.op(x) {
            Op::Binary(BinaryOp::Add) => graph.operands(x).iter().find_map(|o| {
                facts
                    .get(o)
                    .and_then(|f| key_mask::additive_key_mask(f, ty.rank()))
            }),
            _ => None,
        };
        match (recognised, found) {
            (Some(m), None) => found = Some(m),
            (Some(m), Some(f)) if m == f => {}
            (Some(m), Some(f)) => {
                return fail(format!(
                    "the softmax {} masks its keys by `{m}`, another by `{f}`: one mask input \
                     must pad every attention",
                    node_name(graph, id)
                ))
            }
            (None, _) => {
                return fail(format!(
                    "the softmax {} over {keys} keys does not add a key-padding mask of {}: \
                     its mask (causal, 2-D or none) lets padded tokens change real ones, so \
                     removing them would change the results",
                    node_name(graph, id),
                    match named {
                        Some(id) => format!("`{}`", input_name(graph, id).unwrap_or("?")),
                        None => "any input".to_string(),
                    }
                ))
            }
        }
    }
    let Some(name) = found else {
        return fail(if softmaxes == 0 {
            "the model has no attention softmax over a masked sequence: nothing to pack".to_string()
        } else {
            "no input [batch, seq] is a key-padding mask of its attention".to_string()
        });
    };
    Ok(graph
        .inputs()
        .iter()
        .copied()
        .find(|&i| input_name(graph, i) == Some(name))
        .expect("the facts name an input of the graph"))
}

impl Pass for RemovePadding {
    fn name(&self) -> &'static str {
        "remove-padding"
    }

    fn description(&self) -> &'static str {
        "outputs o of [batch, seq, ..] become unpack(pack(o, mask), mask) (zeros at padded \
         positions), for the optimiser to run token-wise ops on real tokens only"
    }

    fn run(&self, graph: &mut Graph) -> Result<bool> {
        let m = find_mask(graph, self.mask.as_deref())?;
        let lead: Vec<tcc_ir::Dim> = graph.ty(m).shape.dims().to_vec();
        let tokens = token_symbol(graph);
        let mut changed = false;
        for (k, (name, o)) in graph.outputs().to_vec().into_iter().enumerate() {
            let dims = graph.ty(o).shape.dims();
            if dims.len() < 2 || dims[..2] != lead[..] {
                // Not token-wise (a pooler's [batch, hidden], a classifier's logits): it reads
                // the encoder's rows across the sequence, which may be padded ones (left
                // padding), so the padded tokens would still have to be computed.
                return Err(Error::Padding {
                    why: format!(
                        "the output `{name}` ({}) is not one row per token of the mask's \
                         [batch, seq]: it reads across the sequence, padded positions \
                         included, so they would still have to be computed (drop the output, \
                         or compile without --remove-padding)",
                        graph.ty(o)
                    ),
                });
            }
            let p = graph.add(
                Op::Pack {
                    tokens: tokens.clone(),
                },
                &[o, m],
            )?;
            let u = graph.add(Op::Unpack, &[p, m])?;
            graph.set_output(k, u);
            changed = true;
        }
        if !changed {
            return Err(Error::Padding {
                why: "no output has the mask's [batch, seq] dims first".into(),
            });
        }
        Ok(true)
    }
}

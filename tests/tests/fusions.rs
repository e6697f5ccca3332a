//! Guards on what the optimiser fuses, as tight as the truth:
//!
//! - every shared and zoo model's count of each fused op (and of the core ops that fusions
//!   remove) is a snapshot: a model that loses a fusion it has now fails here, and one that
//!   gains one shows as a diff to accept;
//! - minilm-l6's optimised IR has no `softmax`, `erf` or bare `matmul` outside fused ops and
//!   at most 80 nodes other than constants, inputs and views.

use std::collections::BTreeMap;
use tcc_ir::{Graph, Op};
use tcc_tests::{discover_models, discover_zoo, import_and_optimise, model_dir};

/// Nodes per op name, for the ops that fusion is about (causal attention on its own).
fn counts(graph: &Graph) -> BTreeMap<&'static str, usize> {
    let watched = [
        "gemm",
        "qgemm",
        "matmul_integer",
        "attention",
        "add_layer_norm",
        "rms_norm",
        "layer_norm",
        "fused",
        "matmul",
        "softmax",
        "erf",
        "tanh",
        "transpose",
    ];
    let mut m = BTreeMap::new();
    for id in graph.node_ids() {
        let op = graph.op(id);
        if let Op::Attention { causal: true, .. } = op {
            *m.entry("attention(causal)").or_insert(0) += 1;
        } else if watched.contains(&op.name()) {
            *m.entry(op.name()).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn fused_ops_per_model() {
    let mut all = discover_models();
    all.extend(discover_zoo());
    let mut table = String::new();
    for model in &all {
        let g = import_and_optimise(model).unwrap_or_else(|e| panic!("{e}"));
        let c: Vec<String> = counts(&g).iter().map(|(k, v)| format!("{k}={v}")).collect();
        table.push_str(&format!("{:<22} {}\n", model.name, c.join(" ")));
    }
    insta::assert_snapshot!(table);
}

#[test]
fn minilm_is_fused_into_at_most_80_kernels() {
    let g = import_and_optimise(&model_dir("minilm-l6")).unwrap_or_else(|e| panic!("{e}"));
    let mut kernels = 0;
    for id in g.node_ids() {
        let op = g.op(id);
        assert!(
            !matches!(op.name(), "softmax" | "erf" | "matmul"),
            "minilm-l6 keeps a bare `{}` (node {})",
            op.name(),
            id.index()
        );
        if !matches!(
            op,
            Op::Const(_) | Op::Input { .. } | Op::Reshape { .. } | Op::Dims { .. }
        ) {
            kernels += 1;
        }
    }
    assert!(
        kernels <= 80,
        "minilm-l6 has {kernels} nodes besides constants, inputs and views"
    );
}

/// linear-attn is written in the `n x n` form; at the default hint (seq = 128, longer than
/// its heads of 64) the optimiser reassociates it KV-first: no tensor of the optimised graph
/// is `seq x seq`.
#[test]
fn linear_attention_is_kv_first() {
    let g = import_and_optimise(&model_dir("linear-attn")).unwrap_or_else(|e| panic!("{e}"));
    for id in g.node_ids() {
        let dims = g.ty(id).shape.dims();
        let r = dims.len();
        assert!(
            r < 2 || !(dims[r - 2] == dims[r - 1] && dims[r - 1].to_string() == "seq"),
            "linear-attn keeps an n x n tensor: node {} ({}) is {}",
            id.index(),
            g.op(id).name(),
            g.ty(id)
        );
    }
}

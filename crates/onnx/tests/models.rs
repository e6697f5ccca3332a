//! Imports every shared model and checks its interface (input and output
//! names and types, as each model's MODEL.md describes them) and that the
//! shape arithmetic the exporters wrote was folded away.

mod common;

use common::shared;
use std::collections::HashSet;
use tcc_ir::{Graph, Op};

/// `(name, type)` of every graph input.
fn inputs(g: &Graph) -> Vec<(String, String)> {
    g.inputs()
        .iter()
        .map(|&i| match g.op(i) {
            Op::Input { name } => (name.clone(), g.ty(i).to_string()),
            other => panic!("input node is {other:?}"),
        })
        .collect()
}

/// `(name, type)` of every graph output.
fn outputs(g: &Graph) -> Vec<(String, String)> {
    g.outputs()
        .iter()
        .map(|(n, o)| (n.clone(), g.ty(*o).to_string()))
        .collect()
}

fn import(name: &str) -> Graph {
    let path = shared().join("models").join(name).join("model.onnx");
    match tcc_onnx::import_file(&path) {
        Ok(g) => g,
        Err(e) => panic!("importing {}: {e}", path.display()),
    }
}

/// Checks what every imported model must satisfy: the verifier accepts it,
/// no `shape` op is left (the folded `Shape` chains are dead and removed),
/// and every symbol in a reshape, expand, tile, slice or range comes from the
/// inputs' shapes: no shape is computed from data.
fn check_folded(name: &str, g: &Graph) {
    if let Err(e) = tcc_ir::verify::verify(g) {
        panic!("{name}: the verifier rejects the import: {e}");
    }
    let syms: HashSet<String> = g.input_symbols().iter().map(|s| s.to_string()).collect();
    for id in g.node_ids() {
        let op = g.op(id);
        assert!(
            !matches!(op, Op::ShapeOf { .. }),
            "{name}: a `shape` op survived import at node {} ({:?})",
            id.index(),
            g.node(id).origin
        );
        let dims: Vec<tcc_ir::Dim> = match op {
            Op::Reshape { shape } | Op::Expand { shape } => shape.0.clone(),
            Op::Tile { repeats } => repeats.clone(),
            Op::Slice { starts, ends, .. } => starts.iter().chain(ends).cloned().collect(),
            Op::Range { start, limit, .. } => vec![start.clone(), limit.clone()],
            _ => continue,
        };
        for d in dims {
            for s in d.symbols() {
                assert!(
                    syms.contains(&*s),
                    "{name}: {} at {:?} uses `{s}`, which no input shape defines",
                    op.name(),
                    g.node(id).origin
                );
            }
        }
    }
}

fn bert_inputs() -> Vec<(String, String)> {
    ["input_ids", "attention_mask", "token_type_ids"]
        .iter()
        .map(|n| (n.to_string(), "i64[batch, seq]".to_string()))
        .collect()
}

#[test]
fn minilm_l6_imports_with_symbolic_batch_and_seq() {
    let g = import("minilm-l6");
    assert_eq!(inputs(&g), bert_inputs());
    assert_eq!(
        outputs(&g),
        vec![(
            "last_hidden_state".to_string(),
            "f32[batch, seq, 384]".to_string()
        )]
    );
    check_folded("minilm-l6", &g);
    // Six layers of attention: twelve batched matmuls of rank 4 (scores and
    // context), and the projections.
    let attn = g
        .node_ids()
        .into_iter()
        .filter(|&i| matches!(g.op(i), Op::MatMul) && g.ty(i).rank() == 4)
        .count();
    assert_eq!(attn, 12, "attention matmuls in minilm-l6");
}

#[test]
fn bert_tiny_imports() {
    let g = import("bert-tiny");
    assert_eq!(inputs(&g), bert_inputs());
    assert_eq!(
        outputs(&g),
        vec![(
            "last_hidden_state".to_string(),
            "f32[batch, seq, 128]".to_string()
        )]
    );
    check_folded("bert-tiny", &g);
    // The heads are split by a reshape to [batch, seq, 2, 64] (2 heads of 64).
    let split_heads = g.node_ids().into_iter().any(
        |i| matches!(g.op(i), Op::Reshape { shape } if shape.to_string() == "[batch, seq, 2, 64]"),
    );
    assert!(
        split_heads,
        "no reshape to [batch, seq, 2, 64] in bert-tiny"
    );
}

/// Named constants with their values, sorted by name.
fn named_consts(g: &Graph) -> Vec<(String, std::sync::Arc<tcc_ir::Tensor>)> {
    let mut v: Vec<_> = g
        .node_ids()
        .into_iter()
        .filter_map(|i| match g.op(i) {
            Op::Const(c) => c.name.clone().map(|n| (n, c.value.clone())),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn bert_tiny_extdata_reads_the_same_weights_from_its_data_file() {
    let inline = import("bert-tiny");
    let ext = import("bert-tiny-extdata");
    assert_eq!(inputs(&ext), inputs(&inline));
    assert_eq!(outputs(&ext), outputs(&inline));
    check_folded("bert-tiny-extdata", &ext);
    let (a, b) = (named_consts(&inline), named_consts(&ext));
    assert!(
        a.len() > 10,
        "bert-tiny has only {} named constants",
        a.len()
    );
    assert_eq!(
        a.iter().map(|x| &x.0).collect::<Vec<_>>(),
        b.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "constant `{name}` differs between the two files");
    }
}

#[test]
fn bert_tiny_int8_lowers_the_quantisation_ops() {
    let g = import("bert-tiny-int8");
    assert_eq!(inputs(&g), bert_inputs());
    assert_eq!(
        outputs(&g),
        vec![(
            "last_hidden_state".to_string(),
            "f32[batch, seq, 128]".to_string()
        )]
    );
    check_folded("bert-tiny-int8", &g);
    // MatMulInteger of u8 activations by i8 weights keeps ONNX Runtime's x86
    // pair saturation by default; DynamicQuantizeLinear casts to u8.
    let int8_matmuls = g
        .node_ids()
        .into_iter()
        .filter(|&i| {
            matches!(
                g.op(i),
                Op::MatMulInteger {
                    saturate_pairs: true
                }
            )
        })
        .count();
    assert_eq!(int8_matmuls, 12, "2 layers of 6 quantised projections");
    let exact = tcc_onnx::import_file_with(
        &shared().join("models/bert-tiny-int8/model.onnx"),
        &tcc_onnx::ImportOptions {
            int8_matmul: tcc_onnx::Int8MatMul::Exact,
        },
    )
    .expect("bert-tiny-int8 imports with exact int8 arithmetic");
    assert_eq!(
        exact
            .node_ids()
            .into_iter()
            .filter(|&i| matches!(
                exact.op(i),
                Op::MatMulInteger {
                    saturate_pairs: false
                }
            ))
            .count(),
        12
    );
    assert!(g.node_ids().into_iter().any(|i| matches!(
        g.op(i),
        Op::Cast {
            to: tcc_ir::DType::U8
        }
    )));
}

#[test]
fn gpt2_tiny_imports() {
    let g = import("gpt2-tiny");
    assert_eq!(
        inputs(&g),
        vec![("input_ids".to_string(), "i64[batch, seq]".to_string())]
    );
    assert_eq!(
        outputs(&g),
        vec![("logits".to_string(), "f32[batch, seq, 2048]".to_string())]
    );
    check_folded("gpt2-tiny", &g);
}

#[test]
fn linear_attn_imports() {
    let g = import("linear-attn");
    assert_eq!(
        inputs(&g),
        vec![("input_ids".to_string(), "i64[batch, seq]".to_string())]
    );
    assert_eq!(
        outputs(&g),
        vec![("hidden".to_string(), "f32[batch, seq, 256]".to_string())]
    );
    check_folded("linear-attn", &g);
    // phi(Q) phi(K)^T is formed as written: an n x n matmul per head.
    let nxn = g
        .node_ids()
        .into_iter()
        .any(|i| matches!(g.op(i), Op::MatMul) && g.ty(i).to_string() == "f32[batch, 4, seq, seq]");
    assert!(nxn, "no [batch, 4, seq, seq] matmul in linear-attn");
}

#[test]
fn every_shared_model_imports() {
    let dir = shared().join("models");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("cannot list ../shared/models")
        .flatten()
        .filter(|e| e.path().join("model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() >= 6,
        "expected at least 6 shared models, found {names:?}"
    );
    for n in names {
        let g = import(&n);
        check_folded(&n, &g);
    }
}

//! Tests of the pass manager: names, disabling, dumps, verification, reports.

use std::io::Write;
use std::sync::{Arc, Mutex};
use tcc_ir::{text, DType, Graph, Shape, TensorType};
use tcc_passes::{
    pass_names, DeadCode, Error, FoldShapes, Pass, PassManager, Result, Simplify, Stage,
};

/// A graph with a shape chain to fold, a no-op to simplify and dead code, but
/// nothing for `fold-constants` to evaluate.
const INPUT: &str = "graph(%x: f32[batch, 8]) {
  %0 = shape<start=0, end=2>(%x) : i64[2]
  %1 = reshape<shape=[batch, 8]>(%x) : f32[batch, 8]
  %2 = neg(%1) : f32[batch, 8]
  %3 = exp(%x) : f32[batch, 8]
  return %y = %2
  return %s = %0
}";

fn graph() -> Graph {
    text::parse(INPUT, &|_| None).unwrap()
}

/// A shared buffer to dump into.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Breaks the graph on purpose: changes a node's stored type.
struct BreakTypes;

impl Pass for BreakTypes {
    fn name(&self) -> &'static str {
        "break-types"
    }
    fn description(&self) -> &'static str {
        "changes the type of the first output's node, for tests"
    }
    fn run(&self, graph: &mut Graph) -> Result<bool> {
        let id = graph.outputs()[0].1;
        graph.petgraph_mut()[id].ty = TensorType::new(DType::F64, Shape::fixed(&[3]));
        Ok(true)
    }
}

/// Fails on purpose.
struct Fails;

impl Pass for Fails {
    fn name(&self) -> &'static str {
        "fails"
    }
    fn description(&self) -> &'static str {
        "returns an error, for tests"
    }
    fn run(&self, _: &mut Graph) -> Result<bool> {
        Err(Error::UnknownPass {
            name: "inner".into(),
            valid: vec![],
        })
    }
}

#[test]
fn the_default_pipeline_is_the_documented_one() {
    let pm = PassManager::default_pipeline();
    assert_eq!(
        pm.names(),
        [
            "fold-shapes",
            "fold-constants",
            "simplify",
            "dead-code",
            "egraph",
            "fuse-elementwise"
        ]
    );
    // Every pass has a unique kebab-case name and a description.
    let names = pass_names();
    for (i, n) in names.iter().enumerate() {
        assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{n}");
        assert!(!names[..i].contains(n), "{n} twice");
    }
    for p in tcc_passes::all_passes() {
        assert!(!p.description().is_empty());
    }
}

#[test]
fn unknown_pass_names_list_the_valid_ones() {
    let err = PassManager::with_passes(&["simplify", "fold-everything"]).unwrap_err();
    match &err {
        Error::UnknownPass { name, valid } => {
            assert_eq!(name, "fold-everything");
            assert_eq!(*valid, pass_names());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "unknown pass `fold-everything`; valid passes are: \
         fold-shapes, fold-constants, simplify, dead-code, quantize, remove-padding, egraph, \
         fuse-elementwise"
    );

    // In disable and dump lists, the valid names are this pipeline's.
    let mut pm = PassManager::with_passes(&["simplify", "dead-code"]).unwrap();
    let err = pm.disable("fold-shapes").unwrap_err();
    assert!(
        matches!(&err, Error::UnknownPass { valid, .. } if *valid == ["simplify", "dead-code"]),
        "{err:?}"
    );
    let err = pm.dump_after("dead_code").unwrap_err();
    assert!(
        err.to_string()
            .contains("valid passes are: simplify, dead-code"),
        "{err}"
    );
}

#[test]
fn with_passes_runs_the_named_passes_in_order() {
    let mut pm = PassManager::with_passes(&["dead-code", "simplify", "dead-code"]).unwrap();
    let mut g = graph();
    let report = pm.run(&mut g).unwrap();
    let ran: Vec<_> = report.passes.iter().map(|p| (p.name, p.changed)).collect();
    assert_eq!(
        ran,
        [("dead-code", true), ("simplify", true), ("dead-code", true)]
    );
    // x, shape, neg are left: exp went first, then the reshape.
    assert_eq!(report.passes[0].nodes_after, 4);
    assert_eq!(report.passes[2].nodes_after, 3);
    assert_eq!(g.node_count(), 3);
}

#[test]
fn the_default_pipeline_cleans_up() {
    let mut g = graph();
    let report = PassManager::default_pipeline().run(&mut g).unwrap();
    assert!(report.changed());
    assert_eq!(
        text::print(&g),
        "graph(%x: f32[batch, 8]) {
  %0 = neg(%x) : f32[batch, 8]
  %1 = dims<dtype=i64, shape=[2], values=[batch, 8]> : i64[2]
  return %y = %0
  return %s = %1
}
"
    );
    let shown = report.to_string();
    assert_eq!(shown.lines().count(), 6, "{shown}");
    assert!(shown.starts_with("fold-shapes      changed"), "{shown}");
}

#[test]
fn disabled_passes_do_not_run() {
    let mut g = graph();
    let mut pm = PassManager::default_pipeline();
    pm.disable("dead-code")
        .unwrap()
        .disable("fold-shapes")
        .unwrap()
        .disable("egraph")
        .unwrap();
    let report = pm.run(&mut g).unwrap();
    let ran: Vec<_> = report.passes.iter().map(|p| p.name).collect();
    assert_eq!(ran, ["fold-constants", "simplify", "fuse-elementwise"]);
    // Nothing was removed and the shape node was not folded.
    assert_eq!(g.node_count(), 5);
    assert!(text::print(&g).contains("shape<start=0, end=2>(%x)"));
}

#[test]
fn dumps_are_collected_in_the_report() {
    let mut g = graph();
    let mut pm = PassManager::default_pipeline();
    pm.dump_after("simplify").unwrap();
    let report = pm.run(&mut g).unwrap();
    let dumps: Vec<_> = report.dumps.iter().map(|d| (d.pass, d.stage)).collect();
    assert_eq!(
        dumps,
        [("simplify", Stage::Before), ("simplify", Stage::After)]
    );
    assert!(report.dumps[0].text.contains("reshape"));
    assert!(report.dumps[1].text.contains("neg(%x)"));
    // A dump is the text form: it parses back.
    for d in &report.dumps {
        text::parse(&d.text, &|_| None).unwrap();
    }
}

#[test]
fn dumps_go_to_the_writer() {
    let buf = Buffer::default();
    let mut g = graph();
    let mut pm = PassManager::default_pipeline();
    pm.dump_after("fold-shapes")
        .unwrap()
        .dump_after("dead-code")
        .unwrap()
        .dump_to(Box::new(buf.clone()));
    let report = pm.run(&mut g).unwrap();
    assert!(report.dumps.is_empty());
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let headers: Vec<&str> = out.lines().filter(|l| l.starts_with("# ")).collect();
    assert_eq!(
        headers,
        [
            "# before fold-shapes",
            "# after fold-shapes",
            "# before dead-code",
            "# after dead-code"
        ]
    );
    // The last dump is the final graph, and comments aside it parses.
    let last = out.rsplit("# after dead-code\n").next().unwrap();
    assert_eq!(last.trim_end(), text::print(&g).trim_end());
}

#[test]
fn the_verifier_catches_a_pass_that_breaks_the_graph() {
    let passes: Vec<Box<dyn Pass>> =
        vec![Box::new(Simplify), Box::new(BreakTypes), Box::new(DeadCode)];
    let mut pm = PassManager::new(passes);
    pm.verify(true);
    let mut g = graph();
    let err = pm.run(&mut g).unwrap_err();
    match &err {
        Error::BrokenBy { pass, error } => {
            assert_eq!(*pass, "break-types");
            assert!(error.to_string().contains("has type f64[3]"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("the graph is invalid after pass `break-types`"));

    // With verification off the broken graph goes through unnoticed.
    let passes: Vec<Box<dyn Pass>> = vec![Box::new(BreakTypes)];
    let mut pm = PassManager::new(passes);
    pm.verify(false);
    assert!(pm.run(&mut graph()).is_ok());
}

#[test]
fn verification_is_on_by_default() {
    let passes: Vec<Box<dyn Pass>> = vec![Box::new(BreakTypes)];
    let err = PassManager::new(passes).run(&mut graph()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BrokenBy {
                pass: "break-types",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_broken_input_is_blamed_on_the_input() {
    let mut g = graph();
    BreakTypes.run(&mut g).unwrap();
    let passes: Vec<Box<dyn Pass>> = vec![Box::new(FoldShapes)];
    let err = PassManager::new(passes).run(&mut g).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

#[test]
fn a_failing_pass_is_named() {
    let passes: Vec<Box<dyn Pass>> = vec![Box::new(DeadCode), Box::new(Fails)];
    let err = PassManager::new(passes).run(&mut graph()).unwrap_err();
    assert!(
        matches!(err, Error::PassFailed { pass: "fails", .. }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("pass `fails` failed: unknown pass `inner`"));
}

#[test]
fn the_report_counts_nodes_after_every_pass() {
    let mut g = graph();
    let report = PassManager::default_pipeline().run(&mut g).unwrap();
    let counts: Vec<_> = report.passes.iter().map(|p| p.nodes_after).collect();
    // Nothing is removed before dead-code, which leaves x, neg and dims.
    assert_eq!(counts, [5, 5, 5, 3, 3, 3]);
    assert_eq!(g.node_count(), 3);
}

#[test]
fn the_pipeline_folds_an_attention_scale() {
    // `1 / sqrt(head_dim)` as exporters write it, from the shape of the input.
    let mut g = text::parse(
        "graph(%q: f32[batch, seq, 64]) {
  %0 = shape<start=2, end=3>(%q) : i64[1]
  %1 = cast<to=f32>(%0) : f32[1]
  %2 = sqrt(%1) : f32[1]
  %3 = div(%q, %2) : f32[batch, seq, 64]
  return %y = %3
}",
        &|_| None,
    )
    .unwrap();
    PassManager::default_pipeline().run(&mut g).unwrap();
    assert_eq!(
        text::print(&g),
        "graph(%q: f32[batch, seq, 64]) {
  %0 = const [8.0] : f32[1]
  %1 = div(%q, %0) : f32[batch, seq, 64]
  return %y = %1
}
"
    );
}

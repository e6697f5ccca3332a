//! The pass-pipeline flags that `interpret` and `compile` share, and the code
//! that hands them to the pass manager.

use anyhow::{Context, Result};
use clap::builder::PossibleValuesParser;
use tcc_codegen::lower::Dispatch;
use tcc_ir::Graph;
use tcc_passes::{egraph, PassManager};

/// How to run the default pass pipeline.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PipelineArgs {
    /// Skip the pass pipeline and use the graph as imported.
    #[arg(long)]
    pub no_opt: bool,

    /// Print the IR to stderr before and after the pass PASS (repeatable).
    #[arg(long, value_name = "PASS", value_parser = PossibleValuesParser::new(tcc_passes::pass_names()))]
    pub dump_after: Vec<String>,

    /// Leave the pass PASS out of the pipeline (repeatable).
    #[arg(long, value_name = "PASS", value_parser = PossibleValuesParser::new(tcc_passes::pass_names()))]
    pub disable_pass: Vec<String>,

    /// Print how long each pass took, and what it changed, to stderr.
    #[arg(long)]
    pub time_passes: bool,

    /// Print what the e-graph optimiser did to stderr: each rule that fired and how often,
    /// the e-graph's size per iteration, why saturation stopped, and the cost model's
    /// estimate before and after. The last line is `tcc explain: rules=R iterations=I
    /// enodes=N eclasses=C time=T ms cost_before=X cost_after=Y` (costs in µs).
    #[arg(long)]
    pub explain: bool,

    /// Symbol sizes the cost model assumes when it chooses between forms, such as
    /// `seq=4096` (default: batch=1,seq=128; other symbols count as 128).
    #[arg(long, value_name = "SYM=N,...")]
    pub hint: Option<String>,

    /// Padding elimination: run token-wise work on the real tokens of a padded batch only.
    /// The key-padding mask input is found (the `attention_mask` of torch exports, traced
    /// through how the model builds its additive mask), or named: `--remove-padding=NAME`.
    /// Outputs at padded positions become 0. A model where a padded token could change a
    /// real one (a causal or 2-D attention mask) is refused.
    #[arg(long, value_name = "MASK", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub remove_padding: Option<String>,

    /// Leave out the rewrite rules that may change rounding (those RULES.md tags
    /// reassociating: another association of a GELU, the decomposed layer norm recognised,
    /// ...): every rewrite is then exact.
    #[arg(long)]
    pub no_reassociate: bool,

    /// Quantise the matrix products by constant weights to int8 (`int8`, the only kind):
    /// weights per output channel, symmetric; activations per row (token), asymmetric,
    /// quantised at run time; exact i32 products (VNNI where the CPU has it). Changes the
    /// results: give --calibrate to keep the products that cost the most accuracy in f32.
    #[arg(long, value_name = "KIND", value_parser = PossibleValuesParser::new(["int8"]))]
    pub quantize: Option<String>,

    /// The accuracy gate of --quantize: inputs (an npz archive keyed by input name, such as
    /// a batch of real sentences) on which the quantised model's outputs must keep a cosine
    /// similarity of at least --min-cosine with the f32 model's (an encoder's
    /// `[batch, seq, hidden]` output mean-pooled over its attention mask, as sentence
    /// embeddings are; other outputs per batch row). The fewest products needed stay f32;
    /// the report says which, and the cosine reached.
    #[arg(long, value_name = "CASES.npz", requires = "quantize")]
    pub calibrate: Option<std::path::PathBuf>,

    /// The bar of the accuracy gate (with --calibrate; default 0.995).
    #[arg(long, value_name = "COS", requires = "calibrate")]
    pub min_cosine: Option<f64>,
}

/// Runs the default pipeline on `graph` as `args` say; dumps and the timing
/// report go to stderr.
pub fn optimize(graph: &mut Graph, args: &PipelineArgs) -> Result<()> {
    if args.no_opt {
        return Ok(());
    }
    run_pipeline(graph, args, &config(args)?, true)?;
    Ok(())
}

/// The forms of a model that a library holds: one, or one per range of a symbol's values
/// where the cost model prefers other forms (linear attention's `n x n` and KV-first forms
/// by `seq`), with the dispatch that picks one per call.
pub struct Forms {
    /// The optimised graphs, by increasing sizes.
    pub graphs: Vec<Graph>,
    /// How a run picks a graph, when there are several.
    pub dispatch: Option<Dispatch>,
    /// The graph optimised at the hinted sizes (the one `--emit ir` prints).
    pub main: usize,
}

/// Runs the default pipeline as [`optimize`] does and, where the optimiser reports that its
/// choice depends on a symbol's value ([`tcc_passes::egraph::plan_forms`]), again for each
/// other range of that symbol, at the value of the range nearest the hint: the library then
/// holds each form and picks one per call. Forms that come out equal are merged. With
/// `one_form`, only the hinted sizes' form.
pub fn optimize_forms(graph: Graph, args: &PipelineArgs, one_form: bool) -> Result<Forms> {
    let single = |g: Graph| Forms {
        graphs: vec![g],
        dispatch: None,
        main: 0,
    };
    if args.no_opt {
        return Ok(single(graph));
    }
    let config = config(args)?;
    let imported = graph.clone();
    let mut main = graph;
    let explanation = run_pipeline(&mut main, args, &config, true)?;
    let plan = explanation.and_then(|e| egraph::plan_forms(&e.crossovers));
    let Some(plan) = plan.filter(|_| !one_form) else {
        return Ok(single(main));
    };
    let main_text = tcc_ir::text::print(&main);
    // (graph, its IR text, the value it was optimised at)
    let mut forms: Vec<(Graph, String, i64)> = Vec::new();
    let mut bounds = Vec::new();
    for (k, &at) in plan.at.iter().enumerate() {
        let mut other = config.clone();
        other.cost.hints.insert(plan.symbol.clone(), at);
        let mut graph = imported.clone();
        run_pipeline(&mut graph, args, &other, false)?;
        let text = tcc_ir::text::print(&graph);
        match forms.last_mut() {
            // The same graph as the range below: one form for both.
            Some(last) if last.1 == text => {}
            _ => {
                if k > 0 {
                    bounds.push(plan.bounds[k - 1]);
                }
                forms.push((graph, text, at));
            }
        }
    }
    if forms.len() == 1 {
        return Ok(single(main));
    }
    // The form `--emit ir` would show: the hinted sizes', else the one whose range holds them.
    let hint = *config
        .cost
        .hints
        .get(&plan.symbol)
        .unwrap_or(&config.cost.default_dim);
    let main_index = forms
        .iter()
        .position(|f| f.1 == main_text)
        .unwrap_or_else(|| bounds.iter().take_while(|&&b| hint >= b).count());
    let notes = forms
        .iter()
        .map(|f| {
            format!(
                "the forms the cost model picks at {} = {}",
                plan.symbol, f.2
            )
        })
        .collect();
    Ok(Forms {
        main: main_index,
        dispatch: Some(Dispatch {
            symbol: plan.symbol,
            bounds,
            notes,
        }),
        graphs: forms.into_iter().map(|f| f.0).collect(),
    })
}

/// The optimiser's settings from the flags.
fn config(args: &PipelineArgs) -> Result<egraph::Config> {
    let mut config = egraph::Config {
        reassociate: !args.no_reassociate,
        // Cheap (extractions of the saturated e-graph): the forms of a library need it.
        sweep: true,
        remove_padding: args
            .remove_padding
            .as_ref()
            .map(|m| tcc_passes::RemovePadding {
                mask: (!m.is_empty()).then(|| m.clone()),
            }),
        quantize: quantize(args)?,
        ..Default::default()
    };
    if let Some(hint) = &args.hint {
        for (k, v) in crate::compile::parse_sizes(hint, "--hint")? {
            config.cost.hints.insert(k, v);
        }
    }
    Ok(config)
}

/// The quantisation pass the flags ask for, with its accuracy gate.
fn quantize(args: &PipelineArgs) -> Result<Option<tcc_passes::Quantize>> {
    if args.quantize.is_none() {
        return Ok(None);
    }
    let gate = match &args.calibrate {
        None => None,
        Some(path) => {
            let min_cosine = args.min_cosine.unwrap_or(0.995);
            if !(-1.0..=1.0).contains(&min_cosine) {
                anyhow::bail!("--min-cosine must be between -1 and 1, not {min_cosine}");
            }
            let arrays = crate::files::read_npz(path, "the calibration inputs (--calibrate)")?;
            Some(tcc_passes::quantize::Gate {
                min_cosine,
                cases: vec![arrays.into_iter().collect()],
            })
        }
    };
    Ok(Some(tcc_passes::Quantize {
        gate,
        ..Default::default()
    }))
}

/// Runs the pipeline with `config`; with `report`, the dumps, `--explain` and the timing
/// report go to stderr as `args` ask. Returns the optimiser's explanation.
fn run_pipeline(
    graph: &mut Graph,
    args: &PipelineArgs,
    config: &egraph::Config,
    report: bool,
) -> Result<Option<egraph::Explanation>> {
    let (mut pm, explanation) = PassManager::with_optimiser(config.clone());
    for name in &args.disable_pass {
        pm.disable(name)
            .with_context(|| format!("cannot disable pass `{name}`"))?;
    }
    if report {
        for name in &args.dump_after {
            pm.dump_after(name)
                .with_context(|| format!("cannot dump after pass `{name}`"))?;
        }
    }
    let run = pm.run(graph).context("the pass pipeline failed")?;
    let explanation = explanation.lock().ok().and_then(|e| e.clone());
    if !report {
        return Ok(explanation);
    }
    for dump in &run.dumps {
        eprintln!("# {} {}\n{}", dump.stage, dump.pass, dump.text);
    }
    if let Some(q) = &config.quantize {
        if let Some(report) = q.last.lock().ok().and_then(|r| r.clone()) {
            eprint!("{report}");
        }
    }
    if args.explain {
        match &explanation {
            Some(e) => eprintln!("{e}"),
            None => eprintln!("tcc explain: the egraph pass did not run"),
        }
    }
    if args.time_passes {
        eprint!("{run}");
        eprintln!(
            "{:<16} {:>35.3} ms",
            "total",
            run.total_duration().as_secs_f64() * 1e3
        );
    }
    Ok(explanation)
}

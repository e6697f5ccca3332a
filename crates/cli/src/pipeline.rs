//! The pass-pipeline flags that `interpret` and `compile` share, and the code
//! that hands them to the pass manager.

use anyhow::{Context, Result};
use clap::builder::PossibleValuesParser;
use tcc_ir::Graph;
use tcc_passes::PassManager;

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

    /// Leave out the rewrite rules that may change rounding (those RULES.md tags
    /// reassociating: another association of a GELU, the decomposed layer norm recognised,
    /// ...): every rewrite is then exact.
    #[arg(long)]
    pub no_reassociate: bool,
}

/// Runs the default pipeline on `graph` as `args` say; dumps and the timing
/// report go to stderr.
pub fn optimize(graph: &mut Graph, args: &PipelineArgs) -> Result<()> {
    if args.no_opt {
        return Ok(());
    }
    let mut config = tcc_passes::egraph::Config {
        reassociate: !args.no_reassociate,
        sweep: args.explain,
        ..Default::default()
    };
    if let Some(hint) = &args.hint {
        for (k, v) in crate::compile::parse_sizes(hint, "--hint")? {
            config.cost.hints.insert(k, v);
        }
    }
    let (mut pm, explanation) = PassManager::with_optimiser(config);
    for name in &args.disable_pass {
        pm.disable(name)
            .with_context(|| format!("cannot disable pass `{name}`"))?;
    }
    for name in &args.dump_after {
        pm.dump_after(name)
            .with_context(|| format!("cannot dump after pass `{name}`"))?;
    }
    let report = pm.run(graph).context("the pass pipeline failed")?;
    for dump in &report.dumps {
        eprintln!("# {} {}\n{}", dump.stage, dump.pass, dump.text);
    }
    if args.explain {
        match explanation.lock().ok().and_then(|e| e.clone()) {
            Some(e) => eprintln!("{e}"),
            None => eprintln!("tcc explain: the egraph pass did not run"),
        }
    }
    if args.time_passes {
        eprint!("{report}");
        eprintln!(
            "{:<16} {:>35.3} ms",
            "total",
            report.total_duration().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

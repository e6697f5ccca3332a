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
}

/// Runs the default pipeline on `graph` as `args` say; dumps and the timing
/// report go to stderr.
pub fn optimize(graph: &mut Graph, args: &PipelineArgs) -> Result<()> {
    if args.no_opt {
        return Ok(());
    }
    let mut pm = PassManager::default_pipeline();
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

//! The pass manager: runs a pipeline, verifying, dumping and timing each pass.

use crate::error::{Error, Result};
use crate::pass::Pass;
use crate::{DeadCode, FoldConstants, FoldShapes, FuseElementwise, Simplify};
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tcc_ir::{text, verify::verify, Graph};

/// Runs passes in order. After every pass it runs the IR verifier (when
/// [`PassManager::verify`] is on, as it is by default in every build: it
/// re-infers each node, which costs little next to code generation), so a
/// pass that breaks an invariant is named at once instead of becoming wrong
/// code; it can dump the IR text
/// before and after chosen passes, skip passes by name, and times every pass.
///
/// Every name given to it is checked: an unknown one is an
/// [`Error::UnknownPass`] that lists the valid names.
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    verify: bool,
    disabled: Vec<&'static str>,
    dump: Vec<&'static str>,
    dump_to: Option<Box<dyn Write>>,
}

/// What one pass did in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassRun {
    /// The pass's name.
    pub name: &'static str,
    /// Whether it changed the graph.
    pub changed: bool,
    /// How long the pass took, not counting verification or dumps.
    pub duration: Duration,
    /// The number of nodes after the pass.
    pub nodes_after: usize,
}

/// When a dump was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Before the pass ran.
    Before,
    /// After the pass ran.
    After,
}

/// The IR text of the graph before or after one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dump {
    /// The pass's name.
    pub pass: &'static str,
    /// Before or after it.
    pub stage: Stage,
    /// The graph in the text form.
    pub text: String,
}

/// What a run of the pass manager did: one entry per pass that ran (disabled
/// passes are left out), and the dumps when no dump writer was set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The passes that ran, in order.
    pub passes: Vec<PassRun>,
    /// The dumps taken, in order, unless they went to a writer.
    pub dumps: Vec<Dump>,
}

impl Report {
    /// True if any pass changed the graph.
    pub fn changed(&self) -> bool {
        self.passes.iter().any(|p| p.changed)
    }

    /// The time taken by all passes together.
    pub fn total_duration(&self) -> Duration {
        self.passes.iter().map(|p| p.duration).sum()
    }
}

impl fmt::Display for Report {
    /// One line per pass: name, changed or not, nodes after, time.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.passes {
            writeln!(
                f,
                "{:<16} {:<9} {:>7} nodes {:>10.3} ms",
                p.name,
                if p.changed { "changed" } else { "unchanged" },
                p.nodes_after,
                p.duration.as_secs_f64() * 1e3
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Before => "before",
            Stage::After => "after",
        })
    }
}

impl fmt::Debug for PassManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassManager")
            .field("passes", &self.names())
            .field("verify", &self.verify)
            .field("disabled", &self.disabled)
            .field("dump", &self.dump)
            .field("dump_to", &self.dump_to.is_some())
            .finish()
    }
}

impl PassManager {
    /// A manager running `passes` in order, with the default settings.
    pub fn new(passes: Vec<Box<dyn Pass>>) -> PassManager {
        PassManager {
            passes,
            verify: true,
            disabled: Vec::new(),
            dump: Vec::new(),
            dump_to: None,
        }
    }

    /// The default pipeline.
    pub fn default_pipeline() -> PassManager {
        PassManager::new(crate::all_passes())
    }

    /// The default pipeline with the optimiser configured by `config` (and
    /// [`crate::RemovePadding`] before it when `config.remove_padding` asks), and where its
    /// explanation will be once it has run (for `tcc compile --explain`).
    pub fn with_optimiser(
        config: crate::egraph::Config,
    ) -> (PassManager, Arc<Mutex<Option<crate::egraph::Explanation>>>) {
        let remove_padding = config.remove_padding.clone();
        let quantize = config.quantize.clone();
        let egraph = crate::EGraphPass {
            config,
            ..Default::default()
        };
        let last = egraph.last.clone();
        let mut passes: Vec<Box<dyn Pass>> = vec![
            Box::new(FoldShapes),
            Box::new(FoldConstants),
            Box::new(Simplify),
            Box::new(DeadCode),
        ];
        if let Some(q) = quantize {
            passes.push(Box::new(q));
        }
        if let Some(p) = remove_padding {
            passes.push(Box::new(p));
        }
        passes.push(Box::new(egraph));
        passes.push(Box::new(FuseElementwise));
        (PassManager::new(passes), last)
    }

    /// A pipeline of the passes named, in order (a name may repeat).
    pub fn with_passes<S: AsRef<str>>(names: &[S]) -> Result<PassManager> {
        let passes = names
            .iter()
            .map(|n| crate::pass_by_name(n.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(PassManager::new(passes))
    }

    /// The names of the passes in this pipeline, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Turns verification after every pass on or off.
    pub fn verify(&mut self, on: bool) -> &mut PassManager {
        self.verify = on;
        self
    }

    /// Skips the pass `name` (every occurrence of it).
    pub fn disable(&mut self, name: &str) -> Result<&mut PassManager> {
        let name = self.lookup(name)?;
        self.disabled.push(name);
        Ok(self)
    }

    /// Dumps the IR text before and after the pass `name` (every occurrence
    /// of it): to the writer set by [`PassManager::dump_to`], or into the
    /// report. Each dump written starts with a `# before NAME` or
    /// `# after NAME` line, which the text parser skips as a comment.
    pub fn dump_after(&mut self, name: &str) -> Result<&mut PassManager> {
        let name = self.lookup(name)?;
        self.dump.push(name);
        Ok(self)
    }

    /// Sends dumps to `writer` instead of the report.
    pub fn dump_to(&mut self, writer: Box<dyn Write>) -> &mut PassManager {
        self.dump_to = Some(writer);
        self
    }

    fn lookup(&self, name: &str) -> Result<&'static str> {
        self.passes
            .iter()
            .map(|p| p.name())
            .find(|n| *n == name)
            .ok_or_else(|| Error::UnknownPass {
                name: name.to_string(),
                valid: self.names(),
            })
    }

    /// Runs the pipeline on `graph`.
    ///
    /// With verification on, the graph is verified first (a broken input is
    /// an [`Error::InvalidInput`]) and after every pass (a broken result is an
    /// [`Error::BrokenBy`] naming the pass). An error from a pass itself is an
    /// [`Error::PassFailed`].
    pub fn run(&mut self, graph: &mut Graph) -> Result<Report> {
        if self.verify {
            verify(graph).map_err(Error::InvalidInput)?;
        }
        let mut report = Report::default();
        for i in 0..self.passes.len() {
            let name = self.passes[i].name();
            if self.disabled.contains(&name) {
                continue;
            }
            let dump = self.dump.contains(&name);
            if dump {
                self.emit(&mut report, name, Stage::Before, graph)?;
            }
            let start = Instant::now();
            let changed = self.passes[i].run(graph).map_err(|e| Error::PassFailed {
                pass: name,
                error: Box::new(e),
            })?;
            let duration = start.elapsed();
            if self.verify {
                verify(graph).map_err(|error| Error::BrokenBy { pass: name, error })?;
            }
            report.passes.push(PassRun {
                name,
                changed,
                duration,
                nodes_after: graph.node_count(),
            });
            if dump {
                self.emit(&mut report, name, Stage::After, graph)?;
            }
        }
        Ok(report)
    }

    fn emit(
        &mut self,
        report: &mut Report,
        pass: &'static str,
        stage: Stage,
        graph: &Graph,
    ) -> Result<()> {
        let text = text::print(graph);
        match &mut self.dump_to {
            Some(w) => writeln!(w, "# {stage} {pass}\n{text}")
                .and_then(|_| w.flush())
                .map_err(|error| Error::Dump { pass, error }),
            None => {
                report.dumps.push(Dump { pass, stage, text });
                Ok(())
            }
        }
    }
}

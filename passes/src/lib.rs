//! Graph passes over the IR and the pass manager that runs them.
//!
//! A [`Pass`] rewrites a [`Graph`] in place and says whether it changed
//! anything. Passes do not verify or dump: the [`PassManager`] does, after
//! every pass (see its docs). Every pass lives in a file of its own, named
//! after its struct, and has a kebab-case name that the CLI and logs use.
//!
//! The pipeline, in order ([`PassManager::default_pipeline`]):
//!
//! | name             | pass               | what it does |
//! |------------------|--------------------|--------------|
//! | `fold-shapes`    | [`FoldShapes`]     | integer nodes whose value shape inference knows become `const` or `dims` leaves |
//! | `fold-constants` | [`FoldConstants`]  | nodes of constant operands are evaluated by the interpreter |
//! | `simplify`       | [`Simplify`]       | no-op reshapes, transposes, casts, expands and slices go; chains merge |
//! | `dead-code`      | [`DeadCode`]       | nodes that no output needs are removed |
//! | `remove-padding` | [`RemovePadding`]  | (with `--remove-padding` only) outputs `o` of `[batch, seq, ..]` become `unpack(pack(o, mask), mask)`, for the optimiser to run token-wise ops on real tokens |
//! | `egraph`         | [`EGraphPass`]     | equality saturation with the rules of [`egraph::rules`], extraction by the cost model: GEMM epilogues, attention, norms |
//! | `fuse-elementwise` | [`FuseElementwise`] | chains of elementwise ops become one `fused` op |

#![warn(missing_docs)]

mod dead_code;
pub mod egraph;
mod error;
mod fold_constants;
mod fold_shapes;
mod fuse_elementwise;
pub mod key_mask;
mod pass;
mod pass_manager;
pub mod quantize;
mod remove_padding;
mod simplify;

pub use dead_code::DeadCode;
pub use egraph::EGraphPass;
pub use error::{Error, Result};
pub use fold_constants::{FoldConstants, FOLD_LIMIT, FOLD_MAX_ELEMENTS, FOLD_MAX_WORK};
pub use fold_shapes::FoldShapes;
pub use fuse_elementwise::FuseElementwise;
pub use pass::Pass;
pub use pass_manager::{Dump, PassManager, PassRun, Report, Stage};
pub use quantize::Quantize;
pub use remove_padding::{find_mask, RemovePadding};
pub use simplify::Simplify;

use tcc_ir::Graph;

/// Every pass tcc has, in the order of the default pipeline (the optimiser with its
/// default [`egraph::Config`]).
pub fn all_passes() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(FoldShapes),
        Box::new(FoldConstants),
        Box::new(Simplify),
        Box::new(DeadCode),
        Box::new(EGraphPass::default()),
        Box::new(FuseElementwise),
    ]
}

/// The names of every pass, in the order of [`all_passes`].
pub fn pass_names() -> Vec<&'static str> {
    optional_passes().iter().map(|p| p.name()).collect()
}

/// [`all_passes`] and the passes an option adds ([`Quantize`] and [`RemovePadding`], before
/// the optimiser).
fn optional_passes() -> Vec<Box<dyn Pass>> {
    let mut v = all_passes();
    v.insert(4, Box::new(Quantize::default()));
    v.insert(5, Box::new(RemovePadding::default()));
    v
}

/// The pass called `name`; an [`Error::UnknownPass`] listing the valid names
/// if there is none.
pub fn pass_by_name(name: &str) -> Result<Box<dyn Pass>> {
    optional_passes()
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| Error::UnknownPass {
            name: name.to_string(),
            valid: pass_names(),
        })
}

/// Runs the default pipeline on `graph`: shorthand for
/// `PassManager::default_pipeline().run(graph)`.
pub fn optimize(graph: &mut Graph) -> Result<Report> {
    PassManager::default_pipeline().run(graph)
}

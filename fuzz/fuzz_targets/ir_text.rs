//! Fuzz target: the IR text parser, `tcc_ir::text::parse`.
//!
//! An elided weight `@"f32[4, 8]"` is given as zeros of the type its name
//! spells (`tcc_fuzz::zero_weight`; the seed generator renames the weights of
//! `tcc compile --emit ir` output that way), so whole printed graphs parse.
//! A graph that parses must also print and parse back to the same text: the
//! round trip the text form promises (`parse(print(g))` rebuilds `g`).
//! Errors from the first parse are expected; a panic, an abort, an allocation
//! over the limit or a failed round trip is a finding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::Cell;
use tcc_ir::text::{elided_weights, parse, print};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let used = Cell::new(0);
    let Ok(graph) = parse(text, &|name| tcc_fuzz::zero_weight(name, &used)) else {
        return;
    };
    let printed = print(&graph);
    let weights = elided_weights(&graph);
    let again = match parse(&printed, &|name| weights.get(name).cloned()) {
        Ok(g) => g,
        Err(e) => panic!("the printed graph does not parse back: {e}\n{printed}"),
    };
    let reprinted = print(&again);
    assert_eq!(
        printed, reprinted,
        "the graph does not print the same after a round trip"
    );
});

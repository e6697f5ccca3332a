//! The memory plan: where every value of the schedule lives, decided at compile time with
//! symbolic sizes.
//!
//! Graph inputs live in the caller's input buffers and graph outputs computed by a kernel in
//! the caller's output buffers; constants are private globals; a `Reshape` is a view of its
//! operand's storage. Every other value gets a slot of the activation arena: walking the
//! schedule, a value is given a free slot (one whose size is the same [`Dim`] first, else the
//! first free one, else a new one) when its step runs, and its slot is freed after the last
//! step that reads it or any view of it. A slot's size is the [`Dim::max_dim`] of its
//! occupants' sizes, rounded up to 64 bytes; slot offsets are the prefix sums. Steps that need
//! scratch (the runtime-B GEMM's packed panels, attention's and convolutions' blocks) get a
//! slot that is freed right after them.

use std::collections::HashMap;

use tcc_ir::{Dim, Graph, NodeId, Op};

use super::schedule::{Dest, Step};

/// Where a value lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Graph input `i`.
    Input(usize),
    /// Graph output `j`.
    Output(usize),
    /// A constant (a private global).
    Const,
    /// Arena slot `s`.
    Arena(usize),
    /// The storage of another node (the operand of a `Reshape`, followed to its root).
    View(NodeId),
}

/// The plan: storage per node, slots, and scratch per step.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Where each materialised node lives.
    pub storage: HashMap<NodeId, Storage>,
    /// The size in bytes of each slot, a multiple of 64.
    pub slot_sizes: Vec<Dim>,
    /// The offset in bytes of each slot in the arena.
    pub slot_offsets: Vec<Dim>,
    /// The arena's total size in bytes.
    pub arena_bytes: Dim,
    /// The scratch slot of a step, by step index.
    pub scratch: HashMap<usize, usize>,
    /// The bytes of every arena value and scratch, summed (what a plan without reuse needs).
    pub unshared_bytes: Dim,
}

/// The size in bytes of node `id`'s value.
pub fn value_bytes(graph: &Graph, id: NodeId) -> Dim {
    let ty = graph.ty(id);
    ty.shape
        .numel()
        .mul(&Dim::constant(ty.dtype.size_bytes() as i64))
}

fn round64(d: &Dim) -> Dim {
    d.add(&Dim::constant(63))
        .floor_div(&Dim::constant(64))
        .mul(&Dim::constant(64))
}

/// The root of a chain of `Reshape` views.
pub fn view_root(graph: &Graph, mut id: NodeId) -> NodeId {
    while let Op::Reshape { .. } = graph.op(id) {
        id = graph.operands(id)[0];
    }
    id
}

/// Plans the memory of `steps`; `scratch_bytes` gives the scratch a step needs, if any.
pub fn plan(
    graph: &Graph,
    steps: &[Step],
    direct_outputs: &[bool],
    scratch_bytes: &dyn Fn(&Step) -> Option<Dim>,
) -> Plan {
    let mut p = Plan {
        unshared_bytes: Dim::constant(0),
        ..Plan::default()
    };
    for (i, &id) in graph.inputs().iter().enumerate() {
        p.storage.insert(id, Storage::Input(i));
    }
    for id in graph.node_ids() {
        match graph.op(id) {
            Op::Const(_) => {
                p.storage.insert(id, Storage::Const);
            }
            Op::Reshape { .. } => {
                p.storage.insert(id, Storage::View(view_root(graph, id)));
            }
            _ => {}
        }
    }
    for (j, (_, id)) in graph.outputs().iter().enumerate() {
        if direct_outputs[j] && !p.storage.contains_key(id) {
            p.storage.insert(*id, Storage::Output(j));
        }
    }
    // The last step reading each root.
    let mut last_use: HashMap<NodeId, usize> = HashMap::new();
    for (s, step) in steps.iter().enumerate() {
        for &input in &step.inputs {
            last_use.insert(view_root(graph, input), s);
        }
    }
    // A derived symbol (a pack's token count, known only to the run) is sized by its bound:
    // the number of its mask's entries. The arena holds the bound; the run uses the count.
    let bounds = super::derived_symbols(graph);
    let mut free: Vec<usize> = Vec::new();
    let mut occupant_size: Vec<Dim> = Vec::new();
    let mut take = |size: Dim, free: &mut Vec<usize>, p: &mut Plan| -> usize {
        let size = super::bounded(&size, &bounds);
        p.unshared_bytes = p.unshared_bytes.add(&round64(&size));
        let pick = free
            .iter()
            .position(|&s| occupant_size[s] == size)
            .or(if free.is_empty() { None } else { Some(0) });
        match pick {
            Some(k) => {
                let s = free.remove(k);
                p.slot_sizes[s] = p.slot_sizes[s].max_dim(&round64(&size));
                occupant_size[s] = size;
                s
            }
            None => {
                p.slot_sizes.push(round64(&size));
                occupant_size.push(size);
                p.slot_sizes.len() - 1
            }
        }
    };
    for (s, step) in steps.iter().enumerate() {
        let mut fresh = Vec::new();
        if let Dest::Node(id) = step.dest {
            if !p.storage.contains_key(&id) {
                let slot = take(value_bytes(graph, id), &mut free, &mut p);
                p.storage.insert(id, Storage::Arena(slot));
                if !last_use.contains_key(&id) {
                    // Never read (dead but scheduled): free it after this step.
                    fresh.push(slot);
                }
            }
        }
        if let Some(bytes) = scratch_bytes(step) {
            let slot = take(bytes, &mut free, &mut p);
            p.scratch.insert(s, slot);
            fresh.push(slot);
        }
        // Free the roots whose last use is this step.
        for &input in &step.inputs {
            let root = view_root(graph, input);
            if last_use.get(&root) == Some(&s) {
                if let Some(Storage::Arena(slot)) = p.storage.get(&root) {
                    if !free.contains(slot) && !fresh.contains(slot) {
                        free.push(*slot);
                    }
                }
            }
        }
        free.extend(fresh);
    }
    let mut offset = Dim::constant(0);
    for size in &p.slot_sizes {
        p.slot_offsets.push(offset.clone());
        offset = offset.add(size);
    }
    p.arena_bytes = offset;
    p
}

/// A summary of the plan for given symbol values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanReport {
    /// The arena's size, the peak of activation memory, in bytes.
    pub arena_bytes: u64,
    /// The number of arena slots.
    pub slots: usize,
    /// What the arena values would take without sharing slots, in bytes.
    pub unshared_bytes: u64,
}

impl Plan {
    /// The report for these symbol values (by name); fails naming an unbound symbol.
    pub fn report(&self, env: &dyn Fn(&str) -> Option<i64>) -> Result<PlanReport, String> {
        Ok(PlanReport {
            arena_bytes: self.arena_bytes.eval(env)?.max(0) as u64,
            slots: self.slot_sizes.len(),
            unshared_bytes: self.unshared_bytes.eval(env)?.max(0) as u64,
        })
    }
}

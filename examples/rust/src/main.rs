//! A Rust program that uses a tcc-compiled model through `tcc-model`, the safe API over a
//! model library's C API (the library is loaded at run time with dlopen). It does what
//! examples/c/main.c does and prints the same lines, so the two can be compared:
//!
//! 1. lists the model's inputs and outputs;
//! 2. creates a session (default threads: `TCC_NUM_THREADS`, else the physical cores);
//! 3. fills every input, found by name, from a small batch of token ids (`BATCH` sequences of
//!    `SEQ` tokens, the second one padded; see [`fill_input`]);
//! 4. runs the model into session-owned outputs and prints each output's shape and checksums;
//! 5. runs it again into its own buffers, sized from the first run, and checks that both runs
//!    agree bit for bit;
//! 6. writes the outputs' raw bytes to `OUT` if given, then frees everything.
//!
//! Usage: `tcc-example-rust MODEL.so [PREFIX [OUT]]`; the prefix defaults to `model`.

use std::path::Path;
use std::process::ExitCode;
use tcc_model::{DType, Dim, InputInfo, Model, TensorRef};

/// The batch: `BATCH` sequences of `SEQ` tokens, as in examples/c/main.c.
const BATCH: usize = 2;
const SEQ: usize = 8;

/// Sequence `b` holds `SEQ - 3 b` real tokens (at least one); the rest is padding.
fn sequence_length(b: usize) -> usize {
    SEQ.saturating_sub(3 * b).max(1)
}

/// Token `s` of sequence `b`: `1 + (7 s + 13 b) % 97`, or 0 in the padding.
fn token_id(b: usize, s: usize) -> i64 {
    if s < sequence_length(b) {
        1 + ((7 * s + 13 * b) % 97) as i64
    } else {
        0
    }
}

/// An input's dims and data: an i64 `[batch, seq]` tensor of token ids, attention mask or
/// token types, chosen by its name.
fn fill_input(input: &InputInfo) -> Result<([usize; 2], Vec<i64>), String> {
    if input.dtype != DType::I64 || input.dims.len() != 2 {
        return Err(format!(
            "input `{}` is {input}; this example feeds only i64 [batch, seq] inputs (token \
             ids, attention mask, token types)",
            input.name
        ));
    }
    let dim = |axis: usize, default| match input.dims[axis] {
        Dim::Fixed(n) => n,
        Dim::Symbol(_) | Dim::Computed => default,
    };
    let dims = [dim(0, BATCH), dim(1, SEQ)];
    let mut data = Vec::with_capacity(dims[0] * dims[1]);
    for b in 0..dims[0] {
        for s in 0..dims[1] {
            data.push(if input.name.contains("mask") {
                i64::from(s < sequence_length(b))
            } else if input.name.contains("type") {
                0
            } else {
                token_id(b, s)
            });
        }
    }
    Ok((dims, data))
}

/// The sum and the sum of magnitudes of an output's elements, in f64, in order.
fn checksums(dtype: DType, bytes: &[u8]) -> (f64, f64) {
    let mut sum = 0.0;
    let mut abs_sum = 0.0;
    for chunk in bytes.chunks_exact(dtype.size() as usize) {
        let v = match dtype {
            DType::F32 => f64::from(f32::from_le_bytes(chunk.try_into().unwrap_or_default())),
            DType::F64 => f64::from_le_bytes(chunk.try_into().unwrap_or_default()),
            DType::I64 => i64::from_le_bytes(chunk.try_into().unwrap_or_default()) as f64,
            DType::I32 => f64::from(i32::from_le_bytes(chunk.try_into().unwrap_or_default())),
            _ => f64::from(chunk[0]),
        };
        sum += v;
        abs_sum += v.abs();
    }
    (sum, abs_sum)
}

fn run(path: &Path, prefix: &str, dump: Option<&Path>) -> Result<(), Box<dyn std::error::Error>> {
    let model = Model::load_with_prefix(path, Some(prefix))?;
    println!(
        "model: {} inputs, {} outputs",
        model.inputs().len(),
        model.outputs().len()
    );
    for (i, input) in model.inputs().iter().enumerate() {
        let axes: Vec<String> = input.dims.iter().map(Dim::to_string).collect();
        println!(
            "input {i}: {} {} [{}]",
            input.name,
            input.dtype,
            axes.join(", ")
        );
    }

    let mut session = model.session(0)?;
    println!("session: {} threads", session.num_threads());

    let filled = model
        .inputs()
        .iter()
        .map(fill_input)
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = filled
        .iter()
        .map(|(dims, data)| TensorRef::new(data, dims))
        .collect::<Result<Vec<_>, _>>()?;

    // Run 1: session-owned outputs, valid until the next run; copied out at once.
    let first: Vec<Vec<u8>> = session
        .run(&inputs)?
        .iter()
        .map(|o| o.bytes().to_vec())
        .collect();

    // Run 2: into our own buffers (u64 words, so aligned for any dtype), sized from run 1.
    let mut words: Vec<Vec<u64>> = first
        .iter()
        .map(|b| vec![0u64; b.len().div_ceil(8)])
        .collect();
    let mut buffers: Vec<&mut [u8]> = words
        .iter_mut()
        .zip(&first)
        .map(|(w, b)| {
            // SAFETY: u64 words viewed as bytes; the slice stays within the vector.
            unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr().cast::<u8>(), b.len()) }
        })
        .collect();
    let dims = session.run_into(&inputs, &mut buffers)?;

    let mut dumped = Vec::new();
    let mut mismatches = Vec::new();
    for (o, ((info, bytes), dims)) in model.outputs().iter().zip(&buffers).zip(&dims).enumerate() {
        if **bytes != *first[o] {
            mismatches.push(info.name.clone());
        }
        let (sum, abs_sum) = checksums(info.dtype, bytes);
        let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
        println!(
            "output {o}: {} {} [{}] sum={sum:.6} abs_sum={abs_sum:.6}",
            info.name,
            info.dtype,
            dims.join(", ")
        );
        dumped.extend_from_slice(bytes);
    }
    if let Some(dump) = dump {
        std::fs::write(dump, &dumped)
            .map_err(|e| format!("cannot write {}: {e}", dump.display()))?;
    }
    if !mismatches.is_empty() {
        let differ = mismatches.join(", ");
        return Err(format!("outputs differ between the two runs: {differ}").into());
    }
    println!("ok");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if !(2..=4).contains(&args.len()) {
        eprintln!("usage: {} MODEL.so [PREFIX [OUT]]", args[0]);
        return ExitCode::from(2);
    }
    let prefix = args.get(2).map_or("model", String::as_str);
    match run(Path::new(&args[1]), prefix, args.get(3).map(Path::new)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

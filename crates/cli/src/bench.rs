//! `tcc bench`: times a compiled model library on npz inputs through its C API.

use crate::files;
use crate::model_lib;
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Instant;

const LONG_ABOUT: &str = "\
Times a compiled model library (from `tcc compile MODEL.onnx -o MODEL.so`).

It loads the library, binds the arrays of IN.npz to the model's inputs by name
(through the library's own interface queries; other arrays are ignored, so an
ONNX Runtime reference archive can be passed as it is), creates one session,
runs the model W times to warm up (untimed), then N times, timing each run on
its own with a monotonic clock. Outputs go to session-owned buffers, so a run
is exactly one call of PREFIX_run: input validation, the computation and
nothing else.

It prints the model and the inputs, then, as its last line:
  tcc bench: runs=N threads=T min=A median=B max=C ms
with T the threads the session really runs on and A, B, C in milliseconds
(the median of an even N is the mean of the middle two).

--threads 0 (the default) lets the library choose: TCC_NUM_THREADS if set,
else the number of physical cores. The prefix of the library's functions is
found in the file unless --prefix gives it.";

const AFTER_HELP: &str = "\
Examples:
  tcc compile examples/tiny-encoder/model.onnx -o tiny.so
  tcc bench tiny.so --inputs examples/tiny-encoder/inputs.npz
  tcc bench tiny.so --inputs examples/tiny-encoder/inputs.npz \\
      --runs 100 --warmup 10 --threads 2";

/// Arguments of `tcc bench`.
#[derive(clap::Args, Debug)]
#[command(
    about = "Time a compiled model library on npz inputs",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct Args {
    /// The model library, as `tcc compile -o` wrote it.
    #[arg(value_name = "MODEL.so")]
    pub library: PathBuf,

    /// An npz archive holding an array for every model input, by name.
    #[arg(long, short = 'i', value_name = "IN.npz")]
    pub inputs: PathBuf,

    /// Timed runs (at least 1).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub runs: usize,

    /// Untimed warm-up runs before the timed ones.
    #[arg(long, value_name = "W", default_value_t = 3)]
    pub warmup: usize,

    /// Threads of the session; 0 lets the library choose.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: i32,

    /// The prefix of the library's API functions (found in the file if not given).
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
}

/// Runs `tcc bench`.
pub fn run(args: Args) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.threads < 0 {
        bail!(
            "--threads must be 0 (the library's default) or more, not {}",
            args.threads
        );
    }
    let lib = tcc_model::Model::load_with_prefix(&args.library, args.prefix.as_deref())?;
    let arrays = files::read_npz(&args.inputs, "the inputs")?;
    let inputs = model_lib::bind(&lib, &arrays, &args.inputs)?;
    let mut session = lib.session(args.threads as usize)?;

    let described: Vec<String> = lib
        .inputs()
        .iter()
        .map(|i| format!("{} {i}", i.name))
        .collect();
    let mut text = format!(
        "tcc bench: {} (prefix `{}`), inputs from {}: {}\n",
        args.library.display(),
        lib.prefix(),
        args.inputs.display(),
        described.join(", ")
    );
    for _ in 0..args.warmup {
        session.run(&inputs)?;
    }
    let mut times = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let start = Instant::now();
        session.run(&inputs)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let shapes: Vec<String> = model_lib::tensors(&session.run(&inputs)?)?
        .iter()
        .map(|(name, t)| format!("{name} {}{:?}", t.dtype(), t.shape()))
        .collect();
    text.push_str(&format!("tcc bench: outputs {}\n", shapes.join(", ")));
    let stats = Stats::of(&times);
    text.push_str(&format!(
        "tcc bench: runs={} threads={} min={:.3} median={:.3} max={:.3} ms\n",
        args.runs,
        session.num_threads(),
        stats.min,
        stats.median,
        stats.max
    ));
    files::print_stdout(&text)
}

/// The least, median and largest of a set of times.
#[derive(Debug, PartialEq)]
struct Stats {
    min: f64,
    median: f64,
    max: f64,
}

impl Stats {
    /// The statistics of `times`, which is not empty.
    fn of(times: &[f64]) -> Stats {
        let mut sorted = times.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Stats {
            min: sorted[0],
            median,
            max: sorted[n - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd = Stats::of(&[5.0, 1.0, 3.0]);
        assert_eq!(
            odd,
            Stats {
                min: 1.0,
                median: 3.0,
                max: 5.0
            }
        );
        let even = Stats::of(&[4.0, 1.0, 2.0, 10.0]);
        assert_eq!(
            even,
            Stats {
                min: 1.0,
                median: 3.0,
                max: 10.0
            }
        );
        assert_eq!(Stats::of(&[2.5]).median, 2.5);
    }
}

//! Convolution benchmark: the milliseconds per run, and GFLOP/s, of single-`conv` models
//! compiled by `tcc_codegen::lower`, on one and on two threads, for the host's widest vector
//! path and for AVX2 (`x86-64-v3`).
//!
//! Run with `cargo run --release -p tcc-codegen --example conv_bench`. The cases: a 3x3,
//! stride-1, pad-1 Conv2d of `[1, 64, 56, 56]` to 64 channels (a ResNet stage-1 layer), a k=3
//! Conv1d of `[1, 256, 1000]` to 256 channels, the 7x7 stride-2 stem of `[1, 3, 224, 224]` to
//! 64 channels and a 3x3 stride-2 Conv2d of `[1, 128, 28, 28]` to 256 channels. Arguments, if
//! any, pick cases by a part of their names (`3x3`, `conv1d`, ...). The model runs through its
//! C API, as a caller would, with inputs made once and outputs owned by the session.

use std::ffi::c_void;
use std::path::Path;
use std::time::{Duration, Instant};

use tcc_codegen::emit::EmitKind;
use tcc_codegen::lower::{self, CompileOptions};
use tcc_codegen::Target;
use tcc_ir::{DType, Tensor, TensorData};
use tcc_runtime::abi::{Output as COutput, Tensor as CTensor};

/// The least time each measurement runs for.
const MIN_TIME: Duration = Duration::from_millis(500);

type CreateFn = unsafe extern "C" fn(i32, *mut *mut c_void) -> i32;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type RunFn = unsafe extern "C" fn(*mut c_void, *const CTensor, i32, *mut COutput, i32) -> i32;

/// One benchmark: a name, the input's and weights' shapes, and the attributes and result
/// shape of the convolution.
struct Bench {
    name: &'static str,
    x: &'static [usize],
    w: &'static [usize],
    attrs: &'static str,
    out: &'static [usize],
}

const BENCHES: [Bench; 4] = [
    Bench {
        name: "conv2d 3x3 s1 p1 [1, 64, 56, 56] -> 64",
        x: &[1, 64, 56, 56],
        w: &[64, 64, 3, 3],
        attrs: "strides=[1, 1], pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1], group=1",
        out: &[1, 64, 56, 56],
    },
    Bench {
        name: "conv1d k3 p1 [1, 256, 1000] -> 256",
        x: &[1, 256, 1000],
        w: &[256, 256, 3],
        attrs: "strides=[1], pads_begin=[1], pads_end=[1], dilations=[1], group=1",
        out: &[1, 256, 1000],
    },
    Bench {
        name: "conv2d 7x7 s2 p3 [1, 3, 224, 224] -> 64",
        x: &[1, 3, 224, 224],
        w: &[64, 3, 7, 7],
        attrs: "strides=[2, 2], pads_begin=[3, 3], pads_end=[3, 3], dilations=[1, 1], group=1",
        out: &[1, 64, 112, 112],
    },
    Bench {
        name: "conv2d 3x3 s2 p1 [1, 128, 28, 28] -> 256",
        x: &[1, 128, 28, 28],
        w: &[256, 128, 3, 3],
        attrs: "strides=[2, 2], pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1], group=1",
        out: &[1, 256, 14, 14],
    },
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let picks: Vec<String> = std::env::args().skip(1).collect();
    let dir = tempfile::tempdir()?;
    for cpu in ["host", "x86-64-v3"] {
        let target = Target::named(cpu)?;
        println!("{cpu} ({}, {} lanes)", target.cpu(), target.f32_lanes());
        for bench in BENCHES
            .iter()
            .filter(|b| picks.is_empty() || picks.iter().any(|p| b.name.contains(p.as_str())))
        {
            let model = Model::build(bench, cpu, dir.path())?;
            let x = random(bench.x, 1);
            let flops = 2.0
                * bench.out.iter().product::<usize>() as f64
                * bench.w[1..].iter().product::<usize>() as f64;
            let mut line = format!("  {:<42}", bench.name);
            for threads in [1, 2] {
                let seconds = model.measure(threads, &x)?;
                line += &format!(
                    "  {threads} thread{}: {:>9.3} ms {:>7.1} GFLOP/s",
                    if threads == 1 { " " } else { "s" },
                    seconds * 1e3,
                    flops / seconds / 1e9
                );
            }
            println!("{line}");
        }
    }
    Ok(())
}

/// Uniform numbers in `[-1, 1)` from a fixed seed.
fn random(shape: &[usize], seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..shape.iter().product::<usize>())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// A compiled single-convolution model, loaded.
struct Model {
    _library: libloading::Library,
    create: CreateFn,
    free: FreeFn,
    run: RunFn,
    dims: Vec<i64>,
}

impl Model {
    /// Compiles `bench` for the target named `tag` in `dir` and loads it.
    fn build(bench: &Bench, tag: &str, dir: &Path) -> Result<Model, Box<dyn std::error::Error>> {
        let list = |s: &[usize]| {
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ir = format!(
            "graph(%x: f32[{}]) {{\n  %w = const @\"w\" : f32[{}]\n  %y = conv<{}>(%x, %w) : \
             f32[{}]\n  return %y = %y\n}}\n",
            list(bench.x),
            list(bench.w),
            bench.attrs,
            list(bench.out)
        );
        let weights = Tensor::new(bench.w.to_vec(), TensorData::F32(random(bench.w, 2)))?;
        let graph = tcc_ir::text::parse(&ir, &|_| Some(weights.clone()))?;
        let opts = CompileOptions {
            target: Target::named(tag)?,
            prefix: "m".into(),
            emit: EmitKind::Object,
        };
        let stem = format!("{tag}-{}", bench.w.iter().product::<usize>());
        let so = dir.join(format!("{stem}.so"));
        lower::compile_library(&graph, &opts, &so, &dir.join(format!("{stem}.h")))?;
        // SAFETY: the library was just linked from generated code and the tcc runtime, and
        // each symbol is the API function of tcc_model.h with this signature.
        unsafe {
            let library = libloading::Library::new(&so)?;
            let create = *library.get::<CreateFn>(b"m_session_create")?;
            let free = *library.get::<FreeFn>(b"m_session_free")?;
            let run = *library.get::<RunFn>(b"m_run")?;
            Ok(Model {
                _library: library,
                create,
                free,
                run,
                dims: bench.x.iter().map(|&d| d as i64).collect(),
            })
        }
    }

    /// The median seconds per run on `threads` threads, over at least [`MIN_TIME`].
    fn measure(&self, threads: i32, x: &[f32]) -> Result<f64, Box<dyn std::error::Error>> {
        let mut session = std::ptr::null_mut();
        // SAFETY: a writable out-pointer.
        if unsafe { (self.create)(threads, &mut session) } != 0 {
            return Err("session_create failed".into());
        }
        let input = CTensor {
            dtype: tcc_codegen::abi::dtype_code(DType::F32),
            rank: self.dims.len() as i32,
            dims: self.dims.as_ptr(),
            data: x.as_ptr().cast(),
        };
        let mut output = [COutput::SESSION_OWNED];
        let run = |output: &mut [COutput; 1]| {
            // SAFETY: a live session used by this thread only; the counts match the arrays.
            unsafe { (self.run)(session, &input, 1, output.as_mut_ptr(), 1) }
        };
        let mut times = Vec::new();
        let start = Instant::now();
        let mut status = run(&mut output);
        while status == 0 && (start.elapsed() < MIN_TIME || times.len() < 5) {
            let t = Instant::now();
            status = run(&mut output);
            times.push(t.elapsed().as_secs_f64());
        }
        // SAFETY: a live session, freed once.
        unsafe { (self.free)(session) };
        if status != 0 {
            return Err(format!("run failed with status {status}").into());
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }
}

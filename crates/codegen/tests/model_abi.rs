//! The model library ABI end to end: a tiny model (`y = x + c` over `f32[n]`, rows split with
//! `tcc_rt_parallel_for`, staged through the arena) is built by hand with inkwell, given its
//! descriptor and `PREFIX_*` wrappers twice (prefixes `m1` with c = 1 and `m2` with c = 2),
//! and linked with the embedded runtime into `libm1.so` and `libm2.so`. Then:
//!
//! - `ldd` shows only libc, libm, libpthread, the dynamic loader and the vdso;
//! - `nm -D --defined-only` shows exactly the `PREFIX_*` API;
//! - a C program that includes both generated headers and links both libraries checks
//!   results and error codes, and runs clean under valgrind;
//! - Rust loads both libraries with libloading and runs sessions concurrently on threads.

use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use inkwell::module::Module;
use inkwell::values::{FunctionValue, PointerValue};
use inkwell::{AddressSpace, IntPredicate};
use tcc_codegen::abi::{
    self, declare_parallel_for, emit_model_abi, exported_names, task_fn_type, Dim, EntryPoints,
    Interface, TensorSpec,
};
use tcc_codegen::emit::{emit_to_file, EmitKind};
use tcc_codegen::link::{link_model, RUNTIME_STATICLIB};
use tcc_codegen::{Context, Target};
use tcc_ir::DType;
use tcc_runtime::abi::{Output, Tensor};

/// Elements per `parallel_for` index in the tiny model.
const CHUNK: u64 = 256;

/// The tiny model's interface: `x: f32[n] -> y: f32[n]`.
fn interface() -> Interface {
    let n = || vec![Dim::Symbol("n".into())];
    Interface {
        inputs: vec![TensorSpec {
            name: "x".into(),
            dtype: DType::F32,
            dims: n(),
        }],
        outputs: vec![TensorSpec {
            name: "y".into(),
            dtype: DType::F32,
            dims: n(),
        }],
        symbols: vec!["n".into()],
        size_checks: Vec::new(),
        forms: Vec::new(),
        notes: Vec::new(),
    }
}

/// Builds `y[j] = x[j] + addend` as the four entry points the descriptor needs.
///
/// `run` loads n, x and y, stores them with the arena in a context struct on its stack, and
/// calls `tcc_rt_parallel_for(pool, ceil(n / CHUNK), body, &ctx)`; `body(ctx, c)` computes
/// elements `[c * CHUNK, min((c + 1) * CHUNK, n))` into the arena, then copies them to y.
/// `arena_bytes` is `4 n`; `output_dims` is `[n]`.
fn build_tiny<'ctx>(module: &Module<'ctx>, addend: f32) -> EntryPoints<'ctx> {
    let context = module.get_context();
    let (i64_t, f32_t) = (context.i64_type(), context.f32_type());
    let ptr_t = context.ptr_type(AddressSpace::default());
    let ctx_t = context.struct_type(
        &[ptr_t.into(), ptr_t.into(), ptr_t.into(), i64_t.into()],
        false,
    );
    let b = context.create_builder();
    let param = |f: FunctionValue<'ctx>, i: u32| f.get_nth_param(i).unwrap();
    let field =
        |base: PointerValue<'ctx>, i: u32| b.build_struct_gep(ctx_t, base, i, "field").unwrap();
    // SAFETY (for every GEP below): indices stay within the buffers the runtime validated.
    let at = |base: PointerValue<'ctx>, j| unsafe {
        b.build_in_bounds_gep(f32_t, base, &[j], "at").unwrap()
    };

    // body(ctx, c)
    let body = module.add_function("tiny_body", task_fn_type(context), None);
    b.position_at_end(context.append_basic_block(body, "entry"));
    let ctx = param(body, 0).into_pointer_value();
    let c = param(body, 1).into_int_value();
    let x = b
        .build_load(ptr_t, field(ctx, 0), "x")
        .unwrap()
        .into_pointer_value();
    let y = b
        .build_load(ptr_t, field(ctx, 1), "y")
        .unwrap()
        .into_pointer_value();
    let arena = b
        .build_load(ptr_t, field(ctx, 2), "arena")
        .unwrap()
        .into_pointer_value();
    let n = b
        .build_load(i64_t, field(ctx, 3), "n")
        .unwrap()
        .into_int_value();
    let start = b
        .build_int_mul(c, i64_t.const_int(CHUNK, false), "start")
        .unwrap();
    let stop = b
        .build_int_add(start, i64_t.const_int(CHUNK, false), "stop")
        .unwrap();
    let below = b
        .build_int_compare(IntPredicate::SLT, stop, n, "below")
        .unwrap();
    let end = b
        .build_select(below, stop, n, "end")
        .unwrap()
        .into_int_value();
    let entry = b.get_insert_block().unwrap();
    let header = context.append_basic_block(body, "header");
    let step = context.append_basic_block(body, "step");
    let exit = context.append_basic_block(body, "exit");
    b.build_unconditional_branch(header).unwrap();
    b.position_at_end(header);
    let j = b.build_phi(i64_t, "j").unwrap();
    let jv = j.as_basic_value().into_int_value();
    let more = b
        .build_int_compare(IntPredicate::SLT, jv, end, "more")
        .unwrap();
    b.build_conditional_branch(more, step, exit).unwrap();
    b.position_at_end(step);
    let xj = b
        .build_load(f32_t, at(x, jv), "xj")
        .unwrap()
        .into_float_value();
    let sum = b
        .build_float_add(xj, f32_t.const_float(f64::from(addend)), "sum")
        .unwrap();
    b.build_store(at(arena, jv), sum).unwrap();
    let staged = b.build_load(f32_t, at(arena, jv), "staged").unwrap();
    b.build_store(at(y, jv), staged).unwrap();
    let next = b
        .build_int_nsw_add(jv, i64_t.const_int(1, false), "next")
        .unwrap();
    b.build_unconditional_branch(header).unwrap();
    j.add_incoming(&[(&start, entry), (&next, step)]);
    b.position_at_end(exit);
    b.build_return(None).unwrap();

    // run(pool, symbols, inputs, outputs, arena)
    let run = module.add_function("tiny_run", abi::run_fn_type(context), None);
    b.position_at_end(context.append_basic_block(run, "entry"));
    let n = b
        .build_load(i64_t, param(run, 1).into_pointer_value(), "n")
        .unwrap();
    let x = b
        .build_load(ptr_t, param(run, 2).into_pointer_value(), "x")
        .unwrap();
    let y = b
        .build_load(ptr_t, param(run, 3).into_pointer_value(), "y")
        .unwrap();
    let ctx = b.build_alloca(ctx_t, "ctx").unwrap();
    b.build_store(field(ctx, 0), x).unwrap();
    b.build_store(field(ctx, 1), y).unwrap();
    b.build_store(field(ctx, 2), param(run, 4)).unwrap();
    b.build_store(field(ctx, 3), n).unwrap();
    let rounded = b
        .build_int_add(
            n.into_int_value(),
            i64_t.const_int(CHUNK - 1, false),
            "rounded",
        )
        .unwrap();
    let chunks = b
        .build_int_signed_div(rounded, i64_t.const_int(CHUNK, false), "chunks")
        .unwrap();
    let parallel_for = declare_parallel_for(module);
    let body_ptr = body.as_global_value().as_pointer_value();
    b.build_call(
        parallel_for,
        &[
            param(run, 0).into(),
            chunks.into(),
            body_ptr.into(),
            ctx.into(),
        ],
        "",
    )
    .unwrap();
    b.build_return(Some(&context.i32_type().const_zero()))
        .unwrap();

    // output_dims(symbols, dims)
    let output_dims =
        module.add_function("tiny_output_dims", abi::output_dims_fn_type(context), None);
    b.position_at_end(context.append_basic_block(output_dims, "entry"));
    let n = b
        .build_load(i64_t, param(output_dims, 0).into_pointer_value(), "n")
        .unwrap();
    b.build_store(param(output_dims, 1).into_pointer_value(), n)
        .unwrap();
    b.build_return(None).unwrap();

    // arena_bytes(symbols)
    let arena_bytes =
        module.add_function("tiny_arena_bytes", abi::arena_bytes_fn_type(context), None);
    b.position_at_end(context.append_basic_block(arena_bytes, "entry"));
    let n = b
        .build_load(i64_t, param(arena_bytes, 0).into_pointer_value(), "n")
        .unwrap();
    let bytes = b
        .build_int_mul(n.into_int_value(), i64_t.const_int(4, false), "bytes")
        .unwrap();
    b.build_return(Some(&bytes)).unwrap();

    // check_sizes(symbols, values): no checks, all hold.
    let check_sizes =
        module.add_function("tiny_check_sizes", abi::check_sizes_fn_type(context), None);
    b.position_at_end(context.append_basic_block(check_sizes, "entry"));
    b.build_return(Some(&context.i32_type().const_int(u64::MAX, true)))
        .unwrap();

    body.set_linkage(inkwell::module::Linkage::Internal);
    EntryPoints {
        run,
        output_dims,
        arena_bytes,
        check_sizes,
    }
}

/// The directory holding `libm1.so`, `libm2.so`, `m1.h` and `m2.h`, built once per test run.
fn libraries() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("model_abi");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Baseline x86-64: valgrind cannot run AVX-512 code a host target might use.
        let target = Target::named("x86-64").unwrap();
        for (prefix, addend) in [("m1", 1.0), ("m2", 2.0)] {
            let context = Context::create();
            let module = context.create_module(prefix);
            let entry = build_tiny(&module, addend);
            emit_model_abi(&module, prefix, &interface(), &entry).unwrap();
            let object = dir.join(format!("{prefix}.o"));
            emit_to_file(&module, &target, EmitKind::Object, &object).unwrap();
            let so = dir.join(format!("lib{prefix}.so"));
            link_model(&[&object], prefix, &so).unwrap();
            let header = abi::header(prefix, &interface()).unwrap();
            std::fs::write(dir.join(format!("{prefix}.h")), header).unwrap();
            eprintln!(
                "lib{prefix}.so: {} bytes (runtime staticlib: {} bytes)",
                std::fs::metadata(&so).unwrap().len(),
                RUNTIME_STATICLIB.len()
            );
        }
        dir
    })
}

fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} could not run ({e}); install it (binutils, libc-bin)")
        });
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_library_needs_only_libc_libm_libpthread() {
    let so = libraries().join("libm1.so");
    let text = run_tool("ldd", &[so.as_os_str()]);
    let allowed = [
        "linux-vdso.so.1",
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "ld-linux-x86-64.so.2",
    ];
    let mut names = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let first = line.split_whitespace().next().unwrap();
        let name = Path::new(first)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            allowed.contains(&name.as_str()),
            "unexpected dependency `{name}`:\n{text}"
        );
        names.push(name);
    }
    assert!(names.iter().any(|n| n == "libc.so.6"), "{text}");
    for banned in ["libgcc_s", "libLLVM", "libstd"] {
        assert!(!text.contains(banned), "{banned} in:\n{text}");
    }
}

#[test]
fn the_library_exports_only_its_prefixed_api() {
    for prefix in ["m1", "m2"] {
        let so = libraries().join(format!("lib{prefix}.so"));
        let text = run_tool(
            "nm",
            &["-D".as_ref(), "--defined-only".as_ref(), so.as_os_str()],
        );
        let mut symbols: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
            .collect();
        symbols.sort();
        let mut expected = exported_names(prefix);
        expected.sort();
        assert_eq!(symbols, expected, "nm -D says:\n{text}");
    }
}

/// The C test program: both models, results, error codes, interface queries.
const C_PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "m1.h"
#include "m2.h"

static int failures = 0;
#define CHECK(cond, ...) do { if (!(cond)) { \
  fprintf(stderr, "FAIL line %d: %s: ", __LINE__, #cond); \
  fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); failures++; } } while (0)

typedef int32_t (*run_fn)(tcc_session *, const tcc_tensor *, int32_t, tcc_output *, int32_t);
typedef const char *(*error_fn)(const tcc_session *);

static void check_runs(const char *model, tcc_session *s, run_fn run, error_fn last_error,
                       float addend) {
  static const int64_t sizes[] = {1, 2, 255, 256, 257, 1000, 4099};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    int64_t n = sizes[k];
    float *x = malloc((size_t)n * sizeof(float));
    float *y = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = (float)i * 0.5f - 3.0f;
    int64_t dims[1] = {n};
    tcc_tensor in = {TCC_F32, 1, dims, x};
    for (int owned = 0; owned < 2; owned++) {
      tcc_output out;
      memset(&out, 0, sizeof out);
      if (owned) { out.buffer = y; out.capacity = (uint64_t)n * sizeof(float); }
      int32_t st = run(s, &in, 1, &out, 1);
      CHECK(st == TCC_OK, "%s n=%lld: %s", model, (long long)n, last_error(s));
      if (st != TCC_OK) continue;
      CHECK(out.rank == 1 && out.dims[0] == n && out.dtype == TCC_F32, "%s", model);
      CHECK(out.size == (uint64_t)n * sizeof(float), "%s", model);
      CHECK(owned ? out.data == y : out.data != NULL, "%s", model);
      const float *r = out.data;
      for (int64_t i = 0; i < n; i++)
        if (r[i] != x[i] + addend) {
          CHECK(0, "%s n=%lld y[%lld] = %g, want %g", model, (long long)n, (long long)i,
                r[i], x[i] + addend);
          break;
        }
    }
    free(x);
    free(y);
  }
}

static void check_errors(const char *model, tcc_session *s, run_fn run, error_fn last_error) {
  float x[4] = {1, 2, 3, 4};
  float y[4];
  int64_t dims[2] = {4, 1};
  tcc_tensor in = {TCC_F32, 1, dims, x};
  tcc_output out;
  memset(&out, 0, sizeof out);

  in.dtype = TCC_F64;
  CHECK(run(s, &in, 1, &out, 1) == TCC_ERR_DTYPE, "%s", model);
  CHECK(strstr(last_error(s), "`x`") != NULL, "%s: %s", model, last_error(s));
  in.dtype = TCC_F32;

  in.rank = 2;
  CHECK(run(s, &in, 1, &out, 1) == TCC_ERR_SHAPE, "%s", model);
  CHECK(strstr(last_error(s), "rank") != NULL, "%s: %s", model, last_error(s));
  in.rank = 1;

  /* A symbol may be 0 where the model allows it: an empty input, an empty output. */
  dims[0] = 0;
  CHECK(run(s, &in, 1, &out, 1) == TCC_OK, "%s: %s", model, last_error(s));
  CHECK(out.rank == 1 && out.dims[0] == 0 && out.size == 0, "%s", model);
  memset(&out, 0, sizeof out);
  dims[0] = -4;
  CHECK(run(s, &in, 1, &out, 1) == TCC_ERR_SHAPE, "%s: %s", model, last_error(s));
  dims[0] = 4;

  in.data = NULL;
  CHECK(run(s, &in, 1, &out, 1) == TCC_ERR_INVALID_ARGUMENT, "%s", model);
  in.data = x;
  in.dims = NULL;
  CHECK(run(s, &in, 1, &out, 1) == TCC_ERR_INVALID_ARGUMENT, "%s", model);
  in.dims = dims;

  out.buffer = y;
  out.capacity = 15;
  CHECK(run(s, &in, 1, &out, 1) == TCC_ERR_CAPACITY, "%s", model);
  CHECK(out.size == 16 && out.data == NULL, "%s: size %llu", model,
        (unsigned long long)out.size);
  out.capacity = 16;
  CHECK(run(s, &in, 1, &out, 1) == TCC_OK, "%s: %s", model, last_error(s));
  CHECK(y[3] == 4 + (model[1] == '1' ? 1.0f : 2.0f), "%s: y[3] = %g", model, y[3]);

  CHECK(run(s, &in, 0, &out, 1) == TCC_ERR_INVALID_ARGUMENT, "%s", model);
  CHECK(run(s, &in, 1, &out, 2) == TCC_ERR_INVALID_ARGUMENT, "%s", model);
  CHECK(run(s, NULL, 1, &out, 1) == TCC_ERR_INVALID_ARGUMENT, "%s", model);
  CHECK(run(s, &in, 1, NULL, 1) == TCC_ERR_INVALID_ARGUMENT, "%s", model);
  CHECK(run(NULL, &in, 1, &out, 1) == TCC_ERR_INVALID_ARGUMENT, "%s", model);
  CHECK(strlen(last_error(NULL)) > 0, "%s", model);
}

int main(void) {
  CHECK(m1_num_inputs() == 1 && m1_num_outputs() == 1, "counts");
  CHECK(strcmp(m1_input_name(0), "x") == 0 && strcmp(m2_output_name(0), "y") == 0, "names");
  CHECK(m1_input_name(1) == NULL && m1_output_name(-1) == NULL, "names out of range");
  CHECK(m1_input_dtype(0) == TCC_F32 && m2_output_dtype(0) == TCC_F32, "dtypes");
  CHECK(m1_input_rank(0) == 1 && m1_output_rank(0) == 1 && m1_input_rank(3) == -1, "ranks");
  CHECK(m1_input_dim(0, 0) == -1 && m1_input_dim(0, 1) == -2, "dims");
  CHECK(strcmp(m1_input_dim_symbol(0, 0), "n") == 0 && m1_input_dim_symbol(0, 1) == NULL,
        "symbols");
  CHECK(strcmp(m1_status_string(TCC_OK), "ok") == 0, "status");

  tcc_session *s1 = NULL, *s2 = NULL, *bad = (tcc_session *)1;
  CHECK(m1_session_create(2, &s1) == TCC_OK, "%s", m1_last_error(NULL));
  CHECK(m2_session_create(0, &s2) == TCC_OK, "%s", m2_last_error(NULL));
  CHECK(m1_session_create(1, NULL) == TCC_ERR_INVALID_ARGUMENT, "NULL out");
  (void)bad;
  if (!s1 || !s2) return 1;
  CHECK(m1_session_num_threads(s1) == 2, "threads %d", m1_session_num_threads(s1));
  CHECK(m2_session_num_threads(s2) >= 1, "threads");
  CHECK(strcmp(m1_last_error(s1), "") == 0, "fresh session has no error");

  check_runs("m1", s1, m1_run, m1_last_error, 1.0f);
  check_runs("m2", s2, m2_run, m2_last_error, 2.0f);
  check_errors("m1", s1, m1_run, m1_last_error);
  check_errors("m2", s2, m2_run, m2_last_error);

  /* A session of one model is refused by the other. */
  float x[1] = {5};
  int64_t dims[1] = {1};
  tcc_tensor in = {TCC_F32, 1, dims, x};
  tcc_output out;
  memset(&out, 0, sizeof out);
  CHECK(m2_run(s1, &in, 1, &out, 1) == TCC_ERR_INVALID_ARGUMENT, "foreign session");
  CHECK(strstr(m2_last_error(NULL), "another model") != NULL, "%s", m2_last_error(NULL));
  CHECK(m2_session_num_threads(s1) == -1, "foreign session");
  CHECK(m1_run(s1, &in, 1, &out, 1) == TCC_OK && *(const float *)out.data == 6.0f, "m1");

  m1_session_free(s1);
  m2_session_free(s2);
  m1_session_free(NULL);
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("all checks passed\n");
  return 0;
}
"#;

/// Compiles the C test program against both libraries and returns its path.
fn c_program() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let dir = libraries();
        let source = dir.join("main.c");
        std::fs::write(&source, C_PROGRAM).unwrap();
        let exe = dir.join("main");
        let mut rpath = std::ffi::OsString::from("-Wl,-rpath,");
        rpath.push(dir);
        let output = Command::new("cc")
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
            .arg(dir)
            .arg(&source)
            .arg("-o")
            .arg(&exe)
            .arg("-L")
            .arg(dir)
            .args(["-lm1", "-lm2"])
            .arg(rpath)
            .output()
            .expect("cc runs (a C compiler is installed)");
        assert!(
            output.status.success(),
            "the C test program does not compile:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        exe
    })
    .clone()
}

#[test]
fn a_c_program_uses_both_models_through_their_headers() {
    let output = Command::new(c_program()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the C program failed:\n{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "all checks passed\n"
    );
}

#[test]
fn the_c_program_runs_clean_under_valgrind() {
    let exe = c_program();
    let output = match Command::new("valgrind")
        .args(["--error-exitcode=1", "--leak-check=full", "--quiet"])
        .arg(&exe)
        .output()
    {
        Ok(output) => output,
        Err(e) => panic!(
            "valgrind could not run ({e}); install it (`apt-get install valgrind`, or run \
             scripts/setup.sh)"
        ),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "valgrind reports:\n{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "all checks passed\n"
    );
}

type CreateFn = unsafe extern "C" fn(i32, *mut *mut c_void) -> i32;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type RunFn = unsafe extern "C" fn(*mut c_void, *const Tensor, i32, *mut Output, i32) -> i32;
type ErrorFn = unsafe extern "C" fn(*const c_void) -> *const c_char;

/// A model library loaded with libloading, and its API.
struct Model {
    _library: libloading::Library,
    create: CreateFn,
    free: FreeFn,
    run: RunFn,
    last_error: ErrorFn,
    addend: f32,
}

impl Model {
    fn load(prefix: &str, addend: f32) -> Model {
        let path = libraries().join(format!("lib{prefix}.so"));
        // SAFETY: the library was just linked by this test; its initialisers are the runtime's.
        let library = unsafe { libloading::Library::new(&path) }.unwrap();
        // SAFETY: each symbol is the API function with exactly this signature (see abi::API).
        unsafe {
            let create = *library
                .get::<CreateFn>(format!("{prefix}_session_create").as_bytes())
                .unwrap();
            let free = *library
                .get::<FreeFn>(format!("{prefix}_session_free").as_bytes())
                .unwrap();
            let run = *library
                .get::<RunFn>(format!("{prefix}_run").as_bytes())
                .unwrap();
            let last_error = *library
                .get::<ErrorFn>(format!("{prefix}_last_error").as_bytes())
                .unwrap();
            Model {
                _library: library,
                create,
                free,
                run,
                last_error,
                addend,
            }
        }
    }

    /// Creates a session, runs it `rounds` times at varying sizes, checks every result.
    fn exercise(&self, threads: i32, rounds: usize, seed: usize) {
        let mut session = std::ptr::null_mut();
        // SAFETY: a writable out-pointer.
        assert_eq!(unsafe { (self.create)(threads, &mut session) }, 0);
        for round in 0..rounds {
            let n = 1 + (round * 97 + seed * 31) % 3000;
            let x: Vec<f32> = (0..n).map(|i| (i + seed) as f32 * 0.25).collect();
            let dims = [n as i64];
            let input = Tensor {
                dtype: 1,
                rank: 1,
                dims: dims.as_ptr(),
                data: x.as_ptr().cast(),
            };
            let mut output = Output::SESSION_OWNED;
            // SAFETY: a live session used by this thread only; one input, one output.
            let status = unsafe { (self.run)(session, &input, 1, &mut output, 1) };
            if status != 0 {
                // SAFETY: last_error returns a NUL-terminated string.
                let message = unsafe { CStr::from_ptr((self.last_error)(session)) };
                panic!("run failed ({status}): {message:?}");
            }
            assert_eq!((output.rank, output.dims[0]), (1, n as i64));
            // SAFETY: a successful run leaves n floats at data.
            let y = unsafe { std::slice::from_raw_parts(output.data as *const f32, n) };
            for (i, (&yi, &xi)) in y.iter().zip(&x).enumerate() {
                assert_eq!(yi, xi + self.addend, "n = {n}, element {i}");
            }
        }
        // SAFETY: a live session, freed once.
        unsafe { (self.free)(session) };
    }
}

#[test]
fn sessions_of_both_models_run_concurrently_from_rust() {
    let m1 = Model::load("m1", 1.0);
    let m2 = Model::load("m2", 2.0);
    std::thread::scope(|scope| {
        for t in 0..2 {
            let (m1, m2) = (&m1, &m2);
            scope.spawn(move || m1.exercise(2, 60, t));
            scope.spawn(move || m2.exercise(2, 60, t + 10));
        }
    });
}

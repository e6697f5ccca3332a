//! The C API over a fake model: successful runs at several sizes with caller-owned and
//! session-owned outputs, every validation error, the interface queries, arena growth and
//! several sessions running at once.

mod fake;

use std::ffi::c_void;
use std::ptr;

use fake::*;
use tcc_runtime::abi::{Dtype, ModelDesc, Output, Status, Tensor, ABI_VERSION};
use tcc_runtime::api::*;

/// `(batch, seq)`; a symbol may be 0 (an empty batch or sequence: outputs with no elements,
/// which the model's own size checks allow or refuse).
const SIZES: [(i64, i64); 7] = [(1, 1), (2, 3), (4, 17), (3, 100), (7, 5), (3, 0), (0, 4)];

/// Runs `desc` and returns the status.
fn run(session: *mut Session, inputs: &[Tensor], outputs: &mut [Output]) -> i32 {
    // SAFETY: the test passes a live session, arrays of the stated lengths and buffers that
    // hold what their capacities say.
    unsafe {
        tcc_rt_run(
            &DESC,
            session,
            inputs.as_ptr(),
            inputs.len() as i32,
            outputs.as_mut_ptr(),
            outputs.len() as i32,
        )
    }
}

fn free(desc: &ModelDesc, session: *mut Session) {
    // SAFETY: a live session with no call in progress.
    unsafe { tcc_rt_session_free(desc, session) };
}

/// Runs the fake model with bad inputs made by `spoil` and checks the status and message.
fn expect_error(
    status: Status,
    words: &[&str],
    spoil: impl FnOnce(&mut [Tensor; 2], &mut [Output; 2]),
) {
    let session = session(&DESC, 2);
    let (batch, seq) = (3, 4);
    let x = x_values(batch, seq, 1);
    let ids = ids_values(batch, 1);
    let (x_dims, ids_dims) = ([batch, seq, 2], [batch]);
    let mut inputs = tensors(&x, &x_dims, &ids, &ids_dims);
    let mut outputs = [Output::SESSION_OWNED; 2];
    spoil(&mut inputs, &mut outputs);
    let got = run(session, &inputs, &mut outputs);
    let message = session_error(&DESC, session);
    assert_eq!(got, status as i32, "{message}");
    for word in words {
        assert!(message.contains(word), "`{word}` not in: {message}");
    }
    assert!(
        outputs.iter().all(|o| o.data.is_null()),
        "a failed run left output data"
    );
    // The session still works after a failure.
    let inputs = tensors(&x, &x_dims, &ids, &ids_dims);
    let mut outputs = [Output::SESSION_OWNED; 2];
    assert_eq!(run(session, &inputs, &mut outputs), 0);
    check_outputs(batch, seq, &x, &ids, &outputs);
    free(&DESC, session);
}

#[test]
fn runs_at_several_sizes_with_session_owned_outputs() {
    for threads in [1, 2, 3] {
        let session = session(&DESC, threads);
        for (seed, &(batch, seq)) in SIZES.iter().enumerate() {
            let x = x_values(batch, seq, seed as u32);
            let ids = ids_values(batch, seed as u32);
            let (x_dims, ids_dims) = ([batch, seq, 2], [batch]);
            let inputs = tensors(&x, &x_dims, &ids, &ids_dims);
            let mut outputs = [Output::SESSION_OWNED; 2];
            let status = run(session, &inputs, &mut outputs);
            assert_eq!(status, 0, "{}", session_error(&DESC, session));
            check_outputs(batch, seq, &x, &ids, &outputs);
            for out in &outputs {
                assert_eq!(
                    out.data as usize % 64,
                    0,
                    "session outputs are 64-byte aligned"
                );
                assert!(out.buffer.is_null(), "run leaves the caller's fields alone");
            }
        }
        free(&DESC, session);
    }
}

#[test]
fn runs_at_several_sizes_with_caller_owned_outputs() {
    let session = session(&DESC, 2);
    for (seed, &(batch, seq)) in SIZES.iter().enumerate() {
        let x = x_values(batch, seq, seed as u32 + 10);
        let ids = ids_values(batch, seed as u32 + 10);
        let (x_dims, ids_dims) = ([batch, seq, 2], [batch]);
        let inputs = tensors(&x, &x_dims, &ids, &ids_dims);
        let n = (batch * seq * 2) as usize;
        // One element more than needed: capacity may exceed the size.
        let mut y = vec![f32::NAN; n + 1];
        let mut s = vec![-1i64; n];
        let mut outputs = [
            Output::caller_owned(y.as_mut_ptr().cast(), ((n + 1) * 4) as u64),
            Output::caller_owned(s.as_mut_ptr().cast(), (n * 8) as u64),
        ];
        assert_eq!(run(session, &inputs, &mut outputs), 0);
        assert_eq!(outputs[0].data, y.as_mut_ptr().cast::<c_void>());
        assert_eq!(outputs[1].data, s.as_mut_ptr().cast::<c_void>());
        check_outputs(batch, seq, &x, &ids, &outputs);
        assert!(y[n].is_nan(), "run wrote past the output");
    }
    free(&DESC, session);
}

#[test]
fn mixed_ownership_and_reused_output_structs() {
    let session = session(&DESC, 2);
    let (batch, seq) = (2, 5);
    let x = x_values(batch, seq, 3);
    let ids = ids_values(batch, 3);
    let (x_dims, ids_dims) = ([batch, seq, 2], [batch]);
    let inputs = tensors(&x, &x_dims, &ids, &ids_dims);
    let mut s = vec![0i64; 20];
    let mut outputs = [
        Output::SESSION_OWNED,
        Output::caller_owned(s.as_mut_ptr().cast(), 160),
    ];
    for _ in 0..3 {
        // The same structs serve every run: run never changes `buffer` or `capacity`.
        assert_eq!(run(session, &inputs, &mut outputs), 0);
        check_outputs(batch, seq, &x, &ids, &outputs);
        assert!(outputs[0].buffer.is_null());
        assert_eq!(outputs[1].data, s.as_mut_ptr().cast::<c_void>());
    }
    free(&DESC, session);
}

#[test]
fn a_too_small_buffer_reports_the_size_needed_so_the_caller_can_retry() {
    let session = session(&DESC, 2);
    let (batch, seq) = (2, 3);
    let x = x_values(batch, seq, 4);
    let ids = ids_values(batch, 4);
    let (x_dims, ids_dims) = ([batch, seq, 2], [batch]);
    let inputs = tensors(&x, &x_dims, &ids, &ids_dims);
    let mut y = vec![0f32; 12];
    let mut s = vec![0i64; 11];
    let mut outputs = [
        Output::caller_owned(y.as_mut_ptr().cast(), 48),
        Output::caller_owned(s.as_mut_ptr().cast(), 88),
    ];
    assert_eq!(run(session, &inputs, &mut outputs), Status::Capacity as i32);
    let message = session_error(&DESC, session);
    assert!(
        message.contains("`s`") && message.contains("96") && message.contains("88"),
        "{message}"
    );
    assert_eq!(outputs[1].size, 96);
    assert_eq!(outputs[1].shape(), [2, 6]);
    assert!(outputs.iter().all(|o| o.data.is_null()));
    s.resize(outputs[1].size as usize / 8, 0);
    outputs[1] = Output::caller_owned(s.as_mut_ptr().cast(), 96);
    assert_eq!(run(session, &inputs, &mut outputs), 0);
    check_outputs(batch, seq, &x, &ids, &outputs);
    free(&DESC, session);
}

#[test]
fn wrong_dtype() {
    expect_error(Status::Dtype, &["input 0", "`x`", "f32", "f64"], |i, _| {
        i[0].dtype = Dtype::F64 as i32;
    });
    expect_error(Status::Dtype, &["input 1", "`ids`", "code 77"], |i, _| {
        i[1].dtype = 77;
    });
}

#[test]
fn wrong_rank() {
    static DIMS: [i64; 2] = [3, 4];
    expect_error(Status::Shape, &["input 0", "rank 3", "got 2"], |i, _| {
        i[0].rank = 2;
        i[0].dims = DIMS.as_ptr();
    });
    expect_error(Status::Shape, &["input 1", "rank 1", "got -1"], |i, _| {
        i[1].rank = -1;
    });
}

#[test]
fn wrong_fixed_dim() {
    static DIMS: [i64; 3] = [3, 4, 3];
    expect_error(
        Status::Shape,
        &["input 0", "axis 2 must be 2, got 3"],
        |i, _| {
            i[0].dims = DIMS.as_ptr();
        },
    );
}

#[test]
fn negative_dim() {
    static DIMS: [i64; 3] = [3, -4, 2];
    expect_error(Status::Shape, &["axis 1 is negative"], |i, _| {
        i[0].dims = DIMS.as_ptr();
    });
}

#[test]
fn inconsistent_symbol() {
    static DIMS: [i64; 1] = [2];
    expect_error(
        Status::Shape,
        &[
            "input 1 (`ids`) axis 0 is 2",
            "`batch` is 3",
            "input 0 (`x`) axis 0",
        ],
        |i, _| i[1].dims = DIMS.as_ptr(),
    );
}

#[test]
fn null_data_or_dims() {
    expect_error(
        Status::InvalidArgument,
        &["input 1", "NULL pointer"],
        |i, _| {
            i[1].data = ptr::null();
        },
    );
    expect_error(
        Status::InvalidArgument,
        &["input 0", "NULL dims"],
        |i, _| {
            i[0].dims = ptr::null();
        },
    );
}

#[test]
fn misaligned_data_or_dims() {
    expect_error(
        Status::InvalidArgument,
        &["input 0", "aligned to 4"],
        |i, _| {
            i[0].data = i[0].data.cast::<u8>().wrapping_add(2).cast();
        },
    );
    expect_error(
        Status::InvalidArgument,
        &["input 1", "dims pointer", "aligned to 8"],
        |i, _| {
            i[1].dims = i[1].dims.cast::<u8>().wrapping_add(1).cast();
        },
    );
}

#[test]
fn too_small_or_misaligned_or_overlapping_outputs() {
    let mut y = vec![0f32; 64];
    let mut s = vec![0i64; 64];
    let (yp, sp) = (y.as_mut_ptr(), s.as_mut_ptr());
    expect_error(
        Status::Capacity,
        &["output 0", "`y`", "96 bytes", "holds 95"],
        |_, o| {
            o[0] = Output::caller_owned(yp.cast(), 95);
        },
    );
    expect_error(
        Status::InvalidArgument,
        &["output 1", "aligned to 8"],
        |_, o| {
            o[1] = Output::caller_owned(sp.cast::<u8>().wrapping_add(4).cast(), 256);
        },
    );
    expect_error(
        Status::InvalidArgument,
        &["output 0", "overlaps input 0"],
        |i, o| {
            o[0] =
                Output::caller_owned(i[0].data.cast_mut().cast::<u8>().wrapping_add(4).cast(), 96);
        },
    );
    expect_error(
        Status::InvalidArgument,
        &["output 1", "overlaps output 0"],
        |_, o| {
            o[0] = Output::caller_owned(sp.cast(), 96);
            o[1] = Output::caller_owned(sp.wrapping_add(4).cast(), 192);
        },
    );
    drop((y, s));
}

#[test]
fn wrong_counts_and_null_arrays() {
    let session = session(&DESC, 1);
    let x = x_values(1, 1, 0);
    let ids = ids_values(1, 0);
    let inputs = tensors(&x, &[1, 1, 2], &ids, &[1]);
    let mut outputs = [Output::SESSION_OWNED; 3];
    // SAFETY: the arrays hold at least the counts given.
    let calls: [(i32, i32, bool, bool); 5] = [
        (1, 2, false, false),
        (2, 1, false, false),
        (2, 3, false, false),
        (2, 2, true, false),
        (2, 2, false, true),
    ];
    for (n_in, n_out, null_in, null_out) in calls {
        let inputs_ptr = if null_in {
            ptr::null()
        } else {
            inputs.as_ptr()
        };
        let outputs_ptr = if null_out {
            ptr::null_mut()
        } else {
            outputs.as_mut_ptr()
        };
        // SAFETY: non-NULL arrays hold at least the counts given.
        let status = unsafe { tcc_rt_run(&DESC, session, inputs_ptr, n_in, outputs_ptr, n_out) };
        let message = session_error(&DESC, session);
        assert_eq!(status, Status::InvalidArgument as i32, "{message}");
        if null_in || null_out {
            assert!(message.contains("NULL"), "{message}");
        } else {
            assert!(
                message.contains(&format!("gives {n_in} and {n_out}")),
                "{message}"
            );
        }
    }
    free(&DESC, session);
}

#[test]
fn null_and_foreign_sessions_are_refused() {
    let x = x_values(1, 1, 0);
    let ids = ids_values(1, 0);
    let inputs = tensors(&x, &[1, 1, 2], &ids, &[1]);
    let mut outputs = [Output::SESSION_OWNED; 2];
    assert_eq!(
        run(ptr::null_mut(), &inputs, &mut outputs),
        Status::InvalidArgument as i32
    );
    assert!(thread_error().contains("NULL"), "{}", thread_error());

    // A session of another model is refused by every call, and not freed.
    let other = session(&EMPTY_DESC, 1);
    assert_eq!(
        run(other, &inputs, &mut outputs),
        Status::InvalidArgument as i32
    );
    assert!(
        thread_error().contains("another model"),
        "{}",
        thread_error()
    );
    // SAFETY: a live session (of another model).
    assert_eq!(unsafe { tcc_rt_session_num_threads(&DESC, other) }, -1);
    free(&DESC, other);
    // SAFETY: still live: the foreign free was refused.
    assert_eq!(unsafe { tcc_rt_session_num_threads(&EMPTY_DESC, other) }, 1);
    free(&EMPTY_DESC, other);
    // Freeing NULL is a no-op.
    free(&DESC, ptr::null_mut());
    // SAFETY: NULL is allowed.
    assert_eq!(
        unsafe { tcc_rt_session_num_threads(&DESC, ptr::null()) },
        -1
    );
}

#[test]
fn a_failing_model_is_an_internal_error() {
    expect_error(Status::Internal, &["failed with code 42"], |i, _| {
        static IDS: [i64; 3] = [FAIL_ID, 0, 0];
        i[1].data = IDS.as_ptr().cast();
    });
}

#[test]
fn run_codes_for_bad_indices_and_disagreeing_sizes_are_input_errors() {
    expect_error(
        Status::InvalidArgument,
        &["index", "out of range"],
        |i, _| {
            static IDS: [i64; 3] = [INDEX_ID, 0, 0];
            i[1].data = IDS.as_ptr().cast();
        },
    );
    expect_error(Status::Shape, &["sizes do not fit together"], |i, _| {
        static IDS: [i64; 3] = [SIZES_ID, 0, 0];
        i[1].data = IDS.as_ptr().cast();
    });
}

#[test]
fn a_failed_size_check_is_a_shape_error_with_its_values_and_the_symbols() {
    let session = session(&DESC, 2);
    let (batch, seq) = (3, REFUSED_SEQ);
    let x = x_values(batch, seq, 1);
    let ids = ids_values(batch, 1);
    let (x_dims, ids_dims) = ([batch, seq, 2], [batch]);
    let inputs = tensors(&x, &x_dims, &ids, &ids_dims);
    let mut outputs = [Output::SESSION_OWNED; 2];
    assert_eq!(run(session, &inputs, &mut outputs), Status::Shape as i32);
    assert_eq!(
        session_error(&DESC, session),
        "fake check: seq is 99, which the model refuses ({2^63 or more} -7; {x} {99} stay) \
         (with batch = 3, seq = 99)"
    );
    assert!(outputs.iter().all(|o| o.data.is_null()));
    // Other sizes pass the check.
    let x = x_values(batch, 4, 1);
    let x_dims = [batch, 4, 2];
    let inputs = tensors(&x, &x_dims, &ids, &ids_dims);
    assert_eq!(run(session, &inputs, &mut outputs), Status::Ok as i32);
    free(&DESC, session);
}

#[test]
fn errors_stay_until_the_next_failure_and_sessions_keep_their_own() {
    let a = session(&DESC, 1);
    let b = session(&DESC, 1);
    assert_eq!(session_error(&DESC, a), "");
    let x = x_values(1, 1, 0);
    let ids = ids_values(1, 0);
    let mut inputs = tensors(&x, &[1, 1, 2], &ids, &[1]);
    inputs[0].dtype = Dtype::I8 as i32;
    let mut outputs = [Output::SESSION_OWNED; 2];
    assert_eq!(run(a, &inputs, &mut outputs), Status::Dtype as i32);
    let message = session_error(&DESC, a);
    assert!(message.contains("i8"), "{message}");
    assert_eq!(session_error(&DESC, b), "", "b has no error");
    inputs[0].dtype = Dtype::F32 as i32;
    assert_eq!(run(a, &inputs, &mut outputs), 0);
    assert_eq!(
        session_error(&DESC, a),
        message,
        "success does not clear the message"
    );
    free(&DESC, a);
    free(&DESC, b);
}

#[test]
fn empty_inputs_may_have_null_data() {
    let session = session(&EMPTY_DESC, 2);
    for n in [1, 5] {
        let dims = [n, 0];
        let inputs = [Tensor {
            dtype: Dtype::F32 as i32,
            rank: 2,
            dims: dims.as_ptr(),
            data: ptr::null(),
        }];
        let mut outputs = [Output::SESSION_OWNED];
        // SAFETY: one input and one output, as given.
        let status = unsafe {
            tcc_rt_run(
                &EMPTY_DESC,
                session,
                inputs.as_ptr(),
                1,
                outputs.as_mut_ptr(),
                1,
            )
        };
        assert_eq!(status, 0, "{}", session_error(&EMPTY_DESC, session));
        // SAFETY: a successful run leaves one i64 at data.
        assert_eq!(unsafe { *(outputs[0].data as *const i64) }, n);
    }
    free(&EMPTY_DESC, session);
}

#[test]
fn the_arena_grows_only_when_a_run_needs_more() {
    let session = session(&DESC, 2);
    let mut history = Vec::new();
    for (batch, seq) in [(2, 4), (1, 4), (2, 4), (4, 8), (2, 2), (4, 8), (5, 8)] {
        let x = x_values(batch, seq, 0);
        let ids = ids_values(batch, 0);
        let (x_dims, ids_dims) = ([batch, seq, 2], [batch]);
        let inputs = tensors(&x, &x_dims, &ids, &ids_dims);
        let mut outputs = [Output::SESSION_OWNED; 2];
        assert_eq!(run(session, &inputs, &mut outputs), 0);
        check_outputs(batch, seq, &x, &ids, &outputs);
        // SAFETY: a live session, used by this thread only.
        let arena = unsafe { &*session }.arena();
        assert!(arena.capacity() as i64 >= batch * seq * 8);
        history.push((arena.capacity(), arena.grows()));
    }
    // 64, then 256 bytes (4 * 8 * 8), then 320: three allocations, each only when needed.
    assert_eq!(
        history,
        [
            (64, 1),
            (64, 1),
            (64, 1),
            (256, 2),
            (256, 2),
            (256, 2),
            (320, 3)
        ]
    );
    free(&DESC, session);
}

#[test]
fn the_interface_queries_describe_the_model() {
    // SAFETY: a valid descriptor; every returned string is NUL-terminated or NULL.
    unsafe {
        assert_eq!(tcc_rt_num_inputs(&DESC), 2);
        assert_eq!(tcc_rt_num_outputs(&DESC), 2);
        assert_eq!(c_string(tcc_rt_input_name(&DESC, 0)), "x");
        assert_eq!(c_string(tcc_rt_input_name(&DESC, 1)), "ids");
        assert_eq!(c_string(tcc_rt_output_name(&DESC, 0)), "y");
        assert_eq!(c_string(tcc_rt_output_name(&DESC, 1)), "s");
        assert_eq!(tcc_rt_input_dtype(&DESC, 1), Dtype::I64 as i32);
        assert_eq!(tcc_rt_output_dtype(&DESC, 0), Dtype::F32 as i32);
        assert_eq!(tcc_rt_input_rank(&DESC, 0), 3);
        assert_eq!(tcc_rt_output_rank(&DESC, 1), 2);
        assert_eq!(tcc_rt_input_dim(&DESC, 0, 0), -1);
        assert_eq!(tcc_rt_input_dim(&DESC, 0, 2), 2);
        assert_eq!(c_string(tcc_rt_input_dim_symbol(&DESC, 0, 0)), "batch");
        assert_eq!(c_string(tcc_rt_input_dim_symbol(&DESC, 0, 1)), "seq");
        assert_eq!(c_string(tcc_rt_input_dim_symbol(&DESC, 1, 0)), "batch");
        assert!(
            tcc_rt_input_dim_symbol(&DESC, 0, 2).is_null(),
            "a fixed axis has no symbol"
        );
        // Outputs: y[batch, seq, 2], s[batch, 2 * seq] (a computed dim: no symbol).
        assert_eq!(tcc_rt_output_dim(&DESC, 0, 0), -1);
        assert_eq!(tcc_rt_output_dim(&DESC, 0, 2), 2);
        assert_eq!(c_string(tcc_rt_output_dim_symbol(&DESC, 0, 1)), "seq");
        assert!(tcc_rt_output_dim_symbol(&DESC, 0, 2).is_null());
        assert_eq!(c_string(tcc_rt_output_dim_symbol(&DESC, 1, 0)), "batch");
        assert_eq!(tcc_rt_output_dim(&DESC, 1, 1), -1);
        assert!(
            tcc_rt_output_dim_symbol(&DESC, 1, 1).is_null(),
            "a computed dim has no symbol"
        );

        // Out of range.
        assert!(tcc_rt_input_name(&DESC, 2).is_null());
        assert!(
            thread_error().contains("input index 2"),
            "{}",
            thread_error()
        );
        assert!(tcc_rt_output_name(&DESC, -1).is_null());
        assert_eq!(tcc_rt_input_dtype(&DESC, 5), 0);
        assert_eq!(tcc_rt_output_dtype(&DESC, 2), 0);
        assert_eq!(tcc_rt_input_rank(&DESC, -3), -1);
        assert_eq!(tcc_rt_output_rank(&DESC, 9), -1);
        assert_eq!(tcc_rt_input_dim(&DESC, 0, 3), -2);
        assert!(thread_error().contains("axis 3"), "{}", thread_error());
        assert_eq!(tcc_rt_input_dim(&DESC, 2, 0), -2);
        assert!(tcc_rt_input_dim_symbol(&DESC, 1, 1).is_null());
        assert_eq!(tcc_rt_output_dim(&DESC, 1, 2), -2);
        assert!(
            thread_error().contains("axis 2 of output 1"),
            "{}",
            thread_error()
        );
        assert_eq!(tcc_rt_output_dim(&DESC, 2, 0), -2);
        assert!(tcc_rt_output_dim_symbol(&DESC, 2, 0).is_null());
    }
}

#[test]
fn status_strings() {
    for status in Status::ALL {
        // SAFETY: status strings are static and NUL-terminated.
        let text = unsafe { c_string(tcc_rt_status_string(&DESC, status as i32)) };
        assert!(!text.is_empty());
    }
    // SAFETY: as above.
    let ok = unsafe { c_string(tcc_rt_status_string(&DESC, 0)) };
    assert_eq!(ok, "ok");
    // SAFETY: as above.
    let unknown = unsafe { c_string(tcc_rt_status_string(&DESC, 99)) };
    assert_eq!(unknown, "unknown status");
}

#[test]
fn session_create_checks_its_arguments_and_the_descriptor() {
    // SAFETY: a NULL out-pointer is refused before anything is written.
    let status = unsafe { tcc_rt_session_create(&DESC, 1, ptr::null_mut()) };
    assert_eq!(status, Status::InvalidArgument as i32);

    let mut session = std::ptr::NonNull::<Session>::dangling().as_ptr();
    // SAFETY: NULL descriptor, writable out-pointer.
    let status = unsafe { tcc_rt_session_create(ptr::null(), 1, &mut session) };
    assert_eq!(status, Status::InvalidArgument as i32);
    assert!(session.is_null(), "a failed create stores NULL");

    let bad_version = ModelDesc {
        abi_version: ABI_VERSION + 1,
        ..DESC
    };
    let no_run = ModelDesc { run: None, ..DESC };
    let no_checks = ModelDesc {
        check_sizes: None,
        ..DESC
    };
    let too_many_symbols = ModelDesc {
        n_symbols: 1,
        ..DESC
    };
    let unbound_symbol = ModelDesc {
        n_inputs: 0,
        ..DESC
    };
    for (desc, words) in [
        (&bad_version, "ABI version 3"),
        (&no_checks, "NULL function"),
        (&no_run, "NULL function"),
        (&too_many_symbols, "symbol 1 of 1"),
        (&unbound_symbol, "symbol 0 is not a dim of any input"),
    ] {
        // SAFETY: the descriptors' tables are valid for the counts they state.
        let status = unsafe { tcc_rt_session_create(desc, 1, &mut session) };
        assert_eq!(status, Status::Internal as i32);
        assert!(thread_error().contains(words), "{}", thread_error());
        assert!(session.is_null());
    }
}

#[test]
fn an_explicit_thread_count_is_used() {
    for threads in [1, 2, 4] {
        let session = session(&DESC, threads);
        // SAFETY: a live session.
        assert_eq!(
            unsafe { tcc_rt_session_num_threads(&DESC, session) },
            threads
        );
        free(&DESC, session);
    }
}

#[test]
fn several_sessions_run_at_once_on_different_threads() {
    let handles: Vec<_> = (0..4u32)
        .map(|t| {
            std::thread::spawn(move || {
                let session = session(&DESC, 2);
                for round in 0..40u32 {
                    let (batch, seq) =
                        (1 + i64::from((t + round) % 5), 1 + i64::from(round % 7) * 3);
                    let x = x_values(batch, seq, t * 100 + round);
                    let ids = ids_values(batch, t * 100 + round);
                    let (x_dims, ids_dims) = ([batch, seq, 2], [batch]);
                    let inputs = tensors(&x, &x_dims, &ids, &ids_dims);
                    let mut outputs = [Output::SESSION_OWNED; 2];
                    assert_eq!(run(session, &inputs, &mut outputs), 0);
                    check_outputs(batch, seq, &x, &ids, &outputs);
                }
                free(&DESC, session);
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("a session thread failed");
    }
}

//! `TCC_NUM_THREADS` sets the default thread count of new sessions; an explicit count wins;
//! an invalid value is an error naming it. This is the only test in its binary because it
//! changes the process environment.

mod fake;

use fake::{session, thread_error, DESC};
use tcc_runtime::abi::Status;
use tcc_runtime::api::{tcc_rt_session_create, tcc_rt_session_free, tcc_rt_session_num_threads};
use tcc_runtime::pool::ENV_NUM_THREADS;

fn threads_of(requested: i32) -> i32 {
    let session = session(&DESC, requested);
    // SAFETY: a live session, then freed once.
    unsafe {
        let n = tcc_rt_session_num_threads(&DESC, session);
        tcc_rt_session_free(&DESC, session);
        n
    }
}

#[test]
fn the_environment_sets_the_default_thread_count() {
    std::env::remove_var(ENV_NUM_THREADS);
    let default = threads_of(0);
    let available = std::thread::available_parallelism().unwrap().get() as i32;
    assert!((1..=available).contains(&default), "{default}");
    assert_eq!(
        threads_of(-1),
        default,
        "any non-positive count is the default"
    );

    std::env::set_var(ENV_NUM_THREADS, "3");
    assert_eq!(threads_of(0), 3);
    assert_eq!(threads_of(2), 2, "an explicit count wins");

    std::env::set_var(ENV_NUM_THREADS, "lots");
    let mut session = std::ptr::null_mut();
    // SAFETY: a valid descriptor and out-pointer.
    let status = unsafe { tcc_rt_session_create(&DESC, 0, &mut session) };
    assert_eq!(status, Status::InvalidArgument as i32);
    assert!(session.is_null());
    let message = thread_error();
    assert!(
        message.contains(ENV_NUM_THREADS) && message.contains("lots"),
        "{message}"
    );
    assert_eq!(threads_of(1), 1, "an explicit count does not read it");

    std::env::remove_var(ENV_NUM_THREADS);
    assert_eq!(threads_of(0), default);
}

//! `parallel_for` covers every index exactly once, for any thread count, through the pool and
//! through the C entry point; nested calls run serially instead of deadlocking.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use tcc_runtime::abi::RtPool;
use tcc_runtime::api::{tcc_rt_num_threads, tcc_rt_parallel_for};
use tcc_runtime::pool::Pool;

/// Counts calls per index, and which threads made them.
struct Counts {
    hits: Vec<AtomicU32>,
    threads: std::sync::Mutex<Vec<std::thread::ThreadId>>,
}

impl Counts {
    fn new(n: usize) -> Counts {
        Counts {
            hits: (0..n).map(|_| AtomicU32::new(0)).collect(),
            threads: std::sync::Mutex::new(Vec::new()),
        }
    }
}

unsafe extern "C" fn count(ctx: *mut c_void, i: i64) {
    // SAFETY: `ctx` is the `Counts` of the running test, shared by reference only.
    let counts = unsafe { &*(ctx as *const Counts) };
    counts.hits[i as usize].fetch_add(1, Ordering::Relaxed);
    let id = std::thread::current().id();
    let mut threads = counts.threads.lock().unwrap();
    if !threads.contains(&id) {
        threads.push(id);
    }
    drop(threads);
    // A little work so that other threads get a share of the indices.
    std::hint::black_box((0..200).sum::<u64>());
}

fn ctx(counts: &Counts) -> *mut c_void {
    counts as *const Counts as *mut c_void
}

#[test]
fn every_index_exactly_once() {
    for threads in 1..=4 {
        let pool = Pool::new(threads).unwrap();
        assert_eq!(pool.num_threads(), threads);
        for n in [0usize, 1, 2, 1000] {
            // Several calls on one pool: the workers serve job after job.
            for round in 0..3 {
                let counts = Counts::new(n);
                // SAFETY: `count` may be called for any index below n from any thread.
                unsafe { pool.parallel_for(n as i64, Some(count), ctx(&counts)) };
                for (i, hits) in counts.hits.iter().enumerate() {
                    assert_eq!(
                        hits.load(Ordering::Relaxed),
                        1,
                        "threads {threads}, n {n}, round {round}, index {i}"
                    );
                }
                let used = counts.threads.lock().unwrap().len();
                assert!(used <= threads, "{used} threads used of {threads}");
            }
        }
    }
}

#[test]
fn the_c_entry_point_covers_every_index_too_and_a_null_pool_runs_serially() {
    let pool = Pool::new(3).unwrap();
    let raw = &pool as *const Pool as *mut RtPool;
    // SAFETY: `raw` points to a live pool.
    assert_eq!(unsafe { tcc_rt_num_threads(raw) }, 3);
    // SAFETY: NULL is allowed.
    assert_eq!(unsafe { tcc_rt_num_threads(std::ptr::null()) }, 1);
    for pool in [raw, std::ptr::null_mut()] {
        for n in [0, 1, 2, 1000] {
            let counts = Counts::new(n);
            // SAFETY: a live pool or NULL; `count` is valid for every index below n.
            unsafe { tcc_rt_parallel_for(pool, n as i64, Some(count), ctx(&counts)) };
            assert!(counts.hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }
}

#[test]
fn negative_counts_and_null_tasks_do_nothing() {
    let pool = Pool::new(2).unwrap();
    let counts = Counts::new(4);
    // SAFETY: nothing is called for a negative count or without a task.
    unsafe {
        pool.parallel_for(-5, Some(count), ctx(&counts));
        pool.parallel_for(4, None, ctx(&counts));
        tcc_rt_parallel_for(std::ptr::null_mut(), -1, Some(count), ctx(&counts));
    }
    assert!(counts.hits.iter().all(|h| h.load(Ordering::Relaxed) == 0));
}

#[test]
fn large_jobs_use_more_than_one_thread() {
    let pool = Pool::new(2).unwrap();
    // Work long enough (each index yields) that the worker surely wakes before it is all done.
    unsafe extern "C" fn slow(ctx: *mut c_void, i: i64) {
        // SAFETY: as in `count`.
        unsafe { count(ctx, i) };
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    let counts = Counts::new(200);
    // SAFETY: `slow` is valid for every index below 200.
    unsafe { pool.parallel_for(200, Some(slow), ctx(&counts)) };
    assert!(counts.hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
    assert_eq!(counts.threads.lock().unwrap().len(), 2);
}

/// The context of the nested test: the pool and a counter of inner calls.
struct Nested {
    pool: *const Pool,
    inner: AtomicUsize,
}

unsafe extern "C" fn inner(ctx: *mut c_void, _i: i64) {
    // SAFETY: `ctx` is the test's `Nested`.
    unsafe { &*(ctx as *const Nested) }
        .inner
        .fetch_add(1, Ordering::Relaxed);
}

unsafe extern "C" fn outer(ctx: *mut c_void, _i: i64) {
    // SAFETY: `ctx` is the test's `Nested`, whose pool outlives the call.
    unsafe {
        let nested = &*(ctx as *const Nested);
        tcc_rt_parallel_for(nested.pool as *mut RtPool, 10, Some(inner), ctx);
    }
}

#[test]
fn nested_calls_run_serially_instead_of_deadlocking() {
    let pool = Pool::new(3).unwrap();
    let nested = Nested {
        pool: &pool,
        inner: AtomicUsize::new(0),
    };
    // SAFETY: `outer` is valid for every index and its context outlives the call.
    unsafe { pool.parallel_for(50, Some(outer), &nested as *const Nested as *mut c_void) };
    assert_eq!(nested.inner.load(Ordering::Relaxed), 500);
}

#[test]
fn pools_shut_down_cleanly_many_times() {
    for threads in 1..=4 {
        for _ in 0..20 {
            let pool = Pool::new(threads).unwrap();
            let counts = Counts::new(16);
            // SAFETY: `count` is valid for every index below 16.
            unsafe { pool.parallel_for(16, Some(count), ctx(&counts)) };
            drop(pool);
            assert!(counts.hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
        // A pool that never ran a job shuts down too.
        drop(Pool::new(threads).unwrap());
    }
}

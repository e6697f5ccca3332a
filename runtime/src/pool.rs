//! A persistent thread pool per session, and `parallel_for` over it.
//!
//! A pool of `t` threads is the caller's thread plus `t - 1` workers spawned when the session is
//! created and joined when it is freed. [`Pool::parallel_for`] publishes one job (the task, its
//! context, the index count), takes part itself, and returns once every worker has reported
//! that it is done with the job. The indices are cut into one contiguous block per thread
//! (thread 0 is the caller); each thread claims chunks of its own block from the block's atomic
//! counter, then those left in the other blocks, so threads that finish early take more work.
//! Own blocks first keep each thread on the same part of the data from one step to the next
//! (a model's steps split their rows alike), where the cache of its own core holds what it
//! wrote: on an Intel Xeon, reading half of a GEMM's rows from the other core's cache cost
//! several percent of a model's run.
//!
//! A model run is a sequence of short parallel steps (tens of microseconds each), so handing a
//! job over must cost far less than a futex wake-up, which in a virtual machine can take as
//! long as a step. Both sides therefore spin before they block: a worker that has finished a
//! job watches the job counter for [`SPIN`] before it sleeps on a condition variable, and the
//! publisher watches the count of unfinished workers for as long before it sleeps. Within a
//! run the workers never sleep; an idle session's workers sleep after [`SPIN`]. Spinning
//! first busy-waits with the CPU's pause hint, then yields the core to other threads, so an
//! oversubscribed machine (more runnable threads than cores) still makes progress.
//!
//! Sleeping without losing a wake-up: a worker registers in `sleepers` and re-checks the job
//! counter while holding the mutex; the publisher bumps the counter, then takes the mutex to
//! notify if it sees a sleeper (all sequentially consistent, so one of the two sees the
//! other's write). Completion uses the same handshake with `waiting` and `done`.
//!
//! The hot path allocates nothing and takes no lock. A nested call (a task calling
//! `parallel_for` on the same pool) or a concurrent one (two threads sharing a session, which
//! the contract forbids) finds the pool busy and runs its loop serially on the calling thread
//! instead of deadlocking.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::abi::{TaskFn, MAX_THREADS};

/// The environment variable that sets the default thread count.
pub const ENV_NUM_THREADS: &str = "TCC_NUM_THREADS";

/// How many chunks per thread `parallel_for` aims for: more balances uneven tasks better,
/// fewer costs fewer atomic operations.
const CHUNKS_PER_THREAD: u64 = 4;

/// How long a thread waits actively (for a new job, or for the workers to finish one) before
/// it sleeps.
pub const SPIN: Duration = Duration::from_millis(2);

/// Busy-wait rounds (each a pause hint) before spinning yields the core between checks. Few:
/// when another process takes a core, a worker and the publisher can share the other one, and
/// then every hand-over waits for the spinning side to give up the core. With 4096 rounds
/// (about 0.1 ms each way) a two-layer model's run took 1.3 ms instead of 0.09 on a loaded
/// 2-core machine, in every run of the processes where the scheduler had put both threads on
/// one core; with 64 rounds, 0.1 ms in all. An idle core's sched_yield returns at once, so
/// yielding early costs a system call per check, not a wake-up.
const PAUSE_ROUNDS: u32 = 1 << 6;

/// One `parallel_for` call, as the workers see it.
#[derive(Clone, Copy)]
struct Job {
    task: Option<TaskFn>,
    ctx: *mut c_void,
    n: u64,
    chunk: u64,
}

// SAFETY: the C contract of `tcc_rt_parallel_for` is that `task(ctx, i)` may be called from
// any thread, concurrently; `ctx` is only used while the publishing call waits for the job.
unsafe impl Send for Job {}

impl Job {
    const NONE: Job = Job {
        task: None,
        ctx: std::ptr::null_mut(),
        n: 0,
        chunk: 1,
    };

    /// Runs the job as thread `me` of `blocks.len()`: first the chunks of its own block of
    /// indices, then whatever is left of the other threads' blocks, in turn after its own.
    fn work(&self, me: usize, blocks: &[Block]) {
        let Some(task) = self.task else { return };
        let threads = blocks.len();
        for b in (0..threads).map(|i| (me + i) % threads) {
            let end = block_start(self.n, threads, b + 1);
            loop {
                // Relaxed suffices: the counter only hands out disjoint ranges; the results are
                // published by the release of `remaining` when the worker reports completion.
                let start = blocks[b].next.fetch_add(self.chunk, Ordering::Relaxed);
                if start >= end {
                    break;
                }
                for i in start..end.min(start + self.chunk) {
                    // SAFETY: the caller of `parallel_for` promised that `task(ctx, i)` is valid
                    // for every `i` in `[0, n)`; `i < n <= i64::MAX`, so the cast is exact.
                    unsafe { task(self.ctx, i as i64) };
                }
            }
        }
    }
}

/// The first index of thread `t`'s block when `n` indices are shared by `threads` threads.
fn block_start(n: u64, threads: usize, t: usize) -> u64 {
    (u128::from(n) * t as u128 / threads as u128) as u64
}

/// The next unclaimed index of one thread's block, alone on its cache line so that claims in
/// different blocks do not contend.
#[repr(align(64))]
struct Block {
    next: AtomicU64,
}

struct Shared {
    /// The current job. Written only by the publisher, between the moment every worker has
    /// finished the previous job (`remaining` reached 0) and the bump of `generation` that
    /// hands it over; read by each worker once, after it saw that bump.
    job: UnsafeCell<Job>,
    /// Bumped for every job; a worker runs each generation once.
    generation: AtomicU64,
    /// Workers that have not yet finished the current job.
    remaining: AtomicUsize,
    /// The next unclaimed index of each thread's block of the current job (see [`Job::work`]).
    blocks: Box<[Block]>,
    shutdown: AtomicBool,
    /// Workers asleep on `wake`, or about to be.
    sleepers: AtomicUsize,
    /// True while the publisher sleeps on `done`, or is about to.
    waiting: AtomicBool,
    /// Guards the sleeps on `wake` and `done`.
    lock: Mutex<()>,
    /// Signalled when a job is published or the pool shuts down, if a worker sleeps.
    wake: Condvar,
    /// Signalled when the last worker finishes a job, if the publisher sleeps.
    done: Condvar,
}

// SAFETY: `job` is the only field that is not thread-safe by itself; the protocol above
// orders its writes (by the publisher) before its reads (by the workers) through
// `generation`, and its reads before the next write through `remaining`.
unsafe impl Sync for Shared {}
// SAFETY: as for Sync; the raw pointer in `Job` is only dereferenced by the task.
unsafe impl Send for Shared {}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ()> {
        // No code panics while holding the lock, so poisoning cannot happen; recover anyway.
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Waits actively until `ready()` holds or [`SPIN`] has passed; returns whether it holds.
fn spin_until(ready: impl Fn() -> bool) -> bool {
    for _ in 0..PAUSE_ROUNDS {
        if ready() {
            return true;
        }
        std::hint::spin_loop();
    }
    let start = Instant::now();
    loop {
        if ready() {
            return true;
        }
        if start.elapsed() >= SPIN {
            return false;
        }
        std::thread::yield_now();
    }
}

/// A thread pool: the caller's thread plus `num_threads - 1` persistent workers.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    busy: AtomicBool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("num_threads", &self.num_threads())
            .finish()
    }
}

impl Pool {
    /// Starts a pool of `num_threads` threads (clamped to `1..=MAX_THREADS`), spawning
    /// `num_threads - 1` workers. Fails if a worker cannot be spawned; those already spawned
    /// are stopped.
    pub fn new(num_threads: usize) -> std::io::Result<Pool> {
        let num_threads = num_threads.clamp(1, MAX_THREADS);
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(Job::NONE),
            generation: AtomicU64::new(0),
            remaining: AtomicUsize::new(0),
            blocks: (0..num_threads)
                .map(|_| Block {
                    next: AtomicU64::new(0),
                })
                .collect(),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let mut pool = Pool {
            shared,
            workers: Vec::with_capacity(num_threads - 1),
            busy: AtomicBool::new(false),
        };
        let spawner = cpu::current();
        for index in 1..num_threads {
            let shared = Arc::clone(&pool.shared);
            let worker = std::thread::Builder::new()
                .name(format!("tcc-worker-{index}"))
                .spawn(move || {
                    if let Some(c) = spawner {
                        cpu::leave(c);
                    }
                    worker_loop(&shared, index)
                })?;
            // If this push's caller returns early with `?`, `pool`'s Drop joins the workers.
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// The number of threads, the caller's included.
    pub fn num_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `task(ctx, i)` for every `i` in `[0, n)` on the pool's threads, this one included,
    /// and returns when all calls have returned. `n <= 0` or no task does nothing.
    ///
    /// # Safety
    ///
    /// `task(ctx, i)` must be safe to call for every such `i`, from any thread, concurrently.
    pub unsafe fn parallel_for(&self, n: i64, task: Option<TaskFn>, ctx: *mut c_void) {
        let (Ok(n), Some(_)) = (u64::try_from(n), task) else {
            return;
        };
        if n == 0 {
            return;
        }
        let threads = self.num_threads() as u64;
        let job = Job {
            task,
            ctx,
            n,
            chunk: (n / (threads * CHUNKS_PER_THREAD)).max(1),
        };
        // One index, no workers, or the pool already running a job (a nested or a concurrent
        // call): run serially here.
        if n == 1 || self.workers.is_empty() || self.busy.swap(true, Ordering::Acquire) {
            let serial = Job { chunk: n, ..job };
            serial.work(
                0,
                &[Block {
                    next: AtomicU64::new(0),
                }],
            );
            return;
        }
        let shared = &*self.shared;
        // Every worker finished the previous job (the last call waited for it), so none reads
        // `job` now.
        // SAFETY: see `Shared::job`; `busy` makes this the only publisher.
        unsafe { *shared.job.get() = job };
        for (t, block) in shared.blocks.iter().enumerate() {
            block
                .next
                .store(block_start(n, shared.blocks.len(), t), Ordering::Relaxed);
        }
        shared
            .remaining
            .store(self.workers.len(), Ordering::Relaxed);
        shared.generation.fetch_add(1, Ordering::SeqCst);
        if shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = shared.lock();
            shared.wake.notify_all();
        }
        job.work(0, &shared.blocks);
        let finished = || shared.remaining.load(Ordering::Acquire) == 0;
        if !spin_until(finished) {
            let mut guard = shared.lock();
            shared.waiting.store(true, Ordering::SeqCst);
            while shared.remaining.load(Ordering::SeqCst) != 0 {
                guard = shared.done.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            shared.waiting.store(false, Ordering::SeqCst);
        }
        self.busy.store(false, Ordering::Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let _guard = self.shared.lock();
            self.shared.shutdown.store(true, Ordering::SeqCst);
            self.shared.wake.notify_all();
        }
        for worker in self.workers.drain(..) {
            // A worker cannot panic (tasks are `extern "C"` and abort instead), so join only
            // fails if it did anyway; there is nothing more to clean up then.
            let _ = worker.join();
        }
    }
}

/// Where a new worker starts. Linux starts a thread on its creator's CPU, and while both spin
/// on that one CPU (each yielding to the other) the scheduler may take tens of milliseconds to
/// move one to an idle CPU: a session's first runs then take up to twice as long (a small
/// model's first 50 runs, 0.41 against 0.25 ms a run, in half of the processes). So a worker
/// leaves its creator's CPU at once: it restricts itself to the other CPUs it may run on,
/// which moves it, and gives itself back its whole CPU set, which leaves it where it is. It is
/// not pinned: the scheduler may move it later as it likes. Elsewhere, and where the calls
/// fail, nothing happens.
mod cpu {
    #[cfg(target_os = "linux")]
    mod linux {
        use std::ffi::c_int;

        /// `cpu_set_t`: 1024 bits.
        pub type CpuSet = [u64; 16];

        extern "C" {
            pub fn sched_getcpu() -> c_int;
            pub fn sched_getaffinity(pid: c_int, size: usize, set: *mut CpuSet) -> c_int;
            pub fn sched_setaffinity(pid: c_int, size: usize, set: *const CpuSet) -> c_int;
        }
    }

    /// The CPU the calling thread runs on, if known.
    pub fn current() -> Option<usize> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: no arguments; returns -1 on failure.
            let c = unsafe { linux::sched_getcpu() };
            usize::try_from(c).ok()
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// Moves the calling thread off CPU `c` if it may run elsewhere, without pinning it;
    /// returns the CPU it moved to, if it moved.
    pub fn leave(c: usize) -> Option<usize> {
        #[cfg(target_os = "linux")]
        {
            use linux::CpuSet;
            let size = std::mem::size_of::<CpuSet>();
            let mut allowed: CpuSet = [0; 16];
            // SAFETY: `allowed` is a writable cpu_set_t of `size` bytes; 0 is this thread.
            if unsafe { linux::sched_getaffinity(0, size, &mut allowed) } != 0 {
                return None;
            }
            let (word, bit) = (c / 64, c % 64);
            if word >= allowed.len() || allowed[word] & (1 << bit) == 0 {
                return None;
            }
            let mut others = allowed;
            others[word] &= !(1 << bit);
            if others.iter().all(|&w| w == 0) {
                return None;
            }
            // SAFETY: both sets are cpu_set_t of `size` bytes; 0 is this thread. The first
            // call moves the thread to one of the other CPUs before it returns; the second
            // restores its CPU set (the thread stays where it runs).
            unsafe {
                if linux::sched_setaffinity(0, size, &others) != 0 {
                    return None;
                }
                let moved = current();
                linux::sched_setaffinity(0, size, &allowed);
                moved
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = c;
            None
        }
    }

    #[cfg(all(test, target_os = "linux"))]
    mod tests {
        use super::*;

        /// A thread that leaves its CPU moves to another when it may, and keeps its whole CPU
        /// set.
        #[test]
        fn a_thread_leaves_its_cpu_and_keeps_its_cpu_set() {
            std::thread::spawn(|| {
                let size = std::mem::size_of::<linux::CpuSet>();
                let mut before: linux::CpuSet = [0; 16];
                // SAFETY: as in `leave`.
                assert_eq!(unsafe { linux::sched_getaffinity(0, size, &mut before) }, 0);
                let cpus: u32 = before.iter().map(|w| w.count_ones()).sum();
                let c = current().expect("sched_getcpu works on Linux");
                let moved = leave(c);
                if cpus > 1 {
                    let to = moved.expect("a thread with other CPUs moves");
                    assert_ne!(to, c, "still on CPU {c} of {cpus}");
                } else {
                    assert_eq!(moved, None);
                }
                let mut after: linux::CpuSet = [0; 16];
                // SAFETY: as in `leave`.
                assert_eq!(unsafe { linux::sched_getaffinity(0, size, &mut after) }, 0);
                assert_eq!(before, after, "the CPU set changed");
            })
            .join()
            .unwrap();
        }
    }
}

/// A worker: waits for a new generation, works on it, reports, until shutdown.
fn worker_loop(shared: &Shared, index: usize) {
    let mut seen = 0;
    loop {
        let fresh = || {
            shared.generation.load(Ordering::Acquire) != seen
                || shared.shutdown.load(Ordering::Acquire)
        };
        if !spin_until(fresh) {
            let mut guard = shared.lock();
            shared.sleepers.fetch_add(1, Ordering::SeqCst);
            while shared.generation.load(Ordering::SeqCst) == seen
                && !shared.shutdown.load(Ordering::SeqCst)
            {
                guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = shared.generation.load(Ordering::Acquire);
        // SAFETY: see `Shared::job`: the publisher wrote it before bumping `generation`, and
        // writes the next one only after this worker decrements `remaining`.
        let job = unsafe { *shared.job.get() };
        job.work(index, &shared.blocks);
        if shared.remaining.fetch_sub(1, Ordering::SeqCst) == 1
            && shared.waiting.load(Ordering::SeqCst)
        {
            let _guard = shared.lock();
            shared.done.notify_all();
        }
    }
}

/// The thread count for a session: `explicit` if positive, else `env` (the value of
/// `TCC_NUM_THREADS`) if set, else `default`; capped at [`MAX_THREADS`].
///
/// A set but invalid `env` (not a positive integer) is an error naming it, so a typo does not
/// silently change the thread count.
pub fn resolve_num_threads(
    explicit: i32,
    env: Option<&str>,
    default: impl FnOnce() -> usize,
) -> Result<usize, String> {
    if let Ok(n @ 1..) = usize::try_from(explicit) {
        return Ok(n.min(MAX_THREADS));
    }
    if let Some(text) = env {
        return match text.trim().parse::<usize>() {
            Ok(n @ 1..) => Ok(n.min(MAX_THREADS)),
            _ => Err(format!(
                "{ENV_NUM_THREADS} is `{text}`; it must be a positive integer (or unset)"
            )),
        };
    }
    Ok(default().clamp(1, MAX_THREADS))
}

/// The default thread count: the physical cores of the CPUs in `sys_cpu` (normally
/// `/sys/devices/system/cpu`), capped by the parallelism available to this process (affinity
/// and cgroup quotas); the available parallelism alone if the topology cannot be read.
pub fn default_num_threads(sys_cpu: &Path) -> usize {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    match physical_cores(sys_cpu) {
        Some(cores) => cores.min(available),
        None => available,
    }
}

/// The number of distinct (package, core) pairs among `sys_cpu/cpuN/topology`, or `None` if
/// there are none to read.
pub fn physical_cores(sys_cpu: &Path) -> Option<usize> {
    let read =
        |path: &Path| -> Option<i64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let mut cores: Vec<(i64, i64)> = Vec::new();
    for entry in std::fs::read_dir(sys_cpu).ok()?.flatten() {
        let name = entry.file_name();
        let Some(number) = name.to_str().and_then(|n| n.strip_prefix("cpu")) else {
            continue;
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let topology = entry.path().join("topology");
        // An offline CPU has no topology directory; it does not count.
        let (Some(package), Some(core)) = (
            read(&topology.join("physical_package_id")),
            read(&topology.join("core_id")),
        ) else {
            continue;
        };
        if !cores.contains(&(package, core)) {
            cores.push((package, core));
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn count(ctx: *mut c_void, i: i64) {
        // SAFETY: the tests pass a slice of counters at least `i + 1` long.
        let counters = unsafe { &*ctx.cast::<Vec<AtomicU64>>() };
        counters[i as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every index runs exactly once per call, whether the workers are spinning (calls back to
    /// back) or asleep (a pause longer than [`SPIN`] before the call).
    #[test]
    fn every_index_runs_once_whether_workers_spin_or_sleep() {
        for threads in [2, 3] {
            let pool = Pool::new(threads).unwrap();
            let counters: Vec<AtomicU64> = (0..97).map(|_| AtomicU64::new(0)).collect();
            let ctx = std::ptr::from_ref(&counters).cast_mut().cast::<c_void>();
            let mut expected = vec![0u64; counters.len()];
            for round in 0..2000 {
                let n = 1 + round % counters.len();
                if round % 500 == 499 {
                    std::thread::sleep(SPIN * 3);
                }
                // SAFETY: `count` indexes counters below n <= len.
                unsafe { pool.parallel_for(n as i64, Some(count), ctx) };
                for e in &mut expected[..n] {
                    *e += 1;
                }
                // parallel_for returned, so every call it made is visible.
                let got: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
                assert_eq!(got, expected, "{threads} threads, round {round}");
            }
        }
    }

    #[test]
    fn the_blocks_cut_the_indices_into_nearly_equal_contiguous_parts() {
        for threads in 1..=9 {
            for n in (0..40).chain([u64::MAX / 2, i64::MAX as u64]) {
                let starts: Vec<u64> = (0..=threads).map(|t| block_start(n, threads, t)).collect();
                assert_eq!((starts[0], starts[threads]), (0, n), "{n} over {threads}");
                for pair in starts.windows(2) {
                    let len = pair[1] - pair[0];
                    assert!(len == n / threads as u64 || len == n / threads as u64 + 1);
                }
            }
        }
    }

    #[test]
    fn an_explicit_count_wins_over_the_environment() {
        let default = || 6;
        assert_eq!(resolve_num_threads(3, Some("5"), default), Ok(3));
        assert_eq!(resolve_num_threads(0, Some("5"), default), Ok(5));
        assert_eq!(resolve_num_threads(-1, Some(" 2\n"), default), Ok(2));
        assert_eq!(resolve_num_threads(0, None, default), Ok(6));
        assert_eq!(resolve_num_threads(-7, None, || 0), Ok(1));
        assert_eq!(
            resolve_num_threads(i32::MAX, None, default),
            Ok(MAX_THREADS)
        );
        assert_eq!(
            resolve_num_threads(0, Some("99999999"), default),
            Ok(MAX_THREADS)
        );
    }

    #[test]
    fn an_invalid_environment_value_is_an_error_naming_it() {
        for bad in ["", "0", "-2", "four", "1.5"] {
            let err = resolve_num_threads(0, Some(bad), || 4).unwrap_err();
            assert!(err.contains(ENV_NUM_THREADS) && err.contains(bad), "{err}");
        }
        // An explicit count does not even look at it.
        assert_eq!(resolve_num_threads(2, Some("four"), || 4), Ok(2));
    }

    #[test]
    fn physical_cores_counts_distinct_package_and_core_pairs() {
        let dir = std::env::temp_dir().join(format!("tcc-topology-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Two packages of two cores with two hyperthreads each, one offline CPU, and entries
        // that are not CPUs.
        let mut cpu = 0;
        for package in 0..2 {
            for core in [0, 4] {
                for _thread in 0..2 {
                    let topology = dir.join(format!("cpu{cpu}/topology"));
                    std::fs::create_dir_all(&topology).unwrap();
                    std::fs::write(topology.join("physical_package_id"), format!("{package}\n"))
                        .unwrap();
                    std::fs::write(topology.join("core_id"), format!("{core}\n")).unwrap();
                    cpu += 1;
                }
            }
        }
        std::fs::create_dir_all(dir.join("cpu8")).unwrap();
        std::fs::create_dir_all(dir.join("cpufreq/policy0")).unwrap();
        std::fs::create_dir_all(dir.join("cpuidle")).unwrap();
        assert_eq!(physical_cores(&dir), Some(4));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(physical_cores(&dir), None);
    }

    #[test]
    fn the_default_is_between_one_and_the_available_parallelism() {
        let available = std::thread::available_parallelism().unwrap().get();
        let n = default_num_threads(Path::new("/sys/devices/system/cpu"));
        assert!((1..=available).contains(&n), "{n} of {available}");
        assert_eq!(
            default_num_threads(Path::new("/nonexistent/tcc")),
            available
        );
    }
}

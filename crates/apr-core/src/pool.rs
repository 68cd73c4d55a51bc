//! A fixed thread pool with low dispatch overhead: workers spin briefly on an epoch counter
//! between jobs (decode issues ~200 parallel steps per token), then sleep on a condvar.
//! A job is a set of slots that whichever thread is running claims one at a time, so a
//! worker that the OS has descheduled (other processes on the cores) delays a job only by the
//! slot it holds, and one that never got to start delays it not at all.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Spins before a worker goes to sleep waiting for the next job.
const SPIN_LIMIT: u32 = 200_000;
/// Spins before a thread waiting for others to finish a job yields its time slice.
const WAIT_SPINS: u32 = 2_000;

type Job = dyn Fn(usize, usize) + Sync;

struct Shared {
    /// The current job, valid while `run_slots` is in progress.
    job: Mutex<Option<&'static Job>>,
    epoch: AtomicUsize,
    /// The last epoch whose slots are all done: a worker arriving later leaves it alone.
    closed: AtomicUsize,
    /// Workers inside the current job.
    active: AtomicUsize,
    n_slots: AtomicUsize,
    next_slot: AtomicUsize,
    done_slots: AtomicUsize,
    shutdown: AtomicBool,
    /// Workers asleep on (or about to wait on) `wake`: a dispatch takes the lock and notifies
    /// only when one is, so a busy pool issues no syscall per job.
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
    n_threads: usize,
}

impl Shared {
    /// Claims and runs slots of `job` until none is left.
    fn run_slots(&self, job: &Job) {
        let n = self.n_slots.load(Ordering::Acquire);
        loop {
            let s = self.next_slot.fetch_add(1, Ordering::AcqRel);
            if s >= n {
                return;
            }
            job(s, n);
            self.done_slots.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Spins on `cond`, yielding the time slice after a short while.
fn wait_until(cond: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !cond() {
        spins += 1;
        if spins < WAIT_SPINS {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// `n_threads` threads in all: the caller of [`ThreadPool::run`] is thread 0.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            epoch: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            n_slots: AtomicUsize::new(0),
            next_slot: AtomicUsize::new(0),
            done_slots: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            n_threads,
        });
        let workers = (1..n_threads)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("apr-worker-{i}"))
                    .spawn(move || worker(s))
                    .expect("spawning a worker thread")
            })
            .collect();
        ThreadPool { shared, workers }
    }

    /// The number of threads, the caller included.
    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Runs `f(i, n)` once for every slot `i` of `0..n` with `n` = [`Self::n_threads`], and
    /// returns when all are done. Slot `i` may run on any thread, but never two slots at once
    /// on one thread: per-slot scratch indexed by `i` is safe.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        self.run_slots(self.shared.n_threads, f)
    }

    /// Runs `f(i, n_slots)` once for every slot `i` of `0..n_slots`, the slots claimed by
    /// whichever threads are running; returns when all are done. More slots than threads
    /// balance uneven work and descheduled threads at the cost of one atomic per slot.
    pub fn run_slots<F: Fn(usize, usize) + Sync>(&self, n_slots: usize, f: F) {
        let sh = &*self.shared;
        if sh.n_threads == 1 || n_slots <= 1 {
            for i in 0..n_slots {
                f(i, n_slots);
            }
            return;
        }
        let job: &(dyn Fn(usize, usize) + Sync + '_) = &f;
        // SAFETY: the reference is erased to 'static only while this call runs: it returns
        // only after every slot is done, the epoch is closed (no worker joins later) and no
        // worker is inside the job (`active` is 0); the job is cleared before returning.
        let job: &'static Job = unsafe {
            std::mem::transmute::<&(dyn Fn(usize, usize) + Sync + '_), &'static Job>(job)
        };
        *sh.job.lock().expect("pool lock") = Some(job);
        sh.n_slots.store(n_slots, Ordering::SeqCst);
        sh.next_slot.store(0, Ordering::SeqCst);
        sh.done_slots.store(0, Ordering::SeqCst);
        // Dekker pairing with the worker's `sleepers` increment (both SeqCst): either it sees
        // the new epoch before it waits, or this sees it asleep and wakes it under the lock.
        let epoch = sh.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = sh.sleep_lock.lock().expect("pool lock");
            sh.wake.notify_all();
        }
        sh.run_slots(job);
        wait_until(|| sh.done_slots.load(Ordering::Acquire) == n_slots);
        sh.closed.store(epoch, Ordering::SeqCst);
        wait_until(|| sh.active.load(Ordering::SeqCst) == 0);
        *sh.job.lock().expect("pool lock") = None;
    }
}

fn worker(s: Arc<Shared>) {
    let mut seen = 0usize;
    loop {
        let mut spins = 0u32;
        loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            if s.epoch.load(Ordering::Acquire) != seen {
                break;
            }
            spins += 1;
            if spins < SPIN_LIMIT {
                std::hint::spin_loop();
            } else {
                let g = s.sleep_lock.lock().expect("pool lock");
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                if s.epoch.load(Ordering::SeqCst) == seen && !s.shutdown.load(Ordering::Acquire) {
                    drop(s.wake.wait(g).expect("pool lock"));
                } else {
                    drop(g);
                }
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
                spins = 0;
            }
        }
        seen = s.epoch.load(Ordering::SeqCst);
        s.active.fetch_add(1, Ordering::SeqCst);
        // A job already closed may be gone: only an open one is joined (its caller then waits
        // for `active` to fall back to 0 before it returns).
        if s.closed.load(Ordering::SeqCst) < seen {
            let job = *s.job.lock().expect("pool lock");
            if let Some(job) = job {
                s.run_slots(job);
            }
        }
        s.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let _g = self.shared.sleep_lock.lock().expect("pool lock");
            self.shared.shutdown.store(true, Ordering::SeqCst);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The half-open range of `0..n` that thread `i` of `nt` takes, in chunks of `align`.
pub fn split_range(n: usize, i: usize, nt: usize, align: usize) -> std::ops::Range<usize> {
    let chunks = n.div_ceil(align);
    let per = chunks.div_ceil(nt);
    let start = (i * per * align).min(n);
    let end = ((i + 1) * per * align).min(n);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_every_job() {
        let pool = ThreadPool::new(2);
        let total = AtomicUsize::new(0);
        for _ in 0..1000 {
            pool.run(|i, n| {
                assert!(i < n);
                total.fetch_add(i + 1, Ordering::Relaxed);
            });
        }
        assert_eq!(total.load(Ordering::Relaxed), 1000 * 3);
    }

    #[test]
    fn every_slot_runs_once_with_more_slots_than_threads() {
        let pool = ThreadPool::new(3);
        for n_slots in [0, 1, 2, 7, 64] {
            let hits: Vec<AtomicUsize> = (0..n_slots).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..200 {
                pool.run_slots(n_slots, |i, n| {
                    assert_eq!(n, n_slots);
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 200));
        }
    }

    #[test]
    fn split_covers_range_once() {
        for n in [0, 1, 7, 64, 100] {
            let mut seen = vec![0; n];
            for i in 0..3 {
                for j in split_range(n, i, 3, 4) {
                    seen[j] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1));
        }
    }
}

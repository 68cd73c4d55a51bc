//! A fixed thread pool with low dispatch overhead: workers spin briefly on an epoch counter
//! between jobs (decode issues ~200 parallel steps per token), then sleep on a condvar.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Spins before a worker goes to sleep waiting for the next job.
const SPIN_LIMIT: u32 = 200_000;

type Job = dyn Fn(usize, usize) + Sync;

struct Shared {
    /// The current job, valid while `run` is in progress.
    job: Mutex<Option<&'static Job>>,
    epoch: AtomicUsize,
    pending: AtomicUsize,
    shutdown: AtomicBool,
    sleep_lock: Mutex<()>,
    wake: Condvar,
    n_threads: usize,
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
            pending: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            n_threads,
        });
        let workers = (1..n_threads)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("apr-worker-{i}"))
                    .spawn(move || worker(s, i))
                    .expect("spawning a worker thread")
            })
            .collect();
        ThreadPool { shared, workers }
    }

    /// The number of threads, the caller included.
    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Run `f(thread_index, n_threads)` on every thread and return when all have finished.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        let n = self.shared.n_threads;
        if n == 1 {
            f(0, 1);
            return;
        }
        let job: &(dyn Fn(usize, usize) + Sync + '_) = &f;
        // SAFETY: the reference is erased to 'static only while this call waits for every
        // worker to finish with it (`pending` reaches 0) and is cleared before returning.
        let job: &'static Job = unsafe {
            std::mem::transmute::<&(dyn Fn(usize, usize) + Sync + '_), &'static Job>(job)
        };
        *self.shared.job.lock().expect("pool lock") = Some(job);
        self.shared.pending.store(n - 1, Ordering::SeqCst);
        {
            let _g = self.shared.sleep_lock.lock().expect("pool lock");
            self.shared.epoch.fetch_add(1, Ordering::SeqCst);
            self.shared.wake.notify_all();
        }
        f(0, n);
        let mut spins = 0u32;
        while self.shared.pending.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < SPIN_LIMIT {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        *self.shared.job.lock().expect("pool lock") = None;
    }
}

fn worker(s: Arc<Shared>, index: usize) {
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
                if s.epoch.load(Ordering::Acquire) == seen && !s.shutdown.load(Ordering::Acquire) {
                    drop(s.wake.wait(g).expect("pool lock"));
                }
                spins = 0;
            }
        }
        seen = s.epoch.load(Ordering::Acquire);
        let job = *s.job.lock().expect("pool lock");
        if let Some(job) = job {
            job(index, s.n_threads);
        }
        s.pending.fetch_sub(1, Ordering::AcqRel);
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

//! Execution sandbox of the HumanEval/MBPP harness: each sample runs as `python3 -s -B main.py`
//! in its own short-lived process tree, isolated from the host and from other samples, with a
//! wall-clock timeout, rlimits and capped output. Reference: user_namespaces(7),
//! pid_namespaces(7), mount_namespaces(7), setrlimit(2); the checks follow the spirit of
//! OpenAI human-eval's `execution.py`, done by the kernel instead of by monkey-patching Python.
//!
//! # Isolation model
//!
//! Which of these hold is decided once by [`Sandbox::new`] (each namespace is tried in a
//! throwaway child, then a probe program runs through the whole path) and reported by
//! [`Sandbox::isolation`]; nothing is weakened silently.
//!
//! - **Who the program is.** Run as root (CI), each of the `workers` slots has its own uid and
//!   gid (from `uid_base` up, not in /etc/passwd, unique among the sandboxes of this process);
//!   the child drops to it with no supplementary groups, an empty capability bounding set and
//!   `no_new_privs`, so file permissions alone keep it out of everything it does not own, and
//!   two concurrent samples cannot signal or trace each other. Run as another user,
//!   the child enters a new user namespace mapping only that user to itself: it keeps the
//!   user's file rights, so the read-only mount tree below is what protects the files.
//! - **Namespaces.** New network (only a down loopback: no sockets reach anything), mount,
//!   pid, IPC and UTS namespaces. The program's python is pid 2 under a tiny init (P2, see
//!   `child.rs`); when that init exits, the kernel kills whatever is left in the namespace,
//!   daemons that `setsid` or double-fork included, and they cannot escape a pid namespace.
//! - **Files.** In the private mount tree every mount is made read-only and nosuid
//!   (`mount_setattr(AT_RECURSIVE)`), a fresh `/proc` shows only the sample's processes, a
//!   private tmpfs covers `/dev/shm`, and the work directory is a private tmpfs (size
//!   `disk_bytes`, mode 0700, owned by the slot uid) holding `main.py`; HOME and TMPDIR point
//!   at it. On the host that directory stays empty and is removed after the run. When the
//!   interpreter lives under a directory the slot uid cannot search (a pyenv under `/root`,
//!   0700), that directory is covered with an empty tmpfs and only the interpreter's trees are
//!   mounted back, read-only.
//! - **Limits.** RLIMIT_AS (`mem_bytes`), RLIMIT_CPU (`cpu_secs`), RLIMIT_NPROC (`max_procs`,
//!   counted per slot uid or per user namespace, so a fork bomb stops there), RLIMIT_FSIZE
//!   (`disk_bytes`), RLIMIT_NOFILE, no core dumps, `oom_score_adj` 1000; the environment is
//!   cleared to a fixed minimal set ([`ENV`]).
//! - **Ending.** At the timeout, or when python exits, the harness SIGKILLs the process group;
//!   the init's parent-death signal and the pid namespace take the rest. Without a pid
//!   namespace (refused by the kernel) P2 is a child subreaper instead: it enforces the
//!   timeout itself, SIGKILLs python's process group in one call (a fork bomb cannot outrun
//!   it), then kills and reaps every remaining descendant from `/proc/thread-self/children`
//!   (orphans, setsid'd daemons included, reparent to it); as root the harness also kills
//!   every process of the slot uid. Either way nothing is left for the host's pid 1 to reap
//!   (in containers it often never does, and zombies would count against RLIMIT_NPROC).
//!   `run` returns only when the tree is gone, then frees the slot. stdout/stderr are drained
//!   to the end and kept up to `output_cap` bytes each.
//!
//! # Limits of the model
//!
//! No seccomp filter: the program may make any system call its uid allows, so a kernel bug
//! reachable from an unprivileged process is out of scope. Without mount namespaces
//! (e.g. a container without CAP_SYS_ADMIN) world-writable directories (/tmp, /dev/shm) stay
//! writable by the slot uid; without user namespaces as non-root, only the rlimits and the
//! subreaper apply (the program runs as the harness user and could even signal the harness).
//! Reading world-readable host files is allowed. Slot uids are picked among those no live
//! process uses, so two apr processes running as root at once normally get distinct ones;
//! the check is racy, and a shared uid would matter only without pid namespaces (one run's
//! kill-by-uid could reach the other's programs). Memory is bounded per process by
//! RLIMIT_AS, not per tree (no cgroup): `max_procs` × `mem_bytes` is the worst case.
//! Python's stdout is block-buffered: a program killed at the timeout may lose its last
//! unflushed output. Linux only.

mod child;
mod probe;
mod run;

use std::ffi::{c_int, CString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use child::{HiddenDir, Step};

pub use probe::PYTHON_ENV;

/// Default wall-clock limit per run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default RLIMIT_AS.
pub const DEFAULT_MEM_BYTES: u64 = 4 << 30;
/// Default cap per output stream.
pub const DEFAULT_OUTPUT_CAP: usize = 1 << 20;
/// Default RLIMIT_NPROC: room for multiprocessing and BLAS threads, not for a fork bomb.
pub const DEFAULT_MAX_PROCS: u64 = 64;
/// Default size of the tmpfs work dir and RLIMIT_FSIZE.
pub const DEFAULT_DISK_BYTES: u64 = 64 << 20;
/// Lowest slot uid/gid tried (root mode); the first free range of `workers` uids is used.
pub const DEFAULT_UID_BASE: u32 = 61000;
/// RLIMIT_NOFILE inside the sandbox.
const NOFILE: u64 = 1024;
/// The environment of every run, plus HOME and TMPDIR set to the work dir.
pub const ENV: [(&str, &str); 7] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("LANG", "C.UTF-8"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
    ("PYTHONHASHSEED", "0"),
    ("OMP_NUM_THREADS", "1"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("MKL_NUM_THREADS", "1"),
];
/// Interpreter flags: no user site-packages, no .pyc files. Not -I/-E: PYTHONHASHSEED must
/// apply, and the environment is ours anyway; the script's directory stays on sys.path.
const PY_FLAGS: [&str; 2] = ["-s", "-B"];
const SCRIPT_NAME: &str = "main.py";
/// What the probe program prints when the whole path works.
const PROBE_OK: &str = "apr-sandbox-ok";
/// Where a subreaper finds its children (CONFIG_PROC_CHILDREN); used without a pid namespace.
const CHILDREN_LIST: &str = "/proc/thread-self/children";

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Wall-clock limit per run (a job may override it).
    pub timeout: Duration,
    /// RLIMIT_AS per process.
    pub mem_bytes: u64,
    /// RLIMIT_CPU; None: the run's timeout rounded up, plus one second.
    pub cpu_secs: Option<u64>,
    /// Bytes kept per stream; the rest is read and dropped.
    pub output_cap: usize,
    /// Concurrent runs (slots); further `run` calls wait for a free slot.
    pub workers: usize,
    /// Interpreter; None: `$APR_PYTHON`, else `python3` on PATH.
    pub python: Option<PathBuf>,
    /// RLIMIT_NPROC (processes and threads of one run).
    pub max_procs: u64,
    /// Size of the work-dir tmpfs and RLIMIT_FSIZE.
    pub disk_bytes: u64,
    /// Lowest slot uid/gid tried when running as root (see [`Isolation::slot_uids`]).
    pub uid_base: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            timeout: DEFAULT_TIMEOUT,
            mem_bytes: DEFAULT_MEM_BYTES,
            cpu_secs: None,
            output_cap: DEFAULT_OUTPUT_CAP,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            python: None,
            max_procs: DEFAULT_MAX_PROCS,
            disk_bytes: DEFAULT_DISK_BYTES,
            uid_base: DEFAULT_UID_BASE,
        }
    }
}

/// One program to run.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// Python source, written to the work dir as `main.py` and run as the main program.
    pub script: &'a str,
    /// Fed to the program's stdin, which is then closed.
    pub stdin: &'a [u8],
    /// Overrides the config's timeout.
    pub timeout: Option<Duration>,
}

impl<'a> Job<'a> {
    /// A job with empty stdin and the config's timeout.
    pub fn new(script: &'a str) -> Self {
        Job {
            script,
            stdin: &[],
            timeout: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The program exited with this code.
    Exited(i32),
    /// The program died of this signal (SIGKILL for RLIMIT_CPU's hard limit, SIGXCPU, ...).
    Signaled(i32),
    /// The wall-clock timeout fired; the tree was killed.
    TimedOut,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// From spawn to the end of the process tree.
    pub wall: Duration,
}

impl Outcome {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.status == Status::Exited(0)
    }
}

/// The isolation `Sandbox::new` achieved on this machine.
#[derive(Debug, Clone, Default)]
pub struct Isolation {
    /// Runs under a per-slot uid/gid (harness is root).
    pub uid_drop: bool,
    /// Runs in a new user namespace (harness is not root).
    pub user_ns: bool,
    pub net_ns: bool,
    pub mount_ns: bool,
    pub pid_ns: bool,
    pub ipc_ns: bool,
    /// Every mount read-only and nosuid inside the sandbox.
    pub ro_root: bool,
    /// The work dir is a private tmpfs.
    pub tmpfs_workdir: bool,
    /// A fresh /proc showing only the sample's processes.
    pub private_proc: bool,
    /// Every process a run starts, setsid'd daemons included, is gone when `run` returns
    /// (pid namespace, or a subreaper that can list its children).
    pub contained: bool,
    /// The slot uids (root mode), unique among this process's sandboxes.
    pub slot_uids: Option<std::ops::Range<u32>>,
    /// What was refused or worked around, one line each.
    pub notes: Vec<String>,
}

impl Isolation {
    /// One line for reports.
    pub fn describe(&self) -> String {
        let who = match (&self.slot_uids, self.user_ns) {
            (Some(r), _) if self.uid_drop => format!("per-slot uid {}..{}", r.start, r.end),
            _ if self.uid_drop => "per-slot uid".to_string(),
            (_, true) => "user namespace".to_string(),
            _ => "same uid as the harness".to_string(),
        };
        let ns: Vec<&str> = [
            (self.net_ns, "net"),
            (self.mount_ns, "mount"),
            (self.pid_ns, "pid"),
            (self.ipc_ns, "ipc"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        let mut s = format!(
            "{who}; namespaces: {}",
            if ns.is_empty() {
                "none".to_string()
            } else {
                ns.join("+")
            }
        );
        for (on, what) in [
            (self.contained, "process tree contained"),
            (self.ro_root, "read-only root"),
            (self.tmpfs_workdir, "tmpfs work dir"),
            (self.private_proc, "private /proc"),
        ] {
            if on {
                s.push_str("; ");
                s.push_str(what);
            }
        }
        for n in &self.notes {
            s.push_str("; ");
            s.push_str(n);
        }
        s
    }
}

#[derive(thiserror::Error, Debug)]
pub enum SandboxError {
    #[error("no usable python interpreter: {0}")]
    NoPython(String),
    #[error("sandbox self-test failed: {0}")]
    Probe(String),
    #[error("sandbox config: {0}")]
    Config(String),
    #[error("{op} {}: {source}", path.display())]
    TempDir {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spawning {}: {source}", exe.display())]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("sandbox setup in the child failed at `{step}`: {source}")]
    Setup {
        step: &'static str,
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        source: std::io::Error,
    },
}

/// Slots: one per concurrent run, each with its own uid in root mode.
struct Slots {
    free: Mutex<Vec<u32>>,
    cv: Condvar,
}

struct SlotGuard<'a> {
    slots: &'a Slots,
    id: u32,
}

impl Slots {
    fn new(n: u32) -> Self {
        Slots {
            free: Mutex::new((0..n).rev().collect()),
            cv: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(id) = free.pop() {
                return SlotGuard { slots: self, id };
            }
            free = self.cv.wait(free).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = self.slots.free.lock().unwrap_or_else(|p| p.into_inner());
        free.push(self.id);
        self.slots.cv.notify_one();
    }
}

/// uid ranges held by the live sandboxes of this process: two must never share a slot uid
/// (RLIMIT_NPROC is counted per uid, and the fallback kill is by uid).
static UID_RANGES: Mutex<Vec<(u32, u32)>> = Mutex::new(Vec::new());

/// A reserved range of slot uids, released on drop.
struct UidRange(u32, u32);

impl UidRange {
    /// The first range of `len` uids at or above `base` that no sandbox of this process holds
    /// and no live process (another apr's run, or a zombie that counts against RLIMIT_NPROC)
    /// uses.
    fn reserve(base: u32, len: u32) -> Result<UidRange, SandboxError> {
        let busy = probe::uids_in_use();
        let mut held = UID_RANGES.lock().unwrap_or_else(|p| p.into_inner());
        let mut start = base;
        loop {
            let end = start
                .checked_add(len)
                .filter(|&e| e < u32::MAX - 1)
                .ok_or_else(|| {
                    SandboxError::Config(format!("no {len} free slot uids from {base}"))
                })?;
            if let Some(&(_, e)) = held.iter().find(|&&(s, e)| start < e && s < end) {
                start = e;
            } else if let Some(&u) = busy.range(start..end).next_back() {
                start = u + 1;
            } else {
                held.push((start, end));
                return Ok(UidRange(start, end));
            }
        }
    }
}

impl Drop for UidRange {
    fn drop(&mut self) {
        let mut held = UID_RANGES.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|&(s, e)| (s, e) != (self.0, self.1));
    }
}

/// Runs Python programs in isolation; `Send + Sync`, shared by worker threads.
pub struct Sandbox {
    cfg: SandboxConfig,
    iso: Isolation,
    /// Interpreter to exec (absolute).
    exe: PathBuf,
    /// Harness runs as root: drop to slot uids.
    root: bool,
    /// Slot i runs as uids.0 + i (root mode).
    uids: Option<UidRange>,
    unshare: c_int,
    hidden: Arc<Vec<HiddenDir>>,
    /// Where the per-run directories are made.
    base: PathBuf,
    slots: Slots,
}

impl Sandbox {
    pub fn new(cfg: SandboxConfig) -> Result<Sandbox, SandboxError> {
        if cfg.workers == 0 || cfg.workers > 65536 {
            return Err(SandboxError::Config(format!(
                "workers must be 1..=65536, got {}",
                cfg.workers
            )));
        }
        let py = probe::find_python(cfg.python.as_deref())?;
        if !py.exe.is_absolute() {
            return Err(SandboxError::NoPython(format!(
                "sys.executable is not absolute: {}",
                py.exe.display()
            )));
        }
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mut iso = Isolation {
            uid_drop: root,
            ..Isolation::default()
        };
        let mut unshare = 0;
        let base_flag = if root { 0 } else { libc::CLONE_NEWUSER };
        if !root {
            match probe::try_unshare(libc::CLONE_NEWUSER) {
                Ok(()) => iso.user_ns = true,
                Err(e) => iso.notes.push(format!(
                    "user namespace refused by the kernel: {}; the program runs as the harness user with rlimits only",
                    probe::errno_name(e)
                )),
            }
        }
        if !root && !iso.user_ns {
            iso.notes
                .push("no network, mount or pid namespace without a user namespace".into());
        }
        if root || iso.user_ns {
            unshare |= base_flag;
            let kinds = [
                (libc::CLONE_NEWNET, "network", &mut iso.net_ns),
                (libc::CLONE_NEWNS, "mount", &mut iso.mount_ns),
                (libc::CLONE_NEWPID, "pid", &mut iso.pid_ns),
                (libc::CLONE_NEWIPC, "ipc", &mut iso.ipc_ns),
            ];
            for (flag, name, on) in kinds {
                match probe::try_unshare(base_flag | flag) {
                    Ok(()) => {
                        *on = true;
                        unshare |= flag;
                    }
                    Err(e) => iso.notes.push(format!(
                        "{name} namespace refused by the kernel: {}",
                        probe::errno_name(e)
                    )),
                }
            }
            if probe::try_unshare(base_flag | libc::CLONE_NEWUTS).is_ok() {
                unshare |= libc::CLONE_NEWUTS;
            }
        }
        if iso.uid_drop && !iso.mount_ns {
            iso.notes.push(
                "without a mount namespace /tmp, /var/tmp and /dev/shm stay writable by the slot uid".into(),
            );
        }
        iso.contained = iso.pid_ns || Path::new(CHILDREN_LIST).exists();
        if !iso.contained {
            iso.notes.push(format!(
                "no pid namespace and no {CHILDREN_LIST}: setsid'd daemons may outlive a run"
            ));
        }
        let hidden = if root {
            probe::hidden_dirs(&py.needed)?
        } else {
            Vec::new()
        };
        if let (Some(h), false) = (hidden.first(), iso.mount_ns) {
            return Err(SandboxError::NoPython(format!(
                "{} lives under {}, which the sandbox uid cannot search, and without a mount \
                 namespace it cannot be exposed; set {PYTHON_ENV} to an interpreter other users \
                 can read (e.g. /usr/bin/python3)",
                py.exe.display(),
                h.dir.to_string_lossy()
            )));
        }
        for h in &hidden {
            iso.notes.push(format!(
                "{} is hidden behind a tmpfs with the interpreter mounted back",
                h.dir.to_string_lossy()
            ));
        }
        iso.ro_root = iso.mount_ns;
        iso.tmpfs_workdir = iso.mount_ns;
        iso.private_proc = iso.mount_ns && iso.pid_ns;
        let workers = cfg.workers as u32;
        let uids = if root {
            Some(UidRange::reserve(cfg.uid_base, workers)?)
        } else {
            None
        };
        iso.slot_uids = uids.as_ref().map(|r| r.0..r.1);
        let mut sb = Sandbox {
            exe: py.exe,
            root,
            uids,
            unshare,
            hidden: Arc::new(hidden),
            base: std::env::temp_dir(),
            slots: Slots::new(workers),
            iso,
            cfg,
        };
        sb.self_test()?;
        Ok(sb)
    }

    pub fn isolation(&self) -> &Isolation {
        &self.iso
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.cfg
    }

    /// The interpreter every run execs.
    pub fn python(&self) -> &Path {
        &self.exe
    }

    /// Run one program. Err only when the harness itself fails (temp dir, spawn, setup);
    /// whatever the program does is in the `Outcome`.
    pub fn run(&self, job: &Job) -> Result<Outcome, SandboxError> {
        self.run_inner(job).map(|(o, _)| o)
    }

    /// Run the probe program once; optional steps that failed become notes and are dropped
    /// from later runs.
    fn self_test(&mut self) -> Result<(), SandboxError> {
        let script = format!("print({PROBE_OK:?})\n");
        let job = Job {
            script: &script,
            stdin: &[],
            timeout: Some(self.cfg.timeout.max(Duration::from_secs(10))),
        };
        let (out, warnings) = self.run_inner(&job).map_err(|e| match e {
            SandboxError::Spawn { exe, source } => SandboxError::Probe(format!(
                "cannot start {} in the sandbox: {source}{}",
                exe.display(),
                if self.root {
                    "; the interpreter must be readable by other users"
                } else {
                    ""
                }
            )),
            e => e,
        })?;
        if !out.success() || String::from_utf8_lossy(&out.stdout).trim() != PROBE_OK {
            let hint = if self.root {
                " (is the interpreter readable by other users? set APR_PYTHON to one that is)"
            } else {
                ""
            };
            return Err(SandboxError::Probe(format!(
                "`{}` in the sandbox: {:?}, stdout {:?}, stderr {:?}{hint}",
                self.exe.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim(),
            )));
        }
        for (step, errno) in warnings {
            let on = match step {
                Step::Proc => Some(&mut self.iso.private_proc),
                Step::RoRoot => Some(&mut self.iso.ro_root),
                Step::WorkTmpfs => Some(&mut self.iso.tmpfs_workdir),
                _ => None,
            };
            if let Some(on) = on {
                *on = false;
            }
            self.iso.notes.push(format!(
                "{} refused: {}",
                step.name(),
                probe::errno_name(errno)
            ));
        }
        Ok(())
    }

    fn work_tmpfs_opts(&self, uid: u32) -> Option<CString> {
        if !self.iso.tmpfs_workdir {
            return None;
        }
        let mut o = format!("mode=0700,size={}", self.cfg.disk_bytes.max(4096));
        if self.root {
            o.push_str(&format!(",uid={uid},gid={uid}"));
        }
        CString::new(o).ok()
    }
}

//! The parent side of one run: work dir, spawn, the poll loop that feeds stdin, drains
//! stdout/stderr and watches the clock, then killing, reaping and cleanup.

use std::ffi::{c_int, CString};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::child::{self, Limits, MountPlan, Plan, Step};
use super::{Job, Outcome, Sandbox, SandboxError, Status, ENV, PY_FLAGS, SCRIPT_NAME};

/// How long output may keep flowing after the program's tree is gone (only processes that
/// escaped every kill could still hold the pipes).
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// Longest timeout honoured (keeps the deadline arithmetic finite).
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Extra time before the harness kills a tree whose P2 should have ended it itself.
const BACKSTOP: Duration = Duration::from_secs(1);
/// Poll period when the kernel has no pidfd_open (before 5.3).
const POLL_SLICE: Duration = Duration::from_millis(10);
const READ_CHUNK: usize = 256 << 10;
/// Pipe buffer we ask for (the unprivileged maximum by default): fewer wakeups on big output.
const PIPE_SIZE: c_int = 1 << 20;
/// Rounds of kill(-1) from the slot uid before giving up on stragglers.
const UID_KILL_ROUNDS: u32 = 200;

static RUN_SEQ: AtomicU64 = AtomicU64::new(0);

/// The per-run directory on the host, removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create(base: &Path) -> Result<WorkDir, SandboxError> {
        let pid = std::process::id();
        loop {
            let n = RUN_SEQ.fetch_add(1, Ordering::Relaxed);
            let p = base.join(format!("apr-sandbox-{pid}-{n}"));
            match fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(WorkDir(p)),
                // Left by an earlier process with the same pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(SandboxError::TempDir {
                        op: "creating",
                        path: p,
                        source,
                    })
                }
            }
        }
    }
}

/// Make every directory under `p` writable and searchable, so that a tree the program
/// chmod-ed shut can still be removed.
fn open_up(p: &Path) {
    if let Ok(m) = fs::symlink_metadata(p) {
        if m.is_dir() {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    open_up(&e.path());
                }
            }
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if fs::remove_dir_all(&self.0).is_err() {
            open_up(&self.0);
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

/// A close-on-exec pipe whose write end is at fd 3 or above (clear of the child's stdio).
fn ctl_pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: pipe2 fills two fresh descriptors that we then own.
    let (r, w) = unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(SandboxError::Io {
                op: "pipe2",
                source: io::Error::last_os_error(),
            });
        }
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    if w.as_raw_fd() >= 3 {
        return Ok((r, w));
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that we own.
    let d = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if d < 0 {
        return Err(SandboxError::Io {
            op: "dup control pipe",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: `d` is fresh and ours.
    Ok((r, unsafe { OwnedFd::from_raw_fd(d) }))
}

/// Has `pid` (our unreaped child) exited? Leaves it unreaped, so its pid and process group
/// id cannot be reused while we still signal them.
fn exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid writes into a zeroed siginfo_t we own.
    unsafe {
        let mut si: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut si,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r != 0 || si.si_pid() != 0
    }
}

/// SIGKILL every process of `uid` from a helper that becomes that uid (kill(-1) then reaches
/// exactly those processes, wherever they moved). Only for root mode without a pid namespace.
fn kill_uid(uid: libc::uid_t) {
    // SAFETY: the child only calls async-signal-safe functions and _exit.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            if libc::setresuid(uid, uid, uid) != 0 {
                libc::_exit(1);
            }
            for _ in 0..UID_KILL_ROUNDS {
                if libc::kill(-1, libc::SIGKILL) != 0 && last_errno() == libc::ESRCH {
                    libc::_exit(0);
                }
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 1_000_000,
                };
                libc::nanosleep(&ts, std::ptr::null_mut());
            }
            libc::_exit(2);
        }
        if pid > 0 {
            let mut st = 0;
            while libc::waitpid(pid, &mut st, 0) < 0 && last_errno() == libc::EINTR {}
        }
    }
}

/// One capped output stream.
struct Capture {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Capture {
    fn new(fd: OwnedFd, cap: usize) -> Self {
        set_nonblocking(fd.as_raw_fd());
        // SAFETY: fcntl on a descriptor we own; failure leaves the default size.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Capture {
            fd: Some(fd),
            buf: Vec::new(),
            cap,
            truncated: false,
        }
    }

    /// Read until the pipe is empty; close it at EOF or error.
    fn drain(&mut self, chunk: &mut [u8]) {
        let Some(fd) = &self.fd else { return };
        loop {
            // SAFETY: reading into a buffer we own, of its length.
            let n = unsafe { libc::read(fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
            if n > 0 {
                let n = n as usize;
                let room = self.cap.saturating_sub(self.buf.len());
                self.buf.extend_from_slice(&chunk[..n.min(room)]);
                self.truncated |= n > room;
                continue;
            }
            if n < 0 {
                match last_errno() {
                    libc::EINTR => continue,
                    libc::EAGAIN => return,
                    _ => {}
                }
            }
            self.fd = None;
            return;
        }
    }
}

/// Feeds stdin without blocking; closes it when done or when the program stops reading.
struct Feed<'a> {
    fd: Option<OwnedFd>,
    data: &'a [u8],
}

impl Feed<'_> {
    fn push(&mut self) {
        let Some(fd) = &self.fd else { return };
        while !self.data.is_empty() {
            // SAFETY: writing from a slice we borrow, of its length.
            let n =
                unsafe { libc::write(fd.as_raw_fd(), self.data.as_ptr().cast(), self.data.len()) };
            if n >= 0 {
                self.data = &self.data[n as usize..];
                continue;
            }
            match last_errno() {
                libc::EINTR => continue,
                libc::EAGAIN => return,
                _ => break, // EPIPE: the program closed stdin.
            }
        }
        self.fd = None;
    }
}

fn ms_until(t: Instant, now: Instant) -> c_int {
    let d = t.saturating_duration_since(now);
    (d.as_millis() as c_int).saturating_add(i32::from(!d.subsec_nanos().is_multiple_of(1_000_000)))
}

impl Sandbox {
    pub(super) fn run_inner(&self, job: &Job) -> Result<(Outcome, Vec<(Step, i32)>), SandboxError> {
        let slot = self.slots.acquire();
        let uid = self.uids.as_ref().map_or(0, |r| r.0) + slot.id;
        let dir = WorkDir::create(&self.base)?;
        let script_path = dir.0.join(SCRIPT_NAME);
        let tempdir_err = |op, source| SandboxError::TempDir {
            op,
            path: dir.0.clone(),
            source,
        };
        // The host copy is the work dir whenever the tmpfs one is not available.
        fs::File::create(&script_path)
            .and_then(|mut f| f.write_all(job.script.as_bytes()))
            .map_err(|e| tempdir_err("writing main.py in", e))?;
        if self.root {
            std::os::unix::fs::chown(&dir.0, Some(uid), Some(uid))
                .map_err(|e| tempdir_err("chown", e))?;
        }
        let timeout = job.timeout.unwrap_or(self.cfg.timeout).min(MAX_TIMEOUT);
        let cpu_secs = self
            .cfg
            .cpu_secs
            .unwrap_or_else(|| timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0) + 1);
        let (ctl_r, ctl_w) = ctl_pipe()?;
        set_nonblocking(ctl_r.as_raw_fd());
        let cstr = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| SandboxError::Config(format!("path with a NUL byte: {}", p.display())))
        };
        let plan = Plan {
            unshare: self.unshare,
            user_maps: self.iso.user_ns.then(|| {
                // SAFETY: geteuid/getegid have no preconditions.
                let (u, g) = unsafe { (libc::geteuid(), libc::getegid()) };
                (
                    format!("{u} {u} 1\n").into_bytes(),
                    format!("{g} {g} 1\n").into_bytes(),
                )
            }),
            mounts: self.iso.mount_ns.then(|| MountPlan {
                hidden: self.hidden.clone(),
                proc_: self.iso.private_proc,
                ro_root: self.iso.ro_root,
                dev_shm: true,
                work_tmpfs: self.work_tmpfs_opts(uid),
            }),
            limits: Limits {
                as_bytes: self.cfg.mem_bytes,
                cpu_secs,
                nproc: self.cfg.max_procs,
                fsize: self.cfg.disk_bytes,
                nofile: super::NOFILE,
            },
            ids: self.root.then_some((uid, uid)),
            workdir: cstr(&dir.0)?,
            script_path: cstr(&script_path)?,
            script: job.script.as_bytes().to_vec(),
            ctl: ctl_w.as_raw_fd(),
            reaper_timeout: (!self.iso.pid_ns).then_some(timeout),
        };
        let mut cmd = Command::new(&self.exe);
        cmd.args(PY_FLAGS)
            .arg(SCRIPT_NAME)
            .env_clear()
            .envs(ENV)
            .env("HOME", &dir.0)
            .env("TMPDIR", &dir.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: `child::p1` only makes async-signal-safe calls and reads `plan`, which the
        // parent built before the fork.
        unsafe { cmd.pre_exec(move || child::p1(&plan)) };
        let start = Instant::now();
        let mut proc_ = cmd.spawn().map_err(|source| SandboxError::Spawn {
            exe: self.exe.clone(),
            source,
        })?;
        drop(ctl_w);
        let pid = proc_.id() as libc::pid_t;
        let mut feed = Feed {
            fd: proc_.stdin.take().map(OwnedFd::from),
            data: job.stdin,
        };
        if let Some(fd) = &feed.fd {
            set_nonblocking(fd.as_raw_fd());
        }
        let o = proc_.stdout.take().map(OwnedFd::from);
        let e = proc_.stderr.take().map(OwnedFd::from);
        let (mut out, mut err) = match (o, e) {
            (Some(o), Some(e)) => (
                Capture::new(o, self.cfg.output_cap),
                Capture::new(e, self.cfg.output_cap),
            ),
            _ => {
                kill_tree(pid);
                let _ = proc_.wait();
                return Err(SandboxError::Io {
                    op: "child pipes",
                    source: io::Error::other("stdout/stderr pipe missing"),
                });
            }
        };
        // SAFETY: pidfd_open on our own unreaped child; the fd is ours if valid.
        let pidfd = unsafe {
            let r = libc::syscall(libc::SYS_pidfd_open, pid, 0);
            (r >= 0).then(|| OwnedFd::from_raw_fd(r as RawFd))
        };
        // Without a pid namespace P2 enforces the timeout and cleans up; ours is the backstop.
        let deadline = start
            + timeout
            + if self.iso.pid_ns {
                Duration::ZERO
            } else {
                BACKSTOP
            };
        let mut timed_out = false;
        let mut done_at: Option<Instant> = None;
        let mut wall = Duration::ZERO;
        let mut chunk = vec![0u8; READ_CHUNK];
        feed.push();
        loop {
            let now = Instant::now();
            if done_at.is_none() && exited(pid) {
                wall = now - start;
                // Anything still in the group; without a pid namespace, the slot uid too.
                kill_tree(pid);
                if self.root && !self.iso.pid_ns {
                    kill_uid(uid);
                }
                done_at = Some(now);
            }
            if done_at.is_none() && now >= deadline && !timed_out {
                timed_out = true;
                kill_tree(pid);
            }
            let (out_open, err_open) = (out.fd.is_some(), err.fd.is_some());
            if let Some(t) = done_at {
                if (!out_open && !err_open) || now >= t + DRAIN_GRACE {
                    break;
                }
            }
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4);
            let mut push = |fd: Option<&OwnedFd>, events| {
                if let Some(fd) = fd {
                    fds.push(libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events,
                        revents: 0,
                    });
                }
            };
            push(out.fd.as_ref(), libc::POLLIN);
            push(err.fd.as_ref(), libc::POLLIN);
            push(feed.fd.as_ref(), libc::POLLOUT);
            let watch_pid = done_at.is_none();
            if watch_pid {
                push(pidfd.as_ref(), libc::POLLIN);
            }
            let wait_ms = match done_at {
                Some(t) => ms_until(t + DRAIN_GRACE, now),
                None if timed_out => POLL_SLICE.as_millis() as c_int,
                None if pidfd.is_some() => ms_until(deadline, now),
                None => ms_until(deadline, now).min(POLL_SLICE.as_millis() as c_int),
            };
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            let r =
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms.max(0)) };
            if r < 0 && last_errno() != libc::EINTR {
                // Should not happen; sleep a slice so the loop cannot spin.
                std::thread::sleep(POLL_SLICE);
            }
            out.drain(&mut chunk);
            err.drain(&mut chunk);
            feed.push();
        }
        drop(feed);
        let p1_status = proc_.wait().map_err(|source| SandboxError::Io {
            op: "waiting for the sandbox",
            source,
        })?;
        drop(slot);
        let ctl = read_ctl(&ctl_r);
        if let Some((step, errno)) = ctl.error {
            return Err(SandboxError::Setup {
                step: step.name(),
                source: io::Error::from_raw_os_error(errno),
            });
        }
        let status = if timed_out || ctl.timed_out {
            Status::TimedOut
        } else if let Some(st) = ctl.status {
            wait_status(st)
        } else {
            use std::os::unix::process::ExitStatusExt;
            match (p1_status.code(), p1_status.signal()) {
                (Some(c), _) => Status::Exited(c),
                (None, Some(s)) => Status::Signaled(s),
                _ => Status::Exited(-1),
            }
        };
        drop(dir);
        Ok((
            Outcome {
                status,
                stdout: out.buf,
                stderr: err.buf,
                stdout_truncated: out.truncated,
                stderr_truncated: err.truncated,
                wall,
            },
            ctl.warnings,
        ))
    }
}

/// SIGKILL the run's process group (P1's pid, as P1 called setsid) and P1 itself.
fn kill_tree(pid: libc::pid_t) {
    // SAFETY: `pid` is our unreaped child, so neither it nor its group id can be reused yet.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}

fn wait_status(st: c_int) -> Status {
    if libc::WIFEXITED(st) {
        Status::Exited(libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        Status::Signaled(libc::WTERMSIG(st))
    } else {
        Status::Exited(-1)
    }
}

/// What the child reported on the control pipe.
struct CtlRecords {
    /// P3's wait status.
    status: Option<c_int>,
    /// P2 ended the run at the timeout (no pid namespace).
    timed_out: bool,
    /// The first fatal setup error.
    error: Option<(Step, i32)>,
    /// Optional steps that failed.
    warnings: Vec<(Step, i32)>,
}

/// Parse the control pipe once P1 is reaped (P2 and P3 are gone by then).
fn read_ctl(fd: &OwnedFd) -> CtlRecords {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: reading into a stack buffer of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            bytes.extend_from_slice(&buf[..n as usize]);
        } else if n < 0 && last_errno() == libc::EINTR {
            continue;
        } else {
            break;
        }
    }
    let mut c = CtlRecords {
        status: None,
        timed_out: false,
        error: None,
        warnings: Vec::new(),
    };
    for r in bytes.chunks_exact(child::RECORD_LEN) {
        let val = i32::from_le_bytes([r[2], r[3], r[4], r[5]]);
        match (r[0], Step::from_u8(r[1])) {
            (child::TAG_STATUS, _) => c.status = Some(val),
            (child::TAG_TIMEOUT, _) => c.timed_out = true,
            (child::TAG_ERROR, Some(s)) => {
                c.error.get_or_insert((s, val));
            }
            (child::TAG_WARN, Some(s)) => c.warnings.push((s, val)),
            _ => {}
        }
    }
    c
}

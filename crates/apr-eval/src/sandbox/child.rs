//! The child side of the sandbox: the code that runs between `fork` and `exec` (inside
//! `Command::pre_exec`). Only async-signal-safe libc calls live here: no allocation, no locks,
//! no panics; everything it needs (paths, map lines, options) is built by the parent.
//! Reference: signal-safety(7), user_namespaces(7), pid_namespaces(7), mount_setattr(2).
//!
//! Three processes, each with one job:
//! - P1 (the `Command` child, in the host pid namespace): `setsid`, `unshare` the namespaces,
//!   write the uid/gid maps when a user namespace is used, fork P2, close every descriptor and
//!   wait for P2. Killing P1's process group (or P1 itself, through P2's parent-death signal)
//!   tears everything down.
//! - P2 (pid 1 of the new pid namespace): builds the mount tree, forks P3, reaps orphans, and
//!   sends P3's wait status to the parent over the control pipe. When P2 exits the kernel kills
//!   every process left in the namespace, whatever session or process group it moved to.
//!   Without a pid namespace P2 is a child subreaper instead (`reaper`): it owns the timeout,
//!   kills python's process group and then every remaining descendant before it exits.
//! - P3: rlimits, `chdir`, drops to the slot uid, then returns so that `Command` execs python.
//!
//! Setup failures are reported as fixed-size records on the control pipe (`TAG_*`).

use std::ffi::{c_int, CString};
use std::io;
use std::ptr;
use std::sync::Arc;

/// Exit code of P1/P2 when the setup failed (the control pipe says which step).
pub(super) const SETUP_EXIT: c_int = 125;
/// Control-pipe record tags: fatal setup error, optional step skipped, wait status of P3.
pub(super) const TAG_ERROR: u8 = b'E';
pub(super) const TAG_WARN: u8 = b'W';
pub(super) const TAG_STATUS: u8 = b'S';
pub(super) const TAG_TIMEOUT: u8 = b'T';
/// tag, step, 4-byte little-endian value; far below PIPE_BUF, so each write is atomic.
pub(super) const RECORD_LEN: usize = 6;
/// Highest capability number tried when emptying the bounding set (unknown ones fail harmlessly).
const MAX_CAP: libc::c_ulong = 63;
/// Most bind mounts one hidden directory may need (the interpreter's prefix, its site dirs).
pub(super) const MAX_BINDS: usize = 16;

/// One setup step, named in errors and notes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Step {
    Setsid,
    Unshare,
    UserMap,
    Fork,
    Private,
    HiddenOpen,
    HiddenTmpfs,
    HiddenMkdir,
    HiddenMove,
    Proc,
    RoRoot,
    DevShm,
    WorkTmpfs,
    WorkBind,
    Script,
    Rlimit,
    Chdir,
    Setgroups,
    Setgid,
    Setuid,
    NoNewPrivs,
    Oom,
}

const STEPS: [Step; 22] = [
    Step::Setsid,
    Step::Unshare,
    Step::UserMap,
    Step::Fork,
    Step::Private,
    Step::HiddenOpen,
    Step::HiddenTmpfs,
    Step::HiddenMkdir,
    Step::HiddenMove,
    Step::Proc,
    Step::RoRoot,
    Step::DevShm,
    Step::WorkTmpfs,
    Step::WorkBind,
    Step::Script,
    Step::Rlimit,
    Step::Chdir,
    Step::Setgroups,
    Step::Setgid,
    Step::Setuid,
    Step::NoNewPrivs,
    Step::Oom,
];

impl Step {
    pub(super) fn from_u8(b: u8) -> Option<Step> {
        STEPS.get(b as usize).copied()
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Step::Setsid => "setsid",
            Step::Unshare => "unshare",
            Step::UserMap => "write uid/gid map",
            Step::Fork => "fork",
            Step::Private => "make mounts private",
            Step::HiddenOpen => "open interpreter tree",
            Step::HiddenTmpfs => "tmpfs over hidden directory",
            Step::HiddenMkdir => "mkdir interpreter mount point",
            Step::HiddenMove => "mount interpreter tree",
            Step::Proc => "mount private /proc",
            Step::RoRoot => "read-only root",
            Step::DevShm => "private /dev/shm",
            Step::WorkTmpfs => "tmpfs work dir",
            Step::WorkBind => "writable work dir",
            Step::Script => "write main.py",
            Step::Rlimit => "setrlimit",
            Step::Chdir => "chdir",
            Step::Setgroups => "setgroups",
            Step::Setgid => "setresgid",
            Step::Setuid => "setresuid",
            Step::NoNewPrivs => "no_new_privs",
            Step::Oom => "oom_score_adj",
        }
    }
}

/// A directory the slot uid cannot traverse (e.g. `/root`, 0700) that holds the interpreter:
/// inside the mount namespace a tmpfs covers it and only `binds` are mounted back.
pub(super) struct HiddenDir {
    pub dir: CString,
    pub binds: Vec<HiddenBind>,
}

pub(super) struct HiddenBind {
    /// Absolute path mounted back at the same place.
    pub target: CString,
    /// Directories to create on the tmpfs, outermost first, ending with `target`.
    pub mkdirs: Vec<CString>,
}

pub(super) struct MountPlan {
    pub hidden: Arc<Vec<HiddenDir>>,
    pub proc_: bool,
    pub ro_root: bool,
    pub dev_shm: bool,
    /// tmpfs options for the work dir; None: bind the host directory instead.
    pub work_tmpfs: Option<CString>,
}

pub(super) struct Limits {
    pub as_bytes: u64,
    pub cpu_secs: u64,
    pub nproc: u64,
    pub fsize: u64,
    pub nofile: u64,
}

/// Everything the child needs, built by the parent before `spawn`.
pub(super) struct Plan {
    pub unshare: c_int,
    /// `/proc/self/uid_map` and `gid_map` lines (user-namespace mode).
    pub user_maps: Option<(Vec<u8>, Vec<u8>)>,
    pub mounts: Option<MountPlan>,
    pub limits: Limits,
    /// Slot uid and gid to drop to (root mode).
    pub ids: Option<(libc::uid_t, libc::gid_t)>,
    pub workdir: CString,
    pub script_path: CString,
    pub script: Vec<u8>,
    /// Write end of the control pipe (close-on-exec).
    pub ctl: c_int,
    /// Without a pid namespace P2 is a subreaper that enforces this timeout itself and kills
    /// every descendant before exiting (the harness's own deadline is then only a backstop).
    pub reaper_timeout: Option<std::time::Duration>,
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

unsafe fn record(fd: c_int, tag: u8, step: u8, val: i32) {
    let v = val.to_le_bytes();
    let buf = [tag, step, v[0], v[1], v[2], v[3]];
    libc::write(fd, buf.as_ptr().cast(), RECORD_LEN);
}

unsafe fn fail(ctl: c_int, step: Step, err: i32) -> ! {
    record(ctl, TAG_ERROR, step as u8, err);
    libc::_exit(SETUP_EXIT)
}

unsafe fn warn(ctl: c_int, step: Step, err: i32) {
    record(ctl, TAG_WARN, step as u8, err);
}

unsafe fn write_all(fd: c_int, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        data = &data[n as usize..];
    }
    true
}

/// Write a small file (a /proc knob); Err(errno) on failure.
unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> Result<(), i32> {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return Err(errno());
    }
    let ok = write_all(fd, data);
    let e = errno();
    libc::close(fd);
    if ok {
        Ok(())
    } else {
        Err(e)
    }
}

/// Close descriptors in `lo..=hi` (`flags` may ask for close-on-exec instead).
unsafe fn close_range(lo: u32, hi: u32, flags: u32) {
    if lo > hi {
        return;
    }
    if libc::syscall(libc::SYS_close_range, lo, hi, flags) == 0 {
        return;
    }
    if flags != 0 {
        return; // Old kernel: only the plain close has a fallback.
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
        lim.rlim_cur.min(65536) as u32
    } else {
        1024
    };
    for fd in lo..=hi.min(max) {
        libc::close(fd as c_int);
    }
}

/// Exit code that mirrors a wait status (128+signal for a signal, as shells do).
fn exit_code(st: c_int) -> c_int {
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else if libc::WIFSIGNALED(st) {
        128 + libc::WTERMSIG(st)
    } else {
        1
    }
}

/// P1: runs in the `Command` child. Returns only in P3 (then `Command` execs python) or with
/// an error from before the fork (then `spawn` reports it).
///
/// # Safety
/// Must only be called between fork and exec of a `Command` child.
pub(super) unsafe fn p1(plan: &Plan) -> io::Result<()> {
    if libc::setsid() < 0 {
        return Err(io::Error::last_os_error());
    }
    if plan.unshare != 0 && libc::unshare(plan.unshare) != 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some((uid_map, gid_map)) = &plan.user_maps {
        // Missing on kernels before 3.19, where the gid map needs no "deny".
        let _ = write_file(c"/proc/self/setgroups", b"deny");
        write_file(c"/proc/self/uid_map", uid_map).map_err(io::Error::from_raw_os_error)?;
        write_file(c"/proc/self/gid_map", gid_map).map_err(io::Error::from_raw_os_error)?;
    }
    let pid = libc::fork();
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        return p2(plan);
    }
    // P1 holds nothing: pipes of other runs forked concurrently must not stay open here.
    close_range(0, u32::MAX, 0);
    let mut st: c_int = 0;
    loop {
        let r = libc::waitpid(pid, &mut st, 0);
        if r == pid {
            libc::_exit(exit_code(st));
        }
        if r < 0 && errno() != libc::EINTR {
            libc::_exit(SETUP_EXIT);
        }
    }
}

/// P2: pid 1 of the new pid namespace (or a plain intermediate when there is none).
unsafe fn p2(plan: &Plan) -> io::Result<()> {
    let ctl = plan.ctl;
    libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    // The OOM killer should pick a sandboxed program before the harness.
    if let Err(e) = write_file(c"/proc/self/oom_score_adj", b"1000") {
        warn(ctl, Step::Oom, e);
    }
    if let Some(m) = &plan.mounts {
        if let Err((step, e)) = mounts(plan, m) {
            fail(ctl, step, e);
        }
    }
    if let Some(t) = plan.reaper_timeout {
        reaper(plan, t);
        return p3(plan);
    }
    let pid = libc::fork();
    if pid < 0 {
        fail(ctl, Step::Fork, errno());
    }
    if pid == 0 {
        return p3(plan);
    }
    // The parent keeps `ctl` at 3 or above, clear of stdio.
    close_range(0, ctl as u32 - 1, 0);
    close_range(ctl as u32 + 1, u32::MAX, 0);
    let mut st: c_int = 0;
    loop {
        // As pid 1 this also reaps orphans reparented to us.
        let r = libc::waitpid(-1, &mut st, 0);
        if r == pid {
            record(ctl, TAG_STATUS, 0, st);
            libc::_exit(exit_code(st));
        }
        if r < 0 && errno() != libc::EINTR {
            libc::_exit(SETUP_EXIT);
        }
    }
}

fn now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

fn ns(ts: &libc::timespec) -> i128 {
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// P2 without a pid namespace: fork P3 into its own process group, wait for it or the
/// deadline, SIGKILL that whole group at once (a fork bomb cannot outrun one group kill),
/// then kill whatever escaped it: orphans reparent to us as the subreaper, so setsid'd
/// daemons are still our descendants. Never returns in P2; returns in P3.
unsafe fn reaper(plan: &Plan, timeout: std::time::Duration) {
    let ctl = plan.ctl;
    let deadline = ns(&now()) + timeout.as_nanos() as i128;
    libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    let mut chld: libc::sigset_t = std::mem::zeroed();
    let mut old: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut chld);
    libc::sigaddset(&mut chld, libc::SIGCHLD);
    // Blocked before the fork, so no exit can slip past sigtimedwait.
    libc::sigprocmask(libc::SIG_BLOCK, &chld, &mut old);
    let pid = libc::fork();
    if pid < 0 {
        fail(ctl, Step::Fork, errno());
    }
    if pid == 0 {
        libc::setpgid(0, 0);
        libc::sigprocmask(libc::SIG_SETMASK, &old, ptr::null_mut());
        return;
    }
    // Also set here, so the group exists before either side runs on.
    libc::setpgid(pid, pid);
    close_range(0, ctl as u32 - 1, 0);
    close_range(ctl as u32 + 1, u32::MAX, 0);
    let mut timed_out = false;
    loop {
        // Peek without reaping: P3's pid must stay valid as a group id until the group kill.
        let mut si: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_ALL,
            0,
            &mut si,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        let exited = if r == 0 { si.si_pid() } else { 0 };
        if r < 0 || exited == pid {
            break;
        }
        if exited > 0 {
            libc::waitpid(exited, ptr::null_mut(), 0); // An orphan: reap it.
            continue;
        }
        let left = deadline - ns(&now());
        if left <= 0 {
            timed_out = true;
            break;
        }
        let ts = libc::timespec {
            tv_sec: (left / 1_000_000_000) as libc::time_t,
            tv_nsec: (left % 1_000_000_000) as libc::c_long,
        };
        libc::sigtimedwait(&chld, ptr::null_mut(), &ts);
    }
    libc::kill(-pid, libc::SIGKILL);
    libc::kill(pid, libc::SIGKILL);
    let mut st: c_int = 0;
    while libc::waitpid(pid, &mut st, 0) < 0 && errno() == libc::EINTR {}
    if timed_out {
        record(ctl, TAG_TIMEOUT, 0, 0);
    } else {
        record(ctl, TAG_STATUS, 0, st);
    }
    kill_descendants();
    libc::_exit(if timed_out { SETUP_EXIT } else { exit_code(st) });
}

/// Rounds of kill-and-reap before a subreaper gives up on descendants.
const REAP_ROUNDS: u32 = 2000;

/// SIGKILL our children until none is left; grandchildren reparent to us as their parents
/// die and are caught by the next round. Needs /proc/thread-self/children.
unsafe fn kill_descendants() {
    let mut buf = [0u8; 4096];
    for _ in 0..REAP_ROUNDS {
        let fd = libc::open(
            c"/proc/thread-self/children".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            let mut pid: libc::pid_t = 0;
            loop {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                for &b in &buf[..n as usize] {
                    if b.is_ascii_digit() {
                        pid = pid
                            .saturating_mul(10)
                            .saturating_add((b - b'0') as libc::pid_t);
                    } else {
                        if pid > 0 {
                            libc::kill(pid, libc::SIGKILL);
                        }
                        pid = 0;
                    }
                }
            }
            if pid > 0 {
                libc::kill(pid, libc::SIGKILL);
            }
            libc::close(fd);
        }
        loop {
            let r = libc::waitpid(-1, ptr::null_mut(), libc::WNOHANG);
            if r > 0 {
                continue;
            }
            if r < 0 && errno() == libc::EINTR {
                continue;
            }
            if r < 0 {
                return; // ECHILD: nothing left.
            }
            break;
        }
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        libc::nanosleep(&ts, ptr::null_mut());
    }
}

/// P3: limits, work dir, uid drop; returning Ok lets `Command` exec python.
unsafe fn p3(plan: &Plan) -> io::Result<()> {
    let ctl = plan.ctl;
    let l = &plan.limits;
    let limits = [
        (libc::RLIMIT_AS, l.as_bytes, l.as_bytes),
        (libc::RLIMIT_CPU, l.cpu_secs, l.cpu_secs.saturating_add(1)),
        (libc::RLIMIT_NPROC, l.nproc, l.nproc),
        (libc::RLIMIT_FSIZE, l.fsize, l.fsize),
        (libc::RLIMIT_NOFILE, l.nofile, l.nofile),
        (libc::RLIMIT_CORE, 0, 0),
    ];
    for (res, soft, hard) in limits {
        let r = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        if libc::setrlimit(res, &r) != 0 {
            fail(ctl, Step::Rlimit, errno());
        }
    }
    if libc::chdir(plan.workdir.as_ptr()) != 0 {
        fail(ctl, Step::Chdir, errno());
    }
    // Empty the capability bounding set: nothing exec'd later can gain a capability back.
    for cap in 0..=MAX_CAP {
        libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
    }
    if let Some((uid, gid)) = plan.ids {
        if libc::setgroups(0, ptr::null()) != 0 {
            fail(ctl, Step::Setgroups, errno());
        }
        if libc::setresgid(gid, gid, gid) != 0 {
            fail(ctl, Step::Setgid, errno());
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            fail(ctl, Step::Setuid, errno());
        }
    }
    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
        warn(ctl, Step::NoNewPrivs, errno());
    }
    // After the uid change, which clears it.
    libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    // Descriptors other threads opened without O_CLOEXEC must not reach the program.
    close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
    Ok(())
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const OPEN_TREE_CLONE: u32 = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;

unsafe fn mount_setattr(
    path: &std::ffi::CStr,
    flags: c_int,
    set: u64,
    clr: u64,
) -> Result<(), i32> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    let r = libc::syscall(
        libc::SYS_mount_setattr,
        libc::AT_FDCWD,
        path.as_ptr(),
        flags as libc::c_uint,
        &attr as *const MountAttr,
        std::mem::size_of::<MountAttr>(),
    );
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

unsafe fn mount(
    src: &std::ffi::CStr,
    dst: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> Result<(), i32> {
    let r = libc::mount(
        src.as_ptr(),
        dst.as_ptr(),
        fstype.map_or(ptr::null(), |s| s.as_ptr()),
        flags,
        data.map_or(ptr::null(), |s| s.as_ptr().cast()),
    );
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Build the private mount tree (P2, in the new mount namespace).
unsafe fn mounts(plan: &Plan, m: &MountPlan) -> Result<(), (Step, i32)> {
    let ctl = plan.ctl;
    // First, so that nothing below propagates back to the host.
    mount(c"none", c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| (Step::Private, e))?;
    for h in m.hidden.iter() {
        hidden(h)?;
    }
    if m.proc_ {
        if let Err(e) = mount(
            c"proc",
            c"/proc",
            Some(c"proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
        ) {
            warn(ctl, Step::Proc, e);
        }
    }
    let mut ro = false;
    if m.ro_root {
        match mount_setattr(
            c"/",
            libc::AT_RECURSIVE,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
            0,
        ) {
            Ok(()) => ro = true,
            Err(e) => warn(ctl, Step::RoRoot, e),
        }
    }
    if m.dev_shm {
        let flags = libc::MS_NOSUID | libc::MS_NODEV;
        if let Err(e) = mount(
            c"tmpfs",
            c"/dev/shm",
            Some(c"tmpfs"),
            flags,
            Some(c"mode=1777,size=16m"),
        ) {
            warn(ctl, Step::DevShm, e);
        }
    }
    let mut on_tmpfs = false;
    if let Some(opts) = &m.work_tmpfs {
        let flags = libc::MS_NOSUID | libc::MS_NODEV;
        match mount(c"tmpfs", &plan.workdir, Some(c"tmpfs"), flags, Some(opts)) {
            Ok(()) => on_tmpfs = true,
            Err(e) => warn(ctl, Step::WorkTmpfs, e),
        }
    }
    if on_tmpfs {
        let fd = libc::open(
            plan.script_path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        );
        if fd < 0 {
            return Err((Step::Script, errno()));
        }
        let ok = write_all(fd, &plan.script);
        let e = errno();
        libc::close(fd);
        if !ok {
            return Err((Step::Script, e));
        }
    } else if ro {
        // The host directory stays the work dir: give it back write access.
        mount(&plan.workdir, &plan.workdir, None, libc::MS_BIND, None)
            .map_err(|e| (Step::WorkBind, e))?;
        mount_setattr(&plan.workdir, 0, 0, MOUNT_ATTR_RDONLY).map_err(|e| (Step::WorkBind, e))?;
    }
    Ok(())
}

/// Cover a hidden directory with a tmpfs and mount the interpreter's trees back in.
unsafe fn hidden(h: &HiddenDir) -> Result<(), (Step, i32)> {
    let mut fds = [-1 as c_int; MAX_BINDS];
    for (i, b) in h.binds.iter().take(MAX_BINDS).enumerate() {
        let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_RECURSIVE as u32;
        let fd = libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            b.target.as_ptr(),
            flags,
        );
        if fd < 0 {
            return Err((Step::HiddenOpen, errno()));
        }
        fds[i] = fd as c_int;
    }
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    mount(
        c"tmpfs",
        &h.dir,
        Some(c"tmpfs"),
        flags,
        Some(c"mode=0755,size=1m"),
    )
    .map_err(|e| (Step::HiddenTmpfs, e))?;
    for (i, b) in h.binds.iter().take(MAX_BINDS).enumerate() {
        for d in &b.mkdirs {
            if libc::mkdir(d.as_ptr(), 0o755) != 0 && errno() != libc::EEXIST {
                return Err((Step::HiddenMkdir, errno()));
            }
        }
        let r = libc::syscall(
            libc::SYS_move_mount,
            fds[i],
            c"".as_ptr(),
            libc::AT_FDCWD,
            b.target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        );
        if r != 0 {
            return Err((Step::HiddenMove, errno()));
        }
        libc::close(fds[i]);
    }
    Ok(())
}

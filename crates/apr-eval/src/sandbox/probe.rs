//! What `Sandbox::new` finds out once: the interpreter and the directories it needs, which
//! namespaces the kernel grants (each tried in a throwaway child), and which of the
//! interpreter's directories the slot uid cannot reach.

use std::collections::BTreeMap;
use std::ffi::{c_int, CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::child::{HiddenBind, HiddenDir, MAX_BINDS};
use super::SandboxError;

/// Environment variable naming the interpreter when the config does not.
pub const PYTHON_ENV: &str = "APR_PYTHON";
const PYTHON_DEFAULT: &str = "python3";
/// Prints sys.executable, its real path, the four prefixes, then sys.path, one per line.
const QUERY: &str = "import os, sys\n\
print(sys.executable)\n\
print(os.path.realpath(sys.executable))\n\
for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix): print(p)\n\
for p in sys.path: print(p)\n";

pub(super) struct PythonInfo {
    /// Path to exec: sys.executable as the interpreter reports it (a venv keeps its own).
    pub exe: PathBuf,
    /// Directories the interpreter reads: its bin dirs, prefixes and sys.path entries.
    pub needed: Vec<PathBuf>,
}

/// The interpreter: `cfg` path, else `$APR_PYTHON`, else `python3` on PATH, asked once
/// where it lives (a pyenv or asdf shim resolves to the real binary here).
pub(super) fn find_python(cfg: Option<&Path>) -> Result<PythonInfo, SandboxError> {
    let given: OsString = match cfg {
        Some(p) => p.as_os_str().to_owned(),
        None => std::env::var_os(PYTHON_ENV)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| PYTHON_DEFAULT.into()),
    };
    let shown = Path::new(&given).display().to_string();
    let out = Command::new(&given)
        .args(["-s", "-c", QUERY])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| {
            SandboxError::NoPython(format!(
                "cannot run `{shown}` ({e}); install python3 or set {PYTHON_ENV} to an interpreter"
            ))
        })?;
    if !out.status.success() {
        return Err(SandboxError::NoPython(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let lines: Vec<&[u8]> = out.stdout.split(|&b| b == b'\n').collect();
    let exe = lines.first().filter(|l| !l.is_empty()).ok_or_else(|| {
        SandboxError::NoPython(format!("`{shown}` did not report sys.executable"))
    })?;
    let exe = PathBuf::from(OsStr::from_bytes(exe));
    let mut needed = Vec::new();
    if let Some(d) = exe.parent() {
        needed.push(d.to_path_buf());
    }
    for l in lines.iter().skip(1).filter(|l| l.starts_with(b"/")) {
        let p = PathBuf::from(OsString::from_vec(l.to_vec()));
        // A file on sys.path (a zip) is reached through its directory.
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => needed.push(p),
            Ok(_) => needed.extend(p.parent().map(Path::to_path_buf)),
            Err(_) => {}
        }
    }
    if let Some(real) = lines.get(1).map(|l| PathBuf::from(OsStr::from_bytes(l))) {
        needed.extend(real.parent().map(Path::to_path_buf));
    }
    Ok(PythonInfo { exe, needed })
}

/// Try `unshare(flags)` in a throwaway child; Err(errno) when the kernel refuses.
pub(super) fn try_unshare(flags: c_int) -> Result<(), i32> {
    // SAFETY: the child only calls the async-signal-safe unshare and _exit.
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        if pid == 0 {
            let code = if libc::unshare(flags) == 0 {
                0
            } else {
                std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(255)
            };
            libc::_exit(code.clamp(0, 255));
        }
        let mut st: c_int = 0;
        while libc::waitpid(pid, &mut st, 0) < 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return Err(libc::ECHILD);
            }
        }
        match (libc::WIFEXITED(st), libc::WEXITSTATUS(st)) {
            (true, 0) => Ok(()),
            (true, e) => Err(e),
            _ => Err(libc::EINVAL),
        }
    }
}

/// Real uids of every process visible in /proc (zombies included).
pub(super) fn uids_in_use() -> std::collections::BTreeSet<u32> {
    let mut out = std::collections::BTreeSet::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        if !e.file_name().as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        out.extend(uid);
    }
    out
}

/// The errno's symbolic name for notes ("EPERM"), with the number when unknown.
pub(super) fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::ENOSYS => "ENOSYS",
        libc::ENOSPC => "ENOSPC",
        libc::EUSERS => "EUSERS",
        libc::ENOENT => "ENOENT",
        libc::EBUSY => "EBUSY",
        libc::ENOMEM => "ENOMEM",
        libc::EAGAIN => "EAGAIN",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

/// Whether "other" may search every directory on the way to `p` (the slot uid owns nothing
/// and is in no group, so only the other bits apply to it). Returns the topmost blocker.
fn topmost_blocker(p: &Path) -> Option<PathBuf> {
    p.ancestors()
        .skip(1)
        .filter(|a| {
            std::fs::metadata(a)
                .map(|m| m.permissions().mode() & 0o001 == 0)
                .unwrap_or(false)
        })
        .last()
        .map(Path::to_path_buf)
}

fn cstring(p: &Path) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| SandboxError::Config(format!("path with a NUL byte: {}", p.display())))
}

/// The interpreter directories the slot uid cannot reach, grouped under the topmost
/// directory that blocks them (e.g. `/root` for a pyenv install run by root).
pub(super) fn hidden_dirs(needed: &[PathBuf]) -> Result<Vec<HiddenDir>, SandboxError> {
    let mut groups: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for p in needed {
        let Ok(p) = std::fs::canonicalize(p) else {
            continue;
        };
        if let Some(b) = topmost_blocker(&p) {
            groups.entry(b).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    for (dir, mut paths) in groups {
        paths.sort();
        paths.dedup();
        // Keep the outermost of nested paths: one bind carries its subtree.
        let mut kept: Vec<PathBuf> = Vec::new();
        for p in paths {
            if !kept.iter().any(|k| p.starts_with(k)) {
                kept.push(p);
            }
        }
        if kept.len() > MAX_BINDS {
            return Err(SandboxError::Config(format!(
                "the interpreter needs {} directories under {}, more than {MAX_BINDS}",
                kept.len(),
                dir.display()
            )));
        }
        let mut binds = Vec::new();
        for target in kept {
            let rel = target.strip_prefix(&dir).unwrap_or(&target);
            let mut mkdirs = Vec::new();
            let mut cur = dir.clone();
            for c in rel.components() {
                cur.push(c);
                mkdirs.push(cstring(&cur)?);
            }
            binds.push(HiddenBind {
                target: cstring(&target)?,
                mkdirs,
            });
        }
        out.push(HiddenDir {
            dir: cstring(&dir)?,
            binds,
        });
    }
    Ok(out)
}

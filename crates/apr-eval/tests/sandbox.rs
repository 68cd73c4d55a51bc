//! The execution sandbox against real python3 subprocesses: normal programs, and hostile ones
//! (fork bomb, infinite loop, memory hog, flood of output, writes outside the work dir,
//! network, escaping daemons) that must each end cleanly while the host keeps going.
//! Isolation checks the kernel refused are skipped with a printed reason, never passed silently.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use apr_eval::sandbox::{Job, Outcome, Sandbox, SandboxConfig, Status};

/// Timeout of the runs that are meant to time out.
const SHORT: Duration = Duration::from_secs(2);
/// Slack on top of a timeout for kill, reap and drain (tests share 2 cores).
const MARGIN: Duration = Duration::from_millis(1500);

fn sandbox() -> &'static Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(|| {
        let cfg = SandboxConfig {
            timeout: Duration::from_secs(10),
            workers: 8,
            ..SandboxConfig::default()
        };
        let sb = Sandbox::new(cfg).expect("sandbox");
        eprintln!("isolation: {}", sb.isolation().describe());
        sb
    })
}

fn run(script: &str) -> Outcome {
    sandbox().run(&Job::new(script)).expect("run")
}

fn run_timeout(script: &str, t: Duration) -> Outcome {
    let job = Job {
        timeout: Some(t),
        ..Job::new(script)
    };
    sandbox().run(&job).expect("run")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn skip(why: &str) {
    eprintln!("SKIPPED (isolation not available here): {why}");
}

/// A marker unique to this test process and call site.
fn marker(tag: &str) -> String {
    format!("apr-sbx-{tag}-{}", std::process::id())
}

/// Pids whose command line contains `marker` (any pid namespace: host /proc shows all).
fn procs_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            if text(&c).contains(marker) {
                out.push(pid);
            }
        }
    }
    out
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn normal_program_stdout_stderr_and_exit_code() {
    let o = run("import sys\nprint('hello', 6 * 7)\nprint('oops', file=sys.stderr)\nsys.exit(3)\n");
    assert_eq!(o.status, Status::Exited(3));
    assert_eq!(text(&o.stdout), "hello 42\n");
    assert_eq!(text(&o.stderr), "oops\n");
    assert!(!o.stdout_truncated && !o.stderr_truncated);
    let o = run("assert 1 + 1 == 3\n");
    assert_eq!(o.status, Status::Exited(1));
    assert!(
        text(&o.stderr).contains("AssertionError"),
        "{}",
        text(&o.stderr)
    );
    let o = run("print(sorted({'b', 'a', 'c'}))\n");
    assert!(o.success());
    assert_eq!(text(&o.stdout), "['a', 'b', 'c']\n");
}

#[test]
fn stdin_reaches_program() {
    let job = Job {
        stdin: b"3\n4 5 6\n",
        ..Job::new(
            "import sys\nn = int(input())\nprint(n, sum(map(int, sys.stdin.readline().split())))\n",
        )
    };
    let o = sandbox().run(&job).unwrap();
    assert_eq!(o.status, Status::Exited(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "3 15\n");
    // A large stdin the program never reads must not block the harness.
    let big = vec![b'x'; 8 << 20];
    let job = Job {
        stdin: &big,
        ..Job::new("print('ignored')\n")
    };
    let o = sandbox().run(&job).unwrap();
    assert_eq!(text(&o.stdout), "ignored\n");
}

#[test]
fn signal_death_is_reported() {
    let o =
        run("import os, signal\nprint('x', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n");
    assert_eq!(o.status, Status::Signaled(libc::SIGKILL));
    assert_eq!(text(&o.stdout), "x\n");
}

#[test]
fn infinite_loop_times_out() {
    let o = run_timeout("print('start', flush=True)\nwhile True:\n    pass\n", SHORT);
    assert_eq!(o.status, Status::TimedOut);
    assert!(
        o.wall >= SHORT && o.wall < SHORT + MARGIN,
        "wall {:?}",
        o.wall
    );
    assert_eq!(text(&o.stdout), "start\n");
}

#[test]
fn closed_stdout_does_not_stop_the_timeout() {
    let t = Instant::now();
    let o = run_timeout(
        "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(1000)\n",
        SHORT,
    );
    assert_eq!(o.status, Status::TimedOut);
    assert!(t.elapsed() < SHORT + MARGIN, "took {:?}", t.elapsed());
}

#[test]
fn cpu_rlimit_kills_a_busy_loop() {
    let cfg = SandboxConfig {
        cpu_secs: Some(1),
        timeout: Duration::from_secs(20),
        workers: 1,
        ..SandboxConfig::default()
    };
    let sb = Sandbox::new(cfg).unwrap();
    let o = sb.run(&Job::new("while True:\n    pass\n")).unwrap();
    assert!(
        matches!(o.status, Status::Signaled(s) if s == libc::SIGXCPU || s == libc::SIGKILL),
        "{:?}",
        o.status
    );
    assert!(o.wall < Duration::from_secs(10), "wall {:?}", o.wall);
}

#[test]
fn fork_bomb_ends_and_host_keeps_going() {
    let mark = marker("bomb");
    let script = format!(
        "import os, sys\n\
         if {mark:?} not in sys.argv:\n    os.execv(sys.executable, [sys.executable, '-s', 'main.py', {mark:?}])\n\
         while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    );
    let o = run_timeout(&script, SHORT);
    assert!(o.wall < SHORT + MARGIN * 2, "wall {:?}", o.wall);
    assert!(
        matches!(o.status, Status::TimedOut | Status::Exited(_)),
        "{:?}",
        o.status
    );
    assert_eq!(
        procs_with(&mark),
        Vec::<u32>::new(),
        "fork bomb processes survived"
    );
    let o = run("print('still fine')\n");
    assert_eq!(text(&o.stdout), "still fine\n");
}

#[test]
fn memory_hog_fails_fast() {
    let o = run("x = bytearray(8 << 30)\nprint('allocated', len(x))\n");
    assert!(
        matches!(o.status, Status::Exited(c) if c != 0),
        "{:?}",
        o.status
    );
    assert!(
        text(&o.stderr).contains("MemoryError"),
        "{}",
        text(&o.stderr)
    );
    assert!(o.wall < Duration::from_secs(5), "wall {:?}", o.wall);
}

#[test]
fn gigabyte_of_output_is_truncated() {
    let script =
        "import sys\nb = b'y' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.buffer.write(b)\n";
    let job = Job {
        timeout: Some(Duration::from_secs(30)),
        ..Job::new(script)
    };
    let o = sandbox().run(&job).unwrap();
    let cap = sandbox().config().output_cap;
    assert!(o.stdout_truncated);
    assert_eq!(o.stdout.len(), cap);
    assert!(o.stdout.iter().all(|&b| b == b'y'));
    assert_eq!(o.status, Status::Exited(0), "{}", text(&o.stderr));
}

/// A directory outside the work dir owned by the test user, 0755, with a file in it.
struct Victim {
    dir: PathBuf,
    file: PathBuf,
}

impl Victim {
    fn new(tag: &str) -> Victim {
        let dir = std::env::temp_dir().join(marker(tag));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.join("victim.txt");
        std::fs::write(&file, "original").unwrap();
        Victim { dir, file }
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn writes_outside_the_work_dir_fail() {
    let iso = sandbox().isolation();
    if !iso.ro_root && !iso.uid_drop {
        assert!(!iso.notes.is_empty(), "no isolation and no note saying why");
        return skip(
            "neither a read-only mount tree nor a uid drop: the program can write as this user",
        );
    }
    let v = Victim::new("files");
    let tmp_x = std::env::temp_dir().join(marker("tmpx"));
    let etc = PathBuf::from("/etc").join(marker("etc"));
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
        .join(marker("home"));
    let new_in_dir = v.dir.join("new.txt");
    let attempts: Vec<(&str, String)> = vec![
        ("tmp", format!("open({:?}, 'w').write('x')", tmp_x)),
        ("etc", format!("open({:?}, 'w').write('x')", etc)),
        ("home", format!("open({:?}, 'w').write('x')", home)),
        ("newfile", format!("open({:?}, 'w').write('x')", new_in_dir)),
        ("append", format!("open({:?}, 'a').write('pwned')", v.file)),
        ("rm", format!("os.remove({:?})", v.file)),
        ("rmdir", format!("shutil.rmtree({:?})", v.dir)),
        ("chmod", format!("os.chmod({:?}, 0o777)", v.file)),
    ];
    let mut script = String::from("import os, shutil\n");
    for (name, code) in &attempts {
        script.push_str(&format!(
            "try:\n    {code}\n    print('WROTE {name}')\nexcept OSError as e:\n    print('denied {name}', e.errno)\n"
        ));
    }
    script.push_str(
        "open('inside.txt', 'w').write('ok')\nprint('inside', open('inside.txt').read())\n",
    );
    let o = run(&script);
    let out = text(&o.stdout);
    assert!(o.success(), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("inside ok"), "{out}");
    for (name, _) in &attempts {
        if *name == "tmp" && !iso.ro_root {
            skip("/tmp is world-writable and there is no read-only mount tree");
            continue;
        }
        assert!(
            out.contains(&format!("denied {name}")),
            "{name} was not denied:\n{out}"
        );
    }
    assert_eq!(std::fs::read_to_string(&v.file).unwrap(), "original");
    assert_eq!(
        std::fs::metadata(&v.file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(!new_in_dir.exists() && !etc.exists() && !home.exists());
    if iso.ro_root {
        assert!(!tmp_x.exists());
    }
    let _ = std::fs::remove_file(&tmp_x);
}

#[test]
fn network_is_unreachable() {
    let iso = sandbox().isolation();
    if !iso.net_ns {
        assert!(
            iso.notes.iter().any(|n| n.contains("network")),
            "no network namespace and no note: {:?}",
            iso.notes
        );
        return skip("network namespace refused by the kernel");
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let script = format!(
        "import socket\n\
         for addr in [('127.0.0.1', {port}), ('8.8.8.8', 53), ('1.1.1.1', 443)]:\n\
         \x20   s = socket.socket()\n\
         \x20   s.settimeout(1)\n\
         \x20   try:\n\
         \x20       s.connect(addr)\n\
         \x20       print('CONNECTED', addr)\n\
         \x20   except OSError as e:\n\
         \x20       print('blocked', addr[0], e.errno)\n\
         print(sorted(i[1] for i in socket.if_nameindex()))\n"
    );
    let o = run(&script);
    let out = text(&o.stdout);
    assert!(o.success(), "{}", text(&o.stderr));
    assert!(!out.contains("CONNECTED"), "{out}");
    assert_eq!(out.matches("blocked").count(), 3, "{out}");
    assert!(out.contains("['lo']"), "interfaces other than lo: {out}");
    l.set_nonblocking(true).unwrap();
    assert_eq!(
        l.accept().err().map(|e| e.kind()),
        Some(ErrorKind::WouldBlock)
    );
}

fn daemon_script(mark: &str, then: &str) -> String {
    format!(
        "import os, sys, time\n\
         pid = os.fork()\n\
         if pid == 0:\n\
         \x20   os.setsid()\n\
         \x20   if os.fork() == 0:\n\
         \x20       os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(1000)', {mark:?}])\n\
         \x20   os._exit(0)\n\
         os.waitpid(pid, 0)\n\
         time.sleep(0.5)\n\
         print('spawned', flush=True)\n\
         {then}\n"
    )
}

fn daemons_are_tracked() -> bool {
    let iso = sandbox().isolation();
    if iso.contained {
        return true;
    }
    assert!(
        iso.notes.iter().any(|n| n.contains("daemons")),
        "{:?}",
        iso.notes
    );
    skip("no pid namespace and no children list: a setsid daemon can escape");
    false
}

#[test]
fn setsid_daemon_dies_with_the_run() {
    if !daemons_are_tracked() {
        return;
    }
    let mark = marker("daemon");
    let o = run(&daemon_script(&mark, "pass"));
    assert_eq!(o.status, Status::Exited(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "spawned\n");
    assert!(
        o.wall < Duration::from_secs(5),
        "run waited for the daemon: {:?}",
        o.wall
    );
    assert_eq!(
        procs_with(&mark),
        Vec::<u32>::new(),
        "daemon survived the run"
    );
}

#[test]
fn setsid_daemon_dies_at_timeout() {
    if !daemons_are_tracked() {
        return;
    }
    let mark = marker("daemon-to");
    let o = run_timeout(&daemon_script(&mark, "time.sleep(1000)"), SHORT);
    assert_eq!(o.status, Status::TimedOut);
    assert_eq!(text(&o.stdout), "spawned\n");
    assert_eq!(
        procs_with(&mark),
        Vec::<u32>::new(),
        "daemon survived the timeout"
    );
}

#[test]
fn work_dir_is_private_and_removed() {
    let o = run("import os\nopen('f.txt', 'w').write('x' * 1000)\nprint(os.getcwd())\nprint(os.environ['HOME'], os.environ['TMPDIR'])\n");
    assert!(o.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let mut lines = out.lines();
    let cwd = lines.next().unwrap().to_string();
    assert_eq!(lines.next().unwrap(), format!("{cwd} {cwd}"));
    assert!(cwd.contains("apr-sandbox-"), "{cwd}");
    assert!(!Path::new(&cwd).exists(), "work dir {cwd} left behind");
}

#[test]
fn runs_as_an_unprivileged_user() {
    let iso = sandbox().isolation().clone();
    eprintln!("isolation: {}", iso.describe());
    let o = run("import os\nprint(os.getuid(), os.getgid(), os.getgroups())\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))\n");
    assert!(o.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let mut lines = out.lines();
    let ids: Vec<String> = lines
        .next()
        .unwrap()
        .split(' ')
        .map(str::to_string)
        .collect();
    let nprocs: usize = lines.next().unwrap().trim().parse().unwrap();
    if is_root() {
        assert!(iso.uid_drop);
        let uid: u32 = ids[0].parse().unwrap();
        let uids = iso.slot_uids.clone().unwrap();
        assert_eq!(uids.len(), 8);
        assert!(uids.contains(&uid), "uid {uid} outside {uids:?}");
        assert_eq!(ids[1], ids[0]);
        assert_eq!(ids[2], "[]");
    } else if iso.user_ns {
        // SAFETY: getuid has no preconditions.
        assert_eq!(ids[0], unsafe { libc::getuid() }.to_string());
    } else {
        skip("not root and no user namespace: the program runs as this user");
    }
    if iso.private_proc {
        assert!(nprocs <= 3, "/proc shows {nprocs} processes");
    } else {
        skip("no private /proc");
    }
}

#[test]
fn concurrent_runs_from_threads() {
    let outs: Vec<Outcome> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                s.spawn(move || {
                    let script = format!("import time\ntime.sleep(0.2)\nprint({i} * {i})\n");
                    sandbox().run(&Job::new(&script)).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, o) in outs.iter().enumerate() {
        assert!(o.success(), "run {i}: {:?} {}", o.status, text(&o.stderr));
        assert_eq!(text(&o.stdout), format!("{}\n", i * i));
    }
}

#[test]
fn numpy_importable_when_installed() {
    let py = sandbox().python().to_path_buf();
    let has = std::process::Command::new(&py)
        .args(["-s", "-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!("SKIPPED: numpy is not installed for {}", py.display());
        return;
    }
    let o = run("import numpy as np\nprint(int(np.arange(10).sum()))\n");
    assert!(o.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "45\n");
}

#[test]
fn missing_interpreter_is_a_clear_error() {
    let cfg = SandboxConfig {
        python: Some("/nonexistent/python3".into()),
        ..SandboxConfig::default()
    };
    let e = Sandbox::new(cfg).err().expect("must fail");
    assert!(e.to_string().contains("/nonexistent/python3"), "{e}");
}

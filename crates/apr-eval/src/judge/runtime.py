# apr judge runtime (prepended to program.py and evalplus.py by judge.rs).
#
# Request on stdin: one JSON header line, the byte sections whose lengths the header lists
# under "sections", then (evalplus.py) the rest of stdin is a pickle read as a stream. The
# header's "nonce" is known only to the Rust caller; the judge keeps it out of the
# candidate's namespace and writes its lines on a private copy of the original stdout:
# "APR-STARTED-<nonce>" when candidate code is about to run, "APR-VERDICT-<nonce> ..." at the
# end, "APR-DEADLINE-<nonce>" from the watchdog that kills the judge at the reference
# harness's process deadline. The candidate's fds 0/1/2 point at /dev/null, so nothing it
# prints, and no exit status it produces, can be mistaken for a verdict.
#
# The in-process guard mirrors the reference harnesses (OpenAI human-eval execution.py,
# EvalPlus 0.3.1 eval/utils.py reliability_guard): output swallowed into a write-only buffer,
# destructive os/shutil/subprocess functions and builtins exit/quit/open/help nulled,
# faulthandler off, address space / data / stack limited. It is not a security boundary (the
# sandbox is); it keeps honest mistakes from passing and stray programs from wandering.
# Threat model: a candidate cannot forge a verdict by printing, exiting or closing fds; one
# that walks the interpreter's memory (gc, frames) could, as it could flip the shared-memory
# flag of the references.

import contextlib as _contextlib
import io as _io
import json as _json
import os as _os
import signal as _signal
import sys as _sys

_MEM_DEFAULT = 4 * 1024 * 1024 * 1024
_MSG_CAP = 400
_write = _os.write
_exit = _os._exit


def read_request():
    """(header without the nonce, the nonce, a buffered reader over the rest of stdin)."""
    head = bytearray()
    while True:
        # Byte by byte, so that no stdio buffer keeps a copy of the nonce's line.
        b = _os.read(0, 1)
        if not b:
            raise ValueError("request has no header line")
        if b == b"\n":
            break
        head += b
    header = _json.loads(head.decode())
    head[:] = bytes(len(head))
    nonce = header.pop("nonce")
    # Over a duplicate of fd 0, so that the rest stays readable after mute_fds.
    return header, nonce, _io.open(_os.dup(0), "rb")


def read_sections(stream, header):
    out = []
    for n in header.get("sections", []):
        data = stream.read(n)
        if len(data) != n:
            raise ValueError("request ended inside a section")
        out.append(data)
    return out


class Reporter:
    """Writes the judge's lines on a private duplicate of the original stdout."""

    def __init__(self, nonce):
        self._fd = _os.dup(1)
        self._started = ("APR-STARTED-" + nonce + "\n").encode()
        self._tag = ("APR-VERDICT-" + nonce + " ").encode()
        self.watchdog = None

    def _line(self, data):
        view = memoryview(data)
        while len(view):
            n = _write(self._fd, view)
            view = view[n:]

    def started(self):
        self._line(self._started)

    def grace(self, seconds):
        """Move the deadline back by `seconds` the judge itself spent (loading ground truth)."""
        if self.watchdog is not None:
            try:
                self.watchdog.extend(seconds)
            except OSError:
                pass  # the candidate closed the pipe: the deadline stays as it was

    def fd(self):
        return self._fd

    def verdict(self, status, kind="", message="", done=0, total=0, floats="-"):
        """status: pass | fail | timeout | error (error = the judge itself could not start).

        floats: how outputs were compared as floats: "numpy", "python" or "-" (not at all).
        """
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        fields = [
            status.encode(),
            str(kind)[:80].encode("utf-8", "replace").hex().encode() or b"-",
            str(message)[:_MSG_CAP].encode("utf-8", "replace").hex().encode() or b"-",
            ("%d/%d" % (done, total)).encode(),
            floats.encode(),
        ]
        try:
            self._line(self._tag + b" ".join(fields) + b"\n")
        finally:
            # Skip atexit hooks and finalizers the candidate may have registered.
            _exit(0)


def mute_fds():
    """Point fds 0, 1, 2 at /dev/null (after the Reporter took its copy of stdout)."""
    try:
        null = _os.open(_os.devnull, _os.O_RDWR)
    except OSError:
        return
    for fd in (0, 1, 2):
        _os.dup2(null, fd)
    _os.close(null)


class TimeoutException(Exception):
    """Raised by the SIGALRM handler when a time limit runs out (an Exception, as upstream)."""


@_contextlib.contextmanager
def time_limit(seconds):
    def on_alarm(signum, frame):
        raise TimeoutException("Timed out!")

    _signal.setitimer(_signal.ITIMER_REAL, seconds)
    _signal.signal(_signal.SIGALRM, on_alarm)
    try:
        yield
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)


class WriteOnlyBuffer(_io.StringIO):
    """Collects what the candidate prints; any read raises, as upstream's WriteOnlyStringIO."""

    def read(self, *args, **kwargs):
        raise IOError

    def readline(self, *args, **kwargs):
        raise IOError

    def readlines(self, *args, **kwargs):
        raise IOError

    def readable(self, *args, **kwargs):
        return False


class _StdinSwap(_contextlib._RedirectStream):
    _stream = "stdin"


@_contextlib.contextmanager
def swallow_io():
    sink = WriteOnlyBuffer()
    with _contextlib.redirect_stdout(sink), _contextlib.redirect_stderr(sink), _StdinSwap(sink):
        yield


def physical_memory():
    try:
        return _os.sysconf("SC_PAGE_SIZE") * _os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return _MEM_DEFAULT


def _set_limit(resource, which, value):
    # Never loosen a limit the sandbox already set: the tighter one wins.
    for current in resource.getrlimit(which):
        if current != resource.RLIM_INFINITY:
            value = min(value, current)
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass


def reliability_guard(max_bytes):
    """EvalPlus 0.3.1's guard, restated: limits, then destructive functions set to None."""
    import builtins
    import faulthandler
    import platform
    import resource
    import shutil
    import subprocess

    if max_bytes is not None:
        _set_limit(resource, resource.RLIMIT_AS, max_bytes)
        _set_limit(resource, resource.RLIMIT_DATA, max_bytes)
        if platform.uname().system != "Darwin":
            _set_limit(resource, resource.RLIMIT_STACK, max_bytes)
    faulthandler.disable()

    builtins.exit = None
    builtins.quit = None
    _os.environ["OMP_NUM_THREADS"] = "1"
    for name in (
        "kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid",
        "fork", "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink",
        "fchmod", "fchown", "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown",
        "getcwd", "chdir",
    ):
        setattr(_os, name, None)
    builtins.open = None
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        _sys.modules[name] = None


# Modules the reference harness process already holds when candidate code runs (EvalPlus's
# worker has imported numpy, pandas and much of the standard library). Importing the common
# ones before the guard keeps `import re` and friends from running module code under it.
PRELOAD = (
    "array bisect calendar cmath collections copy dataclasses datetime decimal difflib enum "
    "fractions functools hashlib heapq itertools json math numbers operator random re string "
    "struct textwrap typing unicodedata"
).split()


def preload(source):
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:
            pass
    for heavy in ("numpy", "pandas"):
        if heavy in source:
            try:
                __import__(heavy)
            except Exception:
                pass


def describe(exc):
    """(kind, message): the exception's class name and its traceback's last line."""
    try:
        kind = type(exc).__name__
        text = str(exc)
    except BaseException:
        return "Exception", "<unprintable exception>"
    return kind, (kind + ": " + text if text else kind)


def fail_line(exc, namespace):
    """' (line N)': where the innermost frame running the solution's code raised, if any."""
    try:
        tb, line = exc.__traceback__, None
        while tb is not None:
            if tb.tb_frame.f_globals is namespace:
                line = tb.tb_lineno
            tb = tb.tb_next
        if line is None and isinstance(exc, SyntaxError) and exc.lineno:
            line = exc.lineno
        return "" if line is None else " (line %d)" % line
    except BaseException:
        return ""


class Watchdog:
    """A forked helper that SIGKILLs the judge when the run outlives its deadline.

    Forked before the request's payload is loaded; armed once the candidate is about to run,
    so the deadline counts from there, as the reference's join() timeout counts from the
    worker's start; each later line moves it back by the seconds the judge spent on its own
    work (the reference holds its ground truth in memory). It exits as soon as the judge has
    gone (its pipe reaches EOF).
    """

    def __init__(self, reporter, nonce):
        import select

        line = ("APR-DEADLINE-" + nonce + "\n").encode()
        judge_pid = _os.getpid()
        rd, self._wr = _os.pipe()
        if _os.fork() != 0:
            _os.close(rd)
            return
        try:
            import time

            _os.close(self._wr)
            data, due = b"", None
            while True:
                wait = None if due is None else max(0.0, due - time.monotonic())
                ready, _, _ = select.select([rd], [], [], wait)
                if not ready:
                    _write(reporter.fd(), line)
                    _os.kill(judge_pid, _signal.SIGKILL)
                    break
                chunk = _os.read(rd, 64)
                if not chunk:
                    break
                data += chunk
                while b"\n" in data:
                    value, data = data.split(b"\n", 1)
                    seconds = float(value)
                    due = time.monotonic() + seconds if due is None else due + seconds
        finally:
            _exit(0)

    def arm(self, seconds):
        _write(self._wr, ("%.3f\n" % seconds).encode())

    def extend(self, seconds):
        _write(self._wr, ("%.6f\n" % seconds).encode())


def serve(setup, run, streaming=False):
    """Read the request, set up (trusted phase), guard, then run the candidate.

    setup(header, stream) -> state; run(reporter, state) must end in reporter.verdict(...).
    A failure in setup is the judge's, reported as status "error" (not the candidate's fault).
    streaming: the rest of stdin is run's to read (otherwise setup must have read it all).
    """
    reporter = None
    try:
        header, nonce, stream = read_request()
        reporter = Reporter(nonce)
        deadline = header.get("deadline")
        watchdog = Watchdog(reporter, nonce) if deadline else None
        reporter.watchdog = watchdog
        del nonce
        state = setup(header, stream)
        if not streaming and stream.read(1):
            raise ValueError("request has bytes after its last section")
        mem = header.get("mem_bytes")
        if mem is None:
            mem = min(_MEM_DEFAULT, physical_memory())
        mute_fds()
        reliability_guard(mem)
    except BaseException as exc:
        kind, message = describe(exc)
        if reporter is not None:
            reporter.verdict("error", kind, message)
        _sys.stderr.write("apr judge cannot start: %s\n" % message)
        _exit(3)
    reporter.started()
    if watchdog is not None:
        watchdog.arm(deadline)
    try:
        run(reporter, state)
    except BaseException as exc:
        kind, message = describe(exc)
        reporter.verdict("fail", "judge-" + kind, message)
    reporter.verdict("fail", "no-verdict", "the judge ended without a verdict")

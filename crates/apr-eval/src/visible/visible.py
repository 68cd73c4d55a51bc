# apr: runs a candidate program against the examples a task shows in its prompt (assertions,
# doctest examples). Used by self-test reranking and reflexion, never for scoring. Reads one
# JSON line on stdin; prints "<nonce> <json verdict>" when the examples ran to their end.
import contextlib
import doctest
import io
import json
import sys


def main(job):
    out = io.StringIO()
    g = {"__name__": "__candidate__"}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(job["program"], "program.py", "exec"), g)
            for t in job["tests"]:
                exec(compile(t, "test", "exec"), g)
            if job["doctest"]:
                test = doctest.DocTestParser().get_doctest(
                    job["doctest"], g, job["entry_point"], "prompt", 0)
                report = io.StringIO()
                runner = doctest.DocTestRunner(verbose=False)
                res = runner.run(test, out=report.write)
                if res.failed:
                    raise AssertionError(report.getvalue()[-1500:])
    except BaseException as e:  # noqa: BLE001 - every failure of the candidate is a verdict
        return {"status": "fail", "message": f"{type(e).__name__}: {e}"[-1500:]}
    return {"status": "pass", "message": ""}


job = json.loads(sys.stdin.readline())
nonce = job.pop("nonce")
stdout = sys.stdout
verdict = main(job)
stdout.write(nonce + " " + json.dumps(verdict) + "\n")
stdout.flush()

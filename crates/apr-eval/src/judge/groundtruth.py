# apr ground truth for HumanEval+ / MBPP+ (trusted: the dataset's canonical solutions), as
# EvalPlus 0.3.1's get_groundtruth + trusted_exec compute it: for every task, in order, in
# this one process, exec prompt + canonical_solution in a fresh dict (once per split), call
# the entry point on a deep copy of each input and time the call with time.time().
#
# stdin: a JSON header line {"dataset": "humaneval"|"mbpp", "out_dir": path}, then one
# dataset record (JSON) per line. Writes <out_dir>/<task>.base.pkl and .plus.pkl and
# <task>.times.json. A .pkl file is a sequence of pickles: first a head {"n": inputs,
# "seconds": [...], "floats": whether any output is_floats, "modules": the top-level modules
# of the non-builtin types the outputs hold}, then one pickle per expected output, in input
# order, so that the judge loads each output only after the candidate's call on its input
# (the candidate runs with no ground truth in its heap, as the ground truth itself was
# timed). Progress lines "gt <i>/<n> <task_id> <secs>" on stderr; exit status 2 with
# "gt-error <task_id> <message>" when a canonical solution fails.

import copy as _copy
import io as _io_gt
import json as _json_gt
import os as _os_gt
import pickle as _pickle_gt
import sys as _sys_gt
import time as _time_gt


def safe_name(task_id):
    return task_id.replace("/", "_")


def _write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    _os_gt.replace(tmp, path)


class _OutputPickler(_pickle_gt.Pickler):
    """Pickles one output and notes the modules its non-builtin objects come from."""

    def __init__(self, file, modules):
        super().__init__(file)
        self.modules = modules

    def reducer_override(self, obj):
        # Not called for exact int/float/str/bytes/list/tuple/dict/set instances (CPython's
        # fast path), which need no import to unpickle.
        module = getattr(type(obj), "__module__", None) or "builtins"
        self.modules.add(module.split(".")[0])
        return NotImplemented


def ground_truth_file(outputs, seconds):
    """The .pkl bytes of one split: the head pickle, then one pickle per output."""
    modules = set()
    body = _io_gt.BytesIO()
    for out in outputs:
        _OutputPickler(body, modules).dump(out)
    modules.discard("builtins")
    head = {
        "n": len(outputs),
        "seconds": seconds,
        "floats": any(is_floats(o) for o in outputs),
        "modules": sorted(modules),
    }
    return _pickle_gt.dumps(head) + body.getvalue()


def trusted_exec(code, inputs, entry_point, output_not_none):
    namespace = {}
    exec(code, namespace)
    fn = namespace[entry_point]
    outputs, seconds = [], []
    for inp in inputs:
        inp = _copy.deepcopy(inp)
        start = _time_gt.time()
        outputs.append(fn(*inp))
        seconds.append(_time_gt.time() - start)
    if output_not_none:
        outputs = [o is not None for o in outputs]
    return outputs, seconds


def main():
    lines = _sys_gt.stdin.buffer.read().split(b"\n")
    header = _json_gt.loads(lines[0])
    records = [_json_gt.loads(l) for l in lines[1:] if l.strip()]
    dataset, out_dir = header["dataset"], header["out_dir"]
    began = _time_gt.time()
    for n, rec in enumerate(records, 1):
        task_id = rec["task_id"]
        code = rec["prompt"] + rec["canonical_solution"]
        not_none = dataset == "mbpp" and rec["entry_point"] in MBPP_OUTPUT_NOT_NONE_TASKS
        times = {}
        t0 = _time_gt.time()
        for split in ("base", "plus"):
            inputs = rec[split + "_input"]
            if dataset == "mbpp":
                inputs = mbpp_deserialize(task_id, inputs)
            try:
                outputs, seconds = trusted_exec(code, inputs, rec["entry_point"], not_none)
            except BaseException as exc:
                _sys_gt.stderr.write("gt-error %s %s: %s\n" % (task_id, type(exc).__name__, exc))
                _sys_gt.stderr.flush()
                _os_gt._exit(2)
            base = _os_gt.path.join(out_dir, safe_name(task_id))
            _write_atomic(base + "." + split + ".pkl", ground_truth_file(outputs, seconds))
            times[split] = seconds
        _write_atomic(base + ".times.json", _json_gt.dumps(times).encode())
        _sys_gt.stderr.write("gt %d/%d %s %.3f\n" % (n, len(records), task_id, _time_gt.time() - t0))
        _sys_gt.stderr.flush()
    _sys_gt.stderr.write("gt done %.2f\n" % (_time_gt.time() - began))


main()

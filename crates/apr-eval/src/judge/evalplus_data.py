# EvalPlus 0.3.1 data rules, restated for apr (shared by evalplus.py and groundtruth.py):
# MBPP+ input deserialization (evalplus/data/mbpp.py), the special oracles
# (evalplus/eval/_special_oracle.py), is_floats, and numpy.allclose with a pure-Python
# stand-in for when numpy is missing.

import math as _math
import sys as _sys_ep

# MBPP+ tasks whose expected output is only "not None" (the ground truth stores booleans).
MBPP_OUTPUT_NOT_NONE_TASKS = ["check_str", "text_match_three", "text_starta_endb"]

# MBPP+ tasks whose output is compared as a set (entry point names, as upstream keys them).
MBPP_OUTPUT_SET_EQ_TASKS = [
    "similar_elements",  # Mbpp/2
    "find_char_long",  # Mbpp/7
    "common_in_nested_lists",  # Mbpp/111
    "extract_singly",  # Mbpp/140
    "larg_nnum",  # Mbpp/232
    "intersection_array",  # Mbpp/249
    "find_dissimilar",  # Mbpp/579
    "Diff",  # Mbpp/769
]


def surface_area_oracle(base_edge, height):
    """Mbpp/581: square pyramid surface with `height` read as the apex height, rounded."""
    slant_height = _math.sqrt((base_edge / 2) ** 2 + height**2)
    base_area = base_edge**2
    lateral_area = 4 * (base_edge * slant_height) / 2
    return round(base_area + lateral_area)


def digit_distance_oracle(num1, num2):
    """Mbpp/558: digit-wise distance after left-padding both numbers with zeros."""
    a, b = str(num1), str(num2)
    width = max(len(a), len(b))
    a, b = a.zfill(width), b.zfill(width)
    total = 0
    for da, db in zip(a, b):
        total += abs(int(da) - int(db))
    return total


def poly_oracle(xs, x):
    """HumanEval/32: the polynomial with coefficients xs at x (math.pow, summed as upstream)."""
    return sum([coeff * _math.pow(x, i) for i, coeff in enumerate(xs)])


# ---- MBPP+ input deserialization: JSON cannot hold tuples, sets or complex numbers. ----


def _tuples(arg):
    return tuple(arg)


def _all_tuples(value):
    if isinstance(value, list):
        return tuple(_all_tuples(item) for item in value)
    return value


def _args_to_tuples(inp):
    return [tuple(arg) for arg in inp]


def _inner_lists_to_tuples(inp):
    return [[tuple(x) for x in arg] for arg in inp]


_DESERIALIZE = {}


def _rule(task_numbers, fn):
    for n in task_numbers:
        _DESERIALIZE[n] = fn


# every argument is a list that should be a tuple
_rule(
    [2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630,
     726, 740, 744, 809],
    _args_to_tuples,
)
# every argument is a list of lists that should be a list of tuples
_rule([63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780], _inner_lists_to_tuples)
# first argument a list of tuples, second kept; any further argument is dropped (as upstream)
_rule([75, 413, 444, 753], lambda inp: [[tuple(x) for x in inp[0]]] + [inp[1]])
# second argument a tuple; any further argument is dropped (as upstream)
_rule([106, 750], lambda inp: [inp[0]] + [tuple(inp[1])])
# a list of sets; an empty list becomes {} (an empty dict, as upstream)
_rule([115], lambda inp: [[set(x) if isinstance(x, list) and len(x) else {} for x in inp[0]]])
_rule([124], lambda inp: (float(inp[0]), complex(inp[1])))
# first argument a tuple, second kept; any further argument is dropped (as upstream)
_rule([250, 405, 446, 617, 720, 763, 808], lambda inp: [tuple(inp[0])] + [inp[1]])
# every argument a tuple of tuples
_rule([259, 401, 445], lambda inp: _args_to_tuples(_inner_lists_to_tuples(inp)))
_rule(
    [278],
    lambda inp: _args_to_tuples([[tuple(x) if isinstance(x, list) else x for x in inp[0]]]),
)
_rule([307], lambda inp: [tuple(inp[0])] + [inp[1], inp[2]])
_rule([722], lambda inp: [{k: tuple(v) for k, v in inp[0].items()}] + inp[1:])
_rule([252], lambda inp: [complex(inp[0])])
_rule([580, 615, 791], _all_tuples)


def mbpp_deserialize(task_id, inputs):
    """The inputs of MBPP+ task `task_id` ("Mbpp/<n>") as the function receives them."""
    rule = _DESERIALIZE.get(int(str(task_id).split("/")[-1]))
    if rule is None:
        return inputs
    return [rule(inp) for inp in inputs]


# ---- float comparison ----


_NUMPY_ALLOWED = [True]


def set_numpy_allowed(allowed):
    _NUMPY_ALLOWED[0] = allowed


def numpy_or_none():
    return _sys_ep.modules.get("numpy")


def numpy_for_allclose():
    return numpy_or_none() if _NUMPY_ALLOWED[0] else None


def is_floats(x):
    """A float, a non-empty list/tuple of floats, or a float32/float64 ndarray."""
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    np = numpy_or_none()
    if np is not None and isinstance(x, np.ndarray):
        return x.dtype == np.float64 or x.dtype == np.float32
    return False


_INT64 = 1 << 63
_UINT64 = 1 << 64


def _is_number(v):
    return isinstance(v, (bool, int, float, complex))


def _as_array(value, reference):
    """(shape, flat elements) of a rectangular nest of lists/tuples, as numpy sees it.

    numpy gives the reference side a floating-point view up front, so there any element that
    is not a number (or an integer outside int64/uint64, kept as a Python object) raises
    TypeError at once; on the other side only strings do, other objects fail when compared.
    """
    if isinstance(value, (list, tuple)):
        parts = [_as_array(item, reference) for item in value]
        if not parts:
            return (0,), []
        shape = parts[0][0]
        for part in parts:
            if part[0] != shape:
                raise ValueError("setting an array element with a sequence (inhomogeneous shape)")
        flat = [e for part in parts for e in part[1]]
        if reference and any(
            not _is_number(e)
            or (isinstance(e, int) and not isinstance(e, bool) and not -_INT64 <= e < _UINT64)
            for e in flat
        ):
            raise TypeError("ufunc 'isfinite' not supported for the input types")
        return (len(parts),) + shape, flat
    if isinstance(value, (str, bytes)) or (reference and not _is_number(value)):
        raise TypeError("cannot compare %s values numerically" % type(value).__name__)
    return (), [value]


def _broadcast(sa, sb):
    n = max(len(sa), len(sb))
    sa, sb = (1,) * (n - len(sa)) + sa, (1,) * (n - len(sb)) + sb
    out = []
    for a, b in zip(sa, sb):
        if a != b and a != 1 and b != 1:
            raise ValueError("operands could not be broadcast together")
        out.append(b if a == 1 else a)
    return sa, sb, tuple(out)


def _flat_index(index, shape):
    flat = 0
    for i, dim in zip(index, shape):
        flat = flat * dim + (0 if dim == 1 else i)
    return flat


def _finite(v):
    if isinstance(v, complex):
        return _math.isfinite(v.real) and _math.isfinite(v.imag)
    return _math.isfinite(v)


def _isclose(x, y, rtol, atol):
    if not _is_number(x):
        raise TypeError("unsupported operand type for -: %r" % type(x).__name__)
    # numpy casts the reference side to floating point before comparing
    y = y if isinstance(y, complex) else float(y)
    if isinstance(x, complex) or isinstance(y, complex):
        diff = abs(complex(x) - complex(y))
    else:
        diff = abs(float(x) - y)
    return (diff <= atol + rtol * abs(y) and _finite(y)) or x == y


def allclose_py(a, b, rtol, atol):
    """numpy.allclose(a, b, rtol, atol) for nested lists/tuples of numbers, without numpy."""
    sa, fa = _as_array(a, False)
    sb, fb = _as_array(b, True)
    sa, sb, shape = _broadcast(sa, sb)
    total, result = 1, True
    for dim in shape:
        total *= dim
    for k in range(total):
        index, rest = [], k
        for dim in reversed(shape):
            index.append(rest % dim)
            rest //= dim
        index.reverse()
        # every element is compared (no early exit): numpy raises on a bad one anywhere
        if not _isclose(fa[_flat_index(index, sa)], fb[_flat_index(index, sb)], rtol, atol):
            result = False
    return result


def allclose(a, b, rtol, atol):
    np = numpy_for_allclose()
    if np is not None:
        return np.allclose(a, b, rtol=rtol, atol=atol)
    return allclose_py(a, b, rtol, atol)

"""Hypothesis strategies: problems of any shape in any memory layout.

Each size is 0, 1 or 2 at least half the time, so empty arrays, 1x1 arrays
and single rows or columns come up in every run, and with them the layouts
whose size-1 axes carry a meaningless stride.
"""
import numpy as np
from _helpers import zero_strides
from hypothesis import strategies as st

LAYOUTS = ["C", "F", "strided", "negative", "broadcast", "padded", "zero-stride"]
GRADIENTS = ["dx", "dW", "db"]


def lay_out(a, layout):
    """``a``'s values in the given memory layout (a view when it can be)."""
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros((a.shape[0] * 2, a.shape[1] * 3), a.dtype)
        big[::2, ::3] = a
        return big[::2, ::3]
    if layout == "negative":
        return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    if layout == "broadcast" and a.shape[0] > 0:
        return np.broadcast_to(a[:1], a.shape)
    if layout == "padded":
        big = np.zeros((a.shape[0], a.shape[1] + 3), a.dtype)
        big[:, :a.shape[1]] = a
        return big[:, :a.shape[1]]
    if layout == "zero-stride":
        return zero_strides(a)
    return np.ascontiguousarray(a)


def sizes(most):
    return st.one_of(st.integers(0, 2), st.integers(0, most))


@st.composite
def problems(draw, max_side=40, max_rows=300):
    """A problem: x, W, b, dy, a thread count, whether forward writes to out=, and
    which gradients get buffers (any subset), added into if ``accumulate``."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    N = draw(sizes(max_rows))
    M_in = draw(sizes(max_side))
    M_out = draw(sizes(max_side))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    x = lay_out(rng.standard_normal((N, M_in)).astype(dtype), draw(st.sampled_from(LAYOUTS)))
    W = lay_out(rng.standard_normal((M_in, M_out)).astype(dtype), draw(st.sampled_from(LAYOUTS)))
    dy = lay_out(rng.standard_normal((N, M_out)).astype(dtype), draw(st.sampled_from(LAYOUTS)))
    b = rng.standard_normal(M_out).astype(dtype) if draw(st.booleans()) else None
    buffers = draw(st.lists(st.sampled_from(GRADIENTS), unique=True))
    return dict(x=x, W=W, b=b, dy=dy, num_threads=draw(st.integers(1, 4)),
                use_out=draw(st.booleans()), buffers=sorted(buffers),
                accumulate=draw(st.booleans()))

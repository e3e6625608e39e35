"""Validation and dispatch: the functional API over the compiled kernels.

Every check runs before any output is touched, inputs are never written, and
a layout BLAS cannot read in place costs exactly one copy.
"""
import math
from collections import namedtuple

import numpy as np

from . import _backward, _forward
from ._blas import blas_int_limit, blas_readable, may_overlap
from ._parallel import PATHS, openmp_enabled
from ._threads import blas_threads, check_threads, team_started

__all__ = ["Grads", "linear_forward", "linear_backward"]

Grads = namedtuple("Grads", ["dx", "dW", "db"])
Grads.__doc__ = """Gradients of a linear layer: dx (..., M_in), dW (M_in, M_out), db (M_out,).

A field is None when that gradient was not asked for."""

# Below this many multiply-adds (and adds of db) a call runs on the calling thread alone:
# starting threads costs more than it saves (OpenBLAS also stays serial there).
SERIAL_WORK = 1 << 18
# Products with at most this many weights are "narrow": their GEMMs are too
# thin to tile, so the rows are cut into cache-sized blocks instead.
NARROW_WEIGHTS = 1 << 15

SERIAL, BLOCKED, TILED = PATHS["serial"], PATHS["blocked"], PATHS["tiled"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def plan(N, M_in, M_out):
    """How a problem of this shape is run; it depends on the shape only.

    SERIAL: on the calling thread.  BLOCKED: OpenMP over cache-sized row
    blocks, the backward fused per block.  TILED: OpenMP over the tasks of
    each product.  Keeping num_threads out of this choice is what makes
    results identical for every thread count.
    """
    if N * M_out * (M_in + 1) < SERIAL_WORK:  # + 1: the bias row of the work
        return SERIAL
    if M_in * M_out <= NARROW_WEIGHTS:
        return BLOCKED
    return TILED


def _float_array(a, name):
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    dt = a.dtype
    if dt not in _FLOATS:
        if dt.kind == "f" and dt.itemsize in (4, 8):  # non-native byte order
            return a.astype(dt.newbyteorder("="))
        raise TypeError(f"{name} must be float32 or float64, got {dt}"
                        + (" (cast explicitly; the imaginary part would be lost)"
                           if dt.kind == "c" else ""))
    return a


def _same_dtype(named):
    dtype = named[0][1].dtype
    for _, a in named:
        if a is not None and a.dtype != dtype:
            desc = ", ".join(f"{n} is {a.dtype}" for n, a in named if a is not None)
            raise TypeError(f"inputs must share one dtype, but {desc}; cast explicitly "
                            "(e.g. x.astype(W.dtype))")
    return dtype


def _check_weights(W, b=None):
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D (M_in, M_out), got shape {W.shape}")
    if max(W.shape) > blas_int_limit():
        raise ValueError(f"W of shape {W.shape} has a dimension above {blas_int_limit()}, "
                         "the largest a row of a BLAS matrix can have")
    if b is not None and b.shape != (W.shape[1],):
        raise ValueError(f"b must have shape (M_out,) = ({W.shape[1]},) for W of shape "
                         f"{W.shape}, got {b.shape}")


def _check_features(a, name, size, what, W):
    if a.ndim < 1 or a.shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {what}) = (..., {size}) for W of "
                         f"shape {W.shape}, got {a.shape}")


def check_backward(x, W, dy):
    """(dtype, M_in, M_out) of a backward problem; raises naming what does not fit."""
    dtype = _same_dtype((("x", x), ("W", W), ("dy", dy)))
    _check_weights(W)
    M_in, M_out = W.shape
    _check_features(x, "x", M_in, "M_in", W)
    _check_features(dy, "dy", M_out, "M_out", W)
    return dtype, M_in, M_out


def _check_out(out, name, shape, dtype, others):
    """Raise unless ``out`` can receive a result of ``shape`` and ``dtype``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {out.shape}")
    if out.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype} in native byte order, got "
                         f"{out.dtype.str if out.dtype.kind == 'f' else out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    for other, a in others:
        if a is not None and may_overlap(out, a) and _overlap(out, a):
            raise ValueError(f"{name} overlaps {other}; results would be corrupted")


def _overlap(a, b):
    try:
        return np.shares_memory(a, b, max_work=100_000)
    except np.exceptions.TooHardError:
        return True  # too costly to tell: refuse rather than risk it


def _as_rows(a, N, M):
    """``a`` (..., M) as an (N, M) array BLAS reads in place: a view when possible."""
    if a.ndim != 2:
        a = a.reshape(N, M)
    return a if blas_readable(a) else np.array(a, order="C")  # a copy: aligned too


def _target(out, shape, dtype, keep):
    """(C-contiguous array for the kernel to write, whether to copy it into ``out``).

    ``keep``: the kernel adds onto the array, so it must start with out's values.
    """
    if out is None:
        return np.empty(shape, dtype), False
    if out.flags.c_contiguous and out.flags.aligned:
        return (out if out.shape == shape else out.reshape(shape)), False
    return (np.array(out, order="C") if keep else np.empty(out.shape, dtype)).reshape(shape), True


_OPENMP = openmp_enabled()


def _call(path, num_threads, kernel, *args):
    """kernel(*args, path, threads): SERIAL runs on this thread alone, with BLAS as it is."""
    if path == SERIAL:
        return kernel(*args, path, 1)
    if num_threads > 1 and _OPENMP:
        team_started()
    blas_threads.enter()
    try:
        return kernel(*args, path, num_threads)
    finally:
        blas_threads.exit()


def linear_forward(x, W, b=None, *, out=None, num_threads=None):
    """y = x @ W + b for x of shape (..., M_in).

    Parameters
    ----------
    x : array_like, shape (..., M_in), float32 or float64
    W : array_like, shape (M_in, M_out), same dtype
    b : array_like, shape (M_out,), same dtype, or None for no bias
    out : ndarray of shape (..., M_out) and the same dtype, optional
        Written with the result (and returned).  It must not overlap an input.
    num_threads : int, optional
        Threads for this call; default :func:`fastlinear.get_num_threads`.

    Returns
    -------
    y : ndarray, shape (..., M_out)
    """
    x = _float_array(x, "x")
    W = _float_array(W, "W")
    if b is not None:
        b = _float_array(b, "b")
    dtype = _same_dtype((("x", x), ("W", W), ("b", b)))
    _check_weights(W, b)
    M_in, M_out = W.shape
    _check_features(x, "x", M_in, "M_in", W)
    shape = x.shape[:-1] + (M_out,)
    if out is not None:
        _check_out(out, "out", shape, dtype, (("x", x), ("W", W), ("b", b)))
    num_threads = check_threads(num_threads)
    N = math.prod(x.shape[:-1])
    x2 = _as_rows(x, N, M_in)
    W = _as_rows(W, M_in, M_out)
    if b is not None and not (b.flags.c_contiguous and b.flags.aligned):
        b = np.array(b, order="C")
    y, copy_back = _target(out, (N, M_out), dtype, False)
    path = plan(N, M_in, M_out)
    _call(path, num_threads, _forward.forward, x2, W, b, y)
    if copy_back:
        np.copyto(out, y.reshape(shape))
        return out
    return y.reshape(shape) if out is None else out


def linear_backward(x, W, dy, *, bias=True, need_dx=True, need_dW=True,
                    dx=None, dW=None, db=None, accumulate=False, num_threads=None):
    """Gradients of y = x @ W + b given dy = dL/dy.

    dx = dy @ W.T, dW = x.T @ dy (summed over all leading dimensions) and
    db = dy summed over all but the last axis.

    Parameters
    ----------
    x : array_like, shape (..., M_in)
        The forward input.
    W : array_like, shape (M_in, M_out)
    dy : array_like, shape (..., M_out), same leading shape as x
    bias : bool
        Whether the layer has a bias; if False ``db`` is None.
    need_dx, need_dW : bool
        Set False to skip a gradient (e.g. dx of a first layer); it is then
        None in the result.
    dx, dW, db : ndarray, optional
        Buffers of the gradients' shapes and dtype to write into.
    accumulate : bool
        Add the gradients into the given buffers (like PyTorch's ``.grad``)
        instead of overwriting them.  Gradients given no buffer are returned
        in new arrays either way.
    num_threads : int, optional
        Threads for this call; default :func:`fastlinear.get_num_threads`.

    Returns
    -------
    Grads(dx, dW, db)
    """
    x = _float_array(x, "x")
    W = _float_array(W, "W")
    dy = _float_array(dy, "dy")
    dtype, M_in, M_out = check_backward(x, W, dy)
    lead = x.shape[:-1]
    if dy.shape[:-1] != lead:
        raise ValueError(f"dy must have shape {lead + (M_out,)} to match x of shape "
                         f"{x.shape}, got {dy.shape}")
    N = math.prod(lead)
    # name, wanted, buffer, shape to return, shape the kernel writes
    grads = (("dx", need_dx, dx, x.shape, (N, M_in)), ("dW", need_dW, dW, W.shape, W.shape),
             ("db", bias, db, (M_out,), (M_out,)))
    checked = [("x", x), ("W", W), ("dy", dy)]
    for name, need, buf, shape, _ in grads:
        if buf is not None:
            if not need:
                raise ValueError(f"a {name} buffer was given but {name} is not computed")
            _check_out(buf, name, shape, dtype, checked)
            checked.append((name, buf))
    num_threads = check_threads(num_threads)
    x2 = _as_rows(x, N, M_in)
    W = _as_rows(W, M_in, M_out)
    dy2 = _as_rows(dy, N, M_out)
    targets = [_target(buf, kshape, dtype, accumulate) if need else (None, False)
               for _, need, buf, _, kshape in grads]
    path = plan(N, M_in, M_out)
    _call(path, num_threads, _backward.backward, x2, W, dy2,
          targets[0][0], targets[1][0], targets[2][0],
          (accumulate and dx is not None, accumulate and dW is not None,
           accumulate and db is not None))
    result = []
    for (t, copy_back), (_, _, buf, shape, _) in zip(targets, grads):
        if buf is not None:
            if copy_back:
                np.copyto(buf, t.reshape(shape))
            result.append(buf)
        else:
            result.append(None if t is None else t.reshape(shape))
    return Grads(*result)

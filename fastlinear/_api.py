"""Validation and dispatch: the functional API over the compiled kernels.

Every check runs before any output is touched, inputs are never written, and
a layout BLAS cannot read in place costs exactly one copy.
"""
from collections import namedtuple

import numpy as np

from . import _backward, _forward
from ._blas import blas_int_limit, blas_readable
from ._threads import blas_threads, check_threads

__all__ = ["Grads", "linear_forward", "linear_backward"]

Grads = namedtuple("Grads", ["dx", "dW", "db"])
Grads.__doc__ = """Gradients of a linear layer: dx (N.., M_in), dW (M_in, M_out), db (M_out,).

A field is None when that gradient was not asked for."""

# Below this many multiply-adds a call runs on the calling thread alone:
# starting threads costs more than it saves (OpenBLAS also stays serial there).
SERIAL_WORK = 1 << 18
# Products with at most this many weights are "narrow": their GEMMs are too
# thin for BLAS to thread well, so fastlinear threads over row blocks instead.
NARROW_WEIGHTS = 1 << 15

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _plan(N, M_in, M_out):
    """(path, BLAS thread count to hold or None) for a shape.

    The path depends on the shape only, so results do not depend on the
    thread count.  "serial": one thread, no thread settings touched.
    "blocked": OpenMP over cache-sized row blocks, the backward fused per
    block.  "tiled": OpenMP over tiles of each product.  Both hold BLAS at
    one thread so that the threads do not each start more.
    """
    if N * M_in * M_out < SERIAL_WORK:
        return "serial", None
    if M_in * M_out <= NARROW_WEIGHTS:
        return "blocked", 1
    return "tiled", 1


def _float_array(a, name):
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    dt = a.dtype
    if dt not in _FLOATS:
        if dt.kind == "f" and dt.itemsize in (4, 8):  # non-native byte order
            return a.astype(dt.newbyteorder("="))
        raise TypeError(f"{name} must be float32 or float64, got {dt}"
                        + (" (cast explicitly; the imaginary part would be lost)"
                           if dt.kind == "c" else ""))
    return a


def _same_dtype(arrays):
    dtypes = {a.dtype for _, a in arrays if a is not None}
    if len(dtypes) > 1:
        desc = ", ".join(f"{n} is {a.dtype}" for n, a in arrays if a is not None)
        raise TypeError(f"inputs must share one dtype, but {desc}; cast explicitly "
                        "(e.g. x.astype(W.dtype))")
    return dtypes.pop()


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


def _check_out(out, name, shape, dtype, inputs):
    """Raise unless ``out`` can receive a result of ``shape`` and ``dtype``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {out.shape}")
    if out.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    for other, a in inputs:
        if a is not None and np.may_share_memory(out, a) and np.shares_memory(out, a):
            raise ValueError(f"{name} overlaps {other}; results would be corrupted")


def _readable(a):
    return a if blas_readable(a) else np.ascontiguousarray(a)


def _target(out, shape, dtype):
    """(array the kernel writes, whether it must be copied into ``out``)."""
    if out is None:
        return np.empty(shape, dtype), False
    if out.flags.c_contiguous:
        return out.reshape(shape), False
    return np.ascontiguousarray(out).reshape(shape), True


def _run(count, kernel, *args):
    if count is None:
        return kernel(*args)
    blas_threads.enter(count)
    try:
        return kernel(*args)
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
    lead = x.shape[:-1]
    shape = lead + (M_out,)
    if out is not None:
        _check_out(out, "out", shape, dtype, (("x", x), ("W", W), ("b", b)))
    num_threads = check_threads(num_threads)
    N = int(np.prod(lead, dtype=np.int64))
    x2 = _readable(x.reshape(N, M_in))
    W = _readable(W)
    if b is not None and not b.flags.c_contiguous:
        b = np.ascontiguousarray(b)
    y, copy_back = _target(out, (N, M_out), dtype)
    path, count = _plan(N, M_in, M_out)
    _run(count, _forward.forward, x2, W, b, y, path == "blocked", path == "serial",
         1 if path == "serial" else num_threads)
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
    dtype = _same_dtype((("x", x), ("W", W), ("dy", dy)))
    _check_weights(W)
    M_in, M_out = W.shape
    _check_features(x, "x", M_in, "M_in", W)
    _check_features(dy, "dy", M_out, "M_out", W)
    lead = x.shape[:-1]
    if dy.shape[:-1] != lead:
        raise ValueError(f"dy must have shape {lead + (M_out,)} to match x of shape "
                         f"{x.shape}, got {dy.shape}")
    wanted = (("dx", need_dx, dx, x.shape), ("dW", need_dW, dW, W.shape),
              ("db", bias, db, (M_out,)))
    inputs = (("x", x), ("W", W), ("dy", dy))
    given = []
    for name, need, buf, shape in wanted:
        if buf is None:
            continue
        if not need:
            raise ValueError(f"a {name} buffer was given but {name} is not computed")
        _check_out(buf, name, shape, dtype, inputs + tuple(given))
        given.append((name, buf))
    num_threads = check_threads(num_threads)
    N = int(np.prod(lead, dtype=np.int64))
    x2 = _readable(x.reshape(N, M_in))
    W = _readable(W)
    dy2 = _readable(dy.reshape(N, M_out))
    targets = [(_target(buf, (N, M_in) if name == "dx" else shape, dtype) if need else (None, False))
               for name, need, buf, shape in wanted]
    path, count = _plan(N, M_in, M_out)
    _run(count, _backward.backward, x2, W, dy2,
         targets[0][0], targets[1][0], targets[2][0],
         [bool(accumulate and buf is not None) for _, _, buf, _ in wanted], path == "blocked",
         1 if path == "serial" else num_threads)
    result = []
    for (t, copy_back), (name, need, buf, shape) in zip(targets, wanted):
        if t is None:
            result.append(None)
        elif copy_back:
            np.copyto(buf, t.reshape(shape))
            result.append(buf)
        else:
            result.append(t.reshape(shape) if buf is None else buf)
    return Grads(*result)

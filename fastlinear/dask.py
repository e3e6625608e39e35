"""The linear layer over dask arrays chunked along rows.

``x`` (N, M_in) is a dask array cut into row chunks; ``W`` and ``b`` are NumPy
arrays.  Every chunk is handled by one task that makes one fastlinear call:

- :func:`linear_forward`: ``y`` chunk = ``fastlinear.linear_forward`` of the x chunk.
- :func:`linear_backward`: one task per chunk calls ``fastlinear.linear_backward``
  on the x and dy chunks (each read once) and yields that chunk's ``dx`` and its
  partial ``dW`` and ``db``; the partials are added up in a tree of tasks that
  each sum at most ``split_every`` of them (default :data:`FAN_IN`), so no task
  receives all of them.  The tree has a fixed shape, so results are
  reproducible for given chunks.

What moves per step: ``W`` (and ``b``) is one key of the graph, sent once to
each worker that runs a chunk task; ``x``, ``dy`` and ``dx`` chunks stay where
they are; each chunk's partial ``(dW, db)``, M_in*M_out + M_out numbers, goes
to a summing task, and one summed ``(dW, db)`` comes back.  Communication
therefore depends on the layer's size and the number of chunks, not on N.

Threads: each task uses ``num_threads`` threads (default
:func:`fastlinear.get_num_threads` in the process that runs the task).  Keep
``tasks running at once * num_threads <= cores``:

- dask's local threaded scheduler runs one task per core at once, so pass
  ``num_threads=1`` there (or use ``scheduler="synchronous"`` and leave the
  default).
- with ``dask.distributed``, ``n_workers * threads_per_worker * num_threads <=
  cores`` per machine; e.g. ``LocalCluster(n_workers=2, threads_per_worker=1)``
  with ``num_threads=cores // 2``.  Worker processes started by a Nanny get
  ``OMP_NUM_THREADS=1`` (dask's ``distributed.nanny.pre-spawn-environ``), so
  there the default is one thread per task.

This module needs dask: ``pip install fastlinear[dask]``.
"""
import math
import operator

import numpy as np

try:
    import dask.array as da
    from dask.base import is_dask_collection, tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fastlinear.dask needs dask[array]: pip install fastlinear[dask]") from exc

from ._api import Grads, linear_backward as _linear_backward, linear_forward as _linear_forward
from ._checks import check_backward, check_forward, float_array as _float_array
from ._threads import check_threads

__all__ = ["FAN_IN", "linear_forward", "linear_backward"]

#: Default number of partial gradients one task of the reduction tree adds up.
FAN_IN = 4


def _rows(a, name):
    """``a`` as a 2-D dask array with one chunk along its last axis."""
    if not isinstance(a, da.Array):
        raise TypeError(f"{name} must be a dask array, got {type(a).__name__} "
                        "(wrap it with dask.array.from_array(a, chunks=(rows, -1)))")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
    if any(math.isnan(c) for c in a.chunks[0]):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes()")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    return a if a.numblocks[1] == 1 else a.rechunk({1: -1})


def _parameter(a, name):
    """``a`` as a NumPy float array (None stays None)."""
    if a is None:
        return None
    if is_dask_collection(a):
        raise TypeError(f"{name} must be a NumPy array, not a dask collection; compute it first")
    return _float_array(a, name)


def _new_layer(arrays, params, token):
    """Start a graph layer over the dask ``arrays``.

    Returns (tasks, keys, layers, dependencies): ``tasks`` holds each NumPy
    parameter under one key (``keys``, None for a parameter that is None), so
    that it is sent once to each worker; ``layers`` and ``dependencies`` are
    those of the arrays' graphs, for :class:`HighLevelGraph`.
    """
    tasks, keys = {}, []
    for name, value in params:
        keys.append(None if value is None else f"fastlinear-{name}-{token}")
        if value is not None:
            tasks[keys[-1]] = value
    layers, deps = {}, {}
    for a in arrays:
        layers.update(a.dask.layers)
        deps.update(a.dask.dependencies)
    return tasks, keys, layers, deps


def _inputs(*arrays):
    return {layer for a in arrays for layer in a.__dask_layers__()}


def _forward_chunk(x, W, b, num_threads):
    return _linear_forward(x, W, b, num_threads=num_threads)


def linear_forward(x, W, b=None, *, num_threads=None):
    """y = x @ W + b, one ``fastlinear.linear_forward`` call per row chunk of x.

    Parameters
    ----------
    x : dask.array.Array, shape (N, M_in), float32 or float64
        Any row chunks; several chunks along M_in are merged into one.
    W : ndarray, shape (M_in, M_out), same dtype
    b : ndarray, shape (M_out,), same dtype, or None
    num_threads : int, optional
        Threads of each task; default :func:`fastlinear.get_num_threads` where
        the task runs.

    Returns
    -------
    y : dask.array.Array, shape (N, M_out), with the row chunks of x
    """
    x = _rows(x, "x")
    W, b = _parameter(W, "W"), _parameter(b, "b")
    dtype = check_forward(x, W, b)
    if num_threads is not None:
        check_threads(num_threads)
    token = tokenize(x, W, b, num_threads)
    name = "fastlinear-forward-" + token
    tasks, (wkey, bkey), layers, deps = _new_layer([x], [("W", W), ("b", b)], token)
    for i in range(x.numblocks[0]):
        tasks[(name, i, 0)] = (_forward_chunk, (x.name, i, 0), wkey, bkey, num_threads)
    layers[name], deps[name] = tasks, _inputs(x)
    return da.Array(HighLevelGraph(layers, deps), name,
                    chunks=(x.chunks[0], (W.shape[1],)), dtype=dtype)


def _backward_chunk(x, W, dy, bias, need_dx, num_threads):
    return _linear_backward(x, W, dy, bias=bias, need_dx=need_dx, num_threads=num_threads)


def _partials(grads):
    return grads.dW, grads.db


def _sum_partials(parts):
    dW = parts[0][0].copy()
    db = None if parts[0][1] is None else parts[0][1].copy()
    for part_dW, part_db in parts[1:]:
        dW += part_dW
        if db is not None:
            db += part_db
    return dW, db


def linear_backward(x, W, dy, *, bias=True, need_dx=True, num_threads=None,
                    split_every=None):
    """Gradients of y = x @ W + b over row chunks, as dask arrays.

    Parameters
    ----------
    x : dask.array.Array, shape (N, M_in), float32 or float64
        The forward input; any row chunks.
    W : ndarray, shape (M_in, M_out), same dtype
    dy : dask.array.Array or ndarray, shape (N, M_out), same dtype
        Rechunked to the row chunks of x if they differ.
    bias : bool
        Whether the layer has a bias; if False ``db`` is None.
    need_dx : bool
        Set False to skip dx (e.g. for a first layer); it is then None.
    num_threads : int, optional
        Threads of each task; default :func:`fastlinear.get_num_threads` where
        the task runs.
    split_every : int, optional
        Fan-in of the reduction tree over the chunks' partial dW and db
        (default :data:`FAN_IN`, at least 2).

    Returns
    -------
    fastlinear.Grads(dx, dW, db)
        dask arrays: ``dx`` (N, M_in) with the row chunks of x; ``dW``
        (M_in, M_out) and ``db`` (M_out,) in a single chunk each.  Compute them
        together, ``dask.compute(*grads)``, so the chunk tasks run once.
    """
    x = _rows(x, "x")
    W = _parameter(W, "W")
    if not isinstance(dy, da.Array):
        if is_dask_collection(dy):
            raise TypeError(f"dy must be a dask array or a NumPy array, got {type(dy).__name__}")
        dy = da.from_array(_float_array(dy, "dy"), chunks=-1)
    dy = _rows(dy, "dy")
    dtype, M_in, M_out = check_backward(x, W, dy)
    if dy.shape[0] != x.shape[0]:
        raise ValueError(f"dy must have shape {(x.shape[0], M_out)} to match x of shape "
                         f"{x.shape}, got {dy.shape}")
    if dy.chunks[0] != x.chunks[0]:
        dy = dy.rechunk({0: x.chunks[0]})
    if num_threads is not None:
        check_threads(num_threads)
    fan_in = FAN_IN if split_every is None else split_every
    if isinstance(fan_in, bool) or not isinstance(fan_in, (int, np.integer)) or fan_in < 2:
        raise ValueError(f"split_every must be an int >= 2, got {split_every!r}")
    bias, need_dx = bool(bias), bool(need_dx)

    token = tokenize(x, W, dy, bias, need_dx, num_threads, fan_in)
    chunk, tree = "fastlinear-backward-" + token, "fastlinear-sum-" + token
    names = {g: f"fastlinear-{g}-{token}" for g in Grads._fields}
    tasks, (wkey,), layers, deps = _new_layer([x, dy], [("W", W)], token)
    # one task per row chunk, then its partial (dW, db) split off on its own
    # so that the summing tasks do not receive dx
    level = []
    for i in range(x.numblocks[0]):
        tasks[(chunk, i)] = (_backward_chunk, (x.name, i, 0), wkey, (dy.name, i, 0),
                             bias, need_dx, num_threads)
        tasks[(tree, 0, i)] = (_partials, (chunk, i))
        level.append((tree, 0, i))
    depth = 0
    while len(level) > 1:
        depth += 1
        groups = [level[j:j + fan_in] for j in range(0, len(level), fan_in)]
        level = []
        for j, group in enumerate(groups):
            if len(group) == 1:
                level.append(group[0])
            else:
                tasks[(tree, depth, j)] = (_sum_partials, group)
                level.append((tree, depth, j))
    layers[chunk], deps[chunk] = tasks, _inputs(x, dy)

    outputs = {"dW": ({(names["dW"], 0, 0): (operator.getitem, level[0], 0)},
                      ((M_in,), (M_out,)))}
    if bias:
        outputs["db"] = ({(names["db"], 0): (operator.getitem, level[0], 1)}, ((M_out,),))
    if need_dx:
        outputs["dx"] = ({(names["dx"], i, 0): (operator.getitem, (chunk, i), 0)
                          for i in range(x.numblocks[0])}, x.chunks)
    for g, (layer, _) in outputs.items():
        layers[names[g]], deps[names[g]] = layer, {chunk}
    graph = HighLevelGraph(layers, deps)
    return Grads(**{g: da.Array(graph, names[g], chunks=outputs[g][1], dtype=dtype)
                    if g in outputs else None for g in Grads._fields})

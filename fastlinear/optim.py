"""Optimizer steps of one parameter, in one pass, in place, on fastlinear's threads.

Each function updates a parameter and its state from its gradient with no
temporary arrays, as scikit-learn's MLP optimizers (``SGDOptimizer``,
``AdamOptimizer``) compute it, to rounding; PyTorch's fused optimizers are the
model for the calling style.  The bits are the same for any thread count.

>>> import numpy as np, fastlinear.optim
>>> W, dW = np.ones(3), np.array([1.0, 2.0, 3.0])
>>> velocity = np.zeros_like(W)
>>> fastlinear.optim.sgd_step(W, dW, velocity, lr=0.1, momentum=0.9)
>>> W
array([0.9, 0.8, 0.7])
"""
import math
import numbers

import numpy as np

from . import _optim
from ._threads import check_threads

__all__ = ["adam_step", "sgd_step"]
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _real(name, value, low, high, low_open=False, high_open=False):
    """``value`` as a float in [low, high] (open where said); TypeError/ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and (low < value if low_open else low <= value)
            and (value < high if high_open else value <= high)):
        raise ValueError(f"{name} must be in {'(' if low_open else '['}{low}, {high}"
                         f"{')' if high_open else ']'}, got {value!r}")
    return value


def _arrays(param, grad, **state):
    """Check the arrays of one update: ndarrays of one float dtype and shape, C-contiguous
    in native byte order; the parameter and its state writeable and apart from every other."""
    named = [("param", param), ("grad", grad)] + [(k, v) for k, v in state.items() if v is not None]
    for name, a in named:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a NumPy array, got {type(a).__name__}")
        if a.dtype not in _FLOATS or not a.dtype.isnative:
            raise TypeError(f"{name} must be float32 or float64 in native byte order, got {a.dtype}")
        if a.dtype != param.dtype:
            raise TypeError(f"{name} is {a.dtype} but param is {param.dtype}: one dtype for all")
        if a.shape != param.shape:
            raise ValueError(f"{name} has shape {a.shape} but param has {param.shape}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous")
    for i, (name, a) in enumerate(named):
        if name == "grad":
            continue
        if not a.flags.writeable:
            raise ValueError(f"{name} is read-only; it is updated in place")
        for other, b in named[:i] + named[i + 1:]:
            if np.shares_memory(a, b):
                raise ValueError(f"{name} shares memory with {other}")


def sgd_step(param, grad, velocity=None, *, lr, momentum=0.0, nesterov=False, num_threads=None):
    """One SGD step of ``param``, in place: ``param += velocity`` where
    ``velocity = momentum * velocity - lr * grad`` (updated in place), or with
    Nesterov's momentum ``param += momentum * velocity - lr * grad`` after it.

    Parameters
    ----------
    param : ndarray
        The parameter (float32 or float64, C-contiguous), updated in place.
    grad : ndarray
        Its gradient, of the same dtype and shape; not modified.
    velocity : ndarray, optional
        The momentum state, of the same dtype and shape (zeros at the start),
        updated in place; required with ``momentum``.  Without it the step is
        ``param -= lr * grad``.
    lr : float
        The learning rate, ≥ 0.
    momentum : float
        In [0, 1].
    nesterov : bool
        Nesterov's momentum, as scikit-learn's ``nesterovs_momentum``.
    num_threads : int, optional
        Threads for this call; default :func:`fastlinear.get_num_threads`.
    """
    lr = _real("lr", lr, 0.0, math.inf, high_open=True)
    momentum = _real("momentum", momentum, 0.0, 1.0)
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
    if velocity is None and (momentum != 0.0 or nesterov):
        raise ValueError("momentum and nesterov need a velocity array")
    _arrays(param, grad, velocity=velocity)
    _optim.sgd(param, grad, velocity, lr, momentum, bool(nesterov), check_threads(num_threads))


def adam_step(param, grad, m, v, *, step, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8,
              num_threads=None):
    """One Adam step of ``param``, in place, as scikit-learn's ``AdamOptimizer``:

    ``m = beta1 m + (1 - beta1) grad``, ``v = beta2 v + (1 - beta2) grad²`` (both in
    place), then ``param -= lr_t m / (sqrt(v) + eps)`` with
    ``lr_t = lr sqrt(1 - beta2**step) / (1 - beta1**step)``.

    Parameters
    ----------
    param, grad : ndarray
        The parameter, updated in place, and its gradient, as in :func:`sgd_step`.
    m, v : ndarray
        The first and second moment estimates, of the same dtype and shape
        (zeros at the start), updated in place.
    step : int
        The number of this step, from 1.
    lr, beta1, beta2, eps : float
        The learning rate (≥ 0), the decay rates (in [0, 1)) and the term
        added to the root (> 0).
    num_threads : int, optional
        Threads for this call; default :func:`fastlinear.get_num_threads`.
    """
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
        raise (TypeError if not isinstance(step, numbers.Integral) or isinstance(step, bool)
               else ValueError)(f"step must be an int from 1, got {step!r}")
    lr = _real("lr", lr, 0.0, math.inf, high_open=True)
    beta1 = _real("beta1", beta1, 0.0, 1.0, high_open=True)
    beta2 = _real("beta2", beta2, 0.0, 1.0, high_open=True)
    eps = _real("eps", eps, 0.0, math.inf, low_open=True, high_open=True)
    _arrays(param, grad, m=m, v=v)
    _optim.adam(param, grad, m, v, _adam_rate(lr, beta1, beta2, int(step)), beta1, beta2, eps,
                check_threads(num_threads))


def _adam_rate(lr, beta1, beta2, step):
    """Adam's bias-corrected learning rate of step ``step`` (from 1), as scikit-learn's
    ``AdamOptimizer`` computes it."""
    return lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)

"""The Linear layer class."""
import math
import threading

import numpy as np

from ._api import linear_backward, linear_forward
from ._checks import FLOATS, NEEDS_Z, activation_code


class Linear:
    r"""A fully-connected layer: :math:`y = f(x W + b)`, f an activation or none.

    Parameters
    ----------
    in_features : int
        M_in, the size of each input row.
    out_features : int
        M_out, the size of each output row.
    bias : bool
        If False the layer has no bias (``b`` and ``db`` are None).
    activation : {None, "relu", "tanh", "sigmoid", "gelu", "gelu_tanh"}
        f, fused into the forward and backward calls (see
        :func:`fastlinear.linear_forward`).
    dtype : numpy.float32 or numpy.float64
    seed : int or numpy.random.Generator, optional
        Seed of the initialisation.

    Attributes
    ----------
    W : ndarray (M_in, M_out)
        Weights, stored (in, out) so that y = x @ W.  Initialised from
        U(-1/sqrt(M_in), 1/sqrt(M_in)), as ``torch.nn.Linear`` does.
    b : ndarray (M_out,) or None
        Bias, initialised like W.
    dW, db : ndarray
        Gradients, accumulated by every :meth:`backward` (like PyTorch's
        ``.grad``) until :meth:`zero_grad`; ``backward(dy, lr=)`` instead
        steps W and b by plain SGD inside the call.  All four arrays are
        updated in place, so an optimiser may keep references to them.

    Notes
    -----
    Shapes: x is (..., M_in) and y = forward(x) is (..., M_out); dy is
    (..., M_out) like y and dx = backward(dy) is (..., M_in) like x.

    ``forward`` keeps a reference to x (not a copy) for ``backward``: do not
    write into x between the two.  ``backward`` releases it, so each forward
    is followed by at most one backward, as in PyTorch.  Each thread has its
    own pending input, so threads may run forward/backward on one layer at
    once: each backward uses its own thread's x, and their gradients are added
    into dW and db one after the other.  Nothing else is kept between calls.

    :meth:`from_torch`, :meth:`to_torch` and :meth:`load_state_dict` convert
    from and to ``torch.nn.Linear``, whose weight is W transposed.

    Examples
    --------
    >>> import numpy as np, fastlinear
    >>> layer = fastlinear.Linear(3, 2, seed=0)
    >>> x = np.ones((4, 3))
    >>> y = layer.forward(x)
    >>> y.shape
    (4, 2)
    >>> dx = layer.backward(np.ones_like(y))
    >>> dx.shape, layer.dW.shape
    ((4, 3), (3, 2))
    >>> bool(np.allclose(layer.db, [4.0, 4.0]))
    True
    """

    def __init__(self, in_features, out_features, bias=True, activation=None, dtype=np.float64,
                 seed=None):
        for name, n in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(n, bool) or not hasattr(n, "__index__"):
                raise TypeError(f"{name} must be an int, got {n!r}")
            if n.__index__() < 0:
                raise ValueError(f"{name} must be >= 0, got {n!r}")
        activation_code(activation)  # raises naming the valid ones
        self.activation = activation
        dtype = np.dtype(dtype)
        if dtype not in FLOATS:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        shape = (self.in_features, self.out_features)
        self.W = rng.uniform(-bound, bound, shape).astype(dtype)
        self.b = rng.uniform(-bound, bound, self.out_features).astype(dtype) if bias else None
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b) if bias else None
        self._pending = threading.local()
        self._grad_lock = threading.Lock()

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_pending"], state["_grad_lock"]
        return state

    def __setstate__(self, state):
        state.setdefault("activation", None)  # pickled before layers had one
        self.__dict__.update(state)
        self._pending = threading.local()
        self._grad_lock = threading.Lock()

    @property
    def dtype(self):
        return self.W.dtype

    def forward(self, x, *, num_threads=None):
        """y = f(x @ W + b); keeps references to x, and to what f' needs, for :meth:`backward`."""
        z = None
        if self.activation in NEEDS_Z:
            z = np.empty(np.shape(x)[:-1] + (self.out_features,), self.dtype)
        y = linear_forward(x, self.W, self.b, activation=self.activation, z=z,
                           num_threads=num_threads)
        self._pending.x = x
        self._pending.saved = z if z is not None else y
        return y

    __call__ = forward

    def backward(self, dy, *, need_dx=True, lr=None, num_threads=None):
        """Add this step's gradients into dW and db; return dx (None if not needed).

        With ``lr``, take an SGD step instead, W -= lr * dW and b -= lr * db
        with this step's gradients, inside the call (see
        :func:`fastlinear.linear_backward`); dW and db are left as they are.
        """
        x = getattr(self._pending, "x", None)
        if x is None:
            raise RuntimeError("backward() called before forward() in this thread, or "
                               "twice after one forward()")
        saved = {}
        if self.activation is not None:
            saved["z" if self.activation in NEEDS_Z else "y"] = self._pending.saved
        with self._grad_lock:
            into = (dict(dW=self.dW, db=self.db, accumulate=True) if lr is None
                    else dict(lr=lr, b=self.b))
            grads = linear_backward(x, self.W, dy, activation=self.activation, **saved,
                                    bias=self.b is not None, need_dx=need_dx, **into,
                                    num_threads=num_threads)
        self._pending.x = self._pending.saved = None
        return grads.dx

    def zero_grad(self):
        """Set dW and db to zero, in place."""
        self.dW.fill(0)
        if self.db is not None:
            self.db.fill(0)

    def parameters(self):
        """[(W, dW), (b, db)]: each parameter with its gradient, for an optimiser."""
        pairs = [(self.W, self.dW)]
        if self.b is not None:
            pairs.append((self.b, self.db))
        return pairs

    def state_dict(self):
        """Copies of the parameters: {'W': ..., 'b': ...} (no 'b' without bias)."""
        state = {"W": self.W.copy()}
        if self.b is not None:
            state["b"] = self.b.copy()
        return state

    def load_state_dict(self, state):
        """Copy parameters in place from a dict made by :meth:`state_dict`.

        PyTorch's keys are accepted too: ``weight`` of shape (out, in), as in
        ``torch.nn.Linear.state_dict()``, and ``bias``; tensors or arrays.
        """
        state = self._from_torch_keys(state)
        expected = {"W"} | ({"b"} if self.b is not None else set())
        if set(state) != expected:
            raise ValueError(f"state must have keys {sorted(expected)}, got {sorted(state)}")
        new = {}
        for name in expected:
            value = np.asarray(state[name])
            target = getattr(self, name)
            if value.shape != target.shape:
                raise ValueError(f"{name} must have shape {target.shape}, got {value.shape}")
            if value.dtype.kind not in "fiu":
                raise TypeError(f"{name} must be real numbers, got {value.dtype}")
            new[name] = value
        for name, value in new.items():
            np.copyto(getattr(self, name), value, casting="same_kind")

    def _from_torch_keys(self, state):
        """``state`` with PyTorch's keys and values as fastlinear's (W is (in, out))."""
        if "weight" not in state:
            return state
        ours = {}
        for key, value in state.items():
            value = _to_numpy(value)
            if key == "weight":
                shape = (self.out_features, self.in_features)
                if value.shape != shape:
                    raise ValueError(f"weight must have PyTorch's shape (out_features, "
                                     f"in_features) = {shape}, got {value.shape}")
                key, value = "W", value.T
            elif key == "bias":
                key = "b"
            ours[key] = value
        return ours

    @classmethod
    def from_torch(cls, module, activation=None):
        """A new layer with the parameters (copied) of a ``torch.nn.Linear``.

        The dtype follows the module's weight (float32 or float64); PyTorch's
        weight (out, in) becomes W (in, out).  ``activation`` is the new
        layer's (a ``torch.nn.Linear`` has none).
        """
        state = {"weight": module.weight}
        if module.bias is not None:
            state["bias"] = module.bias
        dtype = _to_numpy(module.weight).dtype
        layer = cls(module.in_features, module.out_features, bias=module.bias is not None,
                    activation=activation, dtype=dtype)
        layer.load_state_dict(state)
        return layer

    def to_torch(self):
        """A new ``torch.nn.Linear`` with copies of this layer's parameters.

        Its weight is W transposed, (out, in), in this layer's dtype, on the CPU.
        """
        torch = _import_torch()
        # skip_init: the parameters are overwritten at once, so torch's random
        # initialisation (and its draw from torch's global generator) is skipped.
        module = torch.nn.utils.skip_init(torch.nn.Linear, self.in_features,
                                          self.out_features, bias=self.b is not None,
                                          dtype=getattr(torch, self.dtype.name))
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(self.W.T)))
            if self.b is not None:
                module.bias.copy_(torch.from_numpy(self.b))
        return module

    def __repr__(self):
        act = f", activation={self.activation!r}" if self.activation is not None else ""
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.b is not None}{act}, dtype={self.dtype.name})")


def _import_torch():
    """PyTorch, imported on first use so that fastlinear never needs it."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError("Linear.to_torch needs PyTorch: pip install torch") from exc
    return torch


def _to_numpy(value):
    """An ndarray of ``value``, a torch tensor (detached, on the CPU) or array_like."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)

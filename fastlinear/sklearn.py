"""scikit-learn's MLP estimators with fastlinear's layers and one-pass optimizer steps.

:class:`MLPClassifier` and :class:`MLPRegressor` are scikit-learn's estimators of the
same names, with the same parameters, methods and fitted attributes.  They replace
the network's algebra only: every dense product of training and prediction runs on
fastlinear, with the hidden activation fused into the forward and its derivative
into the backward, gradients go into the buffers of the previous batch, and the sgd
and adam solvers update each parameter in one pass (:mod:`fastlinear.optim`).
Validation, batching, early stopping, lbfgs (``scipy.optimize``) and every
attribute stay scikit-learn's own.  Needs scikit-learn (``fastlinear[sklearn]``).

>>> from sklearn.datasets import load_digits
>>> from fastlinear.sklearn import MLPClassifier
>>> X, y = load_digits(return_X_y=True)
>>> clf = MLPClassifier((32,), max_iter=50, random_state=0).fit(X / 16, y)
>>> bool(clf.score(X / 16, y) > 0.95), clf.coefs_[0].shape
(True, (64, 32))
"""
import numpy as np
import scipy.sparse
import sklearn.utils.validation
from sklearn import neural_network
from sklearn.neural_network._base import ACTIVATIONS, DERIVATIVES, LOSS_FUNCTIONS
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

from . import _optim, _softmax
from ._api import linear_backward, linear_forward
from ._threads import get_num_threads
from .optim import _adam_rate

# scikit-learn >= 1.6 validates with this function, older releases with a method.
_validate_data = getattr(sklearn.utils.validation, "validate_data", None)

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's activations that fastlinear fuses into its products, by fastlinear's name.
_FUSED = {"identity": None, "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _buffer(held, shape, dtype):
    """``held`` when it is a writeable C-contiguous array of this shape and dtype (the
    previous batch's), else a new one: a batch of the same size reuses its arrays."""
    if (isinstance(held, np.ndarray) and held.shape == shape and held.dtype == dtype
            and held.flags.c_contiguous and held.flags.writeable):
        return held
    return np.empty(shape, dtype)


class _OnePassOptimizer:
    """scikit-learn's SGD or Adam optimizer, whose ``update_params`` updates each
    parameter and its state in place in one pass; every other attribute and method,
    and so the learning-rate schedules and stopping, is the wrapped optimizer's."""

    def __init__(self, inner):
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name):
        # Copying and unpickling look attributes up before _inner is set: no recursion.
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __setattr__(self, name, value):
        # A wrapper is made at each access of _optimizer: set on it, a value would be lost.
        setattr(self._inner, name, value)

    def update_params(self, params, grads):
        inner = self._inner
        if isinstance(inner, AdamOptimizer):
            states = list(zip(inner.ms, inner.vs))
        elif isinstance(inner, SGDOptimizer):
            states = [(velocity,) for velocity in inner.velocities]
        else:
            states = []
        if not states or not all(map(_steppable, params, grads, states)):
            return inner.update_params(params, grads)
        threads = get_num_threads()
        if isinstance(inner, AdamOptimizer):
            inner.t += 1
            # As scikit-learn computes it, and leaves it for its users to read.
            inner.learning_rate = _adam_rate(inner.learning_rate_init, inner.beta_1,
                                            inner.beta_2, inner.t)
            for param, grad, (m, v) in zip(params, grads, states):
                _optim.adam(param, grad, m, v, float(inner.learning_rate), float(inner.beta_1),
                            float(inner.beta_2), float(inner.epsilon), threads)
        else:
            for param, grad, (velocity,) in zip(params, grads, states):
                _optim.sgd(param, grad, velocity, float(inner.learning_rate),
                           float(inner.momentum), bool(inner.nesterov), threads)


def _steppable(param, grad, state):
    """Whether the one-pass kernels take these arrays as they are (those of a fit
    always; a parameter a user replaced may not be), else scikit-learn's update runs."""
    if not (isinstance(param, np.ndarray) and param.dtype in _FLOATS and param.dtype.isnative):
        return False
    for a in (param, grad) + state:
        if not (isinstance(a, np.ndarray) and a.dtype == param.dtype and a.shape == param.shape
                and a.flags.c_contiguous and (a is grad or a.flags.writeable)):
            return False
    return True


def _decay_norm(W, dW, decay):
    """dW += decay W, and the sum of W²: in one pass where W is C-contiguous (dW, a
    buffer of _buffer, always is)."""
    if W.flags.c_contiguous:
        return _optim.decay_norm(W, dW, decay, get_num_threads())
    dW += decay * W
    # Not np.dot: NumPy's BLAS threads would spin on the cores fastlinear's use next.
    return float(np.einsum("ij,ij->", W, W))


def _layer_forward(x, W, b, name, fused, out):
    """out = f(x W + b) for one layer: fastlinear's product with f fused where it can be,
    scipy.sparse's for a sparse x; f (scikit-learn's name) applied after otherwise."""
    if scipy.sparse.issparse(x):
        np.add(np.asarray(x @ W), b, out=out)
        _activate(name, out)
    else:
        linear_forward(x, W, b, activation=fused, out=out)
        if fused is None and name != "identity":
            _activate(name, out)
    return out


def _activate(name, out):
    """scikit-learn's activation ``name`` applied to ``out`` (a C-contiguous float32 or
    float64 buffer of this module) in place; softmax in one pass per row."""
    if name == "softmax":
        _softmax.softmax(out, get_num_threads())
    else:
        ACTIVATIONS[name](out)


class _FastlinearMLP:
    """The algebra of scikit-learn's ``BaseMultilayerPerceptron`` on fastlinear:
    ``_forward_pass_fast`` (prediction), ``_backprop`` (loss and gradients of a batch)
    and the optimizer's update; the rest is inherited from scikit-learn's class."""

    # scikit-learn's _fit_stochastic creates the optimizer and calls its update_params;
    # holding the optimizer behind this property is how its update becomes one pass.
    @property
    def _optimizer(self):
        try:
            return _OnePassOptimizer(self.__dict__["_optimizer"])
        except KeyError:
            raise AttributeError("_optimizer") from None

    @_optimizer.setter
    def _optimizer(self, optimizer):
        self.__dict__["_optimizer"] = optimizer

    @_optimizer.deleter
    def _optimizer(self):
        del self.__dict__["_optimizer"]

    def _layers(self):
        """Each layer's weights, bias, activation by scikit-learn's name and, where
        fastlinear fuses it into the product, by fastlinear's (else None: softmax and exp
        are applied after the output layer's product)."""
        names = [self.activation] * (len(self.coefs_) - 1) + [self.out_activation_]
        return [(W, b, name, _FUSED.get(name)) for W, b, name in
                zip(self.coefs_, self.intercepts_, names)]

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = (_validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
                 if _validate_data is not None
                 else self._validate_data(X, accept_sparse=["csr", "csc"], reset=False))
        # The dtype NumPy's products would give: weights and input meet in it.
        dtype = np.result_type(X.dtype, *self.coefs_)
        if dtype not in _FLOATS:
            # float16 or long double: scikit-learn's products, in that dtype (validating
            # again, as scikit-learn < 1.6 has no check_input).
            return super()._forward_pass_fast(X)
        a = X if scipy.sparse.issparse(X) else np.asarray(X, dtype)
        for W, b, name, fused in self._layers():
            W, b = W.astype(dtype, copy=False), b.astype(dtype, copy=False)
            a = _layer_forward(a, W, b, name, fused, np.empty((a.shape[0], W.shape[1]), dtype))
        return a

    def _output_loss(self, y, sample_weight, sw_sum, p, delta, fused_loss):
        """The batch's loss before the L2 term, and into ``delta`` d loss / dz of the
        output (its activation is the loss's canonical link) scaled by 1 / sw_sum, so
        that every product of the backward comes out scaled; with ``fused_loss``, ``p``
        holds the output's logits and gets their softmax in the same pass."""
        dtype = p.dtype
        scales = (None if sample_weight is None
                  else (sample_weight / sw_sum).astype(dtype, copy=False))
        if fused_loss:
            row_loss = np.empty(p.shape[0])
            _softmax.softmax_loss(p, y, delta, scales, 1.0 / sw_sum, row_loss, get_num_threads())
            # In the dtype, as scikit-learn's log_loss returns it.
            return dtype.type(row_loss.sum() / p.shape[0] if sample_weight is None
                              else np.average(row_loss, weights=sample_weight))
        loss_name = self.loss
        if loss_name == "log_loss" and self.out_activation_ == "logistic":
            loss_name = "binary_log_loss"
        weights = () if sample_weight is None else (sample_weight,)
        loss = LOSS_FUNCTIONS[loss_name](y, p, *weights)
        np.subtract(p, y, out=delta)
        if sample_weight is None:
            delta *= 1.0 / sw_sum
        else:
            delta *= scales.reshape(-1, 1)
        return loss

    def _backprop(self, X, y, *args):
        # scikit-learn >= 1.7 passes sample_weight after y; older releases have none.
        sample_weight, activations, deltas, coef_grads, intercept_grads = (
            args if len(args) == 5 else (None,) + args)
        dtype = self.coefs_[0].dtype
        if dtype not in _FLOATS or not all(W.dtype == dtype and b.dtype == dtype
                                           for W, b in zip(self.coefs_, self.intercepts_)):
            # Weights a user gave in several dtypes, or in one fastlinear's kernels do not
            # take (float16, long double, byte-swapped): NumPy's promotion, as scikit-learn's.
            return super()._backprop(X, y, *args)
        if X.dtype != dtype:
            # Weights of another dtype than X (a warm start on data of the other dtype,
            # lbfgs' float64 vector): X promoted, as NumPy's products would.
            X = activations[0] = X.astype(dtype)
        n_samples = X.shape[0]
        layers = self._layers()
        last = len(layers) - 1
        # Softmax cross-entropy (multiclass): the output's softmax, the loss and delta
        # in one pass after the last product.
        fused_loss = (self.out_activation_ == "softmax" and self.loss == "log_loss"
                      and isinstance(y, np.ndarray) and (y.dtype == bool or y.dtype == dtype)
                      and y.flags.c_contiguous)

        for i, (W, b, name, fused) in enumerate(layers):
            if i == last and fused_loss:
                name = "identity"
            activations[i + 1] = _layer_forward(
                activations[i], W, b, name, fused,
                _buffer(activations[i + 1], (n_samples, W.shape[1]), dtype))

        sw_sum = n_samples if sample_weight is None else sample_weight.sum()
        deltas[last] = _buffer(deltas[last], activations[-1].shape, dtype)
        loss = self._output_loss(y, sample_weight, sw_sum, activations[-1], deltas[last],
                                 fused_loss)

        for i in range(last, -1, -1):
            W, b, name, fused = layers[i]
            x = activations[i]
            dW = coef_grads[i] = _buffer(coef_grads[i], W.shape, dtype)
            db = intercept_grads[i] = _buffer(intercept_grads[i], b.shape, dtype)
            if scipy.sparse.issparse(x):
                if i < last:
                    DERIVATIVES[name](activations[i + 1], deltas[i])
                dW[...] = np.asarray(x.T @ deltas[i])
                np.sum(deltas[i], axis=0, out=db)
                continue
            act = fused if i < last else None
            dx = _buffer(deltas[i - 1], x.shape, dtype) if i > 0 else None
            linear_backward(x, W, deltas[i], activation=act,
                            y=activations[i + 1] if act is not None else None,
                            overwrite_dy=True, need_dx=i > 0, dx=dx, dW=dW, db=db)
            if i > 0:
                deltas[i - 1] = dx

        # The L2 term: alpha W / sw_sum added into each dW, and (alpha / 2) |W|² / sw_sum
        # into the loss, from one pass over each W.
        decay = self.alpha / sw_sum
        if decay:
            squares = sum(_decay_norm(W, dW, decay) for W, dW in zip(self.coefs_, coef_grads))
            loss += (0.5 * self.alpha) * squares / sw_sum
        return loss, coef_grads, intercept_grads


class MLPClassifier(_FastlinearMLP, neural_network.MLPClassifier):
    __doc__ = (
        "scikit-learn's :class:`sklearn.neural_network.MLPClassifier` on fastlinear.\n\n"
        "Same parameters, methods and fitted attributes; the products, activations and\n"
        "optimizer steps run on fastlinear (see :mod:`fastlinear.sklearn`).\n\n"
        ">>> from fastlinear.sklearn import MLPClassifier\n"
        ">>> clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0)\n"
        ">>> clf.fit([[0., 0.], [0., 1.], [1., 0.], [1., 1.]], [0, 1, 1, 0]).predict([[0., 1.]]).shape\n"
        "(1,)\n")


class MLPRegressor(_FastlinearMLP, neural_network.MLPRegressor):
    __doc__ = (
        "scikit-learn's :class:`sklearn.neural_network.MLPRegressor` on fastlinear.\n\n"
        "Same parameters, methods and fitted attributes; the products, activations and\n"
        "optimizer steps run on fastlinear (see :mod:`fastlinear.sklearn`).\n\n"
        ">>> from fastlinear.sklearn import MLPRegressor\n"
        ">>> reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=50, random_state=0)\n"
        ">>> reg.fit([[0.], [1.], [2.]], [0., 1., 2.]).predict([[1.5]]).shape\n"
        "(1,)\n")

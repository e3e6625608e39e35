"""fastlinear.sklearn: the same numbers as scikit-learn's MLPClassifier and MLPRegressor."""
import inspect
import pickle
import warnings
from copy import copy as shallow_copy, deepcopy

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
import scipy.sparse  # noqa: E402
from sklearn import neural_network  # noqa: E402
from sklearn.datasets import load_diabetes, load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network._base import LOSS_FUNCTIONS  # noqa: E402

import fastlinear  # noqa: E402
from fastlinear import sklearn as fl_sklearn  # noqa: E402

PAIRS = {"classifier": (neural_network.MLPClassifier, fl_sklearn.MLPClassifier),
         "regressor": (neural_network.MLPRegressor, fl_sklearn.MLPRegressor)}
ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]
# Solvers, with the options that select each update the optimizer may run.
SOLVERS = {
    "adam": dict(solver="adam"),
    "sgd": dict(solver="sgd", momentum=0.9, nesterovs_momentum=False),
    "sgd-nesterov": dict(solver="sgd", momentum=0.9, nesterovs_momentum=True),
    "sgd-plain": dict(solver="sgd", momentum=0.0),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling"),
    "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", tol=1e-1, n_iter_no_change=1),
    "lbfgs": dict(solver="lbfgs"),
}
SAMPLE_WEIGHT = "sample_weight" in inspect.signature(neural_network.MLPClassifier.fit).parameters


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _fit_both(kind, X, y, fit_kwargs=None, **params):
    """scikit-learn's and fastlinear's estimators, fitted alike."""
    fitted = []
    for cls in PAIRS[kind]:
        fitted.append(cls(random_state=0, **params).fit(X, y, **(fit_kwargs or {})))
    return fitted


def _assert_same_fit(theirs, ours, rtol):
    """Loss curve (or lbfgs' loss), weights and predictions agree to ``rtol``."""
    if hasattr(theirs, "loss_curve_"):
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=rtol)
    assert ours.n_iter_ == theirs.n_iter_
    for mine, reference in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert mine.dtype == reference.dtype and mine.shape == reference.shape
        scale = np.abs(reference).max()
        np.testing.assert_allclose(mine, reference, rtol=0, atol=rtol * scale)


def _data(kind, target, rng, n=120, features=9, dtype=np.float64):
    X = rng.standard_normal((n, features)).astype(dtype)
    if kind == "regressor":
        y = X[:, :2] @ np.array([1.5, -2.0]) + 0.1 * rng.standard_normal(n)
        return X, (np.exp(y / 3) if target == "poisson" else y)
    labels = {"binary": 2, "multiclass": 4}.get(target, 3)
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0.5) if labels > 2 else (X[:, 0] > 0)
    if target == "multilabel":
        return X, np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0.3], axis=1).astype(int)
    return X, y % labels


TARGETS = [("classifier", "binary"), ("classifier", "multiclass"), ("classifier", "multilabel"),
           ("regressor", "squared_error"), ("regressor", "poisson")]


def _loss_param(kind, target):
    if kind == "regressor" and target == "poisson":
        if "poisson" not in LOSS_FUNCTIONS:
            pytest.skip("this scikit-learn has no poisson loss")
        return {"loss": "poisson"}
    return {}


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kind, target", TARGETS, ids=lambda v: v)
def test_every_network_and_solver(rng, kind, target, activation, solver):
    """Each hidden and output activation with each solver and schedule: the loss curve,
    weights and predictions of scikit-learn's estimator, to rounding."""
    X, y = _data(kind, target, rng)
    params = dict(hidden_layer_sizes=(7, 5), activation=activation, max_iter=6,
                  batch_size=32, alpha=1e-3, **SOLVERS[solver], **_loss_param(kind, target))
    theirs, ours = _fit_both(kind, X, y, **params)
    _assert_same_fit(theirs, ours, rtol=1e-9)
    if kind == "classifier":
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-9,
                                   atol=1e-12)
    np.testing.assert_array_equal(ours.predict(X) == theirs.predict(X), True) if (
        kind == "classifier") else np.testing.assert_allclose(
            ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-9)


def _same_numbers(kind, X, y, max_iter, **params):
    """The first 10 epochs' loss to 1e-6 relative, and the test score (accuracy or R²)
    at convergence within half a point (0.005); fastlinear's test score."""
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    theirs, ours = _fit_both(kind, X_train, y_train, max_iter=10, **params)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-6)
    theirs, ours = _fit_both(kind, X_train, y_train, max_iter=max_iter, **params)
    assert theirs.n_iter_ < max_iter  # converged
    assert abs(ours.score(X_test, y_test) - theirs.score(X_test, y_test)) <= 0.005
    return ours.score(X_test, y_test)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_digits_same_numbers(solver):
    """Digits, float64, as scikit-learn's MLPClassifier (see _same_numbers)."""
    X, y = load_digits(return_X_y=True)
    assert _same_numbers("classifier", X / 16, y, 300, solver=solver,
                         learning_rate_init=0.1 if solver == "sgd" else 0.001) > 0.9


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_diabetes_same_numbers(solver):
    """Diabetes, float64, as scikit-learn's MLPRegressor (see _same_numbers)."""
    X, y = load_diabetes(return_X_y=True)
    assert _same_numbers("regressor", X / X.std(axis=0), y / 100, 500, hidden_layer_sizes=(16,),
                         solver=solver, learning_rate_init=0.01) > 0


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_float32_trains_in_float32(rng, kind, solver):
    """float32 input gives float32 weights and outputs, as scikit-learn's, and the same
    numbers to float32 rounding."""
    X, y = _data(kind, "multiclass" if kind == "classifier" else "squared_error", rng,
                 dtype=np.float32)
    theirs, ours = _fit_both(kind, X, y, hidden_layer_sizes=(8,), solver=solver, max_iter=5)
    # lbfgs leaves the float64 weights of scipy.optimize's vector, as scikit-learn's does.
    expected = np.float64 if solver == "lbfgs" else np.float32
    assert all(W.dtype == expected for W in theirs.coefs_ + ours.coefs_ + ours.intercepts_)
    _assert_same_fit(theirs, ours, rtol=2e-4)
    predicted = ours.predict_proba(X) if kind == "classifier" else ours.predict(X)
    assert predicted.dtype == expected


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_sparse_input(rng, fmt, solver):
    """Sparse X trains and predicts as scikit-learn's, its first layer's products
    taken by scipy.sparse, and is not modified."""
    X, y = _data("classifier", "multiclass", rng)
    X[np.abs(X) < 0.8] = 0
    X = scipy.sparse.csr_matrix(X).asformat(fmt)
    before = X.copy()
    theirs, ours = _fit_both("classifier", X, y, hidden_layer_sizes=(6,), solver=solver,
                             max_iter=5, alpha=1e-2)
    _assert_same_fit(theirs, ours, rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-9)
    assert (X != before).nnz == 0
    # No hidden layer: the sparse first layer is the output layer.
    theirs, ours = _fit_both("classifier", X, y, hidden_layer_sizes=(), solver=solver,
                             max_iter=5)
    _assert_same_fit(theirs, ours, rtol=1e-9)


@pytest.mark.skipif(not SAMPLE_WEIGHT, reason="this scikit-learn's MLP takes no sample_weight")
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("kind", list(PAIRS))
def test_sample_weight(rng, kind, solver):
    X, y = _data(kind, "binary" if kind == "classifier" else "squared_error", rng)
    weight = rng.uniform(0.1, 3.0, len(X))
    theirs, ours = _fit_both(kind, X, y, {"sample_weight": weight}, hidden_layer_sizes=(6,),
                             solver=solver, max_iter=5, alpha=1e-2)
    _assert_same_fit(theirs, ours, rtol=1e-9)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_early_stopping_warm_start_and_partial_fit(rng, solver):
    """Early stopping's validation scores and best weights, a warm start and partial_fit
    follow scikit-learn's estimator step for step."""
    X, y = _data("classifier", "multiclass", rng, n=300)
    theirs, ours = _fit_both("classifier", X, y, hidden_layer_sizes=(10,), solver=solver,
                             early_stopping=True, max_iter=30, n_iter_no_change=3)
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-12)
    assert ours.best_validation_score_ == theirs.best_validation_score_
    _assert_same_fit(theirs, ours, rtol=1e-9)

    models = _fit_both("classifier", X, y, hidden_layer_sizes=(10,), solver=solver,
                       max_iter=3, warm_start=True)
    for model in models:
        model.fit(X, y)
    _assert_same_fit(*models, rtol=1e-9)
    assert models[0].best_loss_ == pytest.approx(models[1].best_loss_, rel=1e-9)

    models = [cls(hidden_layer_sizes=(10,), solver=solver, random_state=0)
              for cls in PAIRS["classifier"]]
    for start in range(0, 300, 100):
        for model in models:
            model.partial_fit(X[start:start + 100], y[start:start + 100], classes=np.arange(4))
    _assert_same_fit(*models, rtol=1e-9)
    assert models[0].t_ == models[1].t_ == 300


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_same_bits_for_any_thread_count(rng, solver):
    """A first W of 75,000 elements, cut into several tasks by the optimizer and the L2
    pass: scikit-learn's numbers, and the same bits on 1, 2 and 3 threads."""
    X, y = _data("classifier", "multiclass", rng, n=400, features=250)
    params = dict(hidden_layer_sizes=(300, 20), solver=solver, max_iter=4, alpha=1e-2)
    before = fastlinear.get_num_threads()
    fits = []
    try:
        for threads in (1, 2, 3):
            fastlinear.set_num_threads(threads)
            fits.append(fl_sklearn.MLPClassifier(random_state=0, **params).fit(X, y))
    finally:
        fastlinear.set_num_threads(before)
    theirs = neural_network.MLPClassifier(random_state=0, **params).fit(X, y)
    _assert_same_fit(theirs, fits[0], rtol=1e-9)
    for other in fits[1:]:
        for mine, reference in zip(other.coefs_ + other.intercepts_,
                                   fits[0].coefs_ + fits[0].intercepts_):
            np.testing.assert_array_equal(mine, reference)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_weights_a_user_replaced(rng, solver):
    """Weights a user set between partial_fit calls, Fortran-ordered or in another dtype,
    are updated as scikit-learn updates them (its own algebra where fastlinear's
    kernels do not take them)."""
    X, y = _data("classifier", "multiclass", rng)
    models = [cls(hidden_layer_sizes=(6,), solver=solver, random_state=0)
              for cls in PAIRS["classifier"]]
    for model in models:
        model.partial_fit(X, y, classes=np.arange(4))
        model.coefs_[0] = np.asfortranarray(model.coefs_[0])
        model.partial_fit(X, y)
    _assert_same_fit(*models, rtol=1e-9)
    for model in models:
        model.coefs_[1] = model.coefs_[1].astype(np.float32)
        model.intercepts_[1] = model.intercepts_[1].astype(np.float32)
        model.partial_fit(X, y)
    _assert_same_fit(*models, rtol=1e-6)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_warm_start_on_data_of_the_other_dtype(rng, solver):
    """float64 weights refitted on float32 X (warm start, then partial_fit): X is promoted
    as scikit-learn's products promote it, with scikit-learn's numbers."""
    X, y = _data("classifier", "multiclass", rng)
    models = _fit_both("classifier", X, y, hidden_layer_sizes=(6,), solver=solver, max_iter=3,
                       warm_start=True)
    for model in models:
        model.fit(X.astype(np.float32), y)
        if solver != "lbfgs":
            model.partial_fit(X.astype(np.float32), y)
    assert all(W.dtype == np.float64 for W in models[1].coefs_)
    _assert_same_fit(*models, rtol=1e-6)


def test_prediction_input_dtypes(rng):
    """Integer, float32 and float64 input to a float64 or a float32 model: the dtypes and
    values of scikit-learn's predictions; the input is not modified."""
    X, y = _data("classifier", "multiclass", rng)
    for dtype in (np.float64, np.float32):
        theirs, ours = _fit_both("classifier", X.astype(dtype), y, hidden_layer_sizes=(6,),
                                 max_iter=3)
        for data in (X, X.astype(np.float32), np.rint(X * 3).astype(np.int64)):
            before = data.copy()
            mine, reference = ours.predict_proba(data), theirs.predict_proba(data)
            assert mine.dtype == reference.dtype
            np.testing.assert_allclose(mine, reference, rtol=1e-5 if np.float32 in (
                dtype, data.dtype) else 1e-12)
            np.testing.assert_array_equal(data, before)


def test_pickle_and_clone(rng):
    X, y = _data("classifier", "multiclass", rng)
    model = fl_sklearn.MLPClassifier((6,), max_iter=3, random_state=0).fit(X, y)
    copy = pickle.loads(pickle.dumps(model))
    assert type(copy) is fl_sklearn.MLPClassifier
    np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X))
    copy.partial_fit(X, y)
    model.partial_fit(X, y)
    np.testing.assert_array_equal(copy.coefs_[0], model.coefs_[0])
    clone = sklearn.base.clone(model)
    assert clone.get_params() == model.get_params() and not hasattr(clone, "coefs_")


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_optimizer_state_a_user_reads(rng, solver):
    """After a fit, the optimizer's learning rate (Adam's bias-corrected one, sgd's
    schedule), step count and moments or velocities are scikit-learn's."""
    X, y = _data("classifier", "multiclass", rng)
    params = dict(hidden_layer_sizes=(6,), solver=solver, max_iter=4, batch_size=32)
    if solver == "sgd":
        params["learning_rate"] = "invscaling"
    theirs, ours = _fit_both("classifier", X, y, **params)
    mine, reference = ours._optimizer, theirs._optimizer
    assert mine.learning_rate == pytest.approx(reference.learning_rate, rel=1e-12)
    assert mine.learning_rate != mine.learning_rate_init
    if solver == "adam":
        assert mine.t == reference.t == 4 * 4  # 4 epochs of 4 batches
    for state in ("ms", "vs") if solver == "adam" else ("velocities",):
        for got, want in zip(getattr(mine, state), getattr(reference, state)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_no_l2_term(rng, solver, sparse):
    """alpha=0: the gradients of each batch alone (no buffer keeps the last batch's),
    as scikit-learn's, dense and sparse."""
    X, y = _data("classifier", "multiclass", rng)
    if sparse:
        X[np.abs(X) < 0.8] = 0
        X = scipy.sparse.csr_matrix(X)
    theirs, ours = _fit_both("classifier", X, y, hidden_layer_sizes=(7, 5), solver=solver,
                             alpha=0.0, max_iter=4, batch_size=32)
    _assert_same_fit(theirs, ours, rtol=1e-9)


@pytest.mark.parametrize("solver, name, factor", [("sgd", "learning_rate", 0.1),
                                                  ("adam", "learning_rate_init", 0.1),
                                                  ("sgd", "momentum", 0.0)])
def test_optimizer_attributes_a_user_sets(rng, solver, name, factor):
    """A value a user sets on the fitted optimizer between partial_fit calls (a smaller
    learning rate, say) is the optimizer's from then on, as on scikit-learn's estimator."""
    X, y = _data("classifier", "multiclass", rng)
    models = [cls(hidden_layer_sizes=(6,), solver=solver, random_state=0)
              for cls in PAIRS["classifier"]]
    for model in models:
        model.partial_fit(X, y, classes=np.arange(4))
        setattr(model._optimizer, name, getattr(model._optimizer, name) * factor)
        model.partial_fit(X, y)
    _assert_same_fit(*models, rtol=1e-9)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_optimizer_copies(rng, solver):
    """The fitted optimizer copies, deep-copies and pickles, with scikit-learn's state."""
    X, y = _data("classifier", "multiclass", rng)
    theirs, ours = _fit_both("classifier", X, y, hidden_layer_sizes=(6,), solver=solver,
                             max_iter=2)
    states = ("ms", "vs") if solver == "adam" else ("velocities",)
    for copied in (shallow_copy(ours._optimizer), deepcopy(ours._optimizer),
                   pickle.loads(pickle.dumps(ours._optimizer))):
        assert copied.learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)
        for state in states:
            for mine, reference in zip(getattr(copied, state), getattr(theirs._optimizer, state)):
                np.testing.assert_allclose(mine, reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.dtype(">f8"), np.dtype(np.float16), np.dtype(np.longdouble)])
def test_weights_in_a_dtype_fastlinear_does_not_take(rng, dtype):
    """Weights a user set in byte-swapped float64, float16 or long double: predictions of
    scikit-learn's dtype and values, and partial_fit trains them as scikit-learn's does."""
    X, y = _data("regressor", "squared_error", rng)
    models = _fit_both("regressor", X, y, hidden_layer_sizes=(6,), max_iter=3)
    for model in models:
        model.coefs_ = [W.astype(dtype) for W in model.coefs_]
        model.intercepts_ = [b.astype(dtype) for b in model.intercepts_]
    theirs, ours = models
    for data in (X, X.astype(dtype)):
        mine, reference = ours.predict(data), theirs.predict(data)
        assert mine.dtype == reference.dtype
        np.testing.assert_allclose(mine, reference, rtol=1e-3 if dtype == np.float16 else 1e-9)
    for model in models:
        model.partial_fit(X, y)
    _assert_same_fit(theirs, ours, rtol=1e-3 if dtype == np.float16 else 1e-9)

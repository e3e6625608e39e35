"""The Linear class."""
import numpy as np
import pytest
from _helpers import DTYPES, arrays, assert_close, make, reference

from fastlinear import Linear

F64 = np.float64


# ---- the Linear class ----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_class_matches_functional(dtype):
    layer = Linear(5, 3, dtype=dtype, seed=0)
    assert layer.W.shape == (5, 3) and layer.b.shape == (3,) and layer.W.dtype == dtype
    bound = 1 / np.sqrt(5)
    assert np.all(np.abs(layer.W) <= bound) and np.all(np.abs(layer.b) <= bound)
    rng = np.random.default_rng(1)
    x, dy = make(rng, (2, 7, 5), dtype), make(rng, (2, 7, 3), dtype)
    ry, rdx, rdW, rdb = reference(x, layer.W, layer.b, dy)
    W_id, dW_id = id(layer.W), id(layer.dW)
    assert_close(layer(x), ry, dtype, 5)
    assert_close(layer.backward(dy), rdx, dtype, 3)
    layer.forward(x)
    layer.backward(dy, need_dx=False)
    assert_close(layer.dW, 2 * rdW, dtype, 28)
    assert_close(layer.db, 2 * rdb, dtype, 28)
    layer.zero_grad()
    assert not layer.dW.any() and not layer.db.any()
    assert id(layer.W) == W_id and id(layer.dW) == dW_id


def test_linear_init_is_seeded_and_uniform():
    a, b = Linear(400, 300, seed=1), Linear(400, 300, seed=1)
    np.testing.assert_array_equal(a.W, b.W)
    assert not np.array_equal(a.W, Linear(400, 300, seed=2).W)
    bound = 1 / 20
    assert a.W.min() >= -bound and a.W.max() <= bound
    assert abs(a.W.mean()) < 0.001 and abs(a.W.std() - bound / np.sqrt(3)) < 0.001


def test_linear_no_bias_state_dict_repr():
    layer = Linear(4, 2, bias=False, dtype=np.float32)
    assert layer.b is None and layer.db is None
    assert repr(layer) == "Linear(in_features=4, out_features=2, bias=False, dtype=float32)"
    state = layer.state_dict()
    assert set(state) == {"W"}
    other = Linear(4, 2, bias=False, dtype=np.float32, seed=5)
    W_before = other.W
    other.load_state_dict(state)
    assert other.W is W_before
    np.testing.assert_array_equal(other.W, layer.W)
    state["W"][:] = 0
    assert layer.W.any()
    with pytest.raises(ValueError, match="keys"):
        other.load_state_dict({"W": layer.W, "b": np.zeros(2)})
    with pytest.raises(ValueError, match=r"W must have shape \(4, 2\)"):
        other.load_state_dict({"W": np.zeros((2, 4))})
    g = other.parameters()
    assert len(g) == 1 and g[0][0] is other.W and g[0][1] is other.dW


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M_in, M_out", [(6, 3), (4, 4)], ids=str)
def test_linear_loads_pytorch_keys_from_numpy_arrays(M_in, M_out, dtype):
    """{"weight": W.T, "bias": b} as torch.nn.Linear.state_dict() names them, as
    NumPy arrays (no torch needed): W is the weight transposed, copied in place
    (a square W shows a missing transpose by its values)."""
    rng = np.random.default_rng(3)
    W, b = make(rng, (M_in, M_out), F64), make(rng, M_out, F64)
    layer = Linear(M_in, M_out, dtype=dtype, seed=0)
    W_before, b_before = layer.W, layer.b
    layer.load_state_dict({"weight": W.T.copy(), "bias": b})
    assert layer.W is W_before and layer.b is b_before
    np.testing.assert_array_equal(layer.W, W.astype(dtype))
    np.testing.assert_array_equal(layer.b, b.astype(dtype))
    x, dy = make(rng, (5, M_in), dtype), make(rng, (5, M_out), dtype)
    ry, rdx, rdW, rdb = reference(x, W.astype(dtype), b.astype(dtype), dy)
    assert_close(layer(x), ry, dtype, M_in)
    assert_close(layer.backward(dy), rdx, dtype, M_out)
    no_bias = Linear(M_in, M_out, bias=False, dtype=dtype, seed=0)
    no_bias.load_state_dict({"weight": W.T})
    np.testing.assert_array_equal(no_bias.W, W.astype(dtype))
    kept = layer.state_dict()
    with pytest.raises(ValueError, match=rf"PyTorch's shape \(out_features, in_features\) = "
                                         rf"\({M_out}, {M_in}\)"):
        layer.load_state_dict({"weight": np.zeros((M_in, M_out + 1)), "bias": b})
    with pytest.raises(ValueError, match="keys"):
        layer.load_state_dict({"weight": W.T})
    with pytest.raises(ValueError, match=r"b must have shape"):
        layer.load_state_dict({"weight": W.T, "bias": np.zeros(M_out + 1)})
    for name, value in kept.items():
        np.testing.assert_array_equal(getattr(layer, name), value)


@pytest.mark.parametrize("M_in, M_out", [(0, 3), (3, 0), (0, 0)])
def test_linear_with_zero_features(M_in, M_out):
    """A layer may have no inputs (y is the bias) or no outputs."""
    layer = Linear(M_in, M_out, seed=0)
    assert layer.W.shape == (M_in, M_out) and layer.b.shape == (M_out,)
    rng = np.random.default_rng(2)
    x, dy = make(rng, (5, M_in), F64), make(rng, (5, M_out), F64)
    ry, rdx, rdW, rdb = reference(x, layer.W, layer.b, dy)
    assert_close(layer(x), ry, F64, M_in)
    assert_close(layer.backward(dy), rdx, F64, M_out)
    assert_close(layer.dW, rdW, F64, 5)
    assert_close(layer.db, rdb, F64, 5)


def test_linear_backward_that_fails_changes_nothing():
    """A refused dy leaves dW, db and the pending input as they were: the
    backward can be made again with the right dy."""
    layer = Linear(3, 2, seed=0)
    x, _, _, dy = arrays()
    layer.forward(x)
    with pytest.raises(ValueError, match="dy must have shape"):
        layer.backward(dy[:, :1])
    assert not layer.dW.any() and not layer.db.any()
    layer.backward(dy)
    assert_close(layer.dW, x.T @ dy, F64, 4)


def test_linear_load_state_dict_checks_everything_before_copying():
    """Whichever parameter is refused, neither is changed."""
    layer = Linear(3, 2, seed=0)
    W, b = layer.W.copy(), layer.b.copy()
    for bad in ({"W": np.zeros((3, 2)), "b": np.zeros(3)},
                {"W": np.zeros((2, 3)), "b": np.zeros(2)},
                {"W": np.zeros((3, 2)), "b": np.zeros(2, bool)}):
        with pytest.raises((ValueError, TypeError)):
            layer.load_state_dict(bad)
        np.testing.assert_array_equal(layer.W, W)
        np.testing.assert_array_equal(layer.b, b)


def test_linear_errors():
    with pytest.raises(RuntimeError, match="before forward"):
        Linear(2, 2).backward(np.ones((1, 2)))
    layer = Linear(2, 2)
    layer.forward(np.ones((1, 2)))
    layer.backward(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match="twice after one forward"):
        layer.backward(np.ones((1, 2)))
    with pytest.raises(TypeError, match="in_features must be an int"):
        Linear(3.0, 2)
    with pytest.raises(TypeError, match="dtype"):
        Linear(2, 2, dtype=np.int32)
    with pytest.raises(ValueError, match="in_features"):
        Linear(-1, 2)
    with pytest.raises(TypeError, match="x is float32, W is float64"):
        Linear(2, 2)(np.ones((1, 2), np.float32))


def test_linear_docstring_example():
    import doctest
    import fastlinear._linear as mod
    result = doctest.testmod(mod, verbose=False)
    assert result.attempted > 0 and result.failed == 0

"""PyTorch interop: Linear.from_torch, Linear.to_torch and PyTorch's state_dict keys."""
import sys

import numpy as np
import pytest

import fastlinear
from _helpers import DTYPES, make, run_script


def test_fastlinear_never_imports_torch():
    out = run_script("""
        import sys, numpy as np, fastlinear
        layer = fastlinear.Linear(3, 2, seed=0)
        layer.load_state_dict(layer.state_dict())
        layer.backward(np.ones_like(layer.forward(np.ones((4, 3)))))
        print("torch" in sys.modules)
    """)
    assert out.strip() == "False"


def test_to_torch_without_torch_says_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match="pip install torch"):
        fastlinear.Linear(3, 2).to_torch()


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_round_trip(torch, dtype, bias):
    layer = fastlinear.Linear(5, 3, bias=bias, dtype=dtype, seed=1)
    module = layer.to_torch()
    assert (module.in_features, module.out_features) == (5, 3)
    assert module.weight.shape == (3, 5) and (module.bias is None) == (not bias)
    assert module.weight.dtype == getattr(torch, np.dtype(dtype).name)
    back = fastlinear.Linear.from_torch(module)
    assert back.dtype == dtype and (back.b is None) == (not bias)
    assert np.array_equal(back.W, layer.W)
    if bias:
        assert np.array_equal(back.b, layer.b)


def test_to_torch_leaves_torch_generator_alone(torch):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    fastlinear.Linear(64, 32).to_torch()
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_outputs_and_gradients_match_autograd(torch, rng, dtype):
    module = torch.nn.Linear(7, 4, dtype=getattr(torch, np.dtype(dtype).name))
    layer = fastlinear.Linear.from_torch(module)
    x, dy = make(rng, (2, 6, 7), dtype), make(rng, (2, 6, 4), dtype)
    tx = torch.from_numpy(x).requires_grad_()
    ty = module(tx)
    ty.backward(torch.from_numpy(dy))
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12}
    np.testing.assert_allclose(layer.forward(x), ty.detach().numpy(), **tol)
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.dW, module.weight.grad.numpy().T, **tol)
    np.testing.assert_allclose(layer.db, module.bias.grad.numpy(), **tol)


def test_load_torch_state_dict(torch, rng):
    module = torch.nn.Linear(6, 3, dtype=torch.float64)
    layer = fastlinear.Linear(6, 3, seed=0)
    layer.load_state_dict(module.state_dict())
    assert np.array_equal(layer.W, module.weight.detach().numpy().T)
    assert np.array_equal(layer.b, module.bias.detach().numpy())
    # Parameters themselves (tensors that require grad) are accepted too.
    layer.load_state_dict({"weight": module.weight, "bias": module.bias})
    x = rng.standard_normal((5, 6))
    np.testing.assert_allclose(layer.forward(x), module(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12)


def test_load_torch_state_dict_checks_shape_and_keys(torch):
    layer = fastlinear.Linear(6, 3)
    with pytest.raises(ValueError, match=r"\(out_features, in_features\) = \(3, 6\)"):
        layer.load_state_dict({"weight": torch.zeros(6, 3), "bias": torch.zeros(3)})
    with pytest.raises(ValueError, match="keys"):
        layer.load_state_dict({"weight": torch.zeros(3, 6)})
    unchanged = layer.state_dict()
    with pytest.raises(ValueError):
        layer.load_state_dict({"weight": torch.zeros(3, 6), "bias": torch.zeros(4)})
    assert all(np.array_equal(v, getattr(layer, k)) for k, v in unchanged.items())


def test_fastlinear_weights_in_a_torch_model(torch, rng):
    first = fastlinear.Linear(8, 16, seed=2)
    second = fastlinear.Linear(16, 3, seed=3)
    model = torch.nn.Sequential(first.to_torch(), torch.nn.ReLU(), second.to_torch())
    x = rng.standard_normal((10, 8))
    expected = second.forward(np.maximum(first.forward(x), 0))
    np.testing.assert_allclose(model(torch.from_numpy(x)).detach().numpy(), expected,
                               rtol=1e-12, atol=1e-14)

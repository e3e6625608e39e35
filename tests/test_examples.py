"""The examples run and reach the results they promise."""
import importlib.util
import os

import pytest

pytest.importorskip("sklearn")

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def digits():
    return load("train_mlp_digits")


def test_mlp_digits_short_run_learns(digits):
    result = digits.main(epochs=4, seed=3, quiet=True)
    losses = result["losses"]
    assert len(losses) == 4
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0]
    assert result["fastlinear_accuracy"] > 0.9


def test_mlp_digits_is_deterministic(digits):
    first = digits.main(epochs=2, seed=7, quiet=True)
    again = digits.main(epochs=2, seed=7, quiet=True)
    assert first["losses"] == again["losses"]
    assert first["fastlinear_accuracy"] == again["fastlinear_accuracy"]


def test_mlp_digits_full_run_matches_mlpclassifier(digits, capsys):
    result = digits.main(seed=0)
    out = capsys.readouterr().out
    assert "epoch  30" in out and "test accuracy" in out
    assert result["fastlinear_accuracy"] >= 0.95
    assert abs(result["fastlinear_accuracy"] - result["sklearn_accuracy"]) <= 0.015


def test_out_of_core_matches_mlpclassifier(capsys):
    pytest.importorskip("distributed")
    if importlib.util.find_spec("dask_ml") is None:  # installed but broken: fails below
        pytest.skip("needs dask-ml: pip install dask-ml")
    result = load("train_out_of_core").main(
        ["--rows", "40000", "--chunk-rows", "10000", "--test-rows", "5000"])
    out = capsys.readouterr().out
    assert "CPU: " in out and "in 4 chunks of 10000" in out and "held-out accuracy" in out
    ours, reference = result["fastlinear"]["accuracy"], result["scikit-learn"]["accuracy"]
    assert ours > 0.7  # the most frequent of the 4 classes is about 0.31
    assert abs(ours - reference) <= 1 / 5000  # the same weights, to rounding

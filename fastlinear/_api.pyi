from typing import Any, Dict, FrozenSet, NamedTuple, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Grads", "linear_forward", "linear_backward"]

_Float = NDArray[np.floating[Any]]

class Grads(NamedTuple):
    """Gradients of a linear layer: dx (..., M_in), dW (M_in, M_out), db (M_out,)."""

    dx: Optional[_Float]
    dW: Optional[_Float]
    db: Optional[_Float]

def linear_forward(
    x: ArrayLike,
    W: ArrayLike,
    b: Optional[ArrayLike] = None,
    *,
    activation: Optional[str] = None,
    out: Optional[_Float] = None,
    z: Optional[_Float] = None,
    num_threads: Optional[int] = None,
) -> _Float: ...
def linear_backward(
    x: ArrayLike,
    W: ArrayLike,
    dy: ArrayLike,
    *,
    activation: Optional[str] = None,
    y: Optional[ArrayLike] = None,
    z: Optional[ArrayLike] = None,
    overwrite_dy: bool = False,
    bias: bool = True,
    need_dx: bool = True,
    need_dW: bool = True,
    dx: Optional[_Float] = None,
    dW: Optional[_Float] = None,
    db: Optional[_Float] = None,
    dz: Optional[_Float] = None,
    accumulate: bool = False,
    lr: Optional[float] = None,
    b: Optional[_Float] = None,
    num_threads: Optional[int] = None,
) -> Grads: ...
def check_forward(x: Any, W: Any, b: Any = None) -> np.dtype[Any]: ...
def check_backward(x: Any, W: Any, dy: Any) -> Tuple[np.dtype[Any], int, int]: ...
def default_path(N: int, M_in: int, M_out: int) -> int: ...
def activation_code(activation: Optional[str]) -> int: ...
def set_planner(planner: Any) -> None: ...
def forget_plans() -> None: ...
def forward_planned(
    x: Any, W: Any, b: Any, activation: Any, out: Any, z: Any, num_threads: Any, plan: int
) -> _Float: ...
def backward_planned(
    x: Any, W: Any, dy: Any, activation: Any, y: Any, z: Any, overwrite_dy: Any, bias: Any,
    need_dx: Any, need_dW: Any, dx: Any, dW: Any, db: Any, dz: Any, accumulate: Any,
    num_threads: Any, plan: int, lr: Any = None, b: Any = None,
) -> Grads: ...
def _float_array(a: Any, name: str) -> _Float: ...

_FLOATS: Tuple[np.dtype[Any], ...]
ACTIVATIONS: Dict[Optional[str], int]
NEEDS_Z: FrozenSet[str]

from typing import Any, NamedTuple, Optional, Tuple

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
    out: Optional[_Float] = None,
    num_threads: Optional[int] = None,
) -> _Float: ...
def linear_backward(
    x: ArrayLike,
    W: ArrayLike,
    dy: ArrayLike,
    *,
    bias: bool = True,
    need_dx: bool = True,
    need_dW: bool = True,
    dx: Optional[_Float] = None,
    dW: Optional[_Float] = None,
    db: Optional[_Float] = None,
    accumulate: bool = False,
    num_threads: Optional[int] = None,
) -> Grads: ...
def check_forward(x: Any, W: Any, b: Any = None) -> np.dtype[Any]: ...
def check_backward(x: Any, W: Any, dy: Any) -> Tuple[np.dtype[Any], int, int]: ...
def plan(N: int, M_in: int, M_out: int) -> int: ...
def _float_array(a: Any, name: str) -> _Float: ...

_FLOATS: Tuple[np.dtype[Any], ...]

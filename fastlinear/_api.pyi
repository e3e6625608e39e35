from typing import Any, NamedTuple, Optional

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
    _plan: Optional[int] = None,
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
    _plan: Optional[int] = None,
) -> Grads: ...

"""fastlinear: a fully-connected layer for NumPy.

y = f(x W + b) forward and dx, dW, db backward, in compiled Cython on
fastlinear's own threads over SciPy's BLAS (or MKL or a newer OpenBLAS, with the
``mkl`` or ``openblas`` extra).  See :class:`Linear`, :func:`linear_forward` and
:func:`linear_backward`.
"""
from . import optim
from ._api import Grads, linear_backward, linear_forward
from ._config import show_config
from ._linear import Linear
from ._plans import tune
from ._settings import get_num_threads, set_blas, set_num_threads, set_planning
from ._version import __version__

__all__ = ["Grads", "Linear", "optim", "linear_backward", "linear_forward", "get_num_threads",
           "set_blas", "set_num_threads", "set_planning", "show_config", "tune", "__version__"]

"""PyTorch front end: the library's layers as `torch.nn.Module`s.

The same compiled problems and solvers as the Keras layers (the framework-free
`keras_optlayers.core` and `keras_optlayers.solvers`), with torch glue around
them. (Importing it imports the parent package, and with it TensorFlow;
the torch glue itself uses only the framework-free core and solvers.)

Optional: `import keras_optlayers` works without torch, and this package
raises ImportError, saying how to install torch, when it is missing.
"""

try:
    import torch  # noqa: F401  (checked here so the error says how to install it)
except ImportError as err:
    raise ImportError(
        "keras_optlayers.torch needs PyTorch, which is not installed. Install the "
        "CPU build with `pip install torch==2.13.0` (or your own build), or use "
        "`pip install keras-optlayers[torch]` after installing torch: a bare torch "
        "requirement pulls a multi-GB CUDA build."
    ) from err

from keras_optlayers.errors import SolverError
from keras_optlayers.torch.cvxpy_layer import CvxpyLayer
from keras_optlayers.torch.learnable import EllipsoidProjection, OptNetQP, PolytopeProjection
from keras_optlayers.torch.projections import LML, CSoftmax, CSparsemax, Sparsemax

__all__ = [
    "CSoftmax",
    "CSparsemax",
    "CvxpyLayer",
    "EllipsoidProjection",
    "LML",
    "OptNetQP",
    "PolytopeProjection",
    "SolverError",
    "Sparsemax",
]

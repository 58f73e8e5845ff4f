"""keras-optlayers: differentiable convex optimization layers for Keras.

Layers: `CvxpyLayer` (any DPP problem), `ConvexLayer` (base of learnable
layers), `PolytopeProjection`, `EllipsoidProjection`, `OptNetQP`, and the fast
projections `Sparsemax`, `CSparsemax`, `CSoftmax`, `LML`. Functional entries:
`qp_solve` and the projection ops in `keras_optlayers.ops`. The PyTorch shim
lives in `keras_optlayers.torch` (imported only on request).
"""

from keras_optlayers._tensorflow_check import check_tensorflow

check_tensorflow()

from keras_optlayers.comparison import ComparisonReport, compare_layers  # noqa: E402
from keras_optlayers.errors import SolverError  # noqa: E402
from keras_optlayers.layers import (  # noqa: E402
    LML,
    ConvexLayer,
    CSoftmax,
    CSparsemax,
    CvxpyLayer,
    EllipsoidProjection,
    OptNetQP,
    PolytopeProjection,
    Sparsemax,
)
from keras_optlayers.solvers.qp import qp_solve, qp_solve_with_status  # noqa: E402

__version__ = "0.1.0.dev0"

__all__ = [
    "LML",
    "ComparisonReport",
    "ConvexLayer",
    "CSoftmax",
    "CSparsemax",
    "CvxpyLayer",
    "EllipsoidProjection",
    "OptNetQP",
    "PolytopeProjection",
    "SolverError",
    "Sparsemax",
    "compare_layers",
    "qp_solve",
    "qp_solve_with_status",
]

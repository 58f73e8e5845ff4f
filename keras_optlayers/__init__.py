"""keras-optlayers: differentiable convex optimization layers for Keras.

Layers: `CvxpyLayer` (any DPP problem), `ConvexLayer` (base of learnable
layers), `PolytopeProjection`, `EllipsoidProjection`, `OptNetQP`, and the fast
projections `Sparsemax`, `CSparsemax`, `CSoftmax`, `LML`. Functional entries:
`qp_solve` and the projection ops in `keras_optlayers.ops`. Eager calls at
one small shape move to XLA after `eager_xla_after()` calls (see
`keras_optlayers.eager_xla`). The PyTorch shim lives in
`keras_optlayers.torch`.

`import keras_optlayers.torch` needs neither TensorFlow nor Keras, and
`import keras_optlayers` never imports torch. Where TensorFlow is installed
(and Keras' backend is "tensorflow") importing the package registers the
Keras layers, so saved models load; the first Keras name used checks for
TensorFlow and for Keras' backend and says what is wrong.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import TYPE_CHECKING, Any

from keras_optlayers.errors import SolverError, solver_errors

from keras_optlayers._version import __version__ as __version__

# Public name -> the module that defines it.
_LAZY_EXPORTS = {
    "ComparisonReport": "keras_optlayers.comparison",
    "compare_layers": "keras_optlayers.comparison",
    "SolverStatisticsCallback": "keras_optlayers.callbacks",
    "ConvexLayer": "keras_optlayers.layers",
    "CSoftmax": "keras_optlayers.layers",
    "CSparsemax": "keras_optlayers.layers",
    "CvxpyLayer": "keras_optlayers.layers",
    "EllipsoidProjection": "keras_optlayers.layers",
    "LML": "keras_optlayers.layers",
    "OptNetQP": "keras_optlayers.layers",
    "PolytopeProjection": "keras_optlayers.layers",
    "Sparsemax": "keras_optlayers.layers",
    "qp_solve": "keras_optlayers.solvers.qp",
    "qp_solve_with_info": "keras_optlayers.solvers.qp",
    "qp_solve_with_status": "keras_optlayers.solvers.qp",
    "eager_xla_after": "keras_optlayers.eager_xla",
    "set_eager_xla_after": "keras_optlayers.eager_xla",
    "wait_for_eager_xla": "keras_optlayers.eager_xla",
}

if TYPE_CHECKING:
    from keras_optlayers.callbacks import SolverStatisticsCallback
    from keras_optlayers.comparison import ComparisonReport, compare_layers
    from keras_optlayers.eager_xla import eager_xla_after, set_eager_xla_after, wait_for_eager_xla
    from keras_optlayers.layers import (
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
    from keras_optlayers.solvers.qp import qp_solve, qp_solve_with_info, qp_solve_with_status


def _register_keras_layers() -> None:
    """Imports the Keras layers when TensorFlow and its Keras backend are there.

    Loading a saved `.keras` model needs the layer classes registered, which
    importing them does; without TensorFlow (torch users) nothing is imported.
    """
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    try:
        available = importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # an import hook that refuses it
        available = False
    if available:
        importlib.import_module("keras_optlayers.layers")


_register_keras_layers()


def __getattr__(name: str) -> Any:
    if name in _LAZY_EXPORTS:
        value = getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_optlayers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_EXPORTS])


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
    "SolverStatisticsCallback",
    "Sparsemax",
    "__version__",
    "compare_layers",
    "solver_errors",
    "qp_solve",
    "qp_solve_with_info",
    "qp_solve_with_status",
    "eager_xla_after",
    "set_eager_xla_after",
    "wait_for_eager_xla",
]

"""Native batched QP solver in TensorFlow ops, differentiable, no host callback."""

import keras_optlayers._tensorflow_check  # noqa: F401  (TensorFlow and its Keras backend first)

from keras_optlayers.solvers.qp.solve import (
    qp_solve,
    qp_solve_with_info,
    qp_solve_with_status,
)
from keras_optlayers.solvers.qp.status import STATUS_NAMES

__all__ = ["STATUS_NAMES", "qp_solve", "qp_solve_with_info", "qp_solve_with_status"]

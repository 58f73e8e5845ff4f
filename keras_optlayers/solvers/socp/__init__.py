"""Native batched second-order-cone solver in TensorFlow ops, differentiable, no host callback."""

from keras_optlayers.solvers.socp.cones import ConeLayout
from keras_optlayers.solvers.socp.solve import (
    cone_layout,
    dense_constraint_matrix,
    socp_solve,
    socp_solve_with_info,
    solve_compiled_socp,
)
from keras_optlayers.solvers.socp.status import STATUS_NAMES

__all__ = ["STATUS_NAMES", "ConeLayout", "cone_layout", "dense_constraint_matrix", "socp_solve", "socp_solve_with_info", "solve_compiled_socp"]

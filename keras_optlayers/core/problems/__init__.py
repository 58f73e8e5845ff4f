"""CVXPY definitions of the library's layers (cvxpy and numpy only).

Each builder returns a `ProblemSpec`: the problem and, in order, the
parameters a layer is fed and the variables it returns, ready for
`CvxpyLayer(spec.problem, parameters=spec.parameters, variables=spec.variables)`.
"""

from keras_optlayers.core.problems.activations import relu_problem, sigmoid_problem, softmax_problem
from keras_optlayers.core.problems.ellipsoid import ellipsoid_projection_problem
from keras_optlayers.core.problems.optnet_qp import optnet_qp_problem
from keras_optlayers.core.problems.polytope import polytope_projection_problem
from keras_optlayers.core.problems.projections import (
    csoftmax_problem,
    csparsemax_problem,
    lml_problem,
    sparsemax_problem,
)
from keras_optlayers.core.problems.spec import ProblemSpec

__all__ = [
    "ProblemSpec",
    "csoftmax_problem",
    "csparsemax_problem",
    "ellipsoid_projection_problem",
    "lml_problem",
    "optnet_qp_problem",
    "polytope_projection_problem",
    "relu_problem",
    "sigmoid_problem",
    "softmax_problem",
    "sparsemax_problem",
]

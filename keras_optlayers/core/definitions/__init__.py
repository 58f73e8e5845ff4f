"""Every layer of the library, defined once, framework-free.

The Keras layers and the torch modules interpret these definitions; see
`base` for what a definition holds.
"""

from keras_optlayers.core.definitions.base import (
    REQUIRED,
    Argument,
    ArgumentAttributes,
    LearnableDefinition,
    ProjectionDefinition,
    Weight,
)
from keras_optlayers.core.definitions.ellipsoid_projection import ELLIPSOID_PROJECTION
from keras_optlayers.core.definitions.optnet_qp import OPTNET_QP
from keras_optlayers.core.definitions.polytope_projection import POLYTOPE_PROJECTION
from keras_optlayers.core.definitions.projections import CSOFTMAX, CSPARSEMAX, LML, SPARSEMAX

__all__ = [
    "CSOFTMAX",
    "CSPARSEMAX",
    "ELLIPSOID_PROJECTION",
    "LML",
    "OPTNET_QP",
    "POLYTOPE_PROJECTION",
    "REQUIRED",
    "SPARSEMAX",
    "Argument",
    "ArgumentAttributes",
    "LearnableDefinition",
    "ProjectionDefinition",
    "Weight",
]

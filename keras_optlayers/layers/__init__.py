"""Keras layers: thin glue over the ops and the compiled problems."""

import keras_optlayers._tensorflow_check  # noqa: F401  (TensorFlow and its Keras backend first)

from keras_optlayers.layers.convex_layer import ConvexLayer
from keras_optlayers.layers.csoftmax import CSoftmax
from keras_optlayers.layers.csparsemax import CSparsemax
from keras_optlayers.layers.cvxpy_layer import CvxpyLayer
from keras_optlayers.layers.ellipsoid_projection import EllipsoidProjection
from keras_optlayers.layers.lml import LML
from keras_optlayers.layers.optnet_qp import OptNetQP
from keras_optlayers.layers.polytope_projection import PolytopeProjection
from keras_optlayers.layers.sparsemax import Sparsemax

__all__ = [
    "CSoftmax",
    "CSparsemax",
    "ConvexLayer",
    "CvxpyLayer",
    "EllipsoidProjection",
    "LML",
    "OptNetQP",
    "PolytopeProjection",
    "Sparsemax",
]

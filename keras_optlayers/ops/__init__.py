"""Functional ops: fast, exactly differentiable projections in TensorFlow."""

from keras_optlayers.ops.csoftmax import csoftmax
from keras_optlayers.ops.csparsemax import csparsemax
from keras_optlayers.ops.lml import lml
from keras_optlayers.ops.sparsemax import sparsemax

__all__ = ["csoftmax", "csparsemax", "lml", "sparsemax"]

"""Functional ops: fast, exactly differentiable projections in TensorFlow.

A public facade: the implementations live in private modules
(`_sparsemax`, `_csparsemax`, `_csoftmax`, `_lml`), so a function here never
shadows the module it comes from.
"""

import keras_optlayers._tensorflow_check  # noqa: F401  (TensorFlow and its Keras backend first)

from keras_optlayers.ops._csoftmax import csoftmax
from keras_optlayers.ops._csparsemax import csparsemax
from keras_optlayers.ops._lml import lml
from keras_optlayers.ops._sparsemax import sparsemax

__all__ = ["csoftmax", "csparsemax", "lml", "sparsemax"]

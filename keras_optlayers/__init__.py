"""keras-optlayers: differentiable convex optimization layers for Keras."""

from keras_optlayers.errors import SolverError

__version__ = "0.1.0.dev0"

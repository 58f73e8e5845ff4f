"""The framework-free core: no TensorFlow, no torch.

`compiler` turns a CVXPY problem into affine maps around a solver;
`problems` holds the CVXPY definitions of the library's layers.
"""

from keras_optlayers.core.compiler import CompiledProblem, compile_problem

__all__ = ["CompiledProblem", "compile_problem"]

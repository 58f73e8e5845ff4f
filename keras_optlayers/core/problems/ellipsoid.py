"""CVXPY form of the Euclidean projection onto an ellipsoid."""

from __future__ import annotations

import cvxpy as cp

from keras_optlayers.core.problems.spec import ProblemSpec, check_size


def ellipsoid_projection_problem(dim: int) -> ProblemSpec:
    """argmin_y ½||x - y||²  s.t.  ½||A (y - z)||² <= 1.

    Parameters: (x (dim,), A (dim, dim), z (dim,)). Variables: (y (dim,),).
    The constraint is written on t = y - z, an extra variable, so that no
    parameter multiplies another (A (y - z) would make it non-DPP).
    """
    check_size(dim)
    x = cp.Parameter(dim, name="x")
    A = cp.Parameter((dim, dim), name="A")
    z = cp.Parameter(dim, name="z")
    y = cp.Variable(dim, name="y")
    t = cp.Variable(dim, name="t")
    constraints = [0.5 * cp.sum_squares(A @ t) <= 1, t == y - z]
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - y)), constraints)
    return ProblemSpec(problem, (x, A, z), (y,))

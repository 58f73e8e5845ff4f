"""CVXPY form of the Euclidean projection onto a polytope {y : Gy <= h}."""

from __future__ import annotations

import cvxpy as cp

from keras_optlayers.core.problems.spec import ProblemSpec, check_size

def check_num_constraints(num_constraints: int) -> None:
    """Rejects a constraint count that is not a positive integer."""
    if isinstance(num_constraints, bool) or not isinstance(num_constraints, int) or num_constraints < 1:
        raise ValueError(
            f"`num_constraints` must be a positive integer. Received: num_constraints={num_constraints!r}"
        )


def polytope_projection_problem(dim: int, num_constraints: int) -> ProblemSpec:
    """argmin_y ½||x - y||²  s.t.  G y <= h.

    Parameters: (x (dim,), G (num_constraints, dim), h (num_constraints,)).
    Variables: (y (dim,),). The problem is infeasible when the polytope is
    empty; `PolytopeProjection` ties h to an interior point to prevent that.
    """
    check_size(dim)
    check_num_constraints(num_constraints)
    x = cp.Parameter(dim, name="x")
    G = cp.Parameter((num_constraints, dim), name="G")
    h = cp.Parameter(num_constraints, name="h")
    y = cp.Variable(dim, name="y")
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - y)), [G @ y <= h])
    return ProblemSpec(problem, (x, G, h), (y,))

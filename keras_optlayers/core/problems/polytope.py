"""CVXPY form of the Euclidean projection onto a polytope {y : Gy <= h}."""

from __future__ import annotations

import cvxpy as cp

from keras_optlayers.core.checks import check_positive, is_finite_number
from keras_optlayers.core.problems.spec import ProblemSpec, check_size

# How the layers set h: tied to an interior point z0, or a weight of its own.
OFFSETS = ("interior_point", "free")


def check_num_constraints(num_constraints: int) -> None:
    """Rejects a constraint count that is not a positive integer."""
    if isinstance(num_constraints, bool) or not isinstance(num_constraints, int) or num_constraints < 1:
        raise ValueError(
            f"`num_constraints` must be a positive integer. Received: num_constraints={num_constraints!r}"
        )


def check_polytope_projection_arguments(
    num_constraints: int, offset: str, interior_point: float, slack: float, trainable_interior_point: bool
) -> None:
    """The constructor checks of the PolytopeProjection layers (Keras and torch)."""
    check_num_constraints(num_constraints)
    if offset not in OFFSETS:
        raise ValueError(f"`offset` must be one of {OFFSETS}. Received: offset={offset!r}")
    if not is_finite_number(interior_point):
        raise ValueError(f"`interior_point` must be a finite number. Received: interior_point={interior_point!r}")
    check_positive("slack", slack)
    if not isinstance(trainable_interior_point, bool):
        raise ValueError(
            "`trainable_interior_point` must be a boolean. "
            f"Received: trainable_interior_point={trainable_interior_point!r}"
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

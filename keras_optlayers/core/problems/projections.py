"""CVXPY forms of the projection layers (sparsemax, csparsemax, csoftmax, LML).

The fast layers in `keras_optlayers.layers` compute the same maps with
specialized algorithms; these forms let the generic `CvxpyLayer` check them.
"""

from __future__ import annotations

import cvxpy as cp

from keras_optlayers.core.checks import check_float_upper, check_k
from keras_optlayers.core.problems.spec import ProblemSpec, check_size


def _upper_bound(n: int, upper: float | None) -> tuple[cp.Expression, tuple[cp.Parameter, ...]]:
    """The upper bound as a constant, or as a parameter fed at call time."""
    if upper is None:
        parameter = cp.Parameter(n, name="upper")
        return parameter, (parameter,)
    check_float_upper(upper, n)
    return cp.Constant(float(upper)), ()


def sparsemax_problem(n: int) -> ProblemSpec:
    """argmin_y ||y - x||^2  s.t.  sum(y) = 1, y >= 0.  Parameters: (x,)."""
    check_size(n)
    x = cp.Parameter(n, name="x")
    y = cp.Variable(n, name="y")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [cp.sum(y) == 1, y >= 0])
    return ProblemSpec(problem, (x,), (y,))


def csparsemax_problem(n: int, upper: float | None = None) -> ProblemSpec:
    """argmin_y ||y - x||^2  s.t.  sum(y) = 1, 0 <= y <= upper.

    Parameters: (x, upper) when `upper` is None, else (x,) with the number as
    a constant bound on every coordinate.
    """
    check_size(n)
    x = cp.Parameter(n, name="x")
    y = cp.Variable(n, name="y")
    bound, bound_parameters = _upper_bound(n, upper)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [cp.sum(y) == 1, y >= 0, y <= bound])
    return ProblemSpec(problem, (x, *bound_parameters), (y,))


def csoftmax_problem(n: int, upper: float | None = None) -> ProblemSpec:
    """argmin_y -x^T y - H(y)  s.t.  sum(y) = 1, y <= upper; H the entropy.

    Parameters: (x, upper) when `upper` is None, else (x,).
    """
    check_size(n)
    x = cp.Parameter(n, name="x")
    y = cp.Variable(n, name="y")
    bound, bound_parameters = _upper_bound(n, upper)
    objective = cp.Minimize(-x @ y - cp.sum(cp.entr(y)))
    problem = cp.Problem(objective, [cp.sum(y) == 1, y <= bound])
    return ProblemSpec(problem, (x, *bound_parameters), (y,))


def lml_problem(n: int, k: float) -> ProblemSpec:
    """argmin_y -x^T y - H_b(y)  s.t.  sum(y) = k; H_b the binary entropy.

    Parameters: (x,). Needs 0 < k < n.
    """
    check_size(n)
    k = check_k(k, n)
    x = cp.Parameter(n, name="x")
    y = cp.Variable(n, name="y")
    objective = cp.Minimize(-x @ y - cp.sum(cp.entr(y)) - cp.sum(cp.entr(1.0 - y)))
    problem = cp.Problem(objective, [cp.sum(y) == k])
    return ProblemSpec(problem, (x,), (y,))

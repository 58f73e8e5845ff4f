"""Variational (CVXPY) forms of ReLU, sigmoid and softmax.

Keras has the fast versions; these are for teaching and for checking the
generic `CvxpyLayer` against a known answer.
"""

from __future__ import annotations

import cvxpy as cp

from keras_optlayers.core.problems.spec import ProblemSpec, check_size


def relu_problem(n: int) -> ProblemSpec:
    """argmin_y ||y - x||^2  s.t.  y >= 0: the ReLU.  Parameters: (x,)."""
    check_size(n)
    x = cp.Parameter(n, name="x")
    y = cp.Variable(n, name="y")
    return ProblemSpec(cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [y >= 0]), (x,), (y,))


def sigmoid_problem(n: int) -> ProblemSpec:
    """argmin_y -x^T y - H_b(y): the sigmoid.  Parameters: (x,)."""
    check_size(n)
    x = cp.Parameter(n, name="x")
    y = cp.Variable(n, name="y")
    objective = cp.Minimize(-x @ y - cp.sum(cp.entr(y)) - cp.sum(cp.entr(1.0 - y)))
    return ProblemSpec(cp.Problem(objective), (x,), (y,))


def softmax_problem(n: int) -> ProblemSpec:
    """argmin_y -x^T y - H(y)  s.t.  sum(y) = 1: the softmax.  Parameters: (x,)."""
    check_size(n)
    x = cp.Parameter(n, name="x")
    y = cp.Variable(n, name="y")
    objective = cp.Minimize(-x @ y - cp.sum(cp.entr(y)))
    return ProblemSpec(cp.Problem(objective, [cp.sum(y) == 1]), (x,), (y,))

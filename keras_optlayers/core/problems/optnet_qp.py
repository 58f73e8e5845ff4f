"""CVXPY form of the OptNet quadratic program (Amos & Kolter, 2017)."""

from __future__ import annotations

import cvxpy as cp

from keras_optlayers.core.checks import check_positive
from keras_optlayers.core.problems.spec import ProblemSpec, check_size


def check_count(name: str, value: int) -> None:
    """Rejects a constraint count that is not a nonnegative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a nonnegative integer. Received: {name}={value!r}")


def optnet_qp_problem(n: int, num_eq: int, num_ineq: int, eps: float = 1e-4) -> ProblemSpec:
    """argmin_x ½||Lᵀx||² + (eps/2)||x||² + qᵀx  s.t.  A x = b,  G x <= h.

    The quadratic term Q = L Lᵀ + eps·I is given through its factor L, which
    keeps the problem DPP and Q positive definite for any L.

    Parameters: (q (n,), L (n, n), A (num_eq, n), b (num_eq,),
    G (num_ineq, n), h (num_ineq,)), where A and b are left out when
    num_eq == 0 and G and h when num_ineq == 0. Variables: (x (n,),).
    """
    check_size(n)
    check_count("num_eq", num_eq)
    check_count("num_ineq", num_ineq)
    if num_eq >= n:
        raise ValueError(
            f"`num_eq` must be smaller than n, or the equalities leave at most one "
            f"point. Received: num_eq={num_eq}, n={n}"
        )
    eps = check_positive("eps", eps)
    q = cp.Parameter(n, name="q")
    L = cp.Parameter((n, n), name="L")
    x = cp.Variable(n, name="x")
    objective = 0.5 * cp.sum_squares(L.T @ x) + 0.5 * eps * cp.sum_squares(x) + q @ x
    parameters, constraints = [q, L], []
    if num_eq:
        A = cp.Parameter((num_eq, n), name="A")
        b = cp.Parameter(num_eq, name="b")
        parameters += [A, b]
        constraints.append(A @ x == b)
    if num_ineq:
        G = cp.Parameter((num_ineq, n), name="G")
        h = cp.Parameter(num_ineq, name="h")
        parameters += [G, h]
        constraints.append(G @ x <= h)
    return ProblemSpec(cp.Problem(cp.Minimize(objective), constraints), tuple(parameters), (x,))

"""Per-example status codes of the QP solver and how failures are reported.

  * solved: the iterations met `tol` and the returned point passed the
    after-the-fact check (`solution_check`).
  * infeasible (primal infeasible): the constraints have no common point
    (a Farkas certificate, or equalities b outside A's range).
  * unbounded (dual infeasible): the objective decreases without bound on
    the feasible set (a recession direction).
  * iteration limit: none of the others within `max_iter` iterations.
  * numerical error: an iterate stopped being finite.
  * inaccurate: the iterations stopped as solved, but the returned point
    failed the after-the-fact check (e.g. data spanning many orders of
    magnitude, or a loose `tol`).
  * non-convex (P not positive semidefinite): P has an eigenvalue below
    −(tolerance × its scale) (see `convexity`); nothing was solved.

Eagerly a failure raises `keras_optlayers.errors.SolverError`; inside a graph
an assert op fails with the same text, built from the status tensor with
string ops (no host callback).
"""

from __future__ import annotations

from keras_optlayers.solvers.status_report import StatusReport

SOLVER_NAME = "QP"

# Codes stored in the int32 status tensor. RUNNING only exists inside the
# iterations; every returned example carries one of the other codes.
RUNNING = -1
SOLVED = 0
PRIMAL_INFEASIBLE = 1
DUAL_INFEASIBLE = 2
ITERATION_LIMIT = 3
NUMERICAL_ERROR = 4
INACCURATE = 5
NON_CONVEX = 6

# What each code means, for people: the names appear in `SolverError`
# messages and as its `statuses` keys.
STATUS_NAMES: dict[int, str] = {
    SOLVED: "solved",
    PRIMAL_INFEASIBLE: "infeasible (primal infeasible)",
    DUAL_INFEASIBLE: "unbounded (dual infeasible)",
    ITERATION_LIMIT: "iteration limit",
    NUMERICAL_ERROR: "numerical error",
    INACCURATE: "inaccurate",
    NON_CONVEX: "non-convex (P not positive semidefinite)",
}


REPORT = StatusReport(SOLVER_NAME, STATUS_NAMES)
failures_by_status = REPORT.failures_by_status
raise_for_status = REPORT.raise_for_status
assert_solved = REPORT.assert_solved

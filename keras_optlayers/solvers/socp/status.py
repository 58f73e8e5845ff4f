"""Per-example status codes of the SOCP solver and how failures are reported.

The codes and names are the QP solver's (`solvers/qp/status.py`); "non-convex"
only for a quadratic objective whose P is not positive semidefinite.
`INACCURATE`: the loop stopped as solved but the returned solution failed
the after-the-fact check (`solution_check`). Eagerly a failure raises
`keras_optlayers.errors.SolverError`; inside a graph an assert op fails with
the same text, built with string ops (no host callback).
"""

from __future__ import annotations

from keras_optlayers.solvers.qp.status import (  # noqa: F401  (the shared codes, re-exported)
    DUAL_INFEASIBLE,
    INACCURATE,
    ITERATION_LIMIT,
    NON_CONVEX,
    NUMERICAL_ERROR,
    PRIMAL_INFEASIBLE,
    RUNNING,
    SOLVED,
    STATUS_NAMES,
)
from keras_optlayers.solvers.status_report import StatusReport

SOLVER_NAME = "SOCP"

REPORT = StatusReport(SOLVER_NAME, STATUS_NAMES)
failures_by_status = REPORT.failures_by_status
raise_for_status = REPORT.raise_for_status
assert_solved = REPORT.assert_solved

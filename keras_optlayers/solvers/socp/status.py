"""Per-example status codes of the SOCP solver and how failures are reported.

The codes are the QP solver's (`solvers/qp/status.py`: 0 solved, 1 primal
infeasible, 2 dual infeasible, 3 iteration limit, 4 numerical error) plus
`INACCURATE`: the loop stopped as solved but the returned solution failed the
after-the-fact check (`solution_check`). Eagerly a failure raises
`keras_optlayers.errors.SolverError`; inside a graph an assert op fails with
the same text, built with string ops (no host callback).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_optlayers.errors import SolverError
from keras_optlayers.solvers.qp.status import (  # noqa: F401  (re-exported codes)
    DUAL_INFEASIBLE,
    ITERATION_LIMIT,
    NUMERICAL_ERROR,
    PRIMAL_INFEASIBLE,
    RUNNING,
    SOLVED,
)
from keras_optlayers.solvers.qp.status import (
    STATUS_NAMES as QP_STATUS_NAMES,
)

SOLVER_NAME = "SOCP"
INACCURATE = 5

STATUS_NAMES: dict[int, str] = {
    SOLVED: "solved",
    PRIMAL_INFEASIBLE: "infeasible (primal infeasible)",
    DUAL_INFEASIBLE: "unbounded (dual infeasible)",
    ITERATION_LIMIT: QP_STATUS_NAMES[ITERATION_LIMIT],
    NUMERICAL_ERROR: QP_STATUS_NAMES[NUMERICAL_ERROR],
    INACCURATE: "inaccurate",
}


def failures_by_status(status) -> dict[str, list[int]]:
    """{status name: [batch indices]} for every status other than solved, in code order."""
    status = np.asarray(status).reshape(-1)
    return {
        name: np.flatnonzero(status == code).tolist()
        for code, name in STATUS_NAMES.items()
        if code != SOLVED and np.any(status == code)
    }


def raise_for_status(status) -> None:
    """Raises `SolverError` if any example's status is not solved (eager)."""
    failures = failures_by_status(status)
    if failures:
        raise SolverError(SOLVER_NAME, failures)


def _failure_message(status: tf.Tensor) -> tf.Tensor:
    """The `SolverError` message for `status`, as a scalar string tensor."""
    parts = []
    for code, name in STATUS_NAMES.items():
        if code == SOLVED:
            continue
        indices = tf.where(tf.equal(status, code))[:, 0]
        listed = tf.strings.reduce_join(tf.strings.as_string(indices), separator=", ")
        part = tf.strings.join([f"status '{name}' at batch indices [", listed, "]"])
        parts.append(tf.where(tf.size(indices) > 0, part, ""))
    present = tf.stack(parts)
    present = tf.boolean_mask(present, tf.strings.length(present) > 0)
    detail = tf.strings.reduce_join(present, separator="; ")
    return tf.strings.join([f"{SOLVER_NAME} could not solve the problem: ", detail])


def assert_solved(status: tf.Tensor) -> tf.Operation:
    """Graph assert failing with the `SolverError` text if any example failed (not under XLA)."""
    all_solved = tf.reduce_all(tf.equal(status, SOLVED))
    return tf.debugging.Assert(all_solved, [tf.cond(all_solved, lambda: tf.constant(""), lambda: _failure_message(status))])

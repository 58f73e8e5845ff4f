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

import numpy as np
import tensorflow as tf

from keras_optlayers.errors import SolverError

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


def failures_by_status(status) -> dict[str, list[int]]:
    """Groups failing batch indices by status name.

    Args:
        status: int array of shape (B,) of codes from `STATUS_NAMES`.

    Returns:
        {status name: [batch indices]} for every status other than solved,
        in code order; empty when every example was solved.
    """
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
    """Graph assert failing with the `SolverError` text if any example failed.

    Not usable under XLA: string ops do not compile and XLA drops asserts.
    """
    all_solved = tf.reduce_all(tf.equal(status, SOLVED))
    # The message is only formatted when the assert fails.
    return tf.debugging.Assert(all_solved, [tf.cond(all_solved, lambda: tf.constant(""), lambda: _failure_message(status))])

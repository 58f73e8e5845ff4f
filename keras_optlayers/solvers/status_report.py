"""How a native solver's int32 status codes become `SolverError`s, eagerly and in graphs.

The native solvers (QP, SOCP) share one vocabulary of codes and names
(`solvers/qp/status.py`); each reports failures under its own solver name.
Eagerly a failure raises `keras_optlayers.errors.SolverError`; inside a
graph an assert op fails with the same text, built with string ops (no host
callback). Under XLA neither runs: read the statuses instead.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from keras_optlayers.errors import SolverError
from keras_optlayers.xla_context import in_xla_context


class StatusReport:
    """Failures of one solver, from codes named by `names` (code 0 is solved)."""

    SOLVED = 0

    def __init__(self, solver: str, names: Mapping[int, str]):
        self.solver = solver
        self.names = dict(names)

    def failures_by_status(self, status) -> dict[str, list[int]]:
        """{status name: [batch indices]} for every status other than solved, in code order."""
        status = np.asarray(status).reshape(-1)
        return {
            name: np.flatnonzero(status == code).tolist()
            for code, name in self.names.items()
            if code != self.SOLVED and np.any(status == code)
        }

    def raise_for_status(self, status, layer: str | None = None) -> None:
        """Raises `SolverError` if any example's status is not solved (eager)."""
        failures = self.failures_by_status(status)
        if failures:
            raise SolverError(self.solver, failures, layer=layer)

    def failure_message(self, status: tf.Tensor, layer: str | None = None) -> tf.Tensor:
        """The `SolverError` message for `status` (and `layer`), as a scalar string tensor."""
        parts = []
        for code, name in self.names.items():
            if code == self.SOLVED:
                continue
            indices = tf.where(tf.equal(status, code))[:, 0]
            listed = tf.strings.reduce_join(tf.strings.as_string(indices), separator=", ")
            part = tf.strings.join([f"status '{name}' at batch indices [", listed, "]"])
            parts.append(tf.where(tf.size(indices) > 0, part, ""))
        present = tf.stack(parts)
        present = tf.boolean_mask(present, tf.strings.length(present) > 0)
        detail = tf.strings.reduce_join(present, separator="; ")
        if layer is not None:  # the same first line as SolverError(..., layer=layer)
            return tf.strings.join([f"SolverError in layer '{layer}': ", detail,
                                    f"\n{self.solver} could not solve the problem."])
        return tf.strings.join([f"{self.solver} could not solve the problem: ", detail])

    def assert_solved(self, status: tf.Tensor, layer: str | None = None) -> tf.Operation:
        """Graph assert failing with the `SolverError` text if any example failed (not under XLA)."""
        all_solved = tf.reduce_all(tf.equal(status, self.SOLVED))
        # The message is only formatted when the assert fails.
        return tf.debugging.Assert(
            all_solved, [tf.cond(all_solved, lambda: tf.constant(""), lambda: self.failure_message(status, layer))])

    def enforce(self, status: tf.Tensor, tensors: Sequence[tf.Tensor], function: str) -> list[tf.Tensor]:
        """`tensors`, once every example is known solved: raises eagerly, asserts in a graph.

        Under XLA no status can be asserted: `function` (the caller's name)
        warns once, at trace time, and the tensors come back unchecked.
        """
        if tf.executing_eagerly():
            self.raise_for_status(status.numpy())
            return list(tensors)
        if in_xla_context():
            warnings.warn(
                f"{function} cannot check solver statuses under XLA (jit_compile=True): failed examples return "
                "their last iterate. Pass check_status=False and read the returned statuses.",
                stacklevel=4,
            )
            return list(tensors)
        with tf.control_dependencies([self.assert_solved(status)]):
            return [tf.identity(t) for t in tensors]

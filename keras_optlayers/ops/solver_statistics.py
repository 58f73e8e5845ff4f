"""Counters of a layer's solves that a Keras callback can read between epochs."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


class SolverStatistics:
    """How many calls, examples and failed examples a layer's solver has seen.

    The counters are TF variables, updated inside graphs, under XLA and
    across replicas (summed on read, as Keras metrics are).
    `keras_optlayers.callbacks.SolverStatisticsCallback` reads and resets them.

    Limits: under a `tf.distribute` strategy nothing is counted; tf.function forbids creating variables in a function it may
    trace again, so a layer constructed inside a traced function (rather
    than eagerly, as Keras builds models) keeps no statistics: `result()`
    is then empty.
    """

    NAMES = ("calls", "examples", "failures")

    def __init__(self):
        self._counters: dict[str, tf.Variable] = {}
        if tf.inside_function():
            return
        self._counters = {
            name: tf.Variable(
                0, dtype=tf.int64, trainable=False, name=f"solver_{name}",
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM)
            for name in self.NAMES
        }

    def record(self, batch_size, failed: tf.Tensor) -> None:
        """Counts one call on `batch_size` examples, `failed` (B,) bool."""
        if not self._counters or tf.distribute.has_strategy():
            return  # counters are per process: not kept under tf.distribute strategies
        self._counters["calls"].assign_add(1)
        self._counters["examples"].assign_add(tf.cast(batch_size, tf.int64))
        self._counters["failures"].assign_add(tf.reduce_sum(tf.cast(failed, tf.int64)))

    def result(self) -> dict[str, int]:
        return {name: int(counter.numpy()) for name, counter in self._counters.items()}

    def reset(self) -> None:
        for counter in self._counters.values():
            counter.assign(0)


class ReportsSolverStatistics:
    """Mixin of the layers holding a `batched_problem`: their solver statistics."""

    batched_problem: Any

    def solver_statistics(self) -> dict[str, int]:
        """Counts of solver calls, examples and failed examples since the last reset."""
        if self.batched_problem is None:
            raise ValueError(f"{type(self).__name__} must be built before it has solver statistics.")
        return self.batched_problem.statistics.result()

    def reset_solver_statistics(self) -> None:
        if self.batched_problem is not None:
            self.batched_problem.statistics.reset()

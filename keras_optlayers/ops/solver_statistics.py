"""Counters of a layer's solves that a Keras callback can read between epochs."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from keras_optlayers.compiled_function import CompiledFunction


class SolverStatistics:
    """What a layer's solver has done since the last reset, for logs and callbacks.

    `result()` gives:

    * "calls", "examples", "failures": solver calls, examples solved, and
      examples that failed (under on_failure="warn" or "nan");
    * "mean_iterations": the solver's iterations per example (interior-point
      iterations on the native paths, the host solver's own count there);
    * "solve_seconds": wall-clock time spent in the solver, forward passes
      only (0 under XLA, which has no clock op);
    * "worst_residual": the largest relative optimality measure of the
      after-the-fact check over the solved examples (primal and dual
      residuals, gap, cone violation; every solved example is below 1e-6);
      how close the returned points came to failing the check.

    The counters are TF variables, updated inside graphs and under XLA.
    `keras_optlayers.callbacks.SolverStatisticsCallback` reads and resets them.

    Limits: under a `tf.distribute` strategy nothing is counted;
    tf.function forbids creating variables in a function it may trace again,
    so a layer constructed inside a traced function (rather than eagerly, as
    Keras builds models) keeps no statistics: `result()` is then empty.
    """

    _COUNTERS = {"calls": tf.int64, "examples": tf.int64, "failures": tf.int64, "iterations": tf.int64,
                 "solve_seconds": tf.float64, "worst_residual": tf.float64}

    def __init__(self):
        self._counters: dict[str, tf.Variable] = {}
        self._compiled_record: Any = None
        if tf.inside_function():
            return
        self._counters = {
            name: tf.Variable(
                tf.zeros([], dtype), trainable=False, name=f"solver_{name}",
                # Per-replica variables, so that a model built under a strategy's scope can hold them.
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA if name == "worst_residual"
                else tf.VariableAggregation.SUM)
            for name, dtype in self._COUNTERS.items()
        }

    def record(self, failed: tf.Tensor, iterations: tf.Tensor, residual: tf.Tensor, seconds: tf.Tensor) -> None:
        """Counts one call: `failed` (B,) bool, `iterations` and `residual` (B,)
        (NaN where unknown), `seconds` the solve's wall time."""
        if not self._counters or tf.distribute.has_strategy():
            return  # counters are per process: not kept under tf.distribute strategies
        if tf.executing_eagerly():
            # One compiled call instead of a dozen eager ops (1.4 ms of a 10 ms batch-1 call).
            if self._compiled_record is None:
                self._compiled_record = CompiledFunction(self._update)
            self._compiled_record(failed, iterations, residual, seconds)
        else:
            self._update(failed, iterations, residual, seconds)

    def _update(self, failed, iterations, residual, seconds) -> None:
        known = lambda t: tf.where(tf.math.is_nan(t), tf.zeros_like(t), t)  # noqa: E731
        counters = self._counters
        counters["calls"].assign_add(1)
        counters["examples"].assign_add(tf.cast(tf.size(failed), tf.int64))
        counters["failures"].assign_add(tf.reduce_sum(tf.cast(failed, tf.int64)))
        counters["iterations"].assign_add(tf.cast(tf.reduce_sum(known(tf.cast(iterations, tf.float64))), tf.int64))
        counters["solve_seconds"].assign_add(tf.cast(seconds, tf.float64))
        solved_residual = tf.where(failed, tf.zeros_like(residual), known(tf.cast(residual, tf.float64)))
        counters["worst_residual"].assign(
            tf.maximum(counters["worst_residual"], tf.reduce_max(tf.concat([[0.0], solved_residual], 0))))

    def result(self) -> dict[str, float]:
        if not self._counters:
            return {}
        values = {name: counter.numpy() for name, counter in self._counters.items()}
        examples = int(values["examples"])
        return {
            "calls": int(values["calls"]),
            "examples": examples,
            "failures": int(values["failures"]),
            "mean_iterations": float(values["iterations"]) / examples if examples else 0.0,
            "solve_seconds": float(values["solve_seconds"]),
            "worst_residual": float(values["worst_residual"]),
        }

    def reset(self) -> None:
        for counter in self._counters.values():
            counter.assign(tf.zeros_like(counter))


class ReportsSolverStatistics:
    """Mixin of the layers holding a `batched_problem`: their solver statistics."""

    batched_problem: Any

    def solver_statistics(self) -> dict[str, float]:
        """The solver's calls, examples, failures, mean iterations, solve time and
        worst residual since the last reset (see `SolverStatistics`)."""
        if self.batched_problem is None:
            raise ValueError(f"{type(self).__name__} must be built before it has solver statistics.")
        return self.batched_problem.statistics.result()

    def reset_solver_statistics(self) -> None:
        if self.batched_problem is not None:
            self.batched_problem.statistics.reset()

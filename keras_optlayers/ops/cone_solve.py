"""The cone solve as one differentiable TensorFlow op that runs on the host.

Forward: `ConeSolver.solve_with_status` on the batch. Backward:
`ConeSolver.adjoint` at the solution of the examples that were solved
(failed examples get zero gradients). Inside a graph both run through
`tf.numpy_function`; eagerly they are called directly, so a `SolverError`
reaches the caller as itself. The solution tensors are the only thing the
backward pass needs, so nothing is held in Python between the two and a
forward pass without a gradient tape does no derivative work.

Limits: a host call cannot be compiled by XLA or saved into a SavedModel
graph; the native solvers avoid both.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from keras_optlayers.core import failure_policy
from keras_optlayers.solvers.cone_solution_check import MEASURE_KEYS
from keras_optlayers.solvers.cone_solver import ConeSolver
from keras_optlayers.solvers.cone_status import SOLVED


def _host_call(function, inputs: list[tf.Tensor], outputs: list[tuple[tf.DType, tf.TensorShape]]) -> list[tf.Tensor]:
    """Runs a numpy function on tensors, eagerly or inside a graph."""
    if tf.executing_eagerly():
        results = function(*[t.numpy() for t in inputs])
        return [tf.constant(r, dtype) for r, (dtype, _) in zip(results, outputs)]
    results = tf.numpy_function(function, inputs, [dtype for dtype, _ in outputs], stateful=False)
    for result, (_, shape) in zip(results, outputs):
        result.set_shape(shape)
    return list(results)


def cone_solve(
    solver: ConeSolver,
    A_values: tf.Tensor,
    b: tf.Tensor,
    c: tf.Tensor,
    settings: Mapping[str, Any],
    derivative_mode: str,
    raise_on_failure: bool,
    layer_name: str | None = None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
    """Solves a batch of cone programs; differentiable in A, b and c.

    Args:
        solver: the ConeSolver of the compiled program.
        A_values: (B, nnz) float64 values of A in the program's pattern.
        b: (B, m) float64.
        c: (B, n) float64.
        settings: keyword arguments for the solver (tolerances, limits).
        derivative_mode: the adjoint's linear solve, see ConeSolver.adjoint.
        raise_on_failure: raise `SolverError` if an example fails (inside a
            graph: a TF error with its text); otherwise failed examples come
            back as zeros with their status.
        layer_name: the layer named in the `SolverError`.

    Returns:
        x (B, n), y (B, m), s (B, m), the statuses (B,) as strings (`SOLVED`
        for a solution) and info: "iterations" (B,) float64, the solver's
        iterations (both attempts, NaN where it raised), and "residual" (B,)
        float64, the largest relative measure of the after-the-fact check
        (`cone_solution_check`; NaN where the solver returned no point).
    """
    settings = dict(settings)
    batch = A_values.shape[0]
    extras: list[tf.Tensor] = []  # status, iterations, residual: outputs the gradient ignores

    def solve(A_np, b_np, c_np):
        x, y, s, status, info = solver.solve_with_status(A_np, b_np, c_np, settings)
        if raise_on_failure:
            failure_policy.handle_failures("raise", solver.solver, failure_policy.failures_by_status(status, SOLVED),
                                           layer_name)
        residual = np.max([info[key] for key in MEASURE_KEYS], axis=0)
        return x, y, s, np.array(status, dtype=object).astype(bytes), info["iterations"], residual

    def adjoint(*arrays):
        *data_and_grads, solved = arrays
        return solver.adjoint(*data_and_grads, mode=derivative_mode, valid=solved)

    @tf.custom_gradient
    def solve_with_gradient(A_values, b, c):
        x, y, s, status, iterations, residual = _host_call(solve, [A_values, b, c], [
            (tf.float64, tf.TensorShape([batch, solver.n])),
            (tf.float64, tf.TensorShape([batch, solver.m])),
            (tf.float64, tf.TensorShape([batch, solver.m])),
            (tf.string, tf.TensorShape([batch])),
            (tf.float64, tf.TensorShape([batch])),
            (tf.float64, tf.TensorShape([batch])),
        ])
        extras.extend([status, iterations, residual])
        solved = tf.equal(status, SOLVED)

        def gradient(dx, dy, ds):
            grads = [tf.zeros_like(t) if g is None else g for t, g in ((x, dx), (y, dy), (s, ds))]
            return _host_call(
                adjoint, [A_values, b, c, x, y, s, *grads, solved],
                [(tf.float64, A_values.shape), (tf.float64, b.shape), (tf.float64, c.shape)])

        return (x, y, s), gradient

    x, y, s = solve_with_gradient(A_values, b, c)
    status, iterations, residual = extras
    return x, y, s, status, {"iterations": iterations, "residual": residual}

"""The cone solve as one differentiable TensorFlow op that runs on the host.

Forward: `ConeSolver.solve` on the batch. Backward: `ConeSolver.adjoint` at
the solution. Inside a graph both run through `tf.numpy_function`; eagerly
they are called directly, so a `SolverError` reaches the caller as itself.
The solution tensors are the only thing the backward pass needs, so nothing
is held in Python between the two and a forward pass without a gradient
tape does no derivative work.

Limits: a host call cannot be compiled by XLA or saved into a SavedModel
graph; for quadratic programs the native QP solver avoids both.
"""

from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf

from keras_optlayers.solvers.cone_solver import ConeSolver


def _host_call(function, inputs: list[tf.Tensor], shapes: list[tf.TensorShape]) -> list[tf.Tensor]:
    """Runs a numpy function on float64 tensors, eagerly or inside a graph."""
    if tf.executing_eagerly():
        outputs = function(*[t.numpy() for t in inputs])
        return [tf.constant(o, tf.float64) for o in outputs]
    outputs = tf.numpy_function(function, inputs, [tf.float64] * len(shapes), stateful=False)
    for output, shape in zip(outputs, shapes):
        output.set_shape(shape)
    return list(outputs)


def cone_solve(
    solver: ConeSolver,
    A_values: tf.Tensor,
    b: tf.Tensor,
    c: tf.Tensor,
    settings: Mapping[str, Any] | None = None,
    derivative_mode: str = "auto",
):
    """Solves a batch of cone programs; differentiable in A, b and c.

    Args:
        solver: the ConeSolver of the compiled program.
        A_values: (B, nnz) float64 values of A in the program's pattern.
        b: (B, m) float64.
        c: (B, n) float64.
        settings: keyword arguments for the solver (tolerances, limits).
        derivative_mode: the adjoint's linear solve, see ConeSolver.adjoint.

    Returns:
        x (B, n), y (B, m), s (B, m): primal, dual and slack solutions.
    """
    settings = dict(settings or {})
    batch = A_values.shape[0]
    shapes = [tf.TensorShape([batch, solver.n]), tf.TensorShape([batch, solver.m]),
              tf.TensorShape([batch, solver.m])]

    def solve(A_np, b_np, c_np):
        return solver.solve(A_np, b_np, c_np, settings)

    @tf.custom_gradient
    def solve_with_gradient(A_values, b, c):
        x, y, s = _host_call(solve, [A_values, b, c], shapes)

        def gradient(dx, dy, ds):
            def adjoint(*arrays):
                return solver.adjoint(*arrays, mode=derivative_mode)

            grads = [tf.zeros_like(t) if g is None else g for t, g in ((x, dx), (y, dy), (s, ds))]
            dA, db, dc = _host_call(
                adjoint, [A_values, b, c, x, y, s, *grads],
                [A_values.shape, b.shape, c.shape])
            return dA, db, dc

        return (x, y, s), gradient

    return solve_with_gradient(A_values, b, c)


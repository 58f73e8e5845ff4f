"""The native SOCP solver compiled by XLA (small: XLA is slow on this CPU), against closed forms."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from test_socp_solver import ball_projection, ball_projection_data, ball_projection_vjp

from keras_optlayers.solvers.socp import socp_solve


def test_xla_matches_graph_mode_forward_and_gradient():
    rng = np.random.default_rng(7)
    points = 0.9 * rng.standard_normal((3, 3))
    A, b, c, cones = ball_projection_data(points)

    def solve_and_gradient(b):
        with tf.GradientTape() as tape:
            tape.watch(b)
            x, _, _, status = socp_solve(A, b, c, cones, check_status=False)
            loss = tf.reduce_sum(x[:, 1:] * np.arange(3.0))
        return x, status, tape.gradient(loss, b)

    x, status, gradient = tf.function(solve_and_gradient, jit_compile=True)(tf.constant(b))
    np.testing.assert_array_equal(status.numpy(), 0)
    np.testing.assert_allclose(x.numpy()[:, 1:], ball_projection(points), atol=1e-10)
    np.testing.assert_allclose(-gradient.numpy()[:, 1:4], ball_projection_vjp(points, np.tile(np.arange(3.0), (3, 1))), atol=1e-8)

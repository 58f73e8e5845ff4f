"""The native SOCP solver compiled by XLA (small: XLA is slow on this CPU), against closed forms."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.optimize
import tensorflow as tf
from test_socp_solver import (
    ball_projection,
    ball_projection_data,
    ball_projection_vjp,
    ellipsoid_projection_exact,
    ellipsoid_projection_with_P,
)

from keras_optlayers import CvxpyLayer
from keras_optlayers.solvers.socp import optimality_conditions, socp_solve


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


def test_xla_solves_blocks_not_grouped_by_size():
    """The ball projection with a redundant |y₀| ≤ 5 block between the two: SOC sizes (4, 2, 4), reordered by the solver."""
    rng = np.random.default_rng(8)
    points = 0.9 * rng.standard_normal((3, 3))
    A = np.zeros((10, 4))
    b = np.zeros((3, 10))
    A[0, 0] = -1.0  # (t; y − z)
    A[1:4, 1:] = -np.eye(3)
    b[:, 1:4] = -points
    b[:, 4] = 5.0  # (5; y₀)
    A[5, 1] = -1.0
    b[:, 6] = 1.0  # (1; y)
    A[7:, 1:] = -np.eye(3)
    c = np.array([1.0, 0.0, 0.0, 0.0])
    weights = np.arange(3.0)

    def solve_and_gradient(b):
        with tf.GradientTape() as tape:
            tape.watch(b)
            x, _, _, status = socp_solve(A, b, c, {"soc": (4, 2, 4)}, check_status=False)
            loss = tf.reduce_sum(x[:, 1:] * weights)
        return x, status, tape.gradient(loss, b)

    for function in (tf.function(solve_and_gradient), tf.function(solve_and_gradient, jit_compile=True)):
        x, status, gradient = function(tf.constant(b))
        np.testing.assert_array_equal(status.numpy(), 0)
        np.testing.assert_allclose(x.numpy()[:, 1:], ball_projection(points), atol=1e-10)
        np.testing.assert_allclose(-gradient.numpy()[:, 1:4], ball_projection_vjp(points, np.tile(weights, (3, 1))), atol=1e-8)


def test_xla_with_a_quadratic_objective_matches_graph_mode_and_the_exact_projection():
    rng = np.random.default_rng(9)
    x, A, z = 2.0 * rng.standard_normal((3, 3)), np.eye(3) + 0.3 * rng.standard_normal((3, 3, 3)), 0.1 * rng.standard_normal((3, 3))
    A_rows, b, c, P, cones = ellipsoid_projection_with_P(x, A, z)

    def solve_and_gradient(A_rows, P):
        with tf.GradientTape() as tape:
            tape.watch([A_rows, P])
            y, _, _, status = socp_solve(A_rows, b, c, cones, P=P, check_status=False)
            loss = tf.reduce_sum(y * np.arange(3.0))
        return y, status, tape.gradient(loss, [A_rows, P])

    y, status, gradients = tf.function(solve_and_gradient, jit_compile=True)(tf.constant(A_rows), tf.constant(P))
    _, _, graph_gradients = tf.function(solve_and_gradient)(tf.constant(A_rows), tf.constant(P))
    np.testing.assert_array_equal(status.numpy(), 0)
    np.testing.assert_allclose(y.numpy(), ellipsoid_projection_exact(x, A, z), atol=1e-10)
    for gradient, graph_gradient in zip(gradients, graph_gradients):
        np.testing.assert_allclose(gradient.numpy(), graph_gradient.numpy(), atol=1e-9)


def trust_region_solution(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """argmin ½uᵀHu + gᵀu s.t. ||u|| <= 1 for H definite: u(μ) = −(H + μI)⁻¹g with ||u(μ)|| = 1 if μ > 0."""
    step = lambda mu: -np.linalg.solve(H + mu * np.eye(len(g)), g)  # noqa: E731
    if np.linalg.norm(step(0.0)) <= 1:
        return step(0.0)
    return step(scipy.optimize.brentq(lambda mu: np.linalg.norm(step(mu)) - 1, 0.0, 1e8, xtol=1e-15, rtol=1e-15))


def test_layer_with_equality_constraints_under_xla_is_exact():
    # The equality elimination must not trust XLA's SVD (accurate to about
    # 1e-7 here): a control-Lyapunov policy (the stochastic_control recipe's
    # cone program, with equalities once canonicalized), against its closed
    # form. (Clarabel at tight settings is 1e-6 off where the ball binds.)
    n, m = 2, 3
    x, M, K = cp.Parameter(n), cp.Parameter((m, m)), cp.Parameter((n, m))
    u, y = cp.Variable(m), cp.Variable(n)
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(M @ u) + x @ y),
                         [y == K @ u, cp.norm(u, 2) <= 1.0])
    layer = CvxpyLayer(problem, [x, M, K], [u], solver="SOCP", on_failure="nan")
    assert layer.batched_problem.program.P is not None  # the objective kept quadratic
    rng = np.random.default_rng(3)
    values = [3.0 * rng.standard_normal((4, n)), rng.standard_normal((4, m, m)) + 2 * np.eye(m),
              rng.standard_normal((4, n, m))]

    (solutions,) = tf.function(lambda *t: layer(*t), jit_compile=True)(*[tf.constant(v) for v in values])

    exact = [trust_region_solution(M_value.T @ M_value, K_value.T @ x_value) for x_value, M_value, K_value in
             zip(*values, strict=True)]
    assert np.sum(np.isclose(np.linalg.norm(exact, axis=1), 1.0)) >= 2  # the ball binds for some
    np.testing.assert_allclose(solutions.numpy(), exact, atol=1e-10)


def test_xla_examples_whose_polish_is_rejected_iterate_on(monkeypatch):
    """Under XLA the examples that go on past the early stop are computed with the whole batch (static shapes)."""
    monkeypatch.setattr(optimality_conditions, "SOLVED_VIOLATION", 0.0)  # every polish rejected: all go on
    rng = np.random.default_rng(9)
    points = 2.0 * rng.standard_normal((3, 3))
    A, b, c, cones = ball_projection_data(points)
    x, _, _, status = tf.function(lambda b: socp_solve(A, b, c, cones, check_status=False), jit_compile=True)(tf.constant(b))
    np.testing.assert_array_equal(status.numpy(), 0)
    np.testing.assert_allclose(x.numpy()[:, 1:], ball_projection(points), atol=1e-10)

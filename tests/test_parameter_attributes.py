"""Parameters with attributes (symmetric, PSD, diag, nonneg), as CVXPY's DPP canonicalization accepts them."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import tensorflow as tf
from helpers import REFERENCE_CLARABEL

import keras_optlayers as kol

torch = pytest.importorskip("torch")
import keras_optlayers.torch as kot  # noqa: E402

TIGHT = {"eps": 1e-10}


def symmetric_sdp():
    """argmin trace(C X) + ||X||² s.t. X PSD, trace(X) = 1, with C symmetric."""
    C = cp.Parameter((3, 3), symmetric=True, name="C")
    X = cp.Variable((3, 3), PSD=True, name="X")
    problem = cp.Problem(cp.Minimize(cp.trace(C @ X) + cp.sum_squares(X)), [cp.trace(X) == 1])
    value = np.array([[1.0, 0.3, -0.2], [0.3, -0.5, 0.4], [-0.2, 0.4, 0.2]])
    return problem, C, X, value


def diagonal_qp():
    D = cp.Parameter((3, 3), diag=True, name="D")
    q = cp.Parameter(3, nonneg=True, name="q")
    x = cp.Variable(3, name="x")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(D @ x) + q @ x + cp.sum_squares(x)), [cp.sum(x) == 1])
    return problem, (D, q), x, (np.diag([1.0, 2.0, 3.0]), np.array([0.5, 0.1, 0.0]))


def reference(problem, parameters, values, variable):
    for parameter, value in zip(parameters, values):
        parameter.value = value
    problem.solve(**REFERENCE_CLARABEL)
    return variable.value


@pytest.mark.parametrize("front_end", ["keras", "torch"])
def test_symmetric_parameter(front_end):
    problem, C, X, value = symmetric_sdp()
    expected = reference(problem, [C], [value], X)
    if front_end == "keras":
        layer = kol.CvxpyLayer(problem, [C], [X], solver="Clarabel", solver_args=TIGHT)
        result = layer(tf.constant(value))[0].numpy()
    else:
        layer = kot.CvxpyLayer(problem, [C], [X], solver="Clarabel", solver_args=TIGHT)
        result = layer(torch.tensor(value))[0].numpy()
    np.testing.assert_allclose(result, expected, atol=1e-6)


def test_symmetric_parameter_gradient_matches_central_differences():
    """A symmetric perturbation's directional derivative is what the gradient must reproduce."""
    problem, C, X, value = symmetric_sdp()
    layer = kol.CvxpyLayer(problem, [C], [X], solver="Clarabel", solver_args=TIGHT)
    weights = np.random.default_rng(0).normal(size=(3, 3))
    c = tf.constant(value)
    with tf.GradientTape() as tape:
        tape.watch(c)
        loss = tf.reduce_sum(layer(c)[0] * weights)
    gradient = tape.gradient(loss, c).numpy()
    direction = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    step = 1e-5
    f = lambda v: float(np.sum(layer(tf.constant(v))[0].numpy() * weights))  # noqa: E731
    numeric = (f(value + step * direction) - f(value - step * direction)) / (2 * step)
    np.testing.assert_allclose(np.sum(gradient * direction), numeric, atol=1e-4)


@pytest.mark.parametrize("solver", [None, "Clarabel"])
def test_diagonal_and_nonnegative_parameters(solver):
    problem, parameters, x, values = diagonal_qp()
    expected = reference(problem, parameters, values, x)
    layer = kol.CvxpyLayer(problem, list(parameters), [x], solver=solver, solver_args=TIGHT)
    result, = layer(*[tf.constant(v) for v in values])
    np.testing.assert_allclose(result, expected, atol=1e-5)

"""OptNetQP: the QP it solves, feasibility by construction, and its arguments."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import cvxpy_solve_batch

from keras_optlayers.core.problems.optnet_qp import optnet_qp_problem
from keras_optlayers.layers.optnet_qp import OptNetQP

TOLERANCE = 1e-5  # float32 outputs of an accurate solve


def _built(layer: OptNetQP, n: int) -> OptNetQP:
    keras.utils.set_random_seed(0)
    layer.build((None, n))
    rng = np.random.default_rng(3)
    layer.L.assign(np.eye(n) + 0.3 * rng.normal(size=(n, n)))
    layer.z0.assign(rng.normal(size=n))
    return layer


def _linear_terms(batch: int, n: int) -> np.ndarray:
    return (np.random.default_rng(1).normal(size=(batch, n)) * 3).astype("float32")


def test_matches_cvxpy(accurate_solver):
    layer = _built(OptNetQP(num_eq=2, num_ineq=3, eps=1e-3, slack=0.5, **accurate_solver), 4)
    q = _linear_terms(5, 4)
    L, A, G, z0 = (w.numpy().astype(np.float64) for w in (layer.L, layer.A, layer.G, layer.z0))
    spec = optnet_qp_problem(4, 2, 3, eps=1e-3)
    values = [q, [L] * 5, [A] * 5, [A @ z0] * 5, [G] * 5, [G @ z0 + 0.5] * 5]
    expected, = cvxpy_solve_batch(spec.problem, spec.parameters, values, spec.variables)
    np.testing.assert_allclose(layer(q), expected, atol=TOLERANCE)


def test_solutions_are_feasible(accurate_solver):
    layer = _built(OptNetQP(num_eq=1, num_ineq=4, **accurate_solver), 3)
    x = np.asarray(layer(_linear_terms(16, 3)))
    A, G, z0 = layer.A.numpy(), layer.G.numpy(), layer.z0.numpy()
    np.testing.assert_allclose(x @ A.T, np.broadcast_to(A @ z0, (16, 1)), atol=TOLERANCE)
    assert np.all(x @ G.T <= G @ z0 + layer.slack + TOLERANCE)


def test_unconstrained_qp_is_a_linear_map(accurate_solver):
    layer = OptNetQP(num_eq=0, num_ineq=0, eps=0.5, **accurate_solver)  # L = I: Q = 1.5 I
    q = _linear_terms(4, 3)
    np.testing.assert_allclose(layer(q), -q / 1.5, atol=TOLERANCE)
    assert [w.name for w in layer.trainable_weights] == ["L", "z0"]


def test_weights_and_output_shape():
    layer = OptNetQP(num_eq=1, num_ineq=2)
    assert layer.compute_output_shape((None, 5)) == (None, 5)
    layer.build((None, 5))
    assert {w.name: tuple(w.shape) for w in layer.trainable_weights} == {
        "L": (5, 5), "A": (1, 5), "G": (2, 5), "z0": (5,)}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_eq": -1, "num_ineq": 2}, "Received: num_eq=-1"),
        ({"num_eq": 1, "num_ineq": 1.5}, "Received: num_ineq=1.5"),
        ({"num_eq": 1, "num_ineq": 2, "eps": 0}, "Received: eps=0"),
        ({"num_eq": 1, "num_ineq": 2, "slack": -1.0}, "Received: slack=-1.0"),
        ({"num_eq": 1, "num_ineq": 2, "solver_args": {"tol": None}}, "Received: solver_args="),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OptNetQP(**kwargs)


def test_needs_more_variables_than_equalities():
    with pytest.raises(ValueError, match="Received: input_shape=.*num_eq=3"):
        OptNetQP(num_eq=3, num_ineq=1).build((None, 3))

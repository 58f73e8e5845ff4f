"""EllipsoidProjection: the projection it computes and its solver handling."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import cvxpy_solve_batch

from keras_optlayers.core.problems.ellipsoid import ellipsoid_projection_problem
from keras_optlayers.layers.ellipsoid_projection import EllipsoidProjection

TOLERANCE = 1e-5  # float32 outputs of an accurate solve


def _points(batch: int, dim: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(batch, dim)) * 3).astype("float32")


def _random_ellipsoid(dim: int, solver_kwargs: dict) -> EllipsoidProjection:
    rng = np.random.default_rng(5)
    layer = EllipsoidProjection(**solver_kwargs)
    layer.build((None, dim))
    layer.A.assign(np.eye(dim) + 0.4 * rng.normal(size=(dim, dim)))
    layer.z.assign(rng.normal(size=dim))
    return layer


def _constraint(layer: EllipsoidProjection, y: np.ndarray) -> np.ndarray:
    """½||A (y - z)||² per row: at most 1 inside."""
    A, z = layer.A.numpy(), layer.z.numpy()
    return 0.5 * np.sum(((y - z) @ A.T) ** 2, axis=-1)


def test_matches_cvxpy(accurate_solver):
    layer = _random_ellipsoid(3, accurate_solver)
    x = _points(6, 3)
    spec = ellipsoid_projection_problem(3)
    values = [x, [layer.A.numpy()] * 6, [layer.z.numpy()] * 6]
    expected, = cvxpy_solve_batch(spec.problem, spec.parameters, values, spec.variables)
    np.testing.assert_allclose(layer(x), expected, atol=TOLERANCE)


def test_default_is_the_ball_of_radius_sqrt2(accurate_solver):
    x = _points(8, 4)
    y = EllipsoidProjection(**accurate_solver)(x)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(y, x * np.minimum(1.0, np.sqrt(2.0) / norms), atol=TOLERANCE)


def test_outputs_are_feasible_and_idempotent(accurate_solver):
    layer = _random_ellipsoid(3, accurate_solver)
    x = _points(16, 3)
    y = np.asarray(layer(x))
    outside = _constraint(layer, x) > 1
    assert outside.any()
    np.testing.assert_allclose(_constraint(layer, y[outside]), 1.0, atol=TOLERANCE)  # onto the boundary
    np.testing.assert_allclose(y[~outside], x[~outside], atol=TOLERANCE)
    np.testing.assert_allclose(layer(y), y, atol=TOLERANCE)


def test_default_is_the_native_socp_solver_and_host_solvers_stay_out_of_xla():
    layer = EllipsoidProjection()
    layer.build((None, 2))
    assert layer.batched_problem.solver.name == "SOCP"
    assert layer.supports_jit
    host = EllipsoidProjection(solver="Clarabel")
    host.build((None, 2))
    assert not host.supports_jit


def test_qp_solver_is_refused_when_built():
    layer = EllipsoidProjection(solver="QP")
    with pytest.raises(ValueError, match="quadratic program"):
        layer.build((None, 2))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Received: solver='GUROBI'"):
        EllipsoidProjection(solver="GUROBI")
    with pytest.raises(ValueError, match="Received: input_shape"):
        EllipsoidProjection().build((None, None))


def test_weights_and_output_shape():
    keras.utils.set_random_seed(0)
    layer = EllipsoidProjection()
    assert layer.compute_output_shape((None, 3)) == (None, 3)
    layer.build((None, 3))
    assert [w.name for w in layer.trainable_weights] == ["A", "z"]

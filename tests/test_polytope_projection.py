"""PolytopeProjection: the projection it computes, its options, and learning a polytope."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import cvxpy_solve_batch

from keras_optlayers.core.problems.polytope import polytope_projection_problem
from keras_optlayers.layers.polytope_projection import PolytopeProjection

TOLERANCE = 1e-5  # float32 outputs of an accurate solve


def _built(layer: PolytopeProjection, dim: int, seed: int = 0) -> PolytopeProjection:
    keras.utils.set_random_seed(seed)
    layer.build((None, dim))
    return layer


def _points(batch: int, dim: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(batch, dim)) * 3).astype("float32")


@pytest.mark.parametrize("offset", ["interior_point", "free"])
def test_matches_cvxpy(offset, accurate_solver):
    layer = _built(PolytopeProjection(5, offset=offset, interior_point=0.3, slack=0.5, **accurate_solver), 3)
    if offset == "free":
        layer.h.assign(np.random.default_rng(4).uniform(0.2, 1.0, 5))
    x = _points(6, 3)
    G, h = (np.asarray(t, dtype=np.float64) for t in layer.polytope())
    spec = polytope_projection_problem(3, 5)
    expected, = cvxpy_solve_batch(spec.problem, spec.parameters, [x, [G] * 6, [h] * 6], spec.variables)
    np.testing.assert_allclose(layer(x), expected, atol=TOLERANCE)


def test_offsets_are_tied_to_the_interior_point():
    layer = _built(PolytopeProjection(4, interior_point=0.5, slack=0.25, trainable_interior_point=True), 2)
    G, h = (np.asarray(t) for t in layer.polytope())
    np.testing.assert_allclose(h, G @ [0.5, 0.5] + 0.25, rtol=1e-6)
    assert [w.name for w in layer.trainable_weights] == ["G", "z0"]
    assert [w.name for w in _built(PolytopeProjection(4), 2).trainable_weights] == ["G"]
    assert [w.name for w in _built(PolytopeProjection(4, offset="free"), 2).trainable_weights] == ["G", "h"]


def test_outputs_are_feasible_and_idempotent(accurate_solver):
    layer = _built(PolytopeProjection(6, **accurate_solver), 2)
    y = np.asarray(layer(_points(16, 2)))
    G, h = (np.asarray(t) for t in layer.polytope())
    assert np.all(y @ G.T <= h + TOLERANCE)
    np.testing.assert_allclose(layer(y), y, atol=TOLERANCE)


def test_interior_points_are_unchanged(accurate_solver):
    layer = _built(PolytopeProjection(6, interior_point=0.2, **accurate_solver), 2)
    np.testing.assert_allclose(layer(np.full((1, 2), 0.2, "float32")), [[0.2, 0.2]], atol=TOLERANCE)


def test_learns_a_polytope_from_projections(default_solver):
    """A random initial polytope learns the hidden one: test MSE falls 10x or more."""
    num_constraints, dim = 10, 2
    teacher = PolytopeProjection(
        num_constraints, interior_point=0.5, slack=0.5, solver=default_solver,
        G_initializer=keras.initializers.RandomUniform(-4.0, 4.0, seed=6))
    x = np.random.default_rng(0).standard_normal((768, dim)).astype("float32")
    y = np.asarray(teacher(x))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((dim,)),
        PolytopeProjection(
            num_constraints, interior_point=0.5, slack=0.5, solver=default_solver,
            G_initializer=keras.initializers.RandomUniform(-4.0, 4.0, seed=22)),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-2), loss="mse")
    (x_train, x_test), (y_train, y_test) = np.split(x, [512]), np.split(y, [512])
    initial = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    model.fit(x_train, y_train, batch_size=32, epochs=8, verbose=0)  # 128 steps
    final = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    assert initial / final >= 10, (initial, final)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_constraints": 0}, "Received: num_constraints=0"),
        ({"num_constraints": 2.0}, "Received: num_constraints=2.0"),
        ({"num_constraints": 3, "offset": "tied"}, "Received: offset='tied'"),
        ({"num_constraints": 3, "slack": 0.0}, "Received: slack=0.0"),
        ({"num_constraints": 3, "interior_point": float("nan")}, "Received: interior_point=nan"),
        ({"num_constraints": 3, "trainable_interior_point": "yes"}, "Received: trainable_interior_point='yes'"),
        ({"num_constraints": 3, "solver": "GUROBI"}, "Received: solver='GUROBI'"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PolytopeProjection(**kwargs)


def test_output_shape_is_known_before_build():
    assert PolytopeProjection(3).compute_output_shape((None, 7)) == (None, 7)

"""ConvexLayer: the subclass API, and the contract every learnable layer keeps.

The contract tests run over each of the library's learnable layers (the
`make_learnable_layer` fixture): training between Dense layers with fit,
tf.function against eager, and gradients with respect to inputs and weights
against central finite differences.
"""

from __future__ import annotations

import dataclasses

import cvxpy as cp
import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import between_dense_layers, central_differences, weighted_sum

from keras_optlayers.layers.convex_layer import ConvexLayer


class BoxProjection(ConvexLayer):
    """The README's example: a learnable box lower <= y <= lower + exp(log_width)."""

    def build(self, input_shape):
        n = input_shape[-1]
        self.lower = self.add_weight(shape=(n,), initializer="zeros", name="lower")
        self.log_width = self.add_weight(shape=(n,), initializer="zeros", name="log_width")
        x, lower, upper = cp.Parameter(n), cp.Parameter(n), cp.Parameter(n)
        y = cp.Variable(n)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [lower <= y, y <= upper])
        self.set_problem(
            problem,
            inputs=[x],
            weights={lower: self.lower, upper: lambda: self.lower + keras.ops.exp(self.log_width)},
            outputs=[y],
        )


# -- the subclass API ---------------------------------------------------------


def test_subclass_solves_its_problem(default_solver):
    layer = BoxProjection(solver=default_solver)
    y = layer(np.array([[-1.0, 0.5, 2.0]], dtype="float32"))
    assert y.dtype == tf.float32
    np.testing.assert_allclose(y, [[0.0, 0.5, 1.0]], atol=1e-3)
    assert [w.name for w in layer.trainable_weights] == ["lower", "log_width"]


def test_gradients_reach_weights_through_functions_of_weights(default_solver):
    layer = BoxProjection(solver=default_solver)
    x = tf.constant([[2.0, 3.0, 0.5]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x))
    d_lower, d_log_width = tape.gradient(loss, layer.trainable_weights)
    # y = (upper, upper, x): d/d lower = (1, 1, 0), d/d log_width = exp(0) (1, 1, 0).
    np.testing.assert_allclose(d_lower, [1.0, 1.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(d_log_width, [1.0, 1.0, 0.0], atol=1e-3)


def test_leading_dimensions_fold_into_the_batch(default_solver):
    layer = BoxProjection(solver=default_solver)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32") * 2
    y = layer(x)
    assert y.shape == (2, 5, 3)
    np.testing.assert_allclose(y, np.clip(x, 0.0, 1.0), atol=1e-3)
    assert layer.compute_output_shape((None, 5, 3)) == (None, 5, 3)
    assert layer(x[0, 0]).shape == (3,)  # and no batch dimension at all


def test_set_problem_rejects_a_problem_that_is_not_dpp():
    class NotDPP(ConvexLayer):
        def build(self, input_shape):
            x, scale = cp.Parameter(2), cp.Parameter(nonneg=True)
            y = cp.Variable(2)
            problem = cp.Problem(cp.Minimize(cp.sum_squares(scale * scale * y - x)))
            self.set_problem(problem, inputs=[x], weights={scale: lambda: 1.0}, outputs=[y])

    with pytest.raises(ValueError, match="DPP"):
        NotDPP()(np.zeros((1, 2), "float32"))


def _width_problem():
    """(x, width, y, problem): y = argmin ‖y − x‖² with |y| ≤ width, x fed from the call."""
    x, width = cp.Parameter(2), cp.Parameter(2)
    y = cp.Variable(2)
    return x, width, y, cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [cp.abs(y) <= width])


def test_set_problem_rejects_unfed_parameters_and_bad_sources():
    x, width, y, problem = _width_problem()

    class Unfed(ConvexLayer):
        def build(self, input_shape):
            self.set_problem(problem, inputs=[x], outputs=[y])

    class BadSource(ConvexLayer):
        def build(self, input_shape):
            self.set_problem(problem, inputs=[x], weights={width: np.ones(2)}, outputs=[y])

    with pytest.raises(ValueError, match="missing from `parameters`"):
        Unfed()(np.zeros((1, 2), "float32"))
    with pytest.raises(ValueError, match="Received: "):
        BadSource()(np.zeros((1, 2), "float32"))


class SharedBoxProjection(ConvexLayer):
    """BoxProjection with both bounds from one `weight_values` function, called once per call."""

    def build(self, input_shape):
        n = input_shape[-1]
        self.lower = self.add_weight(shape=(n,), initializer="zeros", name="lower")
        self.log_width = self.add_weight(shape=(n,), initializer="zeros", name="log_width")
        self.value_calls = 0
        x, lower, upper = cp.Parameter(n), cp.Parameter(n), cp.Parameter(n)
        y = cp.Variable(n)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [lower <= y, y <= upper])

        def bounds():
            self.value_calls += 1
            return [self.lower, self.lower + keras.ops.exp(self.log_width)]

        self.set_problem(problem, inputs=[x], weights=[lower, upper], weight_values=bounds, outputs=[y])


def test_weight_values_gives_every_weight_parameter_once_per_call(default_solver):
    layer = SharedBoxProjection(solver=default_solver)
    x = tf.constant([[2.0, 3.0, 0.5]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x))
    np.testing.assert_allclose(layer(x), [[1.0, 1.0, 0.5]], atol=1e-3)
    assert layer.value_calls == 2
    d_lower, d_log_width = tape.gradient(loss, layer.trainable_weights)
    np.testing.assert_allclose(d_lower, [1.0, 1.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(d_log_width, [1.0, 1.0, 0.0], atol=1e-3)


def test_weight_values_is_checked():
    x, width, y, problem = _width_problem()

    class WithMapping(ConvexLayer):
        def build(self, input_shape):
            self.set_problem(problem, inputs=[x], weights={width: lambda: np.ones(2)},
                             weight_values=lambda: [np.ones(2)], outputs=[y])

    class TooMany(ConvexLayer):
        def build(self, input_shape):
            self.set_problem(problem, inputs=[x], weights=[width], weight_values=lambda: [np.ones(2)] * 2,
                             outputs=[y])

    with pytest.raises(ValueError, match="`weights` must list the parameters"):
        WithMapping()(np.zeros((1, 2), "float32"))
    with pytest.raises(ValueError, match="must give 1 values.*Received: 2 values"):
        TooMany()(np.zeros((1, 2), "float32"))


def test_learnable_layers_run_their_wiring_once_per_call(make_learnable_layer, monkeypatch):
    layer = make_learnable_layer(dtype="float64")
    definition = layer.definition
    runs = []

    def counted_wiring(*args):
        runs.append(1)
        return definition.wiring(*args)

    monkeypatch.setattr(type(layer), "definition", dataclasses.replace(definition, wiring=counted_wiring))
    x = np.random.default_rng(0).normal(size=(1, 4))
    for _ in range(3):
        layer(x)
    # Traced once, then the compiled wiring runs (it ran once per parameter of every call).
    assert len(runs) == 1


def test_build_must_be_overridden():
    with pytest.raises(NotImplementedError, match="set_problem"):
        ConvexLayer()(np.zeros((1, 2), "float32"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"solver": "GUROBI"}, "Received: solver='GUROBI'"),
        ({"solver": 3}, "Received: solver=3"),
        ({"solver_args": {"eps": [1e-8]}}, "Received: solver_args="),
        ({"solver_args": "tight"}, "Received: solver_args="),
    ],
)
def test_solver_arguments_are_checked_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BoxProjection(**kwargs)


def test_supports_jit_follows_the_solver():
    assert BoxProjection(solver="QP").supports_jit
    host_layer = BoxProjection(solver="SCS")
    assert not host_layer.supports_jit
    host_layer.build((None, 2))
    assert not host_layer.supports_jit
    assert not BoxProjection().supports_jit  # unknown until built


def test_config_holds_the_solver_settings():
    config = BoxProjection(solver="SCS", solver_args={"eps_abs": 1e-6}).get_config()
    assert config["solver"] == "SCS"
    assert config["solver_args"] == {"eps_abs": 1e-6}


# -- the contract of every learnable layer --------------------------------------


def test_trains_between_dense_layers(make_learnable_layer, default_solver):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    target = np.tanh(x @ rng.normal(size=(4, 1))).astype("float32")
    keras.utils.set_random_seed(0)
    model = between_dense_layers(make_learnable_layer(solver=default_solver), units=1)
    model.compile(optimizer=keras.optimizers.Adam(3e-2), loss="mse")
    losses = model.fit(x, target, batch_size=16, epochs=5, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0]


def test_tf_function_matches_eager(make_learnable_layer, default_solver):
    layer = make_learnable_layer(solver=default_solver)
    x = np.random.default_rng(1).normal(size=(5, 3)).astype("float32") * 2
    eager = layer(x)
    traced = tf.function(layer)(tf.constant(x))
    assert traced.dtype == eager.dtype == tf.float32
    np.testing.assert_allclose(traced, eager, atol=1e-5)


def test_float64_layer_computes_in_float64(make_learnable_layer):
    layer = make_learnable_layer(dtype="float64", solver="Clarabel")
    assert layer(np.ones((2, 3), "float32")).dtype == tf.float64


def test_gradients_match_central_differences(make_learnable_layer, accurate_solver):
    # SCS, not Clarabel: Clarabel's answers to the perturbed ellipsoid problems
    # are off by ~3e-7 even at 1e-10 tolerances, which finite differences see.
    keras.utils.set_random_seed(0)
    layer = make_learnable_layer(dtype="float64", **accurate_solver)
    x = np.random.default_rng(2).normal(size=(2, 3)) * 3  # points outside: active constraints
    layer.build((None, 3))
    weights = layer.trainable_weights
    output_weights = np.random.default_rng(3).normal(size=(2, 3))

    x_tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        loss = weighted_sum([layer(x_tensor)], [output_weights])
    analytic = tape.gradient(loss, [x_tensor, *weights])

    saved = [w.numpy() for w in weights]

    def loss_at(arrays):
        for weight, value in zip(weights, arrays[1:]):
            weight.assign(value)
        return float(weighted_sum([layer(tf.constant(arrays[0]))], [output_weights]))

    numeric = central_differences(loss_at, [x, *saved], step=1e-4)
    for weight, value in zip(weights, saved):
        weight.assign(value)
    for name, a, n in zip(["x"] + [w.name for w in weights], analytic, numeric):
        np.testing.assert_allclose(a, n, rtol=1e-5, atol=1e-6, err_msg=name)


def test_layer_built_inside_a_traced_step_works_in_later_functions():
    """Without keras.Input, Keras builds the layer while tracing the train step;
    predict and evaluate then run in other graphs."""
    from keras_optlayers import PolytopeProjection

    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.layers.Dense(2), PolytopeProjection(6)])
    model.compile("adam", "mse")
    x = rng.standard_normal((32, 3)).astype("float32")
    y = 0.1 * rng.standard_normal((32, 2)).astype("float32")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    predictions = model.predict(x[:4], verbose=0)
    assert predictions.shape == (4, 2)
    assert np.isfinite(model.evaluate(x, y, verbose=0))

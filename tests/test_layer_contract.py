"""The contract every public layer keeps, in both front ends (in the spirit of Keras' run_layer_test).

For each Keras layer: config round trip, symbolic shapes in the middle of a
functional model and of a Sequential (a layer after it), eager against
tf.function, float32 and float64, mixed precision, masking where it
applies, and a training step that moves every trainable weight. For each
torch module: the same outputs and gradients as its Keras twin on the same
weights (outputs 1e-6, gradients 1e-5).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable

import cvxpy as cp
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_optlayers as kol
from keras_optlayers.core.problems import sparsemax_problem

torch = pytest.importorskip("torch")
import keras_optlayers.torch as kot  # noqa: E402

# Tight enough that the torch twins (diffcp) agree with the Keras layers'
# exact or native solves to 1e-6: SCS, whose solutions of these problems are
# exact on their active set (interior-point ones are ~1e-6 off where CVXPY
# writes a squared norm as a cone).
TIGHT = {"solver": "SCS", "solver_args": {"eps": 1e-10, "max_iters": 100_000}}


@dataclasses.dataclass(frozen=True)
class Case:
    make_keras: Callable[..., keras.layers.Layer]
    make_torch: Callable[[], torch.nn.Module]
    dim: int
    masking: bool = False
    savable: bool = True


def _sparsemax_cvxpy_layer(**kwargs):
    spec = sparsemax_problem(5)
    return kol.CvxpyLayer(spec.problem, spec.parameters, spec.variables, **kwargs)


def _sparsemax_cvxpy_module():
    spec = sparsemax_problem(5)
    return kot.CvxpyLayer(spec.problem, spec.parameters, spec.variables, **TIGHT)


CASES = {
    "Sparsemax": Case(lambda **kw: kol.Sparsemax(**kw), lambda: kot.Sparsemax(), 5, masking=True),
    "CSparsemax": Case(lambda **kw: kol.CSparsemax(upper=0.4, **kw), lambda: kot.CSparsemax(upper=0.4), 5,
                       masking=True),
    "CSoftmax": Case(lambda **kw: kol.CSoftmax(upper=0.4, **kw), lambda: kot.CSoftmax(upper=0.4), 5, masking=True),
    "LML": Case(lambda **kw: kol.LML(k=2, **kw), lambda: kot.LML(k=2), 5, masking=True),
    "PolytopeProjection": Case(lambda **kw: kol.PolytopeProjection(4, **kw),
                               lambda: kot.PolytopeProjection(4, **TIGHT), 3),
    "EllipsoidProjection": Case(lambda **kw: kol.EllipsoidProjection(**kw),
                                lambda: kot.EllipsoidProjection(**TIGHT), 3),
    "OptNetQP": Case(lambda **kw: kol.OptNetQP(1, 2, **kw), lambda: kot.OptNetQP(1, 2, **TIGHT), 4),
    "CvxpyLayer": Case(_sparsemax_cvxpy_layer, _sparsemax_cvxpy_module, 5, savable=False),
}

# The Keras layers solved by diffcp in these configurations take tight settings.
ACCURATE = {"EllipsoidProjection": TIGHT}


def keras_layer(name: str, **kwargs) -> keras.layers.Layer:
    return CASES[name].make_keras(**{**ACCURATE.get(name, {}), **kwargs})


def single(outputs):
    """CvxpyLayer returns a list; the other layers a tensor."""
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def inputs_for(name: str, batch: int = 4, dtype: str = "float64") -> np.ndarray:
    return (np.random.default_rng(0).normal(size=(batch, CASES[name].dim)) * 1.5).astype(dtype)


@pytest.fixture(params=sorted(CASES))
def name(request) -> str:
    return request.param


def test_config_round_trip(name):
    if not CASES[name].savable:
        with pytest.raises(NotImplementedError, match="ConvexLayer"):
            keras_layer(name).get_config()
        return
    layer = keras_layer(name)
    config = layer.get_config()
    json.dumps(config)  # plain values only
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    x = inputs_for(name)
    if clone.weights or layer(x) is not None:
        clone(x)
        clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(single(clone(x)), single(layer(x)), atol=1e-6)


def test_symbolic_shapes_in_functional_and_sequential_models(name):
    dim = CASES[name].dim
    inputs = keras.Input((dim,))
    outputs = single(keras_layer(name)(inputs))
    assert tuple(outputs.shape) == (None, dim)
    after = keras.layers.Dense(2)(outputs)  # a layer after it builds
    model = keras.Model(inputs, after)
    assert model.predict(inputs_for(name, dtype="float32"), verbose=0).shape == (4, 2)
    if CASES[name].savable:
        sequential = keras.Sequential([keras.Input((dim,)), keras.layers.Dense(dim), keras_layer(name),
                                       keras.layers.Dense(1)])
        assert sequential.output_shape == (None, 1)
        assert sequential.predict(inputs_for(name, dtype="float32"), verbose=0).shape == (4, 1)


def test_eager_matches_tf_function(name):
    layer = keras_layer(name)
    x = tf.constant(inputs_for(name))
    eager = single(layer(x))
    traced = single(tf.function(lambda t: layer(t))(x))
    np.testing.assert_allclose(traced, eager, atol=1e-9)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtypes(name, dtype):
    layer = keras_layer(name, dtype=dtype)
    y = single(layer(inputs_for(name, dtype=dtype)))
    assert y.dtype == dtype
    assert np.all(np.isfinite(y))


def test_mixed_precision(name):
    layer = keras_layer(name, dtype="mixed_float16")
    y = single(layer(inputs_for(name, dtype="float16")))
    assert y.dtype == "float16"
    reference_layer = keras_layer(name, dtype="float64")
    x = inputs_for(name).astype("float16").astype("float64")
    reference_layer(x)
    reference_layer.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(y, np.float64), single(reference_layer(x)), atol=2e-2)


def test_training_step_moves_every_trainable_weight(name):
    layer = keras_layer(name)
    x = tf.constant(inputs_for(name) * 5)  # outside the feasible sets: constraints active
    layer(x)
    if not layer.trainable_weights:
        return
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(single(layer(x)), tf.float64) * np.linspace(-1, 1, CASES[name].dim))
    grads = tape.gradient(loss, layer.trainable_weights)
    for weight, grad in zip(layer.trainable_weights, grads):
        assert grad is not None and np.any(np.asarray(grad) != 0), weight.name


def test_masking(name):
    if not CASES[name].masking:
        return
    layer = keras_layer(name)
    assert layer.supports_masking
    x = inputs_for(name)
    mask = np.ones_like(x, dtype=bool)
    mask[:, 1] = False
    masked = layer(tf.constant(x), mask=tf.constant(mask)).numpy()
    np.testing.assert_array_equal(masked[:, 1], 0.0)
    # The rest solves the problem restricted to the kept entries; -inf logits mean the same.
    x_inf = x.copy()
    x_inf[:, 1] = -np.inf
    np.testing.assert_allclose(layer(tf.constant(x_inf)).numpy(), masked, atol=1e-12)
    kept = [0, 2, 3, 4]
    restricted = keras_layer(name)(tf.constant(x[:, kept])).numpy() if name != "CSparsemax" and name != "CSoftmax" \
        else type(layer)(upper=0.4)(tf.constant(x[:, kept])).numpy()
    np.testing.assert_allclose(masked[:, kept], restricted, atol=1e-9)


def test_torch_twin_agrees(name):
    case = CASES[name]
    x = inputs_for(name)
    upstream = np.random.default_rng(1).normal(size=x.shape)
    module = case.make_torch()
    torch.manual_seed(0)
    torch_x = torch.tensor(x, requires_grad=True)
    torch_y = single(module(torch_x))
    layer = keras_layer(name, dtype="float64")
    layer(x)
    for weight in layer.weights:  # the torch module's weights, in the Keras layer
        weight.assign(getattr(module, weight.name).detach().numpy())
    (torch_y * torch.from_numpy(upstream)).sum().backward()
    keras_x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(keras_x)
        keras_y = single(layer(keras_x))
        loss = tf.reduce_sum(keras_y * upstream)
    grads = tape.gradient(loss, [keras_x, *layer.trainable_weights])
    np.testing.assert_allclose(torch_y.detach().numpy(), keras_y.numpy(), atol=1e-6)
    np.testing.assert_allclose(torch_x.grad.numpy(), grads[0].numpy(), atol=1e-5)
    for weight, grad in zip(layer.trainable_weights, grads[1:]):
        np.testing.assert_allclose(getattr(module, weight.name).grad.numpy(), grad.numpy(), atol=1e-5,
                                   err_msg=weight.name)


def test_torch_dtypes_follow_inputs(name):
    module = CASES[name].make_torch()
    for dtype in (torch.float32, torch.float64):
        y = single(module(torch.tensor(inputs_for(name), dtype=dtype)))
        assert y.dtype == dtype


def test_unused_names_are_rejected():
    with pytest.raises((TypeError, ValueError), match="offst"):
        kol.PolytopeProjection(3, offst="free")
    with pytest.raises(ValueError, match="Received: on_failure='ignore'"):
        kol.PolytopeProjection(3, on_failure="ignore")
    x, y = cp.Parameter(2), cp.Variable(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)))
    with pytest.raises(ValueError, match="Received: on_failure='ignore'"):
        kot.CvxpyLayer(problem, [x], [y], on_failure="ignore")


def test_weights_take_keras_regularizers_and_constraints():
    layer = kol.OptNetQP(1, 2, G_regularizer="l2", L_constraint="non_neg", A_initializer="zeros")
    y = layer(inputs_for("OptNetQP", dtype="float32"))
    assert y.shape == (4, 4)
    assert len(layer.losses) == 1 and float(layer.losses[0]) > 0  # the G penalty
    assert layer.L.constraint is not None and np.all(np.asarray(layer.A) == 0)
    config = layer.get_config()
    clone = kol.OptNetQP.from_config(config)
    assert clone.get_config() == config
    assert config["G_regularizer"]["class_name"] == "L2"
    with pytest.raises(ValueError):
        kol.PolytopeProjection(3, G_regularizer="not-a-regularizer")

"""The projection layers: eager and tf.function calls, training, config, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_optlayers.core.problems import ProblemSpec
from keras_optlayers.layers.csoftmax import CSoftmax
from keras_optlayers.layers.csparsemax import CSparsemax
from keras_optlayers.layers.lml import LML
from keras_optlayers.layers.sparsemax import Sparsemax

TUTORIAL_X = np.array([[1.5409961, -0.2934289, -2.1787894, 0.56843126]], np.float32)

# layer factory, expected output on TUTORIAL_X (n=4, k=2, u=1/2).
TUTORIAL_CASES = {
    "sparsemax": (lambda: Sparsemax(), [0.98628241, 0, 0, 0.01371759]),
    "csparsemax": (lambda: CSparsemax(upper=0.5), [0.5, 0, 0, 0.5]),
    "csoftmax": (lambda: CSoftmax(upper=0.5), [0.5000002, 0.1420723, 0.02156317, 0.33636498]),
    "lml": (lambda: LML(k=2), [0.825469815, 0.430314036, 0.102851933, 0.641364216]),
}


def _run(mode, fn, *args):
    """Calls fn eagerly or inside a tf.function."""
    return fn(*args) if mode == "eager" else tf.function(fn)(*args)


@pytest.fixture(params=["eager", "tf.function"])
def mode(request):
    return request.param


@pytest.mark.parametrize("name", sorted(TUTORIAL_CASES))
def test_tutorial_outputs(name, mode):
    make_layer, expected = TUTORIAL_CASES[name]
    y = _run(mode, make_layer(), tf.constant(TUTORIAL_X))
    assert y.dtype == tf.float32 and y.shape == (1, 4)
    np.testing.assert_allclose(y[0], expected, atol=1e-5)


def test_csoftmax_with_unit_bound_reproduces_the_tutorial_softmax(mode):
    x = tf.constant([-0.1467951, 0.7861413, 0.94682163, -1.114344, 1.6907902])
    layer = CSoftmax(upper=1.0)

    def last_output_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            last = layer(x)[4]
        return last, tape.gradient(last, x)

    last, gradient = _run(mode, last_output_and_gradient, x)
    np.testing.assert_allclose(last, 0.47627935, atol=1e-6)
    np.testing.assert_allclose(gradient, [-0.03611356, -0.09179932, -0.10780083, -0.01372364, 0.24943732], atol=1e-6)


@pytest.mark.parametrize("layer_class", [CSparsemax, CSoftmax])
def test_call_time_bounds_get_gradients(layer_class, mode):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((3, 5)))
    upper = tf.constant(rng.uniform(0.3, 0.8, (3, 5)))
    layer = layer_class()

    def output_and_gradients(x, upper):
        with tf.GradientTape() as tape:
            tape.watch([x, upper])
            y = layer(x, upper)
            functional = tf.reduce_sum(y * tf.range(5, dtype=y.dtype))
        return y, tape.gradient(functional, [x, upper])

    y, (grad_x, grad_upper) = _run(mode, output_and_gradients, x, upper)
    assert y.dtype == tf.float64
    assert np.all(y <= upper + 1e-15)
    np.testing.assert_allclose(tf.reduce_sum(y, -1), 1.0, atol=1e-12)
    assert np.any(grad_upper.numpy() != 0) and np.any(grad_x.numpy() != 0)


@pytest.mark.parametrize("name", sorted(TUTORIAL_CASES))
def test_axis_and_batch_shape(name, mode):
    make_layer, _ = TUTORIAL_CASES[name]
    x = np.random.default_rng(1).standard_normal((2, 4, 3)).astype(np.float32)
    layer = make_layer()
    last_axis = _run(mode, layer, tf.constant(np.swapaxes(x, 1, 2)))
    config = {**layer.get_config(), "axis": 1}
    middle_axis = _run(mode, type(layer).from_config(config), tf.constant(x))
    np.testing.assert_allclose(middle_axis, np.swapaxes(last_axis, 1, 2), atol=1e-7)
    assert layer.compute_output_shape((None, 3, 4)) == (None, 3, 4)


@pytest.mark.parametrize("name", sorted(TUTORIAL_CASES))
def test_trains_in_a_sequential_model(name):
    make_layer, _ = TUTORIAL_CASES[name]
    rng = np.random.default_rng(2)
    features = rng.standard_normal((64, 3)).astype(np.float32)
    targets = rng.dirichlet(np.ones(4), 64).astype(np.float32) * (2.0 if name == "lml" else 1.0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), make_layer()])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    kernel_before = model.layers[0].kernel.numpy().copy()
    history = model.fit(features, targets, batch_size=16, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert not np.allclose(model.layers[0].kernel.numpy(), kernel_before)


@pytest.mark.parametrize(
    "layer",
    [Sparsemax(axis=1), CSparsemax(upper=0.3, axis=0), CSoftmax(), LML(k=3, axis=-2)],
    ids=lambda layer: type(layer).__name__,
)
def test_config_roundtrip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def test_saved_model_roundtrip(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), CSoftmax(upper=0.4)])
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored(TUTORIAL_X), model(TUTORIAL_X), atol=1e-7)


def test_cvxpy_problem_matches_the_layer_parameters():
    assert len(CSoftmax().cvxpy_problem(4).parameters) == 2
    spec = CSparsemax(upper=0.5).cvxpy_problem(4)
    assert isinstance(spec, ProblemSpec) and len(spec.parameters) == 1
    assert LML(k=2).cvxpy_problem(4).problem.is_dpp()
    assert Sparsemax().cvxpy_problem(4).variables[0].shape == (4,)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LML(k=0), "Received: k=0, n=None"),
        (lambda: LML(k="2"), "Received: k='2'"),
        (lambda: CSparsemax(upper=-0.5), "Received: upper=-0.5"),
        (lambda: CSoftmax(upper=np.ones(4)), "must be a python number"),
        (lambda: Sparsemax(axis=1.0), "Received: axis=1.0"),
    ],
)
def test_bad_construction_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "layer, args, message",
    [
        (LML(k=5), (TUTORIAL_X,), "Received: k=5, n=4"),
        (CSparsemax(upper=0.2), (TUTORIAL_X,), "Received: upper=0.2, n=4"),
        (CSoftmax(), (TUTORIAL_X,), "Received: upper=None"),
        (CSoftmax(upper=0.5), (TUTORIAL_X, np.ones((1, 4), np.float32)), "Received: upper=0.5"),
        (Sparsemax(axis=2), (TUTORIAL_X,), "Received: axis=2"),
    ],
    ids=["k-too-large", "upper-too-small", "upper-missing", "upper-twice", "axis"],
)
def test_bad_call_arguments(layer, args, message, mode):
    tensors = [tf.constant(a) for a in args]
    with pytest.raises(ValueError, match=message):
        _run(mode, layer, *tensors)


@pytest.mark.parametrize(
    "layer, args, message",
    [
        (CSparsemax(), (np.zeros((1, 3)), np.full((1, 3), 0.3)), "must sum to at least 1"),
        (CSoftmax(), (np.zeros((1, 3)), np.array([[0.5, np.nan, 0.5]])), "`upper` must contain only finite"),
    ],
    ids=["csparsemax-sum", "csoftmax-nan-bound"],
)
def test_bad_data(layer, args, message, mode):
    tensors = [tf.constant(a) for a in args]
    error = ValueError if mode == "eager" else tf.errors.InvalidArgumentError
    with pytest.raises(error, match=message):
        _run(mode, layer, *tensors)


@pytest.mark.parametrize("layer", [Sparsemax(), LML(k=1)], ids=["sparsemax-nan", "lml-inf"])
def test_nan_or_inf_scores_give_nan(layer, mode):
    # Like keras.layers.Softmax: no check of the scores (no host copy); the slice comes out NaN.
    y = _run(mode, layer, tf.constant([[np.nan, 1.0, 0.0], [np.inf, 1.0, 0.0], [2.0, 1.0, 0.0]]))
    assert np.all(np.isnan(y[:2])) and np.all(np.isfinite(y[2]))

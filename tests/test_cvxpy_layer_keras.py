"""CvxpyLayer inside Keras: training with model.fit, jit_compile="auto", memory."""

import keras
import numpy as np
import tensorflow as tf
from helpers import resident_memory_kib, sparsemax, sparsemax_solution

from keras_optlayers.layers.cvxpy_layer import CvxpyLayer


def sparsemax_layer(n=4):
    family = sparsemax(n)
    return CvxpyLayer(family.problem, family.parameters, family.variables, solver="SCS")


def sparsemax_model(features=3, n=4):
    """Dense -> sparsemax as a CvxpyLayer, in the functional API."""
    inputs = keras.Input((features,), dtype="float64")
    scores = keras.layers.Dense(n, dtype="float64")(inputs)
    (probabilities,) = sparsemax_layer(n)(scores)
    return keras.Model(inputs, probabilities)


def teacher_data(samples=64, features=3, n=4, seed=0):
    """Targets from a fixed linear teacher through the exact sparsemax."""
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((samples, features))
    teacher = 2.0 * rng.standard_normal((features, n))
    targets = np.stack([sparsemax_solution(s) for s in inputs @ teacher])
    return inputs, targets


def test_model_fit_lowers_the_loss():
    keras.utils.set_random_seed(0)
    model = sparsemax_model()
    inputs, targets = teacher_data()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    initial = model.evaluate(inputs, targets, verbose=0)

    history = model.fit(inputs, targets, batch_size=16, epochs=12, verbose=0)

    final = model.evaluate(inputs, targets, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert final < 0.5 * initial, (initial, final)


def test_layer_does_not_support_jit_on_the_host_path():
    assert sparsemax_layer().supports_jit is False


def test_jit_compile_auto_keeps_xla_off_even_with_an_accelerator(monkeypatch):
    model = sparsemax_model()
    inputs, targets = teacher_data(samples=16)
    # Keras only considers XLA when it sees an accelerator; pretend there is
    # one so that the layer's supports_jit=False is what decides.
    visible = tf.config.list_physical_devices()
    accelerator = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda device_type=None: visible + [accelerator])
    model.compile(optimizer="adam", loss="mse", jit_compile="auto")
    monkeypatch.undo()

    assert model.jit_compile is False
    history = model.fit(inputs, targets, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.predict(inputs, verbose=0).shape == (16, 4)


def test_jit_compile_auto_trains_on_this_machine():
    model = sparsemax_model()
    inputs, targets = teacher_data(samples=16)
    model.compile(optimizer="adam", loss="mse", jit_compile="auto")
    history = model.fit(inputs, targets, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_repeated_inference_does_not_grow_memory():
    calls = 2000
    layer = sparsemax_layer()
    solve = tf.function(lambda t: layer(t))
    inputs = tf.constant(np.random.default_rng(0).standard_normal((8, 4)))
    for _ in range(200):  # warm up: tracing, allocator pools, solver caches
        solve(inputs)
    before = resident_memory_kib()

    for _ in range(calls):
        (outputs,) = solve(inputs)

    growth_kib = resident_memory_kib() - before
    np.testing.assert_allclose(outputs.numpy(), [sparsemax_solution(x) for x in inputs.numpy()], atol=1e-3)
    # A leak of even one 8x4 float64 array per call would be ~800 KiB here;
    # leaked solver data or graph copies are far larger.
    assert growth_kib < 8 * 1024, f"RSS grew by {growth_kib} KiB over {calls} calls"


def test_parameters_reach_the_layer_as_given_and_are_converted_there():
    """Keras passes the positional parameters through unconverted (the layer converts and checks them): numpy
    arrays and nested lists give the tensor call's solution, and a non-numeric value gets the layer's error
    naming the parameter."""
    family = sparsemax(4)
    layer = CvxpyLayer(family.problem, family.parameters, family.variables)  # the native QP solver
    x = np.array([[0.3, -1.2, 0.8, 0.1], [2.0, 0.0, -0.5, 0.4]])
    (from_tensor,) = layer(tf.constant(x))
    (from_array,) = layer(x)
    (from_list,) = layer(x.tolist())
    expected = np.stack([sparsemax_solution(row) for row in x])
    for result in (from_tensor, from_array):
        assert result.dtype == tf.float64
        np.testing.assert_allclose(result.numpy(), expected, atol=1e-10)
    assert from_list.dtype == tf.float32  # Python floats convert to float32, as everywhere in TensorFlow
    np.testing.assert_allclose(from_list.numpy(), expected, atol=1e-6)
    try:
        layer(tf.constant([["a", "b", "c", "d"]]))
    except ValueError as error:
        assert family.parameters[0].name() in str(error)
    else:
        raise AssertionError("a string parameter was accepted")


def test_autocast_still_casts_the_parameters():
    """With autocast on, Keras converts and casts the parameters as for any layer (the layer's own cheaper
    conversion is for autocast off, the default)."""
    family = sparsemax(4)
    layer = CvxpyLayer(family.problem, family.parameters, family.variables, autocast=True, dtype="float32")
    x = np.array([[0.3, -1.2, 0.8, 0.1]])
    (result,) = layer(tf.constant(x))  # float64 in
    assert result.dtype == tf.float32
    np.testing.assert_allclose(result.numpy(), sparsemax_solution(x[0])[None], atol=1e-6)

"""The fast projection ops: known values, exact gradients, dtypes, shapes, XLA, bad input."""

import numpy as np
import pytest
import tensorflow as tf

from keras_optlayers.ops import csoftmax, csparsemax, lml, sparsemax

# torch.manual_seed(0); torch.randn(4), the tutorial's input.
TUTORIAL_X = np.array([1.5409961, -0.2934289, -2.1787894, 0.56843126], np.float32)
# torch.manual_seed(7); torch.randn(5), the tutorial's softmax input.
SOFTMAX_X = np.array([-0.1467951, 0.7861413, 0.94682163, -1.114344, 1.6907902], np.float32)

# Each op as a function of (x, upper); upper is ignored where there is none.
OPS = {
    "sparsemax": lambda x, u: sparsemax(x),
    "csparsemax": lambda x, u: csparsemax(x, u),
    "csoftmax": lambda x, u: csoftmax(x, u),
    "lml": lambda x, u: lml(x, 2),
}


def _random_case(seed, shape=(6, 7)):
    """Scores with ties and upper bounds summing to more than 1 along the last axis."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x[..., 1] = x[..., 0]  # a tie
    upper = rng.uniform(0.25, 0.6, shape)
    return x, upper


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tutorial_values(dtype):
    x = TUTORIAL_X.astype(dtype)
    np.testing.assert_allclose(sparsemax(x), [0.98628241, 0, 0, 0.01371759], atol=1e-5)
    np.testing.assert_allclose(csparsemax(x, 0.5), [0.5, 0, 0, 0.5], atol=1e-5)
    # The tutorial printed SCS's answer; the exact one (tight Clarabel) is the second.
    np.testing.assert_allclose(csoftmax(x, 0.5), [0.5000002, 0.1420723, 0.02156317, 0.33636498], atol=1e-5)
    np.testing.assert_allclose(csoftmax(x, 0.5), [0.5, 0.1420723, 0.02156293, 0.33636478], atol=1e-6)
    np.testing.assert_allclose(lml(x, 2), [0.825469815, 0.430314036, 0.102851933, 0.641364216], atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_csoftmax_with_unit_bound_is_the_tutorial_softmax(dtype):
    x = tf.constant(SOFTMAX_X.astype(dtype))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = csoftmax(x, 1.0)
        last = y[4]
    np.testing.assert_allclose(y, [0.07582434, 0.1927426, 0.22633949, 0.02881426, 0.47627935], atol=1e-6)
    gradient = [-0.03611356, -0.09179932, -0.10780083, -0.01372364, 0.24943732]
    np.testing.assert_allclose(tape.gradient(last, x), gradient, atol=1e-6)


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_outputs_are_feasible_and_optimal_in_form(name, scale):
    x, upper = _random_case(0)
    x = x * scale
    y = OPS[name](x, upper).numpy()
    target = 2.0 if name == "lml" else 1.0
    np.testing.assert_allclose(y.sum(-1), target, atol=1e-12)
    assert np.all(y >= 0) and np.all(np.isfinite(y))
    if name.startswith("c"):
        assert np.all(y <= upper + 1e-15)
    if name == "sparsemax":
        # Same threshold for every coordinate on the support.
        tau = np.where(y > 0, x - y, np.nan)
        np.testing.assert_allclose(np.nanmax(tau, -1), np.nanmin(tau, -1), atol=1e-12 * scale)


def _jvp_by_central_differences(fn, inputs, index, direction, step=1e-6):
    """(fn(..., inputs[index] + step d, ...) - fn(..., - step d, ...)) / (2 step)."""
    plus, minus = list(inputs), list(inputs)
    plus[index] = inputs[index] + step * direction
    minus[index] = inputs[index] - step * direction
    return (fn(*plus).numpy() - fn(*minus).numpy()) / (2 * step)


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradients_match_central_differences(name):
    x, upper = _random_case(1, shape=(4, 6))
    x = x + np.random.default_rng(2).standard_normal(x.shape) * 1e-3  # off the tie: FD needs smoothness
    rng = np.random.default_rng(3)
    weights = rng.standard_normal(x.shape)
    inputs = [tf.constant(x), tf.constant(upper)]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        functional = tf.reduce_sum(weights * OPS[name](*inputs))
    gradients = tape.gradient(functional, inputs, unconnected_gradients="zero")
    # <gradient, d> must equal the directional derivative of <w, y> along d.
    for index in (0, 1) if name.startswith("c") else (0,):
        direction = rng.standard_normal(x.shape)
        jvp = _jvp_by_central_differences(OPS[name], inputs, index, direction)
        np.testing.assert_allclose(
            np.sum(gradients[index].numpy() * direction), np.sum(weights * jvp), rtol=1e-6, atol=1e-7
        )


def test_csparsemax_gradient_is_the_free_set_projection():
    x = tf.constant([[0.9, 0.5, 0.45, -1.0]], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = csparsemax(x, tf.constant([[0.4, 0.4, 0.4, 0.4]], tf.float64))
    jacobian = tape.jacobian(y, x)[0, :, 0, :].numpy()
    # y = [0.4, 0.3, 0.3, 0]: coordinate 0 capped, 1 and 2 free, 3 at zero.
    np.testing.assert_allclose(y, [[0.4, 0.325, 0.275, 0.0]], atol=1e-12)
    expected = np.zeros((4, 4))
    expected[1:3, 1:3] = [[0.5, -0.5], [-0.5, 0.5]]
    np.testing.assert_allclose(jacobian, expected, atol=1e-12)


@pytest.mark.parametrize("name", sorted(OPS))
def test_float32_is_float64_rounded(name):
    x, upper = _random_case(4)
    y32 = OPS[name](x.astype(np.float32), upper.astype(np.float32))
    y64 = OPS[name](x.astype(np.float32).astype(np.float64), upper.astype(np.float32).astype(np.float64))
    assert y32.dtype == tf.float32
    np.testing.assert_allclose(y32, y64, atol=1e-7)


@pytest.mark.parametrize("name", sorted(OPS))
def test_any_batch_shape_and_axis(name):
    x, upper = _random_case(5, shape=(2, 3, 5))
    flat = OPS[name](x.reshape(6, 5), upper.reshape(6, 5)).numpy().reshape(2, 3, 5)
    np.testing.assert_allclose(OPS[name](x, upper), flat, atol=1e-14)
    np.testing.assert_allclose(OPS[name](x[0, 0], upper[0, 0]), flat[0, 0], atol=1e-14)
    moved = np.moveaxis(x, -1, 1), np.moveaxis(upper, -1, 1)
    op = {
        "sparsemax": lambda x, u: sparsemax(x, axis=1),
        "csparsemax": lambda x, u: csparsemax(x, u, axis=1),
        "csoftmax": lambda x, u: csoftmax(x, u, axis=-2),
        "lml": lambda x, u: lml(x, 2, axis=1),
    }[name]
    np.testing.assert_allclose(op(*moved), np.moveaxis(flat, -1, 1), atol=1e-14)


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("jit_compile", [False, True])
def test_graph_and_xla_match_eager(name, jit_compile):
    x, upper = _random_case(6)
    x[0] *= 1e3
    inputs = [tf.constant(x), tf.constant(upper)]

    def value_and_gradient(x, u):
        with tf.GradientTape() as tape:
            tape.watch([x, u])
            y = OPS[name](x, u)
            functional = tf.reduce_sum(tf.sin(y))
        return y, tape.gradient(functional, [x, u], unconnected_gradients="zero")

    compiled = tf.function(value_and_gradient, jit_compile=jit_compile)
    eager_y, eager_grads = value_and_gradient(*inputs)
    graph_y, graph_grads = compiled(*inputs)
    np.testing.assert_allclose(graph_y, eager_y, atol=1e-12)
    for graph_grad, eager_grad in zip(graph_grads, eager_grads):
        np.testing.assert_allclose(graph_grad, eager_grad, atol=1e-10)


def test_large_magnitudes_and_ties():
    x = np.array([[3.0, 3.0, 3.0, -1.0], [1e3, 1e3, -1e3, 0.0], [1e300, 1e300, 0.0, -1e300]])
    np.testing.assert_allclose(sparsemax(x)[:2], [[1 / 3, 1 / 3, 1 / 3, 0], [0.5, 0.5, 0, 0]], atol=1e-15)
    np.testing.assert_allclose(csparsemax(x, 0.4)[:2], [[1 / 3, 1 / 3, 1 / 3, 0], [0.4, 0.4, 0, 0.2]], atol=1e-15)
    np.testing.assert_allclose(csoftmax(x, 0.4)[1], [0.4, 0.4, 0, 0.2], atol=1e-15)
    smooth_top_k = lml(x, 2).numpy()
    np.testing.assert_allclose(smooth_top_k[0, :3], smooth_top_k[0, 0], atol=1e-15)
    np.testing.assert_allclose(smooth_top_k[1:], [[1, 1, 0, 0], [1, 1, 0, 0]], atol=1e-12)
    for op in (sparsemax, lambda x: csparsemax(x, 0.4), lambda x: csoftmax(x, 0.4), lambda x: lml(x, 2)):
        assert np.all(np.isfinite(op(x)))


def test_bounds_summing_to_exactly_one_give_the_bounds():
    upper = np.array([[0.25, 0.25, 0.5]])
    x = np.array([[2.0, -1.0, 0.0]])
    np.testing.assert_allclose(csparsemax(x, upper), upper, atol=1e-15)
    np.testing.assert_allclose(csoftmax(x, upper), upper, atol=1e-15)


# (op call, message fragment) for inputs every op must reject.
BAD_INPUTS = [
    (lambda: lml(TUTORIAL_X, 5), "Received: k=5, n=4"),
    (lambda: lml(TUTORIAL_X, 0), "Received: k=0, n=4"),
    (lambda: csparsemax(TUTORIAL_X, 0.2), "Received: upper=0.2, n=4"),
    (lambda: csoftmax(TUTORIAL_X, -1.0), "Received: upper=-1.0"),
    (lambda: sparsemax(TUTORIAL_X, axis=1), "Received: axis=1"),
]


@pytest.mark.parametrize("call, message", BAD_INPUTS)
@pytest.mark.parametrize("in_graph", [False, True])
def test_static_bad_input_raises_value_error(call, message, in_graph):
    with pytest.raises(ValueError, match=message):
        tf.function(call)() if in_graph else call()


# Bad call-time bounds: ValueError eagerly, InvalidArgumentError (same text) in graphs.
BAD_DATA = [
    ("csparsemax", [0.0, 1.0, 2.0], [0.3, 0.3, 0.3], "must sum to at least 1"),
    ("csoftmax", [0.0, 1.0, 2.0], [0.3, 0.3, 0.3], "must sum to at least 1"),
    ("csoftmax", [0.0, 1.0, 2.0], [1.5, -0.1, 0.3], "must be nonnegative"),
    ("csparsemax", [0.0, 1.0, 2.0], [0.5, np.nan, 0.5], "`upper` must contain only finite values"),
    ("csoftmax", [0.0, 1.0, 2.0], [0.5, np.inf, 0.5], "`upper` must contain only finite values"),
]


@pytest.mark.parametrize("name, x, upper, message", BAD_DATA)
def test_bad_data_raises_value_error_eagerly_and_asserts_in_graphs(name, x, upper, message):
    x = tf.constant(x, tf.float64)
    upper = tf.constant(upper if upper is not None else [0.5, 0.5, 0.5], tf.float64)
    with pytest.raises(ValueError, match=message):
        OPS[name](x, upper)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tf.function(OPS[name])(x, upper)


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_x_gives_nan_not_an_error(name, bad):
    # As softmax does: no check (and no host copy) of x; the slice is NaN, the others are untouched.
    x = np.array([[bad, 0.0, 1.0], [2.0, 0.0, 1.0]])
    upper = np.full((2, 3), 0.5)
    for y in (OPS[name](x, upper), tf.function(OPS[name])(tf.constant(x), tf.constant(upper))):
        assert np.all(np.isnan(y[0])) and np.all(np.isfinite(y[1]))
        np.testing.assert_allclose(y[1], OPS[name](x[1:], upper[1:])[0], atol=1e-15)

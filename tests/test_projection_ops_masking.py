"""Masks, -inf, NaN and +inf in the projection ops (the conventions of keras.layers.Softmax).

An excluded entry (mask False or x = -inf) gets exactly 0 and a zero
gradient; the included ones solve the problem restricted to them (checked
against the exact references of test_projection_ops_exactness). Eagerly, no
tensor is copied to the host.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from test_projection_ops_exactness import NAMES, K, call_op, exact_projection

from keras_optlayers.ops import _projection_utils, csoftmax, csparsemax, lml, sparsemax

ROWS, N = 5, 6


def _case(seed: int):
    """Scores, bounds and a mask leaving at least K + 1 entries in each row (one tie)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((ROWS, N))
    x[:, 1] = x[:, 0]
    upper = rng.uniform(0.3, 0.6, (ROWS, N))
    mask = rng.uniform(size=(ROWS, N)) < 0.7
    mask[:, : K + 1] = True
    for row in range(ROWS):
        rng.shuffle(mask[row])
    return x, upper, mask


def _restricted_reference(name, x, upper, mask):
    """The exact answer of each row restricted to its included entries, zeros elsewhere."""
    y = np.zeros_like(x)
    for row in range(x.shape[0]):
        kept = mask[row]
        y[row, kept] = exact_projection(name, x[row, kept], upper[row, kept])
    return y


@pytest.mark.parametrize("name", NAMES)
def test_masked_entries_are_excluded(name, run):
    x, upper, mask = _case(0)
    # Row bounds restricted to the mask still sum past 1: rescale each row's kept bounds.
    upper = np.where(mask, upper / np.minimum(1.0, (upper * mask).sum(-1, keepdims=True)), upper)
    y = run(lambda x, u, m: call_op(name, x, u, m), tf.constant(x), tf.constant(upper), tf.constant(mask))
    np.testing.assert_allclose(y, _restricted_reference(name, x, upper, mask), rtol=1e-12, atol=1e-14)
    assert np.all(y.numpy()[~mask] == 0)
    # -inf scores exclude the same entries, with the same result.
    minus_inf = run(lambda x, u: call_op(name, x, u), tf.constant(np.where(mask, x, -np.inf)), tf.constant(upper))
    np.testing.assert_array_equal(minus_inf, y)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_with_a_mask(name, run):
    x, upper, mask = _case(1)
    x = x + np.random.default_rng(2).standard_normal(x.shape) * 1e-3  # off the tie: FD needs smoothness
    upper = np.where(mask, upper / np.minimum(1.0, (upper * mask).sum(-1, keepdims=True)), upper)
    weights = np.random.default_rng(3).standard_normal(x.shape)

    def gradients(x, u, m):
        with tf.GradientTape() as tape:
            tape.watch([x, u])
            functional = tf.reduce_sum(weights * call_op(name, x, u, m))
        return tape.gradient(functional, [x, u], unconnected_gradients="zero")

    grad_x, grad_u = run(gradients, tf.constant(x), tf.constant(upper), tf.constant(mask))
    assert np.all(grad_x.numpy()[~mask] == 0) and np.all(grad_u.numpy()[~mask] == 0)
    step = 1e-6
    rng = np.random.default_rng(4)
    for which, gradient in ((0, grad_x), (1, grad_u)) if name.startswith("c") else ((0, grad_x),):
        direction = rng.standard_normal(x.shape)
        inputs = [x.copy(), upper.copy()]
        inputs[which] = inputs[which] + step * direction
        plus = call_op(name, *inputs, mask).numpy()
        inputs[which] = inputs[which] - 2 * step * direction
        minus = call_op(name, *inputs, mask).numpy()
        directional = np.sum(weights * (plus - minus)) / (2 * step)
        np.testing.assert_allclose(np.sum(gradient.numpy() * direction), directional, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_plus_inf_poison_only_their_row(name, run):
    x, upper, _ = _case(2)
    x[1, 3] = np.nan
    x[2, 0] = np.inf
    x[3, 2] = np.nan  # excluded by the mask below: ignored
    mask = np.ones_like(x, bool)
    mask[3, 2] = False

    def value_and_gradient(x, u, m):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = call_op(name, x, u, m)
            functional = tf.reduce_sum(y * tf.range(N, dtype=y.dtype))
        return y, tape.gradient(functional, x)

    y, gradient = run(value_and_gradient, tf.constant(x), tf.constant(upper), tf.constant(mask))
    y, gradient = y.numpy(), gradient.numpy()
    assert np.all(np.isnan(y[1:3])) and np.all(np.isnan(gradient[1:3]))
    clean_rows = [0, 3, 4]
    assert np.all(np.isfinite(y[clean_rows])) and np.all(np.isfinite(gradient[clean_rows]))
    expected = _restricted_reference(name, x[clean_rows], upper[clean_rows], mask[clean_rows])
    np.testing.assert_allclose(y[clean_rows], expected, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_a_row_with_nothing_included_is_zero(name, run):
    x = tf.constant([[0.5, -1.0, 2.0], [-np.inf, -np.inf, -np.inf]])
    mask = tf.constant([[False, False, False], [True, True, True]])

    def value_and_gradient(x, m):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = call_op(name, x, 0.5, m)
            functional = tf.reduce_sum(y * tf.constant([1.0, 2.0, 3.0], y.dtype))
        return y, tape.gradient(functional, x)

    y, gradient = run(value_and_gradient, x, mask)
    np.testing.assert_array_equal(y, np.zeros((2, 3)))
    np.testing.assert_array_equal(gradient, np.zeros((2, 3)))


def test_lml_with_k_or_fewer_included_entries(run):
    x = tf.constant([[0.3, 5.0, -2.0, 1.0], [0.3, 5.0, -2.0, 1.0]])
    # Row 0 keeps exactly k = 2 entries: the only feasible point puts 1 on both.
    # Row 1 keeps one: sum(y) = 2 is infeasible, so the row is NaN.
    mask = tf.constant([[True, False, True, False], [False, True, False, False]])

    def value_and_gradient(x, m):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = lml(x, 2, mask=m)
            functional = tf.reduce_sum(y * tf.constant([1.0, 2.0, 3.0, 4.0]))
        return y, tape.gradient(functional, x)

    y, gradient = run(value_and_gradient, x, mask)
    np.testing.assert_array_equal(y[0], [1, 0, 1, 0])
    np.testing.assert_array_equal(gradient[0], [0, 0, 0, 0])
    assert np.all(np.isnan(y[1])) and np.all(np.isnan(gradient[1].numpy()[[1]]))


@pytest.mark.parametrize("op", [csparsemax, csoftmax], ids=["csparsemax", "csoftmax"])
def test_included_bounds_below_one_give_nan(op, run):
    # The whole-row bounds pass the check (sums 1.2, 1.4); row 0's included ones sum to 0.6.
    x = tf.constant([[0.3, 5.0, -2.0], [0.3, 5.0, -2.0]])
    upper = tf.constant([[0.3, 0.6, 0.3], [0.5, 0.6, 0.3]])
    mask = tf.constant([[True, False, True], [True, True, False]])
    y = run(lambda x, u, m: op(x, u, mask=m), x, upper, mask).numpy()
    assert np.all(np.isnan(y[0]))
    # Row 1 is feasible: entry 1 sits at its cap, entry 0 takes the rest.
    np.testing.assert_allclose(y[1], [0.4, 0.6, 0], atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_mask_broadcasts_and_follows_the_axis(name, run):
    x, upper, _ = _case(5)
    row_mask = np.array([True, True, False, True, True, True])
    full = call_op(name, x, upper, np.broadcast_to(row_mask, x.shape)).numpy()
    broadcast = run(lambda x, u, m: call_op(name, x, u, m), tf.constant(x), tf.constant(upper), tf.constant(row_mask))
    np.testing.assert_array_equal(broadcast, full)
    along_first = {
        "sparsemax": lambda x, u, m: sparsemax(x, axis=0, mask=m),
        "csparsemax": lambda x, u, m: csparsemax(x, u, axis=0, mask=m),
        "csoftmax": lambda x, u, m: csoftmax(x, u, axis=0, mask=m),
        "lml": lambda x, u, m: lml(x, K, axis=0, mask=m),
    }[name]
    transposed = run(along_first, tf.constant(x.T), tf.constant(upper.T), tf.constant(row_mask[:, None]))
    np.testing.assert_allclose(transposed, full.T, atol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_mask_and_bounds_of_the_wrong_shape_are_rejected(name, run):
    x = tf.zeros((2, 4))
    with pytest.raises(ValueError, match=r"Expected `mask` broadcastable .* Received: mask.shape=\(3,\)"):
        run(lambda x, m: call_op(name, x, 0.5, m), x, tf.ones((3,), tf.bool))
    with pytest.raises(ValueError, match=r"Received: mask.shape=\(5, 2, 4\)"):
        run(lambda x, m: call_op(name, x, 0.5, m), x, tf.ones((5, 2, 4), tf.bool))
    if name.startswith("c"):
        with pytest.raises(ValueError, match=r"Expected `upper` broadcastable .* Received: upper.shape=\(2, 3\)"):
            run(lambda x, u: call_op(name, x, u), x, tf.ones((2, 3)))


@pytest.mark.parametrize("name", NAMES)
def test_xla_with_masks_matches_eager(name):
    x, upper, mask = _case(6)
    x[0] *= 1e3
    x[1] *= 1e20
    x[2, 0] = -np.inf
    upper = np.where(mask, upper / np.minimum(1.0, (upper * mask).sum(-1, keepdims=True)), upper)
    inputs = [tf.constant(x), tf.constant(upper), tf.constant(mask)]

    def value_and_gradients(x, u, m):
        with tf.GradientTape() as tape:
            tape.watch([x, u])
            y = call_op(name, x, u, m)
            functional = tf.reduce_sum(tf.sin(y))
        return y, tape.gradient(functional, [x, u], unconnected_gradients="zero")

    eager_y, eager_grads = value_and_gradients(*inputs)
    xla_y, xla_grads = tf.function(value_and_gradients, jit_compile=True)(*inputs)
    np.testing.assert_allclose(xla_y, eager_y, atol=1e-12)
    for xla_grad, eager_grad in zip(xla_grads, eager_grads):
        np.testing.assert_allclose(xla_grad, eager_grad, atol=1e-10)


@pytest.mark.parametrize("op", [csparsemax, csoftmax], ids=["csparsemax", "csoftmax"])
def test_xla_returns_nan_for_bad_bounds(op):
    # XLA drops the assertions; the slices with bad bounds come out NaN instead.
    x = tf.constant([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    upper = tf.constant([[0.3, 0.3, 0.3], [1.5, -0.1, 0.3], [0.5, 0.5, 0.5]])
    y = tf.function(lambda x, u: op(x, u), jit_compile=True)(x, upper).numpy()
    assert np.all(np.isnan(y[:2])) and np.all(np.isfinite(y[2]))


@pytest.fixture
def no_host_copies(monkeypatch):
    """Makes any EagerTensor.numpy() call (a device-to-host copy) fail."""
    from tensorflow.python.framework import ops

    def refuse(self):
        raise AssertionError("a projection op copied a tensor to the host")

    monkeypatch.setattr(ops._EagerTensorBase, "numpy", refuse)


@pytest.mark.parametrize("name", NAMES)
def test_eager_calls_do_not_copy_to_the_host(name, no_host_copies):
    x, upper, mask = _case(7)
    x[0, 0] = np.nan  # no check on x either: NaN propagates
    upper = np.where(mask, upper / np.minimum(1.0, (upper * mask).sum(-1, keepdims=True)), upper)
    with tf.GradientTape() as tape:
        x = tf.constant(x)
        tape.watch(x)
        y = call_op(name, x, tf.constant(upper), tf.constant(mask))
    tape.gradient(y, x)
    assert isinstance(y, tf.Tensor) and y.shape == (ROWS, N)


def test_compiled_functions_sit_in_a_bounded_lru(monkeypatch):
    monkeypatch.setattr(_projection_utils, "COMPILED_CACHE_SIZE", 2)
    runner = _projection_utils.ProjectionRunner(lambda x, included: x)
    x = tf.zeros((2, 3, 4))
    for axis in (0, 1, 2, 0):
        runner(x, [], None, axis)
    # Three distinct keys, capacity two: axis 1 (least recently used) was evicted.
    assert [key[0] for key in runner._compiled] == [2, 0]


@pytest.mark.parametrize("name", NAMES)
def test_persistent_tape_gradients_stay_finite(name):
    # A persistent tape also backpropagates zeros through the ops inside the
    # custom gradients: no intermediate may be inf with an inf derivative there.
    x, upper, mask = _case(8)
    x[0] *= 1e30
    x[1, 2] = -np.inf
    upper = np.where(mask, upper / np.minimum(1.0, (upper * mask).sum(-1, keepdims=True)), upper)
    excluded = ~mask | np.isinf(x)
    x, upper, mask = tf.constant(x), tf.constant(upper), tf.constant(mask)
    weights = np.random.default_rng(9).standard_normal((ROWS, N))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, upper])
        y = call_op(name, x, upper, mask)
        functionals = [tf.reduce_sum(weights * y), tf.reduce_sum(tf.sin(y))]
    for functional in functionals:
        grad_x, grad_u = tape.gradient(functional, [x, upper], unconnected_gradients="zero")
        assert np.all(np.isfinite(grad_x)) and np.all(np.isfinite(grad_u))
        assert np.all(grad_x.numpy()[excluded] == 0) and np.all(grad_u.numpy()[excluded] == 0)

"""One graph function for a computation a graph calls more than once (keras_optlayers.solvers.traced_once)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from test_qp_solver import kkt_constructed_qp
from test_socp_solver import ball_projection_data

from keras_optlayers.solvers.qp import interior_point as qp_interior_point
from keras_optlayers.solvers.qp import qp_solve
from keras_optlayers.solvers.qp import solve as qp_solve_module
from keras_optlayers.solvers.socp import interior_point, socp_solve
from keras_optlayers.solvers.socp import solve as solve_module
from keras_optlayers.solvers.traced_once import traced_once


def _counted(function):
    """`function` and a list that grows by one at each Python call (a trace, inside a graph)."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(None)
        return function(*args, **kwargs)

    return counted, calls


def _scaled_sum(pair, nothing, scale):
    """A nest with a None leaf and a scalar: (x, y) -> x·scale + Σ y, row by row."""
    assert nothing is None
    x, y = pair
    return x * scale + tf.reduce_sum(y, axis=-1, keepdims=True)


def test_calls_on_different_batch_sizes_share_one_trace():
    function, calls = _counted(_scaled_sum)
    shared = traced_once(function)

    @tf.function
    def twice(x, y):
        rows = tf.where(x[:, 0] > 0)[:, 0]  # a batch of a size known only when run
        return shared((x, y), None, tf.constant(2.0)), shared((tf.gather(x, rows), tf.gather(y, rows)), None, tf.constant(3.0))

    x = tf.constant(np.arange(16.0)[:, None] * (-1.0) ** np.arange(16)[:, None], tf.float32)  # more than a small batch
    y = tf.reshape(tf.range(48.0), (16, 3))
    whole, gathered = twice(x, y)
    assert len(calls) == 1
    np.testing.assert_allclose(whole.numpy(), x.numpy() * 2 + y.numpy().sum(-1, keepdims=True))
    positive = x.numpy()[:, 0] > 0
    np.testing.assert_allclose(gathered.numpy(), (x.numpy() * 3 + y.numpy().sum(-1, keepdims=True))[positive])


def test_a_small_batch_keeps_its_static_size():
    """A batch known to be small (`shrinking_batch.is_small_batch`) is traced for its size: the solvers' loops then
    iterate it whole, without the shrinking batch's gathers."""
    seen = []

    def function(pair, nothing, scale):
        seen.append(pair[0].shape[0])
        return _scaled_sum(pair, nothing, scale)

    shared = traced_once(function)
    x, y = tf.constant([[1.0], [-1.0]]), tf.ones((2, 3))
    result = tf.function(lambda x, y: shared((x, y), None, tf.constant(2.0)))(x, y)
    assert seen == [2]
    np.testing.assert_allclose(result.numpy(), x.numpy() * 2 + 3)


def test_eager_and_xla_calls_run_the_function_inline():
    function, calls = _counted(_scaled_sum)
    shared = traced_once(function)
    x, y = tf.constant([[1.0], [2.0]]), tf.ones((2, 3))
    expected = x.numpy() * 2 + 3
    np.testing.assert_allclose(shared((x, y), None, tf.constant(2.0)).numpy(), expected)
    assert len(calls) == 1  # eagerly: the function itself, op by op
    compiled = tf.function(lambda x, y: shared((x, y), None, tf.constant(2.0)), jit_compile=True)
    np.testing.assert_allclose(compiled(x, y).numpy(), expected)


@pytest.mark.parametrize("compile_graph", [False, True, "xla"], ids=["eager", "tf.function", "xla"])
def test_the_computation_is_cut_from_gradient_tapes(compile_graph):
    shared = traced_once(_scaled_sum)

    def gradient(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(shared((x, y), None, tf.constant(2.0))) + tf.reduce_sum(x)
        return tape.gradient(total, x)

    if compile_graph:
        gradient = tf.function(gradient, jit_compile=compile_graph == "xla")
    x, y = tf.constant([[1.0], [2.0]]), tf.ones((2, 3))
    # Only the term outside the shared computation has a gradient.
    np.testing.assert_allclose(gradient(x, y).numpy(), np.ones((2, 1)))


def test_socp_solve_traces_its_loop_once(monkeypatch):
    """The loop runs a second time for examples whose polish is rejected; its graph is held once."""
    counted, calls = _counted(interior_point.solve_conic)
    monkeypatch.setattr(solve_module, "solve_conic", counted)
    A, b, c, cones = (tf.constant(v) if isinstance(v, np.ndarray) else v for v in ball_projection_data(np.ones((3, 4))))
    solve = tf.function(lambda A, b, c: socp_solve(A, b, c, cones, tol=1e-10)[0])
    solve.get_concrete_function(A, b, c)
    assert len(calls) == 1
    np.testing.assert_allclose(solve(A, b, c).numpy(), socp_solve(A, b, c, cones, tol=1e-10)[0].numpy(), atol=1e-12)


def test_qp_solve_traces_its_loop_once(monkeypatch):
    """As for the SOCP solve: the QP loop's second run, for examples whose polish fails, is the same graph function."""
    counted, calls = _counted(qp_interior_point.solve_inequality_qp)
    monkeypatch.setattr(qp_solve_module, "solve_inequality_qp", counted)
    data, x0 = kkt_constructed_qp(np.random.default_rng(3), 4, 6, 2, 8, 3)
    args = [tf.constant(data[name]) for name in ("P", "q", "A", "b", "G", "h")]
    solve = tf.function(lambda *args: qp_solve(*args, tol=1e-10))
    solve.get_concrete_function(*args)
    assert len(calls) == 1
    np.testing.assert_allclose(solve(*args).numpy(), x0, atol=1e-9)

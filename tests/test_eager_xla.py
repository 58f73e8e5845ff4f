"""Eager small batches called often move to XLA (keras_optlayers/eager_xla.py).

The suite runs with eager XLA off (conftest.py); these tests turn it on with
a low call count, wait for the background compilation, and check that the
XLA twins then serve the calls with the plain graph's answers and
gradients, the failure policy by batch index, and the statistics.
"""

from __future__ import annotations

import logging

import cvxpy as cp
import numpy as np
import pytest
import tensorflow as tf
from helpers import finite_difference_gradients, loss_and_gradients
from test_eager_native_gradient import layer_and_values

from keras_optlayers import CvxpyLayer, SolverError, eager_xla
from keras_optlayers.solvers.qp import qp_solve
from keras_optlayers.solvers.qp import solve as qp_solve_module


@pytest.fixture
def calls_before_xla():
    """Sets eager XLA's call count for one test; waits for its compilations and restores the setting after."""
    previous = eager_xla.eager_xla_after()
    yield eager_xla.set_eager_xla_after
    assert eager_xla.wait_for_eager_xla(timeout=300)
    eager_xla.set_eager_xla_after(previous)


def _native_solve(layer):
    """The layer's one eager compiled solve (`solution_replay.CompiledSolve`)."""
    (solve,) = [f for key, f in layer.batched_problem._functions.items() if key[0] == "native"]
    return solve


def _box_layer(**kwargs):
    """min ||x - a||² s.t. b <= x <= 0: infeasible where an entry of b is positive."""
    x, a, b = cp.Variable(2), cp.Parameter(2), cp.Parameter(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - a)), [x >= b, x <= 0])
    layer = CvxpyLayer(problem, [a, b], [x], **kwargs)
    assert layer.batched_problem.solver.name == "QP"
    return layer


@pytest.mark.parametrize("solver", ["QP", "SOCP"])
def test_xla_twins_serve_after_the_set_number_of_calls_with_the_plain_answers(solver, calls_before_xla):
    calls_before_xla(2)
    layer, values, weights = layer_and_values(solver)
    tensors = [tf.constant(v) for v in values]
    compute = loss_and_gradients(layer, weights)
    plain_loss, plain_gradients = compute(*tensors)
    solve = _native_solve(layer)
    assert not solve._xla_started  # one call: not yet

    compute(*tensors)  # the second call starts the compilation
    assert len(solve._xla_started) == 1
    assert eager_xla.wait_for_eager_xla(timeout=300)
    assert solve._xla_ready == solve._xla_started
    layer.reset_solver_statistics()
    xla_loss, xla_gradients = compute(*tensors)

    # The compilation's own first call is not counted; the XLA call is, once.
    statistics = layer.solver_statistics()
    assert statistics["calls"] == 1 and statistics["failures"] == 0
    assert statistics["mean_iterations"] > 0
    np.testing.assert_allclose(xla_loss.numpy(), plain_loss.numpy(), rtol=1e-9)
    for xla, plain in zip(xla_gradients, plain_gradients):
        np.testing.assert_allclose(xla.numpy(), plain.numpy(), rtol=1e-7, atol=1e-9)
    for xla, expected in zip(xla_gradients, finite_difference_gradients(layer, weights, values)):
        np.testing.assert_allclose(xla.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_failures_after_the_move_to_xla_are_raised_and_masked_by_batch_index(calls_before_xla):
    calls_before_xla(1)
    feasible = [np.array([[0.5, -2.0]]), np.array([[-1.0, -1.0]])]
    infeasible = [feasible[0], np.array([[-1.0, 1.0]])]
    raising, masking = _box_layer(), _box_layer(on_failure="nan")
    for layer in (raising, masking):
        np.testing.assert_allclose(layer(*feasible)[0].numpy(), [[0.0, -1.0]], atol=1e-7)
    assert eager_xla.wait_for_eager_xla(timeout=300)
    assert _native_solve(raising)._xla_ready and _native_solve(masking)._xla_ready

    with pytest.raises(SolverError, match=r"infeasible.*\[0\]"):
        raising(*infeasible)
    masked = masking(*infeasible)[0].numpy()
    assert np.isnan(masked).all()
    np.testing.assert_allclose(raising(*feasible)[0].numpy(), [[0.0, -1.0]], atol=1e-7)


def test_qp_solve_moves_to_xla_too(calls_before_xla):
    calls_before_xla(1)
    P, q = np.eye(3)[None], np.array([[1.0, -2.0, 0.5]])
    G, h = np.eye(3)[None], np.zeros((1, 3))
    plain = qp_solve(P, q, G=G, h=h)
    assert eager_xla.wait_for_eager_xla(timeout=300)
    assert any(solve._xla_ready for solve in qp_solve_module._COMPILED_SOLVES.values())
    np.testing.assert_allclose(qp_solve(P, q, G=G, h=h).numpy(), plain.numpy(), atol=1e-12)
    np.testing.assert_allclose(plain.numpy(), [[-1.0, 0.0, -0.5]], atol=1e-7)


def test_large_batches_and_eager_xla_off_compile_nothing(calls_before_xla):
    calls_before_xla(1)
    layer = _box_layer()
    large = [np.tile([[0.5, -2.0]], (16, 1)), np.full((16, 2), -1.0)]
    for _ in range(3):
        layer(*large)
    assert not _native_solve(layer)._xla_started

    calls_before_xla(None)
    small = [large[0][:1], large[1][:1]]
    for _ in range(3):
        layer(*small)
    assert not _native_solve(layer)._xla_started


def test_a_failed_compilation_is_logged_and_the_plain_graph_goes_on(calls_before_xla, caplog, monkeypatch):
    calls_before_xla(2)
    layer = _box_layer()
    values = [np.array([[0.5, -2.0]]), np.array([[-1.0, -1.0]])]
    layer(*values)  # makes the layer's compiled solve; the second call will start the compilation
    solve = _native_solve(layer)

    def refuse(*args, **kwargs):
        raise RuntimeError("no XLA here")

    monkeypatch.setattr(solve, "_xla_forward", refuse)
    with caplog.at_level(logging.WARNING, logger="keras_optlayers.eager_xla"):
        layer(*values)
        assert eager_xla.wait_for_eager_xla(timeout=60)
    assert "did not compile with XLA" in caplog.text and "no XLA here" in caplog.text
    assert not solve._xla_ready
    np.testing.assert_allclose(layer(*values)[0].numpy(), [[0.0, -1.0]], atol=1e-7)


@pytest.mark.parametrize("calls", [0, -3, 2.5, True, "10"])
def test_call_count_must_be_a_positive_integer(calls):
    with pytest.raises(ValueError, match=f"Received: {calls!r}"):
        eager_xla.set_eager_xla_after(calls)


@pytest.mark.parametrize("value, expected", [("off", None), ("None", None), ("0", None), ("25", 25)])
def test_call_count_from_the_environment(value, expected, monkeypatch):
    monkeypatch.setenv("KERAS_OPTLAYERS_EAGER_XLA_AFTER", value)
    assert eager_xla._calls_from_environment() == expected


def test_a_malformed_environment_value_is_refused(monkeypatch):
    monkeypatch.setenv("KERAS_OPTLAYERS_EAGER_XLA_AFTER", "soon")
    with pytest.raises(ValueError, match="KERAS_OPTLAYERS_EAGER_XLA_AFTER.*Received: 'soon'"):
        eager_xla._calls_from_environment()


def test_no_more_shapes_move_than_a_solve_may_keep(calls_before_xla, monkeypatch):
    monkeypatch.setattr(eager_xla, "SHAPES_PER_SOLVE", 1)
    calls_before_xla(1)
    layer = _box_layer()
    for batch in (1, 2):
        layer(np.tile([[0.5, -2.0]], (batch, 1)), np.full((batch, 2), -1.0))
    assert len(_native_solve(layer)._xla_started) == 1


def test_twins_are_kept_per_device(calls_before_xla):
    calls_before_xla(1)
    layer = _box_layer()
    values = [np.array([[0.5, -2.0]]), np.array([[-1.0, -1.0]])]
    layer(*values)
    assert eager_xla.wait_for_eager_xla(timeout=300)
    solve = _native_solve(layer)
    (ready,) = solve._xla_ready
    calls_before_xla(2)
    with tf.device("/CPU:0"):
        np.testing.assert_allclose(layer(*values)[0].numpy(), [[0.0, -1.0]], atol=1e-7)
    # Counted for the device the call named, and served by the plain graph: XLA programs are per device.
    assert solve._xla_ready == {ready}
    assert [count for key, count in solve._small_batch_calls.items() if key != ready] == [1]


def test_nothing_moves_under_a_strategy_or_with_functions_run_eagerly(calls_before_xla):
    calls_before_xla(1)
    layer = _box_layer()
    values = [np.array([[0.5, -2.0]]), np.array([[-1.0, -1.0]])]
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        layer(*values)
    tf.config.run_functions_eagerly(True)
    try:
        layer(*values)
    finally:
        tf.config.run_functions_eagerly(False)
    assert not _native_solve(layer)._xla_started


def test_a_numpy_integer_count_is_accepted(calls_before_xla):
    calls_before_xla(np.int64(7))
    assert eager_xla.eager_xla_after() == 7 and type(eager_xla.eager_xla_after()) is int

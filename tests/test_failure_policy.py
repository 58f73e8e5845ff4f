"""on_failure: "raise", "warn" or "nan", on the native and the host path, eagerly and in graphs."""

from __future__ import annotations

import cvxpy as cp
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_optlayers as kol
from keras_optlayers.errors import SolverError


def interval_layer(solver, on_failure):
    """argmin ||y - x||² s.t. lower <= y <= upper: infeasible where lower > upper."""
    x, lower, upper = cp.Parameter(2), cp.Parameter(2), cp.Parameter(2)
    y = cp.Variable(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [lower <= y, y <= upper])
    return kol.CvxpyLayer(problem, [x, lower, upper], [y], solver=solver, on_failure=on_failure)


X = np.array([[2.0, -2.0], [0.5, 0.5], [3.0, 3.0]])
LOWER = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
UPPER = np.array([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])  # example 1 is infeasible
SOLVERS = [None, "Clarabel"]  # the native QP path, the host path


@pytest.fixture(params=["eager", "tf_function"])
def call(request):
    def run(layer, *args):
        if request.param == "eager":
            return layer(*args)
        return tf.function(lambda *a: layer(*a))(*args)
    run.eager = request.param == "eager"
    return run


@pytest.mark.parametrize("solver", SOLVERS)
def test_raise_names_the_layer_status_and_index(solver, call):
    layer = interval_layer(solver, "raise")
    expected = SolverError if call.eager else (SolverError, tf.errors.InvalidArgumentError, tf.errors.UnknownError)
    with pytest.raises(expected, match=r"batch indices \[1\]"):
        call(layer, X, LOWER, UPPER)


@pytest.mark.parametrize("solver", SOLVERS)
def test_nan_fails_only_the_failed_example_and_trains_the_rest(solver, call):
    layer = interval_layer(solver, "nan")
    x = tf.Variable(X)
    with pytest.warns(RuntimeWarning, match=r"batch indices \[1\]") if call.eager else _no_check():
        def loss_and_grad(x_value):
            with tf.GradientTape() as tape:
                y, = layer(x_value, LOWER, UPPER)
                finite = tf.where(tf.math.is_finite(y), y, tf.zeros_like(y))
                loss = tf.reduce_sum(finite * tf.constant([[1.0, 2.0]], tf.float64))
            return y, tape.gradient(loss, x_value)
        y, grad = loss_and_grad(x) if call.eager else tf.function(loss_and_grad)(x)
    y, grad = y.numpy(), grad.numpy()
    assert np.all(np.isnan(y[1]))
    np.testing.assert_allclose(y[[0, 2]], [[1.0, 0.0], [1.0, 1.0]], atol=1e-6)
    np.testing.assert_array_equal(grad[1], 0.0)
    # Every coordinate is at a bound: the gradient vanishes (to the interior-point solvers' accuracy).
    np.testing.assert_allclose(grad[[0, 2]], [[0.0, 0.0], [0.0, 0.0]], atol=1e-4)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("solver", SOLVERS)
def test_warn_keeps_the_solvers_output_with_zero_gradient(solver):
    layer = interval_layer(solver, "warn")
    x = tf.constant(X)
    with pytest.warns(RuntimeWarning, match="solver's last iterates"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y, = layer(x, LOWER, UPPER)
            loss = tf.reduce_sum(y)
    assert np.all(np.isfinite(y.numpy()))
    np.testing.assert_array_equal(tape.gradient(loss, x).numpy()[1], 0.0)


def test_statistics_count_failures_and_the_callback_logs_them():
    layer = interval_layer(None, "nan")
    x = keras.Input((2,))
    y = layer(x, np.array([1.0, 1.0]), np.array([0.0, 0.0]))[0]  # always infeasible
    model = keras.Model(x, keras.layers.Lambda(lambda t: tf.where(tf.math.is_nan(t), tf.zeros_like(t), t))(y))
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(np.zeros((8, 2)), np.zeros((8, 2)), batch_size=4, epochs=2, verbose=0,
                        callbacks=[kol.SolverStatisticsCallback()])
    name = layer.name
    assert history.history[f"{name}/solver_failures"] == [8, 8]
    assert history.history[f"{name}/solver_examples"] == [8, 8]
    for statistic in ("mean_iterations", "solve_seconds", "worst_residual"):
        assert len(history.history[f"{name}/solver_{statistic}"]) == 2
    assert history.history[f"{name}/solver_worst_residual"] == [0.0, 0.0]  # nothing was solved


def _ball_layer(solver):
    """argmin ||y - x||² s.t. ||y|| <= 1: a second-order cone program."""
    x, y = cp.Parameter(3), cp.Variable(3)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [cp.norm(y) <= 1])
    return kol.CvxpyLayer(problem, [x], [y], solver=solver)


@pytest.mark.parametrize("solver", ["QP", "SOCP", "SCS", "Clarabel"])
@pytest.mark.parametrize("mode", ["eager", "tf_function"])
def test_statistics_report_iterations_time_and_the_worst_residual(solver, mode):
    """Every path reports its iterations, wall time and the check's worst measure."""
    rng = np.random.default_rng(0)
    if solver == "QP":
        layer = interval_layer(solver, "raise")
        args = (rng.normal(size=(6, 2)) * 2, np.zeros((6, 2)), np.ones((6, 2)))
    else:
        layer = _ball_layer(solver)
        args = (rng.normal(size=(6, 3)) * 2,)
    run = layer if mode == "eager" else tf.function(lambda *a: layer(*a))
    run(*args)
    run(*args)
    statistics = layer.solver_statistics()
    assert statistics["calls"] == 2 and statistics["examples"] == 12 and statistics["failures"] == 0
    most = 100_000 if solver == "SCS" else 100  # SCS is a first-order method
    assert 1 <= statistics["mean_iterations"] <= most
    assert 0 < statistics["solve_seconds"] < 60
    assert 0 <= statistics["worst_residual"] <= 1e-6
    if solver == "QP":  # the worst of the native check's own measures
        program = layer.batched_problem
        G = np.vstack([-np.eye(2), np.eye(2)])
        _, _, _, status, info = kol.qp_solve_with_info(2 * np.eye(2), -2 * args[0], G=G, h=np.concatenate(
            [-args[1], args[2]], axis=1))
        assert program.solver.name == "QP" and np.all(status.numpy() == 0)
        expected = max(float(np.max(info[name])) for name in ("primal_residual", "dual_residual", "gap"))
        # Rounding-level measures of the same QP; the layer solves it with its
        # auxiliary variable substituted out, hence not the same digits.
        assert expected / 10 <= statistics["worst_residual"] <= expected * 10
    layer.reset_solver_statistics()
    assert layer.solver_statistics() == {"calls": 0, "examples": 0, "failures": 0, "mean_iterations": 0.0,
                                         "solve_seconds": 0.0, "worst_residual": 0.0}


class _no_check:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("solver", SOLVERS)
def test_solver_error_in_fit_reaches_the_user_naming_layer_status_and_indices(solver):
    layer = interval_layer(solver, "raise")
    x = keras.Input((2,))
    lower = keras.Input((2,))
    upper = keras.Input((2,))
    model = keras.Model([x, lower, upper], layer(x, lower, upper)[0])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(SolverError) as info:
        with kol.solver_errors():
            model.fit([X, LOWER, UPPER], np.zeros((3, 2)), batch_size=3, shuffle=False, verbose=0)
    first_line = str(info.value).splitlines()[0]
    assert f"layer '{layer.name}'" in first_line and "batch indices [1]" in first_line, first_line
    assert info.value.batch_indices == [1] and info.value.layer == layer.name
    assert isinstance(info.value.__cause__, tf.errors.OpError)

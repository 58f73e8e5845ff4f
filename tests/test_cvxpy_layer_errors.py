"""Every error CvxpyLayer raises, eagerly and inside tf.function.

Construction errors and call-time input errors are ValueErrors naming the
culprit; in a graph an input error may instead surface when the graph runs,
as a TF error with the same text. Solver failures are SolverErrors naming the
status and the failing batch indices (in a graph: a TF error carrying that
text).
"""

import re

import cvxpy as cp
import numpy as np
import pytest
import tensorflow as tf
from helpers import TIGHT_SCS, least_squares, sparsemax

from keras_optlayers.errors import SolverError
from keras_optlayers.layers.cvxpy_layer import CvxpyLayer
from keras_optlayers.solvers.cone_solver import ConeSolver


def input_error(run):
    """Eagerly a ValueError; in a graph, a ValueError while tracing or a TF
    error when a graph check fires."""
    return ValueError if run.eager else (ValueError, tf.errors.InvalidArgumentError)


# -- construction ------------------------------------------------------------


def test_non_dpp_problem_says_why(run):
    a, b = cp.Parameter(name="a"), cp.Parameter(name="b")
    x = cp.Variable(name="x")
    problem = cp.Problem(cp.Minimize(cp.square(x - a * b)))
    with pytest.raises(ValueError, match=r"DPP.*parameter multiplies another parameter"):
        run(lambda: CvxpyLayer(problem, [a, b], [x], solver="SCS"))


def test_non_dcp_problem_says_why(run):
    a = cp.Parameter(name="a")
    x = cp.Variable(name="x")
    problem = cp.Problem(cp.Maximize(cp.square(x - a)))
    with pytest.raises(ValueError, match="not DCP"):
        run(lambda: CvxpyLayer(problem, [a], [x], solver="SCS"))


def test_missing_parameter_is_named(run):
    family = least_squares()
    A, _ = family.parameters
    with pytest.raises(ValueError, match=re.escape("missing from `parameters`: ['b']")):
        run(lambda: CvxpyLayer(family.problem, [A], family.variables, solver="SCS"))


def test_extra_parameter_is_named(run):
    family = least_squares()
    stray = cp.Parameter(2, name="stray")
    with pytest.raises(ValueError, match=re.escape("not in the problem: ['stray']")):
        run(lambda: CvxpyLayer(family.problem, [*family.parameters, stray], family.variables, solver="SCS"))


def test_variable_not_in_the_problem_is_named(run):
    family = least_squares()
    stray = cp.Variable(3, name="stray")
    with pytest.raises(ValueError, match=r"variables\[1\] \(stray\) is neither a variable of the problem"):
        run(lambda: CvxpyLayer(family.problem, family.parameters, [*family.variables, stray], solver="SCS"))


# -- call-time inputs --------------------------------------------------------


@pytest.fixture
def no_solve(monkeypatch):
    """Fails the test if any solve starts: input errors must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the solver ran before the input error was raised")

    monkeypatch.setattr(ConeSolver, "solve_with_status", refuse)


@pytest.fixture
def least_squares_layer():
    family = least_squares(m=5, n=3)
    return CvxpyLayer(family.problem, family.parameters, family.variables, solver="SCS")


def test_wrong_number_of_tensors(run, least_squares_layer, no_solve):
    with pytest.raises(ValueError, match=r"Expected 2 tensors.*Received: 1 tensors"):
        run(lambda t: least_squares_layer(t), tf.zeros((5, 3), tf.float64))


@pytest.mark.parametrize("b_shape", [(4,), (2, 4), (2, 5, 1)])
def test_wrong_shape_names_parameter_expected_and_received(run, least_squares_layer, no_solve, b_shape):
    expected = f"Parameter 'b' must have shape (5,) or (batch_size, *(5,)). Received: shape={b_shape}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        run(lambda *t: least_squares_layer(*t), tf.ones((2, 5, 3), tf.float64), tf.ones(b_shape, tf.float64))


def test_inconsistent_batch_sizes(run, least_squares_layer, no_solve):
    with pytest.raises(ValueError, match=r"share one batch size.*A: 2, b: 3"):
        run(lambda *t: least_squares_layer(*t), tf.ones((2, 5, 3), tf.float64), tf.ones((3, 5), tf.float64))


def test_inconsistent_batch_sizes_known_only_when_the_graph_runs(least_squares_layer, no_solve):
    solve = tf.function(lambda *t: least_squares_layer(*t), input_signature=[
        tf.TensorSpec([None, 5, 3], tf.float64), tf.TensorSpec([None, 5], tf.float64)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="share one batch size"):
        solve(tf.ones((2, 5, 3), tf.float64), tf.ones((3, 5), tf.float64))


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_is_rejected_before_solving(run, least_squares_layer, no_solve, bad_value):
    b = np.ones((2, 5))
    b[1, 3] = bad_value
    with pytest.raises(input_error(run), match=re.escape("Parameter 'b' contains NaN or Inf.")):
        run(lambda *t: least_squares_layer(*t), tf.ones((2, 5, 3), tf.float64), tf.constant(b))


def test_integer_tensor_is_rejected(run, least_squares_layer, no_solve):
    with pytest.raises(ValueError, match="Parameter 'A' must be a float32 or float64 tensor"):
        run(lambda *t: least_squares_layer(*t), tf.ones((5, 3), tf.int32), tf.ones((5,), tf.float64))


# -- solver failures -----------------------------------------------------------


def bounded_lp():
    """min c·x s.t. x >= lower, d·x <= upper, for a scalar x.

    (c, lower, d, upper) = (1, 0, 1, 1) solves, (1, 1, 1, 0) is infeasible,
    (-1, 0, 0, 1) is unbounded.
    """
    c, lower, d, upper = (cp.Parameter(name=name) for name in ("c", "lower", "d", "upper"))
    x = cp.Variable(name="x")
    problem = cp.Problem(cp.Minimize(c * x), [x >= lower, d * x <= upper])
    return problem, [c, lower, d, upper], [x]


SOLVED, INFEASIBLE, UNBOUNDED = (1.0, 0.0, 1.0, 1.0), (1.0, 1.0, 1.0, 0.0), (-1.0, 0.0, 0.0, 1.0)
SOLVERS = ["SCS", "ECOS", "Clarabel"]


def lp_batch(*examples):
    return [tf.constant(column, tf.float64) for column in np.array(examples).T]


def solver_failure(run):
    """Eagerly the SolverError itself; in a graph, a TF error with its text."""
    return SolverError if run.eager else tf.errors.OpError


@pytest.mark.parametrize("solver", SOLVERS)
def test_infeasible_and_unbounded_examples_are_named(run, solver):
    problem, parameters, variables = bounded_lp()
    layer = CvxpyLayer(problem, parameters, variables, solver=solver)
    batch = lp_batch(SOLVED, INFEASIBLE, UNBOUNDED, INFEASIBLE)

    with pytest.raises(solver_failure(run)) as caught:
        run(lambda *t: layer(*t), *batch)

    message = str(caught.value)
    assert f"{solver} could not solve the problem" in message, message
    assert "status 'infeasible (primal infeasible)' at batch indices [1, 3]" in message, message
    assert "status 'unbounded (dual infeasible)' at batch indices [2]" in message, message
    if run.eager:
        assert caught.value.batch_indices == [1, 2, 3]
        assert caught.value.statuses == {
            "infeasible (primal infeasible)": [1, 3], "unbounded (dual infeasible)": [2]}


@pytest.mark.parametrize("solver", SOLVERS)
def test_infeasible_single_example(run, solver):
    problem, parameters, variables = bounded_lp()
    layer = CvxpyLayer(problem, parameters, variables, solver=solver)
    with pytest.raises(solver_failure(run), match=re.escape("status 'infeasible (primal infeasible)' at batch indices [0]")):
        run(lambda *t: layer(*t), *[tf.constant(v, tf.float64) for v in INFEASIBLE])


def test_iteration_limited_solves_raise_naming_batch_indices():
    # A point the solver stopped at is checked, not trusted: it fails the check here.
    family = sparsemax()
    layer = CvxpyLayer(family.problem, family.parameters, family.variables, solver="SCS",
                       solver_args={"max_iters": 2, "eps": 1e-12})
    with pytest.raises(SolverError, match=re.escape("status 'iteration limit' at batch indices [0, 1]")):
        layer(tf.constant([[0.3, -0.1, 2.0, 0.5], [1.0, 0.0, -1.0, 0.5]], tf.float64))


# -- XLA -------------------------------------------------------------------------


def test_jit_compile_gives_a_clear_error():
    family = sparsemax()
    layer = CvxpyLayer(family.problem, family.parameters, family.variables, solver="SCS", solver_args=TIGHT_SCS)
    assert layer.supports_jit is False
    compiled = tf.function(lambda t: layer(t), jit_compile=True)
    with pytest.raises(ValueError, match="XLA.*jit_compile"):
        compiled(tf.constant([[0.3, -0.1, 2.0, 0.5]], tf.float64))

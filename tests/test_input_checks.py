"""Bad inputs get a clear ValueError naming the problem, before any solve (issue: no silent wrong answers)."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import tensorflow as tf

import keras_optlayers as kol
from keras_optlayers.core.problems import sparsemax_problem
from keras_optlayers.solvers.cone_solver import ConeSolver

torch = pytest.importorskip("torch")
import keras_optlayers.torch as kot  # noqa: E402


@pytest.fixture
def no_solve(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the solver ran before the input error was raised")

    monkeypatch.setattr(ConeSolver, "solve_with_status", refuse)


def test_integer_and_boolean_variables_are_named_at_construction():
    x = cp.Parameter(2)
    y, z = cp.Variable(2, integer=True, name="counts"), cp.Variable(boolean=True, name="switch")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x) + z))
    with pytest.raises(ValueError, match=r"integer or boolean.*\['counts', 'switch'\]"):
        kol.CvxpyLayer(problem, [x], [y])
    with pytest.raises(ValueError, match=r"\['counts', 'switch'\]"):
        kot.CvxpyLayer(problem, [x], [y])


def geometric_layer(front_end):
    a = cp.Parameter(pos=True, name="a")
    x = cp.Variable(pos=True)
    problem = cp.Problem(cp.Minimize(x + a / x))
    return front_end.CvxpyLayer(problem, [a], [x], gp=True, solver="SCS")


def test_gp_parameters_must_be_positive_before_any_solve(no_solve):
    with pytest.raises(ValueError, match=r"Parameter 'a' must be positive.*gp=True.*minimum -1.0"):
        geometric_layer(kol)(tf.constant([4.0, -1.0], tf.float64))
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="must be positive: a geometric program"):
        tf.function(lambda a: geometric_layer(kol)(a))(tf.constant([4.0, 0.0], tf.float64))
    with pytest.raises(ValueError, match=r"Parameter 'a' must be positive"):
        geometric_layer(kot)(torch.tensor([4.0, -1.0]))


@pytest.mark.parametrize("solver", [None, "SCS"])
def test_empty_batch_returns_empty_outputs(solver):
    spec = sparsemax_problem(3)
    layer = kol.CvxpyLayer(spec.problem, spec.parameters, spec.variables, solver=solver)
    y, = layer(tf.zeros((0, 3)))
    assert y.shape == (0, 3)
    assert kol.PolytopeProjection(2)(np.zeros((0, 3), "float32")).shape == (0, 3)


def test_ragged_and_sparse_tensors_are_rejected(no_solve):
    spec = sparsemax_problem(3)
    layer = kol.CvxpyLayer(spec.problem, spec.parameters, spec.variables, solver="SCS")
    with pytest.raises(ValueError, match="must be a dense tensor.*Received: RaggedTensor"):
        layer(tf.ragged.constant([[1.0, 2.0, 3.0], [1.0]]))
    with pytest.raises(ValueError, match="must be a dense tensor.*Received: SparseTensor"):
        layer(tf.sparse.from_dense(tf.eye(3)))


def test_learnable_layer_rejects_another_input_size():
    layer = kol.PolytopeProjection(3)
    layer(np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match=r"built for inputs whose last dimension is 4. Received: .* 5"):
        layer(np.zeros((2, 5), "float32"))
    module = kot.PolytopeProjection(3)
    module(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"built for inputs whose last dimension is 4. Received: .* 5"):
        module(torch.zeros(2, 5))


def test_torch_none_parameter_is_named():
    spec = sparsemax_problem(3)
    layer = kot.CvxpyLayer(spec.problem, spec.parameters, spec.variables)
    with pytest.raises(ValueError, match=r"Parameter 'x' must be a tensor.*Received: x=None"):
        layer(None)
    with pytest.raises(ValueError, match=r"Received: x='abc'"):
        layer("abc")


def test_compare_layers_on_mismatched_shapes_says_so():
    with pytest.raises(ValueError, match=r"same shape. Received: fast output shape=\(2, 3\), reference output shape=\(2, 4\)"):
        kol.compare_layers(kol.Sparsemax(), lambda x: tf.zeros((2, 4), tf.float64), np.zeros((2, 3)))


def test_solver_args_of_the_wrong_type_fail_at_construction():
    with pytest.raises(ValueError, match=r"`solver_args` must be a dict.*Received: solver_args=\[1, 2\]"):
        kol.EllipsoidProjection(solver_args=[1, 2])
    spec = sparsemax_problem(3)
    with pytest.raises(ValueError, match=r"Received: solver_args=\[1, 2\]"):
        kot.CvxpyLayer(spec.problem, spec.parameters, spec.variables, solver_args=[1, 2])

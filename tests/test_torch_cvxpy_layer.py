"""The torch CvxpyLayer: gradients (gradcheck), batching, dtypes, errors, optional import."""

import subprocess
import sys
import textwrap

import cvxpy as cp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from keras_optlayers.errors import SolverError  # noqa: E402
from keras_optlayers.torch import CvxpyLayer  # noqa: E402

# Tight enough that solver noise stays far below gradcheck's tolerance.
TIGHT_SCS = {"eps": 1e-10, "max_iters": 100_000}


def gradcheck(layer, *inputs, solver_args=TIGHT_SCS):
    """Finite differences against the implicit gradient, through every output.

    The layers here solve with SCS: its solutions of these problems are
    exact on their active set, so 1e-6 differences see the solution map.
    Interior-point solutions (the default, Clarabel) carry about 1e-8 of
    noise, which such small differences would amplify.
    """
    def function(*tensors):
        return layer(*tensors, solver_args=solver_args)

    inputs = [torch.as_tensor(t, dtype=torch.float64).requires_grad_() for t in inputs]
    # eps well above the solver's accuracy, atol well below the gradients' size.
    assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-4, rtol=1e-3)


def rng(seed=0):
    return np.random.default_rng(seed)


# -- gradcheck on problem families ---------------------------------------------


def test_gradcheck_least_squares():
    A, b = cp.Parameter((5, 3)), cp.Parameter(5)
    x = cp.Variable(3)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b)))
    layer = CvxpyLayer(problem, parameters=[A, b], variables=[x], solver="SCS")
    gradcheck(layer, rng().normal(size=(5, 3)), rng(1).normal(size=5))


def test_gradcheck_qp_with_inequalities_batched():
    q, G, h = cp.Parameter(3), cp.Parameter((4, 3)), cp.Parameter(4)
    x = cp.Variable(3)
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) + q @ x), [G @ x <= h])
    layer = CvxpyLayer(problem, parameters=[q, G, h], variables=[x], solver="SCS")
    # q batched, G and h shared by the batch: their gradient is summed.
    gradcheck(layer, rng().normal(size=(2, 3)) * 2, rng(1).normal(size=(4, 3)), np.full(4, 0.5))


def test_gradcheck_logistic_regression_exponential_cone():
    X, y_labels = cp.Parameter((6, 2)), cp.Parameter(6)
    w, scores = cp.Variable(2), cp.Variable(6)
    # The scores are a variable of their own: X @ w inside logistic is not DPP.
    loss = cp.sum(cp.logistic(scores) - cp.multiply(y_labels, scores)) + 0.5 * cp.sum_squares(w)
    problem = cp.Problem(cp.Minimize(loss), [scores == X @ w])
    layer = CvxpyLayer(problem, parameters=[X, y_labels], variables=[w], solver="SCS")
    gradcheck(layer, rng().normal(size=(6, 2)), (rng(1).random(6) > 0.5).astype(float))


def test_gradcheck_second_order_cone():
    x, radius = cp.Parameter(3), cp.Parameter(nonneg=True)
    y = cp.Variable(3)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [cp.norm(y, 2) <= radius])
    layer = CvxpyLayer(problem, parameters=[x, radius], variables=[y], solver="SCS")
    gradcheck(layer, np.array([1.5, -0.8, 0.4]), np.array(0.7))


def test_gradcheck_semidefinite_program():
    C = cp.Parameter((2, 2))
    X = cp.Variable((2, 2), symmetric=True)
    problem = cp.Problem(cp.Minimize(cp.trace(C @ X) + cp.sum_squares(X)), [X >> 0, cp.trace(X) == 1])
    layer = CvxpyLayer(problem, parameters=[C], variables=[X], solver="SCS")
    gradcheck(layer, np.array([[1.0, 0.3], [-0.2, 0.5]]))


def test_gradcheck_lml_and_sparsemax():
    from keras_optlayers.core.problems import lml_problem, sparsemax_problem

    x = np.array([1.2, -0.3, 0.4, 0.1])
    for spec in (lml_problem(4, 2.0), sparsemax_problem(4)):
        gradcheck(CvxpyLayer(*spec, solver="SCS"), x)


def test_gradcheck_geometric_program():
    a, b = cp.Parameter(pos=True), cp.Parameter(pos=True)
    x, y = cp.Variable(pos=True), cp.Variable(pos=True)
    problem = cp.Problem(cp.Minimize(x * y + a / x + 1 / y), [b * x <= 2])
    layer = CvxpyLayer(problem, parameters=[a, b], variables=[x, y], gp=True, solver="SCS")
    gradcheck(layer, np.array(1.5), np.array(0.8))


# -- values, batching and dtypes -------------------------------------------------


@pytest.fixture(scope="module")
def relu_layer():
    x = cp.Parameter(3, name="x")
    y = cp.Variable(3)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [y >= 0])
    return CvxpyLayer(problem, parameters=[x], variables=[y], solver_args=TIGHT_SCS)


def test_values_batching_dtype_and_device(relu_layer):
    x = torch.tensor([[-1.0, 0.5, 2.0], [3.0, -2.0, 0.0]])
    y, = relu_layer(x)
    assert y.shape == (2, 3) and y.dtype == torch.float32 and y.device == x.device
    # The default (Clarabel, an interior-point method) lands within ~1e-5 of a
    # kink (here relu at 0), where strict complementarity fails.
    torch.testing.assert_close(y, torch.relu(x), atol=2e-5, rtol=0)
    y_single, = relu_layer(x[0].double())
    assert y_single.shape == (3,) and y_single.dtype == torch.float64


def test_broadcast_gradient_is_summed():
    x, shift = cp.Parameter(2), cp.Parameter(2)
    y = cp.Variable(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x - shift)))
    layer = CvxpyLayer(problem, parameters=[x, shift], variables=[y], solver_args=TIGHT_SCS)
    xs = torch.zeros(4, 2, dtype=torch.float64, requires_grad=True)
    shift_value = torch.ones(2, dtype=torch.float64, requires_grad=True)
    y_value, = layer(xs, shift_value)
    y_value.sum().backward()
    torch.testing.assert_close(shift_value.grad, torch.full((2,), 4.0, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(xs.grad, torch.ones(4, 2, dtype=torch.float64), atol=1e-6, rtol=0)


def test_dual_variable_output():
    x = cp.Parameter(2)
    y = cp.Variable(2)
    constraint = y >= 1
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [constraint])
    layer = CvxpyLayer(problem, parameters=[x], variables=[y, constraint.dual_variables[0]],
                       solver_args=TIGHT_SCS)
    y_value, dual = layer(torch.tensor([0.0, 3.0], dtype=torch.float64))
    # Stationarity: 2 (y - x) = dual, active only on the first coordinate.
    torch.testing.assert_close(dual, torch.tensor([2.0, 0.0], dtype=torch.float64), atol=1e-6, rtol=0)


def test_per_call_solver_args_override(relu_layer):
    with pytest.raises(SolverError, match="iteration limit"):
        relu_layer(torch.tensor([-1.0, 0.5, 2.0]), solver_args={"max_iters": 1})


def test_other_solvers():
    x = cp.Parameter(3)
    y = cp.Variable(3)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [y >= 0])
    for solver in ("ECOS", "Clarabel"):
        layer = CvxpyLayer(problem, parameters=[x], variables=[y], solver=solver)
        assert layer.solver == solver
        y_value, = layer(torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64))
        # Interior-point accuracy on the conic form of sum_squares: about 1e-5.
        torch.testing.assert_close(y_value, torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64), atol=1e-4, rtol=0)


# -- errors -------------------------------------------------------------------


def test_infeasible_batch_member_names_its_index():
    x = cp.Parameter(2)
    y = cp.Variable(2)
    problem = cp.Problem(cp.Minimize(cp.sum(y)), [y >= x, y <= 1])
    layer = CvxpyLayer(problem, parameters=[x], variables=[y])
    with pytest.raises(SolverError) as info:
        layer(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.5, 0.5]]))
    assert info.value.batch_indices == [1]
    assert "batch indices [1]" in str(info.value)


@pytest.mark.parametrize(
    "inputs, message",
    [
        ((), r"Expected 2 tensors, one per parameter \(\['x', 'A'\]\), in the order of `parameters`. Received: 0 tensors."),
        ((torch.zeros(3), torch.eye(2)), r"Parameter 'x' must have shape \(2,\) or \(batch_size, \*\(2,\)\). Received: shape=\(3,\)"),
        ((torch.zeros(2, 2, 2), torch.eye(2)), r"Parameter 'x' must have shape"),
        ((torch.zeros(3, 2), torch.zeros(4, 2, 2)), r"Batched parameters must share one batch size. Received: A: 4, x: 3"),
        ((torch.zeros(2, dtype=torch.int64), torch.eye(2)), r"Parameter 'x' must be a float32 or float64 tensor. Received: dtype=int64"),
        ((torch.tensor([0.0, float("nan")]), torch.eye(2)), r"Parameter 'x' contains NaN or Inf."),
    ],
)
def test_input_errors(inputs, message):
    x, A = cp.Parameter(2, name="x"), cp.Parameter((2, 2), name="A")
    y = cp.Variable(2)
    layer = CvxpyLayer(cp.Problem(cp.Minimize(cp.sum_squares(A @ y - x))), parameters=[x, A], variables=[y])
    with pytest.raises(ValueError, match=message):
        layer(*inputs)


def test_construction_errors():
    x = cp.Parameter(2)
    y = cp.Variable(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)))
    with pytest.raises(ValueError, match="`solver` must be None or one of"):
        CvxpyLayer(problem, parameters=[x], variables=[y], solver="GUROBI")
    with pytest.raises(ValueError, match=r"`solver` must be None or one of.*Received: solver=3"):
        CvxpyLayer(problem, parameters=[x], variables=[y], solver=3)
    with pytest.raises(ValueError, match="DPP"):
        z = cp.Parameter(2)
        CvxpyLayer(cp.Problem(cp.Minimize(cp.sum_squares(cp.multiply(z, x) - y))), parameters=[x, z], variables=[y])


# -- optional torch -------------------------------------------------------------


def test_package_imports_without_torch_and_the_torch_package_says_how_to_install():
    script = textwrap.dedent(
        """
        import sys

        class NoTorch:  # as if torch were not installed
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("No module named 'torch'")

        sys.meta_path.insert(0, NoTorch())
        import keras_optlayers
        try:
            import keras_optlayers.torch
        except ImportError as err:
            message = str(err)
        else:
            raise SystemExit("no ImportError")
        assert "pip install torch==2.13.0" in message, message
        assert "pip install keras-optlayers[torch]" in message, message
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout

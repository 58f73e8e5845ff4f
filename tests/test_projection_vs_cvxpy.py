"""The fast projections against their CVXPY forms: tight Clarabel solves and CvxpyLayer."""


import cvxpy as cp
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_optlayers.comparison import compare_layers
from keras_optlayers.core.problems import (
    csoftmax_problem,
    csparsemax_problem,
    lml_problem,
    relu_problem,
    sigmoid_problem,
    softmax_problem,
    sparsemax_problem,
)
from keras_optlayers.layers.csoftmax import CSoftmax
from keras_optlayers.layers.csparsemax import CSparsemax
from keras_optlayers.layers.cvxpy_layer import CvxpyLayer
from keras_optlayers.layers.lml import LML
from keras_optlayers.layers.sparsemax import Sparsemax

N = 6
TIGHT_CLARABEL = dict(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, tol_ktratio=1e-10, max_iter=500)
# The cone path, solved tightly; the fast layers must agree to 2e-6 (outputs) and 1e-5 (gradients).
TIGHT_SCS = {"eps": 1e-10}


def _scores(seed, batch=4, scale=1.0):
    """Seeded scores with a tie in every row and one row scaled up."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, N))
    x[:, 2] = x[:, 0]
    x[-1] *= scale
    return x


def _bounds(seed, batch=4):
    return np.random.default_rng(seed + 100).uniform(0.25, 0.6, (batch, N))


# name: (fast layer, its problem builder, whether it takes bounds at call time)
CASES = {
    "sparsemax": (Sparsemax(), lambda: sparsemax_problem(N), False),
    "csparsemax": (CSparsemax(upper=0.3), lambda: csparsemax_problem(N, upper=0.3), False),
    "csparsemax-call-bounds": (CSparsemax(), lambda: csparsemax_problem(N), True),
    "csoftmax": (CSoftmax(upper=0.3), lambda: csoftmax_problem(N, upper=0.3), False),
    "csoftmax-call-bounds": (CSoftmax(), lambda: csoftmax_problem(N), True),
    "lml": (LML(k=2), lambda: lml_problem(N, 2), False),
}


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_outputs_match_tight_cvxpy_solves(name, scale):
    layer, build, takes_bounds = CASES[name]
    x, upper = _scores(0, scale=scale), _bounds(0)
    y = (layer(x, upper) if takes_bounds else layer(x)).numpy()
    spec = build()
    for row in range(x.shape[0]):
        spec.parameters[0].value = x[row]
        if takes_bounds:
            spec.parameters[1].value = upper[row]
        spec.problem.solve(**TIGHT_CLARABEL)
        # At these tolerances Clarabel may stop one notch short and say "inaccurate".
        assert spec.problem.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)
        np.testing.assert_allclose(y[row], spec.variables[0].value, atol=2e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_and_gradients_match_cvxpy_layer(name):
    layer, _, takes_bounds = CASES[name]
    spec = layer.cvxpy_problem(N)
    reference = CvxpyLayer(spec.problem, parameters=spec.parameters, variables=spec.variables, solver="SCS", solver_args=TIGHT_SCS)
    # Moderate magnitudes: the reference's accuracy, not ours, limits this check.
    x = _scores(1, scale=5.0) + np.random.default_rng(2).standard_normal((4, N)) * 1e-3
    inputs = [x, _bounds(1)] if takes_bounds else [x]
    report = compare_layers(layer, reference, inputs, atol=2e-6, grad_atol=1e-5, seed=3)
    assert report.passed, str(report)


@pytest.mark.parametrize(
    "build, fast",
    [(relu_problem, tf.nn.relu), (sigmoid_problem, tf.sigmoid), (softmax_problem, tf.nn.softmax)],
    ids=["relu", "sigmoid", "softmax"],
)
def test_activation_problems_are_the_keras_activations(build, fast):
    spec = build(5)
    reference = CvxpyLayer(spec.problem, parameters=spec.parameters, variables=spec.variables, solver="SCS", solver_args=TIGHT_SCS)
    x = np.random.default_rng(4).standard_normal((3, 5))
    report = compare_layers(fast, reference, x, atol=2e-6, grad_atol=1e-5)
    assert report.passed, str(report)


def test_comparison_report_flags_a_mismatch():
    report = compare_layers(Sparsemax(), keras.layers.Softmax(), np.random.default_rng(5).standard_normal((2, 4)))
    assert not report.passed
    assert "FAILED" in str(report) and report.output_error > 1e-3 and len(report.gradient_errors) == 1
    same = compare_layers(Sparsemax(), lambda x: [Sparsemax()(x)], np.ones((2, 4)))
    assert same.passed and same.output_error == 0.0 and "PASSED" in str(same)


def test_problem_builders_check_arguments():
    with pytest.raises(ValueError, match="Received: k=4, n=4"):
        lml_problem(4, 4)
    with pytest.raises(ValueError, match="Received: upper=0.2, n=4"):
        csparsemax_problem(4, upper=0.2)
    with pytest.raises(ValueError, match="Received: n=0"):
        softmax_problem(0)

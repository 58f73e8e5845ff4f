"""CvxpyLayer forward pass: answers, dtypes, batching and broadcasting.

Every test runs eagerly and inside tf.function (the `run` fixture).
"""

import cvxpy as cp
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    FAMILIES,
    TIGHT_SCS,
    cvxpy_solve_batch,
    least_squares,
    least_squares_solution,
    lml,
    psd_projection,
    psd_projection_solution,
    sparsemax,
    sparsemax_solution,
)

from keras_optlayers.layers.cvxpy_layer import CvxpyLayer

# Interior-point answers (the CVXPY reference) are accurate to about the
# square root of their tolerance in the variables.
REFERENCE_ATOL = 1e-5
# The tutorial's LML input and the exact answer (FIELD_NOTES: its printed
# numbers are SCS at default tolerance).
TUTORIAL_INPUT = np.array([1.5409961, -0.2934289, -2.1787894, 0.56843126])
TUTORIAL_LML = np.array([0.825469815, 0.430314036, 0.102851933, 0.641364216])


def make_layer(family, **kwargs):
    kwargs.setdefault("solver", "SCS")
    kwargs.setdefault("solver_args", TIGHT_SCS)
    return CvxpyLayer(family.problem, family.parameters, family.variables, gp=family.gp, **kwargs)


@pytest.mark.parametrize("family_name", sorted(FAMILIES))
def test_outputs_match_cvxpy(run, family_name):
    family = FAMILIES[family_name]()
    values = family.sample_batch(np.random.default_rng(0), batch=2)
    layer = make_layer(family)

    outputs = run(lambda *t: layer(*t), *[tf.constant(v) for v in values])

    expected = cvxpy_solve_batch(family.problem, family.parameters, values, family.variables, gp=family.gp)
    assert len(outputs) == len(expected)
    for output, reference in zip(outputs, expected):
        assert output.shape == reference.shape
        np.testing.assert_allclose(output.numpy(), reference, rtol=1e-5, atol=REFERENCE_ATOL)


def test_least_squares_matches_closed_form(run):
    family = least_squares()
    A, b = family.sample_batch(np.random.default_rng(1), batch=3)
    (x,) = run(lambda *t: make_layer(family)(*t), tf.constant(A), tf.constant(b))
    expected = np.stack([least_squares_solution(A[i], b[i]) for i in range(3)])
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-8, atol=1e-9)


def test_sparsemax_matches_sort_based_sparsemax(run):
    inputs = np.random.default_rng(2).standard_normal((4, 5))
    (y,) = run(lambda t: make_layer(sparsemax(5))(t), tf.constant(inputs))
    np.testing.assert_allclose(y.numpy(), [sparsemax_solution(x) for x in inputs], atol=1e-8)


def test_psd_projection_clips_eigenvalues(run):
    family = psd_projection()
    (P,) = family.sample_batch(np.random.default_rng(3), batch=2)
    X, _ = run(lambda t: make_layer(family)(t), tf.constant(P))
    np.testing.assert_allclose(X.numpy(), [psd_projection_solution(p) for p in P], atol=1e-8)


def test_lml_matches_the_tutorial(run):
    (y,) = run(lambda t: make_layer(lml())(t), tf.constant(TUTORIAL_INPUT))
    np.testing.assert_allclose(y.numpy(), TUTORIAL_LML, atol=1e-7)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_output_dtype_follows_input_dtype(run, dtype):
    layer = make_layer(sparsemax())
    (y,) = run(lambda t: layer(t), tf.constant(TUTORIAL_INPUT, dtype))
    assert y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), sparsemax_solution(TUTORIAL_INPUT), atol=1e-6)


def test_any_float64_input_gives_float64_outputs(run):
    family = least_squares()
    A, b = family.sample(np.random.default_rng(4))
    (x,) = run(lambda *t: make_layer(family)(*t), tf.constant(A, tf.float32), tf.constant(b, tf.float64))
    assert x.dtype == tf.float64


def test_unbatched_inputs_give_unbatched_outputs(run):
    family = least_squares(m=5, n=3)
    A, b = family.sample(np.random.default_rng(5))
    (x,) = run(lambda *t: make_layer(family)(*t), tf.constant(A), tf.constant(b))
    assert x.shape == (3,)
    np.testing.assert_allclose(x.numpy(), least_squares_solution(A, b), atol=1e-9)


def test_batch_of_one_keeps_the_batch_dimension(run):
    family = least_squares(m=5, n=3)
    A, b = family.sample_batch(np.random.default_rng(6), batch=1)
    (x,) = run(lambda *t: make_layer(family)(*t), tf.constant(A), tf.constant(b))
    assert x.shape == (1, 3)
    np.testing.assert_allclose(x.numpy()[0], least_squares_solution(A[0], b[0]), atol=1e-9)


def test_unbatched_parameter_is_shared_by_the_batch(run):
    family = least_squares(m=5, n=3)
    rng = np.random.default_rng(7)
    A, _ = family.sample(rng)
    b = rng.standard_normal((4, 5))
    (x,) = run(lambda *t: make_layer(family)(*t), tf.constant(A), tf.constant(b))
    assert x.shape == (4, 3)
    np.testing.assert_allclose(x.numpy(), [least_squares_solution(A, b_i) for b_i in b], atol=1e-9)


def test_unbatched_scalar_parameter_is_shared_by_the_batch(run):
    shift = cp.Parameter(name="shift")
    target = cp.Parameter(3, name="target")
    y = cp.Variable(3, name="y")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - target)), [y >= shift])
    layer = CvxpyLayer(problem, [shift, target], [y], solver="SCS", solver_args=TIGHT_SCS)
    targets = np.random.default_rng(8).standard_normal((4, 3))

    (y_value,) = run(lambda *t: layer(*t), tf.constant(0.2, tf.float64), tf.constant(targets))

    np.testing.assert_allclose(y_value.numpy(), np.maximum(targets, 0.2), atol=1e-8)


def test_batch_size_unknown_while_tracing():
    layer = make_layer(sparsemax())
    inputs = np.random.default_rng(9).standard_normal((3, 4))
    solve = tf.function(lambda t: layer(t), input_signature=[tf.TensorSpec([None, 4], tf.float64)])
    (y,) = solve(tf.constant(inputs))
    assert y.shape == (3, 4)
    np.testing.assert_allclose(y.numpy(), [sparsemax_solution(x) for x in inputs], atol=1e-8)


def test_per_call_solver_args_override_the_defaults(run):
    family = sparsemax()
    layer = make_layer(family, solver_args={"max_iters": 1})
    (y,) = run(lambda t: layer(t, solver_args=TIGHT_SCS), tf.constant(TUTORIAL_INPUT))
    np.testing.assert_allclose(y.numpy(), sparsemax_solution(TUTORIAL_INPUT), atol=1e-8)

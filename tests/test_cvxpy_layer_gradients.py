"""CvxpyLayer gradients against central finite differences and closed forms.

Float64 throughout, SCS at eps=1e-10 (it converges to the KKT point; an
interior-point answer is only accurate to about the square root of its
tolerance, too coarse for a 1e-6 difference step). Every test runs eagerly
and inside tf.function.
"""

import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    FAMILIES,
    TIGHT_CLARABEL,
    TIGHT_SCS,
    cvxpy_solve,
    ellipsoid_projection,
    finite_difference_gradients,
    inequality_qp,
    least_squares,
    least_squares_gradients,
    loss_and_gradients,
    psd_projection,
    weights_like,
)

from keras_optlayers.layers.cvxpy_layer import CvxpyLayer

RTOL, ATOL = 1e-4, 1e-5


def make_layer(family, variables=None, **kwargs):
    return CvxpyLayer(family.problem, family.parameters, variables or family.variables,
                      solver=kwargs.pop("solver", "SCS"), solver_args=kwargs.pop("solver_args", TIGHT_SCS),
                      gp=family.gp, **kwargs)


def assert_gradients_close(actual, expected, rtol=RTOL, atol=ATOL):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got is not None
        np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("family_name", sorted(FAMILIES))
def test_gradients_match_finite_differences(run, family_name):
    family = FAMILIES[family_name]()
    values = family.sample(np.random.default_rng(10))
    layer = make_layer(family)
    weights = weights_like(cvxpy_solve(family.problem, family.parameters, values, family.variables, family.gp))

    _, gradients = run(loss_and_gradients(layer, weights), *[tf.constant(v) for v in values])

    # The geometric program's differences divide SCS's rounding of its
    # exponential-cone solves (~1e-11, more with SCS 3.3) by the step: at
    # 1e-6 that moved them by 2e-5 on one machine. Its three scalar
    # parameters are smooth, so a 1e-4 step keeps the truncation error far
    # below the tolerance and the rounding near 1e-7.
    step = 1e-4 if family.gp else 1e-6
    assert_gradients_close(gradients, finite_difference_gradients(layer, weights, values, step=step))


# Clarabel stops on the central path: its answers, hence gradients, are
# accurate to about the square root of its tolerance.
@pytest.mark.parametrize("solver, solver_args, rtol", [("SCS", TIGHT_SCS, 1e-6), ("Clarabel", TIGHT_CLARABEL, 1e-4)])
def test_least_squares_gradient_matches_closed_form(run, solver, solver_args, rtol):
    family = least_squares()
    A, b = family.sample_batch(np.random.default_rng(11), batch=3)
    weights = weights_like([np.zeros((3, 3))])
    layer = make_layer(family, solver=solver, solver_args=solver_args)

    _, (dA, db) = run(loss_and_gradients(layer, weights), tf.constant(A), tf.constant(b))

    expected = [least_squares_gradients(A[i], b[i], weights[0][i]) for i in range(3)]
    np.testing.assert_allclose(dA.numpy(), [e[0] for e in expected], rtol=rtol, atol=rtol / 10)
    np.testing.assert_allclose(db.numpy(), [e[1] for e in expected], rtol=rtol, atol=rtol / 10)


def per_example_finite_differences(layer, weights, values):
    """Finite-difference gradients of each example of a batch, stacked."""
    per_example = [
        finite_difference_gradients(layer, [w[i] for w in weights], [v[i] for v in values])
        for i in range(len(values[0]))
    ]
    return [np.stack([g[k] for g in per_example]) for k in range(len(values))]


def test_batched_gradients_match_finite_differences(run):
    family = ellipsoid_projection()
    values = family.sample_batch(np.random.default_rng(12), batch=3)
    layer = make_layer(family)
    weights = weights_like([np.zeros((3, 2)), np.zeros((3, 2))])

    _, gradients = run(loss_and_gradients(layer, weights), *[tf.constant(v) for v in values])

    assert_gradients_close(gradients, per_example_finite_differences(layer, weights, values))


def test_gradient_of_a_broadcast_parameter_is_summed_over_the_batch(run):
    family = ellipsoid_projection()
    rng = np.random.default_rng(13)
    A, z, x = family.sample_batch(rng, batch=3)
    shared_A = A[0]
    layer = make_layer(family)
    weights = weights_like([np.zeros((3, 2)), np.zeros((3, 2))])

    _, (dA, dz, dx) = run(loss_and_gradients(layer, weights), tf.constant(shared_A), tf.constant(z), tf.constant(x))

    tiled_A = np.broadcast_to(shared_A, A.shape)
    expected_dA, expected_dz, expected_dx = per_example_finite_differences(layer, weights, [tiled_A, z, x])
    assert dA.shape == shared_A.shape
    assert_gradients_close([dA, dz, dx], [expected_dA.sum(axis=0), expected_dz, expected_dx])


def test_dual_variables_match_cvxpy_and_finite_differences(run):
    family = inequality_qp()
    equality, inequality = family.constraints["equality"], family.constraints["inequality"]
    variables = [family.variables[0], equality.dual_variables[0], inequality.dual_variables[0]]
    values = family.sample(np.random.default_rng(14))
    layer = make_layer(family, variables=variables)
    cvxpy_solve(family.problem, family.parameters, values, family.variables)
    expected = [family.variables[0].value, equality.dual_value, inequality.dual_value]
    # The sampler makes the first inequality active: a real dual to check.
    assert expected[2][0] > 1e-2 and abs(expected[2][1]) < 1e-8
    weights = weights_like(expected)

    def outputs_and_gradients(*tensors):
        _, gradients = loss_and_gradients(layer, weights)(*tensors)
        return layer(*tensors), gradients

    outputs, gradients = run(outputs_and_gradients, *[tf.constant(v) for v in values])

    for output, reference in zip(outputs, expected):
        np.testing.assert_allclose(output.numpy(), reference, rtol=1e-6, atol=1e-7)
    assert_gradients_close(gradients, finite_difference_gradients(layer, weights, values))


def test_psd_constraint_dual_matches_cvxpy(run):
    family = psd_projection()
    psd = family.constraints["psd"]
    (P,) = family.sample(np.random.default_rng(15))
    _, dual = run(lambda t: make_layer(family)(t), tf.constant(P))
    cvxpy_solve(family.problem, family.parameters, [P], family.variables)
    np.testing.assert_allclose(dual.numpy(), psd.dual_value, rtol=1e-6, atol=1e-7)

"""The native SOCP path substitutes auxiliary variables out before solving.

CVXPY writes ‖A(y − z)‖ ≤ 1 as ‖t‖ ≤ 1 with t = A(y − z); the SOCP solver
then solves for y alone (`core/auxiliary_variables.py`,
`ops/cone_reduction.py`). Solutions, the multipliers of the substituted
rows (a user's own equality can be one) and gradients must be those of the
problem as written.
"""

import cvxpy as cp
import numpy as np
import tensorflow as tf
from helpers import REFERENCE_CLARABEL, finite_difference_gradients, loss_and_gradients
from test_socp_xla import trust_region_solution

from keras_optlayers import CvxpyLayer
from keras_optlayers.core.auxiliary_variables import find_auxiliary_variables
from keras_optlayers.core.compiler import compile_problem
from keras_optlayers.core.problems import ellipsoid_projection_problem


def test_the_auxiliary_variables_of_an_ellipsoid_constraint_are_found():
    spec = ellipsoid_projection_problem(5)
    program = compile_problem(spec.problem, spec.parameters, spec.variables, quadratic=False)
    auxiliary = find_auxiliary_variables(program)
    assert auxiliary is not None
    # Each is defined by an equality and enters no other equality.
    equality_columns = program.A.cols[program.A.rows < program.cones.zero]
    for column in auxiliary.eliminated:
        assert np.sum(equality_columns == column) == 1


def control_policy(n=2, m=3):
    """argmin ½‖M u‖² + xᵀy s.t. y = K u, ‖u‖ ≤ 1: y is defined by the user's own equality."""
    x, M, K = cp.Parameter(n, name="x"), cp.Parameter((m, m), name="M"), cp.Parameter((n, m), name="K")
    u, y = cp.Variable(m, name="u"), cp.Variable(n, name="y")
    definition = y == K @ u
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(M @ u) + x @ y), [definition, cp.norm(u, 2) <= 1.0])
    return problem, [x, M, K], u, definition


def test_solutions_multipliers_and_gradients_are_those_of_the_problem_as_written(run):
    problem, parameters, u, definition = control_policy()
    layer = CvxpyLayer(problem, parameters, [u, definition.dual_variables[0]], solver="SOCP")
    assert layer.batched_problem._auxiliary is not None
    rng = np.random.default_rng(5)
    values = [3.0 * rng.standard_normal(2), rng.standard_normal((3, 3)) + 2 * np.eye(3), rng.standard_normal((2, 3))]
    x_value, M_value, K_value = values

    solution, multiplier = run(lambda *t: layer(*t), *[tf.constant(v) for v in values])

    exact = trust_region_solution(M_value.T @ M_value, K_value.T @ x_value)
    assert np.isclose(np.linalg.norm(exact), 1.0)  # the ball binds
    np.testing.assert_allclose(solution.numpy(), exact, atol=1e-10)
    for parameter, value in zip(parameters, values):
        parameter.value = value
    problem.solve(**REFERENCE_CLARABEL)
    # Stationarity in y gives the multiplier exactly: x + ν = 0 (Clarabel: to ~1e-6).
    np.testing.assert_allclose(multiplier.numpy(), -x_value, atol=1e-10)
    np.testing.assert_allclose(multiplier.numpy(), definition.dual_value, atol=1e-5)

    output_weights = [rng.standard_normal(3), np.zeros(2)]  # the loss weighs the solution only
    _, gradients = run(loss_and_gradients(layer, output_weights), *[tf.constant(v) for v in values])
    expected = finite_difference_gradients(layer, output_weights, values)
    for got, want in zip(gradients, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_a_program_of_defining_equalities_only_is_solved_unreduced():
    # Substituting every row out would leave the SOCP solver no row at all.
    p, x, y = cp.Parameter(2), cp.Variable(2), cp.Variable(2)
    problem = cp.Problem(cp.Minimize(0), [y == cp.multiply(p, x)])
    layer = CvxpyLayer(problem, [p], [y], solver="SOCP")
    assert layer.batched_problem._auxiliary is None
    np.testing.assert_allclose(layer(tf.constant([1.0, 2.0]))[0].numpy(), [0.0, 0.0], atol=1e-12)

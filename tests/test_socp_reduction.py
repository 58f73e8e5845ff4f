"""The native SOCP path substitutes auxiliary variables out before solving.

CVXPY writes ‖A(y − z)‖ ≤ 1 as ‖t‖ ≤ 1 with t = A(y − z); the SOCP solver
then solves for y alone (`core/auxiliary_variables.py`,
`ops/cone_reduction.py`). Solutions, the multipliers of the substituted
rows (a user's own equality can be one) and gradients must be those of the
problem as written.
"""

import cvxpy as cp
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    REFERENCE_CLARABEL,
    dense_data,
    finite_difference_gradients,
    loss_and_gradients,
    op_types_and_gradients,
)
from test_socp_xla import trust_region_solution

from keras_optlayers import CvxpyLayer
from keras_optlayers.core.auxiliary_variables import find_auxiliary_variables
from keras_optlayers.core.compiler import compile_problem
from keras_optlayers.core.dense_blocks import cone_blocks
from keras_optlayers.core.problems import ellipsoid_projection_problem
from keras_optlayers.ops.affine_maps import BlockMaps
from keras_optlayers.ops.cone_reduction import reduced_cone_program


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
    assert layer.batched_problem._blocks.layout.has_auxiliary
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
    assert not layer.batched_problem._blocks.layout.has_auxiliary
    np.testing.assert_allclose(layer(tf.constant([1.0, 2.0]))[0].numpy(), [0.0, 0.0], atol=1e-12)


def _control_policy_program():
    problem, parameters, u, _ = control_policy()
    return compile_problem(problem, parameters, [u], quadratic=False)


def _ellipsoid_program():
    spec = ellipsoid_projection_problem(5)
    return compile_problem(spec.problem, spec.parameters, spec.variables, quadratic=False)


def _quadratic_control_policy_program():
    problem, parameters, u, _ = control_policy()
    return compile_problem(problem, parameters, [u], quadratic=False, quadratic_objective=True)


def _quadratic_ellipsoid_program():
    spec = ellipsoid_projection_problem(5)
    return compile_problem(spec.problem, spec.parameters, spec.variables, quadratic=False, quadratic_objective=True)


# The control policy's t enters the objective (c_t), the ellipsoid's the cone rows (A_t) with an offset (d);
# with the objective kept quadratic, the t that CVXPY introduces for the squared norm carry P (P_tt).
@pytest.mark.parametrize("compiled, nonzero", [
    (_control_policy_program, "c_t"), (_ellipsoid_program, "A_t"),
    (_quadratic_control_policy_program, "P_tt"), (_quadratic_ellipsoid_program, "P_tt"),
])
def test_the_dense_blocks_and_the_reduced_program_are_those_of_the_compiled_program(compiled, nonzero):
    """`core/dense_blocks.cone_blocks` against the compiled maps in numpy: A' = A_rest T, b' = b_rest − A_rest u,
    P' = TᵀPT, c' = Tᵀ(c + P u)."""
    program = compiled()
    auxiliary = find_auxiliary_variables(program)
    layout = cone_blocks(program, auxiliary)
    assert nonzero in layout.applied()
    rng = np.random.default_rng(11)
    values = [rng.standard_normal(info.shape) for info in program.parameters]
    vector = np.concatenate([np.ravel(v) for v in values] + [[1.0]])
    theta = program.theta([v[None] for v in values])[0]
    n, zero, rows = program.num_vars, program.cones.zero, program.num_rows
    A = dense_data(program.A, theta)
    P = np.zeros((n, n)) if program.P is None else dense_data(program.P, theta)
    b, c = program.b @ theta, program.c @ theta
    kept, eliminated, a = auxiliary.kept, auxiliary.eliminated, auxiliary.coefficients
    T = np.zeros((n, len(kept)))
    T[kept, np.arange(len(kept))] = 1.0
    T[eliminated] = -A[auxiliary.defining_rows][:, kept] / a[:, None]
    x_offset = np.zeros(n)
    x_offset[eliminated] = b[auxiliary.defining_rows] / a
    other_rows = np.concatenate([auxiliary.kept_rows, np.arange(zero, rows)])

    (A_reduced, b_reduced, c_reduced, P_reduced), restore = reduced_cone_program(
        layout, BlockMaps(layout)(tf.constant(vector[None])))

    np.testing.assert_allclose(A_reduced[0].numpy(), A[other_rows] @ T, atol=1e-12)
    np.testing.assert_allclose(b_reduced[0].numpy(), b[other_rows] - A[other_rows] @ x_offset, atol=1e-12)
    np.testing.assert_allclose(c_reduced[0].numpy(), T.T @ (c + P @ x_offset), atol=1e-12)
    assert (P_reduced is None) == (program.P is None)
    if program.P is not None:
        np.testing.assert_allclose(P_reduced[0].numpy(), T.T @ P @ T, atol=1e-12)
    x_kept, y_rest = rng.standard_normal(len(kept)), rng.standard_normal(len(other_rows))
    x_solution, y_solution = restore(tf.constant(x_kept[None]), tf.constant(y_rest[None]))
    np.testing.assert_allclose(x_solution[0].numpy()[layout.x_order], T @ x_kept + x_offset, atol=1e-12)
    # The defining rows' multipliers from stationarity in t: (P x + c + Aᵀy)_t = 0.
    y_full = y_solution[0].numpy()[layout.y_order]
    np.testing.assert_allclose(y_full[other_rows], y_rest, atol=0)
    x_full = x_solution[0].numpy()[layout.x_order]
    np.testing.assert_allclose((P @ x_full + c + A.T @ y_full)[eliminated], 0.0, atol=1e-12)


def test_no_transpose_between_the_parameters_and_the_socp_solver():
    """The SOCP path's affine steps and substitution run without a Transpose op, forward or backward."""
    problem, parameters, u, definition = control_policy()
    engine = CvxpyLayer(problem, parameters, [u, definition.dual_variables[0]], solver="SOCP").batched_problem
    rng = np.random.default_rng(12)
    values = [tf.constant(rng.standard_normal((3, *p.shape))) for p in parameters]

    def affine_steps(*tensors):
        blocks = engine._blocks(engine._parameter_vector(list(tensors)))
        (A, b, c, P), restore = reduced_cone_program(engine._blocks.layout, blocks)
        return (A, b, c, P, *engine._read_outputs(*restore(c, b)))

    op_types, gradients = op_types_and_gradients(affine_steps, values)
    assert "Transpose" not in op_types and "GatherV2" in op_types
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients)

"""compile_problem: the affine maps reproduce CVXPY's own solver data."""

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp
from helpers import FAMILIES, ellipsoid_projection, inequality_qp, lml, sparsemax

from keras_optlayers.core.compiler import compile_problem


def theta_of(program, values):
    """CVXPY's parameter vector, gathered as the front ends do: row-major values, then theta_index."""
    flat = np.concatenate([*[np.ravel(v) for v in values], [1.0]])
    return flat[program.theta_index]


def cvxpy_cone_data(family, values):
    for parameter, value in zip(family.parameters, values):
        parameter.value = value
    data, _, _ = family.problem.get_problem_data(cp.SCS, gp=family.gp, solver_opts={"use_quad_obj": False})
    return data


@pytest.mark.parametrize("family_name", sorted(set(FAMILIES) - {"geometric_program"}))
def test_maps_reproduce_cvxpy_scs_data(family_name):
    family = FAMILIES[family_name]()
    values = family.sample(np.random.default_rng(30))
    program = compile_problem(family.problem, family.parameters, family.variables, quadratic=False)
    theta = theta_of(program, values)

    data = cvxpy_cone_data(family, values)

    A = sp.csc_matrix((program.A.matrix @ theta, (program.A.rows, program.A.cols)), shape=program.A.shape)
    np.testing.assert_allclose(program.c @ theta, data["c"], atol=1e-12)
    np.testing.assert_allclose(program.b @ theta, data["b"], atol=1e-12)
    np.testing.assert_allclose(A.toarray(), sp.csc_matrix(data["A"]).toarray(), atol=1e-12)
    assert program.cones.as_dict()["z"] == data["dims"].zero
    assert program.cones.num_rows == data["A"].shape[0]


def test_geometric_program_parameters_enter_as_logarithms():
    family = FAMILIES["geometric_program"]()
    program = compile_problem(family.problem, family.parameters, family.variables, gp=True)
    assert [p.log for p in program.parameters] == [True, True, False]  # a, b positive; c an exponent
    assert all(output.exp for output in program.outputs)


def test_quadratic_programs_compile_to_qps_unless_asked_for_cones():
    family = sparsemax()
    assert compile_problem(family.problem, family.parameters, family.variables).kind == "qp"
    assert compile_problem(family.problem, family.parameters, family.variables, quadratic=False).kind == "cone"


def test_asking_for_a_qp_of_a_cone_program_says_which_cones():
    family = lml()
    with pytest.raises(ValueError, match="needs cones.*exponential 8"):
        compile_problem(family.problem, family.parameters, family.variables, quadratic=True)


def test_outputs_read_requested_variables_and_duals():
    family = inequality_qp()
    inequality = family.constraints["inequality"]
    variables = [family.variables[0], inequality.dual_variables[0]]
    program = compile_problem(family.problem, family.parameters, variables, quadratic=False)
    x_output, dual_output = program.outputs
    assert (x_output.source, x_output.shape) == ("x", (3,))
    assert (dual_output.source, dual_output.shape) == ("y", (2,))
    # The inequality rows follow the equality's zero cone.
    assert np.all(dual_output.indices >= program.cones.zero)


def test_parameter_order_is_the_users_order():
    family = ellipsoid_projection()
    reordered = list(reversed(family.parameters))
    program = compile_problem(family.problem, reordered, family.variables, quadratic=False)
    assert [p.name for p in program.parameters] == ["x", "z", "A"]


def test_a_problem_solved_before_compiling_keeps_its_dual_values():
    """Building a layer that reads a second-order cone's duals after `problem.solve()` works (it raised).

    Reading the duals' layout writes them through CVXPY; the user's values are put back unchanged.
    """
    x, y = cp.Parameter(3), cp.Variable(3)
    soc = cp.SOC(cp.Constant(1.0), y)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [soc])
    x.value = np.array([2.0, 0.0, 0.0])
    problem.solve(solver=cp.CLARABEL)
    before = [np.array(dv.value) for dv in soc.dual_variables]

    program = compile_problem(problem, [x], [y, *soc.dual_variables])

    assert [output.shape for output in program.outputs] == [(3,), (1,), (3,)]
    for dual, value in zip(soc.dual_variables, before):
        np.testing.assert_array_equal(np.array(dual.value), value)

"""The parts of diffcp the host path relies on, private ones included.

`keras_optlayers.solvers` calls `diffcp.solve_internal` (public since diffcp
1.0.24) and the private extension `diffcp._diffcp` (`M_operator`, `lsqr`,
`dprojection`). These tests fail loudly, naming the installed diffcp
version, if a release changes them; the supported range is pinned in
pyproject.toml.
"""

import inspect

import diffcp
import diffcp._diffcp as diffcp_ext
import diffcp.cones as diffcp_cones
import numpy as np
import scipy.sparse as sp

from keras_optlayers.core.compiler import compile_problem
from keras_optlayers.core.problems import ellipsoid_projection_problem
from keras_optlayers.solvers.cone_solver import ConeSolver

VERSION = f"diffcp {diffcp.__version__} (keras-optlayers is tested with diffcp >=1.0.24,<1.2)"


def ellipsoid_program():
    spec = ellipsoid_projection_problem(2)
    return compile_problem(spec.problem, spec.parameters, spec.variables, quadratic=False)


def ellipsoid_data(program, x):
    theta = program.theta([x, np.eye(2), np.zeros(2)])
    return (program.A.matrix @ theta.T).T, (program.b @ theta.T).T, (program.c @ theta.T).T


def test_solve_internal_keeps_its_signature_and_result():
    parameters = inspect.signature(diffcp.solve_internal).parameters
    for name in ("A", "b", "c", "cone_dict", "solve_method", "raise_on_error"):
        assert name in parameters, f"diffcp.solve_internal lost its argument '{name}' in {VERSION}"
    program = ellipsoid_program()
    A_values, b, c = ellipsoid_data(program, np.array([3.0, 0.0]))
    A = sp.csc_matrix((A_values[0], program.A.rows, program.A.indptr), shape=program.A.shape)
    for method in ("SCS", "ECOS", "Clarabel"):
        result = diffcp.solve_internal(A, b[0], c[0], program.cones.as_dict(), solve_method=method,
                                       raise_on_error=False)
        missing = {"x", "y", "s", "info"} - set(result)
        assert not missing, f"diffcp.solve_internal({method}) no longer returns {missing} in {VERSION}"
        assert {"status", "iter"} <= set(result["info"]), f"its info changed in {VERSION}: {result['info']}"


def test_private_operator_and_lsqr_agree_with_the_dense_adjoint():
    """ConeSolver's 'lsqr' mode (diffcp._diffcp.M_operator and lsqr) against its 'dense' mode."""
    for name in ("M_operator", "lsqr", "dprojection"):
        assert hasattr(diffcp_ext, name), f"diffcp._diffcp.{name} is gone in {VERSION}"
    assert hasattr(diffcp_cones, "parse_cone_dict_cpp"), f"diffcp.cones.parse_cone_dict_cpp is gone in {VERSION}"
    program = ellipsoid_program()
    data = ellipsoid_data(program, np.array([3.0, 0.5]))
    solver = ConeSolver(program, "SCS")
    x, y, s = solver.solve(*data)
    rng = np.random.default_rng(0)
    cotangents = [rng.standard_normal(a.shape) for a in (x, y, s)]

    dense = solver.adjoint(*data, x, y, s, *cotangents, mode="dense")
    try:
        iterative = solver.adjoint(*data, x, y, s, *cotangents, mode="lsqr")
    except (AttributeError, TypeError) as error:
        raise AssertionError(f"diffcp._diffcp.M_operator or lsqr changed in {VERSION}: {error}") from error

    for a, b in zip(dense, iterative):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=f"in {VERSION}")

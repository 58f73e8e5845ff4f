"""Which solver CvxpyLayer picks when none is given.

Quadratic programs go to the native QP solver ("QP"), and must give what
SCS gives; everything else goes to SCS.
"""

import numpy as np
import tensorflow as tf
from helpers import TIGHT_SCS, exact_sparsemax, inequality_qp, lml, loss_and_gradients, weights_like

from keras_optlayers.layers.cvxpy_layer import CvxpyLayer


def layers_for(family, **kwargs):
    default = CvxpyLayer(family.problem, family.parameters, family.variables, **kwargs)
    scs = CvxpyLayer(family.problem, family.parameters, family.variables, solver="SCS", solver_args=TIGHT_SCS)
    return default, scs


def test_quadratic_program_goes_to_the_qp_solver_and_agrees_with_scs(run):
    family = inequality_qp()
    values = family.sample_batch(np.random.default_rng(20), batch=3)
    tensors = [tf.constant(v) for v in values]
    default, scs = layers_for(family)
    assert default.solver == "QP"
    weights = weights_like([np.zeros((3, 3))])

    (x_qp,) = run(lambda *t: default(*t), *tensors)
    (x_scs,) = run(lambda *t: scs(*t), *tensors)
    _, gradients_qp = run(loss_and_gradients(default, weights), *tensors)
    _, gradients_scs = run(loss_and_gradients(scs, weights), *tensors)

    np.testing.assert_allclose(x_qp.numpy(), x_scs.numpy(), rtol=1e-6, atol=1e-7)
    for qp, reference in zip(gradients_qp, gradients_scs):
        np.testing.assert_allclose(qp.numpy(), reference.numpy(), rtol=1e-4, atol=1e-5)


def test_exponential_cone_program_goes_to_clarabel():
    default, _ = layers_for(lml())
    assert default.solver == "Clarabel"
    assert default.supports_jit is False


def test_qp_path_names_the_infeasible_example(run):
    import cvxpy as cp

    from keras_optlayers.errors import SolverError

    # y >= lower and y <= upper: infeasible wherever lower > upper.
    lower, upper, x = cp.Parameter(2), cp.Parameter(2), cp.Parameter(2)
    y = cp.Variable(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [y >= lower, y <= upper])
    layer = CvxpyLayer(problem, [lower, upper, x], [y])
    assert layer.solver == "QP"
    lower_value = tf.constant([[0.0, 0.0], [2.0, 0.0], [0.0, 0.0]], tf.float64)
    upper_value = tf.ones((3, 2), tf.float64)
    x_value = tf.zeros((3, 2), tf.float64)
    expected = SolverError if run.eager else tf.errors.InvalidArgumentError
    with np.testing.assert_raises_regex(expected, r"primal infeasible.{0,4} at batch indices \[1\]"):
        run(lambda *t: layer(*t), lower_value, upper_value, x_value)


def test_large_sparse_quadratic_program_goes_to_the_host_unless_qp_is_asked_for():
    import cvxpy as cp

    from keras_optlayers.core.compiler import AUTO_QP_SMALL_VARIABLES

    n = AUTO_QP_SMALL_VARIABLES + 1  # variables left to solve for once CVXPY's t = y - x is substituted out
    x, y = cp.Parameter(n), cp.Variable(n)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [y >= 0])
    assert CvxpyLayer(problem, [x], [y]).solver == "ECOS"
    assert CvxpyLayer(problem, [x], [y], solver="QP").solver == "QP"
    # Few variables but many sparse rows, which the QP solver would hold densely: the host too.
    n = 80
    x, y = cp.Parameter(n), cp.Variable(n)
    chain = [y[i] - y[j] <= 1.0 for i in range(n) for j in range(i + 1, min(i + 8, n))]
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [y >= 0, *chain])
    assert CvxpyLayer(problem, [x], [y]).solver == "ECOS"


def test_quadratic_program_is_sized_by_the_variables_the_qp_solver_solves_for(run):
    """The ReLU and sparsemax with n = 150: 300 canonical variables, half of them CVXPY's t = y − x.

    The QP solver solves for the 150 others and its active-set polish is exact; these problems went to
    ECOS by their canonical size, which sees the squared norm as a second-order cone and left errors up
    to 1e-3 on them (inputs in [-5, 5]; benchmarks/bench_qp_dispatch.py).
    """
    from keras_optlayers.core.compiler import AUTO_QP_SMALL_VARIABLES
    from keras_optlayers.core.problems import relu_problem, sparsemax_problem

    n = AUTO_QP_SMALL_VARIABLES
    x = np.random.default_rng(29).uniform(-5.0, 5.0, (4, n))
    x[0, :3] = 0.0  # degenerate points: the ReLU's kink
    for spec, exact in ((relu_problem(n), np.maximum(x, 0.0)), (sparsemax_problem(n), exact_sparsemax(x))):
        layer = CvxpyLayer(spec.problem, spec.parameters, spec.variables)
        assert layer.solver == "QP" and layer.batched_problem.program.num_vars == 2 * n
        (y,) = run(lambda t, layer=layer: layer(t), tf.constant(x))
        np.testing.assert_allclose(y.numpy(), exact, atol=1e-10)


def test_dense_quadratic_program_goes_to_the_qp_solver():
    import cvxpy as cp

    n = 100  # a dense inequality matrix: the QP solver's dense factorizations pay off
    G, h, q = cp.Parameter((n, n)), cp.Parameter(n), cp.Parameter(n)
    x = cp.Variable(n)
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) + q @ x), [G @ x <= h])
    assert CvxpyLayer(problem, [G, h, q], [x]).solver == "QP"


def test_second_order_cone_program_keeps_its_quadratic_objective_on_the_native_path_only(run):
    """The native SOCP solver gets the objective as P (fewer rows); the host path the cone form; both agree."""
    from socp_problems import ellipsoid, robust_lp

    spec, sample = ellipsoid(4)
    native = CvxpyLayer(spec.problem, spec.parameters, spec.variables)
    host = CvxpyLayer(spec.problem, spec.parameters, spec.variables, solver="ECOS")
    assert native.solver == "SOCP" and native.batched_problem.program.P is not None
    assert host.batched_problem.program.P is None
    assert native.batched_problem.program.cones.soc == (6,) and host.batched_problem.program.cones.soc == (6, 6)
    tensors = [tf.constant(v) for v in sample(np.random.default_rng(21), 3)]
    (x_native,) = run(lambda *t: native(*t), *tensors)
    (x_host,) = run(lambda *t: host(*t), *tensors)
    np.testing.assert_allclose(x_native.numpy(), x_host.numpy(), atol=1e-6)
    linear_spec, _ = robust_lp(3, 2)
    linear = CvxpyLayer(linear_spec.problem, linear_spec.parameters, linear_spec.variables)
    assert linear.solver == "SOCP" and linear.batched_problem.program.P is None  # an affine objective has no P


def test_quadratic_program_whose_only_cone_is_its_squared_norm_goes_to_the_qp_solver(run):
    """The ReLU with n = 41, a SOCP for the cone solvers (CVXPY's cone for ½‖y − x‖²), goes to the QP solver.

    Its active-set polish is exact at the degenerate point x = 0, where the SOCP solver's Newton polish
    left about 1e-5. Every QP the QP solver does not take is too large for the native SOCP solver too,
    so no QP reaches the SOCP solver unless asked for.
    """
    from keras_optlayers.core.compiler import AUTO_QP_SMALL_VARIABLES
    from keras_optlayers.core.problems import relu_problem
    from keras_optlayers.solvers.registry import NATIVE_SOCP_MAX_SIZE

    assert AUTO_QP_SMALL_VARIABLES >= NATIVE_SOCP_MAX_SIZE

    spec = relu_problem(41)
    layer = CvxpyLayer(spec.problem, spec.parameters, spec.variables)
    assert layer.solver == "QP"
    assert CvxpyLayer(spec.problem, spec.parameters, spec.variables, solver="SOCP").solver == "SOCP"  # asked for
    x = np.linspace(-5.0, 5.0, 41)  # holds 0 exactly
    (y,) = run(lambda t: layer(t), tf.constant(x))
    np.testing.assert_allclose(y.numpy(), np.maximum(x, 0.0), atol=1e-12)

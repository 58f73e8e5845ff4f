"""The native SOCP solver against closed forms, Clarabel and central differences."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow as tf
from socp_problems import (
    SocpLayerFunction,
    clarabel_reference,
    ellipsoid,
    mixed_norms,
    robust_lp,
    soc_least_squares,
    squared_least_squares,
)

from keras_optlayers import CvxpyLayer
from keras_optlayers.core.compiler import ConeDims
from keras_optlayers.errors import SolverError
from keras_optlayers.ops.affine_maps import read_output
from keras_optlayers.solvers.socp import (
    STATUS_NAMES,
    optimality_conditions,
    socp_solve,
    socp_solve_with_info,
    solve_compiled_socp,
)
from keras_optlayers.solvers.socp import solve as solve_module

# Gradient check: central differences of the forward solve (which is accurate
# to ~1e-12 after polishing) with this step see the solution map to ~1e-8.
STEP = 1e-5


def ball_projection_data(points: np.ndarray, radius: float = 1.0):
    """minimize t s.t. ‖y − z‖ ≤ t, ‖y‖ ≤ radius over x = (t, y): (A, b, c, cones) with b batched by z."""
    batch, dim = points.shape
    A = np.zeros((2 * (dim + 1), dim + 1))
    b = np.zeros((batch, 2 * (dim + 1)))
    A[0, 0] = -1.0
    A[1 : dim + 1, 1:] = -np.eye(dim)
    b[:, 1 : dim + 1] = -points
    A[dim + 2 :, 1:] = -np.eye(dim)
    b[:, dim + 1] = radius
    c = np.zeros(dim + 1)
    c[0] = 1.0
    return A, b, c, {"soc": (dim + 1, dim + 1)}


def ball_projection(points: np.ndarray, radius: float = 1.0) -> np.ndarray:
    return points * np.minimum(1.0, radius / np.linalg.norm(points, axis=-1, keepdims=True))


def ball_projection_vjp(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """wᵀ ∂proj/∂z: w inside the ball, (w − ŷ ŷᵀw)/‖z‖ outside."""
    norms = np.linalg.norm(points, axis=-1, keepdims=True)
    unit = points / norms
    outside = (weights - unit * np.sum(unit * weights, -1, keepdims=True)) / norms
    return np.where(norms > 1.0, outside, weights)


def _ellipsoid_projection_one(x, A, z):
    M = A.T @ A

    def point(lam):
        return np.linalg.solve(np.eye(len(M)) + lam * M, x + lam * M @ z)

    def excess(lam):
        return 0.5 * np.sum((A @ (point(lam) - z)) ** 2) - 1.0

    if excess(0.0) <= 0:
        return x
    low, high = 0.0, 1.0
    while excess(high) > 0:
        high *= 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if excess(middle) > 0 else (low, middle)
    return point(high)


def ellipsoid_projection_exact(x, A, z):
    """argmin ½‖x − y‖² s.t. ½‖A(y − z)‖² ≤ 1 by bisection on the multiplier (to machine precision)."""
    return np.stack([_ellipsoid_projection_one(*example) for example in zip(x, A, z)])


def test_ball_projection_matches_closed_form_and_its_jacobian(run):
    rng = np.random.default_rng(0)
    points = 0.7 * rng.standard_normal((6, 4))
    A, b, c, cones = ball_projection_data(points)
    weights = rng.standard_normal(points.shape)

    def solve_and_vjp(b):
        with tf.GradientTape() as tape:
            tape.watch(b)
            x, _, _, _ = socp_solve(A, b, c, cones)
            loss = tf.reduce_sum(x[:, 1:] * weights)
        return x, tape.gradient(loss, b)

    x, grad_b = run(solve_and_vjp, tf.constant(b))
    np.testing.assert_allclose(x.numpy()[:, 1:], ball_projection(points), atol=1e-10)
    # b's rows 1..dim hold −z.
    np.testing.assert_allclose(-grad_b.numpy()[:, 1:5], ball_projection_vjp(points, weights), atol=1e-8)


@pytest.mark.parametrize("scale", [1e-8, 1e10])
def test_ball_projection_at_extreme_scales(scale):
    points = scale * np.array([[0.3, -0.2, 0.1], [3.0, 4.0, -1.0]])
    A, b, c, cones = ball_projection_data(points, radius=scale)
    x, _, _, status = socp_solve(A, b, c, cones)
    np.testing.assert_array_equal(status.numpy(), [0, 0])
    np.testing.assert_allclose(x.numpy()[:, 1:], ball_projection(points, radius=scale), rtol=1e-9, atol=1e-9 * scale)


def _loss_and_gradients(function, weights):
    def compute(*tensors):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            loss = tf.add_n([tf.reduce_sum(o * w) for o, w in zip(function(*tensors), weights)])
        return loss, tape.gradient(loss, tensors)

    return compute


def _central_differences(function, weights, values):
    def loss(arrays):
        outputs = function(*[tf.constant(a) for a in arrays])
        return sum(float(np.sum(o.numpy() * w)) for o, w in zip(outputs, weights))

    gradients = []
    arrays = [np.array(v) for v in values]
    for array in arrays:
        gradient = np.zeros_like(array)
        flat, flat_gradient = array.reshape(-1), gradient.reshape(-1)
        for j in range(flat.size):
            saved = flat[j]
            flat[j] = saved + STEP
            up = loss(arrays)
            flat[j] = saved - STEP
            down = loss(arrays)
            flat[j] = saved
            flat_gradient[j] = (up - down) / (2 * STEP)
        gradients.append(gradient)
    return gradients


def test_ellipsoid_projection_matches_exact_projection_and_central_differences(run):
    spec, sample = ellipsoid(3)
    values = sample(np.random.default_rng(3), 2)
    function = SocpLayerFunction(spec)
    outputs = run(function, *[tf.constant(v) for v in values])
    np.testing.assert_allclose(outputs[0].numpy(), ellipsoid_projection_exact(*values), atol=1e-8)
    np.testing.assert_allclose(outputs[0].numpy(), clarabel_reference(spec, values)[0], atol=1e-5)
    weights = [np.random.default_rng(4).standard_normal(outputs[0].shape)]
    _, gradients = run(_loss_and_gradients(function, weights), *[tf.constant(v) for v in values])
    for gradient, expected in zip(gradients, _central_differences(function, weights, values)):
        np.testing.assert_allclose(gradient.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(
    "family",
    [soc_least_squares(3, 5), robust_lp(3, 2), mixed_norms(4, 5)],
    ids=["soc_least_squares", "robust_lp", "mixed_norms"],
)
def test_soc_problems_match_clarabel_and_central_differences(family):
    """Eager only: graph mode runs the same code, checked by the ball and ellipsoid tests (tracing costs ~10 s)."""
    spec, sample = family
    values = sample(np.random.default_rng(5), 2)
    function = SocpLayerFunction(spec)
    outputs = function(*[tf.constant(v) for v in values])
    # Clarabel at tight tolerance is itself off by up to ~4e-6 on these
    # (measured against this solver's answers, which agree to 1e-15 across tolerances).
    np.testing.assert_allclose(outputs[0].numpy(), clarabel_reference(spec, values)[0], atol=1e-5)
    weights = [np.random.default_rng(6).standard_normal(outputs[0].shape)]
    _, gradients = _loss_and_gradients(function, weights)(*[tf.constant(v) for v in values])
    for gradient, expected in zip(gradients, _central_differences(function, weights, values)):
        np.testing.assert_allclose(gradient.numpy(), expected, atol=1e-6)


def ellipsoid_projection_with_P(x, A, z):
    """min ½‖y − x‖² as ½yᵀIy − xᵀy, s.t. ‖A(y − z)‖ ≤ √2: one SOC block (√2, A z − A y) and P = I."""
    batch, dim = x.shape
    A_rows = np.concatenate([np.zeros((batch, 1, dim)), A], axis=1)
    b = np.concatenate([np.full((batch, 1), np.sqrt(2.0)), np.einsum("bij,bj->bi", A, z)], axis=1)
    return A_rows, b, -x, np.broadcast_to(np.eye(dim), (batch, dim, dim)).copy(), {"soc": (dim + 1,)}


def test_quadratic_objective_matches_exact_projection_and_central_differences_in_every_argument(run):
    """P as an argument: the projection is exact, and the gradients in A, b, c and P are the solution map's."""
    rng = np.random.default_rng(21)
    x, A, z = 2.0 * rng.standard_normal((2, 3)), np.eye(3) + 0.3 * rng.standard_normal((2, 3, 3)), 0.1 * rng.standard_normal((2, 3))
    A_rows, b, c, P, cones = ellipsoid_projection_with_P(x, A, z)
    P[1] += 0.2 * np.ones((3, 3))  # a second, non-identity P (still definite)

    def solve(A_rows, b, c, P):
        return [socp_solve(A_rows, b, c, cones, P=P)[0]]

    solution = run(solve, *[tf.constant(v) for v in (A_rows, b, c, P)])[0].numpy()
    np.testing.assert_allclose(solution[0], ellipsoid_projection_exact(x[:1], A[:1], z[:1])[0], atol=1e-10)
    weights = [rng.standard_normal(solution.shape)]
    _, gradients = run(_loss_and_gradients(solve, weights), *[tf.constant(v) for v in (A_rows, b, c, P)])
    for gradient, expected in zip(gradients, _central_differences(solve, weights, (A_rows, b, c, P))):
        np.testing.assert_allclose(gradient.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("family", [squared_least_squares(3, 5), ellipsoid(3)], ids=["squared_least_squares", "ellipsoid"])
def test_program_with_quadratic_objective_matches_its_cone_form_clarabel_and_central_differences(family):
    """`compile_problem(..., quadratic_objective=True)`: fewer rows, the same solution and gradients as the cone form."""
    spec, sample = family
    values = sample(np.random.default_rng(22), 3)
    with_P, as_cone = SocpLayerFunction(spec, quadratic_objective=True), SocpLayerFunction(spec)
    assert with_P.program.P is not None and as_cone.program.P is None
    assert sum(with_P.program.cones.soc) < sum(as_cone.program.cones.soc)
    outputs = with_P(*[tf.constant(v) for v in values])
    np.testing.assert_allclose(outputs[0].numpy(), as_cone(*[tf.constant(v) for v in values])[0].numpy(), atol=1e-9)
    np.testing.assert_allclose(outputs[0].numpy(), clarabel_reference(spec, values)[0], atol=1e-5)
    weights = [np.random.default_rng(23).standard_normal(outputs[0].shape)]
    _, gradients = _loss_and_gradients(with_P, weights)(*[tf.constant(v) for v in values])
    for gradient, expected in zip(gradients, _central_differences(with_P, weights, values)):
        np.testing.assert_allclose(gradient.numpy(), expected, atol=1e-6)


def test_examples_going_on_past_the_early_stop_take_their_own_P(monkeypatch):
    """A first stop at 0.1 leaves some examples to iterate on: they, and their P, are gathered from the batch."""
    rng = np.random.default_rng(24)
    x, A, z = 2.0 * rng.standard_normal((8, 3)), np.eye(3) + 0.3 * rng.standard_normal((8, 3, 3)), 0.1 * rng.standard_normal((8, 3))
    A_rows, b, c, P, cones = ellipsoid_projection_with_P(x, A, z)
    monkeypatch.setattr(solve_module, "_COMPILED_SOLVES", collections.OrderedDict())  # retrace with the setting
    monkeypatch.setattr(solve_module, "POLISH_FROM_TOL", 0.1)
    y, _, _, status, info = socp_solve_with_info(A_rows, b, c, cones, P=P)
    np.testing.assert_array_equal(status.numpy(), 0)
    iterations = info["iterations"].numpy()
    assert iterations.min() < iterations.max()  # some stopped at the first stop, some went on
    np.testing.assert_allclose(y.numpy(), ellipsoid_projection_exact(x, A, z), atol=1e-10)


def test_a_zero_solution_with_zero_multipliers_is_solved():
    """min ½‖P u‖² s.t. ‖u‖ ≤ 1 (the stochastic control policy at state 0): u = 0, every multiplier 0.

    Each term of the check's scales vanishes with the solution; the unit floor keeps rounding from failing it.
    """
    x, A, z = np.zeros((2, 3)), np.stack([np.eye(3), 2.0 * np.eye(3)]), np.zeros((2, 3))
    A_rows, b, c, P, cones = ellipsoid_projection_with_P(x, A, z)
    y, _, _, status, info = socp_solve_with_info(A_rows, b, c, cones, P=P)
    np.testing.assert_array_equal(status.numpy(), 0)
    np.testing.assert_allclose(y.numpy(), 0.0, atol=1e-12)


@pytest.mark.parametrize("scale", [1e3, 1e6, 1e8])
def test_ellipsoid_projection_of_far_points_is_solved_exactly(scale):
    """With the squared norm as P the layer solves points far from the ellipsoid; as a cone it refused most from 1e3."""
    spec, sample = ellipsoid(3)
    layer = CvxpyLayer(spec.problem, spec.parameters, spec.variables)
    x, A, z = sample(np.random.default_rng(25), 8)
    (y,) = layer(tf.constant(scale * x), tf.constant(A), tf.constant(z))
    np.testing.assert_allclose(y.numpy(), ellipsoid_projection_exact(scale * x, A, z), atol=1e-9)


def test_shared_float32_P_with_batched_data():
    """P given once (n, n) for a batch, in float32: results in float32, as accurate as float32 allows."""
    rng = np.random.default_rng(26)
    x, A, z = 2.0 * rng.standard_normal((4, 3)), np.eye(3) + 0.3 * rng.standard_normal((4, 3, 3)), np.zeros((4, 3))
    A_rows, b, c, _, cones = ellipsoid_projection_with_P(x, A, z)
    y, _, _, status = socp_solve(*(v.astype(np.float32) for v in (A_rows, b, c)), cones, P=np.eye(3, dtype=np.float32))
    assert y.dtype == tf.float32
    np.testing.assert_array_equal(status.numpy(), 0)
    exact = ellipsoid_projection_exact(x.astype(np.float32).astype(np.float64), A.astype(np.float32).astype(np.float64), z)
    np.testing.assert_allclose(y.numpy(), exact, atol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_a_loose_bound_does_not_pass_a_wrong_solution(scale):
    """min ½‖x − a‖² s.t. x ≥ −1, ‖x[:2]‖ ≤ 1e7 (inactive): x = max(a, −1), to 1e-8 of the data's magnitude.

    With the objective's scale tied to the bound's, c̃ came out 1e-4 and points 10 away from the solution
    passed as solved (a review's probe); the check now also tests each cone's complementarity.
    """
    bound = 1e7
    A = np.zeros((6, 3))
    A[:3] = -np.eye(3)
    A[4, 0] = A[5, 1] = -1.0
    b = np.array([1.0, 1.0, 1.0, bound, 0.0, 0.0])
    a = scale * np.array([[1.0, -2.0, 0.5], [-3.0, 1.0, 2.0]])
    x, _, _, status, info = socp_solve_with_info(A, b, -a, {"nonneg": 3, "soc": (3,)}, P=np.eye(3))
    solved = status.numpy() == 0
    assert solved.any()
    np.testing.assert_allclose(x.numpy()[solved], np.maximum(a, -1.0)[solved], atol=1e-8 * bound)
    assert np.all(info["complementarity"].numpy()[solved] <= 1e-6)


def test_only_the_symmetric_part_of_P_is_used():
    x, A, z = np.array([[2.0, 1.0]]), np.eye(2)[None], np.zeros((1, 2))
    A_rows, b, c, P, cones = ellipsoid_projection_with_P(x, A, z)
    skew = np.array([[[0.0, 5.0], [-5.0, 0.0]]])
    np.testing.assert_allclose(socp_solve(A_rows, b, c, cones, P=P + skew)[0].numpy(),
                               socp_solve(A_rows, b, c, cones, P=P)[0].numpy(), atol=1e-12)


def test_non_convex_P_raises_eagerly_and_is_a_status_in_graphs():
    x, A, z = np.array([[2.0, 1.0], [0.5, 0.0]]), np.stack([np.eye(2)] * 2), np.zeros((2, 2))
    A_rows, b, c, P, cones = ellipsoid_projection_with_P(x, A, z)
    P[1] = np.diag([1.0, -1.0])
    with pytest.raises(ValueError, match=r"Expected `P` to be positive semidefinite.*smallest eigenvalue -1 at batch index 1"):
        socp_solve(A_rows, b, c, cones, P=P)
    statuses = tf.function(lambda P: socp_solve(A_rows, b, c, cones, P=P, check_status=False)[3])(tf.constant(P))
    assert [STATUS_NAMES[int(code)] for code in statuses.numpy()] == ["solved", "non-convex (P not positive semidefinite)"]


def test_P_of_the_wrong_shape_raises_value_error():
    A, b, c, cones = ball_projection_data(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Expected `P` to have shape \(n, n\) or \(batch, n, n\) with n=4. Received: P.shape=\(3, 3\)"):
        socp_solve(A, b, c, cones, P=np.eye(3))


def _status_batch():
    """Example 0 solvable, 1 infeasible (x₀ ≥ 2 and ‖x‖ ≤ 1), 2 unbounded (min −x₁ s.t. x₀ ≥ 2, |x₀| ≤ x₁).

    Rows in SCS order: the nonneg row s = x₀ − 2, then one SOC(3).
    """
    bounded = np.array([[-1.0, 0.0], [0.0, 0.0], [-1.0, 0.0], [0.0, -1.0]])  # (x₀ − 2; r, x₀, x₁)
    cone_of_x1 = np.array([[-1.0, 0.0], [0.0, -1.0], [-1.0, 0.0], [0.0, 0.0]])  # (x₀ − 2; x₁, x₀, 0)
    A = np.stack([bounded, bounded, cone_of_x1])
    b = np.array([[-2.0, 3.0, 0.0, 0.0], [-2.0, 1.0, 0.0, 0.0], [-2.0, 0.0, 0.0, 0.0]])
    c = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, -1.0]])
    return A, b, c, ConeDims(zero=0, nonneg=1, soc=(3,), psd=(), exp=0)


def test_statuses_by_batch_index():
    A, b, c, cones = _status_batch()
    x, _, _, status = socp_solve(A, b, c, cones, check_status=False)
    assert [STATUS_NAMES[int(code)] for code in status.numpy()] == ["solved", "infeasible (primal infeasible)", "unbounded (dual infeasible)"]
    np.testing.assert_allclose(x.numpy()[0], [2.0, 0.0], atol=1e-9)
    with pytest.raises(SolverError) as error:
        socp_solve(A, b, c, cones)
    assert error.value.statuses == {"infeasible (primal infeasible)": [1], "unbounded (dual infeasible)": [2]}
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"infeasible \(primal infeasible\)\\?' at batch indices \[1\]"):
        tf.function(lambda A, b, c: socp_solve(A, b, c, cones)[0])(A, b, c)


def test_forward_and_gradient_graphs_have_no_host_callback():
    A, b, c, cones = ball_projection_data(np.ones((2, 3)))

    def solve_and_gradient(b):
        with tf.GradientTape() as tape:
            tape.watch(b)
            loss = tf.reduce_sum(socp_solve(A, b, c, cones)[0])
        return tape.gradient(loss, b)

    graph = tf.function(solve_and_gradient).get_concrete_function(tf.TensorSpec(b.shape, tf.float64)).graph
    op_types = set()
    for function in [graph.as_graph_def().library.function[i] for i in range(len(graph.as_graph_def().library.function))]:
        op_types.update(node.op for node in function.node_def)
    op_types.update(op.type for op in graph.get_operations())
    assert "While" in op_types or "StatelessWhile" in op_types
    assert not op_types & {"PyFunc", "EagerPyFunc", "PyFuncStateless", "NumpyFunction"}


def test_float32_inputs_give_float32_outputs():
    A, b, c, cones = ball_projection_data(np.array([[2.0, 0.0, 0.0]]))
    x, y, s, _ = socp_solve(A.astype(np.float32), b.astype(np.float32), c.astype(np.float32), cones)
    assert x.dtype == y.dtype == s.dtype == tf.float32
    np.testing.assert_allclose(x.numpy()[0, 1:], [1.0, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize(
    "cones, message",
    [
        (ConeDims(zero=0, nonneg=0, soc=(4, 4), psd=(2,), exp=0), "no PSD or exponential"),
        ({"soc": (4, 4), "exp": 1}, "unknown keys"),
        ({"soc": (4, 3)}, "Expected `A` to have shape"),
    ],
)
def test_bad_cones_raise_value_error(cones, message):
    A, b, c, _ = ball_projection_data(np.ones((2, 3)))
    with pytest.raises(ValueError, match=message):
        socp_solve(A, b, c, cones)


def test_nan_input_raises_value_error():
    A, b, c, cones = ball_projection_data(np.ones((2, 3)))
    b[1, 2] = np.nan
    with pytest.raises(ValueError, match="Expected `b` to contain only finite values"):
        socp_solve(A, b, c, cones)


def test_loop_stops_early_where_the_polish_is_accepted_and_the_rest_iterate_on(monkeypatch):
    """The loop stops at `POLISH_FROM_TOL` and polishes; examples whose polish is not accepted go on to `tol`.

    Three runs on 24 robust LPs: the default; no early stop (`POLISH_FROM_TOL`
    at `tol`); and every polish rejected (`SOLVED_VIOLATION` = 0), which must
    make exactly the run without the early stop.
    """
    spec, sample = robust_lp(6, 8)
    function = SocpLayerFunction(spec)
    data = function.data(*[tf.constant(v) for v in sample(np.random.default_rng(7), 24)])

    polish_from_tol, solved_violation = solve_module.POLISH_FROM_TOL, optimality_conditions.SOLVED_VIOLATION

    def run(**settings):
        monkeypatch.setattr(solve_module, "_COMPILED_SOLVES", collections.OrderedDict())  # retrace with the settings
        monkeypatch.setattr(solve_module, "POLISH_FROM_TOL", settings.get("polish_from_tol", polish_from_tol))
        monkeypatch.setattr(optimality_conditions, "SOLVED_VIOLATION", settings.get("solved_violation", solved_violation))
        x, y, _, status, info = solve_compiled_socp(function.program, *data[:3], P_values=data[3])
        np.testing.assert_array_equal(status.numpy(), 0)
        return read_output(function.program.outputs[0], x, y).numpy(), info["iterations"].numpy()

    x_early, iterations_early = run()
    x_full, iterations_full = run(polish_from_tol=solve_module.DEFAULT_TOL)
    x_rejected, iterations_rejected = run(solved_violation=0.0)
    np.testing.assert_array_equal(iterations_rejected, iterations_full)
    np.testing.assert_allclose(x_rejected, x_full, atol=1e-12)
    assert np.all(iterations_early <= iterations_full) and iterations_early.sum() < iterations_full.sum()
    np.testing.assert_allclose(x_early, x_full, atol=1e-10)

"""Property-based tests (hypothesis): invariants that need no reference solver.

Random well-posed inputs must give outputs that are feasible, optimal
(optimality conditions checked from the output), idempotent where the map is
a projection, invariant where the map is (shifts), and the same eagerly and
inside tf.function; random bad inputs must end in a clear error, never in a
crash or a silently wrong output. `python -m pytest tests/test_properties.py
--hypothesis-show-statistics` prints how many cases each property ran.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import keras_optlayers as kol
from keras_optlayers import ops
from keras_optlayers.errors import SolverError

# Examples per property: enough to find edge cases, few enough for CI on 2 cores.
PROPERTY_SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The native QP solver's properties: each case solves a QP through the whole
# pipeline (and traces per shape), so fewer cases.
QP_PROPERTY_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=20)

# Finite floats of every magnitude, both signs, exact zeros and ties.
MAGNITUDES = st.sampled_from([1e-30, 1e-8, 1e-3, 1.0, 1e3, 1e8, 1e15, 1e30])


@st.composite
def score_rows(draw, min_n=2, max_n=8, dtype=np.float64):
    """(batch, n) scores mixing magnitudes; float32 stays below its overflow."""
    batch = draw(st.integers(1, 3))
    n = draw(st.integers(min_n, max_n))
    base = draw(hnp.arrays(np.float64, (batch, n), elements=st.floats(-1, 1, allow_nan=False)))
    scale = draw(hnp.arrays(np.float64, (batch, n), elements=MAGNITUDES))
    x = base * scale
    if dtype == np.float32:
        x = np.clip(x, -1e30, 1e30)
    return x.astype(dtype)


def _tolerance(dtype) -> float:
    return 1e-5 if dtype == np.float32 else 1e-10


# -- fast projections ---------------------------------------------------------


@PROPERTY_SETTINGS
@given(x=score_rows(), dtype=st.sampled_from([np.float32, np.float64]))
def test_sparsemax_is_a_feasible_idempotent_shift_invariant_projection(x, dtype):
    x = x.astype(dtype)
    y = ops.sparsemax(x).numpy()
    tol = _tolerance(dtype)
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=tol * x.shape[-1])
    np.testing.assert_allclose(ops.sparsemax(y).numpy(), y, atol=tol * 10)
    # Optimality: y = max(x - tau, 0) with one tau per row (checked where x is
    # representable next to tau, i.e. relative to the row's scale).
    support = y > 0
    tau = np.where(support, x.astype(np.float64) - y, np.nan)
    spread = np.nanmax(tau, -1) - np.nanmin(tau, -1)
    scale = 1.0 + np.max(np.abs(x), -1)
    assert np.all(spread <= 10 * tol * scale)


def _projection(name: str, n: int):
    """(op on a float64 array, what each row sums to, the upper bound or None)."""
    upper = max(1.0 / n, 0.45)
    k = 1.5 if n > 2 else 1.0
    return {
        "sparsemax": (lambda t: ops.sparsemax(t), 1.0, None),
        "csparsemax": (lambda t: ops.csparsemax(t, upper), 1.0, upper),
        "csoftmax": (lambda t: ops.csoftmax(t, upper), 1.0, upper),
        "lml": (lambda t: ops.lml(t, k), k, None),
    }[name]


@PROPERTY_SETTINGS
@given(x=score_rows(), name=st.sampled_from(["sparsemax", "csparsemax", "csoftmax", "lml"]))
def test_projections_are_feasible_at_any_magnitude(x, name):
    op, total, upper = _projection(name, x.shape[-1])
    y = op(x).numpy()
    assert np.all(np.isfinite(y)) and np.all(y >= 0), y
    np.testing.assert_allclose(y.sum(-1), total, atol=1e-9 * x.shape[-1])
    if upper is not None:
        assert np.all(y <= upper + 1e-12)


@PROPERTY_SETTINGS
@given(
    data=st.data(),
    exponent=st.integers(-60, 60),
    shift_offset=st.integers(-20, 30),
    name=st.sampled_from(["sparsemax", "csparsemax", "csoftmax", "lml"]),
)
def test_projections_are_shift_invariant(data, exponent, shift_offset, name):
    """f(x + c) = f(x), with x on a dyadic grid so that x + c is exact in float64."""
    n = data.draw(st.integers(2, 8))
    ints = data.draw(hnp.arrays(np.int64, (2, n), elements=st.integers(-2**20, 2**20)))
    x = ints * 2.0 ** (exponent - 20)
    shift = 2.0 ** (exponent + shift_offset)
    op, _, _ = _projection(name, n)
    np.testing.assert_allclose(op(x + shift).numpy(), op(x).numpy(), atol=1e-9)


@PROPERTY_SETTINGS
@given(x=score_rows(max_n=6), name=st.sampled_from(["sparsemax", "csparsemax", "csoftmax", "lml"]))
def test_projections_agree_eagerly_in_tf_function_and_under_xla(x, name):
    n = x.shape[-1]
    op = {
        "sparsemax": lambda t: ops.sparsemax(t),
        "csparsemax": lambda t: ops.csparsemax(t, max(1.0 / n, 0.45)),
        "csoftmax": lambda t: ops.csoftmax(t, max(1.0 / n, 0.45)),
        "lml": lambda t: ops.lml(t, 1.0),
    }[name]
    eager = op(tf.constant(x)).numpy()
    traced = tf.function(op)(tf.constant(x)).numpy()
    compiled = tf.function(op, jit_compile=True)(tf.constant(x)).numpy()
    np.testing.assert_allclose(traced, eager, atol=1e-12)
    np.testing.assert_allclose(compiled, eager, atol=1e-9)


@PROPERTY_SETTINGS
@given(x=score_rows(min_n=3), data=st.data())
def test_masked_entries_get_zero_and_the_rest_is_the_restricted_projection(x, data):
    n = x.shape[-1]
    keep = data.draw(hnp.arrays(bool, (n,), elements=st.booleans()).filter(lambda m: m.sum() >= 1))
    y = ops.sparsemax(x, mask=np.broadcast_to(keep, x.shape)).numpy()
    assert np.all(y[:, ~keep] == 0)
    np.testing.assert_allclose(y[:, keep], ops.sparsemax(x[:, keep]).numpy(), atol=1e-12)


@PROPERTY_SETTINGS
@given(bad=st.sampled_from([np.nan, np.inf]), position=st.integers(0, 3))
def test_nan_and_inf_scores_propagate_as_nan_like_softmax(bad, position):
    x = np.array([[0.3, -1.0, 2.0, 0.5], [1.0, 2.0, 3.0, 4.0]])
    x[0, position] = bad
    for op in (ops.sparsemax, lambda t: ops.lml(t, 2.0)):
        y = op(x).numpy()
        assert np.all(np.isnan(y[0]))
        assert np.all(np.isfinite(y[1]))


# -- the native QP solver ---------------------------------------------------------


@st.composite
def feasible_qps(draw):
    """Strictly convex QPs with a strictly feasible point, data of one random magnitude.

    A few sizes only (edge ones included: no equalities, no inequalities, p =
    n - 1): each new shape traces the solver anew, and the cases vary the
    data, which is what the properties are about.
    """
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.sampled_from([2, 4, 6]))
    p = draw(st.sampled_from(sorted({0, 1, n - 1})))
    m = draw(st.sampled_from([0, 2, 6]))
    magnitude = draw(st.sampled_from([1e-6, 1e-2, 1.0, 1e2, 1e6]))
    M = rng.normal(size=(n, n))
    P = M @ M.T + 0.1 * np.eye(n)
    z = rng.normal(size=n)
    A = rng.normal(size=(p, n))
    G = rng.normal(size=(m, n))
    q = rng.normal(size=n) * magnitude * 3
    return P, q, A, A @ z, G, G @ z + rng.uniform(0.1, 1.0, size=m), magnitude


@QP_PROPERTY_SETTINGS
@given(qp=feasible_qps())
def test_qp_solutions_satisfy_their_optimality_conditions(qp):
    P, q, A, b, G, h, _ = qp
    args = dict(A=A if len(A) else None, b=b if len(A) else None, G=G if len(G) else None, h=h if len(G) else None)
    try:
        x, nu, lam = (t.numpy() for t in kol.qp_solve(P, q, **args, return_duals=True))
    except SolverError:
        return  # a clear error is allowed (see README "Limits"); a wrong point is not
    scale = 1.0 + max(np.abs(P).max(), np.abs(q).max(), np.abs(h).max(initial=0.0), np.abs(b).max(initial=0.0))
    x_scale = 1.0 + np.abs(x).max()
    stationarity = P @ x + q + (A.T @ nu if len(A) else 0) + (G.T @ lam if len(G) else 0)
    assert np.abs(stationarity).max() <= 1e-6 * scale * x_scale
    if len(A):
        assert np.abs(A @ x - b).max() <= 1e-6 * scale * x_scale
    if len(G):
        assert np.all(G @ x - h <= 1e-6 * scale * x_scale)
        assert np.all(lam >= -1e-9 * scale)
        assert np.abs(lam * (G @ x - h)).max() <= 1e-6 * scale * x_scale * (1 + np.abs(lam).max())


# One function for every case, traced once per shape (the solver needs static
# sizes), not once per case.
_TRACED_QP_SOLVE = tf.function(lambda P, q, G, h: kol.qp_solve(P, q, G=G, h=h))


@QP_PROPERTY_SETTINGS
@given(qp=feasible_qps())
def test_qp_solve_agrees_eagerly_and_in_tf_function(qp):
    P, q, A, b, G, h, _ = qp
    assume(len(G) > 0)
    try:
        eager = kol.qp_solve(P, q, G=G, h=h).numpy()
    except SolverError:
        return
    traced = _TRACED_QP_SOLVE(P, q, G, h).numpy()
    np.testing.assert_allclose(traced, eager, atol=1e-9 * (1 + np.abs(eager).max()))


# -- learnable layers ---------------------------------------------------------------

_LAYERS: dict = {}


def _shared_layer(name, make):
    """One layer for all of a property's cases: the cases vary the inputs, and a
    layer per case would spend the test's time compiling the same problem."""
    if name not in _LAYERS:
        _LAYERS[name] = make()
    return _LAYERS[name]



@PROPERTY_SETTINGS
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1e-3, 1.0, 10.0, 1e3]))
def test_polytope_projection_is_feasible_and_idempotent(seed, scale):
    layer = _shared_layer("polytope", lambda: kol.PolytopeProjection(5, dtype="float64"))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, 3)) * scale
    y = layer(x).numpy()
    G, h = (t.numpy() for t in layer.polytope())
    slack = 1e-7 * (1 + np.abs(y).max())
    assert np.all(y @ G.T <= h + slack)
    try:
        again = layer(y).numpy()
    except SolverError:
        # Points exactly on a face make the QP degenerate (an active
        # constraint with a zero multiplier): the solver may fail its check
        # there, and says so, rather than return a point it cannot vouch for.
        return
    np.testing.assert_allclose(again, y, atol=1e-6 * (1 + np.abs(y).max()))
    inside = np.all(x @ G.T <= h - 1e-6, axis=1)
    np.testing.assert_allclose(y[inside], x[inside], atol=1e-7 * (1 + scale))


@PROPERTY_SETTINGS
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1e-3, 1.0, 10.0, 1e3]))
def test_ellipsoid_projection_is_feasible_and_idempotent(seed, scale):
    layer = _shared_layer("ellipsoid", lambda: kol.EllipsoidProjection(dtype="float64"))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 2)) * scale
    try:
        y = layer(x).numpy()
    except SolverError:
        # The native SOCP solver ends some far points (1e3 away) in "numerical
        # error": a clear error, never a wrong point (README, "Limits").
        assert scale >= 1e3
        return
    radius = np.sqrt(2.0)  # A = I: the ball of radius sqrt(2)
    # Accurate relative to the data's magnitude (the objective ½‖x - y‖² is of size scale²).
    tolerance = 1e-7 * (1 + scale)
    assert np.all(np.linalg.norm(y, axis=1) <= radius + tolerance)
    # Points on the boundary make the problem degenerate (an active constraint
    # with a zero multiplier): interior-point accuracy drops to ~1e-5 there,
    # or the solver says it failed (README, "Limits").
    try:
        again = layer(y).numpy()
    except SolverError:
        return
    np.testing.assert_allclose(again, y, atol=1e-4)
    outside = np.linalg.norm(x, axis=1) > radius
    np.testing.assert_allclose(y[outside], radius * x[outside] / np.linalg.norm(x[outside], axis=1, keepdims=True),
                               atol=tolerance)


# -- bad inputs: a clear error, never a crash or a wrong answer -------------------------


def _interval_layer():
    x, lower, upper = cp.Parameter(2), cp.Parameter(2), cp.Parameter(2)
    y = cp.Variable(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [lower <= y, y <= upper])
    return kol.CvxpyLayer(problem, [x, lower, upper], [y])


INTERVAL = None


@PROPERTY_SETTINGS
@given(
    shape=st.sampled_from([(2,), (3, 2), (0, 2), (2, 3), (3,), (2, 2, 2), ()]),
    dtype=st.sampled_from(["float32", "float64", "int32", "bool"]),
    # The solvers' guaranteed range is |data| <= 1e10 (README, "Limits").
    fill=st.sampled_from([0.0, 1.0, np.nan, np.inf, -1e10, 1e10, 1e-8]),
)
def test_bad_inputs_end_in_a_clear_error_or_a_right_answer(shape, dtype, fill):
    global INTERVAL
    INTERVAL = INTERVAL or _interval_layer()
    x = np.full(shape, fill).astype(dtype) if dtype != "bool" else np.zeros(shape, bool)
    lower, upper = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    try:
        y, = INTERVAL(x, lower, upper)
    except (ValueError, SolverError) as err:
        assert "Received" in str(err) or "batch indices" in str(err), str(err)
        return
    expected = np.clip(np.asarray(x, np.float64), -1, 1)
    np.testing.assert_allclose(np.asarray(y, np.float64), expected, atol=1e-6)


@PROPERTY_SETTINGS
@given(gap=st.floats(1e-3, 1e3), index=st.integers(0, 3))
def test_infeasible_examples_are_named_never_returned(gap, index):
    global INTERVAL
    INTERVAL = INTERVAL or _interval_layer()
    lower = np.zeros((4, 2))
    upper = np.ones((4, 2))
    lower[index] = upper[index] + gap  # empty interval
    with pytest.raises(SolverError, match=rf"batch indices \[{index}\]"):
        INTERVAL(np.zeros((4, 2)), lower, upper)

"""The native QP solver never reports a wrong point as solved, and is accurate by default.

Reproductions of wrong answers once returned as "solved", the magnitude
grids (1e-8 to 1e10), P's convexity, bounds of 1e30, loose tolerances, the
default accuracy against Clarabel and central differences, and the bounded
cache of compiled solves.
"""

from __future__ import annotations

import re

import cvxpy as cp
import numpy as np
import pytest
import tensorflow as tf
from helpers import REFERENCE_CLARABEL, central_differences, exact_sparsemax

from keras_optlayers.errors import SolverError
from keras_optlayers.solvers.qp import (
    STATUS_NAMES,
    qp_solve,
    qp_solve_with_info,
    qp_solve_with_status,
)
from keras_optlayers.solvers.qp import solve as qp_solve_module

SOLVED = "solved"
NAMES = ("P", "q", "A", "b", "G", "h")


def names(status) -> list[str]:
    return [STATUS_NAMES[int(s)] for s in np.atleast_1d(status)]


def direct_sparsemax_qp(x: np.ndarray) -> dict:
    """min ‖y − x‖² s.t. 1ᵀy = 1, y ≥ 0 as (P, q, A, b, G, h): P = 2I, q = −2x."""
    n = x.shape[-1]
    return {"P": 2.0 * np.eye(n), "q": -2.0 * x, "A": np.ones((1, n)), "b": np.ones(1), "G": -np.eye(n), "h": np.zeros(n)}


def canonical_sparsemax_qp(x: np.ndarray) -> dict:
    """The same QP as CVXPY hands it to the solver: variables (t, y), min ‖t‖², −t + y = x, 1ᵀy = 1, y ≥ 0."""
    batch, n = x.shape
    P = np.zeros((2 * n, 2 * n))
    P[:n, :n] = 2.0 * np.eye(n)
    A = np.zeros((n + 1, 2 * n))
    A[:n, :n], A[:n, n:], A[n, n:] = -np.eye(n), np.eye(n), 1.0
    G = np.zeros((n, 2 * n))
    G[:, n:] = -np.eye(n)
    b = np.concatenate([x, np.ones((batch, 1))], axis=1)
    return {"P": P, "q": np.zeros(2 * n), "A": A, "b": b, "G": G, "h": np.zeros(n)}


def feasible_qp(rng, batch, n, p, m, active):
    """QP data with a known solution x₀: `active` inequalities tight with λ > 0, the rest slack."""
    root = rng.standard_normal((batch, n, n)) / np.sqrt(n)
    P = root @ np.swapaxes(root, -1, -2) + 0.5 * np.eye(n)
    A, G = rng.standard_normal((batch, p, n)), rng.standard_normal((batch, m, n))
    x0, nu = rng.standard_normal((batch, n)), rng.standard_normal((batch, p))
    slack = np.abs(rng.standard_normal((batch, m))) + 0.5
    lam = np.zeros((batch, m))
    slack[:, :active], lam[:, :active] = 0.0, np.abs(rng.standard_normal((batch, active))) + 0.5
    q = -np.einsum("bij,bj->bi", P, x0) - np.einsum("bij,bi->bj", A, nu) - np.einsum("bij,bi->bj", G, lam)
    data = {"P": P, "q": q, "A": A, "b": np.einsum("bij,bj->bi", A, x0), "G": G, "h": np.einsum("bij,bj->bi", G, x0) + slack}
    return data, x0


def example(data: dict, i: int) -> dict:
    """Example i of batched data (shared arguments as they are; None stays None)."""
    return {k: v if v is None or v.ndim == (2 if k in "PAG" else 1) else v[i] for k, v in data.items()}


def clarabel_solution(P, q, A=None, b=None, G=None, h=None) -> np.ndarray:
    x = cp.Variable(q.shape[0])
    constraints = ([A @ x == b] if A is not None else []) + ([G @ x <= h] if G is not None else [])
    problem = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(P)) + q @ x), constraints)
    problem.solve(**REFERENCE_CLARABEL)
    assert problem.status == cp.OPTIMAL
    return x.value


# -- reproductions ------------------------------------------------------------


def test_sparsemax_with_a_huge_entry_is_solved_or_reported(run):
    """Reproduction: x = [1e10, 2, 3, 4] came back [6, −1.667, −1.667, −1.667] as solved.

    The wrong answer came from the QP as CVXPY canonicalizes it (through
    CvxpyLayer); at 1e5 its y ≥ 0 was violated by 1.7e-5. The exact answer
    is [1, 0, 0, 0] in both cases.
    """
    x = np.array([[1e10, 2.0, 3.0, 4.0], [1e5, 2.0, 3.0, 4.0]])
    data = canonical_sparsemax_qp(x)
    solution, _, _, status = run(lambda *t: qp_solve_with_status(*t), *[tf.constant(data[k]) for k in NAMES])
    y = solution.numpy()[:, 4:]
    assert names(status)[1] == SOLVED  # 1e5 is within reach of float64
    for i, name in enumerate(names(status)):
        if name == SOLVED:
            np.testing.assert_allclose(y[i], [1.0, 0.0, 0.0, 0.0], atol=1e-7)
        else:
            assert name == "inaccurate"


def test_non_convex_P_is_refused():
    """Reproduction: P = −I came back as solved ([0, 0] or a vertex of the box)."""
    with pytest.raises(ValueError, match=re.escape("Expected `P` to be positive semidefinite")) as error:
        qp_solve_with_status(-np.eye(2), np.ones(2), G=-np.eye(2), h=np.zeros(2))
    assert "Received: P with smallest eigenvalue -1 at batch index 0" in str(error.value)
    P = np.stack([np.eye(2), -np.eye(2)])
    with pytest.raises(ValueError, match=re.escape("smallest eigenvalue -1 at batch index 1")):
        qp_solve(P, np.zeros((2, 2)), G=np.eye(2), h=np.ones(2))
    # In a graph it is a status (under XLA too: see test_statistics_under_xla_match_graph);
    # qp_solve's assert then names it.
    tensors = [tf.constant(P), tf.constant(np.zeros((2, 2))), tf.constant(np.eye(2)), tf.constant(np.ones(2))]
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape("non-convex (P not positive semidefinite)")):
        tf.function(lambda P, q, G, h: qp_solve(P, q, G=G, h=h))(*tensors)


def test_positive_semidefinite_P_with_rounding_is_accepted():
    """A singular P = LLᵀ formed in float32 has eigenvalues of −1e-8 × its scale: rounding, not non-convexity."""
    root = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    P = root @ root.T
    assert np.linalg.eigvalsh(P.astype(np.float64))[0] < 0.0
    x = qp_solve(P, np.ones(4, np.float32), G=-np.eye(4, dtype=np.float32), h=np.zeros(4, np.float32))
    np.testing.assert_allclose(x, np.zeros(4), atol=1e-6)


def test_bounds_of_1e30_are_no_bounds(run):
    """Reproduction: a bounded problem with an h entry of 1e30 (never active) was reported failed."""
    G = np.vstack([np.eye(2), -np.eye(2)])
    h_infinite = np.array([1e30, 0.5, 1e30, 0.5])
    h_finite = np.array([10.0, 0.5, 10.0, 0.5])
    P, q = np.eye(2), np.array([-1.0, -1.0])

    def solve_and_differentiate(h):
        with tf.GradientTape() as tape:
            tape.watch(h)
            x, _, lam, status = qp_solve_with_status(P, q, G=G, h=h)
            loss = tf.reduce_sum(x * [1.0, 2.0])
        return x, lam, status, tape.gradient(loss, h)

    x, lam, status, grad_h = run(solve_and_differentiate, tf.constant(h_infinite))
    x_ref, lam_ref, _, grad_ref = run(solve_and_differentiate, tf.constant(h_finite))
    assert names(status) == [SOLVED]
    np.testing.assert_allclose(x, [1.0, 0.5], atol=1e-9)
    np.testing.assert_allclose(x, x_ref, atol=1e-9)
    np.testing.assert_allclose(lam, lam_ref, atol=1e-9)
    np.testing.assert_allclose(grad_h, grad_ref, atol=1e-9)
    assert grad_h.numpy()[0] == 0.0 and grad_h.numpy()[2] == 0.0


def test_loose_tolerance_does_not_pass_a_wrong_point(run):
    """Reproduction: tol=1e6 returned points breaking the constraints without a word."""
    data, x0 = feasible_qp(np.random.default_rng(4), 3, 5, 1, 6, 3)
    tensors = [tf.constant(data[k]) for k in NAMES]
    x, _, _, status = run(lambda *t: qp_solve_with_status(*t, tol=1e6), *tensors)
    for i, name in enumerate(names(status)):
        assert name in (SOLVED, "inaccurate")
        if name == SOLVED:  # only if the point is as good as the check demands
            np.testing.assert_allclose(x[i], x0[i], atol=1e-4)
    assert "inaccurate" in names(status)
    with pytest.raises(SolverError, match="inaccurate"):
        qp_solve(**data, tol=1e6)



def test_dually_degenerate_qp_keeps_its_verified_polish(run):
    """Reproduction: a box-constrained sparsemax (CSparsemax's QP, n = 100, u = 0.02) reported "inaccurate".

    Fifty entries sit at the bound u and sum to exactly 1, so the sum's multiplier is not unique. The
    loop's first stop at 1e-6 polished to a verified solution (7e-10 off), but not to rounding; run on to
    1e-8, its second polish failed and the 1e-8 iterate it left was 1.2e-4 off, which the check rejected.
    """
    n, upper = 100, 0.02
    x = np.random.default_rng(0).standard_normal((128, n))[85:86]  # the benchmark's example that failed
    data = {"P": 2.0 * np.eye(n), "q": -2.0 * x, "A": np.ones((1, n)), "b": np.ones(1),
            "G": np.vstack([-np.eye(n), np.eye(n)]), "h": np.concatenate([np.zeros(n), np.full(n, upper)])}
    y, _, _, status = run(lambda *t: qp_solve_with_status(*t), *[tf.constant(data[k]) for k in NAMES])
    assert names(status) == [SOLVED]
    low, high = x.min() - 1.0, x.max()  # the threshold τ of y = clip(x − τ, 0, u) with sum(y) = 1, by bisection
    for _ in range(200):
        tau = 0.5 * (low + high)
        low, high = (tau, high) if np.clip(x - tau, 0.0, upper).sum() > 1.0 else (low, tau)
    np.testing.assert_allclose(y.numpy(), np.clip(x - tau, 0.0, upper), atol=1e-8)


# -- magnitudes -----------------------------------------------------------------

MAGNITUDES = 10.0 ** np.arange(-8, 11)


@pytest.mark.parametrize("form", [direct_sparsemax_qp, canonical_sparsemax_qp], ids=["direct", "canonical"])
def test_sparsemax_over_magnitudes_is_right_or_reported(form, run):
    """Inputs from 1e-8 to 1e10: solved and right (to the rounding of x itself), or reported."""
    base = np.array([0.3, -0.2, 0.9, 0.35])
    inputs = np.concatenate([MAGNITUDES[:, None] * base, np.c_[MAGNITUDES, np.tile([0.2, 0.5, 0.9], (len(MAGNITUDES), 1))]])
    data = form(inputs)
    x, _, _, status = run(lambda *t: qp_solve_with_status(*t), *[tf.constant(data[k]) for k in NAMES])
    y = x.numpy()[:, -4:]
    expected = exact_sparsemax(inputs)
    statuses = names(status)
    for i, name in enumerate(statuses):
        if name == SOLVED:
            tolerance = 1e-7 + 64 * np.finfo(float).eps * np.abs(inputs[i]).max()
            np.testing.assert_allclose(y[i], expected[i], atol=tolerance, err_msg=f"input {inputs[i]}")
        else:
            assert name == "inaccurate", (inputs[i], name)
    # Well inside float64's reach everything is solved.
    moderate = np.abs(inputs).max(axis=1) <= 1e5
    assert all(s == SOLVED for s, keep in zip(statuses, moderate) if keep)


def test_random_qp_over_magnitudes(run):
    """x scaled from 1e-8 to 1e10, and the objective from 1e-8 to 1e8: solved, relative error ≤ 1e-7."""
    rng = np.random.default_rng(7)
    count = len(MAGNITUDES)
    data, x0 = feasible_qp(rng, count, 6, 2, 8, 3)
    size = MAGNITUDES[:, None]
    weight = 10.0 ** rng.integers(-8, 9, size=count)[:, None]
    data = {"P": data["P"] * weight[:, :, None], "q": data["q"] * size * weight, "A": data["A"], "b": data["b"] * size,
                "G": data["G"], "h": data["h"] * size}
    x, _, _, status = run(lambda *t: qp_solve_with_status(*t), *[tf.constant(data[k]) for k in NAMES])
    assert names(status) == [SOLVED] * count
    np.testing.assert_allclose(x / size, x0, atol=1e-7)


# -- default accuracy -------------------------------------------------------------


def box_qp(rng, batch, n):
    root = rng.standard_normal((batch, n, n)) / np.sqrt(n)
    P = root @ np.swapaxes(root, -1, -2) + 0.1 * np.eye(n)
    return {"P": P, "q": 3.0 * rng.standard_normal((batch, n)), "A": None, "b": None,
                "G": np.vstack([np.eye(n), -np.eye(n)]), "h": np.ones(2 * n)}


def accuracy_cases():
    rng = np.random.default_rng(21)
    optnet, _ = feasible_qp(rng, 4, 10, 5, 5, 3)
    sparsemax = direct_sparsemax_qp(rng.standard_normal((4, 6)))
    return {"optnet": optnet, "sparsemax": sparsemax, "box": box_qp(rng, 4, 5)}


@pytest.mark.parametrize("case", ["optnet", "sparsemax", "box"])
def test_default_settings_match_tight_clarabel(case, run):
    data = accuracy_cases()[case]
    args = {k: tf.constant(v) for k, v in data.items() if v is not None}
    x, _, _, status, info = run(lambda a: qp_solve_with_info(**a), args)
    assert names(status) == [SOLVED] * 4
    assert np.all(info["iterations"].numpy() >= 1) and np.all(info["primal_residual"].numpy() < 1e-12)
    for i in range(4):
        np.testing.assert_allclose(x[i], clarabel_solution(**example(data, i)), atol=1e-7)


@pytest.mark.parametrize("case", ["optnet", "sparsemax", "box"])
def test_default_settings_gradients_match_central_differences(case):
    data = example(accuracy_cases()[case], 0)
    present = [k for k in NAMES if data[k] is not None]
    arrays = [np.array(data[k], dtype=np.float64) for k in present]
    weights = np.random.default_rng(3).standard_normal(data["q"].shape)

    def loss(values):
        return tf.reduce_sum(weights * qp_solve(**dict(zip(present, values))))

    tensors = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        value = loss(tensors)
    analytic = tape.gradient(value, tensors)
    # Central differences along two random directions per argument (the
    # full Jacobian costs hundreds of solves). The solution map is piecewise
    # linear in q, b, h and smooth in P, A, G near a strictly complementary
    # solution: a 1e-5 step is exact to ~1e-10.
    rng = np.random.default_rng(5)
    for name, array, gradient in zip(present, arrays, analytic):
        for direction in rng.standard_normal((2,) + array.shape):
            def along(t, direction=direction, name=name):
                return float(loss([tf.constant(a + t[0] * direction if k == name else a) for k, a in zip(present, arrays)]))

            (numeric,) = central_differences(along, [np.zeros(1)], step=1e-5)
            np.testing.assert_allclose(np.sum(gradient * direction), numeric[0], atol=1e-6, rtol=1e-6,
                                       err_msg=f"gradient of {name}")


def test_statistics_under_xla_match_graph():
    """Statuses, the check and its statistics compile under XLA; example 3 has P = −I."""
    data, x0 = feasible_qp(np.random.default_rng(9), 4, 5, 2, 6, 2)
    data["P"][3] = -np.eye(5)
    tensors = [tf.constant(data[k]) for k in NAMES]
    graph = tf.function(lambda *t: qp_solve_with_info(*t))(*tensors)
    xla = tf.function(lambda *t: qp_solve_with_info(*t), jit_compile=True)(*tensors)
    for result in (graph, xla):
        assert names(result[3]) == [SOLVED] * 3 + ["non-convex (P not positive semidefinite)"]
        np.testing.assert_allclose(result[0][:3], x0[:3], atol=1e-9)
        assert result[4]["iterations"].shape == (4,) and result[4]["gap"].dtype == tf.float64
        assert np.all(result[4]["primal_residual"].numpy()[:3] < 1e-12)
    np.testing.assert_array_equal(graph[4]["iterations"], xla[4]["iterations"])


# -- cache ------------------------------------------------------------------------------


def _resident_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_new_tolerances_reuse_the_compiled_solve():
    data, _ = feasible_qp(np.random.default_rng(1), 2, 4, 1, 4, 2)
    qp_solve(**data)  # trace once
    compiled = len(qp_solve_module._COMPILED_SOLVES)
    before = _resident_mib()
    for k in range(50):
        qp_solve(**data, tol=1e-8 * (1.0 + k / 50), max_iter=30 + k)
    assert len(qp_solve_module._COMPILED_SOLVES) == compiled
    assert _resident_mib() - before < 40.0


def test_compiled_solves_are_bounded(monkeypatch):
    monkeypatch.setattr(qp_solve_module, "_COMPILED_SOLVES", type(qp_solve_module._COMPILED_SOLVES)())
    monkeypatch.setattr(qp_solve_module, "COMPILED_SOLVES_LIMIT", 2)
    for n in (2, 3, 4):
        qp_solve(np.eye(n), np.ones(n))
    assert [specs[1].shape.as_list() for specs in qp_solve_module._COMPILED_SOLVES] == [[3], [4]]


@pytest.mark.parametrize("seed", [109, 129, 169, 244, 279, 304])
def test_strictly_convex_qps_with_a_large_linear_term_are_solved(seed):
    """|q| ~ 1e6 with h ~ 1: before the size of x accounted for q / P these
    ended "unbounded" (untrue: P is positive definite), "iteration limit" or
    "inaccurate"."""
    rng = np.random.default_rng(seed)
    n = rng.integers(2, 7)
    p, m = rng.integers(0, n), rng.integers(0, 7)
    M = rng.normal(size=(n, n))
    P = M @ M.T + 0.1 * np.eye(n)
    z = rng.normal(size=n)
    A, G = rng.normal(size=(p, n)), rng.normal(size=(m, n))
    q = rng.normal(size=n) * 3e6
    b, h = A @ z, G @ z + rng.uniform(0.1, 1.0, size=m)
    args = dict(A=A if p else None, b=b if p else None, G=G if m else None, h=h if m else None)
    x, nu, lam, status = (t.numpy() for t in qp_solve_with_status(P, q, **args))
    assert int(status) == 0, STATUS_NAMES[int(status)]
    stationarity = P @ x + q + (A.T @ nu if p else 0) + (G.T @ lam if m else 0)
    assert np.abs(stationarity).max() <= 1e-7 * np.abs(q).max()
    if m:
        assert np.all(G @ x - h <= 1e-8 * (1 + np.abs(x).max()))
        assert np.all(lam >= 0)

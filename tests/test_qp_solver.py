"""Tests of the native batched QP solver (keras_optlayers.solvers.qp)."""

from __future__ import annotations

import collections
import re

import cvxpy as cp
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_optlayers.errors import SolverError
from keras_optlayers.solvers.qp import STATUS_NAMES, qp_solve, qp_solve_with_info, qp_solve_with_status
from keras_optlayers.solvers.qp import polish as qp_polish
from keras_optlayers.solvers.qp import solve as qp_solve_module

NAMES = ("P", "q", "A", "b", "G", "h")


def kkt_constructed_qp(rng, batch, n, p, m, active, *, lp=False, redundant_rows=0, shared=()):
    """Batched QP data whose solution x₀ is known by construction.

    x₀ and multipliers are drawn first; the first `active` inequalities are
    tight at x₀ with λ > 0 (strict complementarity), the others slack with
    λ = 0, and q is set so the KKT conditions hold. `redundant_rows` extra
    equality rows are sums of existing ones (consistent, rank-deficient A).
    Arguments named in `shared` (among P, A, G) are returned without a batch
    dimension, the same for every example.
    """
    if lp:
        P = np.zeros((batch, n, n))
    else:
        root = rng.standard_normal((batch, n, n)) / np.sqrt(n)
        P = root @ np.swapaxes(root, -1, -2) + 0.5 * np.eye(n)
    A = rng.standard_normal((batch, p, n))
    if redundant_rows:
        A = np.concatenate([A, A[:, :redundant_rows] + A[:, 1 : redundant_rows + 1]], axis=1)
    G = rng.standard_normal((batch, m, n))
    common = {"P": P, "A": A, "G": G}
    P, A, G = (np.broadcast_to(common[k][:1], common[k].shape) if k in shared else common[k] for k in ("P", "A", "G"))
    x0 = rng.standard_normal((batch, n))
    slack = np.abs(rng.standard_normal((batch, m))) + 0.5
    slack[:, :active] = 0.0
    lam = np.zeros((batch, m))
    lam[:, :active] = np.abs(rng.standard_normal((batch, active))) + 0.5
    nu = rng.standard_normal((batch, A.shape[1]))
    q = -np.einsum("bij,bj->bi", P, x0) - np.einsum("bij,bi->bj", A, nu) - np.einsum("bij,bi->bj", G, lam)
    b = np.einsum("bij,bj->bi", A, x0)
    h = np.einsum("bij,bj->bi", G, x0) + slack
    data = dict(P=P, q=q, A=A, b=b, G=G, h=h)
    return {k: v[0] if k in shared else v for k, v in data.items()}, x0


def cvxpy_solution(P, q, A=None, b=None, G=None, h=None):
    """x, ν, λ from Clarabel at tight tolerances (one unbatched problem)."""
    x = cp.Variable(q.shape[0])
    constraints = []
    if A is not None:
        constraints.append(A @ x == b)
    if G is not None:
        constraints.append(G @ x <= h)
    problem = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(P)) + q @ x), constraints)
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    assert problem.status == cp.OPTIMAL
    duals = [c.dual_value for c in constraints]
    return x.value, duals


def example(data, i, shared=()):
    return {k: (v if k in shared else v[i]) if v is not None else None for k, v in data.items()}


CASES = {
    "equalities_and_inequalities": dict(n=6, p=2, m=8, active=3),
    "no_equalities": dict(n=6, p=0, m=10, active=4),
    "no_inequalities": dict(n=6, p=3, m=0, active=0),
    "unconstrained": dict(n=5, p=0, m=0, active=0),
    "redundant_equality_rows": dict(n=6, p=3, m=6, active=2, redundant_rows=2),
    "many_active_constraints": dict(n=6, p=1, m=8, active=5),
    "bounded_lp": dict(n=5, p=1, m=9, active=4, lp=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("shared", [(), ("P", "A", "G")], ids=["batched", "mixed_shared"])
def test_matches_cvxpy(case, shared):
    config = dict(CASES[case])
    rng = np.random.default_rng(sorted(CASES).index(case))
    data, x0 = kkt_constructed_qp(rng, 3, config.pop("n"), config.pop("p"), config.pop("m"), shared=shared, **config)
    for name in ("A", "b", "G", "h"):
        if data[name].shape[-2 if name in "AG" else -1] == 0:
            data[name] = None
    x, nu, lam = qp_solve(**data, return_duals=True)
    assert x.dtype == tf.float64 and x.shape == (3, data["q"].shape[-1])
    for i in range(3):
        x_ref, duals = cvxpy_solution(**example(data, i, shared))
        np.testing.assert_allclose(x[i], x_ref, atol=1e-6)
        if data["G"] is not None:
            np.testing.assert_allclose(lam[i], duals[-1], atol=1e-6)
        if data["A"] is not None and case != "redundant_equality_rows":  # ν is not unique there
            np.testing.assert_allclose(nu[i], duals[0], atol=1e-6)
    np.testing.assert_allclose(x, x0, atol=1e-6)


def test_unbatched_inputs_give_unbatched_outputs():
    data, x0 = kkt_constructed_qp(np.random.default_rng(5), 1, 4, 1, 5, 2)
    x, nu, lam = qp_solve(**{k: v[0] for k, v in data.items()}, return_duals=True)
    assert (x.shape, nu.shape, lam.shape) == ((4,), (1,), (5,))
    np.testing.assert_allclose(x, x0[0], atol=1e-6)


def central_differences(loss, arrays, step=1e-6):
    """Central finite differences of loss(arrays) for every entry of every array."""
    gradients = []
    for k, array in enumerate(arrays):
        gradient = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            shifted = [a.copy() for a in arrays]
            shifted[k][index] += step
            upper = loss(shifted)
            shifted[k][index] -= 2 * step
            gradient[index] = (upper - loss(shifted)) / (2 * step)
        gradients.append(gradient)
    return gradients


@pytest.mark.parametrize("shared", [(), ("P", "q", "G")], ids=["batched", "mixed_shared"])
def test_gradients_match_finite_differences(shared):
    rng = np.random.default_rng(11)
    data, _ = kkt_constructed_qp(rng, 2, 4, 1, 4, 2, shared=tuple(k for k in shared if k in "PAG"))
    if "q" in shared:  # a shared q: the other data stays batched, x₀ unknown but the QP feasible
        data["q"] = data["q"][0]
    arrays = [data[k] for k in NAMES]
    weights = [rng.standard_normal(s) for s in [(2, 4), (2, 1), (2, 4)]]

    def loss_tf(tensors):
        outputs = qp_solve(*tensors, return_duals=True, tol=1e-11)
        return sum(tf.reduce_sum(w * o) for w, o in zip(weights, outputs))

    tensors = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        loss = loss_tf(tensors)
    gradients = tape.gradient(loss, tensors)
    numeric = central_differences(lambda arrays: float(loss_tf([tf.constant(a) for a in arrays])), arrays)
    for name, analytic, expected in zip(NAMES, gradients, numeric):
        np.testing.assert_allclose(analytic, expected, rtol=1e-4, atol=1e-5, err_msg=f"gradient of {name}")


def exact_active_set_gradients(data, x0, active, weights):
    """∇(P, q, A, b, G, h) of Σ wₓ·x + w_ν·ν + w_λ·λ from the KKT system of the known active set, in numpy.

    With the active rows a fixed, K (x, ν, λ_a) = (−q, b, h_a) for the
    symmetric K = [[P, Aᵀ, G_aᵀ], [A, 0, 0], [G_a, 0, 0]]; with z = K⁻¹w,
    ∇q = −z_x, ∇b = z_ν, ∇h_a = z_λ, and ∇K·(x, ν, λ_a) = −z ⊗ solution.
    """
    gradients = {name: np.zeros_like(data[name]) for name in NAMES}
    for i, x in enumerate(x0):
        P, A, G = data["P"][i], data["A"][i], data["G"][i][:active]
        n, p = P.shape[0], A.shape[0]
        K = np.block([[P, A.T, G.T], [A, np.zeros((p, p + active))], [G, np.zeros((active, p + active))]])
        solution = np.linalg.solve(K, np.concatenate([-data["q"][i], data["b"][i], data["h"][i][:active]]))
        nu, lam = solution[n : n + p], solution[n + p :]
        z = np.linalg.solve(K, np.concatenate([weights[0][i], weights[1][i], weights[2][i][:active]]))
        z_x, z_nu, z_lam = z[:n], z[n : n + p], z[n + p :]
        gradients["P"][i] = -0.5 * (np.outer(z_x, x) + np.outer(x, z_x))
        gradients["q"][i] = -z_x
        gradients["A"][i] = -(np.outer(nu, z_x) + np.outer(z_nu, x))
        gradients["b"][i] = z_nu
        gradients["G"][i][:active] = -(np.outer(lam, z_x) + np.outer(z_lam, x))
        gradients["h"][i][:active] = z_lam
    return [gradients[name] for name in NAMES]


@pytest.mark.parametrize("mode", ["eager", "tf.function", "xla"])
def test_gradients_match_the_exact_active_set_system(mode):
    """The adjoint's capped weights must not bias the gradient: 1e-9 of the exact one, default settings.

    The cap alone left errors of 1e-7 to 1e-6 here (its 1/cap bias): the
    multiplier rounds of `kkt_adjoint` remove it.
    """
    rng = np.random.default_rng(5)
    batch, n, p, m, active = 16, 10, 3, 12, 5
    data, x0 = kkt_constructed_qp(rng, batch, n, p, m, active)
    weights = [rng.standard_normal(shape) for shape in [(batch, n), (batch, p), (batch, m)]]
    tensors = [tf.constant(data[name]) for name in NAMES]

    def forward_backward(*tensors):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            outputs = qp_solve(*tensors, return_duals=True, check_status=mode != "xla")
            loss = sum(tf.reduce_sum(w * o) for w, o in zip(weights, outputs))
        return tape.gradient(loss, tensors)

    run = {"eager": forward_backward, "tf.function": tf.function(forward_backward),
           "xla": tf.function(forward_backward, jit_compile=True)}[mode]
    for name, ours, exact in zip(NAMES, run(*tensors), exact_active_set_gradients(data, x0, active, weights)):
        scale = 1.0 + np.max(np.abs(exact))
        np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-9 * scale, err_msg=f"gradient of {name}")


def test_gradients_match_the_diffcp_path():
    """Against CvxpyLayer on diffcp (SCS, cone form): P = L Lᵀ enters through L."""
    from keras_optlayers.layers.cvxpy_layer import CvxpyLayer

    n, p, m, batch = 4, 1, 5, 2
    rng = np.random.default_rng(3)
    data, _ = kkt_constructed_qp(rng, batch, n, p, m, 2)
    root = np.linalg.cholesky(data["P"])
    weights = rng.standard_normal((batch, n))

    L_param, q_param = cp.Parameter((n, n)), cp.Parameter(n)
    A_param, b_param = cp.Parameter((p, n)), cp.Parameter(p)
    G_param, h_param = cp.Parameter((m, n)), cp.Parameter(m)
    x = cp.Variable(n)
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(L_param.T @ x) + q_param @ x),
        [A_param @ x == b_param, G_param @ x <= h_param],
    )
    diffcp_layer = CvxpyLayer(
        problem, parameters=[L_param, q_param, A_param, b_param, G_param, h_param], variables=[x],
        solver="SCS", solver_args={"eps": 1e-11, "max_iters": 200000},
    )
    tensors = [tf.constant(a) for a in [root, data["q"], data["A"], data["b"], data["G"], data["h"]]]

    def gradients(solve):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            solution = solve(tensors)
            loss = tf.reduce_sum(weights * solution)
        return solution, tape.gradient(loss, tensors)

    x_ours, ours = gradients(lambda t: qp_solve(tf.matmul(t[0], t[0], transpose_b=True), *t[1:]))
    x_diffcp, theirs = gradients(lambda t: diffcp_layer(*t)[0])
    np.testing.assert_allclose(x_ours, x_diffcp, atol=1e-6)
    for name, a, b in zip(("L", "q", "A", "b", "G", "h"), ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"gradient of {name}")


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32])
def test_tf_function_and_xla_match_eager(dtype):
    data, _ = kkt_constructed_qp(np.random.default_rng(2), 3, 5, 2, 6, 2, shared=("G",))
    tensors = [tf.constant(data[k], dtype) for k in NAMES]
    weights = tf.constant(np.random.default_rng(0).standard_normal((3, 5)), dtype)

    def forward_backward(*tensors):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            x, nu, lam, status = qp_solve_with_status(*tensors)
            loss = tf.reduce_sum(weights * x) + tf.reduce_sum(nu) + tf.reduce_sum(lam)
        return [x, nu, lam, status] + list(tape.gradient(loss, tensors))

    eager = forward_backward(*tensors)
    graph = tf.function(forward_backward)(*tensors)
    xla = tf.function(forward_backward, jit_compile=True)(*tensors)
    assert eager[0].dtype == dtype and all(g.dtype == dtype for g in eager[4:])
    np.testing.assert_array_equal(eager[3], 0)
    np.testing.assert_array_equal(xla[3], 0)
    # Graph mode runs the same kernels as eager. XLA's Cholesky and triangular
    # solves round differently, and its SVD is accurate to about 1e-7 only
    # (the equality elimination refines what it takes from it): its solution
    # is within the solver's tolerance (1e-8) of eager's, and so are its
    # gradients (the adjoint's multiplier rounds leave no penalty bias).
    graph_tolerance = 1e-12 if dtype == tf.float64 else 1e-6
    xla_tolerance = 1e-8 if dtype == tf.float64 else 1e-5
    for e, g, x in zip(eager, graph, xla, strict=True):
        np.testing.assert_allclose(g, e, rtol=graph_tolerance, atol=graph_tolerance)
        np.testing.assert_allclose(x, e, rtol=xla_tolerance, atol=xla_tolerance)
    if dtype == tf.float32:  # solved in float64 inside: float32 results are accurate to float32 rounding
        reference = qp_solve(*[tf.cast(t, tf.float64) for t in tensors])
        np.testing.assert_allclose(eager[0], reference, rtol=1e-6, atol=1e-6)


def test_qp_solve_under_xla_warns_that_statuses_are_unchecked():
    data, x0 = kkt_constructed_qp(np.random.default_rng(4), 2, 3, 1, 3, 1)
    solve = tf.function(lambda *t: qp_solve(*t), jit_compile=True)
    with pytest.warns(UserWarning, match="check_status=False"):
        x = solve(*[tf.constant(data[k]) for k in NAMES])
    np.testing.assert_allclose(x, x0, atol=1e-6)


def infeasible_batch():
    """Box-constrained QPs; example 2 asks for x₀ ≤ −1 and x₀ ≥ 1."""
    n = 3
    G = np.vstack([np.eye(n), -np.eye(n)])
    h = np.ones((4, 2 * n))
    h[2, 0] = h[2, n] = -1.0
    return np.eye(n), np.ones((4, n)), G, h


def test_infeasible_example_reported_by_index():
    P, q, G, h = infeasible_batch()
    with pytest.raises(SolverError) as error:
        qp_solve(P, q, G=G, h=h)
    assert error.value.statuses == {"infeasible (primal infeasible)": [2]}
    expected = str(SolverError("QP", {"infeasible (primal infeasible)": [2]}))
    with pytest.raises(tf.errors.InvalidArgumentError) as graph_error:
        tf.function(lambda q, h: qp_solve(P, q, G=G, h=h))(tf.constant(q), tf.constant(h))
    # tf.Assert prints string data C-escaped: ' comes out as \'.
    assert expected in graph_error.value.message.replace("\\'", "'")
    *_, status = qp_solve_with_status(P, q, G=G, h=h)
    assert [STATUS_NAMES[int(s)] for s in status] == ["solved", "solved", "infeasible (primal infeasible)", "solved"]


def test_inconsistent_equalities_reported():
    A = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    b = np.array([[1.0, 1.0], [1.0, 2.0]])
    with pytest.raises(SolverError) as error:
        qp_solve(np.eye(3), np.zeros(3), A, b)
    assert error.value.statuses == {"infeasible (primal infeasible)": [1]}


def test_unbounded_lp_reported():
    # minimize −x₀ − x₁ subject to x ≥ 0, next to a bounded one.
    q = np.array([[-1.0, -1.0, 0.0], [1.0, 1.0, 1.0]])
    with pytest.raises(SolverError) as error:
        qp_solve(np.zeros((3, 3)), q, G=-np.eye(3), h=np.zeros(3))
    assert error.value.statuses == {"unbounded (dual infeasible)": [0]}
    with pytest.raises(SolverError, match="dual infeasible"):  # no inequalities at all
        qp_solve(np.zeros((3, 3)), np.array([-1.0, 0.0, 0.0]))


def test_iteration_limit_reported():
    data, _ = kkt_constructed_qp(np.random.default_rng(0), 2, 4, 1, 5, 2)
    with pytest.raises(SolverError, match=re.escape("status 'iteration limit' at batch indices [0, 1]")):
        qp_solve(**data, max_iter=2)


HOST_CALLBACK_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc", "NumpyFunction"}


def test_graph_has_no_host_callbacks():
    data, _ = kkt_constructed_qp(np.random.default_rng(1), 2, 4, 1, 4, 2)
    tensors = [tf.constant(data[k]) for k in NAMES]

    @tf.function
    def forward_backward(*tensors):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            loss = tf.reduce_sum(qp_solve(*tensors))
        return tape.gradient(loss, tensors)

    graph_def = forward_backward.get_concrete_function(*tensors).graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    ops |= {node.op for function in graph_def.library.function for node in function.node_def}
    assert {"While", "StatelessWhile"} & ops  # the loop is there, inside the library
    assert "Cholesky" in ops
    assert not ops & HOST_CALLBACK_OPS


def test_validation_errors():
    P, q, G, h = np.eye(4), np.zeros(4), np.zeros((3, 4)), np.zeros(3)
    with pytest.raises(ValueError, match=re.escape("Received: G.shape=(3, 5)")):
        qp_solve(P, q, G=np.zeros((3, 5)), h=h)
    with pytest.raises(ValueError, match=re.escape("Received: P.shape=(2, 4, 3)")):
        qp_solve(np.zeros((2, 4, 3)), q)
    with pytest.raises(ValueError, match="same batch size"):
        qp_solve(np.stack([P] * 2), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="both given or both None"):
        qp_solve(P, q, G=G)
    with pytest.raises(ValueError, match="`h` to contain only finite values"):
        qp_solve(P, q, G=G, h=np.array([0.0, np.nan, 0.0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`q` to contain only finite values"):
        tf.function(lambda q: qp_solve(P, q, G=G, h=h))(tf.constant([0.0, np.inf, 0.0, 0.0], tf.float64))


class QPProjection(keras.layers.Layer):
    """Projects its input onto {x : Gx ≤ h} with a learnable h (a polytope)."""

    def __init__(self, G, **kwargs):
        super().__init__(**kwargs)
        self.G = np.asarray(G)

    def build(self, input_shape):
        self.h = self.add_weight(shape=(self.G.shape[0],), initializer="ones", name="h")

    def call(self, inputs):
        n = self.G.shape[1]
        P = tf.eye(n, dtype=inputs.dtype)
        return qp_solve(P, -inputs, G=tf.constant(self.G, inputs.dtype), h=tf.cast(self.h, inputs.dtype))


def test_keras_fit_and_export(tmp_path):
    rng = np.random.default_rng(0)
    G = np.vstack([np.eye(3), -np.eye(3)])
    inputs = keras.Input((3,))
    outputs = QPProjection(G)(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    features = rng.standard_normal((64, 3)).astype("float32")
    targets = np.clip(2.0 * features, -0.5, 0.5).astype("float32")
    history = model.fit(features, targets, batch_size=16, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    expected = model.predict(features[:5], verbose=0)
    model.export(str(tmp_path / "exported"))
    reloaded = tf.saved_model.load(str(tmp_path / "exported"))
    np.testing.assert_allclose(reloaded.serve(tf.constant(features[:5])), expected, rtol=1e-5, atol=1e-5)


def test_redundant_equalities_under_xla_are_solved_exactly():
    # XLA's SVD is accurate to about 1e-7; with a redundant row the refinement
    # of what the equality elimination takes from it must still reach rounding.
    rng = np.random.default_rng(1)
    batch, n, m = 3, 8, 4
    L = rng.standard_normal((batch, n, n))
    A = rng.standard_normal((batch, 3, n))
    A = np.concatenate([A, A[:, :1] + A[:, 1:2]], axis=1)
    x0 = rng.standard_normal((batch, n))
    G = rng.standard_normal((batch, m, n))
    data = [L @ L.transpose(0, 2, 1) + np.eye(n), rng.standard_normal((batch, n)), A,
            np.einsum("bij,bj->bi", A, x0), G, np.einsum("bij,bj->bi", G, x0) + 0.5]
    tensors = [tf.constant(value) for value in data]

    eager = qp_solve_with_status(*tensors)
    xla = tf.function(qp_solve_with_status, jit_compile=True)(*tensors)

    np.testing.assert_array_equal(xla[3].numpy(), 0)
    np.testing.assert_allclose(xla[0].numpy(), eager[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(np.einsum("bij,bj->bi", A, xla[0].numpy()), data[3], atol=1e-12)


def test_loop_stops_early_where_the_polish_succeeds_and_the_rest_iterate_on(monkeypatch):
    """The loop stops at `POLISH_FROM_TOL` and polishes; examples whose polish fails go on to `tol`.

    Three runs on 24 QPs with known solutions: the default; no early stop
    (`POLISH_FROM_TOL` at `tol`); and every polish failing
    (`POLISH_TOLERANCE` = 0), which must make exactly the run without the
    early stop (its unpolished iterates, about `tol` from the solution).
    """
    data, x0 = kkt_constructed_qp(np.random.default_rng(11), 24, 8, 3, 10, 4)
    polish_from_tol, polish_tolerance = qp_solve_module.POLISH_FROM_TOL, qp_polish.POLISH_TOLERANCE

    def run(**settings):
        monkeypatch.setattr(qp_solve_module, "_COMPILED_SOLVES", collections.OrderedDict())  # retrace with the settings
        monkeypatch.setattr(qp_solve_module, "POLISH_FROM_TOL", settings.get("polish_from_tol", polish_from_tol))
        monkeypatch.setattr(qp_polish, "POLISH_TOLERANCE", settings.get("polish_tolerance", polish_tolerance))
        x, _, _, status, info = qp_solve_with_info(*(data[k] for k in NAMES))
        return x.numpy(), status.numpy(), info["iterations"].numpy()

    x_early, status_early, iterations_early = run()
    x_full, status_full, iterations_full = run(polish_from_tol=qp_solve_module.DEFAULT_TOL)
    x_failed, _, iterations_failed = run(polish_tolerance=0.0)  # some unpolished iterates fail the check: "inaccurate"
    np.testing.assert_array_equal(status_early, 0)
    np.testing.assert_array_equal(status_full, 0)
    np.testing.assert_array_equal(iterations_failed, iterations_full)
    np.testing.assert_allclose(x_early, x0, atol=1e-10)
    np.testing.assert_allclose(x_failed, x0, atol=1e-6)  # the iterates themselves: about tol
    assert np.abs(x_failed - x0).max() > 1e-10  # ... so they were not polished
    assert np.all(iterations_early <= iterations_full) and iterations_early.sum() < iterations_full.sum()

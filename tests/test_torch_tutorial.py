"""The cvxpylayers tutorial's torch snippets, with only the import changed.

Each test is the tutorial's code (`from keras_optlayers.torch import
CvxpyLayer` instead of `from cvxpylayers.torch import CvxpyLayer`) and checks
its printed numbers. Those came from SCS at default tolerance, so they are
compared at about 1e-4; the answers are also checked to 1e-6 against exact
CVXPY (Clarabel) solves, with tight SCS settings for the layer.

The tutorial writes matrix products with `*` (old CVXPY); cvxpy 1.9 wants
`@`, so `-x*y`, `-_x.T*_y`, `Q_sqrt*x`, `_G*_y`, `ones.T*_y` are written
with `@` here. The problems are the same.
"""

import cvxpy as cp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from keras_optlayers.torch import CvxpyLayer  # noqa: E402

TIGHT_SCS = {"eps": 1e-10, "max_iters": 100_000}


def to_np(x):
    return x.detach().numpy()


def assert_printed(value, printed, rtol=1e-4, atol=2e-6):
    """The tutorial's printed float32 numbers, to SCS's default accuracy."""
    np.testing.assert_allclose(to_np(value), np.array(printed, dtype=np.float64), rtol=rtol, atol=atol)


def exact_solution(problem, parameters, values, variable):
    """CVXPY's own solve, by Clarabel at tight tolerances."""
    for parameter, value in zip(parameters, values):
        parameter.value = np.asarray(to_np(value), dtype=np.float64)
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return variable.value


def assert_tight_solve_is_exact(layer, problem, parameters, values, variable):
    """The layer at tight SCS settings matches CVXPY's exact solve; returns its solution."""
    y_tight, = layer(*values, solver_args=TIGHT_SCS)
    np.testing.assert_allclose(to_np(y_tight), exact_solution(problem, parameters, values, variable), atol=1e-6)
    return y_tight


def seeded_x(n):
    torch.manual_seed(0)
    return torch.randn(n)


X0_PRINTED = [1.5409961, -0.2934289, -2.1787894, 0.56843126]


def test_relu():
    n = 201
    _x = cp.Parameter(n)
    _y = cp.Variable(n)
    obj = cp.Minimize(cp.sum_squares(_y - _x))
    cons = [_y >= 0]
    prob = cp.Problem(obj, cons)
    layer = CvxpyLayer(prob, parameters=[_x], variables=[_y])
    x = torch.linspace(-5, 5, steps=n, requires_grad=True)
    y, = layer(x)
    np.testing.assert_allclose(to_np(y), to_np(F.relu(x)), atol=1e-4)
    y.sum().backward()
    away_from_kink = np.abs(to_np(x)) > 0.1
    np.testing.assert_allclose(to_np(x.grad)[away_from_kink], (to_np(x) > 0)[away_from_kink], atol=1e-3)


def test_sigmoid():
    n = 100
    _x = cp.Parameter(n)
    _y = cp.Variable(n)
    obj = cp.Minimize(-_x.T @ _y - cp.sum(cp.entr(_y) + cp.entr(1. - _y)))
    prob = cp.Problem(obj)
    layer = CvxpyLayer(prob, parameters=[_x], variables=[_y])
    x = torch.linspace(-5, 5, steps=n, requires_grad=True)
    y, = layer(x)
    np.testing.assert_allclose(to_np(y), to_np(torch.sigmoid(x)), atol=1e-4)
    y.sum().backward()
    s = torch.sigmoid(x.detach())
    np.testing.assert_allclose(to_np(x.grad), to_np(s * (1 - s)), atol=1e-3)


def test_softmax_and_its_gradient():
    d = 5
    _x = cp.Parameter(d)
    _y = cp.Variable(d)
    obj = cp.Minimize(-_x.T @ _y - cp.sum(cp.entr(_y)))
    cons = [np.ones(d, dtype=np.float32).T @ _y == 1.]
    prob = cp.Problem(obj, cons)
    layer = CvxpyLayer(prob, parameters=[_x], variables=[_y])
    torch.manual_seed(7)
    x = torch.randn(d, requires_grad=True)
    y, = layer(x)
    assert_printed(x, [-0.1467951, 0.7861413, 0.94682163, -1.114344, 1.6907902], rtol=1e-6)
    assert_printed(y, [0.07582434, 0.1927426, 0.22633947, 0.02881426, 0.47627935])
    assert abs(y.sum().item() - 1.0) < 1e-4
    y[4].backward()
    assert_printed(x.grad, [-0.03611359, -0.09179929, -0.10780083, -0.01372367, 0.24943733])

    x_exact = x.detach().double().requires_grad_()
    y_exact, = layer(x_exact, solver_args=TIGHT_SCS)
    np.testing.assert_allclose(to_np(y_exact), to_np(F.softmax(x_exact, dim=0)), atol=1e-6)
    y_exact[4].backward()
    x_ref = x.detach().double().requires_grad_()
    F.softmax(x_ref, dim=0)[4].backward()
    np.testing.assert_allclose(to_np(x_exact.grad), to_np(x_ref.grad), atol=1e-6)


def test_sparsemax():
    n = 4
    x = cp.Parameter(n)
    y = cp.Variable(n)
    obj = cp.sum_squares(x - y)
    cons = [cp.sum(y) == 1, 0. <= y, y <= 1.]
    prob = cp.Problem(cp.Minimize(obj), cons)
    layer = CvxpyLayer(prob, [x], [y])
    x_value = seeded_x(n)
    y_value, = layer(x_value)
    assert_printed(x_value, X0_PRINTED, rtol=1e-6)
    assert_printed(y_value, [9.8628241e-01, -3.9884393e-10, -8.0997226e-10, 1.3717593e-02])
    assert_tight_solve_is_exact(layer, prob, [x], [x_value], y)


def test_csoftmax():
    n, k = 4, 2
    u = torch.full([n], 1. / k)
    x = cp.Parameter(n)
    y = cp.Variable(n)
    obj = -x @ y - cp.sum(cp.entr(y))
    cons = [cp.sum(y) == 1., y <= u.numpy()]
    prob = cp.Problem(cp.Minimize(obj), cons)
    layer = CvxpyLayer(prob, [x], [y])
    x_value = seeded_x(n)
    y_value, = layer(x_value)
    assert_printed(y_value, [0.5000002, 0.1420723, 0.02156317, 0.33636498])
    assert_tight_solve_is_exact(layer, prob, [x], [x_value], y)


def test_csparsemax():
    n, k = 4, 2
    u = torch.full([n], 1. / k)
    x = cp.Parameter(n)
    y = cp.Variable(n)
    obj = cp.sum_squares(x - y)
    cons = [cp.sum(y) == 1., 0. <= y, y <= u.numpy()]
    prob = cp.Problem(cp.Minimize(obj), cons)
    layer = CvxpyLayer(prob, [x], [y])
    x_value = seeded_x(n)
    y_value, = layer(x_value)
    # SCS 3's default tolerance (1e-4) leaves about 3e-5 here; the tight solve below is exact.
    assert_printed(y_value, [5.000000e-01, 3.033220e-11, -6.598309e-12, 5.000000e-01], atol=1e-4)
    assert_tight_solve_is_exact(layer, prob, [x], [x_value], y)


def test_lml():
    n, k = 4, 2
    x = cp.Parameter(n)
    y = cp.Variable(n)
    obj = -x @ y - cp.sum(cp.entr(y)) - cp.sum(cp.entr(1. - y))
    cons = [cp.sum(y) == k]
    prob = cp.Problem(cp.Minimize(obj), cons)
    layer = CvxpyLayer(prob, [x], [y])
    x_value = seeded_x(n)
    y_value, = layer(x_value)
    assert_printed(y_value, [0.8254717, 0.43031406, 0.10285254, 0.64136344])
    y_tight, = layer(x_value, solver_args=TIGHT_SCS)
    exact = [0.825469815, 0.430314036, 0.102851933, 0.641364216]
    np.testing.assert_allclose(to_np(y_tight), exact, atol=1e-6)
    np.testing.assert_allclose(exact_solution(prob, [x], [x_value], y), exact, atol=1e-6)


def test_optnet_qp():
    n, m, p = 10, 5, 5
    Q_sqrt = cp.Parameter((n, n))
    q = cp.Parameter(n)
    A = cp.Parameter((m, n))
    b = cp.Parameter(m)
    G = cp.Parameter((p, n))
    h = cp.Parameter(p)
    x = cp.Variable(n)
    obj = cp.Minimize(0.5 * cp.sum_squares(Q_sqrt @ x) + q.T @ x)
    cons = [A @ x == b, G @ x <= h]
    prob = cp.Problem(obj, cons)
    layer = CvxpyLayer(prob, parameters=[Q_sqrt, q, A, b, G, h], variables=[x])
    torch.manual_seed(0)
    Q_sqrtval = torch.randn(n, n, requires_grad=True)
    qval = torch.randn(n, requires_grad=True)
    Aval = torch.randn(m, n, requires_grad=True)
    bval = torch.randn(m, requires_grad=True)
    Gval = torch.randn(p, n, requires_grad=True)
    hval = torch.randn(p, requires_grad=True)
    values = [Q_sqrtval, qval, Aval, bval, Gval, hval]
    y, = layer(*values)
    assert_printed(y, [0.33921832, 0.3794181, 0.2201209, -0.01115552, -0.3120785,
                       -0.22344528, 0.5120355, -0.30485314, -0.11274885, 0.21256374], atol=5e-5)
    y_tight = assert_tight_solve_is_exact(layer, prob, [Q_sqrt, q, A, b, G, h], values, x)
    y_tight.sum().backward()
    assert all(v.grad is not None and torch.isfinite(v.grad).all() for v in values)


def polytope_layer(nx=2, ncon=10):
    _G = cp.Parameter((ncon, nx))
    _h = cp.Parameter(ncon)
    _x = cp.Parameter(nx)
    _y = cp.Variable(nx)
    obj = cp.Minimize(0.5 * cp.sum_squares(_x - _y))
    cons = [_G @ _y <= _h]
    prob = cp.Problem(obj, cons)
    layer = CvxpyLayer(prob, parameters=[_G, _h, _x], variables=[_y])
    return layer, prob, (_G, _h, _x), _y


def true_polytope(nx, ncon):
    """The tutorial's target polytope: h = G z0 + s0, with G seeded."""
    torch.manual_seed(6)
    G = torch.FloatTensor(ncon, nx).uniform_(-4, 4)
    z0 = torch.full([nx], 0.5)
    s0 = torch.full([ncon], 0.5)
    h = G.mv(z0) + s0
    return G, z0, s0, h


def test_polytope_projection():
    nx, ncon = 2, 10
    layer, prob, parameters, _y = polytope_layer(nx, ncon)
    G, _, _, h = true_polytope(nx, ncon)
    torch.manual_seed(0)
    x = torch.randn(nx)
    y, = layer(G, h, x)
    assert_printed(x, [1.5409961, -0.2934289], rtol=1e-6)
    assert_printed(y, [0.6635195, 0.34164992])
    assert_tight_solve_is_exact(layer, prob, parameters, [G, h, x], _y)


def test_polytope_learning_lowers_the_loss():
    # The tutorial's learning loop, shortened and batched (32 points a step).
    nx, ncon = 2, 10
    layer, *_ = polytope_layer(nx, ncon)
    G, z0, s0, h = true_polytope(nx, ncon)
    torch.manual_seed(22)
    G_hat = torch.nn.Parameter(torch.FloatTensor(ncon, nx).uniform_(-4, 4).requires_grad_())
    opt = torch.optim.Adam([G_hat], lr=1e-2)

    def mse(x):
        y, = layer(G, h, x)
        yhat, = layer(G_hat, G_hat.mv(z0) + s0, x)
        return ((yhat - y) ** 2).sum(-1).mean()

    torch.manual_seed(0)
    x_test = torch.randn(64, nx)
    initial = mse(x_test).item()
    for _ in range(60):
        loss = mse(torch.randn(32, nx))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert mse(x_test).item() < 0.7 * initial

"""The projection ops are exact at any finite magnitude, in float32 and float64.

References are computed here, independently of the ops: sparsemax and
csparsemax in exact rational arithmetic (`fractions`), csoftmax and LML by
bisection in 100-digit arithmetic (`mpmath`). The inputs mix magnitudes from
1e-30 to 1e30 and both signs in one row, with ties.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import tensorflow as tf

from keras_optlayers.ops import csoftmax, csparsemax, lml, sparsemax

K = 2  # LML's k throughout


# -- references ----------------------------------------------------------------


def _capped_simplex_exact(x, upper) -> list[float]:
    """argmin ||y - x|| on {sum y = 1, 0 <= y <= upper}, in rationals.

    y = clip(x - tau, 0, u) with f(tau) = sum(y) = 1; f is piecewise linear,
    so tau is found on the piece between two adjacent breakpoints.
    """
    xs = [Fraction(float(v)) for v in x]
    us = [min(Fraction(float(v)), Fraction(1)) for v in upper]

    def f(tau):
        return sum(min(max(xi - tau, Fraction(0)), ui) for xi, ui in zip(xs, us))

    points = sorted(set(xs) | {xi - ui for xi, ui in zip(xs, us)}, reverse=True)
    tau = points[-1]  # bounds summing to exactly 1: every entry at its cap
    for high, low in itertools.pairwise(points):
        f_high, f_low = f(high), f(low)
        if f_high <= 1 <= f_low:
            tau = high if f_low == f_high else high - (1 - f_high) * (high - low) / (f_low - f_high)
            break
    return [float(min(max(xi - tau, Fraction(0)), ui)) for xi, ui in zip(xs, us)]


def _bisect(decreasing, low, high, steps=400):
    """The root of a decreasing function between low and high, in mpmath."""
    for _ in range(steps):
        middle = (low + high) / 2
        if decreasing(middle) > 0:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _csoftmax_precise(x, upper) -> list[float]:
    """y = min(u, exp(x - tau)) with sum(y) = 1, tau by bisection in 100 digits."""
    with mpmath.workdps(100):
        xs = [mpmath.mpf(float(v)) for v in x]
        us = [min(mpmath.mpf(float(v)), 1) for v in upper]

        def y(tau):
            return [min(ui, mpmath.exp(xi - tau)) for xi, ui in zip(xs, us)]

        # At min(x) - 1 every entry is capped (bounds sum >= 1); at
        # max(x) + log(n) + 1 the total is below 1.
        tau = _bisect(lambda t: sum(y(t)) - 1, min(xs) - 1, max(xs) + mpmath.log(len(xs)) + 1)
        return [float(v) for v in y(tau)]


def _lml_precise(x, k) -> list[float]:
    """y = sigmoid(x - tau) with sum(y) = k, tau by bisection in 100 digits."""
    with mpmath.workdps(100):
        xs = [mpmath.mpf(float(v)) for v in x]

        def sigmoid(z):
            return 1 / (1 + mpmath.exp(-z))

        def excess(tau):
            # sum(y) - k, with 1 - y kept for entries above tau: near-1 outputs
            # whose deficit is below 100 digits still balance the tiny ones.
            above = [xi for xi in xs if xi > tau]
            return (len(above) - k) - sum(sigmoid(tau - xi) for xi in above) + sum(
                sigmoid(xi - tau) for xi in xs if xi <= tau
            )

        tau = _bisect(excess, min(xs) - 1000, max(xs) + 1000)
        return [float(sigmoid(xi - tau)) for xi in xs]


def exact_projection(name: str, x: np.ndarray, upper: np.ndarray | None = None) -> np.ndarray:
    """The reference answer of op `name` on one row (float64 values of the inputs)."""
    if name == "sparsemax":
        return np.array(_capped_simplex_exact(x, np.ones_like(x)))
    if name == "csparsemax":
        return np.array(_capped_simplex_exact(x, upper))
    if name == "csoftmax":
        return np.array(_csoftmax_precise(x, upper))
    return np.array(_lml_precise(x, K))


def call_op(name: str, x, upper=None, mask=None):
    """Op `name` on x (with `upper` for the capped ones, LML with k = K)."""
    if name == "sparsemax":
        return sparsemax(x, mask=mask)
    if name == "lml":
        return lml(x, K, mask=mask)
    return {"csparsemax": csparsemax, "csoftmax": csoftmax}[name](x, upper, mask=mask)


NAMES = ["sparsemax", "csparsemax", "csoftmax", "lml"]


# -- inputs --------------------------------------------------------------------

# Rows of 6: a huge entry beside small ones, mixed signs and magnitudes, ties.
EXTREME_ROWS = np.array(
    [
        [1e30, 2.0, 3.0, -1e30, 0.5, 1.0],
        [1e30, 1e30, 2.0, 3.0, -1e30, -1e30],
        [-1e30, 1.5, 1.5, -1e-30, 1e-30, -1e30],
        [1e-30, -1e-30, 2e-30, 0.0, 1e-30, -3e-30],
        [1e20, -1e10, 1e10, 1e-10, -1e20, 1e10],
        [-1e30, -1e30 * (1 + 2**-20), 7.0, -5.0, 6.5, -1e25],
        [1e15, 1e15 + 2.0, 3.0, -2.5e14, 1e15 - 0.25, 1e-15],
        [1e30, 1.0, 0.75, -1e30, 1e29, 1e29],
    ]
)
# Bounds (<= 0.6, rows summing to > 1 with a few entries binding).
EXTREME_UPPER = np.array(
    [
        [0.5, 0.3, 0.3, 0.5, 0.4, 0.25],
        [0.3, 0.25, 0.6, 0.2, 0.5, 0.5],
        [0.4, 0.35, 0.35, 0.3, 0.2, 0.3],
        [0.2, 0.2, 0.15, 0.3, 0.25, 0.3],
        [0.45, 0.6, 0.3, 0.2, 0.3, 0.3],
        [0.5, 0.5, 0.3, 0.2, 0.35, 0.5],
        [0.3, 0.35, 0.3, 0.2, 0.25, 0.3],
        [0.4, 0.5, 0.3, 0.5, 0.25, 0.25],
    ]
)


def _random_mixed_rows(seed: int, rows: int = 12, n: int = 6) -> np.ndarray:
    """Signs and exponents from 1e-30 to 1e30 drawn per entry, with a tie per row."""
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 1.0], (rows, n)) * rng.uniform(1, 10, (rows, n)) * 10.0 ** rng.integers(-30, 31, (rows, n))
    # A few entries near each other at a shared large magnitude, so the answer is not just one-hot.
    scale = 10.0 ** rng.integers(-30, 31, (rows, 1))
    x[:, :3] = scale * (1 + rng.uniform(0, 1, (rows, 3)) / scale.clip(1, None))
    x[:, 4] = x[:, 3]
    return x


def _tolerances(name: str, dtype) -> tuple[float, float]:
    """(rtol, atol) against the exact answer of the (rounded) inputs."""
    if dtype == np.float32:
        return 1e-6, float(np.finfo(np.float32).tiny)
    # Piecewise-linear maps: outputs are differences of O(1) numbers, so their
    # error is absolute (a few ulps times n); the exp-based ones keep relative accuracy.
    if name in ("sparsemax", "csparsemax"):
        return 1e-12, 8 * 6 * float(np.finfo(np.float64).eps)
    return 1e-12, 1e-300


def _check_feasible(name, y, upper, dtype):
    eps = float(np.finfo(dtype).eps)
    target = K if name == "lml" else 1.0
    np.testing.assert_allclose(y.astype(np.float64).sum(-1), target, rtol=0, atol=4 * y.shape[-1] * eps * target)
    assert np.all(y >= 0) and np.all(y <= 1)
    if name.startswith("c"):
        assert np.all(y <= upper.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rows", ["extreme", "random"])
def test_outputs_are_exact_at_any_magnitude(name, dtype, rows):
    x = EXTREME_ROWS if rows == "extreme" else _random_mixed_rows(0)
    upper = EXTREME_UPPER if rows == "extreme" else np.tile(EXTREME_UPPER[:6], (2, 1))
    x, upper = x.astype(dtype), upper.astype(dtype)
    y = call_op(name, x, upper).numpy()
    assert y.dtype == dtype
    _check_feasible(name, y, upper, dtype)
    rtol, atol = _tolerances(name, dtype)
    for row in range(x.shape[0]):
        expected = exact_projection(name, x[row].astype(np.float64), upper[row].astype(np.float64))
        np.testing.assert_allclose(y[row], expected, rtol=rtol, atol=atol, err_msg=f"row {row}: x={x[row]}")


def test_the_reported_reproduction():
    # csparsemax([[1e30, 2, 3, -1e30]], 0.5) used to give [.5, .5, .5, .5].
    x = np.array([[1e30, 2, 3, -1e30]], np.float32)
    np.testing.assert_allclose(csparsemax(x, 0.5), [[0.5, 0, 0.5, 0]], atol=1e-7)
    softmax_23 = np.exp([2.0, 3.0]) / np.exp([2.0, 3.0]).sum()
    np.testing.assert_allclose(csoftmax(x, 0.5), [[0.5, *(0.5 * softmax_23), 0]], rtol=1e-6)
    # LML with k = 2: entry 0 is 1, entry 3 is 0, and sigmoid(2 - t) + sigmoid(3 - t) = 1 at t = 2.5.
    np.testing.assert_allclose(lml(x, 2), [[1, 1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(-0.5)), 0]], rtol=1e-6)
    x64 = np.array([[1e15, 2, 3, -1e15]])
    np.testing.assert_allclose(lml(x64, 2), [[1, 1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(-0.5)), 0]], rtol=1e-12)


# -- gradients at extreme scale: the closed forms ---------------------------------


def _closed_form_jacobians(name, y, upper):
    """(dy/dx, dy/du) from the answer y and its active set, as in the papers."""
    n = y.size
    jac_x, jac_u = np.zeros((n, n)), np.zeros((n, n))
    if name in ("sparsemax", "csparsemax"):
        capped = np.isclose(y, upper) if name == "csparsemax" else np.zeros(n, bool)
        free = (y > 0) & ~capped
        jac_x[np.ix_(free, free)] = np.eye(free.sum()) - 1.0 / free.sum()
        jac_u[np.ix_(capped, capped)] = np.eye(capped.sum())
        jac_u[np.ix_(free, capped)] = -1.0 / free.sum()
    elif name == "csoftmax":
        capped = np.isclose(y, upper, rtol=1e-12, atol=0)
        free_y = np.where(capped, 0.0, y)
        jac_x = np.diag(free_y) - np.outer(free_y, free_y) / free_y.sum()
        jac_u[np.ix_(capped, capped)] = np.eye(capped.sum())
        jac_u[:, capped] += -free_y[:, None] / free_y.sum()
    else:
        d = y * (1 - y)
        # Every d underflowing (a saturated answer): the op documents a zero gradient.
        jac_x = np.diag(d) - np.outer(d, d) / d.sum() if d.sum() > 0 else jac_x
    return jac_x, jac_u


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_at_extreme_scale_are_the_closed_forms(name, dtype):
    # Rows 0 and 1 of EXTREME_ROWS: 1e30 entries beside O(1) ones.
    x = tf.constant(EXTREME_ROWS[:2].astype(dtype))
    upper = tf.constant(EXTREME_UPPER[:2].astype(dtype))
    # Row i of each Jacobian is the gradient of output i (faster here than batch_jacobian).
    jac_x, jac_u = np.zeros((2, 6, 6)), np.zeros((2, 6, 6))
    for i in range(6):
        with tf.GradientTape() as tape:
            tape.watch([x, upper])
            output = call_op(name, x, upper)[:, i]
        jac_x[:, i], jac_u[:, i] = (g.numpy() for g in tape.gradient(output, [x, upper], unconnected_gradients="zero"))
    assert np.all(np.isfinite(jac_x)) and np.all(np.isfinite(jac_u))
    for row in range(2):
        expected = exact_projection(name, EXTREME_ROWS[row].astype(dtype), EXTREME_UPPER[row].astype(dtype))
        expected_x, expected_u = _closed_form_jacobians(name, expected, EXTREME_UPPER[row].astype(dtype))
        atol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(jac_x[row], expected_x, atol=atol)
        if name.startswith("c"):
            np.testing.assert_allclose(jac_u[row], expected_u, atol=atol)

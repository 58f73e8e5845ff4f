"""After-the-fact check of every returned solution, against the original data.

Whatever the iterations concluded, an example is only reported solved when
its returned (x, ν, λ) satisfies the KKT conditions of the problem the caller
gave (not the scaled or reduced one the iterations saw), to a relative
accuracy fixed by `acceptance_tolerance`:

  * primal residual: for each row, |Ax − b|ᵢ and max(Gx − h, 0)ᵢ divided by
    (|A||x|)ᵢ + |bᵢ| + ‖Ax‖∞ + `UNIT_FLOOR` uᵢ (likewise with G, h). The
    first two terms are the row's own scale (so rounding in a row with large
    entries is not a violation); the third ties a row whose terms are all
    small to the size of the others (so a violation of 1e-5 in y ≥ 0 is
    caught next to rows near 1e10 in the same problem); the last, with uᵢ
    the row's product with one unit of the scaled x (`scaling.row_units`),
    keeps rounding (x = −1e-20 for a solution x = 0) from counting as a
    violation when every other term vanishes.
  * dual residual: ‖Px + q + Aᵀν + Gᵀλ‖∞ over the largest of ‖Px‖∞, ‖q‖∞,
    ‖Aᵀν‖∞, ‖Gᵀλ‖∞ and `UNIT_FLOOR` times P's product with one unit of the
    scaled x (with q = 0 the other terms vanish with the solution x = 0);
    and λ ≥ 0 (its negative part over ‖λ‖∞).
  * gap (complementarity): for each inequality, the smaller of its slack
    max(h − Gx, 0)ᵢ over the row's scale above and its multiplier λᵢ over
    the multipliers' scale (the larger of ‖λ‖∞ and the dual residual's
    scale over max|Gᵢⱼ|, so that all-tiny multipliers of inactive rows are
    not compared with each other): at a solution one of the two vanishes in
    every row. Row by row
    rather than summed (as a duality gap is), so a bound that should be
    active but is missed by 0.03 next to terms of 1e20 is not averaged away.

Each measure is a ratio of a residual to the sizes of the terms it sums, so
the check does not change when the data are multiplied by a constant. Terms
that are all zero give a residual of zero.

Limits: the measures are relative, so an interior-point iterate that was not
polished (see `polish`) and has an active bound at exactly zero (y ≥ 0 with
y = 1e-12) fails the complementarity test; such examples are reported
inaccurate rather than solved.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from keras_optlayers.solvers.qp.reduced_kkt import matvec

# Accept relative residuals up to this many times `tol`, clipped to
# [TIGHTEST_ACCEPTANCE, LOOSEST_ACCEPTANCE]: polished points (`polish`) sit
# at rounding, far below; the clipping keeps a nonsensical `tol` (1e6) from
# passing a wrong point, and a tiny one from asking more than float64
# rounding allows.
ACCEPTANCE_FACTOR = 1.0
TIGHTEST_ACCEPTANCE = float(np.sqrt(np.finfo(np.float64).eps))
LOOSEST_ACCEPTANCE = 1e-5
# The part of one unit of the scaled problem that every scale includes: small
# enough that an error of 1e-12 units (what the iterations leave before
# polishing) still fails, large enough that rounding (1e-16 units) passes.
UNIT_FLOOR = 1e-6


class Units(NamedTuple):
    """Products with one unit of the scaled x (`scaling.row_units`): A's rows (B, p), G's rows (B, m), P (B,)."""

    equality: tf.Tensor
    inequality: tf.Tensor
    stationarity: tf.Tensor


class Residuals(NamedTuple):
    """Relative residuals of each example (B,), float64 (module docstring)."""

    primal: tf.Tensor
    dual: tf.Tensor
    gap: tf.Tensor


def acceptance_tolerance(tol: tf.Tensor) -> tf.Tensor:
    """The largest relative residual accepted as solved, given the user's `tol`."""
    return tf.clip_by_value(ACCEPTANCE_FACTOR * tol, TIGHTEST_ACCEPTANCE, LOOSEST_ACCEPTANCE)


def _inf_norm(v: tf.Tensor) -> tf.Tensor:
    return tf.maximum(tf.reduce_max(tf.abs(v), axis=-1), 0.0)  # 0, not −inf, for an empty v


def _largest(values: tf.Tensor) -> tf.Tensor:
    return tf.maximum(tf.reduce_max(values, axis=-1), 0.0)


def _row_scale(matrix, rhs, x, product, unit) -> tf.Tensor:
    """(|M||x|)ᵢ + |rhsᵢ| + ‖Mx‖∞ + `UNIT_FLOOR` uᵢ for each row i of M x against rhs."""
    return matvec(tf.abs(matrix), tf.abs(x)) + tf.abs(rhs) + _inf_norm(product)[:, None] + UNIT_FLOOR * unit


def residuals(P, q, A, b, G, h, x, nu, lam, units: Units) -> Residuals:
    """Relative residuals of the batched float64 solution (x, ν, λ) of the QP (P, q, A, b, G, h).

    Args:
        P: (B, n, n) symmetric; q: (B, n); A: (B, p, n); b: (B, p);
            G: (B, m, n); h: (B, m); x: (B, n); nu: (B, p); lam: (B, m).
        units: the problem's units (see above).
    """
    P, q, A, b, G, h, x, nu, lam = (tf.stop_gradient(t) for t in (P, q, A, b, G, h, x, nu, lam))
    A_x, G_x = matvec(A, x), matvec(G, x)
    inequality_scale = _row_scale(G, h, x, G_x, units.inequality)
    relative_slack = tf.math.divide_no_nan(h - G_x, inequality_scale)
    primal = tf.maximum(
        _largest(tf.math.divide_no_nan(tf.abs(A_x - b), _row_scale(A, b, x, A_x, units.equality))),
        _largest(-relative_slack),
    )
    P_x = matvec(P, x)
    A_t_nu = tf.linalg.matvec(A, nu, adjoint_a=True)
    G_t_lam = tf.linalg.matvec(G, lam, adjoint_a=True)
    stationarity = (P_x + q) + (A_t_nu + G_t_lam)
    dual_scale = tf.reduce_max(
        tf.stack([_inf_norm(P_x), _inf_norm(q), _inf_norm(A_t_nu), _inf_norm(G_t_lam), UNIT_FLOOR * units.stationarity]), axis=0
    )
    dual = tf.maximum(
        tf.math.divide_no_nan(_inf_norm(stationarity), dual_scale),
        tf.math.divide_no_nan(_inf_norm(tf.minimum(lam, 0.0)), _inf_norm(lam)),
    )
    lam_scale = tf.maximum(_inf_norm(lam), tf.math.divide_no_nan(dual_scale, _largest(_inf_norm(G))))
    relative_lam = tf.math.divide_no_nan(lam, lam_scale[:, None])
    gap = _largest(tf.minimum(tf.maximum(relative_slack, 0.0), tf.abs(relative_lam)))
    return Residuals(primal, dual, gap)


def accepted(found: Residuals, tolerance: tf.Tensor) -> tf.Tensor:
    """(B,) bool: every residual finite and at most `tolerance`."""
    worst = tf.maximum(found.primal, tf.maximum(found.dual, found.gap))
    return tf.math.is_finite(worst) & (worst <= tolerance)

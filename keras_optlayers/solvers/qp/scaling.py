"""Equilibration of the QP data before the interior-point iterations.

The iterations stop on residuals measured against 1 + the norms of the data
(see `interior_point`), so they work best when the data have entries of
order one. The batch is rescaled in three steps, each a change of variables
that leaves the solution unchanged once undone:

1. Ruiz equilibration of the KKT matrix [[P, Aᵀ, Gᵀ], [A, 0, 0], [G, 0, 0]]:
   `RUIZ_PASSES` passes dividing each row and column by the square root of
   its largest entry, giving P̃ = D P D, Ã = E_A A D, G̃ = E_G G D,
   q̃ = D q, b̃ = E_A b, h̃ = E_G h with x = D x̃, ν = E_A ν̃, λ = E_G λ̃.
2. The size of x: x̃ = β x̂ with β the largest entry r of b̃ and h̃, raised
   to the geometric mean √(r u) of r and the unconstrained minimizer's size
   u = ‖q̃‖∞ / max|P̃| when u is larger (u itself when b and h are zero).
   Taking r alone misjudged x by the ratio u / r where the constraints leave
   x free to grow: with |q| ~ 1e6 and h ~ 1, 6 of 80 random strictly convex
   QPs ended "unbounded", "iteration limit" or "inaccurate"; taking u
   alone left 8 "inaccurate"; the mean solves all 80.
3. The size of the objective: it is divided by γ⁻¹ = max(max|P̃|, ‖q̃‖∞ / β)
   (as OSQP does), which divides the multipliers the same way.

The scaled problem is

    minimize ½ x̂ᵀ(γ P̃)x̂ + (γ q̃ / β)ᵀx̂   subject to  Ã x̂ = b̃ / β,  G̃ x̂ ≤ h̃ / β,

whose solution gives x = β D x̂, ν = (β / γ) E_A ν̂, λ = (β / γ) E_G λ̂.
Every factor is rounded to a power of two, so scaling and unscaling are
exact (no rounding), and the iterations see the same numbers whichever
kernels computed the factors. The factors are data-dependent constants:
they are computed under
`tf.stop_gradient`, since the solution of the original problem equals the
unscaled solution of the scaled one for any fixed factors, and the gradient
flows through the scaling and unscaling as through any product.

Limits: one scalar β serves the whole of x, so a problem whose solution mixes
magnitudes far apart (entries near 1e10 next to entries that must be
accurate near 1) is not made well scaled; the after-the-fact check
(`solution_check`) then reports it inaccurate instead of solved.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from keras_optlayers.solvers import solution_replay

# Ruiz passes: each brings every row and column's largest entry closer to one
# (the error shrinks like a square root per pass); three are enough for the
# factors to settle within a factor of two on the problems we meet, at a small
# fraction of one interior-point iteration's cost.
RUIZ_PASSES = 3


class Scaling(NamedTuple):
    """The factors of one batch: D (B, n), E_A (B, p), E_G (B, m), β and γ (B,)."""

    column: tf.Tensor
    equality_rows: tf.Tensor
    inequality_rows: tf.Tensor
    size: tf.Tensor
    objective: tf.Tensor

    def row_units(self, matrix: tf.Tensor) -> tf.Tensor:
        """Each row's product with one unit of the scaled x, in original units: β maxⱼ|Mᵢⱼ Dⱼ| (B, rows)."""
        return self.size[:, None] * _largest_magnitude(matrix * self.column[:, None, :], -1)


def _largest_magnitude(tensor: tf.Tensor, axis) -> tf.Tensor:
    """max |tensor| along `axis`, 0 for an empty axis (reduce_max gives −inf there)."""
    return tf.maximum(tf.reduce_max(tf.abs(tensor), axis=axis), 0.0)


def _inverse_square_root(norms: tf.Tensor) -> tf.Tensor:
    """1/√norm, and 1 where the row or column is zero."""
    return tf.where(norms > 0.0, tf.math.rsqrt(tf.where(norms > 0.0, norms, 1.0)), 1.0)


def _power_of_two(values: tf.Tensor) -> tf.Tensor:
    """The power of two nearest to each positive value (in log scale)."""
    return tf.pow(tf.constant(2.0, values.dtype), tf.round(tf.math.log(values) / tf.math.log(tf.constant(2.0, values.dtype))))


def _safe_reciprocal(values: tf.Tensor) -> tf.Tensor:
    return tf.where(values > 0.0, 1.0 / tf.where(values > 0.0, values, 1.0), 1.0)


def _factors(P, q, A, b, G, h) -> Scaling:
    """The scaling factors of the batch (module docstring), without gradient."""
    P, q, A, b, G, h = (tf.stop_gradient(t) for t in (P, q, A, b, G, h))
    n, p = P.shape[-1], A.shape[-2]
    # The KKT matrix's distinct blocks stacked, [P; A; G]: a Ruiz pass is then a few ops on one tensor, where
    # scaling the three blocks apart took 50 (at batch 1 a solve's time is its op count). P is symmetric, so its
    # rows' largest entries are its columns'.
    stacked = tf.concat([P, A, G], axis=-2)  # (B, n + p + m, n)
    factors = tf.ones_like(stacked[:, :, 0])  # D, then E_A, then E_G
    for _ in range(RUIZ_PASSES):
        magnitudes = tf.abs(stacked)
        norms = tf.concat([tf.reduce_max(magnitudes, axis=-2), tf.reduce_max(magnitudes[:, n:], axis=-1)], axis=-1)
        step = _inverse_square_root(norms)
        stacked = step[:, :, None] * stacked * step[:, None, :n]
        factors *= step
    column, equality_rows, inequality_rows = factors[:, :n], factors[:, n:n + p], factors[:, n + p:]
    P_norm = tf.reduce_max(tf.abs(stacked[:, :n]), axis=[-2, -1])
    q_norm = _largest_magnitude(column * q, -1)
    right_hand_side = tf.maximum(_largest_magnitude(equality_rows * b, -1), _largest_magnitude(inequality_rows * h, -1))
    # x is at least as large as the right-hand sides make it, and (where the
    # constraints let it) as the unconstrained minimizer's size q/P.
    unconstrained = q_norm * _safe_reciprocal(P_norm)
    size = tf.where(right_hand_side > 0.0, tf.maximum(right_hand_side, tf.sqrt(right_hand_side * unconstrained)),
                    unconstrained)
    size = tf.where(size > 0.0, size, 1.0)
    objective = _safe_reciprocal(tf.maximum(P_norm, q_norm / size))
    # Rounded all at once: one op per step of the rounding, not five.
    rounded = _power_of_two(tf.concat([factors, size[:, None], objective[:, None]], axis=-1))
    column, equality_rows, inequality_rows, size, objective = tf.split(
        rounded, [n, p, G.shape[-2], 1, 1], axis=-1)
    return Scaling(column, equality_rows, inequality_rows, size[:, 0], objective[:, 0])


def equilibrate(P, q, A, b, G, h):
    """Scales the batched float64 QP data; returns (scaled P, q, A, b, G, h) and the `Scaling`.

    Args:
        P: (B, n, n) symmetric; q: (B, n); A: (B, p, n); b: (B, p);
            G: (B, m, n); h: (B, m). p or m may be 0.
    """
    scaling = Scaling(*solution_replay.recorded_or_replayed(lambda: _factors(P, q, A, b, G, h), count=len(Scaling._fields)))
    column, size, objective = scaling.column, scaling.size[:, None], scaling.objective[:, None]
    scaled = (
        objective[:, :, None] * (column[:, :, None] * P * column[:, None, :]),
        (objective / size) * (column * q),
        scaling.equality_rows[:, :, None] * A * column[:, None, :],
        scaling.equality_rows * b / size,
        scaling.inequality_rows[:, :, None] * G * column[:, None, :],
        scaling.inequality_rows * h / size,
    )
    return scaled, scaling


def unscale(scaling: Scaling, x_scaled, nu_scaled, lam_scaled):
    """(x, ν, λ) of the original problem from those of the scaled one."""
    multiplier_factor = (scaling.size / scaling.objective)[:, None]
    x = (scaling.size[:, None] * scaling.column) * x_scaled
    nu = (multiplier_factor * scaling.equality_rows) * nu_scaled
    lam = (multiplier_factor * scaling.inequality_rows) * lam_scaled
    return x, nu, lam

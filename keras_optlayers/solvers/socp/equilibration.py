"""Scales a batch of cone programs so that the interior-point loop sees unit-sized data.

For min ½xᵀPx + cᵀx s.t. Ax + s = b, s ∈ K (P = 0 when absent), with
positive diagonal E (rows) and D (columns) and positive scalars σ_b, σ_c,
the program

    min ½x̃ᵀP̃x̃ + c̃ᵀx̃  s.t.  Ãx̃ + s̃ = b̃, s̃ ∈ K,
    Ã = E A D,  b̃ = E b / σ_b,  c̃ = D c / σ_c,  P̃ = (σ_b / σ_c) D P D

(the objective in x = σ_b D x̃, divided by σ_b σ_c) has the solution
x = σ_b D x̃, s = σ_b E⁻¹ s̃, y = σ_c E ỹ, as long as E is constant on each
second-order cone's rows (so s̃ ∈ K iff s ∈ K). D and E come from Ruiz's
iteration on [[P, Aᵀ], [A, 0]] (divide rows and columns by the square root
of their largest entry, `RUIZ_ITERATIONS` times); σ_b = ‖E b‖∞ and
σ_c = ‖D c‖∞, or σ_b max|D P D| where c is zero (1 where both are zero).
σ_c is not raised to σ_b max|D P D| otherwise: where a loose bound sets σ_b
far above the solution's size, that made c̃ too small for the loop's
tolerances to resolve. The scale factors are constants for differentiation:
the identity above holds for any fixed scaling, so the gradient through the
scaled solve is the gradient of the original solution map.

Limits: one scalar σ_b sizes all of x from b; where the constraints leave x
free to grow far beyond b (a quadratic objective whose minimizer is much
larger than the constraints' data), the scaled problem is not unit-sized
and the after-the-fact check may report it inaccurate.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from keras_optlayers.solvers import solution_replay
from keras_optlayers.solvers.socp.cones import ConeLayout

RUIZ_ITERATIONS = 10


class Scaling(NamedTuple):
    """row (B, m), column (B, n), b_scale (B, 1), c_scale (B, 1); all positive."""

    row: tf.Tensor
    column: tf.Tensor
    b_scale: tf.Tensor
    c_scale: tf.Tensor


def _positive_or_one(v: tf.Tensor) -> tf.Tensor:
    return tf.where(v > 0, v, tf.ones_like(v))


def _shared_within_cones(cones: ConeLayout, row_norms: tf.Tensor) -> tf.Tensor:
    """Each row's norm, replaced on a second-order cone's rows by the cone's largest (E must be constant there)."""
    if not cones.soc:
        return row_norms
    first_conic = cones.zero
    return tf.concat([row_norms[:, :first_conic], cones.block_max(row_norms[:, first_conic:])], axis=1)


def _factors(cones: ConeLayout, A: tf.Tensor, b: tf.Tensor, c: tf.Tensor, P: tf.Tensor | None) -> Scaling:
    """The scaling of the batch (module docstring), without gradient."""
    A, b, c = (tf.stop_gradient(t) for t in (A, b, c))
    n = c.shape[-1]
    # [P; A] stacked (P symmetric: its rows' largest entries are its columns'): a Ruiz pass is a few ops on one
    # tensor, where scaling the blocks apart took twice as many (at batch 1 a solve's time is its op count).
    rows_of_P = 0 if P is None else n
    stacked = A if P is None else tf.concat([tf.stop_gradient(P), A], axis=-2)
    factors = tf.ones_like(tf.concat([c, b], axis=-1))  # D, then E
    for _ in range(RUIZ_ITERATIONS):
        magnitudes = tf.abs(stacked)
        norms = tf.concat([tf.reduce_max(magnitudes, axis=-2),
                           _shared_within_cones(cones, tf.reduce_max(magnitudes[:, rows_of_P:], axis=-1))], axis=-1)
        step = 1.0 / tf.sqrt(_positive_or_one(norms))
        # P's rows take the column factors, A's the row factors: in the stacked order, exactly `step` with P.
        stacked = stacked * step[:, n - rows_of_P:, None] * step[:, None, :n]
        factors *= step
    column, row = factors[:, :n], factors[:, n:]
    b_scale = _positive_or_one(tf.reduce_max(tf.abs(b * row), axis=-1, keepdims=True))
    c_scale = tf.reduce_max(tf.abs(c * column), axis=-1, keepdims=True)
    if P is not None:
        # From P only where c is zero: tied to σ_b, a loose bound (‖x‖ ≤ 1e7 next to a solution of 1e3)
        # shrank c̃ to 1e-4, below what the loop's tolerances resolve (errors of 0.7 passed as solved).
        scaled_P_norm = tf.reduce_max(tf.abs(stacked[:, :n]), axis=[-2, -1])
        c_scale = tf.where(c_scale > 0, c_scale, b_scale * scaled_P_norm[:, None])
    return Scaling(row, column, b_scale, _positive_or_one(c_scale))


def equilibrate(
    cones: ConeLayout, A: tf.Tensor, b: tf.Tensor, c: tf.Tensor, P: tf.Tensor | None = None,
) -> tuple[Scaling, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """Returns the scaling and (Ã, b̃, c̃, P̃) for A (B, m, n), b (B, m), c (B, n), P (B, n, n) or None (P̃ None then)."""
    scaling = Scaling(*solution_replay.recorded_or_replayed(lambda: _factors(cones, A, b, c, P), count=len(Scaling._fields)))
    A_scaled = A * scaling.row[:, :, None] * scaling.column[:, None, :]
    P_scaled = None
    if P is not None:
        P_scaled = P * (scaling.column[:, :, None] * scaling.column[:, None, :] * (scaling.b_scale / scaling.c_scale)[:, :, None])
    return scaling, A_scaled, b * scaling.row / scaling.b_scale, c * scaling.column / scaling.c_scale, P_scaled


class Units(NamedTuple):
    """(B,) each: one unit of the equilibrated problem's primal residual, dual residual and gap, in the caller's units."""

    primal: tf.Tensor
    dual: tf.Tensor
    gap: tf.Tensor


def residual_units(scaling: Scaling) -> Units:
    """One unit of the scaled primal residual (b = σ_b E⁻¹ b̃), dual residual (c = σ_c D⁻¹ c̃) and
    objective (divided by σ_b σ_c) in the original units, the smallest over the rows or columns."""
    b_scale, c_scale = scaling.b_scale[:, 0], scaling.c_scale[:, 0]
    return Units(b_scale / tf.reduce_max(scaling.row, axis=-1), c_scale / tf.reduce_max(scaling.column, axis=-1),
                 b_scale * c_scale)


def unscale(scaling: Scaling, x: tf.Tensor, y: tf.Tensor, s: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The original program's (x, y, s) from the scaled program's."""
    return scaling.b_scale * scaling.column * x, scaling.c_scale * scaling.row * y, scaling.b_scale * s / scaling.row

"""Scales a batch of cone programs so that the interior-point loop sees unit-sized data.

For min cᵀx s.t. Ax + s = b, s ∈ K, with positive diagonal E (rows) and D
(columns) and positive scalars σ_b, σ_c, the program

    min c̃ᵀx̃  s.t.  Ãx̃ + s̃ = b̃, s̃ ∈ K,   Ã = E A D,  b̃ = E b / σ_b,  c̃ = D c / σ_c

has the solution x = σ_b D x̃, s = σ_b E⁻¹ s̃, y = σ_c E ỹ, as long as E is
constant on each second-order cone's rows (so s̃ ∈ K iff s ∈ K). D and E come
from Ruiz's iteration (divide rows and columns by the square root of their
largest entry, `RUIZ_ITERATIONS` times); σ_b = ‖E b‖∞ and σ_c = ‖D c‖∞ (1
where zero). The scale factors are constants for differentiation: the
identity above holds for any fixed scaling, so the gradient through the
scaled solve is the gradient of the original solution map.
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


def _row_norms(cones: ConeLayout, A: tf.Tensor) -> tf.Tensor:
    """Largest |entry| of each row, shared by all rows of a second-order cone."""
    norms = tf.reduce_max(tf.abs(A), axis=-1)
    if not cones.soc:
        return norms
    first_conic = cones.zero
    conic = cones.block_max(norms[:, first_conic:])
    return tf.concat([norms[:, :first_conic], conic], axis=1)


def _factors(cones: ConeLayout, A: tf.Tensor, b: tf.Tensor, c: tf.Tensor) -> Scaling:
    """The scaling of the batch (module docstring), without gradient."""
    A, b, c = (tf.stop_gradient(t) for t in (A, b, c))
    row = tf.ones_like(b)
    column = tf.ones_like(c)
    scaled = A
    for _ in range(RUIZ_ITERATIONS):
        row_factor = 1.0 / tf.sqrt(_positive_or_one(_row_norms(cones, scaled)))
        column_factor = 1.0 / tf.sqrt(_positive_or_one(tf.reduce_max(tf.abs(scaled), axis=-2)))
        scaled = scaled * row_factor[:, :, None] * column_factor[:, None, :]
        row, column = row * row_factor, column * column_factor
    b_scale = _positive_or_one(tf.reduce_max(tf.abs(b * row), axis=-1, keepdims=True))
    c_scale = _positive_or_one(tf.reduce_max(tf.abs(c * column), axis=-1, keepdims=True))
    return Scaling(row, column, b_scale, c_scale)


def equilibrate(cones: ConeLayout, A: tf.Tensor, b: tf.Tensor, c: tf.Tensor) -> tuple[Scaling, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Returns the scaling and (Ã, b̃, c̃) for A (B, m, n), b (B, m), c (B, n)."""
    scaling = Scaling(*solution_replay.recorded_or_replayed(lambda: _factors(cones, A, b, c), count=len(Scaling._fields)))
    A_scaled = A * scaling.row[:, :, None] * scaling.column[:, None, :]
    return scaling, A_scaled, b * scaling.row / scaling.b_scale, c * scaling.column / scaling.c_scale


def unscale(scaling: Scaling, x: tf.Tensor, y: tf.Tensor, s: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The original program's (x, y, s) from the scaled program's."""
    return scaling.b_scale * scaling.column * x, scaling.c_scale * scaling.row * y, scaling.b_scale * s / scaling.row

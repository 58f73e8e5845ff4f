"""After-the-fact check of a returned solution, in the caller's units.

The loop's stopping rule runs on equilibrated data with the user's `tol`;
this check runs on the original (A, b, c) with a fixed tolerance no setting
can loosen, relative to the data's scale (every bound is homogeneous in the
magnitudes of A, b, c, x, y, s, so it means the same at 1e-8 and 1e10):

    ‖Ax + s − b‖∞ ≤ ε (‖A‖ ‖x‖∞ + ‖s‖∞ + ‖b‖∞)
    ‖Aᵀy + c‖∞   ≤ ε (‖A‖ ‖y‖∞ + ‖c‖∞)
    |cᵀx + bᵀy|  ≤ ε (‖c‖₁ ‖x‖∞ + ‖b‖₁ ‖y‖∞)
    s ∈ K and y ∈ K* to ε ‖s‖∞ and ε ‖y‖∞ (least eigenvalue), s = 0 on zero rows

with ‖A‖ the largest row 1-norm, so that ‖Ax‖∞ ≤ ‖A‖ ‖x‖∞.
"""

from __future__ import annotations

import tensorflow as tf

from keras_optlayers.solvers.socp.cones import ConeLayout

CHECK_TOL = 1e-6


def _inf_norm(v: tf.Tensor) -> tf.Tensor:
    return tf.reduce_max(tf.abs(v), axis=-1)


def solution_passes(cones: ConeLayout, A, b, c, x, y, s) -> tf.Tensor:
    """(B,) bool: whether each example's (x, y, s) passes the check above (float64 inputs)."""
    A_norm = tf.reduce_max(tf.reduce_sum(tf.abs(A), axis=-1), axis=-1)
    x_norm, y_norm, s_norm = _inf_norm(x), _inf_norm(y), _inf_norm(s)
    primal_residual = _inf_norm(tf.linalg.matvec(A, x) + s - b)
    dual_residual = _inf_norm(tf.linalg.matvec(A, y, adjoint_a=True) + c)
    gap = tf.abs(tf.reduce_sum(c * x, -1) + tf.reduce_sum(b * y, -1))
    passes = (
        (primal_residual <= CHECK_TOL * (A_norm * x_norm + s_norm + _inf_norm(b)))
        & (dual_residual <= CHECK_TOL * (A_norm * y_norm + _inf_norm(c)))
        & (gap <= CHECK_TOL * (tf.reduce_sum(tf.abs(c), -1) * x_norm + tf.reduce_sum(tf.abs(b), -1) * y_norm))
    )
    if cones.zero:
        passes &= tf.reduce_all(tf.equal(s[:, : cones.zero], 0.0), axis=-1)
    if cones.num_conic_rows:
        passes &= cones.min_eigenvalue(s[:, cones.zero :]) >= -CHECK_TOL * s_norm
        passes &= cones.min_eigenvalue(y[:, cones.zero :]) >= -CHECK_TOL * y_norm
    finite = tf.reduce_all(tf.math.is_finite(tf.concat([x, y, s], axis=-1)), axis=-1)
    return passes & finite

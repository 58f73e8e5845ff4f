"""Is P positive semidefinite? A batched test, in TensorFlow ops, before the solve.

P is accepted when P + δI has a Cholesky factorization, with
δ = `PSD_TOLERANCE_EPS` × (machine epsilon of the caller's dtype) × max|Pᵢⱼ|:
that is, when its smallest eigenvalue is above −δ, up to rounding. The
tolerance follows the caller's dtype because a P computed in float32 (say
LLᵀ for a rank-deficient L) has eigenvalues of −1e-7 × its scale that are
rounding, not non-convexity. One Cholesky factorization per example costs
less than one interior-point iteration. A failed factorization gives NaN
entries (eagerly, in graphs and under XLA alike), which is the test.

`convex_part` prepares P for a solver (the QP and SOCP solvers alike) and
`raise_if_non_convex` turns the status it leads to into the eager error.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_optlayers.solvers import solution_replay
from keras_optlayers.solvers.qp.status import NON_CONVEX

# δ in units of the caller's machine epsilon times P's largest entry.
PSD_TOLERANCE_EPS = 1e4
# Keeps δ positive for P = 0 (an LP), whose factorization would otherwise fail.
_SMALLEST_SHIFT = 1e-300


def psd_tolerance(dtype: tf.DType) -> float:
    """Relative eigenvalue tolerance for a P given in `dtype`."""
    return PSD_TOLERANCE_EPS * float(np.finfo(dtype.as_numpy_dtype).eps)


def is_positive_semidefinite(P: tf.Tensor, input_dtype: tf.DType) -> tf.Tensor:
    """(B,) bool: is each symmetric (B, n, n) float64 P positive semidefinite (module docstring)."""
    scale = tf.reduce_max(tf.abs(P), axis=[-2, -1])
    shift = tf.maximum(psd_tolerance(input_dtype) * scale, _SMALLEST_SHIFT)
    factor = tf.linalg.cholesky(P + shift[:, None, None] * tf.eye(tf.shape(P)[-1], dtype=P.dtype))
    return tf.reduce_all(tf.math.is_finite(factor), axis=[-2, -1])


def non_convex_error(P: np.ndarray, batch_indices) -> ValueError:
    """The eager `ValueError` for the examples at `batch_indices` of (B, n, n) or (n, n) P."""
    P = np.asarray(P, dtype=np.float64)
    first = int(batch_indices[0])
    example = P[first] if P.ndim == 3 else P
    smallest = float(np.linalg.eigvalsh(0.5 * (example + example.T))[0])
    more = f" (and at batch indices {list(map(int, batch_indices[1:]))})" if len(batch_indices) > 1 else ""
    return ValueError(
        "Expected `P` to be positive semidefinite (a convex objective), within a tolerance relative to its "
        f"largest entry. Received: P with smallest eigenvalue {smallest:.6g} at batch index {first}{more}"
    )


def convex_part(P: tf.Tensor, input_dtype: tf.DType) -> tuple[tf.Tensor, tf.Tensor]:
    """(P to solve with, (B,) bool convex) for a (B, n, n) float64 P.

    Only P's symmetric part enters ½xᵀPx, and the solvers' optimality
    conditions assume it. A non-convex example is solved with P = I
    instead, so that it does not hold up the batch's iterations; the caller
    gives it the status `NON_CONVEX`. The mask is a constant of the
    gradient, recorded for its replay (`solution_replay`).
    """
    P = 0.5 * (P + tf.linalg.matrix_transpose(P))
    (convex,) = solution_replay.recorded_or_replayed(lambda: (is_positive_semidefinite(P, input_dtype),), count=1)
    return tf.where(convex[:, None, None], P, tf.eye(tf.shape(P)[-1], dtype=P.dtype)), convex


def raise_if_non_convex(status: tf.Tensor, P: tf.Tensor) -> None:
    """Eagerly, `non_convex_error` for the examples whose status is `NON_CONVEX` (P as the caller gave it)."""
    non_convex = np.flatnonzero(status.numpy() == NON_CONVEX)
    if non_convex.size:
        raise non_convex_error(P.numpy(), non_convex)

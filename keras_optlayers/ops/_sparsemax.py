"""Sparsemax: the Euclidean projection onto the probability simplex."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_optlayers.ops._projection_utils import ProjectionRunner, prepare_input, safe_divide


def _sparsemax_rows(x: tf.Tensor, included: tf.Tensor) -> tf.Tensor:
    """Sparsemax of the included entries of each float64 [batch, n] row, by sort and threshold."""
    # The projection is shift invariant, and its threshold lies in
    # [max - 1, max): entries below max - 1 are zero whatever their size, so
    # clamping x - max at -1 changes nothing but keeps every partial sum in
    # [-n, 0] (no overflow, no small entry lost next to a huge one).
    row_max = tf.reduce_max(tf.where(included, x, -np.inf), axis=-1, keepdims=True)
    row_max = tf.stop_gradient(tf.where(row_max > -np.inf, row_max, 0.0))
    shifted = tf.where(included, tf.maximum(x - row_max, -1.0), -1.0)

    @tf.custom_gradient
    def project(z):
        sorted_z = tf.sort(z, axis=-1, direction="DESCENDING")
        ranks = tf.cast(tf.range(1, tf.shape(z)[-1] + 1), z.dtype)
        partial_sums = tf.cumsum(sorted_z, axis=-1)
        # Sorted entries j with 1 + j * z_j > sum_{i<=j} z_i form the support;
        # they are a prefix of the sorted order, so counting them gives its size.
        # (Beside the row's 0, an entry at -1 never qualifies. A row with no
        # included entry counts garbage, and its output is masked to zero.)
        support_size = tf.reduce_sum(
            tf.cast(1.0 + ranks * sorted_z > partial_sums, tf.int32), axis=-1, keepdims=True
        )
        support_sum = tf.gather(partial_sums, support_size - 1, batch_dims=1)
        tau = (support_sum - 1.0) / tf.cast(support_size, z.dtype)
        y = tf.where(included, tf.maximum(z - tau, 0.0), 0.0)

        def vjp(upstream):
            # On the support S, dy/dx = I - 1 1^T / |S|; zero elsewhere.
            support = tf.cast(y > 0, y.dtype)
            mean = safe_divide(
                tf.reduce_sum(upstream * support, axis=-1, keepdims=True),
                tf.reduce_sum(support, axis=-1, keepdims=True),
            )
            return support * (upstream - mean)

        return y, vjp

    return project(shifted)


_RUNNER = ProjectionRunner(_sparsemax_rows)


def sparsemax(x, axis: int = -1, mask=None) -> tf.Tensor:
    """Sparsemax: the Euclidean projection of `x` onto the probability simplex.

    Solves `argmin_y ||y - x||^2  s.t.  sum(y) = 1, y >= 0` along `axis`
    (Martins & Astudillo, 2016) by sorting and thresholding: O(n log n) per
    slice. The result is exact at any finite magnitude of `x` (the threshold
    is computed on x - max(x), clamped where it cannot matter). The gradient
    is exact: on the support S of y, dy/dx = I - 1 1^T / |S|, and zero off it.

    Excluded entries (`mask` False, or `x` = -inf) get exactly 0 and a zero
    gradient; the others are projected onto the simplex of their own
    dimension. A slice with a NaN or +inf among its included entries is NaN;
    a slice with no included entry is all zeros.

    Args:
        x: floating tensor of any rank >= 1. float32 (and narrower) inputs are
            computed in float64 and rounded back.
        axis: the axis to project along.
        mask: optional boolean tensor broadcastable to `x`; False excludes
            an entry.

    Returns:
        A tensor of the shape and dtype of `x`, nonnegative, summing to 1
        along `axis` (0 for slices with nothing included).

    Raises:
        ValueError: `axis` is out of range.
    """
    x, mask, axis = prepare_input(x, mask, axis)
    return _RUNNER(x, [], mask, axis)

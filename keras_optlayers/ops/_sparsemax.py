"""Sparsemax: the Euclidean projection onto the probability simplex."""

from __future__ import annotations

import tensorflow as tf

from keras_optlayers.ops._projection_utils import ProjectionRunner, prepare_input


def _sparsemax_rows(x: tf.Tensor) -> tf.Tensor:
    """Sparsemax of each row of a float64 [batch, n] tensor, by sort and threshold."""

    @tf.custom_gradient
    def project(x):
        # The projection is shift invariant; shifting by the max keeps the
        # cumulative sums small for inputs of large magnitude.
        x = x - tf.reduce_max(x, axis=-1, keepdims=True)
        z = tf.sort(x, axis=-1, direction="DESCENDING")
        ranks = tf.cast(tf.range(1, tf.shape(z)[-1] + 1), z.dtype)
        partial_sums = tf.cumsum(z, axis=-1)
        # Sorted entries j with 1 + j * z_j > sum_{i<=j} z_i form the support;
        # they are a prefix of the sorted order, so counting them gives its size.
        support_size = tf.reduce_sum(tf.cast(1.0 + ranks * z > partial_sums, tf.int32), axis=-1, keepdims=True)
        support_sum = tf.gather(partial_sums, support_size - 1, batch_dims=1)
        tau = (support_sum - 1.0) / tf.cast(support_size, z.dtype)
        y = tf.maximum(x - tau, 0.0)

        def vjp(upstream):
            # On the support S, dy/dx = I - 1 1^T / |S|; zero elsewhere.
            support = tf.cast(y > 0, y.dtype)
            mean = tf.reduce_sum(upstream * support, axis=-1, keepdims=True) / tf.reduce_sum(
                support, axis=-1, keepdims=True
            )
            return support * (upstream - mean)

        return y, vjp

    return project(x)


_RUNNER = ProjectionRunner(_sparsemax_rows)


def sparsemax(x, axis: int = -1) -> tf.Tensor:
    """Sparsemax: the Euclidean projection of `x` onto the probability simplex.

    Solves `argmin_y ||y - x||^2  s.t.  sum(y) = 1, y >= 0` along `axis`
    (Martins & Astudillo, 2016) by sorting and thresholding: O(n log n) per
    slice. The gradient is exact: on the support S of y,
    dy/dx = I - 1 1^T / |S|, and zero off it.

    Args:
        x: floating tensor of any rank >= 1. float32 (and narrower) inputs are
            computed in float64 and rounded back.
        axis: the axis to project along.

    Returns:
        A tensor of the shape and dtype of `x`, nonnegative, summing to 1
        along `axis`.

    Raises:
        ValueError: `x` contains NaN or Inf (eagerly; inside a graph a
            `tf.debugging` assertion with the same text; XLA skips it), or
            `axis` is out of range.
    """
    x, axis = prepare_input(x, axis)
    return _RUNNER([x], axis)

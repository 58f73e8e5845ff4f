"""Constrained softmax: the entropy-regularized projection onto the capped simplex."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_optlayers.ops._projection_utils import ProjectionRunner, prepare_bounded_input, safe_divide


def _csoftmax_rows(x: tf.Tensor, upper: tf.Tensor) -> tf.Tensor:
    """csoftmax of each row of float64 [batch, n] tensors x and upper."""

    @tf.custom_gradient
    def project(x, upper):
        # KKT: y = min(upper, exp(x - tau)) with tau fixed by sum(y) = 1.
        # Coordinate i is capped exactly when tau <= c_i = x_i - log(upper_i),
        # so the capped set is a prefix of the coordinates sorted by c
        # (descending). Sweeping that order, g(c_j) = (capped mass) +
        # sum_{free} exp(x_i - c_j) is nondecreasing in j; the number of
        # breakpoints with g <= 1 is the number of capped coordinates.
        # (Martins & Kreutzer, 2017, in log space so large |x| cannot overflow.)
        x = x - tf.reduce_max(x, axis=-1, keepdims=True)
        # A zero cap acts as a tiny one: the coordinate is always capped.
        log_upper = tf.math.log(tf.maximum(upper, np.finfo(upper.dtype.as_numpy_dtype).tiny))
        breakpoints = x - log_upper
        order = tf.argsort(breakpoints, axis=-1, direction="DESCENDING", stable=True)
        sorted_points = tf.gather(breakpoints, order, batch_dims=1)
        sorted_x = tf.gather(x, order, batch_dims=1)
        capped_mass = tf.cumsum(tf.gather(upper, order, batch_dims=1), axis=-1)
        log_free_mass = tf.math.cumulative_logsumexp(sorted_x, axis=-1, reverse=True, exclusive=True)
        g_at_points = capped_mass + tf.exp(log_free_mass - sorted_points)
        num_capped = tf.reduce_sum(tf.cast(g_at_points <= 1.0, tf.int32), axis=-1, keepdims=True)
        # The capped coordinates are those whose breakpoint reaches the
        # num_capped-th largest. (g is equal across tied breakpoints, so a tie
        # group is never split by the count.)
        threshold = tf.gather(
            tf.concat([sorted_points[:, :1] + 1.0, sorted_points], axis=-1), num_capped, batch_dims=1
        )
        capped = breakpoints >= threshold
        free = tf.logical_not(capped)
        # Exact tau on this active set: exp(-tau) * sum_F exp(x) = 1 - sum_C upper.
        free_budget = 1.0 - tf.reduce_sum(tf.where(capped, upper, 0.0), axis=-1, keepdims=True)
        log_free_sum = tf.reduce_logsumexp(tf.where(free, x, -np.inf), axis=-1, keepdims=True)
        tau = log_free_sum - tf.math.log(tf.maximum(free_budget, 0.0))
        y = tf.where(capped, upper, tf.minimum(upper, tf.exp(x - tau)))

        def vjp(upstream):
            # Free set F, s = sum_F y: dy_F/dx_F = diag(y_F) - y_F y_F^T / s.
            # Capped set C: dy_C/du_C = I; raising u_C rescales the free
            # coordinates, dy_F/du_C = -y_F / s.
            free_y = tf.where(free, y, 0.0)
            free_total = tf.reduce_sum(free_y, axis=-1, keepdims=True)
            weighted_mean = safe_divide(tf.reduce_sum(upstream * free_y, axis=-1, keepdims=True), free_total)
            centered = upstream - weighted_mean
            return free_y * centered, tf.where(capped, centered, 0.0)

        return y, vjp

    return project(x, upper)


_RUNNER = ProjectionRunner(_csoftmax_rows)


def csoftmax(x, upper, axis: int = -1) -> tf.Tensor:
    """Constrained softmax: softmax with per-coordinate upper bounds.

    Solves `argmin_y -x^T y - H(y)  s.t.  sum(y) = 1, y <= upper` along `axis`,
    H the Shannon entropy (Martins & Kreutzer, 2017). The solution is
    y = min(upper, exp(x - tau)); the capped set and tau are found exactly by
    sorting the breakpoints x - log(upper): O(n log n) per slice. With
    upper >= 1 it is the softmax.

    The gradient is exact. With F the free coordinates (y < upper), C the
    capped ones and s = sum_F y: dy_F/dx_F = diag(y_F) - y_F y_F^T / s; dy/dx
    is zero elsewhere; dy_C/du_C = I and dy_F/du_C = -y_F / s. A coordinate
    exactly at its cap gets one of the one-sided Jacobians.

    Args:
        x: floating tensor of any rank >= 1 (float32 is computed in float64).
        upper: a python number (needs n * upper >= 1) or a tensor
            broadcastable to `x`: nonnegative, summing to at least 1 along
            `axis`. Gradients flow to a tensor `upper`.
        axis: the axis to project along.

    Returns:
        A tensor of the shape and dtype of `x`.

    Raises:
        ValueError: infeasible bounds, NaN or Inf in the inputs, or a bad
            `axis`. Eagerly these raise before computing; inside a graph the
            data checks are `tf.debugging` assertions with the same text (XLA
            skips them).
    """
    x, upper, axis = prepare_bounded_input(x, upper, axis)
    return _RUNNER([x, upper], axis)

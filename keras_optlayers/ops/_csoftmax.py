"""Constrained softmax: the entropy-regularized projection onto the capped simplex."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_optlayers.ops._projection_utils import (
    ProjectionRunner,
    assert_valid_upper,
    capped_simplex_anchor,
    infeasible_bounds,
    project_with_bounds,
    safe_divide,
)

# Measured from the anchor, the threshold tau lies in [0, 745 + log n] (the
# free mass is at least the smallest positive float64 that 1 - sum(capped
# bounds) can be). Clipping x - anchor to [-1e4, 1e4] therefore changes no
# float64 result (exp(-1e4 + 745) underflows to 0; entries above 1e4 are
# capped) and keeps every exp and log finite.
SHIFT_LIMIT = 1e4


def _csoftmax_rows(
    x: tf.Tensor, included: tf.Tensor, upper: tf.Tensor, *, epsilon: float, check_upper: bool
) -> tf.Tensor:
    """csoftmax of the included entries of float64 [batch, n] rows x and upper.

    `epsilon` is the caller dtype's rounding, which the bounds may fall short
    of 1 by (n * epsilon).
    """
    if check_upper:
        upper = assert_valid_upper(upper, epsilon)
    infeasible = infeasible_bounds(included, upper, epsilon)
    # y <= 1 anyway, so bounds above 1 never bind; excluded entries get a
    # bound that never binds either (their exp is 0).
    upper = tf.where(included, tf.minimum(upper, 1.0), 1.0)
    anchor = capped_simplex_anchor(x, included, upper)
    shifted = tf.where(included, tf.clip_by_value(x - anchor, -SHIFT_LIMIT, SHIFT_LIMIT), -SHIFT_LIMIT)

    @tf.custom_gradient
    def project(x, upper):
        # KKT: y = min(upper, exp(x - tau)) with tau fixed by sum(y) = 1.
        # Coordinate i is capped exactly when tau <= c_i = x_i - log(upper_i),
        # so the capped set is a prefix of the coordinates sorted by c
        # (descending). Sweeping that order, g(c_j) = (capped mass) +
        # sum_{free} exp(x_i - c_j) is nondecreasing in j; the number of
        # breakpoints with g <= 1 is the number of capped coordinates.
        # (Martins & Kreutzer, 2017, in log space so large |x| cannot overflow.)
        # A zero bound gives c = +inf: that coordinate is always capped (at 0).
        positive = upper > 0
        breakpoints = tf.where(positive, x - tf.math.log(tf.where(positive, upper, 1.0)), np.inf)
        order = tf.argsort(breakpoints, axis=-1, direction="DESCENDING", stable=True)
        sorted_points = tf.gather(breakpoints, order, batch_dims=1)
        sorted_x = tf.gather(x, order, batch_dims=1)
        capped_mass = tf.cumsum(tf.gather(upper, order, batch_dims=1), axis=-1)
        log_free_mass = tf.math.cumulative_logsumexp(sorted_x, axis=-1, reverse=True, exclusive=True)
        # Only g <= 1 matters, so the exponent is capped at 1: no overflow. (No
        # intermediate here may be inf with an inf derivative: a persistent
        # tape backpropagates zeros through these ops too, and 0 * inf = NaN.)
        g_at_points = capped_mass + tf.exp(tf.minimum(log_free_mass - sorted_points, 1.0))
        num_capped = tf.reduce_sum(tf.cast(g_at_points <= 1.0, tf.int32), axis=-1, keepdims=True)
        # The capped coordinates are those whose breakpoint reaches the
        # num_capped-th largest. (g is equal across tied breakpoints, so a tie
        # group is never split by the count.)
        threshold = tf.gather(
            tf.concat([sorted_points[:, :1] + 1.0, sorted_points], axis=-1), num_capped, batch_dims=1
        )
        capped = tf.logical_and(included, breakpoints >= threshold)
        free = tf.logical_and(included, tf.logical_not(capped))
        # Exact tau on this active set: exp(-tau) * sum_F exp(x) = 1 - sum_C upper.
        free_budget = 1.0 - tf.reduce_sum(tf.where(capped, upper, 0.0), axis=-1, keepdims=True)
        log_free_sum = tf.reduce_logsumexp(tf.where(free, x, -SHIFT_LIMIT), axis=-1, keepdims=True)
        # No budget left (bounds summing to 1): the free coordinates are 0.
        has_budget = free_budget > 0
        tau = tf.where(
            has_budget, log_free_sum - tf.math.log(tf.where(has_budget, free_budget, 1.0)), np.inf
        )
        # y <= upper <= 1, so exponents above 0 never matter.
        y = tf.where(capped, upper, tf.where(free, tf.minimum(upper, tf.exp(tf.minimum(x - tau, 0.0))), 0.0))
        y = tf.where(infeasible, tf.constant(np.nan, y.dtype), y)

        def vjp(upstream):
            # Free set F, s = sum_F y: dy_F/dx_F = diag(y_F) - y_F y_F^T / s.
            # Capped set C: dy_C/du_C = I; raising u_C rescales the free
            # coordinates, dy_F/du_C = -y_F / s.
            free_y = tf.where(free, y, 0.0)
            free_total = tf.reduce_sum(free_y, axis=-1, keepdims=True)
            weighted_mean = safe_divide(tf.reduce_sum(upstream * free_y, axis=-1, keepdims=True), free_total)
            centered = tf.where(infeasible, tf.constant(np.nan, y.dtype), upstream - weighted_mean)
            return free_y * centered, tf.where(capped, centered, 0.0)

        return y, vjp

    return project(shifted, upper)


_RUNNER = ProjectionRunner(_csoftmax_rows)


def csoftmax(x, upper, axis: int = -1, mask=None) -> tf.Tensor:
    """Constrained softmax: softmax with per-coordinate upper bounds.

    Solves `argmin_y -x^T y - H(y)  s.t.  sum(y) = 1, y <= upper` along `axis`,
    H the Shannon entropy (Martins & Kreutzer, 2017). The solution is
    y = min(upper, exp(x - tau)); the capped set and tau are found exactly by
    sorting the breakpoints x - log(upper): O(n log n) per slice. With
    upper >= 1 it is the softmax. Everything is computed on x measured from
    an entry next to tau, so the result is exact at any finite magnitude of
    `x`, small outputs included.

    The gradient is exact. With F the free coordinates (y < upper), C the
    capped ones and s = sum_F y: dy_F/dx_F = diag(y_F) - y_F y_F^T / s; dy/dx
    is zero elsewhere; dy_C/du_C = I and dy_F/du_C = -y_F / s. A coordinate
    exactly at its cap gets one of the one-sided Jacobians.

    Excluded entries (`mask` False, or `x` = -inf) get exactly 0 and zero
    gradients (their bounds are ignored); the included ones solve the problem
    restricted to them. A slice with a NaN or +inf among its included entries
    is NaN (as softmax gives); a slice with no included entry is all zeros; a
    slice whose included bounds sum below 1 has no feasible point and is NaN.

    Args:
        x: floating tensor of any rank >= 1 (float32 is computed in float64).
        upper: a python number (needs n * upper >= 1) or a tensor
            broadcastable to `x`: finite, nonnegative, summing to at least 1
            along `axis` (up to n ulps of x's dtype). Gradients flow to a
            tensor `upper`.
        axis: the axis to project along.
        mask: optional boolean tensor broadcastable to `x`; False excludes
            an entry.

    Returns:
        A tensor of the shape and dtype of `x`.

    Raises:
        ValueError: a bad python-number `upper` or `axis`; eagerly, also bad
            values in a tensor `upper`. Inside a graph those become
            `tf.errors.InvalidArgumentError` from assertions with the same
            text; XLA skips them and returns NaN for the affected slices.
    """
    return project_with_bounds(_RUNNER, x, upper, mask, axis)

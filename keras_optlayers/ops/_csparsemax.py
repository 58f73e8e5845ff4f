"""Constrained sparsemax: the Euclidean projection onto the capped simplex."""

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


def _csparsemax_rows(
    x: tf.Tensor, included: tf.Tensor, upper: tf.Tensor, *, epsilon: float, check_upper: bool
) -> tf.Tensor:
    """Projects the included entries of each row onto {y: sum(y) = 1, 0 <= y <= upper}.

    float64 [batch, n] rows; `epsilon` is the caller dtype's rounding, which
    the bounds may fall short of 1 by (n * epsilon).
    """
    if check_upper:
        upper = assert_valid_upper(upper, epsilon)
    infeasible = infeasible_bounds(included, upper, epsilon)
    # y <= 1 anyway, so bounds above 1 never bind: capping them at 1 changes
    # nothing (and sends no gradient to them) but keeps every number below small.
    upper = tf.where(included, tf.minimum(upper, 1.0), 0.0)
    # The threshold tau lies in [anchor - 1, anchor] (see capped_simplex_anchor).
    # Measured from the anchor, entries below -2 are zero and entries above 2
    # are capped whatever their size, so clipping there changes nothing and
    # keeps the small entries exact next to huge ones.
    anchor = capped_simplex_anchor(x, included, upper)
    shifted = tf.where(included, tf.clip_by_value(x - anchor, -2.0, 2.0), -2.0)

    @tf.custom_gradient
    def project(x, upper):
        # The projection is y = clip(x - tau, 0, upper), where
        # f(tau) = sum(clip(x - tau, 0, upper)) = 1. f is piecewise linear and
        # nonincreasing, with breakpoints at x_i (y_i leaves 0) and
        # x_i - upper_i (y_i reaches its cap). Evaluate f at every breakpoint
        # in one sorted sweep, bracket the root between two adjacent
        # breakpoints, then solve for tau exactly on that piece's active set.
        breakpoints = tf.concat([x, x - upper], axis=-1)
        # +1: a coordinate becomes free; -1: a free coordinate becomes capped.
        events = tf.concat([tf.ones_like(x), -tf.ones_like(x)], axis=-1)
        order = tf.argsort(breakpoints, axis=-1, direction="DESCENDING", stable=True)
        sorted_points = tf.gather(breakpoints, order, batch_dims=1)
        free_count = tf.cumsum(tf.gather(events, order, batch_dims=1), axis=-1)
        # f at each breakpoint, sweeping tau downwards: f grows by
        # (number free) * (distance to the next breakpoint).
        gaps = sorted_points[:, :-1] - sorted_points[:, 1:]
        f_at_points = tf.concat(
            [tf.zeros_like(gaps[:, :1]), tf.cumsum(free_count[:, :-1] * gaps, axis=-1)], axis=-1
        )
        # The last breakpoint with f <= 1 (f is 0 at the first one); the root
        # lies between it and the next one. When f never exceeds 1 the bounds
        # sum to 1 (up to rounding) and every coordinate sits at its cap.
        last_below = tf.reduce_sum(tf.cast(f_at_points <= 1.0, tf.int32), axis=-1, keepdims=True) - 1
        padded_points = tf.concat([sorted_points, sorted_points[:, -1:] - 1.0], axis=-1)
        upper_end = tf.gather(padded_points, last_below, batch_dims=1)
        lower_end = tf.gather(padded_points, last_below + 1, batch_dims=1)
        # Between the two breakpoints the active set is fixed; read it at the
        # midpoint, where no coordinate is at a breakpoint.
        midpoint = 0.5 * (upper_end + lower_end)
        capped = tf.logical_and(included, midpoint <= x - upper)
        free = tf.logical_and(tf.logical_and(included, tf.logical_not(capped)), midpoint < x)
        free_f = tf.cast(free, x.dtype)
        capped_f = tf.cast(capped, x.dtype)
        num_free = tf.reduce_sum(free_f, axis=-1, keepdims=True)
        capped_mass = tf.reduce_sum(capped_f * upper, axis=-1, keepdims=True)
        # sum_F (x_i - tau) + sum_C upper_i = 1  =>  tau, exactly.
        tau = tf.where(
            num_free > 0,
            safe_divide(tf.reduce_sum(free_f * x, axis=-1, keepdims=True) + capped_mass - 1.0, num_free),
            lower_end,
        )
        y = tf.where(capped, upper, tf.where(free, tf.clip_by_value(x - tau, 0.0, upper), 0.0))
        y = tf.where(infeasible, tf.constant(np.nan, y.dtype), y)

        def vjp(upstream):
            # Free set F: dy_F/dx_F = I - 1 1^T/|F|. Capped set C: dy_C/du_C = I,
            # and raising u_C lowers the free coordinates by 1/|F| each.
            free_mean = safe_divide(tf.reduce_sum(upstream * free_f, axis=-1, keepdims=True), num_free)
            centered = tf.where(infeasible, tf.constant(np.nan, y.dtype), upstream - free_mean)
            return free_f * centered, capped_f * centered

        return y, vjp

    return project(shifted, upper)


_RUNNER = ProjectionRunner(_csparsemax_rows)


def csparsemax(x, upper, axis: int = -1, mask=None) -> tf.Tensor:
    """Constrained sparsemax: the Euclidean projection onto the capped simplex.

    Solves `argmin_y ||y - x||^2  s.t.  sum(y) = 1, 0 <= y <= upper` along
    `axis` (Malaviya, Ferreira & Martins, 2018). The solution is
    y = clip(x - tau, 0, upper); tau is found exactly, not approximately, by
    one sorted sweep over the 2n breakpoints of sum(clip(x - tau, 0, upper))
    followed by a closed-form solve on the active set: O(n log n) per slice.
    The sweep runs on x measured from an entry next to tau, so the result is
    exact at any finite magnitude of `x`.

    The gradient is exact. With F the free coordinates (0 < y < upper) and C
    the capped ones (y = upper): dy_F/dx_F = I - 1 1^T / |F|; dy/dx is zero
    elsewhere; dy_C/du_C = I and dy_F/du_C = -1/|F|. At a point where a
    coordinate sits exactly on a breakpoint the map is not differentiable and
    one of the one-sided Jacobians is returned.

    Excluded entries (`mask` False, or `x` = -inf) get exactly 0 and zero
    gradients (their bounds are ignored); the included ones solve the problem
    restricted to them. A slice with a NaN or +inf among its included entries
    is NaN; a slice with no included entry is all zeros; a slice whose
    included bounds sum below 1 has no feasible point and is NaN.

    Args:
        x: floating tensor of any rank >= 1 (float32 is computed in float64).
        upper: a python number (the same cap for every coordinate; needs
            n * upper >= 1) or a tensor broadcastable to `x`: finite,
            nonnegative, summing to at least 1 along `axis` (up to n ulps of
            x's dtype). Gradients flow to a tensor `upper`.
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

"""The limited multi-label (LML) projection."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_optlayers.core.checks import check_k
from keras_optlayers.ops._projection_utils import ProjectionRunner, prepare_input, safe_divide

# Safeguarded Newton converges in a handful of steps once inside its basin; the
# cap leaves room for the bisection steps that get it there (the bracket is at
# most about 2 * SHIFT_LIMIT wide, and 60 halvings shrink that below 1e-13).
MAX_ITERATIONS = 100
# x is measured from its ceil(k)-th largest entry and clipped to this range:
# the threshold then lies within about SHIFT_LIMIT / 2 of every entry whose
# output is not exactly 0 or 1 in float64, and exp(-SHIFT_LIMIT / 2)
# underflows, so the clipping changes no float64 result.
SHIFT_LIMIT = 1e4
_EPS = float(np.finfo(np.float64).eps)


def _lml_rows(x: tf.Tensor, included: tf.Tensor, *, k: float) -> tf.Tensor:
    """LML projection of the included entries of each float64 [batch, n] row."""
    below, above = math.ceil(k), math.floor(k) + 1
    num_included = tf.reduce_sum(tf.cast(included, x.dtype), axis=-1, keepdims=True)
    # Rows with at most k included entries have no interior solution: with
    # exactly k every included entry is 1; with fewer, sum(y) = k is infeasible.
    solvable = num_included > k
    ranked = tf.math.top_k(tf.where(included, x, -np.inf), k=above).values
    anchor = tf.stop_gradient(tf.where(solvable, ranked[:, below - 1 : below], 0.0))
    # The root is found as tau = anchor + delta, y = sigmoid(x - tau): measured
    # from an entry next to the threshold, x - tau keeps full precision for
    # every entry that is not saturated, whatever the magnitude of x.
    shifted = tf.where(included, tf.clip_by_value(x - anchor, -SHIFT_LIMIT, SHIFT_LIMIT), -np.inf)
    shifted_above = tf.where(solvable, tf.clip_by_value(ranked[:, above - 1 : above] - anchor, -SHIFT_LIMIT, 0.0), 0.0)

    @tf.custom_gradient
    def project(shifted):
        delta = _solve_threshold(shifted, tf.stop_gradient(shifted_above), tf.where(solvable, num_included, k + 1), k)
        z = shifted - delta
        y = tf.sigmoid(z)
        # y (1 - y), without cancellation on either side.
        small = tf.sigmoid(-tf.abs(z))
        curvature = small * (1.0 - small)
        y = tf.where(solvable, y, tf.where(num_included < k, tf.constant(np.nan, y.dtype), tf.cast(included, y.dtype)))
        y = tf.where(num_included > 0, y, 0.0)

        def vjp(upstream):
            # Implicit differentiation of sum(sigmoid(x - tau)) = k:
            # with d = y (1 - y), dy/dx = diag(d) - d d^T / sum(d). Rows with
            # no interior solution have a locally constant answer (or NaN).
            weighted_mean = safe_divide(
                tf.reduce_sum(upstream * curvature, axis=-1, keepdims=True),
                tf.reduce_sum(curvature, axis=-1, keepdims=True),
            )
            gradient = tf.where(solvable, curvature * (upstream - weighted_mean), 0.0)
            infeasible = tf.logical_and(num_included > 0, num_included < k)
            return tf.where(infeasible, tf.constant(np.nan, gradient.dtype), gradient)

        return y, vjp

    return project(shifted)


def _residual_and_slope(shifted: tf.Tensor, delta: tf.Tensor, k: float) -> tuple[tf.Tensor, tf.Tensor]:
    """sum(sigmoid(shifted - delta)) - k and minus its derivative in delta, per row.

    Written as (#positive z - k) + sum_{z <= 0} sigmoid(z) - sum_{z > 0} sigmoid(-z)
    so that saturated entries, whose 1 - y is below float resolution, still
    count: the residual is accurate relative to its own size.
    """
    z = shifted - delta
    positive = z > 0
    small = tf.sigmoid(-tf.abs(z))
    count = tf.reduce_sum(tf.cast(positive, z.dtype), axis=-1, keepdims=True)
    residual = (count - k) + tf.reduce_sum(tf.where(positive, -small, small), axis=-1, keepdims=True)
    slope = tf.reduce_sum(small * (1.0 - small), axis=-1, keepdims=True)
    return residual, slope


def _solve_threshold(shifted: tf.Tensor, shifted_above: tf.Tensor, num_included: tf.Tensor, k: float) -> tf.Tensor:
    """The root delta of h(delta) = sum(sigmoid(shifted - delta)) - k, per row ([batch, 1]).

    `shifted` is x minus its ceil(k)-th largest included entry (-inf where
    excluded) and `shifted_above` its (floor(k) + 1)-th largest. With
    x_(m) the m-th largest and N included entries, h + k >= m sigmoid(x_(m) - tau) and
    h + k <= (m - 1) + (N - m + 1) sigmoid(x_(m) - tau); taking m = ceil(k)
    and m = floor(k) + 1 brackets the root. h is decreasing: a Newton step
    that leaves the bracket or fails to halve the previous step is replaced
    by bisection (as in "rtsafe"), so the bracket shrinks geometrically and
    the iteration always converges. Rows stop when the step falls below
    float64 resolution of delta (or h is exactly 0). The loop has a fixed
    maximum length and static shapes, so it compiles under XLA; it stops
    early once every row has converged.
    """
    below, above = math.ceil(k), math.floor(k) + 1
    low = shifted_above - math.log(k / (above - k))
    high = tf.math.log((num_included - k) / (k - below + 1))

    def not_done(iteration, delta, low, high, last_step, converged):
        return tf.logical_and(iteration < MAX_ITERATIONS, tf.logical_not(tf.reduce_all(converged)))

    def step(iteration, delta, low, high, last_step, converged):
        residual, slope = _residual_and_slope(shifted, delta, k)
        low = tf.where(residual > 0, delta, low)
        high = tf.where(residual > 0, high, delta)
        newton_step = safe_divide(residual, slope)
        newton = delta + newton_step
        resolution = 4.0 * _EPS * tf.maximum(tf.abs(delta), 1.0)
        # A Newton step below the resolution of delta is the last one (its
        # rounding could put it on either side of the bracket's end).
        final_newton = tf.logical_and(slope > 0, tf.abs(newton_step) <= resolution)
        take_newton = tf.logical_or(
            final_newton,
            tf.logical_and(
                tf.logical_and(slope > 0, tf.logical_and(newton > low, newton < high)),
                tf.abs(newton_step) <= 0.5 * last_step,
            ),
        )
        next_delta = tf.where(take_newton, newton, 0.5 * (low + high))
        done = tf.logical_or(
            tf.logical_or(tf.equal(residual, 0.0), final_newton),
            tf.logical_or(tf.abs(next_delta - delta) <= resolution, high - low <= resolution),
        )
        # Converged rows keep their delta: later steps could only add rounding noise.
        next_delta = tf.where(converged | tf.equal(residual, 0.0), delta, next_delta)
        last_step = tf.where(converged, last_step, tf.abs(next_delta - delta))
        return iteration + 1, next_delta, low, high, last_step, tf.logical_or(converged, done)

    start = 0.5 * (low + high)
    _, delta, _, _, _, _ = tf.while_loop(
        not_done,
        step,
        (tf.constant(0), start, low, high, high - low, tf.zeros_like(start, dtype=tf.bool)),
    )
    return delta


_RUNNER = ProjectionRunner(_lml_rows)


def lml(x, k: float, axis: int = -1, mask=None) -> tf.Tensor:
    """The limited multi-label projection (Amos, Koltun & Kolter, 2019).

    Solves `argmin_y -x^T y - H_b(y)  s.t.  sum(y) = k` along `axis`, H_b the
    binary entropy; y lies in [0, 1]^n. The solution is y = sigmoid(x - tau),
    tau the root of sum(sigmoid(x - tau)) = k, found by bracketed Newton with
    bisection fallback (at most 100 steps, stopping once every slice has
    converged to float64 resolution): O(n) per step. tau is carried as an
    entry of x plus an offset, so the result is exact at any finite
    magnitude of `x`, small outputs included.

    The gradient is exact, by implicit differentiation of the optimality
    condition: with d = y (1 - y), dy/dx = diag(d) - d d^T / sum(d). Where
    every d underflows (|x| in the thousands with exactly k coordinates far
    above the rest) the gradient is returned as zero.

    Excluded entries (`mask` False, or `x` = -inf) get exactly 0 and zero
    gradients; the included ones solve the problem restricted to them. A
    slice with a NaN or +inf among its included entries is NaN. With N
    included entries in a slice: N = 0 gives zeros; 0 < N < k has no
    feasible point and gives NaN (NaN gradient); N = k has the one feasible
    point y = 1 on the included entries (zero gradient).

    Args:
        x: floating tensor of any rank >= 1 (float32 is computed in float64).
        k: python number strictly between 0 and n = x.shape[axis]; it need
            not be an integer.
        axis: the axis to project along; its size must be known statically.
        mask: optional boolean tensor broadcastable to `x`; False excludes
            an entry.

    Returns:
        A tensor of the shape and dtype of `x`, in [0, 1], summing to k along
        `axis` (except for the slices above).

    Raises:
        ValueError: `k` out of range, or a bad `axis`.
    """
    x, mask, axis = prepare_input(x, mask, axis)
    n = x.shape[axis]
    if n is None:
        raise ValueError(f"`x` must have a known size along `axis`. Received: x.shape={x.shape}, axis={axis}")
    return _RUNNER(x, [], mask, axis, k=check_k(k, n))

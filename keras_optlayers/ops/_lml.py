"""The limited multi-label (LML) projection."""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf

from keras_optlayers.core.checks import check_k
from keras_optlayers.ops._projection_utils import ProjectionRunner, prepare_input, safe_divide

# Safeguarded Newton converges in a handful of steps once inside its basin; the
# cap leaves room for the bisection steps that get it there (100 halvings shrink
# any bracket below float64 resolution of nu for |x| up to about 1e14).
MAX_ITERATIONS = 100


def _lml_rows(x: tf.Tensor, k: float) -> tf.Tensor:
    """LML projection of each row of a float64 [batch, n] tensor."""

    @tf.custom_gradient
    def project(x):
        nu = _solve_shift(x, k)
        z = x + nu
        y = tf.sigmoid(z)
        # y (1 - y) without cancellation when y is near 1.
        curvature = y * tf.sigmoid(-z)

        def vjp(upstream):
            # Implicit differentiation of sum(sigmoid(x + nu)) = k:
            # with d = y (1 - y), dy/dx = diag(d) - d d^T / sum(d).
            weighted_mean = safe_divide(
                tf.reduce_sum(upstream * curvature, axis=-1, keepdims=True),
                tf.reduce_sum(curvature, axis=-1, keepdims=True),
            )
            return curvature * (upstream - weighted_mean)

        return y, vjp

    return project(x)


def _solve_shift(x: tf.Tensor, k: float) -> tf.Tensor:
    """The root nu of h(nu) = sum(sigmoid(x + nu)) - k, per row ([batch, 1]).

    With x_(m) the m-th largest entry, h + k >= m sigmoid(x_(m) + nu) and
    h + k <= (m - 1) + (n - m + 1) sigmoid(x_(m) + nu); taking m = floor(k) + 1
    and m = ceil(k) brackets the root within about x_(ceil k) - x_(floor k + 1)
    plus log(n). h is increasing: Newton steps that leave the bracket are
    replaced by bisection, and the bracket shrinks every step, so the
    iteration always converges. The loop has a fixed maximum length and
    static shapes, so it compiles under XLA; it stops early once every row
    has converged.
    """
    n = tf.cast(tf.shape(x)[-1], x.dtype)
    below, above = math.ceil(k), math.floor(k) + 1
    largest = tf.math.top_k(x, k=above).values
    low = tf.math.log((k - below + 1) / (n - k)) - largest[:, below - 1 : below]
    high = math.log(k / (above - k)) - largest[:, above - 1 : above]
    # Resolution of h: the rounding of a sum of n numbers below 1.
    tolerance = 4.0 * n * np.finfo(np.float64).eps

    def not_done(iteration, nu, low, high, converged):
        return tf.logical_and(iteration < MAX_ITERATIONS, tf.logical_not(tf.reduce_all(converged)))

    def step(iteration, nu, low, high, converged):
        z = x + nu
        y = tf.sigmoid(z)
        residual = tf.reduce_sum(y, axis=-1, keepdims=True) - k
        slope = tf.reduce_sum(y * tf.sigmoid(-z), axis=-1, keepdims=True)
        high = tf.where(residual > 0, nu, high)
        low = tf.where(residual > 0, low, nu)
        newton = nu - safe_divide(residual, slope)
        inside = tf.logical_and(slope > 0, tf.logical_and(newton > low, newton < high))
        next_nu = tf.where(inside, newton, 0.5 * (low + high))
        # Converged rows keep their nu: later steps could only add rounding noise.
        converged = tf.logical_or(
            converged,
            tf.logical_or(tf.abs(residual) <= tolerance, high - low <= 4.0 * np.finfo(np.float64).eps * tf.abs(nu)),
        )
        next_nu = tf.where(converged, nu, next_nu)
        return iteration + 1, next_nu, low, high, converged

    start = 0.5 * (low + high)
    _, nu, _, _, _ = tf.while_loop(
        not_done,
        step,
        (tf.constant(0), start, low, high, tf.zeros_like(start, dtype=tf.bool)),
    )
    return nu


# One runner per distinct k, so the compiled graph treats k as a constant.
@functools.lru_cache(maxsize=None)
def _runner_for(k: float) -> ProjectionRunner:
    return ProjectionRunner(functools.partial(_lml_rows, k=k))


def lml(x, k: float, axis: int = -1) -> tf.Tensor:
    """The limited multi-label projection (Amos, Koltun & Kolter, 2019).

    Solves `argmin_y -x^T y - H_b(y)  s.t.  sum(y) = k` along `axis`, H_b the
    binary entropy; y lies strictly inside [0, 1]^n. The solution is
    y = sigmoid(x + nu), nu the root of sum(sigmoid(x + nu)) = k, found by
    bracketed Newton with bisection fallback (at most 100 steps, stopping
    once every slice has converged to float64 resolution): O(n) per step.

    The gradient is exact, by implicit differentiation of the optimality
    condition: with d = y (1 - y), dy/dx = diag(d) - d d^T / sum(d). Where
    every d underflows (|x| in the thousands with exactly k coordinates far
    above the rest) the gradient is returned as zero.

    Args:
        x: floating tensor of any rank >= 1 (float32 is computed in float64).
        k: python number strictly between 0 and n = x.shape[axis]; it need
            not be an integer.
        axis: the axis to project along; its size must be known statically.

    Returns:
        A tensor of the shape and dtype of `x`, in (0, 1), summing to k along
        `axis`.

    Raises:
        ValueError: `k` out of range, NaN or Inf in `x` (eagerly; inside a
            graph a `tf.debugging` assertion with the same text, skipped by
            XLA), or a bad `axis`.
    """
    x, axis = prepare_input(x, axis)
    n = x.shape[axis]
    if n is None:
        raise ValueError(f"`x` must have a known size along `axis`. Received: x.shape={x.shape}, axis={axis}")
    return _runner_for(check_k(k, n))([x], axis)

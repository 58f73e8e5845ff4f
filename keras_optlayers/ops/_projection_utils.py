"""Shared plumbing for the fast projection ops: axis handling, dtypes, input checks.

Every projection op is written once, for a float64 tensor of shape [batch, n]
along its last axis (a "row kernel"). `ProjectionRunner` moves the requested axis
last, flattens the leading dimensions, computes in float64 (so float32 callers
get float32-rounded exact answers) and restores the caller's layout and dtype.

Input checks follow one rule: eagerly they raise `ValueError` before any work;
inside a graph they become `tf.debugging` assertions carrying the same text
(raised as `tf.errors.InvalidArgumentError` when the graph runs). XLA drops
assertion ops, so under `jit_compile=True` the checks do not run.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from keras_optlayers.core import checks

# Floating dtypes below float64 are upcast for the computation.
COMPUTE_DTYPE = tf.float64


def as_float_tensor(value) -> tf.Tensor:
    """Converts `value` to a floating tensor (float32 when it is not floating)."""
    tensor = tf.convert_to_tensor(value)
    if not tensor.dtype.is_floating:
        tensor = tf.cast(tensor, tf.float32)
    return tensor


def check_all_finite(tensors: dict[str, tf.Tensor]) -> list[tf.Tensor]:
    """Rejects NaN and Inf; returns the checked tensors (with graph assertions attached)."""
    checked = []
    for name, tensor in tensors.items():
        if tf.executing_eagerly():
            checks.check_finite_values(name, tensor.numpy())
            checked.append(tensor)
        else:
            checked.append(tf.debugging.assert_all_finite(tensor, checks.non_finite_values_message(name)))
    return checked


def check_upper_bounds(upper: tf.Tensor, axis: int, tolerance: float) -> tf.Tensor:
    """Checks that `upper` is nonnegative and sums to at least 1 along `axis`.

    `tolerance` absorbs rounding, e.g. u = 1/3 three times in float32.
    """
    sums = tf.reduce_sum(upper, axis=axis)
    if tf.executing_eagerly():
        checks.check_upper_signs(upper.numpy())
        checks.check_upper_sums(sums.numpy(), tolerance)
        return upper
    one = tf.constant(1.0 - tolerance, upper.dtype)
    assertions = [
        tf.debugging.assert_non_negative(upper, message=checks.UPPER_SIGN_MESSAGE),
        tf.debugging.assert_greater_equal(sums, one, message=checks.UPPER_SUM_MESSAGE),
    ]
    with tf.control_dependencies(assertions):
        return tf.identity(upper)


def sum_tolerance(dtype: tf.DType, n: int | None) -> float:
    """Rounding slack for a sum of n numbers of `dtype`."""
    return float((n or 1) * np.finfo(dtype.as_numpy_dtype).eps)


def prepare_input(x, axis: int) -> tuple[tf.Tensor, int]:
    """Converts and checks the input of an op without bounds."""
    x = as_float_tensor(x)
    axis = checks.canonical_axis(axis, x.shape.rank)
    (x,) = check_all_finite({"x": x})
    return x, axis


def prepare_bounded_input(x, upper, axis: int) -> tuple[tf.Tensor, tf.Tensor, int]:
    """Converts and checks `x` and its per-element upper bounds.

    `upper` is a python number (checked as n * upper >= 1) or a tensor
    broadcastable to `x` (checked per slice: nonnegative, sums to >= 1).
    """
    x = as_float_tensor(x)
    axis = checks.canonical_axis(axis, x.shape.rank)
    n = x.shape[axis]
    if isinstance(upper, (int, float, np.floating, np.integer)):
        checks.check_float_upper(float(upper), n)
        (x,) = check_all_finite({"x": x})
        return x, tf.fill(tf.shape(x), tf.constant(upper, x.dtype)), axis
    upper = tf.cast(as_float_tensor(upper), x.dtype)
    x, upper = check_all_finite({"x": x, "upper": upper})
    upper = tf.broadcast_to(upper, tf.shape(x))
    upper = check_upper_bounds(upper, axis, sum_tolerance(x.dtype, n))
    return x, upper, axis


def _move_axis_last(x: tf.Tensor, axis: int) -> tf.Tensor:
    rank = x.shape.rank
    if axis == rank - 1:
        return x
    perm = [d for d in range(rank) if d != axis] + [axis]
    return tf.transpose(x, perm)


def _move_last_axis_back(y: tf.Tensor, axis: int) -> tf.Tensor:
    rank = y.shape.rank
    if axis == rank - 1:
        return y
    perm = list(range(axis)) + [rank - 1] + list(range(axis, rank - 1))
    return tf.transpose(y, perm)


def _run_along_axis(row_kernel: Callable[..., tf.Tensor], *tensors: tf.Tensor, axis: int) -> tf.Tensor:
    """Applies `row_kernel` (float64, [batch, n] in and out) along `axis`."""
    out_dtype = tensors[0].dtype
    moved = [_move_axis_last(t, axis) for t in tensors]
    shape = tf.shape(moved[0])
    rows = [tf.reshape(tf.cast(t, COMPUTE_DTYPE), tf.stack([-1, shape[-1]])) for t in moved]
    y = row_kernel(*rows)
    y = tf.cast(tf.reshape(y, shape), out_dtype)
    return _move_last_axis_back(y, axis)


class ProjectionRunner:
    """Runs a row kernel along an axis; eager callers get a compiled graph.

    Eager TensorFlow pays for every op, so an eager call goes through a
    `tf.function`, traced once per axis, input ranks and dtypes (all sizes
    left dynamic, so new batch sizes do not retrace); a call that is already
    inside a graph (or XLA) inlines the ops.
    """

    def __init__(self, row_kernel: Callable[..., tf.Tensor]):
        self._graph_fn = functools.partial(_run_along_axis, row_kernel)
        self._compiled: dict[tuple, Callable[..., tf.Tensor]] = {}

    def __call__(self, tensors: Sequence[tf.Tensor], axis: int) -> tf.Tensor:
        if not tf.executing_eagerly():
            return self._graph_fn(*tensors, axis=axis)
        key = (axis, *((t.shape.rank, t.dtype) for t in tensors))
        if key not in self._compiled:
            signature = [tf.TensorSpec([None] * t.shape.rank, t.dtype) for t in tensors]
            self._compiled[key] = tf.function(
                functools.partial(self._graph_fn, axis=axis), input_signature=signature
            )
        return self._compiled[key](*tensors)


def safe_divide(numerator: tf.Tensor, denominator: tf.Tensor) -> tf.Tensor:
    """numerator / denominator, and 0 where the denominator is 0."""
    nonzero = tf.not_equal(denominator, 0)
    return tf.where(nonzero, numerator / tf.where(nonzero, denominator, tf.ones_like(denominator)), 0)

"""Shared plumbing for the fast projection ops: axes, masks, dtypes, bound checks.

Every projection op is written once as a "row kernel": a function of float64
tensors of shape [batch, n], projecting along the last axis,

    row_kernel(x, included, *per_entry, **static) -> y

where `included` (bool) marks the entries that take part, `x` is 0 at the
others, and `per_entry` are tensors shaped like `x` (the upper bounds).
`ProjectionRunner` moves the requested axis last, broadcasts the mask and the
per-entry tensors to `x`, flattens the leading dimensions, computes in float64
(so float32 callers get float32-rounded exact answers) and restores the
caller's layout and dtype.

Conventions shared by every op (those of `keras.layers.Softmax` and of
tensorflow-addons' sparsemax):

- An entry is excluded where `mask` is False or `x` is -inf: its output is
  exactly 0, its gradient exactly 0, and the rest of the slice solves the
  problem restricted to the included entries. A NaN or +inf in an excluded
  entry is ignored.
- A slice whose included entries hold a NaN or +inf gives NaN on the whole
  slice, and a NaN gradient with respect to its included `x` entries
  (softmax also gives NaN for +inf).
- A slice with no included entry gives zeros, with zero gradient.
- Nothing copies `x` to the host: bad values of `x` propagate as NaN.

Call-time upper bounds are checked inside the compiled function, by
`tf.debugging` assertions carrying the texts of `keras_optlayers.core.checks`:
a graph raises `tf.errors.InvalidArgumentError`; an eager call turns that into
the `ValueError` of the same checks (the bounds go to the host only on that
error path). XLA drops assertion ops: under `jit_compile=True` a slice with
bad bounds comes out as NaN instead.
"""

from __future__ import annotations

import collections
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from keras_optlayers.compiled_function import CompiledFunction
from keras_optlayers.core import checks

# Floating dtypes below float64 are upcast for the computation.
COMPUTE_DTYPE = tf.float64
# Compiled eager functions kept per runner; one per (axis, static arguments,
# input ranks and dtypes, mask given or not) seen recently.
COMPILED_CACHE_SIZE = 32


def as_float_tensor(value) -> tf.Tensor:
    """Converts `value` to a floating tensor (float32 when it is not floating)."""
    tensor = tf.convert_to_tensor(value)
    if not tensor.dtype.is_floating:
        tensor = tf.cast(tensor, tf.float32)
    return tensor


def as_mask(mask) -> tf.Tensor | None:
    """None, or `mask` as a boolean tensor (nonzero numbers count as True)."""
    if mask is None:
        return None
    mask = tf.convert_to_tensor(mask)
    return mask if mask.dtype == tf.bool else tf.not_equal(mask, 0)


def caller_epsilon(dtype: tf.DType) -> float:
    """Machine epsilon of the caller's dtype: the rounding the bound checks forgive."""
    return float(np.finfo(dtype.as_numpy_dtype).eps)


def check_broadcastable(name: str, tensor: tf.Tensor, x: tf.Tensor) -> None:
    """Raises ValueError unless `tensor` broadcasts to the shape of `x` (as far as known statically)."""
    if tensor.shape.rank is None or x.shape.rank is None:
        return
    try:
        broadcast = tf.broadcast_static_shape(tensor.shape, x.shape)
        fits = tensor.shape.rank <= x.shape.rank and broadcast.is_compatible_with(x.shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"Expected `{name}` broadcastable to the shape of `x`, {x.shape}. Received: {name}.shape={tensor.shape}"
        )


def prepare_input(x, mask, axis: int) -> tuple[tf.Tensor, tf.Tensor | None, int]:
    """Converts `x` and `mask` and checks `axis` and shapes (no data checks on `x`)."""
    x = as_float_tensor(x)
    axis = checks.canonical_axis(axis, x.shape.rank)
    mask = as_mask(mask)
    if mask is not None:
        check_broadcastable("mask", mask, x)
    return x, mask, axis


def prepare_upper(x: tf.Tensor, upper, axis: int) -> tuple[tf.Tensor, bool]:
    """`upper` as a tensor of x's dtype, and whether its values need checking.

    A python number is checked here, once (n * upper >= 1), and becomes a
    scalar tensor; a tensor is checked inside the compiled function.
    """
    if isinstance(upper, (int, float, np.floating, np.integer)) and not isinstance(upper, bool):
        checks.check_float_upper(float(upper), x.shape[axis])
        return tf.constant(upper, x.dtype), False
    upper = tf.cast(as_float_tensor(upper), x.dtype)
    check_broadcastable("upper", upper, x)
    return upper, True


def assert_valid_upper(upper: tf.Tensor, epsilon: float) -> tf.Tensor:
    """Graph assertions on call-time bounds rows [batch, n]: finite, nonnegative, sums >= 1.

    The sums may fall short of 1 by n * epsilon (rounding, e.g. u = 1/3 three
    times in float32). Returns `upper` with the assertions attached.
    """
    n = tf.cast(tf.shape(upper)[-1], upper.dtype)
    assertions = [
        tf.debugging.assert_all_finite(upper, checks.non_finite_values_message("upper")),
        tf.debugging.assert_non_negative(upper, message=checks.UPPER_SIGN_MESSAGE),
        tf.debugging.assert_greater_equal(
            tf.reduce_sum(upper, axis=-1), 1.0 - n * epsilon, message=checks.UPPER_SUM_MESSAGE
        ),
    ]
    with tf.control_dependencies(assertions):
        return tf.identity(upper)


def infeasible_bounds(included: tf.Tensor, upper: tf.Tensor, epsilon: float) -> tf.Tensor:
    """Rows [batch, 1] with included entries whose bounds leave no feasible point.

    Bad bounds (negative, NaN) or included bounds summing below 1 - n * epsilon.
    Rows with no included entry are not infeasible: they give zeros.
    """
    n = tf.cast(tf.shape(upper)[-1], upper.dtype)
    included_upper = tf.where(included, upper, 0.0)
    valid = tf.logical_and(
        tf.reduce_all(tf.logical_or(tf.logical_not(included), upper >= 0), axis=-1, keepdims=True),
        tf.reduce_sum(included_upper, axis=-1, keepdims=True) >= 1.0 - n * epsilon,
    )
    return tf.logical_and(tf.reduce_any(included, axis=-1, keepdims=True), tf.logical_not(valid))


def capped_simplex_anchor(x: tf.Tensor, included: tf.Tensor, upper: tf.Tensor) -> tf.Tensor:
    """An included entry of each row near the threshold of the capped simplex ([batch, 1]).

    With the included entries sorted by x (descending), the anchor is the
    first x_(j) whose bounds u_(1) + ... + u_(j) reach 1 (the last included
    entry when they never do). The entries above it hold mass below 1 and the
    first j hold at least 1, which pins the threshold near x_(j) for both
    sparsemax-type maps (tau in [x_(j) - 1, x_(j)] when u <= 1) and
    softmax-type ones (tau >= x_(j)). Computing x - anchor keeps the entries
    that can be nonzero exact whatever the magnitude of x. Rows with no
    included entry get 0.
    """
    order = tf.argsort(tf.where(included, x, -np.inf), axis=-1, direction="DESCENDING", stable=True)
    bounds_mass = tf.cumsum(tf.gather(tf.where(included, upper, 0.0), order, batch_dims=1), axis=-1)
    num_included = tf.reduce_sum(tf.cast(included, tf.int32), axis=-1, keepdims=True)
    below_one = tf.reduce_sum(tf.cast(bounds_mass < 1.0, tf.int32), axis=-1, keepdims=True)
    position = tf.maximum(tf.minimum(below_one, num_included - 1), 0)
    anchor = tf.gather(tf.gather(x, order, batch_dims=1), position, batch_dims=1)
    return tf.stop_gradient(tf.where(num_included > 0, anchor, 0.0))


@tf.custom_gradient
def _included_values(x: tf.Tensor, included: tf.Tensor, poisoned: tf.Tensor):
    """x where included, else 0; the gradient is NaN on poisoned rows, 0 off `included`."""

    def vjp(upstream):
        gradient = tf.where(included, upstream, 0.0)
        return tf.where(poisoned, tf.constant(np.nan, x.dtype), gradient), None, None

    return tf.where(included, x, 0.0), vjp


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


def _run_along_axis(
    row_kernel: Callable[..., tf.Tensor],
    x: tf.Tensor,
    per_entry: Sequence[tf.Tensor],
    mask: tf.Tensor | None,
    axis: int,
    static: dict,
) -> tf.Tensor:
    """Applies `row_kernel` along `axis`, with the shared exclusion and NaN rules."""
    x_shape = tf.shape(x)
    moved_shape = tf.shape(_move_axis_last(x, axis))
    row_shape = tf.stack([-1, moved_shape[-1]])

    def as_rows(tensor: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
        if tensor is not x:
            tensor = tf.broadcast_to(tensor, x_shape)
        return tf.reshape(tf.cast(_move_axis_last(tensor, axis), dtype), row_shape)

    x_rows = as_rows(x, COMPUTE_DTYPE)
    finite = tf.math.is_finite(x_rows)
    # NaN and +inf poison their row; -inf, like a False mask, excludes its entry.
    bad = tf.logical_and(tf.logical_not(finite), tf.not_equal(x_rows, -np.inf))
    included = finite
    if mask is not None:
        considered = as_rows(mask, tf.bool)
        included = tf.logical_and(included, considered)
        bad = tf.logical_and(bad, considered)
    poisoned = tf.reduce_any(bad, axis=-1, keepdims=True)
    x_rows = _included_values(x_rows, included, poisoned)
    y = row_kernel(x_rows, included, *(as_rows(t, COMPUTE_DTYPE) for t in per_entry), **static)
    y = tf.where(poisoned, tf.constant(np.nan, COMPUTE_DTYPE), y)
    y = tf.cast(tf.reshape(y, moved_shape), x.dtype)
    return _move_last_axis_back(y, axis)


class ProjectionRunner:
    """Runs a row kernel along an axis; eager callers get a compiled graph.

    Eager TensorFlow pays for every op, so an eager call goes through a
    compiled graph (a `CompiledFunction`, called flat). The compiled
    functions sit in a small LRU cache (`COMPILED_CACHE_SIZE` entries) keyed
    by the axis, the kernel's static arguments, the ranks and dtypes of the
    input tensors and whether a mask is given; sizes stay dynamic, so a new
    batch size does not retrace. A call
    that is already inside a graph (or XLA) inlines the ops.
    """

    def __init__(self, row_kernel: Callable[..., tf.Tensor]):
        self._row_kernel = row_kernel
        self._compiled: collections.OrderedDict[tuple, Callable[..., tf.Tensor]] = collections.OrderedDict()

    def __call__(
        self, x: tf.Tensor, per_entry: Sequence[tf.Tensor], mask: tf.Tensor | None, axis: int, **static
    ) -> tf.Tensor:
        """Projects `x` along `axis`; `per_entry` and `mask` broadcast to `x`."""
        if not tf.executing_eagerly():
            return _run_along_axis(self._row_kernel, x, per_entry, mask, axis, static)
        tensors = [x, *per_entry] + ([] if mask is None else [mask])
        key = (axis, tuple(sorted(static.items())), mask is not None, *((t.shape.rank, t.dtype) for t in tensors))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compile(len(per_entry), mask is not None, axis, static, tensors)
            self._compiled[key] = compiled
            if len(self._compiled) > COMPILED_CACHE_SIZE:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        return compiled(*tensors)

    def _compile(self, num_per_entry: int, has_mask: bool, axis: int, static: dict, tensors) -> Callable:
        def graph_function(x, *rest):
            mask = rest[num_per_entry] if has_mask else None
            return _run_along_axis(self._row_kernel, x, rest[:num_per_entry], mask, axis, static)

        signature = [tf.TensorSpec([None] * t.shape.rank, t.dtype) for t in tensors]
        return CompiledFunction(graph_function, input_signature=signature)


def project_with_bounds(runner: ProjectionRunner, x, upper, mask, axis: int) -> tf.Tensor:
    """Runs a capped-simplex kernel `(x, included, upper, *, epsilon, check_upper)`.

    Eagerly, a failed bound assertion is re-raised as the `ValueError` of
    `keras_optlayers.core.checks`.
    """
    x, mask, axis = prepare_input(x, mask, axis)
    upper, check_upper = prepare_upper(x, upper, axis)
    static = {"epsilon": caller_epsilon(x.dtype), "check_upper": check_upper}
    if not (check_upper and tf.executing_eagerly()):
        return runner(x, [upper], mask, axis, **static)
    try:
        return runner(x, [upper], mask, axis, **static)
    except tf.errors.InvalidArgumentError:
        _raise_upper_value_error(x, upper, axis)
        raise


def _raise_upper_value_error(x: tf.Tensor, upper: tf.Tensor, axis: int) -> None:
    """The checks' ValueError for bounds that failed a graph assertion (error path only)."""
    values = np.moveaxis(np.broadcast_to(upper.numpy(), x.shape), axis, -1)
    checks.check_finite_values("upper", values)
    checks.check_upper_values(values, tolerance=x.shape[axis] * caller_epsilon(x.dtype))


def safe_divide(numerator: tf.Tensor, denominator: tf.Tensor) -> tf.Tensor:
    """numerator / denominator, and 0 where the denominator is 0."""
    nonzero = tf.not_equal(denominator, 0)
    return tf.where(nonzero, numerator / tf.where(nonzero, denominator, tf.ones_like(denominator)), 0)

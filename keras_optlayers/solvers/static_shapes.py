"""Sizes as the graph being traced knows them, so that shapes built from them stay static."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def dimension(tensor: tf.Tensor, axis: int = 0) -> int | tf.Tensor:
    """The size of `tensor` along `axis`: a Python int where the trace knows it, else a scalar tensor.

    Shapes built from `tf.shape(tensor)[axis]` are unknown to the trace even
    when the input's shape is static, and so is everything computed from
    them. Built from this, a batch-1 solve keeps its static batch size down
    to the interior-point loop, which then iterates the whole batch without
    the shrinking batch's gathers (`shrinking_batch.is_small_batch`), and
    Grappler folds the shape arithmetic.
    """
    static = tensor.shape[axis]
    return static if static is not None else tf.shape(tensor)[axis]


def shared_batch_size(batched: Sequence[tf.Tensor]) -> int | tf.Tensor:
    """The batch size of tensors that share one (checked elsewhere): static if any of them knows it; 1 for none."""
    if not batched:
        return 1
    return dimension(next((t for t in batched if t.shape[0] is not None), batched[0]))

"""The batch size as the graph being traced knows it."""

from __future__ import annotations

import tensorflow as tf

from keras_optlayers.solvers.shrinking_batch import is_small


def batch_size(tensor: tf.Tensor) -> int | tf.Tensor:
    """The leading dimension of `tensor`: a Python int where the trace knows it, else a scalar tensor.

    Shapes built from `tf.shape(tensor)[0]` are unknown to the trace even
    when the input's batch size is static, and so is everything computed
    from them. Built from this, a batch-1 solve keeps its static shape down
    to the interior-point loop, which then runs without the shrinking-batch
    machinery (`shrinking_batch`), and Grappler folds the shape arithmetic.
    """
    static = tensor.shape[0]
    return static if static is not None else tf.shape(tensor)[0]


def batch_spec(tensor: tf.Tensor, batched: bool) -> tf.TensorSpec:
    """`tensor`'s spec for a compiled solve: a batched tensor's batch size left free, unless it is small.

    A free batch size lets one trace serve every batch; a small batch
    (`shrinking_batch.is_small`) gets a trace of its own, static down to the
    loops (`batch_size`).
    """
    if batched and not is_small(tensor):
        return tf.TensorSpec([None, *tensor.shape[1:]], tensor.dtype)
    return tf.TensorSpec(tensor.shape, tensor.dtype)

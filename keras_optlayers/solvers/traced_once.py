"""`traced_once`: one graph function for a computation a graph calls more than once.

A solve that runs its loop twice (a first stop, then the examples that must
go on) would otherwise hold the loop's graph twice: twice the Python tracing
and twice the graph optimization at the first call (measured on the SOCP
solve: the ellipsoid projection's first call, forward and backward inside a
`tf.function`, took twice as long as with one loop).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from keras_optlayers.solvers.shrinking_batch import is_small_batch
from keras_optlayers.xla_context import in_xla_context


def _spec(value: Any) -> Any:
    """`value`'s spec with its batch size free, except for a scalar or a small batch (`is_small_batch`)."""
    if value is None:
        return None
    if not value.shape.rank or is_small_batch(value.shape[0]):
        return tf.TensorSpec(value.shape, value.dtype)
    return tf.TensorSpec(tf.TensorShape([None]).concatenate(value.shape[1:]), value.dtype)


def traced_once(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` traced once, as a graph function, for every call whose arguments differ only in batch size.

    Inside a graph, each call is one call op to the same function, traced
    for a free batch size and kept out of line (TensorFlow's `_noinline`),
    so its body is traced and optimized once however often it is called. A
    batch known to be small (`shrinking_batch.is_small_batch`) is traced for
    its own size instead, static down to the loops; the solvers' calls on
    it all see the whole batch, so they still share one trace.
    Under XLA (`xla_context.in_xla_context`) the calls are inlined as usual:
    XLA compiles the whole graph anyway. Outside a graph, `function` runs as
    it is.

    Limits: the computation is not differentiated through (its arguments
    are cut from any gradient tape: the solvers differentiate their
    solutions implicitly); the arguments are nests of tensors whose first
    dimension is the batch (scalars allowed) and None leaves.

    Args:
        function: a function of such nests, written with TF control flow.
    """
    graph_function = tf.function(function, autograph=False, experimental_attributes={"_noinline": True})

    def call(*args: Any) -> Any:
        # Inside a graph, a tape watching the arguments would make the call build the function's gradient.
        args = tf.nest.map_structure(lambda t: None if t is None else tf.stop_gradient(t), args)
        if tf.executing_eagerly() or in_xla_context():
            return function(*args)
        specs = tf.nest.map_structure(_spec, args)
        return graph_function.get_concrete_function(*specs)(*args)

    return call

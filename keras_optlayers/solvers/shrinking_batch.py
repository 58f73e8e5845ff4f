"""Batched iterations that drop their finished examples from the working batch.

A batched interior-point loop runs until its slowest example has a status,
and every iteration costs the same whether an example is running or frozen.
The examples of one batch finish over several iterations (measured at batch
128: OptNet QPs from 5 to 12, 7.25 on average; ellipsoid projections from 10
to 16), so a loop over the whole batch spends a third of its work on
examples already finished. Here, once at most half of the working batch is
still running, the finished examples' iterates are written to the results
and the running ones, with their problem data, are gathered into a smaller
working batch; the batch shrinks at most log₂(B) times, and each iteration
costs less as it shrinks (about three times less at 8 examples than at 128
for the QP loop on two CPU cores). Below `SMALLEST_SHRINKING_BATCH` examples
an iteration costs about the same whatever the batch size (the ops' own
overhead dominates), so smaller batches are not shrunk.

Each example's iterates are those of the whole-batch loop up to rounding:
the step treats every example apart, so which others share its batch changes
nothing but the batched kernels' rounding (measured: gradients of the
ellipsoid projection agree to 5e-14).

Limits: the working batch has a dynamic size, which XLA cannot compile; under
`tf.function(jit_compile=True)` (`xla_context.in_xla_context`), and for
batches known to be small, the whole batch iterates, as in a plain
`tf.while_loop`. The last few examples keep a working batch of up to
`SMALLEST_SHRINKING_BATCH`.

`recompute_rows` applies the same idea to a computation after a loop: the
examples that need it (a second polish, iterations beyond an early stop)
are gathered, computed and written back, so that a few of a large batch
cost about as little as a small batch; a batch known to be small is
computed whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from keras_optlayers.xla_context import in_xla_context

SMALLEST_SHRINKING_BATCH = 8


def is_small_batch(size: int | tf.Tensor | None) -> bool:
    """Whether a batch `size` (static, a tensor, or None when unknown) is known at trace time to be at most
    `SMALLEST_SHRINKING_BATCH`.

    Such a batch iterates whole, as under XLA, and keeps its static size:
    the gathers and scatters that would shrink it cost more ops than they
    save (a batch-1 call's time is its op count).
    """
    return isinstance(size, int) and size <= SMALLEST_SHRINKING_BATCH


def _batch_invariant(tensor: tf.Tensor) -> tf.TensorShape:
    return tf.TensorShape([None]).concatenate(tensor.shape[1:])


def where_rows(mask: tf.Tensor, chosen: tf.Tensor, other: tf.Tensor) -> tf.Tensor:
    """`chosen`'s examples where the (batch,) bool `mask` holds, `other`'s elsewhere (tensors with the batch first)."""
    return tf.where(tf.reshape(mask, [-1] + [1] * (chosen.shape.rank - 1)), chosen, other)


def _gather_rows(nest: Any, rows: tf.Tensor) -> Any:
    """The examples `rows` ((k,) indices) of every tensor in `nest`; None leaves stay None."""
    return tf.nest.map_structure(lambda t: None if t is None else tf.gather(t, rows), nest)


def _write_rows(results: Any, rows: tf.Tensor, values: Any) -> Any:
    """`results` with the examples `rows` ((k,) indices) replaced by `values`, nest by nest."""
    return tf.nest.map_structure(lambda result, value: tf.tensor_scatter_nd_update(result, rows[:, None], value), results, values)


def iterate_while_running(
    step: Callable[[Any, Any], Any],
    data: Any,
    state: Any,
    *,
    is_running: Callable[[Any], tf.Tensor],
    max_iter: tf.Tensor | int,
) -> Any:
    """Applies `state = step(data, state)` while an example runs, for at most `max_iter` iterations.

    Args:
        step: one iteration on a working batch: (data, state) -> state with
            the same structure. It must leave examples that are not running
            unchanged, and treat every example apart (no batch reductions).
        data: a nest (tuple, NamedTuple, dict) of per-example tensors with
            the batch first, read by `step`; None leaves are passed as None.
        state: a nest of per-example tensors with the batch first.
        is_running: state -> (batch,) bool, the examples still iterating.
        max_iter: most iterations.

    Returns:
        The final state of every example, in the order of the batch.
    """
    if in_xla_context() or is_small_batch(tf.nest.flatten(state)[0].shape[0]):
        _, state = tf.while_loop(
            lambda iteration, state: (iteration < max_iter) & tf.reduce_any(is_running(state)),
            lambda iteration, state: (iteration + 1, step(data, state)),
            (tf.constant(0), state),
            maximum_iterations=max_iter,
        )
        return state

    # while_loop cannot carry None: the data's tensors travel flat, the Nones stay behind.
    data_leaves = tf.nest.flatten(data)
    data_tensors = [leaf for leaf in data_leaves if leaf is not None]

    def unflatten_data(tensors):
        remaining = iter(tensors)
        return tf.nest.pack_sequence_as(data, [None if leaf is None else next(remaining) for leaf in data_leaves])

    state_tensors = tf.nest.flatten(state)

    def body(iteration, _any_running, results, rows, working_data, working_state):
        new_state = step(unflatten_data(working_data), tf.nest.pack_sequence_as(state, working_state))
        running = is_running(new_state)
        working_state = tf.nest.flatten(new_state)

        def shrink():
            kept = tf.where(running)[:, 0]
            return (_write_rows(results, rows, working_state), tf.gather(rows, kept),
                    _gather_rows(working_data, kept), _gather_rows(working_state, kept))

        def keep():
            return results, rows, working_data, working_state

        size = tf.size(running)
        halved = (2 * tf.math.count_nonzero(running, dtype=tf.int32) <= size) & (size > SMALLEST_SHRINKING_BATCH)
        # The loop's condition reads `running` from here rather than computing it again.
        return (iteration + 1, tf.reduce_any(running), *tf.cond(halved, shrink, keep))

    loop_vars = (tf.constant(0), tf.reduce_any(is_running(state)), state_tensors,
                 tf.range(tf.shape(state_tensors[0])[0]), data_tensors, state_tensors)
    invariants = (
        tf.TensorShape([]),
        tf.TensorShape([]),
        [t.shape for t in state_tensors],
        tf.TensorShape([None]),
        [_batch_invariant(t) for t in data_tensors],
        [_batch_invariant(t) for t in state_tensors],
    )
    _, _, results, rows, _, working_state = tf.while_loop(
        lambda iteration, any_running, *_: (iteration < max_iter) & any_running,
        body,
        loop_vars,
        shape_invariants=invariants,
        maximum_iterations=max_iter,
    )
    return tf.nest.pack_sequence_as(state, _write_rows(results, rows, working_state))


def recompute_rows(mask: tf.Tensor, compute: Callable[[Any], Any], inputs: Any, current: Any) -> Any:
    """`current` with the examples where `mask` holds replaced by `compute(inputs)`'s.

    `compute` sees only those examples (the batch gathered), so a few of a
    large batch cost about as little as a small batch; under XLA, where
    sizes must be static, and for a small batch (`is_small_batch`), it sees the
    whole batch and its other examples' results are dropped. Nothing is
    computed when `mask` holds nowhere.

    Args:
        mask: (batch,) bool.
        compute: inputs -> a nest like `current`, example by example (no
            batch reductions).
        inputs: a nest of per-example tensors with the batch first; None
            leaves are passed as None.
        current: a nest of per-example tensors with the batch first.
    """

    def recompute():
        if in_xla_context() or is_small_batch(mask.shape[0]):
            computed = compute(inputs)
            return tf.nest.map_structure(lambda new, old: where_rows(mask, new, old), computed, current)
        rows = tf.where(mask)[:, 0]
        return _write_rows(current, rows, compute(_gather_rows(inputs, rows)))

    return tf.cond(tf.reduce_any(mask), recompute, lambda: current)

"""`CompiledFunction`: a `tf.function` that eager callers call at the cost of its graph alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf


def shape_key(tensors: Sequence[tf.Tensor]) -> tuple:
    """The tensors' shapes and dtypes, as a dictionary key."""
    return tuple((tuple(t.shape), t.dtype) for t in tensors)


class CompiledFunction:
    """`tf.function(function)` without autograph, called through its concrete functions, flat.

    Calling a `tf.function` matches the arguments against its traces at every
    call (about 85 µs here) and binds them to its signature; at batch 1 that
    is much of a call's time. This looks the concrete function up by the
    arguments' shapes and dtypes (`shape_key`, or a key the caller already
    has) and calls it flat: `_call_flat`, the TensorFlow internal that the
    structured call ends in, which records the call on a gradient tape as
    the structured call does. At most `LIMIT` concrete functions are kept
    (the `tf.function` keeps its traces anyway).

    Calls run on TensorFlow's default executor, not its single-threaded one,
    though that one ran the OptNet QP's forward function at batch 1 in 1.5-2.0
    ms instead of 2.7-3.3 (issue 12, stop 23): it cannot run the switch and
    merge nodes loops are lowered to, so a loop or branch stays one op, run
    on an inter-op pool thread that blocks while the pool runs its body. The
    test suite hung twice that way (a solve whose loop held a `tf.cond`, and
    a gradient function with no nested control flow), with every pool thread
    waiting.

    Limits: every argument must be a dense tensor, nested in lists or
    tuples (no variables, composite tensors, None or Python numbers: the
    flat call takes tensors only), and a caller's `key` must determine every
    argument's shape (eagerly, the flat call does not check shapes).

    Args:
        function: a Python function of dense tensors (nested in lists or
            tuples), written with TF control flow (no autograph).
        input_signature: `tf.function`'s; without one, traces relax their
            shapes (`reduce_retracing`), so a new batch size does not retrace.
            Either way, a call with `exact_shapes` gets a trace for its
            arguments' exact shapes (a small batch: static sizes down to the
            solvers' loops, `static_shapes`), even after a large batch has
            relaxed them.
        jit_compile: compile with XLA (`tf.function`'s `jit_compile`).
    """

    LIMIT = 32

    def __init__(self, function: Callable, input_signature: Sequence[tf.TensorSpec] | None = None,
                 jit_compile: bool = False):
        self._function = tf.function(
            function, input_signature=input_signature, reduce_retracing=input_signature is None, autograph=False,
            jit_compile=jit_compile)
        self._exact_function = tf.function(function, autograph=False, jit_compile=jit_compile)
        self._concrete: dict[tuple, Any] = {}  # concrete functions by key

    def concrete_functions(self) -> list:
        """The concrete functions kept, in the order they were first called."""
        return list(self._concrete.values())

    def __call__(self, *args: Any, key: tuple | None = None, exact_shapes: bool = False) -> Any:
        """`function(*args)`; `key`, when given, must determine every argument's shape and dtype.

        `exact_shapes` (the same for every call with one key): trace for the
        arguments' exact shapes rather than relaxed ones.
        """
        flat = tf.nest.flatten(args)
        if key is None:
            key = shape_key(flat)
        concrete = self._concrete.get(key)
        if concrete is None:
            if len(self._concrete) >= self.LIMIT:
                self._concrete.clear()
            function = self._exact_function if exact_shapes else self._function
            concrete = self._concrete[key] = function.get_concrete_function(*args)
        return concrete._call_flat(flat, concrete.captured_inputs)

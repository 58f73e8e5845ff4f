"""A native solve traced once to solve, and again to differentiate without iterating.

Eager layers run the forward pass and the gradient as two compiled
functions (a compiled function called under a gradient tape runs a slower
variant that keeps every intermediate). The gradient's function rebuilds
the same graph, the affine maps, the scaling and the solver's implicit
gradient, but its solve must not iterate again: the forward function traces
its solve while `recording`, which collects the solution tensors the
gradient needs, returns them as extra outputs, and the gradient's function
traces its solve while `replaying` them, so the solver's iterations are
replaced by those tensors.

Both are trace-time switches for the current thread; outside them
`solve_or_replay` just solves. A recorded solution is replayed in the order
it was recorded, one group per solve. `CompiledSolve` puts the two functions
together for eager callers (the layers' engine, `qp_solve`, `socp_solve`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

import tensorflow as tf

_state = threading.local()


@contextlib.contextmanager
def recording() -> Iterator[list[tf.Tensor]]:
    """Collects, in a flat list, the solution of every solve traced inside."""
    recorded: list[tf.Tensor] = []
    previous = getattr(_state, "recorded", None)
    _state.recorded = recorded
    try:
        yield recorded
    finally:
        _state.recorded = previous


@contextlib.contextmanager
def replaying(tensors: Sequence[tf.Tensor]) -> Iterator[None]:
    """Solves traced inside return `tensors` (as `recording` collected them) instead of iterating."""
    previous = getattr(_state, "replayed", None)
    _state.replayed = list(tensors)
    try:
        yield
    finally:
        _state.replayed = previous


def solve_or_replay(solve: Callable[[], tuple[tf.Tensor, ...]], count: int) -> tuple[tf.Tensor, ...]:
    """`solve()` (a tuple of `count` tensors), recorded or replaced as the context asks."""
    replayed = getattr(_state, "replayed", None)
    if replayed is not None:
        if len(replayed) < count:
            raise RuntimeError("The replayed solution has fewer tensors than the solves traced need.")
        result, _state.replayed = tuple(replayed[:count]), replayed[count:]
        return result
    result = tuple(solve())
    recorded = getattr(_state, "recorded", None)
    if recorded is not None:
        recorded.extend(result)
    return result


class CompiledSolve:
    """A graph solve for eager callers: a compiled forward pass cut from the
    gradient tape, and a compiled gradient at the forward pass's solution.

    A compiled function called under a gradient tape runs a variant that
    keeps every intermediate for the backward pass: the OptNet QP at batch 1
    took 2.8 ms that way against 1.3 ms. Here the forward function runs with
    its inputs cut from the tape, recording the solver's solution; the
    gradient function traces the same solve replaying it, so it
    differentiates without iterating.

    Args:
        solve: `solve(inputs, constants)` -> a tuple whose first
            `differentiable` entries are tensors differentiable in `inputs`
            (a list of float tensors); the rest (statuses, statistics) are
            passed through. It must trace the same solves each time.
        differentiable: how many leading outputs carry gradients.
        after: `after(outputs)`, run in the forward graph only (statistics).
        input_signature: the forward function's, as `[inputs specs,
            constants specs]`; None traces per shape.
    """

    def __init__(self, solve: Callable[..., tuple], differentiable: int,
                 after: Callable[[tuple], None] | None = None, input_signature: list | None = None):
        self._differentiable = differentiable

        def forward(inputs, constants):
            with recording() as solution:
                outputs = solve(inputs, constants)
            if after is not None:
                after(outputs)
            return outputs, solution

        def gradient(inputs, constants, solution, upstream):
            with tf.GradientTape() as tape, replaying(solution):
                tape.watch(inputs)
                outputs = solve(inputs, constants)[:differentiable]
            gradients = tape.gradient(list(outputs), inputs, output_gradients=upstream)
            return [tf.zeros_like(t) if g is None else g for t, g in zip(inputs, gradients)]

        self._forward = _ConcreteFunctions(tf.function(
            forward, input_signature=input_signature, autograph=False, reduce_retracing=input_signature is None))
        self._gradient = _ConcreteFunctions(tf.function(gradient, autograph=False, reduce_retracing=True))

    def __call__(self, inputs: Sequence[tf.Tensor], constants: Sequence[tf.Tensor] = ()) -> tuple:
        """`solve(inputs, constants)`'s outputs, differentiable in `inputs` under an eager tape."""
        constants = list(constants)
        passed_through: dict[str, tuple] = {}

        @tf.custom_gradient
        def call(*inputs):
            outputs, solution = self._forward([tf.stop_gradient(t) for t in inputs], constants)
            passed_through["outputs"] = tuple(outputs[self._differentiable:])

            def gradient(*upstream):
                upstream = [tf.zeros_like(o) if g is None else g
                            for o, g in zip(outputs[:self._differentiable], upstream)]
                return self._gradient(list(inputs), constants, list(solution), upstream)

            return list(outputs[:self._differentiable]), gradient

        return (*call(*inputs), *passed_through["outputs"])


class _ConcreteFunctions:
    """Calls a `tf.function` through its concrete functions, looked up by the arguments' shapes and dtypes.

    Calling the `tf.function` itself matches the arguments against its
    traces at every call, about 85 µs here, which is much of a batch-1
    call's time; a concrete function skips that. At most `LIMIT` are kept
    (the `tf.function` keeps its traces anyway).
    """

    LIMIT = 32

    def __init__(self, function):
        self.function = function  # the tf.function
        self._concrete: dict[tuple, Callable] = {}

    def __call__(self, *args):
        key = tuple((tuple(t.shape), t.dtype) for t in tf.nest.flatten(args))
        concrete = self._concrete.get(key)
        if concrete is None:
            if len(self._concrete) >= self.LIMIT:
                self._concrete.clear()
            concrete = self._concrete[key] = self.function.get_concrete_function(*args)
        return concrete(*args)

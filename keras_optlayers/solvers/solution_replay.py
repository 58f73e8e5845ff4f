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
it was recorded, one group per solve.
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

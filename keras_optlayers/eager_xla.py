"""Eager calls at one small shape, made often, move to XLA once it has compiled in the background.

At batch 1 an eager native solve is bounded by TensorFlow's executor, which
spends a microsecond or two on each of the solve's 2000 to 3500 small ops;
XLA fuses them and ran the OptNet QP's forward and backward pass 2.2x
faster (4.6 -> 2.1 ms, 2-core CPU), but its first call compiles for 7 to
15 s. A control loop, a policy or a server calls one shape thousands of
times; a test or a notebook calls it a few times. So an eager small batch
(`shrinking_batch.is_small_batch`) runs as a plain graph at first; at its
`eager_xla_after()`-th call with one shape on one device, a background
thread traces and compiles the XLA twins of its forward and gradient
functions, and the calls after they are ready run them. The calls in
between run the plain graph, slowed while the thread holds a core; one
compilation runs at a time.

What changes under XLA: the results agree with the plain graph's to
rounding (both are checked solutions; the iterates can differ in their last
digits), the solver statistics count no solve time (`solve_seconds`: XLA
has no clock), and each compiled shape keeps its XLA programs: about 200
MiB for a `PolytopeProjection` (measured), so at most
`SHAPES_PER_SOLVE` shapes of one solve move. Failures are still raised or
masked by the eager caller, by batch index.

Nothing moves under a `tf.distribute` strategy, with
`tf.config.run_functions_eagerly(True)`, or after `set_eager_xla_after(None)`
(or the environment variable `KERAS_OPTLAYERS_EAGER_XLA_AFTER=off`; a number
there sets the count). `wait_for_eager_xla()` waits for the compilations
under way (benchmarks, tests).

Limits: a second-order gradient (a tape around the gradient) of a moved
shape compiles its own XLA program on the caller's thread, once. At exit
the interpreter waits for the compilation under way (up to its 7-15 s):
cut off inside TensorFlow, it crashes the process (a second Ctrl-C during
that wait does so).
"""
from __future__ import annotations

import atexit
import logging
import numbers
import os
import threading
import time
from collections.abc import Callable

import tensorflow as tf
from tensorflow.python.eager import context

_ENVIRONMENT_VARIABLE = "KERAS_OPTLAYERS_EAGER_XLA_AFTER"
# About the calls whose time the compilation would cost again (7-10 s against 5-15 ms a
# call): a loop that has run this long will likely run much longer.
DEFAULT_CALLS = 500
# Shapes of one solve that move: each keeps its XLA programs' memory.
SHAPES_PER_SOLVE = 2

_logger = logging.getLogger(__name__)
_compilations: set[threading.Thread] = set()
_lock = threading.Lock()
# Held by the compilation under way: several at once took 27 s for three, against 5 s for one.
_one_at_a_time = threading.Lock()


def _check_calls(calls: int | None, source: str) -> int | None:
    if calls is None:
        return None
    if isinstance(calls, bool) or not isinstance(calls, numbers.Integral) or calls < 1:
        raise ValueError(f"{source} must be a positive integer, or None to turn eager XLA off. Received: {calls!r}")
    return calls


def _calls_from_environment() -> int | None:
    value = os.environ.get(_ENVIRONMENT_VARIABLE)
    if value is None:
        return DEFAULT_CALLS
    if value.strip().lower() in ("off", "none", "0"):
        return None
    try:
        calls = int(value)
    except ValueError:
        calls = value  # type: ignore[assignment]
    return _check_calls(calls, f"The environment variable {_ENVIRONMENT_VARIABLE}")


_calls_before_xla = _calls_from_environment()


def eager_xla_after() -> int | None:
    """The number of eager calls at one small shape after which it moves to XLA (None: never)."""
    return _calls_before_xla


def set_eager_xla_after(calls: int | None) -> None:
    """Moves an eager small batch to XLA after `calls` calls at one shape; None turns it off.

    Raises:
        ValueError: for anything but a positive integer or None.
    """
    global _calls_before_xla
    calls = _check_calls(calls, "calls")
    _calls_before_xla = None if calls is None else int(calls)


def calls_before_moving() -> int | None:
    """`eager_xla_after()` where an eager call may run (or start compiling) XLA twins now, else None."""
    if tf.distribute.has_strategy() or tf.config.functions_run_eagerly():
        return None
    return _calls_before_xla


def wait_for_eager_xla(timeout: float | None = None) -> bool:
    """Waits for the background compilations under way, `timeout` seconds at most in all; True when none is left."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _lock:
        pending = list(_compilations)
    for thread in pending:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    with _lock:
        return not _compilations


def compile_in_background(compile_twins: Callable[[], None], on_ready: Callable[[], None], description: str) -> None:
    """Runs `compile_twins()` on a thread of its own, then `on_ready()`; a failure is logged and nothing else happens.

    The thread keeps the caller's device scope (a `tf.device` the caller is
    inside) and waits for any compilation under way to finish first.
    """
    device = context.context().device_name

    def run() -> None:
        try:
            with _one_at_a_time, context.context().device(device):
                compile_twins()
            on_ready()
        except Exception as error:  # noqa: BLE001 (the plain graph goes on serving the calls)
            _logger.warning("keras_optlayers: %s did not compile with XLA; it stays a plain graph (%s: %s)",
                            description, type(error).__name__, error)
        finally:
            with _lock:
                _compilations.discard(threading.current_thread())

    thread = threading.Thread(target=run, name=f"keras_optlayers XLA: {description}", daemon=True)
    with _lock:
        _compilations.add(thread)
    try:
        thread.start()
    except RuntimeError as error:  # no new threads (the interpreter shutting down): the plain graph goes on
        with _lock:
            _compilations.discard(thread)
        _logger.warning("keras_optlayers: %s stays a plain graph (%s)", description, error)


atexit.register(wait_for_eager_xla)

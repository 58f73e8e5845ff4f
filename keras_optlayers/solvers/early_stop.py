"""The native solvers' early stop: loop to a loose tolerance, polish, and go on only where the polish fell short.

An interior-point loop's last iterations buy digits that a Newton polish
gets in one or two steps. So the loop first stops at a looser tolerance and polishes; an example whose
polished point is a solution to rounding is done. The others, and only
they (gathered, `shrinking_batch.recompute_rows`), resume from where they
stopped to the tolerance asked and are polished again: exactly the run the
loop would have made without the first stop, except that where the second
polish fails and the first passed its own test, the first polished point
is kept (an iterate is only as good as the loop's tolerance; on a
degenerate QP it was 1e-4 off). Both runs call one graph
function (`traced_once`). The QP and SOCP solvers share this; each brings
its own loop and polish.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from keras_optlayers.solvers.shrinking_batch import recompute_rows, where_rows
from keras_optlayers.solvers.traced_once import traced_once


def solve_with_early_stop(
    iterate_and_polish: Callable[[Any, Any, tf.Tensor, tf.Tensor], tuple[Any, Any, tf.Tensor]],
    data: Any,
    start: Any,
    *,
    tol: tf.Tensor,
    polish_from_tol: float,
    max_iter: tf.Tensor,
    solved: int,
    running: int,
) -> Any:
    """The polished solution of every example, the loop stopping first at `polish_from_tol` (or `tol`, if looser).

    Args:
        iterate_and_polish: (data, start, tol, max_iter) -> (result, solution,
            solved_to_rounding, verified): runs the loop on `start`'s running
            examples to `tol` for at most `max_iter` more iterations, then
            polishes. `result` (a NamedTuple with `status` and `iterations`)
            can be resumed from; `solution` is the polished point (a nest of
            per-example tensors); solved_to_rounding (B,) bool; verified (B,)
            bool: the polish's own test accepted its point (where it did not,
            `solution` holds the loop's iterate). An example that goes on
            and whose second polish is not verified keeps its first polished
            point where that one was: a degenerate QP's loop, run on to
            1e-8, ended 1e-4 off where the first polish had been right.
        data: a nest of per-example tensors (the batch first; None leaves
            allowed), the problems.
        start: the loop's starting result, every example running.
        tol: the tolerance asked; polish_from_tol: the solver's first stop
            (no second run where it is not looser than `tol`).
        max_iter: most iterations in all, both runs together.
        solved, running: the loop's status codes.

    Returns:
        The `solution` nest, with the resumed examples' replaced.
    """
    def run(data, start, run_tol):
        return iterate_and_polish(data, start, run_tol, max_iter - tf.reduce_max(start.iterations))

    run = traced_once(run)
    first_tol = tf.maximum(tol, polish_from_tol)
    first, solution, accepted, verified = run(data, start, first_tol)
    go_on = tf.equal(first.status, solved) & ~accepted & (tol < first_tol)

    def iterate_on(inputs):
        data, result, go_on, first_solution, first_verified = inputs
        # All of `go_on` holds when the rows are gathered; under XLA the others stay frozen.
        _, solution, _, verified = run(data, result._replace(status=tf.where(go_on, running, result.status)), tol)
        keep_first = first_verified & ~verified
        return tf.nest.map_structure(lambda new, old: where_rows(keep_first, old, new), solution, first_solution)

    return recompute_rows(go_on, iterate_on, (data, first, go_on, solution, verified), solution)

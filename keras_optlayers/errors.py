"""Errors raised by keras-optlayers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import diffcp


class SolverError(RuntimeError, diffcp.SolverError):
    """A solve failed for one or more examples of a batch.

    Raised instead of returning a solution that is not one: infeasible,
    unbounded, iteration-limited, inaccurate (failed the optimality check)
    and failed solves all end here. The message names the solver, each status
    and the batch indices with that status; inside a graph the TensorFlow
    error carries the same text. Code written for cvxpylayers can keep
    catching `diffcp.SolverError`: this class derives from it.

    Args:
        solver: name of the solver that failed, e.g. "SCS" or "QP".
        failures: mapping from a status string to the batch indices that
            ended with it.
        layer: name of the layer whose solve failed, if known; it heads the
            message.

    Attributes:
        solver: the solver's name.
        statuses: {status: sorted batch indices}.
        status: the status of the first failing example.
        batch_indices: sorted indices of all failing examples.
        layer: the layer's name, or None.
    """

    # Keras rebuilds exceptions raised inside a layer call as `cls(message)`,
    # which would drop the attributes above; this flag tells it to re-raise
    # the original exception instead.
    _keras_call_info_injected = True

    def __init__(self, solver: str, failures: Mapping[str, Iterable[int]], layer: str | None = None):
        self.solver = solver
        self.layer = layer
        self.statuses = {str(s): sorted(int(i) for i in idx) for s, idx in failures.items()}
        self.batch_indices = sorted(i for idx in self.statuses.values() for i in idx)
        first = min(self.statuses, key=lambda s: self.statuses[s][0]) if self.statuses else ""
        self.status = first
        detail = "; ".join(f"status '{s}' at batch indices {idx}" for s, idx in self.statuses.items())
        if layer is None:
            message = f"{solver} could not solve the problem: {detail}"
        else:
            message = f"SolverError in layer '{layer}': {detail}\n{solver} could not solve the problem."
        super().__init__(message)

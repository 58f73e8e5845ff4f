"""Errors raised by keras-optlayers."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping

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

    @classmethod
    def from_message(cls, text: str) -> SolverError | None:
        """The SolverError whose message `text` carries, or None.

        Inside a graph (`model.fit`, `evaluate`, `predict`, `tf.function`) a
        failed solve reaches the caller as a TensorFlow error whose long
        message contains this error's text; this reads it back.
        """
        text = text.replace("\\'", "'")  # tf.Assert prints strings C-escaped
        statuses = _STATUS.findall(text)
        solver = _SOLVER.search(text)
        if not statuses or solver is None:
            return None
        failures: dict[str, set[int]] = {}  # the text may repeat the message (tracebacks)
        for status, indices in statuses:
            failures.setdefault(status, set()).update(int(i) for i in indices.split(",") if i.strip())
        layer = _LAYER.search(text)
        return cls(solver.group(1), failures, layer=layer.group(1) if layer else None)


_LAYER = re.compile(r"SolverError in layer '([^']*)'")
_STATUS = re.compile(r"status '((?:[^'\\]|\\.)*)' at batch indices \[([\d, ]*)\]")
_SOLVER = re.compile(r"(\w+) could not solve the problem")


@contextlib.contextmanager
def solver_errors() -> Iterator[None]:
    """Re-raises a failed solve inside a graph as the `SolverError` it carries.

    In `model.fit`, `evaluate` and `predict` (graphs), a failed solve with
    `on_failure="raise"` surfaces as a TensorFlow error whose message holds
    the `SolverError` text deep inside a long trace. Wrapped in this context
    manager, the caller gets the `SolverError` itself (the TF error chained
    as its cause), first line naming the layer, the statuses and the batch
    indices:

        with keras_optlayers.solver_errors():
            model.fit(x, y)

    Any other exception passes through unchanged.
    """
    try:
        yield
    except SolverError:
        raise
    except Exception as error:  # tf.errors.OpError, without importing TensorFlow here
        solver_error = SolverError.from_message(getattr(error, "message", None) or str(error))
        if solver_error is None:
            raise
        raise solver_error from error

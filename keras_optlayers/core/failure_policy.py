"""What a layer does with the examples its solver failed on.

Shared by both front ends: "raise" raises `SolverError`; "warn" and "nan"
warn once per call, naming the statuses and batch indices (the front end
then keeps or NaNs the outputs and zeroes the gradients of those examples).
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

from keras_optlayers.errors import SolverError

POLICIES = ("raise", "warn", "nan")

# What the outputs of failed examples are, by policy, for the warning's text.
EFFECTS = {
    "warn": "their outputs are the solver's last iterates, with zero gradients",
    "nan": "their outputs are NaN, with zero gradients",
}


def check_on_failure(on_failure: object) -> str:
    """`on_failure` as given to a layer: one of POLICIES."""
    if on_failure not in POLICIES:
        raise ValueError(f"`on_failure` must be one of {list(POLICIES)}. Received: on_failure={on_failure!r}")
    return str(on_failure)


def failures_by_status(statuses: Sequence[str], solved: str) -> dict[str, list[int]]:
    """{status: batch indices} of the examples whose status is not `solved`."""
    failures: dict[str, list[int]] = {}
    for index, status in enumerate(statuses):
        if status != solved:
            failures.setdefault(status, []).append(index)
    return failures


def handle_failures(on_failure: str, solver: str, failures: Mapping[str, Sequence[int]],
                    layer: str | None = None) -> None:
    """Raises SolverError ("raise") or warns ("warn", "nan") when there are failures."""
    if not failures:
        return
    error = SolverError(solver, failures, layer=layer)
    if on_failure == "raise":
        raise error
    warnings.warn(f"{error} ({EFFECTS[on_failure]})", RuntimeWarning, stacklevel=3)

"""The container the problem builders return, and their shared size check."""

from __future__ import annotations

from typing import NamedTuple

import cvxpy as cp


class ProblemSpec(NamedTuple):
    """A parametrized CVXPY problem with its layer inputs and outputs.

    Attributes:
        problem: the DPP-compliant `cp.Problem`.
        parameters: the `cp.Parameter`s a layer feeds, in call order.
        variables: the `cp.Variable`s a layer returns, in output order.
    """

    problem: cp.Problem
    parameters: tuple[cp.Parameter, ...]
    variables: tuple[cp.Variable, ...]


def check_size(n: int) -> None:
    """Rejects a problem size that is not a positive integer."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive integer. Received: n={n!r}")

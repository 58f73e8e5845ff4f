"""What a user reads for each way a host cone solve can end.

SCS, ECOS and Clarabel each name their outcomes differently, and
`diffcp.solve_internal` passes them on in three conventions (SCS's own
strings, SCS-style strings for ECOS and Clarabel, and exceptions for ECOS's
failures). This module maps all of them to a few statuses:

    "solved"
    "infeasible (primal infeasible)"
    "unbounded (dual infeasible)"
    "iteration limit"
    "inaccurate (failed the optimality check: <measure> <value> > <tolerance>)"
    "solver error (<what the solver said>)"

A solver's claim to have solved a problem, accurately or not, is only a
candidate: `cone_solution_check` decides (see `ConeSolver.solve_with_status`).
"""

from __future__ import annotations

SOLVED = "solved"
INFEASIBLE = "infeasible (primal infeasible)"
UNBOUNDED = "unbounded (dual infeasible)"
ITERATION_LIMIT = "iteration limit"

# Clarabel's iteration limit when the settings name none (clarabel.DefaultSettings).
CLARABEL_DEFAULT_MAX_ITER = 200


def inaccurate(reason: str) -> str:
    """The status of a returned point that failed the optimality check."""
    return f"inaccurate (failed the optimality check: {reason})"


def solver_error(detail: str) -> str:
    return f"solver error ({detail})"


def is_candidate(raw_status: str) -> bool:
    """Whether the solver claims a solution (accurate or not): then check it."""
    text = raw_status.lower()
    return text.startswith(("solved", "optimal"))


def hit_iteration_limit(solver: str, raw_status: str, iterations: float, settings: dict) -> bool:
    """Whether the solver stopped because it ran out of iterations."""
    text = raw_status.lower()
    if solver == "SCS":
        return "max_iters" in text
    if solver == "Clarabel":
        return iterations >= settings.get("max_iter", CLARABEL_DEFAULT_MAX_ITER)
    return False  # ECOS's iteration limit reaches us only as an exception, see from_ecos_error


def from_solver(solver: str, raw_status: str, iterations: float, settings: dict) -> str:
    """The status of a solve that returned no candidate solution."""
    text = raw_status.lower()
    if hit_iteration_limit(solver, raw_status, iterations, settings):
        return ITERATION_LIMIT
    if text.startswith("infeasible"):
        return INFEASIBLE
    if text.startswith("unbounded"):
        return UNBOUNDED
    return solver_error(f"{solver} returned status '{raw_status}'")


def from_ecos_error(message: str) -> str:
    """The status of an ECOS solve that raised `diffcp.SolverError`.

    diffcp raises with "Solver ecos returned status <status>" for ECOS's
    infeasibility and unboundedness certificates and "Solver ecos errored."
    for its negative exit flags (iteration limit, numerical trouble), which
    it does not tell apart.
    """
    raw = message.replace("Solver ecos returned status ", "")
    if raw != message:
        return from_solver("ECOS", raw, 0, {})
    return solver_error("ECOS stopped early: iteration limit or numerical trouble")

"""The solvers, each declared once: name, settings, where it runs, how it differentiates.

Every front end asks this registry; nothing else names a solver or checks a
setting. Adding a solver is adding one `SolverEntry` to `SOLVERS`.

Settings follow a solver, not the other way round:

* each key must be a setting of some solver (else `ValueError` listing them);
* accuracy targets and iteration limits (`eps`, `tol_gap_abs`, `max_iters`,
  `tol`, ...) mean the same thing to every solver, so they are translated
  to the solver that runs (`translate_settings`);
* any other key belongs to the solvers that own it: with `solver=None` it
  selects one of them (`solver_selected_by`), and a solver that does not own
  it rejects it, naming its owners.

Framework-free: no TensorFlow, no torch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Mapping

# What a setting's value must be.
SettingKind = Literal["tolerance", "count", "number", "flag", "text", "derivative_mode"]

# The derivative of the diffcp path: see ConeSolver.adjoint.
DERIVATIVE_MODES = ("auto", "dense", "lsqr")

# Settings every solver accepts; the native solvers ignore them.
COMMON_SETTINGS: dict[str, SettingKind] = {"verbose": "flag"}

# Keys that name an accuracy target or an iteration limit, in any solver's
# vocabulary; translated to the running solver's own keys.
ACCURACY_KEYS = ("eps", "eps_abs", "eps_rel", "tol", "tol_gap_abs", "tol_gap_rel", "tol_feas",
                 "abstol", "reltol", "feastol")
ITERATION_KEYS = ("max_iters", "max_iter")


@dataclasses.dataclass(frozen=True)
class SolverEntry:
    """One solver: what it solves, its settings, where it runs, how it differentiates.

    Attributes:
        name: the name users pass as `solver` (matched case-insensitively).
        program: the compiled form it solves: "qp" (quadratic objective,
            zero and nonnegative cones) or "cone" (linear objective, any of
            `cones`).
        cones: the cone kinds it accepts ("zero", "nonneg", "soc", "exp", "psd").
        settings: its settings and their kinds.
        accuracy_settings: its keys an accuracy target is translated to.
        iteration_setting: its key an iteration limit is translated to.
        runs_in_xla: compiles under `jit_compile=True` (no host callback).
        exportable: is saved into `model.export()` / SavedModel graphs.
        differentiation: how its gradient is computed, in one line.
        default_settings: the settings every solve starts from; a user's
            settings override them.
        fallback_accuracy: for host solvers, the accuracy target of a last
            attempt at examples that failed at the call's settings (each of
            `accuracy_settings` loosened to at least this): tight targets
            can stall an interior-point solver on large problems, whose
            looser solution then still has to pass the optimality check.
            None: no such attempt.
    """

    name: str
    program: Literal["qp", "cone"]
    cones: frozenset[str]
    settings: Mapping[str, SettingKind]
    accuracy_settings: tuple[str, ...]
    iteration_setting: str
    runs_in_xla: bool
    exportable: bool
    differentiation: str
    default_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    fallback_accuracy: float | None = None


_DIFFCP_DIFFERENTIATION = (
    "implicit differentiation of the cone program's residual map at the solution "
    "(diffcp's formulas, batched; solvers/cone_solver.py)")

_SCS_SETTINGS: dict[str, SettingKind] = {
    "eps": "tolerance", "eps_abs": "tolerance", "eps_rel": "tolerance", "eps_infeas": "tolerance",
    "max_iters": "count", "time_limit_secs": "number", "normalize": "flag", "scale": "number",
    "adaptive_scale": "flag", "rho_x": "number", "alpha": "number",
    "acceleration_lookback": "number", "acceleration_interval": "count",
    "write_data_filename": "text", "log_csv_filename": "text", "mode": "derivative_mode",
}
_ECOS_SETTINGS: dict[str, SettingKind] = {
    "feastol": "tolerance", "abstol": "tolerance", "reltol": "tolerance",
    "feastol_inacc": "tolerance", "abstol_inacc": "tolerance", "reltol_inacc": "tolerance",
    "max_iters": "count", "nitref": "count", "mode": "derivative_mode",
}
_CLARABEL_SETTINGS: dict[str, SettingKind] = {
    "max_iter": "count", "time_limit": "number",
    "tol_gap_abs": "tolerance", "tol_gap_rel": "tolerance", "tol_feas": "tolerance",
    "tol_infeas_abs": "tolerance", "tol_infeas_rel": "tolerance", "tol_ktratio": "tolerance",
    "reduced_tol_gap_abs": "tolerance", "reduced_tol_gap_rel": "tolerance", "reduced_tol_feas": "tolerance",
    "reduced_tol_infeas_abs": "tolerance", "reduced_tol_infeas_rel": "tolerance",
    "reduced_tol_ktratio": "tolerance", "equilibrate_enable": "flag", "equilibrate_max_iter": "count",
    "equilibrate_min_scaling": "number", "equilibrate_max_scaling": "number",
    "max_step_fraction": "number", "direct_kkt_solver": "flag", "direct_solve_method": "text",
    "static_regularization_enable": "flag", "static_regularization_constant": "number",
    "static_regularization_proportional": "number", "dynamic_regularization_enable": "flag",
    "dynamic_regularization_eps": "number", "dynamic_regularization_delta": "number",
    "iterative_refinement_enable": "flag", "iterative_refinement_reltol": "tolerance",
    "iterative_refinement_abstol": "tolerance", "iterative_refinement_max_iter": "count",
    "iterative_refinement_stop_ratio": "number", "presolve_enable": "flag", "max_threads": "count",
    "mode": "derivative_mode",
}

QP = SolverEntry(
    name="QP",
    program="qp",
    cones=frozenset({"zero", "nonneg"}),
    settings={"tol": "tolerance", "max_iter": "count"},
    accuracy_settings=("tol",),
    iteration_setting="max_iter",
    runs_in_xla=True,
    exportable=True,
    differentiation="implicit differentiation of the KKT conditions at the solution (solvers/qp/kkt_adjoint.py)",
)
# The diffcp solvers' default settings were measured (benchmarks/bench_cone_accuracy.py):
# at their own defaults SCS (eps 1e-4) is off by ~1e-4 with implicit
# gradients off by O(1), and ECOS and Clarabel (1e-8) by up to 1e-4 where
# CVXPY writes a squared norm as a second-order cone (the solution error is
# about the square root of the objective's): sparsemax of the README's input
# came out 0.98640 for 0.98628.
SCS = SolverEntry(
    name="SCS", program="cone", cones=frozenset({"zero", "nonneg", "soc", "exp", "psd"}),
    settings=_SCS_SETTINGS, accuracy_settings=("eps_abs", "eps_rel"), iteration_setting="max_iters",
    runs_in_xla=False, exportable=False, differentiation=_DIFFCP_DIFFERENTIATION,
    default_settings={"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 100_000},
    fallback_accuracy=1e-7,
)
ECOS = SolverEntry(
    name="ECOS", program="cone", cones=frozenset({"zero", "nonneg", "soc", "exp"}),
    settings=_ECOS_SETTINGS, accuracy_settings=("abstol", "reltol", "feastol"), iteration_setting="max_iters",
    runs_in_xla=False, exportable=False, differentiation=_DIFFCP_DIFFERENTIATION,
    default_settings={"abstol": 1e-11, "reltol": 1e-11, "feastol": 1e-11},
    fallback_accuracy=1e-8,
)
CLARABEL = SolverEntry(
    name="Clarabel", program="cone", cones=frozenset({"zero", "nonneg", "soc", "exp", "psd"}),
    settings=_CLARABEL_SETTINGS, accuracy_settings=("tol_gap_abs", "tol_gap_rel", "tol_feas"),
    iteration_setting="max_iter", runs_in_xla=False, exportable=False,
    differentiation=_DIFFCP_DIFFERENTIATION,
    default_settings={"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12},
    # Clarabel at 1e-12 stalls ("almost solved", primal residual 1e-5) on
    # sparsemax with n = 1000, where 1e-8 solves it to 1e-8.
    fallback_accuracy=1e-8,
)

SOCP = SolverEntry(
    name="SOCP",
    program="cone",
    cones=frozenset({"zero", "nonneg", "soc"}),
    settings={"tol": "tolerance", "max_iter": "count"},
    accuracy_settings=("tol",),
    iteration_setting="max_iter",
    runs_in_xla=True,
    exportable=True,
    differentiation="implicit differentiation of the optimality conditions at the polished solution "
                    "(solvers/socp/optimality_conditions.py)",
)

SOLVERS: dict[str, SolverEntry] = {entry.name.upper(): entry for entry in (QP, SOCP, SCS, ECOS, CLARABEL)}

# The native SOCP solver factors dense matrices of this many variables plus
# rows at most by default (EllipsoidProjection up to 28 dimensions); larger
# cone programs, and QPs too large for the dense QP solver, go to the host
# path (`default_cone_solver`).
NATIVE_SOCP_MAX_SIZE = 150

# cvxpylayers 0.1.9 passed solver_args on to diffcp, whose `solve_method`
# names the solver; code written for it keeps working.
SOLVE_METHOD_KEY = "solve_method"


def default_cone_solver(program, native: bool = True) -> SolverEntry:
    """The solver `solver=None` uses for a compiled cone program.

    Second-order cone programs of moderate size go to the native SOCP solver
    (`native=False` for front ends without it: torch): its polished
    solutions are exact to ~1e-14, where the interior-point host solvers
    leave errors of up to ~2e-4 once CVXPY writes a squared norm as a cone
    (the EllipsoidProjection of points at distance 1e3 was off by 1.9e-4,
    and passed their residual checks); it takes a quadratic objective as P
    (`BatchedProblem` compiles it so), where the host solvers see its cone
    form. Against the host path (benchmarks/bench_socp.py, a 2-core CPU,
    issue 12 stop 28) it was faster from batch 8 on the ellipsoid projection
    (2.8x at batch 128) and at batch 128 on a robust LP (linear objective,
    1.1x); at batch 1 it was 1.3x (ellipsoid) and 2x (robust LP) slower.
    It stays the choice at every batch size (exact, XLA, export; under XLA
    it is about as fast at batch 1).

    Otherwise, chosen by measurement (benchmarks/bench_cone_accuracy.py):
    exponential cones go to Clarabel at tolerances 1e-12 (gradients within
    1e-7 of central differences on softmax and LML; ECOS is 10 to 20 times
    slower there), and polyhedral and second-order cone programs to ECOS at
    1e-11, as fast as Clarabel at batch 128 and more accurate where CVXPY
    writes a squared norm as a cone: sparsemax with n = 1000 came out within
    2e-8 through ECOS, where Clarabel stalled on one example and passed the
    other 2.4e-4 off; gradient errors on the ellipsoid 5e-8 against 1e-5. SCS's solutions of degenerate canonical forms (an
    inactive `½‖At‖² <= 1`, whose auxiliary variable is not unique) sit at an
    extreme point where the implicit derivative is ill-posed: EllipsoidProjection's
    gradient was off by 1e-3 at eps 1e-9, against 1e-8 for interior-point
    solutions. PSD cones go to SCS: diffcp 1.1.9 returns Clarabel's PSD
    solutions in the wrong layout (they fail the optimality check), and ECOS
    has no PSD cone.
    """
    cones = program.cones
    if cones.psd:
        return SCS
    if not native:
        # Without the native solvers (torch): SCS, as cvxpylayers. Its
        # solutions of polyhedral problems are exact on their active set,
        # where Clarabel left errors up to 2.5e-3 on a 201-dimensional relu
        # written with a squared norm (a second-order cone), and ~2e-6 on the
        # tutorial's softmax and LML.
        return SCS
    if native and not cones.exp and program.num_vars + program.num_rows <= NATIVE_SOCP_MAX_SIZE:
        return SOCP
    return CLARABEL if cones.exp else ECOS


def solver_names() -> list[str]:
    return [entry.name for entry in SOLVERS.values()]


def cone_solver_names() -> list[str]:
    """The host (diffcp) solvers of cone programs, which every front end has."""
    return [entry.name for entry in SOLVERS.values() if entry.program == "cone" and not entry.runs_in_xla]


def get_solver(name: str) -> SolverEntry:
    """The entry for `name` (any case); ValueError listing the solvers otherwise."""
    if not isinstance(name, str) or name.upper() not in SOLVERS:
        raise ValueError(f"`solver` must be None or one of {solver_names()}. Received: solver={name!r}")
    return SOLVERS[name.upper()]


def check_solver_argument(solver: Any) -> SolverEntry | None:
    """`solver` as given to a layer: None, or a known name."""
    return None if solver is None else get_solver(solver)


def _owners(key: str) -> list[SolverEntry]:
    return [entry for entry in SOLVERS.values() if key in entry.settings]


def _check_value(key: str, kind: SettingKind, value: Any, settings: Mapping[str, Any]) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        "tolerance": number and math.isfinite(value) and value > 0,
        "count": isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        "number": number and math.isfinite(value),
        "flag": isinstance(value, bool),
        "text": isinstance(value, str),
        "derivative_mode": value in DERIVATIVE_MODES,
    }[kind]
    if not ok:
        expected = {
            "tolerance": "a positive finite number",
            "count": "a positive integer",
            "number": "a finite number",
            "flag": "a boolean",
            "text": "a string",
            "derivative_mode": f"one of {list(DERIVATIVE_MODES)}",
        }[kind]
        raise ValueError(f"Solver setting `{key}` must be {expected}. Received: solver_args={dict(settings)!r}")


def check_settings(solver_args: Any) -> dict[str, Any]:
    """Checks `solver_args` as given (construction or call): a dict of known keys with valid values.

    Returns a new dict ({} for None). Does not yet say which solver takes them.
    """
    if solver_args is None:
        return {}
    if not isinstance(solver_args, Mapping) or not all(isinstance(k, str) for k in solver_args):
        raise ValueError(
            "`solver_args` must be a dict from setting names to values. "
            f"Received: solver_args={solver_args!r}")
    settings = dict(solver_args)
    for key, value in settings.items():
        if key == SOLVE_METHOD_KEY:
            get_solver(value)
            continue
        kinds = {entry.settings[key] for entry in _owners(key)} or (
            {COMMON_SETTINGS[key]} if key in COMMON_SETTINGS else set())
        if not kinds:
            valid = {entry.name: sorted(entry.settings) for entry in SOLVERS.values()}
            raise ValueError(
                f"Unknown solver setting `{key}`. Each solver's settings: {valid}, and "
                f"{sorted(COMMON_SETTINGS)} for all. Received: solver_args={settings!r}")
        for kind in kinds:
            _check_value(key, kind, value, settings)
    return settings


def _translatable(key: str) -> bool:
    return key in ACCURACY_KEYS or key in ITERATION_KEYS or key in COMMON_SETTINGS


def solver_selected_by(settings: Mapping[str, Any]) -> SolverEntry | None:
    """The solver that `solver=None` must use because a setting belongs to it, or None.

    `solve_method` names it; otherwise a key that only some solvers own (and
    that is not an accuracy target or iteration limit) selects the first of
    its owners that owns every such key.
    """
    if SOLVE_METHOD_KEY in settings:
        return get_solver(settings[SOLVE_METHOD_KEY])
    specific = [key for key in settings if not _translatable(key)]
    if not specific:
        return None
    for entry in SOLVERS.values():
        if all(key in entry.settings for key in specific):
            return entry
    owners = {key: [entry.name for entry in _owners(key)] for key in specific}
    raise ValueError(
        f"These solver settings belong to different solvers, so no one solver takes them all: "
        f"{owners}. Received: solver_args={dict(settings)!r}")


def check_solver_and_settings(solver: Any, solver_args: Any) -> tuple[SolverEntry | None, dict[str, Any]]:
    """A layer's `solver` and `solver_args`, checked together at construction.

    Returns the solver they fix (None when the problem decides: see
    `compile_problem`'s `quadratic`) and the settings as a new dict. Raises
    ValueError for an unknown solver or setting, a bad value, settings of
    different solvers, or a setting the named solver does not take.
    """
    entry = check_solver_argument(solver)
    settings = check_settings(solver_args)
    if entry is None:
        entry = solver_selected_by(settings)
    else:
        translate_settings(entry, settings)
    return entry, settings


def translate_settings(entry: SolverEntry, settings: Mapping[str, Any]) -> dict[str, Any]:
    """`settings` in `entry`'s vocabulary, checked.

    An accuracy target given in another solver's words sets all of `entry`'s
    accuracy settings (the smallest target wins); an iteration limit sets its
    iteration setting. Raises ValueError for a key `entry` does not take.
    """
    native: dict[str, Any] = {}
    accuracy: list[float] = []
    for key, value in settings.items():
        if key == SOLVE_METHOD_KEY:
            if get_solver(value) is not entry:
                raise ValueError(
                    f"`solve_method` names {value!r}, but the layer's solver is '{entry.name}'. "
                    f"Received: solver_args={dict(settings)!r}")
        elif key in entry.settings or key in COMMON_SETTINGS:
            native[key] = value
        elif key in ACCURACY_KEYS:
            accuracy.append(float(value))
        elif key in ITERATION_KEYS:
            native.setdefault(entry.iteration_setting, int(value))
        else:
            owners = [owner.name for owner in _owners(key)]
            raise ValueError(
                f"Solver '{entry.name}' does not take the setting `{key}` (a setting of "
                f"{owners}). Its settings: {sorted(entry.settings)}; accuracy targets "
                f"({', '.join(ACCURACY_KEYS)}) and iteration limits ({', '.join(ITERATION_KEYS)}) "
                f"are translated. Pass solver={owners[0]!r} to use {owners[0]}. "
                f"Received: solver_args={dict(settings)!r}")
    if accuracy:
        for key in entry.accuracy_settings:
            native.setdefault(key, min(accuracy))
    return native

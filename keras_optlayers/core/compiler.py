"""Compiles a parametrized CVXPY problem, once, into affine maps around a solver.

This is the first and last step of the affine-solver-affine form:

    parameters --(sparse affine map)--> solver data --(solver)--> solution
    solution --(selection)--> requested variables and duals

`compile_problem` checks the problem (DPP, parameters, variables), lets CVXPY
canonicalize it into a parametrized cone program, and keeps

* one sparse matrix per piece of solver data (c, the values of A in a fixed
  sparsity pattern, b; and P for quadratic programs) whose product with the
  stacked parameter vector theta = [params..., 1] gives that data, and
* for each requested variable or dual variable, the entries of the solver's
  primal x or dual y it is read from, with a scale (PSD duals are scaled).

Everything here is numpy/scipy/cvxpy: the framework glue (TensorFlow, torch)
applies the maps with its own ops, so that their gradients come from autodiff.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Literal, Sequence

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.reductions.cvx_attr2constr import CvxAttr2Constr, lower_value

from keras_optlayers.core.auxiliary_variables import find_auxiliary_variables

ProgramKind = Literal["cone", "qp"]

# The native QP solver factors dense n x n matrices every iteration, n the
# variables left once those its equalities define are substituted out
# (`auxiliary_variables`); the host solvers work with the sparse data. Measured on
# a 2-core CPU (issue 12, stop 29, `benchmarks/bench_qp_dispatch.py`: a ReLU and
# sparsemax written with a squared norm, inputs in [-5, 5], forward and backward in a
# `tf.function`), the QP solver was faster than ECOS at batch 128 up to n = 150
# (1.7x at n = 50, 1.1-1.2x at 100 and 150) and 5x slower at n = 200; at batch 1,
# ECOS was faster from n = 50 (the QP solver took 1.5-1.6x its time up to 150). But
# the QP solver's solutions are exact (active-set polish: errors below 1e-10), where
# ECOS, which sees the squared norm as a second-order cone, left errors up to 1e-3
# (3e-4 to 1e-3 at batch 128). The automatic choice takes the QP solver up to
# `AUTO_QP_SMALL_VARIABLES` solved-for variables and `AUTO_QP_SMALL_ROWS` constraint
# rows (the measured problems had n or n + 1; a box and a sum have 2n + 1; the QP
# solver's data is dense, B x rows x n, so a QP with many sparse rows stays on the
# host), and for dense QPs (their canonical data) up to `AUTO_QP_MAX_VARIABLES`;
# quadratic=True (solver="QP") still forces a QP, e.g. for XLA or a GPU.
AUTO_QP_SMALL_VARIABLES = 150
AUTO_QP_SMALL_ROWS = 3 * AUTO_QP_SMALL_VARIABLES
AUTO_QP_MAX_VARIABLES = 1000
AUTO_QP_MIN_DENSITY = 0.1  # nonzeros of A and P per n² above which a QP counts as dense


def prefers_dense_qp(solved_size: tuple[int, int], num_vars: int, data_nonzeros: int) -> bool:
    """Whether the automatic choice sends a QP to the QP solver.

    Args:
        solved_size: the variables and constraint rows the QP solver solves
            with (the canonical ones less the variables its equalities
            define and those equalities).
        num_vars: the canonical variables.
        data_nonzeros: nonzeros of the canonical A and P.
    """
    variables, rows = solved_size
    if variables <= AUTO_QP_SMALL_VARIABLES and rows <= AUTO_QP_SMALL_ROWS:
        return True
    return num_vars <= AUTO_QP_MAX_VARIABLES and data_nonzeros >= AUTO_QP_MIN_DENSITY * num_vars**2


@dataclasses.dataclass(frozen=True)
class ConeDims:
    """Cone sizes in SCS order: zero, nonnegative, SOC, PSD, exponential."""

    zero: int
    nonneg: int
    soc: tuple[int, ...]
    psd: tuple[int, ...]
    exp: int

    @property
    def num_rows(self) -> int:
        return (
            self.zero
            + self.nonneg
            + sum(self.soc)
            + sum(k * (k + 1) // 2 for k in self.psd)
            + 3 * self.exp
        )

    def as_dict(self) -> dict:
        """The cone dictionary diffcp and SCS take."""
        return {
            "z": self.zero,
            "l": self.nonneg,
            "q": list(self.soc),
            "s": list(self.psd),
            "ep": self.exp,
        }

    @property
    def is_polyhedral(self) -> bool:
        return not (self.soc or self.psd or self.exp)


@dataclasses.dataclass(frozen=True)
class SparseDataMap:
    """Affine map theta -> values of a sparse matrix with a fixed pattern.

    `values = matrix @ theta`, laid out at (rows[k], cols[k]) of a matrix of
    `shape`. Entries are in column-major (CSC) order, so that `indptr` builds
    a CSC matrix directly from the values.
    """

    matrix: sp.csr_matrix
    rows: np.ndarray
    cols: np.ndarray
    shape: tuple[int, int]

    @property
    def indptr(self) -> np.ndarray:
        return np.searchsorted(self.cols, np.arange(self.shape[1] + 1)).astype(np.int64)

    def scatter(self) -> sp.csr_matrix:
        """(shape[0] * shape[1], nnz) 0/1 matrix placing the values in the dense matrix, flattened row-major."""
        entries = len(self.rows)
        return sp.csr_matrix((np.ones(entries), (self.rows * self.shape[1] + self.cols, np.arange(entries))),
                             shape=(self.shape[0] * self.shape[1], entries))


@dataclasses.dataclass(frozen=True)
class OutputMap:
    """Where a requested variable (or dual variable) is read from.

    `value.reshape(-1) = scales * solution[source][indices]` (row-major, the
    order every framework's reshape uses), then `exp` is applied for
    geometric programs (the solver sees log-variables). A front end reads an
    output with one gather, one product and one reshape.
    """

    name: str
    source: Literal["x", "y"]
    indices: np.ndarray
    scales: np.ndarray | None
    shape: tuple[int, ...]
    exp: bool


@dataclasses.dataclass(frozen=True)
class ParameterInfo:
    name: str
    shape: tuple[int, ...]
    size: int
    log: bool  # geometric programs: the solver sees log(parameter)


@dataclasses.dataclass(frozen=True)
class CompiledProblem:
    """A CVXPY problem compiled into affine maps around a cone program or QP.

    The program, in SCS's convention, is

        minimize ½xᵀPx + cᵀx  subject to  Ax + s = b,  s ∈ K

    with K = cones. A QP (`kind == "qp"`) has only zero and nonnegative
    cones, read by the QP solver as equalities and inequalities. A cone
    program has P only when compiled with `quadratic_objective=True`, for
    the native SOCP solver; the host solvers (diffcp) take none. All data are affine in theta, CVXPY's parameter vector
    (each parameter flattened column-major, in CVXPY's order, then a 1). A
    front end forms theta with one gather: it concatenates the parameters
    flattened row-major in the user's order, appends a 1, and takes the
    entries `theta_index`.
    """

    kind: ProgramKind
    parameters: tuple[ParameterInfo, ...]  # in the user's order
    theta_index: np.ndarray  # theta = [params flattened row-major, 1][theta_index]
    num_vars: int
    cones: ConeDims
    c: sp.csr_matrix  # (num_vars, num_theta)
    A: SparseDataMap  # (nnz, num_theta); shape (num_rows, num_vars)
    b: sp.csr_matrix  # (num_rows, num_theta)
    P: SparseDataMap | None
    outputs: tuple[OutputMap, ...]
    gp: bool

    @property
    def num_rows(self) -> int:
        return self.cones.num_rows

    def parameter_selection(self) -> sp.csr_matrix:
        """The 0/1 matrix taking the parameter vector [params flattened row-major, 1] to theta.

        A map of theta composed with it reads the parameter vector directly,
        one gather fewer in every call.
        """
        size = int(sum(info.size for info in self.parameters)) + 1
        count = len(self.theta_index)
        return sp.csr_matrix((np.ones(count), (np.arange(count), self.theta_index)), shape=(count, size))

    def theta(self, values: Sequence[np.ndarray]) -> np.ndarray:
        """theta (B, len(theta_index)) from numpy parameter values, in the user's order.

        Each value has the parameter's shape, or a leading batch dimension
        (B, *shape); unbatched values are shared by the batch. The numpy
        counterpart of the front ends' gather, for tests and tools.
        """
        arrays = [np.asarray(v, dtype=float) for v in values]
        batched = [a.shape[0] for a, info in zip(arrays, self.parameters) if a.ndim == len(info.shape) + 1]
        batch = batched[0] if batched else 1
        flat = [np.broadcast_to(a, (batch, *info.shape)).reshape(batch, info.size)
                for a, info in zip(arrays, self.parameters)]
        return np.concatenate([*flat, np.ones((batch, 1))], axis=1)[:, self.theta_index]

    def parameter_gradients(self, theta_gradient: np.ndarray) -> list[np.ndarray]:
        """Gradients (B, *shape) of each parameter from a gradient (B, len(theta)) of theta."""
        batch = theta_gradient.shape[0]
        flat = np.zeros((batch, int(sum(info.size for info in self.parameters)) + 1))
        np.add.at(flat.T, self.theta_index, theta_gradient.T)
        offsets = np.cumsum([0, *(info.size for info in self.parameters)])
        return [flat[:, start:stop].reshape(batch, *info.shape)
                for info, start, stop in zip(self.parameters, offsets[:-1], offsets[1:])]


def _param_name(param: cp.Parameter, index: int) -> str:
    return param.name() if param.name() else f"param{index}"


def check_problem(
    problem: cp.Problem,
    parameters: Sequence[cp.Parameter],
    variables: Sequence[cp.Variable],
    gp: bool,
) -> None:
    """Raises ValueError naming the culprit if the layer cannot be built."""
    if not isinstance(problem, cp.Problem):
        raise ValueError(f"`problem` must be a cvxpy.Problem. Received: problem={problem!r}")
    if gp:
        if not problem.is_dgp(dpp=True):
            reason = (
                "it is a geometric program but not DPP (check how parameters enter it)"
                if problem.is_dgp()
                else "it is not a disciplined geometric program"
            )
            raise ValueError(f"The problem must be DGP and DPP (gp=True), but {reason}.")
    elif not problem.is_dcp(dpp=True):
        if problem.is_dcp():
            reason = (
                "it is DCP but not DPP: a parameter multiplies another parameter "
                "or enters a nonlinear atom. Introduce a variable for the product "
                "(e.g. t == y - z) so that parameters enter affinely"
            )
        elif problem.is_dgp(dpp=True):
            reason = "it is not DCP; it is a geometric program, pass gp=True"
        else:
            reason = "it is not DCP (check the curvature of its objective and constraints)"
        raise ValueError(f"The problem must be DPP, but {reason}.")

    discrete = [v.name() for v in problem.variables() if v.attributes.get("integer") or v.attributes.get("boolean")]
    if discrete:
        raise ValueError(
            "The problem must be convex, but it has integer or boolean variables, which "
            f"have no derivative. Received: variables {discrete} with integer=True or boolean=True")

    params = list(parameters)
    if any(not isinstance(p, cp.Parameter) for p in params):
        bad = [p for p in params if not isinstance(p, cp.Parameter)]
        raise ValueError(f"`parameters` must hold cp.Parameter objects. Received: {bad!r}")
    if len({p.id for p in params}) != len(params):
        raise ValueError("`parameters` lists a parameter twice.")
    problem_ids = {p.id for p in problem.parameters()}
    given_ids = {p.id for p in params}
    if given_ids != problem_ids:
        extra = [_param_name(p, i) for i, p in enumerate(params) if p.id not in problem_ids]
        missing = [p.name() for p in problem.parameters() if p.id not in given_ids]
        detail = []
        if extra:
            detail.append(f"not in the problem: {extra}")
        if missing:
            detail.append(f"missing from `parameters`: {missing}")
        raise ValueError(
            "`parameters` must be exactly the problem's parameters; "
            + "; ".join(detail)
            + "."
        )

    if not variables:
        raise ValueError("`variables` must name at least one variable to return.")
    primal_ids = {v.id for v in problem.variables()}
    dual_ids = {dv.id for con in problem.constraints for dv in con.dual_variables}
    for i, v in enumerate(variables):
        if not isinstance(v, cp.Variable):
            raise ValueError(
                f"`variables` must hold cp.Variable objects (or a constraint's "
                f"dual variable). Received: variables[{i}]={v!r}"
            )
        if v.id not in primal_ids and v.id not in dual_ids:
            raise ValueError(
                f"variables[{i}] ({v.name()}) is neither a variable of the problem "
                "nor a dual variable of one of its constraints."
            )


def _canonicalize(problem: cp.Problem, gp: bool, quad_obj: bool):
    with warnings.catch_warnings():
        # CVXPY warns about solver-specific reformulations we do not use.
        warnings.simplefilter("ignore")
        data, chain, inverse_data = problem.get_problem_data(
            solver=cp.SCS, gp=gp, solver_opts={"use_quad_obj": quad_obj}
        )
    return data, chain, inverse_data


def _cone_dims(param_prob) -> ConeDims:
    dims = param_prob.cone_dims
    unsupported = []
    if getattr(dims, "p3d", None):
        unsupported.append("3D power cones")
    if getattr(dims, "pnd", None):
        unsupported.append("N-dimensional power cones")
    if unsupported:
        raise ValueError(
            f"The problem canonicalizes to {' and '.join(unsupported)}, which diffcp "
            "cannot differentiate. Reformulate without power atoms (e.g. pnorm, "
            "geo_mean, power with non-integer exponents)."
        )
    return ConeDims(
        zero=int(dims.zero),
        nonneg=int(dims.nonneg),
        soc=tuple(int(k) for k in dims.soc),
        psd=tuple(int(k) for k in dims.psd),
        exp=int(dims.exp),
    )


def _sparse_data_map(tensor: sp.spmatrix, shape: tuple[int, int], negate: bool) -> SparseDataMap:
    """Splits a CVXPY data tensor (rows = column-major matrix entries)."""
    tensor = sp.csr_matrix(tensor)
    tensor.eliminate_zeros()
    entry = np.unique(tensor.nonzero()[0])  # sorted: column-major order
    matrix = tensor[entry]
    if negate:
        matrix = -matrix
    rows, cols = entry % shape[0], entry // shape[0]
    return SparseDataMap(matrix=sp.csr_matrix(matrix), rows=rows, cols=cols, shape=shape)


def _split_constraint_tensor(param_prob, num_vars: int, num_rows: int):
    """CVXPY keeps [A | b] with `A x + b ∈ K`; SCS wants `-A x + s = b`."""
    tensor = sp.csr_matrix(param_prob.A)
    entry = np.arange(tensor.shape[0])
    in_b = entry >= num_rows * num_vars
    b_map = sp.csr_matrix(tensor[in_b])
    A_map = _sparse_data_map(tensor[~in_b], (num_rows, num_vars), negate=True)
    return A_map, b_map


def _selection(probe_a: np.ndarray, probe_b: np.ndarray, size: int, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads (indices, scales) from the chain's answers to two probes.

    The probes put (i+1) and (i+1)² in entry i of the solver's solution, so an
    output entry equal to scale * solution[i] reads (i+1)*scale and
    (i+1)²*scale: their ratio names i.
    """
    a = np.asarray(probe_a, dtype=float).flatten(order="F")
    b = np.asarray(probe_b, dtype=float).flatten(order="F")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = b / a
    index = np.rint(ratio) - 1
    ok = (a != 0) & np.isfinite(ratio) & (index >= 0) & (index < size) & np.isclose(ratio, index + 1, rtol=1e-9)
    if not ok.all():
        raise ValueError(
            f"Cannot read {name} from the solver's solution: CVXPY recovers it "
            "through a map that is not a scaled selection. Use a variable "
            "without attributes and constrain it instead."
        )
    index = index.astype(np.int64)
    scales = a / (index + 1)
    if np.allclose(scales, 1.0, rtol=0, atol=1e-12):
        return index, None
    return index, scales


def _reduced_parameters(chain) -> dict[int, tuple[int, np.ndarray]]:
    """{parameter id: (reduced parameter id, selection)} for parameters with attributes.

    CVXPY replaces a symmetric, PSD, NSD or diagonal parameter by a vector of
    its free entries (`CvxAttr2Constr`); `selection` lists, in the reduced
    parameter's order, the row-major positions of those entries in the
    user's array. Reductions that are not selections are left out (and
    rejected by the caller).
    """
    reduced: dict[int, tuple[int, np.ndarray]] = {}
    for reduction in chain.reductions:
        if not isinstance(reduction, CvxAttr2Constr):
            continue
        for parameter, reduced_parameter in reduction._parameters.items():
            labels = np.ravel(np.asarray(lower_value(parameter, np.arange(1.0, parameter.size + 1).reshape(
                parameter.shape)), dtype=float))
            index = np.rint(labels).astype(np.int64) - 1
            if labels.size == reduced_parameter.size and np.allclose(labels, index + 1) and \
                    np.all((index >= 0) & (index < parameter.size)):
                reduced[parameter.id] = (reduced_parameter.id, index)
    return reduced


def _theta_index(parameters: Sequence[cp.Parameter], placements: Sequence[tuple[int, np.ndarray]]) -> np.ndarray:
    """Positions in [params flattened row-major, in the user's order, 1] of theta's entries.

    Each parameter fills theta from its column with the entries its
    `selection` names (row-major positions in the user's array): all of
    them in column-major order for a plain parameter, the free entries for
    one CVXPY reduced (symmetric, diagonal). The last entry of theta is the
    constant 1.
    """
    total = sum(int(p.size) for p in parameters)
    size = sum(len(selection) for _, selection in placements)
    index = np.full(size + 1, total, dtype=np.int64)  # the trailing 1
    filled = np.zeros(size, dtype=bool)
    offset = 0
    for parameter, (column, selection) in zip(parameters, placements):
        if column + len(selection) > size or filled[column:column + len(selection)].any():
            raise ValueError("Unexpected parameter layout in CVXPY's parametrized program.")
        index[column:column + len(selection)] = offset + selection
        filled[column:column + len(selection)] = True
        offset += int(parameter.size)
    if not filled.all():
        raise ValueError("Unexpected parameter layout in CVXPY's parametrized program.")
    return index


def _dual_parts(constraint, value) -> list[np.ndarray | None]:
    """A constraint's dual value split among its dual variables, flattened column-major.

    Second-order and exponential cones have several dual variables; the
    constraint itself knows how its dual vector splits among them.
    """
    if value is None:
        return [None] * len(constraint.dual_variables)
    # The user's own values (say from an earlier `problem.solve()`) are put
    # back as CVXPY stored them: its setter's shape check refuses the (n, 1)
    # arrays `save_dual_value` leaves on a second-order cone's duals.
    saved = [dv.value for dv in constraint.dual_variables]
    try:
        constraint.save_dual_value(np.asarray(value))
        return [np.ravel(np.asarray(dv.value, dtype=float), order="F") for dv in constraint.dual_variables]
    finally:
        for dv, old in zip(constraint.dual_variables, saved):
            dv.save_value(old)


def _output_maps(problem, variables, chain, inverse_data, num_vars, num_rows, gp) -> tuple[OutputMap, ...]:
    reductions, inverses = list(chain.reductions), list(inverse_data)
    solver_var = {v.id: v.id for v in problem.variables()}
    solver_con = {con.id: con.id for con in problem.constraints}
    if gp:
        solver_con.update(inverses[0].cons_id_map)
        # Invert everything but Dgp2Dcp, and read its log-variables: the layer
        # applies exp itself.
        solver_var.update({v.id: log_v.id for v, log_v in reductions[0].canon_methods._variables.items()})
        reductions, inverses = reductions[1:], inverses[1:]

    def invert(x, y):
        raw = {
            "x": x,
            "y": y,
            "s": np.zeros(num_rows),
            "info": {"status_val": 1, "status": "solved", "pobj": 0.0, "iter": 0,
                     "solve_time": 0.0, "setup_time": 0.0},
        }
        solution = raw
        for reduction, inverse in zip(reversed(reductions), reversed(inverses)):
            solution = reduction.invert(solution, inverse)
        return solution

    k_x, k_y = np.arange(1.0, num_vars + 1), np.arange(1.0, num_rows + 1)
    first, second = invert(k_x, k_y), invert(k_x**2, k_y**2)
    dual_of = {dv.id: (con, k) for con in problem.constraints for k, dv in enumerate(con.dual_variables)}
    outputs = []
    for i, var in enumerate(variables):
        name = var.name() or f"variables[{i}]"
        if var.id in dual_of:
            con, part = dual_of[var.id]
            a = _dual_parts(con, first.dual_vars.get(solver_con[con.id]))[part]
            b = _dual_parts(con, second.dual_vars.get(solver_con[con.id]))[part]
            source: Literal["x", "y"] = "y"
            size = num_rows
        else:
            a, b = first.primal_vars.get(solver_var[var.id]), second.primal_vars.get(solver_var[var.id])
            source, size = "x", num_vars
        if a is None or b is None:
            raise ValueError(f"{name} does not appear in the canonicalized problem.")
        indices, scales = _selection(a, b, size, name)
        if indices.size != var.size:
            raise ValueError(
                f"Cannot read {name} from the solution: CVXPY recovers {indices.size} "
                f"entries for a variable of size {var.size}.")
        # Column-major (CVXPY) to row-major (every front end's reshape).
        row_major = np.arange(var.size).reshape(var.shape, order="F").ravel()
        indices = indices[row_major]
        scales = None if scales is None else scales[row_major]
        outputs.append(OutputMap(name=name, source=source, indices=indices, scales=scales,
                                 shape=tuple(var.shape), exp=gp and source == "x"))
    return tuple(outputs)


def compile_problem(
    problem: cp.Problem,
    parameters: Sequence[cp.Parameter],
    variables: Sequence[cp.Variable],
    *,
    gp: bool = False,
    quadratic: bool | None = None,
    quadratic_objective: bool = False,
) -> CompiledProblem:
    """Compiles `problem` into affine maps around a cone program or a QP.

    Args:
        problem: a DPP (or, with gp=True, DGP) CVXPY problem.
        parameters: exactly the problem's parameters, in the order the layer
            is fed.
        variables: the variables or constraint dual variables to return.
        gp: compile a geometric program (the solver sees log-variables).
        quadratic: True asks for a QP (raises if the problem is not one);
            False asks for a cone program; None picks a QP when the problem
            is one and `prefers_dense_qp` (few variables to solve for, or
            dense), and a cone program otherwise.
        quadratic_objective: a cone program keeps the objective's quadratic
            part as P (CVXPY's `use_quad_obj`), where it would otherwise
            be written as a second-order cone with an extra variable (the
            ellipsoid projection with n = 20: 61 variables and one cone of
            22 rows, 40 of its 63 rows equalities that define auxiliary
            variables, against 42 variables and 65 rows in two cones). Only
            the native SOCP solver takes such a program. Ignored for QPs and
            geometric programs.

    Returns:
        The CompiledProblem.
    """
    check_problem(problem, parameters, variables, gp)
    parameters = list(parameters)

    # CVXPY needs values to canonicalize geometric programs; restore after.
    saved = [p.value for p in parameters]
    for p in parameters:
        if p.value is None:
            p.value = np.ones(p.shape)
    try:
        kind: ProgramKind = "cone"
        if quadratic is not False and not gp:
            data, chain, inverse_data = _canonicalize(problem, gp, quad_obj=True)
            param_prob = data[cp.settings.PARAM_PROB]
            cones = _cone_dims(param_prob)
            if cones.is_polyhedral:
                kind = "qp"  # with quadratic=None, kept if the QP solver is preferred (below)
            elif quadratic:
                raise ValueError(
                    "solver='QP' needs a quadratic program (only equality and "
                    f"inequality constraints after canonicalization), but this "
                    f"problem needs cones: SOC {list(cones.soc)}, PSD "
                    f"{list(cones.psd)}, exponential {cones.exp}."
                )
        elif quadratic and gp:
            raise ValueError("solver='QP' cannot solve geometric programs (gp=True).")
        quadratic_objective = quadratic_objective and not gp
        if kind == "cone" and not (quadratic_objective and quadratic is not False):
            # The first canonicalization kept the objective quadratic; do it again when that is not wanted,
            # or when quadratic=False skipped it.
            data, chain, inverse_data = _canonicalize(problem, gp, quad_obj=quadratic_objective)
            param_prob = data[cp.settings.PARAM_PROB]
            cones = _cone_dims(param_prob)
    finally:
        for p, value in zip(parameters, saved):
            p.value = value

    if getattr(param_prob, "lb_tensor", None) is not None or getattr(param_prob, "ub_tensor", None) is not None:
        raise ValueError("Variables with parametric bounds are not supported.")

    # Map the user's parameters to the columns of theta.
    if gp:
        log_params = chain.reductions[0].canon_methods._parameters
        solver_param = {p.id: log_params[p].id if p in log_params else p.id for p in parameters}
    else:
        solver_param = {p.id: p.id for p in parameters}
    col_of = param_prob.param_id_to_col
    reduced = _reduced_parameters(chain)
    placements = []
    for i, p in enumerate(parameters):
        solver_id = solver_param[p.id]
        if solver_id in col_of:
            placements.append((col_of[solver_id], np.ravel(np.arange(p.size).reshape(p.shape), order="F")))
        elif solver_id in reduced and reduced[solver_id][0] in col_of:
            reduced_id, selection = reduced[solver_id]
            placements.append((col_of[reduced_id], selection))
        else:
            raise ValueError(
                f"Parameter {_param_name(p, i)!r} has attributes that CVXPY replaces by a "
                "reduced parameter this library cannot read; use a plain parameter and constrain it.")
    theta_index = _theta_index(parameters, placements)

    num_vars = int(param_prob.x.size)
    num_rows = cones.num_rows
    q = sp.csr_matrix(param_prob.q)
    A_map, b_map = _split_constraint_tensor(param_prob, num_vars, num_rows)
    P_map = None
    if (kind == "qp" or quadratic_objective) and param_prob.P is not None and param_prob.P.nnz:
        P_map = _sparse_data_map(param_prob.P, (num_vars, num_vars), negate=False)

    infos = tuple(
        ParameterInfo(
            name=_param_name(p, i),
            shape=tuple(p.shape),
            size=int(p.size),
            log=gp and solver_param[p.id] != p.id,
        )
        for i, p in enumerate(parameters)
    )
    program = CompiledProblem(
        kind=kind,
        parameters=infos,
        theta_index=theta_index,
        num_vars=num_vars,
        cones=cones,
        c=sp.csr_matrix(q[:num_vars]),
        A=A_map,
        b=b_map,
        P=P_map,
        outputs=(),  # read off CVXPY's inverse chain below, once the program is kept
        gp=gp,
    )
    if kind == "qp" and quadratic is None:
        nonzeros = int(param_prob.A.nnz + (0 if param_prob.P is None else param_prob.P.nnz))
        if not prefers_dense_qp(_solved_size(program), num_vars, nonzeros):
            return compile_problem(problem, parameters, variables, gp=gp, quadratic=False,
                                   quadratic_objective=quadratic_objective)
    return dataclasses.replace(
        program, outputs=_output_maps(problem, variables, chain, inverse_data, num_vars, num_rows, gp))


def _solved_size(program: CompiledProblem) -> tuple[int, int]:
    """The variables and rows the QP solver solves with: the canonical ones less the variables its
    equalities define (`auxiliary_variables`) and those equalities."""
    auxiliary = find_auxiliary_variables(program)
    substituted = 0 if auxiliary is None else len(auxiliary.eliminated)
    return program.num_vars - substituted, program.cones.num_rows - substituted

"""The host path: batched cone programs through diffcp's solvers and derivative.

Solves, example by example, the cone program

    minimize cᵀx  subject to  Ax + s = b,  s ∈ K

with SCS, ECOS or Clarabel (through `diffcp.solve_internal`, which maps each
solver's conventions to SCS's), and applies the adjoint of the solution map
(x, y, s) ↦ (A, b, c) by implicit differentiation of the homogeneous residual
map, as diffcp does (Agrawal et al., "Differentiating through a cone
program", 2019).

Unlike `diffcp.solve_and_derivative_batch`, the forward pass does no
derivative work, and the backward pass rebuilds the derivative from the
solution alone: A's sparsity pattern is shared by the whole batch, so the
skew-symmetric embedding Q is scattered into place from precomputed indices
instead of being assembled with `scipy.sparse.bmat` per example. The solution
is all the state the backward pass needs, so nothing is kept between the two.

Every example is checked after its solve (`cone_solution_check`), whatever
the solver said: a point that fails is reported, never returned. Examples
that fail are solved once more with their data scaled to unit size
(`cone_scaling`), and those that still fail once more, as given, at the
registry's looser fallback accuracy (a tight target can stall an
interior-point solver on a large problem; the check still decides). Statuses are named the same way for every solver
(`cone_status`).

Limits: the derivative is that of the solution map at the returned
solution, accurate to about the solution's own accuracy; at points where the
solution map is not differentiable (degenerate problems, or canonical forms
whose auxiliary variables are not unique) it is a generalized derivative, as
in diffcp, and depends on which solution the solver returned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import diffcp
import diffcp._diffcp as diffcp_ext
import diffcp.cones as diffcp_cones
import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from keras_optlayers.core.compiler import CompiledProblem
from keras_optlayers.errors import SolverError
from keras_optlayers.solvers import cone_status, registry
from keras_optlayers.solvers.cone_scaling import DataScaling
from keras_optlayers.solvers.cone_solution_check import MEASURE_KEYS, ConeSolutionChecker
from keras_optlayers.solvers.dual_cone_projection import DualConeDerivative

# Above this size of the embedding (variables + rows + 1) the adjoint uses
# LSQR on a sparse operator instead of a dense factorization.
DENSE_DERIVATIVE_MAX_SIZE = 600

class ConeSolver:
    """Solves and differentiates a compiled cone program for whole batches.

    Every returned point is checked (`cone_solution_check`): a point that
    fails the check is reported ("inaccurate", or "iteration limit" where the
    solver ran out of iterations), never returned as a solution, whatever the
    solver's status and the user's tolerances. Failed examples are solved
    once more with their data scaled to unit size (`cone_scaling`), then at
    the registry entry's `fallback_accuracy`.

    Args:
        program: a CompiledProblem of kind "cone".
        solver: "SCS", "ECOS" or "Clarabel" (the registry's cone solvers;
            `registry.default_cone_solver` picks one for a problem). Its
            registry entry's `default_settings` sit under every call's
            settings.
    """

    def __init__(self, program: CompiledProblem, solver: str):
        entry = registry.get_solver(solver)
        if entry.program != "cone" or entry.runs_in_xla:
            raise ValueError(f"ConeSolver runs {registry.cone_solver_names()}. Received: solver={solver!r}")
        self.solver = entry.name
        self._entry = entry
        self.default_settings = dict(entry.default_settings)
        if program.P is not None:
            raise ValueError(
                "The host cone solvers take a linear objective; compile the problem without quadratic_objective=True "
                f"(only the native SOCP solver takes P). Received: solver={solver!r}, a program with P")
        if self.solver == "ECOS" and program.cones.psd:
            raise ValueError("ECOS cannot solve problems with PSD cones; use SCS or Clarabel.")
        self.n = program.num_vars
        self.m = program.num_rows
        self.cone_dict = program.cones.as_dict()
        self._cones_cpp = diffcp_cones.parse_cone_dict_cpp(diffcp_cones.parse_cone_dict(self.cone_dict))
        self.rows, self.cols = program.A.rows, program.A.cols
        self.indptr = program.A.indptr
        self._embedding = _EmbeddingPattern(self.rows, self.cols, self.n, self.m)
        self._dual_derivative = DualConeDerivative(program.cones)
        self._checker = ConeSolutionChecker(program.cones, self.rows, self.cols, self.n, self.m)

    # -- forward -----------------------------------------------------------

    def solve(self, A_values: np.ndarray, b: np.ndarray, c: np.ndarray,
              settings: Mapping[str, Any] | None = None):
        """Solves each example; returns x (B, n), y (B, m), s (B, m).

        Raises:
            SolverError: naming each failed status and its batch indices.
        """
        x, y, s, statuses, _ = self.solve_with_status(A_values, b, c, settings)
        failures: dict[str, list[int]] = {}
        for i, status in enumerate(statuses):
            if status != cone_status.SOLVED:
                failures.setdefault(status, []).append(i)
        if failures:
            raise SolverError(self.solver, failures)
        return x, y, s

    def solve_with_status(self, A_values: np.ndarray, b: np.ndarray, c: np.ndarray,
                          settings: Mapping[str, Any] | None = None):
        """Solves each example and reports how each ended; never raises for one.

        Each example is solved as given; the examples that fail (any status
        but "solved") are solved once more with their data scaled to unit
        size (`cone_scaling`), which rescues data of extreme magnitude, and
        those that fail again once more as given at the registry entry's
        `fallback_accuracy`; each keeps its last outcome. The examples are shared out among a few
        threads: the solvers release the GIL while they work.

        Args:
            A_values (B, nnz), b (B, m), c (B, n): the batch's data.
            settings: the solver's own settings, over `default_settings`.

        Returns:
            x (B, n), y (B, m), s (B, m): the solutions; zeros for examples
                that failed.
            statuses: list of B status strings (see `cone_status`), "solved"
                exactly for the examples that passed the optimality check.
            info: dict of (B,) float arrays: "iterations", "solve_time"
                (seconds, wall clock; both summed over the two attempts),
                and the check's relative measures "primal_residual",
                "dual_residual", "gap", "primal_cone", "dual_cone" (NaN where
                the solver returned no point).
        """
        kwargs = {**self.default_settings, **(settings or {})}
        outcome = self._solve_and_check(A_values, b, c, kwargs, scaling=None)
        # The scaled retry rescues extreme magnitudes; the fallback runs on the
        # data as given: Clarabel's sparsemax (n = 1000) that stalls at 1e-12
        # passes the check at 1e-8 as given (primal residual 1.5e-7), and
        # fails it scaled (1e-6).
        for attempt_kwargs, scaled in ((kwargs, True), (self._fallback_settings(kwargs), False)):
            retry = np.flatnonzero([status != cone_status.SOLVED for status in outcome.statuses])
            if not retry.size or attempt_kwargs is None:
                break
            data = (A_values[retry], b[retry], c[retry])
            scaling = DataScaling.of(*data) if scaled else None
            outcome.update(retry, self._solve_and_check(*data, attempt_kwargs, scaling=scaling))
        solved = np.array([status == cone_status.SOLVED for status in outcome.statuses], dtype=bool)
        for array in (outcome.x, outcome.y, outcome.s):
            array[~solved] = 0.0
        return outcome.x, outcome.y, outcome.s, outcome.statuses, outcome.info

    def _fallback_settings(self, kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
        """`kwargs` with its accuracy targets loosened to the registry's fallback; None if nothing changes."""
        loosest = self._entry.fallback_accuracy
        if loosest is None:
            return None
        loosened = {key: max(kwargs[key], loosest) for key in self._entry.accuracy_settings
                    if key in kwargs and kwargs[key] < loosest}
        return {**kwargs, **loosened} if loosened else None

    def _solve_and_check(self, A_values, b, c, kwargs, scaling: DataScaling | None) -> _Outcome:
        """One attempt at every example: solve (scaled if asked), then check."""
        batch = A_values.shape[0]
        if scaling is not None:
            A_solver, b_solver, c_solver = scaling.data(A_values, b, c)
        else:
            A_solver, b_solver, c_solver = A_values, b, c
        x = np.zeros((batch, self.n))
        y = np.zeros((batch, self.m))
        s = np.zeros((batch, self.m))
        statuses = [""] * batch  # "" while the point is a candidate to check
        raw_statuses = [""] * batch
        iterations = np.full(batch, np.nan)
        solve_time = np.full(batch, np.nan)

        def solve_range(indices: range) -> None:
            for i in indices:
                A = sp.csc_matrix((A_solver[i], self.rows, self.indptr), shape=(self.m, self.n))
                start = time.perf_counter()
                try:
                    result = diffcp.solve_internal(
                        A, b_solver[i].copy(), c_solver[i].copy(), self.cone_dict,
                        solve_method=self.solver, raise_on_error=False, **kwargs)
                except diffcp.SolverError as err:  # ECOS raises instead of returning a status
                    statuses[i] = cone_status.from_ecos_error(str(err))
                    continue
                finally:
                    solve_time[i] = time.perf_counter() - start
                raw = raw_statuses[i] = str(result["info"]["status"])
                iterations[i] = result["info"].get("iter", np.nan)
                if not cone_status.is_candidate(raw):
                    statuses[i] = cone_status.from_solver(self.solver, raw, iterations[i], kwargs)
                elif not all(np.all(np.isfinite(result[k])) for k in "xys"):
                    statuses[i] = cone_status.solver_error(f"{self.solver} returned a non-finite point")
                else:
                    x[i], y[i], s[i] = result["x"], result["y"], result["s"]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # diffcp's "Solved/Inaccurate": the check below decides
            _run_in_threads(solve_range, batch)

        candidates = np.array([status == "" for status in statuses], dtype=bool)
        if scaling is not None:
            x, y, s = scaling.solution(x, y, s)
        check = self._checker(A_values, b, c, x, y, s)
        passed = check.passed()
        for i in np.flatnonzero(candidates):
            if passed[i]:
                statuses[i] = cone_status.SOLVED
            elif cone_status.hit_iteration_limit(self.solver, raw_statuses[i], iterations[i], kwargs):
                statuses[i] = cone_status.ITERATION_LIMIT
            else:
                statuses[i] = cone_status.inaccurate(check.reason(int(i)))
        info = {"iterations": iterations, "solve_time": solve_time}
        for key, values in zip(MEASURE_KEYS, check.measures()):
            info[key] = np.where(candidates, values, np.nan)
        return _Outcome(x, y, s, statuses, info)

    # -- backward ----------------------------------------------------------

    def adjoint(self, A_values, b, c, x, y, s, dx, dy, ds, mode: str = "auto",
                valid: np.ndarray | None = None):
        """Applies the adjoint of the solution map at each example's solution.

        The derivative is taken in the units `solve_with_status` solved in
        (data scaled to unit size, see `cone_scaling`), where it is better
        conditioned, and carried back to the original units exactly.

        Args:
            A_values, b, c: the batch's data, as passed to `solve`.
            x, y, s: the batch's solutions.
            dx, dy, ds: gradients of a loss with respect to x, y and s.
            mode: "dense" (batched LU of the dense derivative), "lsqr"
                (iterative, on diffcp's sparse operator, for large problems)
                or "auto" (dense up to DENSE_DERIVATIVE_MAX_SIZE).
            valid: optional (B,) bool: examples marked False (failed solves)
                get zero gradients and cost nothing.

        Returns:
            dA_values (B, nnz), db (B, m), dc (B, n): gradients of the loss
            with respect to the data.
        """
        if mode not in registry.DERIVATIVE_MODES:
            raise ValueError(f"`mode` must be one of {registry.DERIVATIVE_MODES}. Received: mode={mode!r}")
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            gradients = [np.zeros_like(A_values), np.zeros_like(b), np.zeros_like(c)]
            if valid.any():
                parts = self.adjoint(A_values[valid], b[valid], c[valid], x[valid], y[valid], s[valid],
                                     dx[valid], dy[valid], ds[valid], mode=mode)
                for gradient, part in zip(gradients, parts):
                    gradient[valid] = part
            return tuple(gradients)
        scaling = DataScaling.of(A_values, b, c)
        A_values, b, c = scaling.data(A_values, b, c)
        x, y, s = scaling.scaled_solution(x, y, s)
        dx, dy, ds = scaling.solution_cotangents(dx, dy, ds)
        n, m = self.n, self.m
        if mode == "auto":
            mode = "dense" if n + m + 1 <= DENSE_DERIVATIVE_MAX_SIZE else "lsqr"
        v = y - s
        D = self._dual_derivative(v)
        dw = -(np.sum(x * dx, 1) + np.sum(y * dy, 1) + np.sum(s * ds, 1))
        dz = np.concatenate([dx, D.apply(dy + ds) - ds, dw[:, None]], axis=1)
        if mode == "dense":
            z = np.concatenate([x, v, np.ones((x.shape[0], 1))], axis=1)
            r = self._solve_adjoint_dense(A_values, b, c, D, z, dz)
        else:
            r = self._solve_adjoint_lsqr(A_values, b, c, x, v, dz)
        pi_z = np.concatenate([x, y, np.ones((x.shape[0], 1))], axis=1)
        rows, cols = self.rows, self.cols
        dA = pi_z[:, cols] * r[:, n + rows] - pi_z[:, n + rows] * r[:, cols]
        db = pi_z[:, n:n + m] * r[:, -1:] - r[:, n:n + m]
        dc = pi_z[:, :n] * r[:, -1:] - r[:, :n]
        return scaling.data_gradients(dA, db, dc)

    def _solve_adjoint_dense(self, A_values, b, c, D, z, dz):
        """Solves Mᵀ r = dz with M = (Q - I) DΠ(z) + I, batched.

        DΠ(z) = blockdiag(I, D, 1) at w = 1, so M equals Q except in the
        columns of the dual variables, which D mixes. M is singular: the
        residual map vanishes on the whole ray through the solution z, so
        M z = 0. dz is orthogonal to z (that is what dw is for), so the
        system is consistent and any solution gives the same gradient. Adding
        z zᵀ to Mᵀ selects the solution orthogonal to z with one LU solve.
        Degenerate problems leave M with more null directions; examples whose
        bordered solve does not satisfy the system fall back to the normal
        equations M Mᵀ r = M dz with a tiny Tikhonov shift (which is what
        diffcp's dense mode solves, by LDLᵀ).
        """
        n, m = self.n, self.m
        size = n + m + 1
        r = np.zeros_like(dz)
        chunk = max(1, _DENSE_CHUNK_ENTRIES // (size * size))

        def solve_range(indices: range) -> None:
            for start in range(indices.start, indices.stop, chunk):
                part = slice(start, min(start + chunk, indices.stop))
                MT = np.swapaxes(self._derivative_matrix(A_values[part], b[part], c[part], D, part), 1, 2)
                r[part] = _solve_consistent_singular(MT, z[part], dz[part])

        # Many small factorizations: threads over the batch, one BLAS thread each.
        _run_in_threads(solve_range, dz.shape[0], one_blas_thread=True)
        return r

    def _derivative_matrix(self, A_values, b, c, D, part) -> np.ndarray:
        """M = (Q - I) DΠ(z) + I for the examples in `part`, (B, N, N)."""
        n, m = self.n, self.m
        M = self._embedding.dense(A_values, b, c)
        Q_dual = M[:, :, n:n + m].copy()
        Q_dual[:, np.arange(n, n + m), np.arange(m)] -= 1.0  # Q - I
        M[:, :, n:n + m] = Q_dual * D.diagonal[part, None, :]
        for group in D.groups:
            # Columns of each block: (B, N, G, k) times the blocks (B, G, k, k).
            M[:, :, n + group.indices] = np.einsum(
                "bngi,bgij->bngj", Q_dual[:, :, group.indices], group.matrices[part])
        M[:, np.arange(n, n + m), np.arange(n, n + m)] += 1.0
        return M

    def _solve_adjoint_lsqr(self, A_values, b, c, x, v, dz):
        """Least squares on diffcp's sparse operator (it releases the GIL)."""
        r = np.zeros_like(dz)

        def solve_range(indices: range) -> None:
            for i in indices:
                if np.any(dz[i]):
                    Q = self._embedding.sparse(A_values[i], b[i], c[i])
                    M = diffcp_ext.M_operator(Q, self._cones_cpp, x[i], v[i], 1.0)
                    r[i] = diffcp_ext.lsqr(M.transpose(), dz[i]).solution

        _run_in_threads(solve_range, dz.shape[0])
        return r


# Entries of the dense derivative held at once (about 64 MB of float64).
_DENSE_CHUNK_ENTRIES = 8_000_000
# Relative shift of the normal equations: small enough to leave the gradient
# unchanged to about 1e-9, large enough to make them positive definite.
_TIKHONOV = 1e-12
# A bordered solve is accepted when its residual is this small relative to dz.
_RESIDUAL_TOLERANCE = 1e-9
_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclasses.dataclass
class _Outcome:
    """Solutions, statuses and info of one attempt at a batch (see solve_with_status)."""

    x: np.ndarray
    y: np.ndarray
    s: np.ndarray
    statuses: list[str]
    info: dict[str, np.ndarray]

    def update(self, indices: np.ndarray, retry: _Outcome) -> None:
        """Takes a retry's outcome for `indices`; time and iterations add up."""
        for name in ("x", "y", "s"):
            getattr(self, name)[indices] = getattr(retry, name)
        for position, i in enumerate(indices):
            self.statuses[i] = retry.statuses[position]
        for name, values in retry.info.items():
            if name in ("iterations", "solve_time"):
                self.info[name][indices] = np.nansum([self.info[name][indices], values], axis=0)
            else:
                self.info[name][indices] = values


_POOL: ThreadPoolExecutor | None = None  # made on first use, shared by every call
_BLAS_CONTROLLER: ThreadpoolController | None = None  # made on first use


def _run_in_threads(work, count: int, one_blas_thread: bool = False) -> None:
    """Runs work(range) over 0..count split into contiguous ranges.

    With `one_blas_thread`, BLAS runs on one thread while the worker threads
    do. The controller finds the loaded BLAS libraries once: building it (as
    `threadpool_limits` does at every use) reads the process's memory map
    and the libraries' headers, 3.5 ms a call, a third of an LML layer's
    batch-1 forward and backward. Work run inline is left alone.
    """
    global _POOL, _BLAS_CONTROLLER
    threads = min(_THREADS, count)
    if threads <= 1:
        work(range(count))
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_THREADS, thread_name_prefix="keras_optlayers")
    limit: contextlib.AbstractContextManager = contextlib.nullcontext()
    if one_blas_thread:
        if _BLAS_CONTROLLER is None:
            _BLAS_CONTROLLER = ThreadpoolController()
        limit = _BLAS_CONTROLLER.limit(limits=1, user_api="blas")
    bounds = np.linspace(0, count, threads + 1).astype(int)
    with limit:
        for future in [_POOL.submit(work, range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]:
            future.result()


def _solve_consistent_singular(MT: np.ndarray, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """Solves the consistent singular systems MT r = dz, where M z = 0."""
    bordered = MT + z[:, :, None] * z[:, None, :]
    try:
        r = np.linalg.solve(bordered, dz[..., None])[..., 0]
        residual = np.linalg.norm(np.einsum("bij,bj->bi", MT, r) - dz, axis=1)
        bad = ~(residual <= _RESIDUAL_TOLERANCE * (1.0 + np.linalg.norm(dz, axis=1)))
    except np.linalg.LinAlgError:
        r, bad = np.zeros_like(dz), np.ones(len(dz), dtype=bool)
    if bad.any():
        M = np.swapaxes(MT[bad], 1, 2)
        normal = M @ MT[bad]
        diagonal = np.arange(normal.shape[1])
        normal[:, diagonal, diagonal] += _TIKHONOV * np.mean(normal[:, diagonal, diagonal], axis=1)[:, None]
        r[bad] = np.linalg.solve(normal, np.einsum("bij,bj->bi", M, dz[bad])[..., None])[..., 0]
    return r


class _EmbeddingPattern:
    """Builds Q = [[0, Aᵀ, c], [-A, 0, b], [-cᵀ, -bᵀ, 0]] from data values.

    The pattern depends only on A's sparsity, so the positions are computed
    once and every example only scatters its values.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n: int, m: int):
        N = n + m + 1
        last = N - 1
        var, con = np.arange(n), n + np.arange(m)
        self.size = N
        # Entry order: Aᵀ, -A, c, b, -cᵀ, -bᵀ.
        self.q_rows = np.concatenate([cols, n + rows, var, con, np.full(n, last), np.full(m, last)])
        self.q_cols = np.concatenate([n + rows, cols, np.full(n, last), np.full(m, last), var, con])
        order = sp.csc_matrix(
            (np.arange(1, self.q_rows.size + 1, dtype=float), (self.q_rows, self.q_cols)), shape=(N, N))
        self._csc_order = order.data.astype(np.int64) - 1
        self._csc_indices, self._csc_indptr = order.indices, order.indptr

    @staticmethod
    def _values(A_values, b, c):
        return np.concatenate([A_values, -A_values, c, b, -c, -b], axis=-1)

    def dense(self, A_values, b, c) -> np.ndarray:
        """Q for a batch: (B, N, N)."""
        Q = np.zeros((A_values.shape[0], self.size, self.size))
        Q[:, self.q_rows, self.q_cols] = self._values(A_values, b, c)
        return Q

    def sparse(self, A_values, b, c) -> sp.csc_matrix:
        data = self._values(A_values, b, c)[self._csc_order]
        return sp.csc_matrix((data, self._csc_indices, self._csc_indptr), shape=(self.size, self.size))

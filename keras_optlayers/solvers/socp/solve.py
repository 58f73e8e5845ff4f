"""Public entry of the native SOCP solver: validation, batching, dtype, gradient, statuses.

    minimize ½xᵀPx + cᵀx   subject to   Ax + s = b,   s ∈ K

with K = zero^z × nonneg^l × SOC(q₁) × … (SCS's convention and order, as in
`keras_optlayers.core.compiler.CompiledProblem`) and P positive semidefinite
or absent (zero); the dual is max −½xᵀPx − bᵀy s.t. Px + Aᵀy + c = 0,
y ∈ K*. The pieces: `equilibration` scales the
data, `qp.equality_elimination` removes the zero-cone rows, `interior_point`
solves the rest, `optimality_conditions` polishes the answer (its verdict
lets the loop stop early) and differentiates it, and `solution_check`
checks it in the caller's units.
"""

from __future__ import annotations

from typing import Any

import collections
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from keras_optlayers.core.compiler import CompiledProblem, ConeDims, SparseDataMap
from keras_optlayers.ops.affine_maps import SparseMap
from keras_optlayers.solvers.qp.convexity import convex_part, raise_if_non_convex
from keras_optlayers.solvers.qp.equality_elimination import (
    eliminate_equalities,
    equality_multipliers,
    primal_from_reduced,
)
from keras_optlayers.solvers import solution_replay
from keras_optlayers.solvers.qp.interior_point import solve_unconstrained_qp

# The QP entry's input helpers, shared rather than copied (they deserve a public home).
from keras_optlayers.solvers.qp.solve import _check_finite, _check_settings, _shape_text
from keras_optlayers.solvers.socp import status as socp_status
from keras_optlayers.solvers.socp.cones import ConeLayout
from keras_optlayers.solvers.socp.equilibration import equilibrate, residual_units, unscale
from keras_optlayers.solvers.socp.interior_point import solve_conic, starting_iterate
from keras_optlayers.solvers.socp.optimality_conditions import polish, solution_adjoint
from keras_optlayers.solvers.early_stop import solve_with_early_stop
from keras_optlayers.solvers.socp.solution_check import relative_measures, solution_passes
from keras_optlayers.solvers.shrinking_batch import is_small_batch
from keras_optlayers.solvers.static_shapes import dimension, shared_batch_size
from keras_optlayers.xla_context import in_xla_context

# Loose enough to save iterations, tight enough for the Newton polish that
# follows to finish the job. Measured against tol=1e-12 solves: ellipsoid, robust
# LP and SOC least squares agree to 3e-15 from 1e-8 and 5e-15 from 1e-7. At batch
# 128 (the benchmarks' samples, issue 12 stop 23), 1e-7 took 11.5 iterations on
# average against 12.6 at 1e-8 (8-11% less time forward and backward), one robust
# LP example ending 1.5e-10 from the tight solve (9e-14 from 1e-8); from 1e-6 it
# was 8e-8 off, so the polish does not make up for any stop.
DEFAULT_TOL = 1e-7
DEFAULT_MAX_ITER = 50
# The loop first stops here and the polish is tried: Newton's method on the
# conditions converges from much farther than `tol` asks. Measured on the
# benchmarks' samples at batch 128 (issue 12 stop 24): from 1e-5, the
# polished solutions of every ellipsoid projection and of 127 of 128 robust
# LPs met the conditions to rounding, 2.2 and 1.9 iterations (of 11.5 and
# 11.7) earlier. From 1e-4 more robust LPs had to go on (their polish had not
# converged), and going on cost more than the stop saved at batch 128.
POLISH_FROM_TOL = 1e-5

ConesLike = ConeDims | ConeLayout | Mapping[str, Any]


def cone_layout(cones: ConesLike) -> ConeLayout:
    """A `ConeLayout` from a `ConeDims`, a `ConeLayout`, or {"zero": int, "nonneg": int, "soc": sizes}.

    Raises:
        ValueError: for PSD or exponential cones, negative sizes, or unknown keys.
    """
    if isinstance(cones, ConeLayout):
        zero, nonneg, soc = cones.zero, cones.nonneg, cones.soc
    elif isinstance(cones, ConeDims):
        if cones.psd or cones.exp:
            raise ValueError(
                "Expected only zero, nonnegative and second-order cones (the SOCP solver has no PSD or exponential "
                f"cones). Received: cones.psd={list(cones.psd)}, cones.exp={cones.exp}"
            )
        zero, nonneg, soc = cones.zero, cones.nonneg, cones.soc
    elif isinstance(cones, Mapping):
        unknown = set(cones) - {"zero", "nonneg", "soc"}
        if unknown:
            raise ValueError(f"Expected cone keys among 'zero', 'nonneg', 'soc'. Received: unknown keys {sorted(unknown)}")
        zero, nonneg, soc = int(cones.get("zero", 0)), int(cones.get("nonneg", 0)), tuple(cones.get("soc", ()))
    else:
        raise ValueError(f"Expected `cones` to be a ConeDims, a ConeLayout or a dict. Received: cones={cones!r}")  # noqa: TRY004 (the project raises ValueError for bad input)
    soc = tuple(int(q) for q in soc)
    if int(zero) < 0 or int(nonneg) < 0 or any(q < 1 for q in soc):
        raise ValueError(f"Expected nonnegative cone sizes and SOC sizes of at least 1. Received: zero={zero}, nonneg={nonneg}, soc={soc}")
    return ConeLayout(int(zero), int(nonneg), soc)


def _validated_inputs(A, b, c, P, layout: ConeLayout):
    """Checks shapes against the cones; returns (A, b, c, P) in c's dtype (P None stays None) and whether any is batched."""
    c = tf.convert_to_tensor(c)
    dtype = c.dtype if c.dtype in (tf.float32, tf.float64) else tf.float64
    c = tf.cast(c, dtype)
    A = tf.cast(tf.convert_to_tensor(A), dtype)
    b = tf.cast(tf.convert_to_tensor(b), dtype)
    P = None if P is None else tf.cast(tf.convert_to_tensor(P), dtype)
    if c.shape.rank not in (1, 2) or c.shape[-1] is None:
        raise ValueError(f"Expected `c` to have shape (n,) or (batch, n) with n known. Received: c.shape={_shape_text(c.shape)}")
    n, m = c.shape[-1], layout.num_rows
    if A.shape.rank not in (2, 3) or tuple(A.shape[-2:]) != (m, n):
        raise ValueError(
            f"Expected `A` to have shape (m, n) or (batch, m, n) with m={m} (the cones' rows) and n={n}. "
            f"Received: A.shape={_shape_text(A.shape)}"
        )
    if b.shape.rank not in (1, 2) or b.shape[-1] != m:
        raise ValueError(f"Expected `b` to have shape (m,) or (batch, m) with m={m}. Received: b.shape={_shape_text(b.shape)}")
    if P is not None and (P.shape.rank not in (2, 3) or tuple(P.shape[-2:]) != (n, n)):
        raise ValueError(f"Expected `P` to have shape (n, n) or (batch, n, n) with n={n}. Received: P.shape={_shape_text(P.shape)}")
    named = [("A", A, 3), ("b", b, 2), ("c", c, 2)] + ([("P", P, 3)] if P is not None else [])
    batched = {name: t.shape[0] for name, t, rank in named if t.shape.rank == rank}
    known = {size for size in batched.values() if size is not None}
    if len(known) > 1:
        received = ", ".join(f"{name}.shape={_shape_text(t.shape)}" for name, t, _ in named if name in batched)
        raise ValueError(f"Expected all batched arguments to have the same batch size. Received: {received}")
    if m == 0:
        raise ValueError("Expected at least one constraint row. Received: cones with 0 rows")
    return A, b, c, P, bool(batched)


def _differentiable_solve(layout: ConeLayout, tol: tf.Tensor, max_iter: tf.Tensor, quadratic: bool):
    """(Ã, b̃, c̃[, P̃]) -> (x̃, ỹ, s̃, status) on equilibrated float64 data, with its implicit gradient.

    With `quadratic` the solve takes P̃ as a fourth argument (and returns its
    gradient); without, the objective is linear and the loop skips every
    product with a quadratic term.

    The interior-point loop first stops at `POLISH_FROM_TOL` (or `tol`, if
    looser) and the Newton polish is tried from there; an example whose
    polished solution meets the optimality conditions to rounding
    (`optimality_conditions.SOLVED_VIOLATION`) is done. The others, and
    only they, iterate on to `tol` from where they stopped and are
    polished again (`early_stop`).
    """
    zero = layout.zero

    @tf.custom_gradient
    def solve(*data):
        A, b, c = data[:3]
        P = data[3] if quadratic else None

        def iterate():
            n = c.shape[-1]
            # A linear objective without equalities keeps the reduced Q None (zero): the loop skips its products.
            quadratic_term = P
            if P is None and zero:
                quadratic_term = tf.zeros([dimension(c), n, n], c.dtype)
            reduced = eliminate_equalities(quadratic_term, c, A[:, :zero], b[:, :zero], A[:, zero:], b[:, zero:])

            def polished(reduced, A, b, c, P, result):
                """The result in the program's variables, polished, and its status: (x, y, s, status, iterations)."""
                if layout.num_conic_rows:
                    s_conic, y_conic = result.s, result.z
                else:
                    s_conic, y_conic = b[:, zero:zero], b[:, zero:zero]
                x = primal_from_reduced(reduced, result.y)
                stationarity_without_equalities = c + tf.linalg.matvec(A[:, zero:], y_conic, adjoint_a=True)
                if P is not None:
                    stationarity_without_equalities += tf.linalg.matvec(P, x)
                y_equality = equality_multipliers(reduced, stationarity_without_equalities)
                y = tf.concat([y_equality, y_conic], axis=1)
                s = tf.concat([tf.zeros_like(y_equality), s_conic], axis=1)
                x, y, s, solved_to_rounding = polish(layout, A, b, c, P, x, y, s)
                status = result.status
                if zero:
                    b_scale = 1.0 + tf.reduce_max(tf.abs(b[:, :zero]), axis=-1)
                    status = tf.where(reduced.equality_residual > tol * b_scale, socp_status.PRIMAL_INFEASIBLE, status)
                return (x, y, s, status, result.iterations), solved_to_rounding

            if not layout.num_conic_rows:
                unconstrained = solve_unconstrained_qp(reduced.Q, reduced.c, tol)
                solution, _ = polished(reduced, A, b, c, P, unconstrained)
                return solution

            def iterate_and_polish(data, start, run_tol, iterations_left):
                reduced, A, b, c, P = data  # the examples that iterate, all of them or those going on past the early stop
                result = solve_conic(layout, reduced.Q, reduced.c, reduced.F, reduced.g, tol=run_tol,
                                     max_iter=iterations_left, start=start)
                solution, solved_to_rounding = polished(reduced, A, b, c, P, result)
                # The Newton polish takes only the steps that lower the residual: its only verdict is rounding.
                return result, solution, solved_to_rounding, solved_to_rounding

            return solve_with_early_stop(
                iterate_and_polish, (reduced, A, b, c, P), starting_iterate(layout, reduced.Q, reduced.c, reduced.F, reduced.g),
                tol=tol, polish_from_tol=POLISH_FROM_TOL, max_iter=max_iter, solved=socp_status.SOLVED, running=socp_status.RUNNING)

        x, y, s, status, iterations = solution_replay.recorded_or_replayed(iterate, count=5)

        def gradient(grad_x, grad_y, grad_s, _grad_status, _grad_iterations):
            grad_x = tf.zeros_like(x) if grad_x is None else grad_x
            grad_y = tf.zeros_like(y) if grad_y is None else grad_y
            grad_s = tf.zeros_like(s) if grad_s is None else grad_s
            return solution_adjoint(layout, A, P, x, y, s, grad_x, grad_y, grad_s)

        return (x, y, s, status, iterations), gradient

    return solve


def _batched(A, b, c, P) -> list[tf.Tensor]:
    """Those of A, b, c and P (None allowed) that carry a leading batch dimension."""
    return [t for t, rank in ((A, 3), (b, 2), (c, 2), (P, 3)) if t is not None and t.shape.rank == rank]


def _solve_graph(A, b, c, P, layout: ConeLayout, tol: tf.Tensor, max_iter: tf.Tensor):
    """Broadcasts shared arguments over the batch, equilibrates, solves in float64, checks, casts back; P may be None."""
    batched = _batched(A, b, c, P)
    batch = shared_batch_size(batched)
    if len(batched) > 1 and not in_xla_context():
        sizes = tf.stack([tf.shape(t)[0] for t in batched])
        tf.debugging.assert_equal(sizes, batch, message="Expected all batched arguments to have the same batch size")
    dtype = c.dtype

    # The trailing dimensions are static (`_validated_inputs`), so a static batch keeps the shapes static.
    A64 = tf.cast(tf.broadcast_to(A, [batch, *A.shape[-2:]]), tf.float64)
    b64 = tf.cast(tf.broadcast_to(b, [batch, *b.shape[-1:]]), tf.float64)
    c64 = tf.cast(tf.broadcast_to(c, [batch, *c.shape[-1:]]), tf.float64)
    P64 = convex = None
    if P is not None:
        P64, convex = convex_part(
            tf.cast(tf.broadcast_to(P, [batch, *P.shape[-2:]]), tf.float64), dtype)
    # The cone algebra takes a run of equal-size SOC blocks at a time: solve with the blocks ordered by size.
    grouped, row_order = layout.grouped_by_size()
    A_grouped, b_grouped = (A64, b64) if row_order is None else (tf.gather(A64, row_order, axis=1), tf.gather(b64, row_order, axis=1))
    scaling, A_scaled, b_scaled, c_scaled, P_scaled = equilibrate(grouped, A_grouped, b_grouped, c64, P64)
    scaled = (A_scaled, b_scaled, c_scaled) if P is None else (A_scaled, b_scaled, c_scaled, P_scaled)
    x, y, s, status, iterations = _differentiable_solve(grouped, tol, max_iter, quadratic=P is not None)(*scaled)
    x, y, s = unscale(scaling, x, y, s)
    if row_order is not None:
        original_rows = np.argsort(row_order)
        y, s = tf.gather(y, original_rows, axis=1), tf.gather(s, original_rows, axis=1)
    info = relative_measures(layout, A64, b64, c64, P64, x, y, s, residual_units(scaling))
    status = tf.where(tf.equal(status, socp_status.SOLVED) & ~solution_passes(info), socp_status.INACCURATE, status)
    if convex is not None:
        status = tf.where(convex, status, socp_status.NON_CONVEX)
    info["iterations"] = iterations
    return tf.cast(x, dtype), tf.cast(y, dtype), tf.cast(s, dtype), status, info


# Compiled solves for eager callers, keyed by (argument specs with a free
# batch size, cone layout); tol and max_iter are tensor arguments, so new
# values neither retrace nor keep another graph. Least recently used dropped first.
_COMPILED_SOLVES_LIMIT = 32
_COMPILED_SOLVES: collections.OrderedDict[tuple, solution_replay.CompiledSolve] = collections.OrderedDict()


def _compiled_solve(tensors: list[tf.Tensor], layout: ConeLayout):
    """The compiled solve eager calls run on [A, b, c] or [A, b, c, P] (`solution_replay.CompiledSolve`); a new batch size does not retrace
    (a small batch gets traces of its own inside it: `small_batch`)."""
    specs = tuple(
        tf.TensorSpec([None] + t.shape[1:].as_list() if t.shape.rank == rank else t.shape, t.dtype)
        for t, rank in zip(tensors, (3, 2, 2, 3))
    )
    key = (specs, layout)
    if key in _COMPILED_SOLVES:
        _COMPILED_SOLVES.move_to_end(key)
    else:
        _COMPILED_SOLVES[key] = solution_replay.CompiledSolve(
            lambda inputs, settings: _solve_graph(
                inputs[0], inputs[1], inputs[2], inputs[3] if len(inputs) > 3 else None, layout, settings[0], settings[1]),
            differentiable=3,
            input_signature=[list(specs), [tf.TensorSpec([], tf.float64), tf.TensorSpec([], tf.int32)]],
        )
        if len(_COMPILED_SOLVES) > _COMPILED_SOLVES_LIMIT:
            _COMPILED_SOLVES.popitem(last=False)
    return _COMPILED_SOLVES[key]


def socp_solve(
    A,
    b,
    c,
    cones: ConesLike,
    *,
    P=None,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    check_status: bool = True,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Solves a batch of second-order cone programs, differentiably, with TensorFlow ops only.

        minimize ½xᵀPx + cᵀx   subject to   Ax + s = b,   s ∈ K

    K = zero^z × nonneg^l × SOC(q₁) × … in that row order (SCS's
    convention); y is the dual variable (Px + Aᵀy + c = 0, y ∈ K*). A
    quadratic objective given as P is solved as it is, where writing it as
    a second-order cone (CVXPY's form for SCS without `use_quad_obj`) would
    add a variable and a cone of n + 2 rows. Each argument
    is shared or batched with a leading batch dimension (told apart by
    rank); shared arguments' gradients are summed over the batch. Solved in
    float64 whatever the input dtype by a batched primal-dual interior-point
    method (Nesterov–Todd scaling, Mehrotra predictor-corrector) after Ruiz
    equilibration, with the zero-cone rows eliminated through an SVD;
    differentiated implicitly through the optimality conditions at the
    solution, not through the iterations. Gradients flow through x, y and s.

    Args:
        A: (m, n) or (B, m, n), dense; m = the cones' total rows.
        b: (m,) or (B, m).
        c: (n,) or (B, n). Its dtype (float32 or float64; anything else
            means float64) is the dtype of the results.
        cones: a `keras_optlayers.core.compiler.ConeDims` (no PSD or
            exponential cones), a `ConeLayout`, or a dict
            {"zero": int, "nonneg": int, "soc": tuple of sizes}.
        P: (n, n) or (B, n, n) positive semidefinite, or None for a linear
            objective; only its symmetric part is used. Checked: an
            eigenvalue below −1e4·eps·max|Pᵢⱼ| (eps of the input dtype) is
            an error.
        tol: relative tolerance of the loop's stopping rule, in equilibrated
            units. The loop first stops at 1e-5 (`POLISH_FROM_TOL`) and
            polishes; only the examples whose polished solution does not meet
            the optimality conditions to rounding go on to `tol`. The solution
            must also pass a fixed check in the caller's units
            (`solution_check`, 1e-6 relative) or its status is "inaccurate";
            `tol` cannot loosen that.
        max_iter: iteration limit for the whole batch.
        check_status: raise if an example is not solved.

    Returns:
        (x, y, s, status): x (B, n), y (B, m), s (B, m) in c's dtype and
        status (B,) int32 codes named in `STATUS_NAMES` (0 is solved); the
        leading dimension is dropped when no argument is batched. A failed
        example (with check_status=False) carries its last iterate.

    Raises:
        ValueError: on a wrong shape, cone description, or NaN/Inf in an
            argument (inside a graph: a failing `tf.debugging` check);
            eagerly, when P is not positive semidefinite (naming its
            smallest eigenvalue and batch index).
        keras_optlayers.errors.SolverError: eagerly, when an example is
            infeasible, unbounded, stopped at the iteration limit, inaccurate
            or hit a numerical error, naming statuses and batch indices;
            inside a `tf.function` an `InvalidArgumentError` with that text
            (there a non-convex P is one of these statuses).

    Limits:
        Dense linear algebra: each iteration factors an n × n matrix, and the
        polish and the gradient solve (n + 2m) square systems; meant for n, m up to a
        few hundred. Under XLA no status is checked (a warning says so):
        pass check_status=False and read the statuses. Infeasibility and
        unboundedness come from certificates the iterates approach; nearly
        infeasible problems may end at the iteration limit. Gradients assume
        a unique, strictly complementary solution and no redundant zero rows.
    """
    x, y, s, status, _ = _solve(A, b, c, P, cones, tol, max_iter, check_status)
    return x, y, s, status


def socp_solve_with_info(
    A,
    b,
    c,
    cones: ConesLike,
    *,
    P=None,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
    """`socp_solve` with check_status=False, plus solver statistics per example.

    Returns:
        (x, y, s, status, info), the first four as in `socp_solve`; info maps
        "iterations" to (B,) int32 (the interior-point iterations each
        example took) and "primal_residual", "dual_residual", "gap", "complementarity", "cone"
        to (B,) float64, the relative measures of the after-the-fact check
        (see `solution_check`), whatever the status.
    """
    return _solve(A, b, c, P, cones, tol, max_iter, check_status=False)


def _solve(A, b, c, P, cones: ConesLike, tol: float, max_iter: int, check_status: bool):
    _check_settings(tol, max_iter)
    layout = cone_layout(cones)
    A, b, c, P, batched = _validated_inputs(A, b, c, P, layout)
    xla = in_xla_context()
    if not xla:
        checked = _check_finite({"A": A, "b": b, "c": c} | ({} if P is None else {"P": P}))
        A, b, c, P = checked["A"], checked["b"], checked["c"], checked.get("P")
    settings = (tf.cast(tol, tf.float64), tf.cast(max_iter, tf.int32))
    if tf.executing_eagerly():
        tensors = [A, b, c] if P is None else [A, b, c, P]
        small_batch = is_small_batch(shared_batch_size(_batched(A, b, c, P)))
        x, y, s, status, info = _compiled_solve(tensors, layout)(tensors, settings, small_batch=small_batch)
        if P is not None:
            raise_if_non_convex(status, P)
    else:
        x, y, s, status, info = _solve_graph(A, b, c, P, layout, *settings)
    if check_status:
        x, y, s = socp_status.REPORT.enforce(status, [x, y, s], "socp_solve")
    if not batched:
        x, y, s, status = x[0], y[0], s[0], status[0]
        info = {name: value[0] for name, value in info.items()}
    return x, y, s, status, info


def _dense_matrix(name: str, data_map: SparseDataMap, values) -> tf.Tensor:
    """The dense (B, rows, cols) matrix of a compiled `SparseDataMap` from its values (B, nnz), checked."""
    values = tf.convert_to_tensor(values)
    if values.shape.rank != 2 or values.shape[-1] != len(data_map.rows):
        raise ValueError(f"Expected `{name}` to have shape (batch, {len(data_map.rows)}). Received: {name}.shape={_shape_text(values.shape)}")
    return tf.reshape(SparseMap(data_map.scatter())(values), [-1, *data_map.shape])


def dense_constraint_matrix(program: CompiledProblem, A_values: tf.Tensor) -> tf.Tensor:
    """The dense (B, m, n) A of `program` from its values (B, nnz) at (program.A.rows, program.A.cols)."""
    return _dense_matrix("A_values", program.A, A_values)


def solve_compiled_socp(
    program: CompiledProblem,
    A_values,
    b,
    c,
    *,
    P_values=None,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
    """`socp_solve_with_info` on a compiled cone program's data.

    Args:
        program: a `CompiledProblem` of kind "cone" with only zero, nonneg
            and SOC cones.
        A_values: (B, nnz) values of A in `program.A`'s sparsity pattern
            (`program.A.matrix @ theta`, transposed).
        b: (B, m) = (`program.b @ theta`)ᵀ; c: (B, n) = (`program.c @ theta`)ᵀ.
        P_values: (B, nnz) values of P in `program.P`'s sparsity pattern, for
            a program compiled with `quadratic_objective=True` (and only then).
        tol, max_iter: as in `socp_solve`.

    Returns:
        (x, y, s, status, info) as in `socp_solve_with_info`, batched.
    """
    if program.kind != "cone":
        raise ValueError(f"Expected a cone program (compile_problem(..., quadratic=False)). Received: program.kind={program.kind!r}")
    if (P_values is None) != (program.P is None):
        raise ValueError(
            "Expected `P_values` exactly when the program keeps a quadratic objective (compiled with "
            f"quadratic_objective=True). Received: P_values is None={P_values is None}, program.P is None={program.P is None}")
    A = dense_constraint_matrix(program, A_values)
    P = None if program.P is None else _dense_matrix("P_values", program.P, P_values)
    return socp_solve_with_info(A, b, c, cone_layout(program.cones), P=P, tol=tol, max_iter=max_iter)

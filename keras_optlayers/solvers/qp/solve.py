"""Public entry of the native QP solver: validation, batching, gradient, dispatch.

    minimize ½ xᵀPx + qᵀx   subject to   Ax = b,  Gx ≤ h

solved for a batch of problems with TensorFlow ops only (no host callback),
so it runs eagerly, in `tf.function`, in Keras `model.fit`, under XLA, and in
exported SavedModels. Eager calls run a `tf.function` traced once per input
signature (`tol` and `max_iter` are arguments of it, not part of its key).

The pipeline of one solve: validation; P's convexity (`convexity`); rows
with h ≥ `INFINITE_BOUND` dropped; equilibration (`scaling`); equalities
eliminated (`equality_elimination`); interior-point iterations
(`interior_point`), first to `POLISH_FROM_TOL`, then, for the examples whose
polishing on the active set (`polish`) did not reach rounding, on to `tol`;
unscaling; the after-the-fact check of the returned
point against the original data (`solution_check`), which turns "solved"
into "inaccurate" when it fails. The gradient is the KKT adjoint
(`kkt_adjoint`) of the scaled problem, chained through the scaling.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf

from keras_optlayers.solvers import solution_replay
from keras_optlayers.solvers.qp import solution_check
from keras_optlayers.solvers.qp import status as qp_status
from keras_optlayers.solvers.qp.convexity import convex_part, raise_if_non_convex
from keras_optlayers.solvers.qp.equality_elimination import (
    ReducedQP,
    eliminate_equalities,
    equality_multipliers,
    primal_from_reduced,
)
from keras_optlayers.solvers.qp.interior_point import (
    InteriorPointResult,
    solve_inequality_qp,
    solve_unconstrained_qp,
    starting_iterate,
)
from keras_optlayers.solvers.qp.kkt_adjoint import kkt_adjoint
from keras_optlayers.solvers.qp.polish import polish
from keras_optlayers.solvers.qp.reduced_kkt import matvec
from keras_optlayers.solvers.qp.scaling import equilibrate, unscale
from keras_optlayers.solvers.early_stop import solve_with_early_stop
from keras_optlayers.solvers.shrinking_batch import is_small_batch
from keras_optlayers.solvers.static_shapes import shared_batch_size
from keras_optlayers.xla_context import in_xla_context

DEFAULT_TOL = 1e-8
DEFAULT_MAX_ITER = 50
# The loop first stops here and polishes (`_solve_and_polish`). Measured on
# 128 random OptNet QPs (issue 12 stop 25): from 1e-6, 6.0 iterations on
# average against 7.0 at 1e-8, every polished solution within 2e-11 of the
# 1e-8 solve's, and the multipliers' rounding as small (eager against graph
# 4e-13). From 1e-5, 5.5 iterations, but the polish's larger correction
# left the multipliers' rounding 4x larger (1.8e-12).
POLISH_FROM_TOL = 1e-6
# Entries of h at least this large mean "no bound" (as in OSQP): their rows
# are replaced by 0ᵀx ≤ 1, which never binds and gets λ = 0 and zero gradients.
INFINITE_BOUND = 1e20
# Most compiled solves kept for eager calls (one per input signature), least
# recently used dropped first; each holds a traced graph of a few MiB.
COMPILED_SOLVES_LIMIT = 16

# Shape of each argument without its optional leading batch dimension.
_ARGUMENT_SHAPES = {"P": ("n", "n"), "q": ("n",), "A": ("p", "n"), "b": ("p",), "G": ("m", "n"), "h": ("m",)}


def _shape_text(shape) -> str:
    return str(tuple(shape.as_list())) if shape.rank is not None else "<unknown>"


def _validated_inputs(P, q, A, b, G, h) -> tuple[dict[str, tf.Tensor], bool]:
    """Checks shapes and batch sizes; returns the six tensors in q's dtype.

    A missing (A, b) or (G, h) pair becomes zero-row tensors, so the rest of
    the solver sees a fixed structure. Returns (tensors by name, batched).
    """
    if (A is None) != (b is None):
        raise ValueError(f"Expected `A` and `b` to be both given or both None. Received: A is None={A is None}, b is None={b is None}")
    if (G is None) != (h is None):
        raise ValueError(f"Expected `G` and `h` to be both given or both None. Received: G is None={G is None}, h is None={h is None}")
    q = tf.convert_to_tensor(q)
    dtype = q.dtype if q.dtype in (tf.float32, tf.float64) else tf.float64
    q = tf.cast(q, dtype)
    if q.shape.rank not in (1, 2) or q.shape[-1] is None:
        raise ValueError(f"Expected `q` to have shape (n,) or (batch, n) with n known. Received: q.shape={_shape_text(q.shape)}")
    n = q.shape[-1]
    tensors = {"q": q}
    for name, value in (("P", P), ("A", A), ("b", b), ("G", G), ("h", h)):
        tensors[name] = tf.zeros((0, n) if name in "AG" else (0,), dtype) if value is None else tf.cast(tf.convert_to_tensor(value), dtype)
    dims = {"n": n, "p": tensors["A"].shape[-2] if tensors["A"].shape.rank else None, "m": tensors["G"].shape[-2] if tensors["G"].shape.rank else None}
    batch_sizes = {}
    for name, template in _ARGUMENT_SHAPES.items():
        shape = tensors[name].shape
        expected = tuple(dims[d] for d in template)
        if shape.rank not in (len(template), len(template) + 1) or tuple(shape[-len(template):]) != expected or None in expected:
            described = ", ".join(f"{d}={dims[d]}" for d in dict.fromkeys(template))
            raise ValueError(
                f"Expected `{name}` to have shape {tuple(template)} or (batch, {', '.join(template)}) with {described}. "
                f"Received: {name}.shape={_shape_text(shape)}"
            )
        if shape.rank == len(template) + 1:
            batch_sizes[name] = shape[0]
    known = {size for size in batch_sizes.values() if size is not None}
    if len(known) > 1:
        received = ", ".join(f"{name}.shape={_shape_text(tensors[name].shape)}" for name in batch_sizes)
        raise ValueError(f"Expected all batched arguments to have the same batch size. Received: {received}")
    return tensors, bool(batch_sizes)


def _batched(tensors: dict[str, tf.Tensor]) -> list[tf.Tensor]:
    """The arguments, by name, that carry a leading batch dimension."""
    return [t for name, t in tensors.items() if t.shape.rank == len(_ARGUMENT_SHAPES[name]) + 1]


def _check_settings(tol, max_iter) -> None:
    """Raises ValueError for a tolerance that is not positive or fewer than one iteration.

    Tensors pass unchecked: a caller that traces once for every setting (the
    layers, so that a new setting does not compile, and keep, a new graph)
    has checked them as numbers already.
    """
    if not tf.is_tensor(tol) and not tol > 0:
        raise ValueError(f"Expected `tol` to be positive. Received: tol={tol}")
    if not tf.is_tensor(max_iter) and int(max_iter) < 1:
        raise ValueError(f"Expected `max_iter` to be at least 1. Received: max_iter={max_iter}")


def _check_finite(tensors: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Raises ValueError eagerly, or adds graph checks, for NaN or Inf inputs."""
    if tf.executing_eagerly():
        for name, tensor in tensors.items():
            if not np.all(np.isfinite(tensor.numpy())):
                raise ValueError(f"Expected `{name}` to contain only finite values. Received: {name} with NaN or Inf entries")
        return tensors
    return {name: tf.debugging.assert_all_finite(t, f"Expected `{name}` to contain only finite values") for name, t in tensors.items()}


def _polished(Q, c, F, g, result: InteriorPointResult) -> tuple[InteriorPointResult, tf.Tensor, tf.Tensor]:
    """`result` with its solved examples polished where that succeeds; (B,) bool each: where the point is a
    solution to rounding, and where the polish succeeded."""
    y, slack, lam, succeeded, to_rounding = polish(
        Q, c, F, g, result.y, result.s, result.lam, result.active, tf.equal(result.status, qp_status.SOLVED))
    return result._replace(y=y, s=slack, lam=lam), to_rounding, succeeded


def _solve_and_polish(Q, c, F, g, tol: tf.Tensor, max_iter: tf.Tensor) -> InteriorPointResult:
    """The inequality-only QP solved to `tol` and polished, the loop stopping early where the polish finishes it.

    The loop first stops at `POLISH_FROM_TOL` (or `tol`, if looser) and
    polishes: a polished point whose residuals are within
    `polish.ROUNDING_TOLERANCE` is a solution to rounding whatever `tol`
    asked (`polish`'s own acceptance test alone is not enough: its 1e-9
    bounds the residuals, not the error, on an ill-conditioned active set).
    The other examples, and only they, iterate on to `tol` from where they
    stopped and are polished again (`early_stop`).
    """
    def iterate_and_polish(data, start, run_tol, iterations_left):
        result = solve_inequality_qp(*data, tol=run_tol, max_iter=iterations_left, start=start)
        return (result, *_polished(*data, result))

    return solve_with_early_stop(
        iterate_and_polish, (Q, c, F, g), starting_iterate(Q, c, F, g), tol=tol,
        polish_from_tol=POLISH_FROM_TOL, max_iter=max_iter, solved=qp_status.SOLVED, running=qp_status.RUNNING)


def _differentiable_solve(tol: tf.Tensor, max_iter: tf.Tensor):
    """The batched float64 solve of scaled data (P, q, A, b, G, h) -> (x, ν, λ, status, iterations), with its gradient."""

    @tf.custom_gradient
    def solve(P, q, A, b, G, h):
        if A.shape[-2] == 0:
            reduced = eliminate_equalities(P, q, A, b, G, h)  # no work: nothing to record
        else:
            # The elimination (an SVD of A) enters the gradient as constants: its adjoint is `kkt_adjoint`'s.
            reduced = ReducedQP(*solution_replay.recorded_or_replayed(
                lambda: eliminate_equalities(P, q, A, b, G, h), count=len(ReducedQP._fields)))

        def iterate():
            if G.shape[-2] == 0:
                result = solve_unconstrained_qp(reduced.Q, reduced.c, tol)
            else:
                result = _solve_and_polish(reduced.Q, reduced.c, reduced.F, reduced.g, tol, max_iter)
            x = primal_from_reduced(reduced, result.y)
            lam = result.lam
            nu = equality_multipliers(reduced, matvec(P, x) + q + tf.linalg.matvec(G, lam, adjoint_a=True))
            status = result.status
            if A.shape[-2] > 0:
                # b is scaled to at most one: a residual of x₀ = A⁺b above rounding means b is outside A's range.
                inconsistent = reduced.equality_residual > solution_check.acceptance_tolerance(tol) * (1.0 + tf.reduce_max(tf.abs(b), axis=-1))
                status = tf.where(inconsistent, qp_status.PRIMAL_INFEASIBLE, status)
            return x, nu, lam, result.s, status, result.iterations

        x, nu, lam, slack, status, iterations = solution_replay.recorded_or_replayed(iterate, count=6)

        def gradient(grad_x, grad_nu, grad_lam, _grad_status, _grad_iterations):
            grad_nu = tf.zeros_like(nu) if grad_nu is None else grad_nu
            grad_lam = tf.zeros_like(lam) if grad_lam is None else grad_lam
            return kkt_adjoint(reduced, P, G, x, nu, lam, slack, grad_x, grad_nu, grad_lam)

        return (x, nu, lam, status, iterations), gradient

    return solve


def _solve_graph(P, q, A, b, G, h, tol: tf.Tensor, max_iter: tf.Tensor):
    """Broadcasts shared arguments over the batch, solves in float64, checks, casts back.

    Returns (x, ν, λ, status, info) with info as in `qp_solve_with_info`.
    """
    tensors = {"P": P, "q": q, "A": A, "b": b, "G": G, "h": h}
    batched = _batched(tensors)
    batch = shared_batch_size(batched)
    if len(batched) > 1 and not in_xla_context():
        sizes = tf.stack([tf.shape(t)[0] for t in batched])
        tf.debugging.assert_equal(sizes, batch, message="Expected all batched arguments to have the same batch size")
    dtype = q.dtype
    P, q, A, b, G, h = (
        tf.cast(tf.broadcast_to(t, [batch, *t.shape[-len(_ARGUMENT_SHAPES[name]):]]), tf.float64)
        for name, t in tensors.items()
    )
    tol = tf.cast(tol, tf.float64)
    P, convex = convex_part(P, dtype)
    unbounded_rows = h >= INFINITE_BOUND
    G = tf.where(unbounded_rows[:, :, None], tf.zeros_like(G), G)
    h = tf.where(unbounded_rows, tf.ones_like(h), h)

    scaled, scaling = equilibrate(P, q, A, b, G, h)
    x, nu, lam, status, iterations = _differentiable_solve(tol, max_iter)(*scaled)
    x, nu, lam = unscale(scaling, x, nu, lam)

    units = solution_check.Units(scaling.row_units(A), scaling.row_units(G), tf.reduce_max(scaling.row_units(P), axis=-1))
    residuals = solution_check.residuals(P, q, A, b, G, h, x, nu, lam, units)
    passed = solution_check.accepted(residuals, solution_check.acceptance_tolerance(tol))
    status = tf.where(tf.equal(status, qp_status.SOLVED) & ~passed, qp_status.INACCURATE, status)
    status = tf.where(convex, status, qp_status.NON_CONVEX)
    info = {
        "iterations": iterations,
        "primal_residual": residuals.primal,
        "dual_residual": residuals.dual,
        "gap": residuals.gap,
    }
    return tf.cast(x, dtype), tf.cast(nu, dtype), tf.cast(lam, dtype), status, info


# Compiled solves for eager calls, keyed by the six arguments' TensorSpecs
# (batch size left free), least recently used first; at most COMPILED_SOLVES_LIMIT.
_COMPILED_SOLVES: collections.OrderedDict[tuple, solution_replay.CompiledSolve] = collections.OrderedDict()


def _compiled_solve(tensors):
    """The compiled solve eager calls run (`solution_replay.CompiledSolve`): one per argument structure, shapes and dtypes.

    Its input signature leaves the batch size free, so a new batch size does
    not retrace; a small batch gets traces of its own inside it (`small_batch`
    of `CompiledSolve`), static down to the loop. The other dimensions stay static (the solver branches on
    them). `tol` and `max_iter` are scalar tensor arguments, so new values
    do not retrace either.
    """
    specs = tuple(
        tf.TensorSpec([None] + t.shape[1:].as_list() if t.shape.rank > len(_ARGUMENT_SHAPES[name]) else t.shape, t.dtype)
        for name, t in zip(_ARGUMENT_SHAPES, tensors)
    )
    if specs in _COMPILED_SOLVES:
        _COMPILED_SOLVES.move_to_end(specs)
    else:
        _COMPILED_SOLVES[specs] = solution_replay.CompiledSolve(
            lambda inputs, settings: _solve_graph(*inputs, *settings),
            differentiable=3,
            input_signature=[list(specs), [tf.TensorSpec([], tf.float64), tf.TensorSpec([], tf.int32)]],
        )
        while len(_COMPILED_SOLVES) > COMPILED_SOLVES_LIMIT:
            _COMPILED_SOLVES.popitem(last=False)
    return _COMPILED_SOLVES[specs]


def _solve(P, q, A, b, G, h, tol, max_iter, check_status):
    _check_settings(tol, max_iter)
    tensors, batched = _validated_inputs(P, q, A, b, G, h)
    xla = in_xla_context()
    if not xla:
        tensors = _check_finite(tensors)
    args = [tensors[name] for name in _ARGUMENT_SHAPES]
    settings = (tf.cast(tol, tf.float64), tf.cast(max_iter, tf.int32))
    if tf.executing_eagerly():
        small_batch = is_small_batch(shared_batch_size(_batched(tensors)))
        x, nu, lam, status, info = _compiled_solve(args)(args, settings, small_batch=small_batch)
        raise_if_non_convex(status, tensors["P"])
    else:
        x, nu, lam, status, info = _solve_graph(*args, *settings)
    if check_status:
        x, nu, lam = qp_status.REPORT.enforce(status, [x, nu, lam], "qp_solve")
    if not batched:
        x, nu, lam, status = x[0], nu[0], lam[0], status[0]
        info = {name: value[0] for name, value in info.items()}
    return x, nu, lam, status, info


def qp_solve_with_info(
    P,
    q,
    A=None,
    b=None,
    G=None,
    h=None,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
    """`qp_solve_with_status`, plus solver statistics per example.

    Returns:
        (x, nu, lam, status, info), the first four as in
        `qp_solve_with_status`; info maps "iterations" to (B,) int32 (the
        interior-point iterations each example took) and "primal_residual",
        "dual_residual", "gap" to (B,) float64, the relative residuals of the
        after-the-fact check (see `solution_check`), whatever the status.
        Without a batched argument the leading dimension is dropped.
    """
    return _solve(P, q, A, b, G, h, tol, max_iter, check_status=False)


def qp_solve_with_status(
    P,
    q,
    A=None,
    b=None,
    G=None,
    h=None,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Solves a batch of QPs and returns each example's status; never raises for a failed solve.

    Same arguments as `qp_solve`. Gradients flow through x, ν and λ.

    Returns:
        (x, nu, lam, status): x (B, n), ν (B, p), λ (B, m) in q's dtype and
        status (B,) int32 with names in `STATUS_NAMES` (0 is solved); without
        a batched argument the leading dimension is dropped. A failed
        example's x, ν, λ are its last iterate, finite but not a solution.

    Raises:
        ValueError: as `qp_solve` for bad input, including (eagerly) a P that
            is not positive semidefinite; in a graph that is the status
            "non-convex (P not positive semidefinite)" instead.
    """
    return _solve(P, q, A, b, G, h, tol, max_iter, check_status=False)[:4]


def qp_solve(
    P,
    q,
    A=None,
    b=None,
    G=None,
    h=None,
    *,
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    return_duals: bool = False,
    check_status: bool = True,
):
    """Solves a batch of convex QPs, differentiably, with TensorFlow ops only.

        minimize ½ xᵀPx + qᵀx   subject to   Ax = b,  Gx ≤ h

    Each argument is either shared, or batched with a leading batch
    dimension (told apart by rank); shared arguments' gradients are summed
    over the batch. The data are equilibrated (`scaling`), then solved by a
    batched primal-dual interior-point method (Mehrotra predictor-corrector,
    equalities eliminated by an SVD of A) in float64 whatever the input
    dtype, and every returned point is checked against the original data
    (`solution_check`); differentiated implicitly through the KKT conditions
    at the solution (as OptNet), not through the iterations.

    Accuracy: at the default `tol`, well-posed float64 problems (strictly
    complementary, data within a few orders of magnitude of each other)
    come within about 1e-8 of the exact solution, relative to its size.
    float32 inputs are solved in float64 and the results rounded to
    float32: accurate to float32 rounding (about 1e-7 relative) plus the
    error of the float32 data themselves.

    Args:
        P: (n, n) or (B, n, n), positive semidefinite (zero for an LP); only
            its symmetric part is used. Checked: an eigenvalue below
            −1e4·eps·max|Pᵢⱼ| (eps of the input dtype) is an error.
        q: (n,) or (B, n). Its dtype (float32 or float64; anything else
            means float64) is the dtype of the results; other arguments are
            cast to it.
        A, b: (p, n) and (p,), or batched; None for no equalities. Redundant
            rows are allowed when consistent.
        G, h: (m, n) and (m,), or batched; None for no inequalities. Entries
            of h at or above 1e20 mean no bound (the row is dropped).
        tol: relative tolerance of the interior-point iterations on the
            (scaled) primal and dual residuals and the duality gap (see
            `interior_point`). The loop first stops at 1e-6
            (`POLISH_FROM_TOL`) and polishes; only the examples whose
            polished point is not a solution to rounding go on to `tol`.
            The after-the-fact check accepts relative residuals up to tol,
            clipped to [1.5e-8, 1e-5]: a loose `tol` gives "inaccurate"
            rather than a wrong "solved".
        max_iter: iteration limit for the whole batch (each iteration stops
            changing the examples that are already solved).
        return_duals: also return the multipliers ν (equalities) and λ ≥ 0
            (inequalities) of the Lagrangian ½xᵀPx + qᵀx + νᵀ(Ax − b) +
            λᵀ(Gx − h).
        check_status: raise if an example is not solved (below).

    Returns:
        x of shape (B, n), or (n,) when no argument is batched; with
        `return_duals`, (x, nu, lam) with ν (B, p) and λ (B, m) (p or m is 0
        when that pair is None).

    Raises:
        ValueError: on a wrong shape, inconsistent batch sizes, or NaN/Inf in
            an argument (inside a graph: a failing `tf.debugging` check);
            eagerly, when P is not positive semidefinite (naming its
            smallest eigenvalue and batch index; raised once the batch's
            solve returns).
        keras_optlayers.errors.SolverError: eagerly, when an example is not
            solved: infeasible, unbounded, stopped at the iteration limit,
            inaccurate (failed the after-the-fact check), a numerical error;
            the message lists each status with its batch indices. Inside a
            `tf.function` an `InvalidArgumentError` with the same text is
            raised instead (tf.Assert prints it C-escaped: ' appears as \\'),
            and a non-convex P is one of these statuses.

    Limits:
        Under XLA (jit_compile=True) asserts are dropped and string ops do
        not compile, so no status is checked (a warning says so at trace
        time), nor are NaN inputs or P's convexity (a non-convex P only
        shows as its status): use `qp_solve_with_status`.
        Infeasibility and unboundedness are detected from certificates the
        iterates approach (see `interior_point`); badly scaled or nearly
        infeasible problems may report the iteration limit or "inaccurate"
        instead. A problem whose solution mixes magnitudes far apart (see
        `scaling`) may be reported inaccurate.
    """
    x, nu, lam, _, _ = _solve(P, q, A, b, G, h, tol, max_iter, check_status)
    return (x, nu, lam) if return_duals else x

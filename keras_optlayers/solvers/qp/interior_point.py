"""Batched primal-dual interior-point iterations for inequality-only QPs.

Solves, for every example of a batch at once,

    minimize ½ yᵀ Q y + cᵀ y   subject to   F y + s = g,  s ≥ 0,

with Mehrotra's predictor-corrector method (centering σ = (1 − α_affine)³)
started from an infeasible point (the start of CVXOPT's `coneqp`). Each iteration factors the reduced KKT
matrix Q + Fᵀ diag(λ/s) F once (`reduced_kkt.factor`) and solves with it
three times (predictor, corrector, one refinement step). Examples stop
changing once they have a status, and leave the working batch as it empties
(`shrinking_batch`); the loop is bounded by `max_iter` and compiles under XLA.

Statuses (see `status.py`), decided at every iterate:
  * solved: ‖Qy + c + Fᵀλ‖∞ ≤ tol (1 + ‖c‖∞), ‖Fy + s − g‖∞ ≤ tol (1 + ‖g‖∞)
    and sᵀλ ≤ tol (1 + |½yᵀQy + cᵀy|).
  * primal infeasible: the multipliers, scaled to λ̂ = λ/‖λ‖∞, are a Farkas
    certificate to `INFEASIBILITY_TOL`: ‖Fᵀλ̂‖∞ ≤ ε ‖F‖ and gᵀλ̂ ≤ −ε. On an
    infeasible problem the multipliers grow without bound along such a ray.
  * dual infeasible (unbounded below): the last step direction, scaled to
    unit ∞-norm, is a recession direction to ε: ‖Qd̂‖∞ ≤ ε ‖Q‖,
    max(Fd̂) ≤ ε ‖F‖ and cᵀd̂ < −ε ‖c‖.
  * numerical error: an iterate that is not finite (it is not taken).
  * iteration limit: none of the above within `max_iter` iterations.
Limits: the certificates are those the iterates approach, not proofs; a
nearly infeasible or nearly unbounded problem (or one whose data spans many
orders of magnitude) can end at the iteration limit instead.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from keras_optlayers.solvers.qp import reduced_kkt
from keras_optlayers.solvers.qp import status as qp_status
from keras_optlayers.solvers.qp.reduced_kkt import matvec, transposed_matvec
from keras_optlayers.solvers.shrinking_batch import iterate_while_running

# Threshold of the infeasibility certificates (relative, scale-free).
INFEASIBILITY_TOL = 1e-7
# Fractions of the step to the boundary of s, λ ≥ 0 tried, longest first,
# and the least sᵢλᵢ / μ a step may leave (see `_centered_step`).
STEP_CANDIDATES = (0.99, 0.9, 0.7, 0.5, 0.3, 0.1)
CENTRALITY = 1e-3


class InteriorPointResult(NamedTuple):
    """Final iterate of every example and its status.

    y: (B, n) primal; s: (B, m) slacks; lam: (B, m) multipliers;
    status: (B,) int32 codes of `status.STATUS_NAMES`; iterations: (B,)
    int32, the iterations each example took before it got its status;
    active: (B, m) bool, the constraints that look active (see
    `_looks_active`).
    """

    y: tf.Tensor
    s: tf.Tensor
    lam: tf.Tensor
    status: tf.Tensor
    iterations: tf.Tensor
    active: tf.Tensor


def _inf_norm(v: tf.Tensor) -> tf.Tensor:
    return tf.reduce_max(tf.abs(v), axis=-1)


def _dot(u: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(u * v, axis=-1)


def _looks_active(s, lam, new_s, new_lam) -> tf.Tensor:
    """Tapia's indicator: a constraint is active when its slack shrinks faster than its multiplier.

    Near the solution an active constraint's sᵢ falls toward 0 at the rate
    μ does while λᵢ settles, and an inactive one the other way round; the
    ratios of successive iterates tell them apart whatever their scales
    (comparing sᵢ with λᵢ directly fails when an inactive slack is itself
    small, e.g. 1e-5 after scaling).
    """
    return new_s * lam < new_lam * s


def _step_to_boundary(v: tf.Tensor, dv: tf.Tensor) -> tf.Tensor:
    """Largest α ≤ 1 keeping v + α dv ≥ 0, per example."""
    ratios = tf.where(dv < 0, -v / tf.where(dv < 0, dv, -1.0), 1.0)
    return tf.minimum(tf.reduce_min(ratios, axis=-1), 1.0)


def _centered_step(s, lam, ds, dlam):
    """Longest step, among fractions of the step to the boundary, that stays centered.

    Taking 99% of the way to the boundary can let one sᵢλᵢ
    collapse far below μ; the reduced matrix then loses accuracy and the
    dual residual stalls. Among the candidate fractions, the largest one
    keeping every sᵢλᵢ ≥ `CENTRALITY` · μ is taken (the smallest if none does).
    """
    longest = _step_to_boundary(tf.concat([s, lam], -1), tf.concat([ds, dlam], -1))
    steps = longest[:, None] * tf.constant(STEP_CANDIDATES, s.dtype)  # (B, K)
    products = (s[:, None, :] + steps[..., None] * ds[:, None, :]) * (lam[:, None, :] + steps[..., None] * dlam[:, None, :])
    centered = tf.reduce_min(products, axis=-1) >= CENTRALITY * tf.reduce_mean(products, axis=-1)
    # Candidates are sorted longest first; take the first centered one.
    first_centered = tf.argmax(tf.cast(centered, tf.int32), axis=-1)
    first_centered = tf.where(tf.reduce_any(centered, axis=-1), first_centered, len(STEP_CANDIDATES) - 1)
    return tf.gather(steps, first_centered, batch_dims=1)


def solve_unconstrained_qp(Q: tf.Tensor, c: tf.Tensor, tol: tf.Tensor) -> InteriorPointResult:
    """minimize ½ yᵀQy + cᵀy: one factorization, one refinement step.

    Dual infeasible (unbounded) when Qy + c cannot be made zero, i.e. c has a
    component in Q's null space.
    """
    empty = c[:, :0]
    inverse_factor = reduced_kkt.factor(Q, empty[:, :, None], empty)  # no rows: Fᵀ(DF) is a broadcast zero
    y = reduced_kkt.solve(inverse_factor, -c)
    y += reduced_kkt.solve(inverse_factor, -(matvec(Q, y) + c))
    stationary = _inf_norm(matvec(Q, y) + c) <= tol * (1.0 + _inf_norm(c))
    finite = tf.reduce_all(tf.math.is_finite(y), axis=-1)
    status = tf.where(stationary, qp_status.SOLVED, qp_status.DUAL_INFEASIBLE)
    status = tf.where(finite, status, qp_status.NUMERICAL_ERROR)
    return InteriorPointResult(y, empty, empty, status, tf.ones_like(status), tf.zeros_like(empty, tf.bool))


class IterationData(NamedTuple):
    """A batch of problems min ½yᵀQy + cᵀy s.t. Fy + s = g, s ≥ 0 (or in a cone), as the iterations read them.

    Per-example tensors only (the batch first), so that the running examples'
    data can be gathered with them (`shrinking_batch`); the norms are those
    of the stopping and infeasibility tests. The QP and SOCP loops share it.
    """

    Q: tf.Tensor | None  # None for zero (the SOCP loop without equalities)
    c: tf.Tensor
    F: tf.Tensor
    g: tf.Tensor
    primal_scale: tf.Tensor  # 1 + ‖g‖∞
    dual_scale: tf.Tensor  # 1 + ‖c‖∞
    Q_norm: tf.Tensor  # max |Qᵢⱼ|, zeros when Q is None
    F_norm: tf.Tensor
    c_norm: tf.Tensor

    @classmethod
    def of(cls, Q: tf.Tensor | None, c: tf.Tensor, F: tf.Tensor, g: tf.Tensor) -> IterationData:
        Q_norm = tf.zeros_like(c[:, 0]) if Q is None else tf.reduce_max(tf.abs(Q), axis=[-2, -1])
        return cls(Q, c, F, g, 1.0 + _inf_norm(g), 1.0 + _inf_norm(c), Q_norm,
                   tf.reduce_max(tf.abs(F), axis=[-2, -1]), _inf_norm(c))


class _Iterate(NamedTuple):
    iterations: tf.Tensor
    active: tf.Tensor
    status: tf.Tensor
    y: tf.Tensor
    s: tf.Tensor
    lam: tf.Tensor
    dual_residual: tf.Tensor
    primal_residual: tf.Tensor


class _QPData(NamedTuple):
    problem: IterationData
    # [Q; F], transposed in the product: [Q | Fᵀ] applies the stationarity
    # row to (y, λ) in one product (Q is symmetric).
    stationarity_operator: tf.Tensor


def _stationarity(data: _QPData, dy, dlam):
    return transposed_matvec(data.stationarity_operator, tf.concat([dy, dlam], axis=-1))


def solve_inequality_qp(
    Q, c, F, g, *, tol: tf.Tensor, max_iter: tf.Tensor, start: InteriorPointResult,
) -> InteriorPointResult:
    """Runs the interior-point method on a batch of inequality-only QPs.

    Args:
        Q: (B, n, n) symmetric positive semidefinite; c: (B, n);
            F: (B, m, n) with m ≥ 1; g: (B, m). All float64.
        tol: float64 scalar, relative tolerance of the stopping criteria
            (module docstring).
        max_iter: int32 scalar, most iterations for the whole batch.
        start: where to start: `starting_iterate`, or a result of an earlier
            run on the same problems to go on from. Its examples whose status
            is `RUNNING` iterate on from its iterates (their `iterations`
            counted on); the others keep their iterates and statuses.

    Returns:
        An `InteriorPointResult`; s and λ are strictly positive.
    """
    num_inequalities = tf.cast(tf.shape(F)[-2], F.dtype)
    problem = IterationData.of(Q, c, F, g)
    # Sums of more than two terms are avoided in the loop: Grappler turns them
    # into AddN, and AddN of large tensors into AccumulateNV2, whose temporary
    # variable fails with AlreadyExistsError on the function's next call.
    data = _QPData(problem, tf.concat([Q, problem.F], axis=-2))

    def assess(data: _QPData, status, y, s, lam, dy, F_dy):
        """Statuses of the running examples at the iterate (y, s, λ)."""
        p = data.problem
        dual_residual = _stationarity(data, y, lam) + p.c
        F_y = matvec(p.F, y)
        primal_residual = (F_y + s) - p.g
        # ½yᵀQy + cᵀy, from yᵀ(Qy + Fᵀλ + c) without another product with Q.
        objective = 0.5 * (_dot(y, dual_residual) - _dot(F_y, lam) + _dot(p.c, y))
        F_t_lam = transposed_matvec(p.F, lam)
        solved = (
            (_inf_norm(dual_residual) <= tol * p.dual_scale)
            & (_inf_norm(primal_residual) <= tol * p.primal_scale)
            & (_dot(s, lam) <= tol * (1.0 + tf.abs(objective)))
        )
        lam_norm = _inf_norm(lam)
        primal_infeasible = (_inf_norm(F_t_lam) <= INFEASIBILITY_TOL * p.F_norm * lam_norm) & (
            _dot(p.g, lam) <= -INFEASIBILITY_TOL * lam_norm
        )
        dy_norm = _inf_norm(dy)
        dual_infeasible = (
            (_inf_norm(matvec(p.Q, dy)) <= INFEASIBILITY_TOL * p.Q_norm * dy_norm)
            & (tf.reduce_max(F_dy, axis=-1) <= INFEASIBILITY_TOL * p.F_norm * dy_norm)
            & (_dot(p.c, dy) < -INFEASIBILITY_TOL * p.c_norm * dy_norm)
        )
        running = tf.equal(status, qp_status.RUNNING)
        new_status = tf.where(
            solved,
            qp_status.SOLVED,
            tf.where(
                primal_infeasible,
                qp_status.PRIMAL_INFEASIBLE,
                tf.where(dual_infeasible, qp_status.DUAL_INFEASIBLE, qp_status.RUNNING),
            ),
        )
        return tf.where(running, new_status, status), dual_residual, primal_residual

    def newton_direction(data: _QPData, inverse_factor, d, s, lam, dual_residual, primal_residual, complementarity, refine):
        """Solves the linearized KKT system for (dy, ds, dλ) given s∘λ's target residual.

        With `refine`, one step of iterative refinement against the unreduced
        stationarity row Q dy + Fᵀdλ = −r_d: the reduced system's own residual
        floor (about eps·‖H‖·‖dy‖, with H's entries up to λ/s ~ 1/μ) would
        otherwise stall the dual residual near 1e-8.
        """
        p = data.problem
        rhs = -dual_residual - transposed_matvec(p.F, d * primal_residual - complementarity / s)
        dy = reduced_kkt.solve(inverse_factor, rhs)
        F_dy = matvec(p.F, dy)
        if refine:
            dlam = -(complementarity - lam * (primal_residual + F_dy)) / s
            correction = reduced_kkt.solve(inverse_factor, -_stationarity(data, dy, dlam) - dual_residual)
            dy += correction
            F_dy += matvec(p.F, correction)
        ds = -primal_residual - F_dy
        dlam = -(complementarity + lam * ds) / s
        return dy, ds, dlam

    def step(data: _QPData, state: _Iterate) -> _Iterate:
        iterations, active, status, y, s, lam, dual_residual, primal_residual = state
        p = data.problem
        d = lam / s
        inverse_factor = reduced_kkt.factor(p.Q, p.F, d)
        # Predictor: the affine-scaling direction, aiming at s∘λ = 0.
        dy, ds, dlam = newton_direction(data, inverse_factor, d, s, lam, dual_residual, primal_residual, s * lam, refine=False)
        step_length = _step_to_boundary(tf.concat([s, lam], -1), tf.concat([ds, dlam], -1))
        mu = _dot(s, lam) / num_inequalities
        # σ = (1 − α_affine)³ as in Clarabel: Mehrotra's (μ_affine/μ)³ let
        # some random QPs cycle (for QPs ds ∘ dλ can push μ_affine up).
        centering = (1.0 - step_length) ** 3
        # Corrector: second-order term ds∘dλ and centering toward σμ.
        complementarity = s * lam + ds * dlam - (centering * mu)[:, None]
        dy, ds, dlam = newton_direction(data, inverse_factor, d, s, lam, dual_residual, primal_residual, complementarity, refine=True)
        step_length = _centered_step(s, lam, ds, dlam)
        running = tf.equal(status, qp_status.RUNNING)
        iterations += tf.cast(running, tf.int32)
        step_length = tf.where(running, step_length, 0.0)[:, None]
        new_y, new_s, new_lam = y + step_length * dy, s + step_length * ds, lam + step_length * dlam
        finite = tf.reduce_all(tf.math.is_finite(tf.concat([new_y, new_s, new_lam], -1)), axis=-1)
        status = tf.where(finite, status, qp_status.NUMERICAL_ERROR)
        keep = finite[:, None]
        active = tf.where(keep & running[:, None], _looks_active(s, lam, new_s, new_lam), active)
        y, s, lam = tf.where(keep, new_y, y), tf.where(keep, new_s, s), tf.where(keep, new_lam, lam)
        # The step taken moved Fy by F dy = −(ds + r_p), no product needed.
        status, dual_residual, primal_residual = assess(data, status, y, s, lam, dy, -(ds + primal_residual))
        return _Iterate(iterations, active, status, y, s, lam, dual_residual, primal_residual)

    y, s, lam, status, iterations, active = start
    # A zero direction fails the strict cᵀd < 0, so no dual infeasibility is claimed before a step.
    status, dual_residual, primal_residual = assess(data, status, y, s, lam, tf.zeros_like(y), tf.zeros_like(s))
    initial = _Iterate(iterations, active, status, y, s, lam, dual_residual, primal_residual)
    final = iterate_while_running(
        step, data, initial, is_running=lambda state: tf.equal(state.status, qp_status.RUNNING), max_iter=max_iter
    )
    status = tf.where(tf.equal(final.status, qp_status.RUNNING), qp_status.ITERATION_LIMIT, final.status)
    return InteriorPointResult(final.y, final.s, final.lam, status, final.iterations, final.active)


def least_squares_start(Q, c, F, g) -> tuple[tf.Tensor, tf.Tensor]:
    """CVXOPT's start, shared by the QP and SOCP loops: y minimizing ½yᵀQy + cᵀy + ½‖Fy − g‖², and g − Fy.

    Each loop then shifts g − Fy (for s) and its negative (for the
    multipliers) into its cone. Q may be None (zero).
    """
    inverse_factor = reduced_kkt.factor(Q, F)
    y = reduced_kkt.solve(inverse_factor, transposed_matvec(F, g) - c)
    return y, g - matvec(F, y)


def starting_iterate(Q, c, F, g) -> InteriorPointResult:
    """Where `solve_inequality_qp` starts, as a result to resume from: every example running, none iterated.

    (y, s, λ) from `least_squares_start`: z = g − Fy gives s = z and λ = −z,
    each shifted by (1 + its most negative entry's magnitude) when not
    already positive. Arguments as `solve_inequality_qp`'s.
    """
    y, z = least_squares_start(Q, c, F, g)

    def shift_positive(v):
        shortfall = -tf.reduce_min(v, axis=-1, keepdims=True)
        return tf.where(shortfall >= 0, v + 1.0 + shortfall, v)

    s, lam = shift_positive(z), shift_positive(-z)
    status = tf.fill(tf.shape(c)[:1], qp_status.RUNNING)
    # Before any step, the larger of sᵢ and λᵢ is the one that stays.
    return InteriorPointResult(y, s, lam, status, tf.zeros_like(status), lam > s)

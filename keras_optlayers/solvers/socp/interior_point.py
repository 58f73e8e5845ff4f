"""Batched primal-dual interior-point iterations for cone programs without equalities.

Solves, for every example of a batch at once,

    minimize ½ yᵀ Q y + cᵀ y   subject to   F y + s = g,  s ∈ K,

K a product of nonnegative orthants and second-order cones (`cones.ConeLayout`
without zero rows; Q is None for zero, or the row-space projector left by
`qp.equality_elimination`). The dual variable z lives in K (K is self-dual).
Each iteration computes the Nesterov–Todd scaling W of (s, z), factors the
reduced matrix Q + Fᵀ W⁻² F once (`qp.reduced_kkt.factor`) and solves with
it for Mehrotra's predictor and corrector directions (CVXOPT's `coneqp`
scheme: λ = W z, scaled complementarity λ ∘ (W⁻¹ds + W dz) = r_c, with the
second-order term (W⁻¹ds_a) ∘ (W dz_a) in the corrector and centering
σ = (1 − α_a)³), then steps 99% of the way to the cone's boundary. The final iterate is
polished by Newton steps on the optimality conditions (in `solve`).

Statuses (codes of `status.py`), decided at every iterate, in this problem's
(equilibrated) units:
  * solved: ‖Qy + c + Fᵀz‖∞ ≤ tol (1 + ‖c‖∞), ‖Fy + s − g‖∞ ≤ tol (1 + ‖g‖∞)
    and sᵀz ≤ tol (1 + |½yᵀQy + cᵀy|).
  * primal infeasible: ẑ = z/‖z‖∞ (in K) is a Farkas certificate to
    `INFEASIBILITY_TOL`: ‖Fᵀẑ‖∞ ≤ ε ‖F‖ and gᵀẑ ≤ −ε.
  * dual infeasible (unbounded): the last step direction d̂ (unit ∞-norm) is
    a recession direction to ε: ‖Qd̂‖∞ ≤ ε ‖Q‖, −Fd̂ ∈ K to ε ‖F‖ (least
    eigenvalue ≥ −ε‖F‖) and cᵀd̂ < −ε ‖c‖.
  * numerical error: an iterate that is not finite (not taken).
  * iteration limit: none of the above within `max_iter` iterations.
Limits: the certificates are those the iterates approach, not proofs (no
homogeneous embedding); nearly infeasible problems can end at the iteration
limit instead.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from keras_optlayers.solvers.qp import reduced_kkt
from keras_optlayers.solvers.qp.interior_point import IterationData, least_squares_start
from keras_optlayers.solvers.qp.reduced_kkt import matvec, transposed_matvec
from keras_optlayers.solvers.socp import status as socp_status
from keras_optlayers.solvers.socp.cones import ConeLayout, NesterovToddScaling
from keras_optlayers.solvers.shrinking_batch import iterate_while_running

# Threshold of the infeasibility certificates (relative, scale-free).
INFEASIBILITY_TOL = 1e-8
# Fraction of the step to the cone's boundary taken. A neighborhood check
# (shorter steps that keep λ_min(λ)² ≥ 1e-3 μ) doubled the loop's time and did
# not change the polished answers (`optimality_conditions.polish`), measured.
STEP_FRACTION = 0.99


class InteriorPointResult(NamedTuple):
    """Final iterate of every example and its status.

    y: (B, n) primal; s: (B, m) slacks in K; z: (B, m) multipliers in K;
    status: (B,) int32 codes; iterations: (B,) int32, the iterations each
    example took before it got its status.
    """

    y: tf.Tensor
    s: tf.Tensor
    z: tf.Tensor
    status: tf.Tensor
    iterations: tf.Tensor


def _inf_norm(v: tf.Tensor) -> tf.Tensor:
    return tf.reduce_max(tf.abs(v), axis=-1)


def _dot(u: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(u * v, axis=-1)


def _shift_into_cone(cones: ConeLayout, v: tf.Tensor) -> tf.Tensor:
    """v itself if it is in K's interior, else v + (1 − its least eigenvalue) e (CVXOPT's start)."""
    shortfall = -cones.min_eigenvalue(v)[:, None]
    return tf.where(shortfall >= 0, v + (1.0 + shortfall) * cones.identity(v), v)


def starting_iterate(cones: ConeLayout, Q, c, F, g) -> InteriorPointResult:
    """Where `solve_conic` starts, as a result to resume from: every example running, none iterated.

    `least_squares_start`'s y, then s = g − Fy and z = −s, each shifted into K.
    Arguments as `solve_conic`'s.
    """
    y, residual = least_squares_start(Q, c, F, g)
    status = tf.fill(tf.shape(c)[:1], socp_status.RUNNING)
    return InteriorPointResult(y, _shift_into_cone(cones, residual), _shift_into_cone(cones, -residual), status, tf.zeros_like(status))


def _max_step_of_both(cones: ConeLayout, s, ds, z, dz) -> tf.Tensor:
    """The largest α (capped at 1e30) keeping s + α ds and z + α dz in K, (B,).

    One `max_step` over the two side by side (columns): at batch 1 each op
    counts, and a second call was about 30 ops of an iteration's 500 (the
    ellipsoid projection's forward pass ran 4100 ops, now 3825).
    """
    return tf.reduce_min(cones.max_step(tf.stack([s, z], axis=-1), tf.stack([ds, dz], axis=-1)), axis=-1)


class _Iterate(NamedTuple):
    iterations: tf.Tensor
    status: tf.Tensor
    y: tf.Tensor
    s: tf.Tensor
    z: tf.Tensor
    dual_residual: tf.Tensor
    primal_residual: tf.Tensor


def solve_conic(
    cones: ConeLayout, Q, c, F, g, *, tol: tf.Tensor | float, max_iter: tf.Tensor | int,
    start: InteriorPointResult,
) -> InteriorPointResult:
    """Runs the interior-point method on a batch of cone programs without equalities.

    Args:
        cones: the layout of K (its `zero` is ignored: F has only conic rows).
        Q: (B, n, n) symmetric positive semidefinite, or None for zero (no
            products with it then: they are a sixth of an iteration's); c: (B, n);
            F: (B, m, n) with m = cones.num_conic_rows ≥ 1; g: (B, m). float64.
        tol: relative tolerance of the stopping criteria (module docstring).
        max_iter: most iterations for the whole batch.
        start: where to start: `starting_iterate`, or a result of an earlier
            run on the same problems to go on from. Its examples whose
            status is `RUNNING` iterate on from its iterates (their
            `iterations` counted on); the others keep their iterates and
            statuses.

    Returns:
        An `InteriorPointResult`; s and z are in K's interior.
    """
    degree = float(cones.degree)
    problem = IterationData.of(Q, c, F, g)

    def assess(p: IterationData, status, y, s, z, dy, F_dy):
        """Statuses of the running examples at the iterate (y, s, z)."""
        Q_y = None if p.Q is None else matvec(p.Q, y)
        dual_residual = p.c + transposed_matvec(p.F, z) if Q_y is None else Q_y + p.c + transposed_matvec(p.F, z)
        primal_residual = matvec(p.F, y) + s - p.g
        objective = _dot(p.c, y) if Q_y is None else 0.5 * _dot(y, Q_y) + _dot(p.c, y)
        solved = (
            (_inf_norm(dual_residual) <= tol * p.dual_scale)
            & (_inf_norm(primal_residual) <= tol * p.primal_scale)
            & (_dot(s, z) <= tol * (1.0 + tf.abs(objective)))
        )
        z_norm = _inf_norm(z)
        primal_infeasible = (_inf_norm(transposed_matvec(p.F, z)) <= INFEASIBILITY_TOL * p.F_norm * z_norm) & (
            _dot(p.g, z) <= -INFEASIBILITY_TOL * z_norm
        )
        dy_norm = _inf_norm(dy)
        dual_infeasible = (cones.min_eigenvalue(-F_dy) >= -INFEASIBILITY_TOL * p.F_norm * dy_norm) & (
            _dot(p.c, dy) < -INFEASIBILITY_TOL * p.c_norm * dy_norm
        )
        if p.Q is not None:
            dual_infeasible &= _inf_norm(matvec(p.Q, dy)) <= INFEASIBILITY_TOL * p.Q_norm * dy_norm
        new_status = tf.where(
            solved,
            socp_status.SOLVED,
            tf.where(
                primal_infeasible,
                socp_status.PRIMAL_INFEASIBLE,
                tf.where(dual_infeasible, socp_status.DUAL_INFEASIBLE, socp_status.RUNNING),
            ),
        )
        running = tf.equal(status, socp_status.RUNNING)
        return tf.where(running, new_status, status), dual_residual, primal_residual

    def newton_direction(p: IterationData, inverse_factor, scaling, scaled_F, dual_residual, primal_residual, complementarity, refine):
        """(dy, ds, dz) solving the linearized conditions with λ ∘ (W⁻¹ds + W dz) = complementarity.

        Eliminating ds and dz leaves (Q + FᵀW⁻²F) dy = −r_d − (W⁻¹F)ᵀ t with
        t = λ \\ r_c + W⁻¹ r_p, then dz = W⁻¹(t + W⁻¹F dy) and ds = −r_p − F dy.
        With `refine`, one step of iterative refinement against the
        stationarity row Q dy + Fᵀdz = −r_d: entries of W⁻² grow like 1/μ,
        and the reduced system's rounding would otherwise floor the dual
        residual. The predictor skips it: only its step length and
        second-order term are used, and those do not need the last digits
        (a fifth of the loop's matrix products saved).
        """
        t = cones.inverse_product(scaling.lam, complementarity) + scaling.apply_inverse(primal_residual)
        rhs = -dual_residual - tf.linalg.matvec(scaled_F, t, adjoint_a=True)
        dy = reduced_kkt.solve(inverse_factor, rhs)
        dz = scaling.apply_inverse(t + matvec(scaled_F, dy))
        if not refine:
            return dy, -primal_residual - matvec(p.F, dy), dz
        stationarity_error = transposed_matvec(p.F, dz) + dual_residual
        if p.Q is not None:
            stationarity_error += matvec(p.Q, dy)
        correction = reduced_kkt.solve(inverse_factor, -stationarity_error)
        dy += correction
        dz += scaling.apply_inverse(matvec(scaled_F, correction))
        ds = -primal_residual - matvec(p.F, dy)
        return dy, ds, dz

    def step(p: IterationData, state: _Iterate) -> _Iterate:
        iterations, status, y, s, z, dual_residual, primal_residual = state
        iterations += tf.cast(tf.equal(status, socp_status.RUNNING), tf.int32)
        scaling = NesterovToddScaling(cones, s, z)
        scaled_F = scaling.apply_inverse(p.F)
        inverse_factor = reduced_kkt.factor(p.Q, scaled_F)
        lam = scaling.lam
        lam_squared = cones.product(lam, lam)
        # Predictor: the affine-scaling direction, aiming at s ∘ z = 0.
        dy, ds, dz = newton_direction(p, inverse_factor, scaling, scaled_F, dual_residual, primal_residual, -lam_squared, refine=False)
        step_length = tf.minimum(_max_step_of_both(cones, s, ds, z, dz), 1.0)
        mu = _dot(s, z) / degree
        centering = (1.0 - step_length) ** 3
        # Corrector: second-order term and centering toward σμ.
        second_order = cones.product(scaling.apply_inverse(ds), scaling.apply(dz))
        complementarity = -lam_squared - second_order + (centering * mu)[:, None] * cones.identity(s)
        dy, ds, dz = newton_direction(p, inverse_factor, scaling, scaled_F, dual_residual, primal_residual, complementarity, refine=True)
        step_length = tf.minimum(STEP_FRACTION * _max_step_of_both(cones, s, ds, z, dz), 1.0)
        step_length = tf.where(tf.equal(status, socp_status.RUNNING), step_length, 0.0)[:, None]
        new_y, new_s, new_z = y + step_length * dy, s + step_length * ds, z + step_length * dz
        finite = tf.reduce_all(tf.math.is_finite(tf.concat([new_y, new_s, new_z], -1)), axis=-1)
        status = tf.where(finite, status, socp_status.NUMERICAL_ERROR)
        keep = finite[:, None]
        y, s, z = tf.where(keep, new_y, y), tf.where(keep, new_s, s), tf.where(keep, new_z, z)
        # The step taken moved Fy by F dy = −(ds + r_p), no product needed.
        status, dual_residual, primal_residual = assess(p, status, y, s, z, dy, -(ds + primal_residual))
        return _Iterate(iterations, status, y, s, z, dual_residual, primal_residual)

    y, s, z, status, iterations = start
    # A zero direction fails the strict cᵀd < 0, so no dual infeasibility is claimed before a step.
    status, dual_residual, primal_residual = assess(problem, status, y, s, z, tf.zeros_like(y), tf.zeros_like(s))
    final = iterate_while_running(
        step, problem, _Iterate(iterations, status, y, s, z, dual_residual, primal_residual),
        is_running=lambda state: tf.equal(state.status, socp_status.RUNNING), max_iter=max_iter,
    )
    status = tf.where(tf.equal(final.status, socp_status.RUNNING), socp_status.ITERATION_LIMIT, final.status)
    return InteriorPointResult(final.y, final.s, final.z, status, final.iterations)

"""Polishing: the exact solution on the active set the iterations found.

Interior-point iterates stay strictly inside: inactive constraints keep
multipliers of order μ/s and active ones slacks of order μ/λ, so the
returned point is about `tol` away from the solution, and a component that
should be exactly zero (an active bound) is a small positive number instead.
Once the iterations have stopped, the active set they point to (see
`interior_point._looks_active`) gives the equality-constrained QP

    minimize ½ yᵀQy + cᵀy   subject to   Fᵢ y = gᵢ  for active i

is solved by a few steps of the proximal method of multipliers, warm
started at the iterate: with a = 1 on active rows and 0 elsewhere, and the
residuals r_d = Qy + c + Fᵀ(a ∘ λ), r_p = a ∘ (Fy − g),

    (Q + σI + ρ Fᵀ diag(a) F) Δy = −(r_d + ρ Fᵀ r_p),
    y⁺ = y + Δy,   λ⁺ = a ∘ (λ + ρ (F y⁺ − g)),

one Cholesky factorization (`reduced_kkt.factor`) for all steps. Each step
shrinks the active rows' residual about ρ-fold, and the proximal term keeps
y where the solution is not unique (an LP's optimal face). Written for the
correction Δy, the factorization's own regularization only slows the steps
and does not bias their fixed point. OSQP polishes the same way. The polished point is kept only if it is a solution to
`POLISH_TOLERANCE`: active rows tight, inactive rows feasible, stationary,
λ ≥ 0 (small negative multipliers of degenerate rows are set to zero);
otherwise the iterate stays, and the after-the-fact check judges it.

Limits: only examples the iterations reported solved are polished (their
active set is reliable); a wrong guess at a degenerate row (λ = s = 0 at
the solution) is harmless, since both guesses give the solution. Under XLA
on CPU, polishing was seen to fail on 1 of 128 random OptNet QPs that graph
mode polished; that example keeps its iterate (about `tol` accurate) and is
reported inaccurate when the check finds it so.
"""

from __future__ import annotations

import tensorflow as tf

from keras_optlayers.solvers.qp import reduced_kkt
from keras_optlayers.solvers.qp.reduced_kkt import matvec, transposed_matvec

# Penalty ρ and proximal weight σ, in the units of the scaled data (entries
# of order one), and the number of steps. Each step shrinks the active rows'
# residual about ρ-fold, but the multiplier update multiplies the rounding
# of Fy − g by ρ: ρ = 1e6 left λ noisy at 1e-10 (central differences of the
# solution map then disagreed with its gradient by 1e-3); ρ = 1e3 keeps the
# noise near 1e-13 and five steps still reach rounding from ~tol.
POLISH_PENALTY = 1e3
POLISH_PROXIMAL = 1e-9
POLISH_STEPS = 5
# Largest scaled residual (relative to 1 + the data's norm) a polished point may have.
POLISH_TOLERANCE = 1e-9
# A polished point whose residuals are below this (relative, as
# `POLISH_TOLERANCE`) is a solution to rounding: the solver may then stop
# its loop early (`solve._solve_and_polish`). `POLISH_TOLERANCE` alone does
# not bound the error: on an active set of condition 5e3 a point that passed
# it from a 1e-6 iterate had λ 2.5e-6 off (issue 12 stop 25).
ROUNDING_TOLERANCE = 1e-12


def _inf_norm(v: tf.Tensor) -> tf.Tensor:
    return tf.maximum(tf.reduce_max(tf.abs(v), axis=-1), 0.0)


def polish(Q, c, F, g, y, s, lam, active, eligible):
    """Replaces eligible iterates by the exact solution on their active set, where that succeeds.

    Args:
        Q: (B, n, n); c: (B, n); F: (B, m, n) with m ≥ 1; g: (B, m): the
            scaled inequality-only QP. y, s, lam: the final iterate, s and
            λ > 0. active: (B, m) bool, the guessed active set.
            eligible: (B,) bool, the examples to try.

    Returns:
        (y, s, λ, polished, to_rounding): the new point, with
        s = max(g − Fy, 0) and λ = 0 on inactive rows where polished;
        polished (B,) bool; to_rounding (B,) bool, polished with residuals
        within `ROUNDING_TOLERANCE`.
    """
    active = tf.cast(active, F.dtype)
    proximal = POLISH_PROXIMAL * tf.eye(tf.shape(Q)[-1], dtype=Q.dtype)  # broadcast over the batch
    inverse_factor = reduced_kkt.factor(Q + proximal, F, POLISH_PENALTY * active)
    polished_y, polished_lam = y, active * lam
    F_y = matvec(F, polished_y)  # kept current with y: each step's multiplier update and the next step share it
    for _ in range(POLISH_STEPS):
        dual_residual = matvec(Q, polished_y) + c + transposed_matvec(F, polished_lam)
        primal_residual = active * (F_y - g)
        polished_y += reduced_kkt.solve(inverse_factor, -(dual_residual + POLISH_PENALTY * transposed_matvec(F, primal_residual)))
        F_y = matvec(F, polished_y)
        polished_lam = active * (polished_lam + POLISH_PENALTY * (F_y - g))

    primal_scale, dual_scale = 1.0 + _inf_norm(g), 1.0 + _inf_norm(c)
    violation = tf.maximum(_inf_norm(active * (F_y - g)), tf.reduce_max((1.0 - active) * tf.maximum(F_y - g, 0.0), axis=-1))
    stationarity = _inf_norm(matvec(Q, polished_y) + c + transposed_matvec(F, polished_lam))
    lam_norm = _inf_norm(polished_lam)
    succeeded = (
        eligible
        & tf.reduce_all(tf.math.is_finite(polished_y), axis=-1)
        & tf.reduce_all(tf.math.is_finite(polished_lam), axis=-1)
        & (violation <= POLISH_TOLERANCE * primal_scale)
        & (stationarity <= POLISH_TOLERANCE * dual_scale)
        & (tf.reduce_min(polished_lam, axis=-1) >= -POLISH_TOLERANCE * (1.0 + lam_norm))
    )
    to_rounding = (
        succeeded
        & (violation <= ROUNDING_TOLERANCE * primal_scale)
        & (stationarity <= ROUNDING_TOLERANCE * dual_scale)
    )
    keep = succeeded[:, None]
    y = tf.where(keep, polished_y, y)
    s = tf.where(keep, tf.maximum(g - F_y, 0.0), s)
    lam = tf.where(keep, tf.maximum(polished_lam, 0.0), lam)
    return y, s, lam, succeeded, to_rounding

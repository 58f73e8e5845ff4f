"""Backward pass: implicit differentiation of the KKT conditions (OptNet).

At a solution (x, ν, λ) with slacks s = h − Gx, the conditions

    Px + q + Aᵀν + Gᵀλ = 0,   Ax = b,   λ ∘ (Gx − h) = 0

define (x, ν, λ) as a function of (P, q, A, b, G, h). For upstream
gradients (ḡx, ḡν, ḡλ) the adjoint system is Jᵀw = −ḡ with J their
Jacobian in (x, ν, λ). Eliminating its λ block (v = Λ w_λ = d ∘ (G w_x + ḡλ),
d = λ/s) leaves

    (P + Gᵀ diag(d) G) w_x + Aᵀ w_ν = −ḡx − Gᵀ(d ∘ ḡλ),   A w_x = −ḡν,

the matrix of the last interior-point iterations, solved here with the
same equality elimination (A's pseudo-inverse and null-space projector from
the forward pass) and one Cholesky factorization of the reduced matrix at
the solution. An active constraint's weight d is infinite (s = 0): it is
capped (`_capped_weights`), and the constraint G_i w_x = −ḡλ_i it stands
for is then enforced by the method of multipliers, a few solves with the
same factor, so the gradient is that of the exact active-set system. The forward pass does not factor it at the solution, so a
caller that never asks for gradients does not pay for it. Then

    ∇q = w_x,  ∇b = −w_ν,  ∇h = −v,  ∇P = ½(w_x xᵀ + x w_xᵀ),
    ∇A = ν w_xᵀ + w_ν xᵀ,  ∇G = λ w_xᵀ + v xᵀ.

Limits: at a degenerate solution (a constraint with λ = 0 and s = 0) the
solution map is not differentiable and this gives one generalized
derivative; with redundant equality rows, ∇b and ∇A are those of the
least-norm multipliers ν.
"""

from __future__ import annotations

import tensorflow as tf

from keras_optlayers.solvers.qp import reduced_kkt
from keras_optlayers.solvers.qp.equality_elimination import ReducedQP
from keras_optlayers.solvers.qp.reduced_kkt import matvec, transposed_matvec

# Largest λ/s used, relative to Q's scale over the rows' squared norms, and
# the rounds of the method of multipliers that remove the cap's bias. The
# cap alone (then 1e8, with two refinement solves) left the gradients of
# benchmarks/bench_qp.py's OptNet batch (B=128) up to 2.7e-6 (∇h) and
# 3.2e-7 (∇q) from the exact active-set ones: the bias, 1/cap relative. The
# rounds remove the bias, but a capped row's multiplier carries the cap
# times the rounding of Gw + ḡλ, so the cap came down: 1e6 and two rounds
# (three solves in all) gave 1.1e-9 and 9e-13 there; three rounds 8e-10 and
# 2e-14; 1e5 and three rounds 1.5e-10 and 1e-12; 1e6 and one round 4e-8.
ACTIVE_WEIGHT_CAP = 1e6
ACTIVE_MULTIPLIER_ROUNDS = 2


def _capped_weights(reduced: ReducedQP, lam: tf.Tensor, slack: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(d, capped): λ/s with active constraints' weights capped at `ACTIVE_WEIGHT_CAP`, and where they are.

    An active constraint's weight only needs to dominate the rest of the
    matrix; left at ~1/tol, or infinite after polishing (s = 0), it inflates
    the factorization's regularization, which is relative to the largest
    diagonal entry, and its rounding. The penalty the cap leaves (w off by
    about 1/cap relative) is removed by the multiplier rounds of
    `kkt_adjoint`. A polished row with λ = s = 0 (degenerate) counts as
    inactive.
    """
    q_scale = 1.0 + tf.reduce_max(tf.abs(tf.linalg.diag_part(reduced.Q)), axis=-1, keepdims=True)
    row_scale = tf.reduce_max(tf.reduce_sum(tf.square(reduced.F), axis=-1), axis=-1, keepdims=True)
    cap = ACTIVE_WEIGHT_CAP * q_scale / tf.maximum(row_scale, 1e-30)
    ratio = lam / tf.where(slack > 0.0, slack, 1.0)
    capped = tf.where(slack > 0.0, ratio >= cap, lam > 0.0)
    return tf.where(capped, cap, tf.where(slack > 0.0, ratio, 0.0)), capped


def _outer(u: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    return u[:, :, None] * v[:, None, :]


def kkt_adjoint(
    reduced: ReducedQP,
    P: tf.Tensor,
    G: tf.Tensor,
    x: tf.Tensor,
    nu: tf.Tensor,
    lam: tf.Tensor,
    slack: tf.Tensor,
    grad_x: tf.Tensor,
    grad_nu: tf.Tensor,
    grad_lam: tf.Tensor,
) -> tuple[tf.Tensor, ...]:
    """Gradients of a scalar loss with respect to (P, q, A, b, G, h).

    Args:
        reduced: the forward pass's `ReducedQP`.
        P: (B, n, n) symmetrized; G: (B, m, n).
        x, nu, lam, slack: the solution, (B, n), (B, p), (B, m), (B, m),
            with slack ≥ 0 and lam ≥ 0 (interior-point iterates, or
            polished points with zeros).
        grad_x, grad_nu, grad_lam: upstream gradients of x, ν, λ.

    Returns:
        (∇P, ∇q, ∇A, ∇b, ∇G, ∇h), batched like their inputs.
    """
    d, capped = _capped_weights(reduced, lam, slack)
    inverse_factor = reduced_kkt.factor(reduced.Q, reduced.F, d=d)

    def weighted_rows(w):
        """d ∘ (G w + ḡλ): the inequality multipliers v but the capped rows' multipliers of the round."""
        return d * (matvec(G, w) + grad_lam)

    def stationarity_residual(w, v):
        """−ḡx − P w − Gᵀv: the stationarity row's residual before the equality multipliers."""
        return -grad_x - matvec(P, w) - transposed_matvec(G, v)

    def project(v):
        return v if reduced.nullspace_projector is None else matvec(reduced.nullspace_projector, v)

    # w_x = w₀ + N w_null with A w₀ = −ḡν, then rounds of the method of
    # multipliers with the same factor: each solves for the correction from
    # the current residual (a step of iterative refinement too: the capped
    # weights make one solve's error about eps × cap) and moves the capped
    # rows' multipliers to v, which takes the penalty's bias (about 1/cap
    # relative) down by about the cap's factor.
    w_x = tf.zeros_like(grad_x) if reduced.pseudo_inverse is None else matvec(reduced.pseudo_inverse, -grad_nu)
    capped_multipliers = tf.zeros_like(lam)
    weighted = weighted_rows(w_x)  # one product with G per w_x
    for round_ in range(ACTIVE_MULTIPLIER_ROUNDS + 1):
        residual = stationarity_residual(w_x, weighted + capped_multipliers)
        w_x += project(reduced_kkt.solve(inverse_factor, project(residual)))
        weighted = weighted_rows(w_x)
        v = weighted + capped_multipliers
        if round_ < ACTIVE_MULTIPLIER_ROUNDS:
            capped_multipliers = tf.where(capped, v, 0.0)
    if reduced.pseudo_inverse is None:
        w_nu = tf.zeros_like(grad_nu)  # shape (B, 0): no equalities
    else:
        w_nu = tf.linalg.matvec(reduced.pseudo_inverse, stationarity_residual(w_x, v), adjoint_a=True)
    grad_P = 0.5 * (_outer(w_x, x) + _outer(x, w_x))
    grad_A = _outer(nu, w_x) + _outer(w_nu, x)
    grad_G = _outer(lam, w_x) + _outer(v, x)
    return grad_P, w_x, grad_A, -w_nu, grad_G, -v

"""The optimality conditions at the solution: Newton polishing of the forward pass, and the backward pass.

At a solution (x, y, s) of min ½xᵀPx + cᵀx s.t. Ax + s = b, s ∈ K (P = 0
for a linear objective), the conditions

    Px + Aᵀy + c = 0,   Ax + s − b = 0,   s ∘ y = 0   (s_E = 0 on the zero rows)

define (x, y, s) as a function of (A, b, c, P). Their Jacobian in (x, y, s) is

    J = [[P, Aᵀ, 0], [A, 0, I], [0, L(s), L(y)]],

L(u) the arrow matrix of u (u ∘ v = L(u) v; for a zero-cone row the last
block row is ds = 0 instead). For upstream gradients ḡ = (ḡx, ḡy, ḡs) the
adjoint system Jᵀ w = −ḡ, w = (w₁, w₂, w₃), gives

    ∇c = w₁,   ∇b = −w₂,   ∇A = y w₁ᵀ + w₂ xᵀ,   ∇P = w₁ xᵀ

(∇P for P as given; the caller symmetrizes P, and the gradient with it).
Eliminating ds with the middle row (ds = −r_p − A dx) leaves the (n + m)
square matrix

    M = [[P, Aᵀ], [−L(y) A, L(s)]]   in (dx, dy),

which serves both directions: a Newton step solves M, the adjoint solves Mᵀ
for (w₁, w₃), then w₂ = −ḡs − L(y) w₃. M is formed densely and solved by a
batched LU (`tf.linalg.solve`, which XLA compiles); the adjoint adds one
refinement step when its residual is above rounding (`REFINE_ABOVE`; on the
equilibrated data it rarely is: 8e-15 against a right-hand side of 10 on
the ellipsoid projection at batch 128, measured, so the second solve, a
sixth of the backward pass's time, is usually skipped).

Polishing: the interior-point iterate is only O(√μ) from the solution when a
SOC block's boundary is curved along the solution's tangent (measured: 3e-5
at μ = 2e-9 for a projection through CVXPY's quad-over-lin cone; Clarabel's
answers show the same error). At a strictly complementary solution J is
nonsingular, so Newton's method on the conditions converges quadratically
from there: `polish` takes `POLISH_STEPS` full Newton steps (s and y then
projected onto K, a change of about the square of the error), and keeps a
step only where it lowers the residual; examples whose conditions do not yet
hold to rounding (`SOLVED_VIOLATION`) take `EXTRA_POLISH_STEPS` more. Its
verdict lets the solver stop the interior-point loop early (`solve`).

Limits: J is singular, and the gradient meaningless, at a degenerate
solution (no strict complementarity, or a non-unique solution), and with
redundant zero-cone rows.
"""

from __future__ import annotations

import tensorflow as tf

from keras_optlayers.solvers.shrinking_batch import recompute_rows
from keras_optlayers.solvers.socp.cones import ConeLayout


def _times_y_block(cones: ConeLayout, y: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """L(y) v for v (B, m) or (B, m, r), where L(y) is the identity on zero-cone rows (their row ds_E = 0).

    A Jordan product, column by column: O(m r) where the dense L(y) costs O(m² r).
    """
    zero = cones.zero
    y_conic = y[:, zero:] if v.shape.rank == 2 else y[:, zero:, None]
    conic = cones.product(y_conic, v[:, zero:])
    return tf.concat([v[:, :zero], conic], axis=1) if zero else conic


def reduced_jacobian(cones: ConeLayout, A: tf.Tensor, y: tf.Tensor, s: tf.Tensor, P: tf.Tensor | None = None) -> tf.Tensor:
    """M (B, n + m, n + m) above, columns ordered (x, y), rows (stationarity, complementarity); P None is zero."""
    zero = cones.zero
    # L(s) on all m rows, zero on the zero-cone rows.
    s_block = tf.pad(cones.arrow(s[:, zero:]), [[0, 0], [zero, 0], [zero, 0]])
    A_t = tf.linalg.matrix_transpose(A)
    x_terms = tf.zeros_like(A_t[:, :, :1]) * tf.zeros_like(A[:, :1, :]) if P is None else P  # (B, n, n)
    stationarity = tf.concat([x_terms, A_t], axis=-1)
    complementarity = tf.concat([-_times_y_block(cones, y, A), s_block], axis=-1)
    jacobian = tf.concat([stationarity, complementarity], axis=-2)
    # A zero row (a polished row with s = y = 0 exactly, a variable no row
    # touches) would make the solve fail; a shift far below the data's unit
    # scale (they are equilibrated) keeps M invertible.
    shift = tf.concat([-tf.ones_like(A[:, 0, :]), tf.ones_like(y)], axis=-1) * JACOBIAN_SHIFT
    return tf.linalg.set_diag(jacobian, tf.linalg.diag_part(jacobian) + shift)


POLISH_STEPS = 2
EXTRA_POLISH_STEPS = 1
# The conditions hold "to rounding" at this times 1 + ‖(x, y, s)‖∞
# (equilibrated units): a few hundred units of rounding. The benchmarks'
# robust LPs (condition ~1e3) that met it came out within 1.5e-10 of a
# tol=1e-10 solve, as the 1e-7 loop's did; at 1e-11 (absolute) some were
# 8e-10 off. Measured, issue 12 stop 24.
SOLVED_VIOLATION = 1e-13
JACOBIAN_SHIFT = 1e-13
# The adjoint is refined when some example's residual ‖Mᵀw − rhs‖∞ exceeds
# this times (1 + ‖rhs‖∞): thousands of units of rounding, and a million
# times below the gradients' accuracy target.
REFINE_ABOVE = 1e-12


def _residuals(cones: ConeLayout, A, b, c, P, x, y, s):
    """(dual r_d (B, n), primal r_p (B, m), complementarity r_c (B, m)); r_c is s itself on zero rows."""
    zero = cones.zero
    complementarity = tf.concat([s[:, :zero], cones.product(s[:, zero:], y[:, zero:])], axis=1)
    dual_residual = tf.linalg.matvec(A, y, adjoint_a=True) + c
    if P is not None:
        dual_residual += tf.linalg.matvec(P, x)
    return dual_residual, tf.linalg.matvec(A, x) + s - b, complementarity


def _violation(residuals) -> tf.Tensor:
    return tf.reduce_max(tf.abs(tf.concat(residuals, axis=-1)), axis=-1)


def _solve(jacobian: tf.Tensor, rhs: tf.Tensor, adjoint: bool = False) -> tf.Tensor:
    """M⁻¹ rhs (or M⁻ᵀ rhs) by batched LU, for rhs (B, N).

    LU rather than QR: 8x faster for (128, 107, 107), measured. Its kernel
    fails the whole batch on an exactly zero pivot; `JACOBIAN_SHIFT` keeps
    the diagonal off zero, and an example whose M is not finite (a failed
    solve) is given the identity instead (its result is then meaningless
    and its status says so).
    """
    finite = tf.reduce_all(tf.math.is_finite(jacobian), axis=[-2, -1])[:, None, None]
    jacobian = tf.where(finite, jacobian, tf.eye(tf.shape(jacobian)[-1], dtype=jacobian.dtype))
    return tf.linalg.solve(jacobian, rhs[..., None], adjoint=adjoint)[..., 0]


def _newton_step(cones: ConeLayout, A, b, c, P, x, y, s, residuals, violation):
    """One Newton step on the conditions from (x, y, s), taken by the examples whose violation it lowers."""
    n, zero = x.shape[-1], cones.zero
    dual_residual, primal_residual, complementarity = residuals
    rhs = tf.concat([-dual_residual, _times_y_block(cones, y, primal_residual) - complementarity], axis=-1)
    step = _solve(reduced_jacobian(cones, A, y, s, P), rhs)
    dx, dy = step[:, :n], step[:, n:]
    ds = -primal_residual - tf.linalg.matvec(A, dx)
    new_x, new_y, new_s = x + dx, y + dy, s + ds
    # The full step may leave K by about the square of the current error: project back.
    new_y = tf.concat([new_y[:, :zero], cones.project(new_y[:, zero:])], axis=1)
    new_s = tf.concat([tf.zeros_like(new_s[:, :zero]), cones.project(new_s[:, zero:])], axis=1)
    new_residuals = _residuals(cones, A, b, c, P, new_x, new_y, new_s)
    new_violation = _violation(new_residuals)
    better = new_violation < violation
    keep = better[:, None]
    x, y, s = tf.where(keep, new_x, x), tf.where(keep, new_y, y), tf.where(keep, new_s, s)
    residuals = tuple(tf.where(keep, new, old) for new, old in zip(new_residuals, residuals))
    return x, y, s, residuals, tf.where(better, new_violation, violation)


def _solved_to_rounding(x, y, s, violation) -> tf.Tensor:
    """(B,) bool: the conditions hold to `SOLVED_VIOLATION` times 1 + ‖(x, y, s)‖∞."""
    scale = 1.0 + tf.reduce_max(tf.abs(tf.concat([x, y, s], axis=1)), axis=-1)
    return violation <= SOLVED_VIOLATION * scale


def polish(cones: ConeLayout, A, b, c, P, x, y, s) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(x, y, s) after Newton steps on the conditions (those that lower the residual), and whether they hold.

    `POLISH_STEPS` steps for the whole batch, then `EXTRA_POLISH_STEPS`
    for the examples whose conditions do not yet hold to rounding
    (gathered: at batch 128 a step costs an (n + m)-square LU per example).

    P is the objective's (B, n, n) symmetric quadratic term, or None for zero.

    Returns:
        The polished (x, y, s), with s and y in K, and (B,) bool: the
        conditions ‖(Px + Aᵀy + c, Ax + s − b, s ∘ y)‖∞ hold to
        `SOLVED_VIOLATION` × (1 + ‖(x, y, s)‖∞).
    """
    residuals = _residuals(cones, A, b, c, P, x, y, s)
    violation = _violation(residuals)
    for _ in range(POLISH_STEPS):
        x, y, s, residuals, violation = _newton_step(cones, A, b, c, P, x, y, s, residuals, violation)
    for _ in range(EXTRA_POLISH_STEPS):
        unsolved = ~_solved_to_rounding(x, y, s, violation)
        x, y, s, residuals, violation = recompute_rows(
            unsolved, lambda inputs: _newton_step(cones, *inputs),
            (A, b, c, P, x, y, s, residuals, violation), (x, y, s, residuals, violation))
    return x, y, s, _solved_to_rounding(x, y, s, violation)


def solution_adjoint(cones: ConeLayout, A, P, x, y, s, grad_x, grad_y, grad_s) -> tuple[tf.Tensor, ...]:
    """(∇A, ∇b, ∇c), and ∇P unless P is None, for upstream gradients of (x, y, s); all batched (B, ...)."""
    jacobian = reduced_jacobian(cones, A, y, s, P)
    rhs = tf.concat([-grad_x + tf.linalg.matvec(A, grad_s, adjoint_a=True), -grad_y], axis=-1)
    w = _solve(jacobian, rhs, adjoint=True)
    residual = rhs - tf.linalg.matvec(jacobian, w, adjoint_a=True)
    rounding = REFINE_ABOVE * (1.0 + tf.reduce_max(tf.abs(rhs), axis=-1))
    w = tf.cond(
        tf.reduce_any(tf.reduce_max(tf.abs(residual), axis=-1) > rounding),
        lambda: w + _solve(jacobian, residual, adjoint=True),
        lambda: w,
    )
    n = x.shape[-1]
    w_x, w_s = w[:, :n], w[:, n:]
    w_y = -grad_s - _times_y_block(cones, y, w_s)
    grad_A = y[:, :, None] * w_x[:, None, :] + w_y[:, :, None] * x[:, None, :]
    if P is None:
        return grad_A, -w_y, w_x
    return grad_A, -w_y, w_x, w_x[:, :, None] * x[:, None, :]

"""Removes the equality constraints Ax = b before the interior-point loop.

With A = U Σ Vᵀ (thin SVD), rows whose singular value is below
`RANK_RCOND` × the largest are treated as redundant. Writing
x = x₀ + N y with x₀ = A⁺ b and N = I − V_r V_rᵀ the projector onto A's null
space turns the QP into one with inequalities only,

    minimize ½ yᵀ Q y + cᵀ y   subject to   F y ≤ g,
    Q = N P N + Π,  c = N (P x₀ + q),  F = G N,  g = h − G x₀,

where Π = V_r V_rᵀ makes Q definite along the row space of A without changing
the solution (y's row-space part does not move x and the steps never put any
there). Redundant rows (rank-deficient A) need nothing more, the loop carries
no equality residual, and the reduced matrix stays n × n and definite.

The SVD only ranks and orders A's rows: under XLA (its Jacobi SVD, on CPU
at least) the singular vectors are accurate to about 1e-7, not to rounding,
and a null-space projector built from them leaves ‖A N‖ ~ 1e-7, which the
solution check then rejects. So the row space is spanned by Aᵀuᵢ (exactly in
it, whatever uᵢ's accuracy) and orthonormalized by a QR factorization; A⁺
is refined by Newton–Schulz steps X ← X + X(I − AX), which square the error
I − AX (from 1e-7 to rounding in two) when A has full row rank; and x₀ and
ν are refined by steps of iterative refinement with X, which converge with
redundant rows too. Limit: with redundant rows under XLA, A⁺ itself (used
by the gradient) keeps the SVD's accuracy.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from keras_optlayers.solvers.qp.reduced_kkt import matvec

# Singular values below this fraction of the largest one count as zero.
RANK_RCOND = 1e-10
# Newton–Schulz steps refining the SVD's pseudo-inverse (see the module docstring).
INVERSE_REFINEMENTS = 2


class ReducedQP(NamedTuple):
    """An inequality-only QP in y, and the map back to x = x₀ + N y.

    Without equalities, Q = P, c = q, F = G, g = h, and x = y
    (`nullspace_projector` and `pseudo_inverse` are None).
    """

    Q: tf.Tensor
    c: tf.Tensor
    F: tf.Tensor
    g: tf.Tensor
    x_particular: tf.Tensor
    nullspace_projector: tf.Tensor | None
    pseudo_inverse: tf.Tensor | None
    equality_residual: tf.Tensor
    equality_matrix: tf.Tensor | None  # A


def eliminate_equalities(P, q, A, b, G, h) -> ReducedQP:
    """Reduces the batched QP to inequalities only.

    Args:
        P: (B, n, n) symmetric; q: (B, n); A: (B, p, n); b: (B, p);
            G: (B, m, n); h: (B, m). p = 0 means no equalities.

    Returns:
        A `ReducedQP`; `equality_residual` (B,) is ‖A x₀ − b‖∞, nonzero when
        b is outside A's range (infeasible equalities).
    """
    if A.shape[-2] == 0:
        zeros = tf.zeros_like(q)
        return ReducedQP(P, q, G, h, zeros, None, None, tf.zeros_like(q[:, 0]), None)
    singular_values, u, v = tf.linalg.svd(A, full_matrices=False)
    kept = singular_values > RANK_RCOND * tf.reduce_max(singular_values, axis=-1, keepdims=True)
    kept_mask = tf.cast(kept, A.dtype)[:, None, :]  # a prefix: singular values come sorted, largest first
    row_space_basis, _ = tf.linalg.qr(tf.matmul(A, u * kept_mask, adjoint_a=True))
    row_space_basis *= kept_mask
    row_space_projector = tf.matmul(row_space_basis, row_space_basis, adjoint_b=True)
    nullspace_projector = tf.eye(tf.shape(P)[-1], dtype=P.dtype) - row_space_projector
    inverse_singular_values = tf.where(kept, 1.0 / tf.where(kept, singular_values, 1.0), 0.0)
    pseudo_inverse = tf.matmul(v * inverse_singular_values[:, None, :], u, adjoint_b=True)
    identity = tf.eye(tf.shape(A)[-2], dtype=A.dtype)
    for _ in range(INVERSE_REFINEMENTS):
        pseudo_inverse += tf.matmul(pseudo_inverse, identity - tf.matmul(A, pseudo_inverse))
    x_particular = matvec(pseudo_inverse, b)
    for _ in range(INVERSE_REFINEMENTS):
        x_particular += matvec(pseudo_inverse, b - matvec(A, x_particular))
    equality_residual = tf.reduce_max(tf.abs(matvec(A, x_particular) - b), axis=-1)
    Q = tf.matmul(nullspace_projector, tf.matmul(P, nullspace_projector)) + row_space_projector
    c = matvec(nullspace_projector, matvec(P, x_particular) + q)
    F = tf.matmul(G, nullspace_projector)
    g = h - matvec(G, x_particular)
    return ReducedQP(Q, c, F, g, x_particular, nullspace_projector, pseudo_inverse, equality_residual, A)


def primal_from_reduced(reduced: ReducedQP, y: tf.Tensor) -> tf.Tensor:
    """x = x₀ + N y."""
    if reduced.nullspace_projector is None:
        return y
    return reduced.x_particular + matvec(reduced.nullspace_projector, y)


def equality_multipliers(reduced: ReducedQP, stationarity_without_equalities: tf.Tensor) -> tf.Tensor:
    """Least-norm ν with Aᵀν = −r for r = P x + q + Gᵀλ (ν = −(A⁺)ᵀ r).

    Returns a (B, 0) tensor when there are no equalities.
    """
    if reduced.pseudo_inverse is None:  # no equalities (equality_matrix is None too)
        return stationarity_without_equalities[:, :0]
    nu = -tf.linalg.matvec(reduced.pseudo_inverse, stationarity_without_equalities, adjoint_a=True)
    for _ in range(INVERSE_REFINEMENTS):
        residual = stationarity_without_equalities + tf.linalg.matvec(reduced.equality_matrix, nu, adjoint_a=True)
        nu -= tf.linalg.matvec(reduced.pseudo_inverse, residual, adjoint_a=True)
    return nu

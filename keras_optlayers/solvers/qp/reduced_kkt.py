"""The reduced KKT matrix shared by the interior-point steps and the adjoint.

After equalities are eliminated (see `equality_elimination`) and the slack
and multiplier blocks of the KKT system are solved for in closed form, every
linear system the solver meets has the matrix

    H = Q + Fᵀ diag(d) F + δ I,        d = λ / s > 0,

symmetric positive definite, so one batched Cholesky factorization serves all
of an iteration's right-hand sides, and the backward pass.
"""

from __future__ import annotations

import tensorflow as tf

# δ relative to H's largest diagonal entry (at least the absolute floor): about the factorization's own
# rounding, so it keeps H definite when Q is singular (LPs) and some d are tiny;
# larger values slow the last iterations. Residuals never include it.
RELATIVE_REGULARIZATION = 1e-15
ABSOLUTE_REGULARIZATION = 1e-12


def matvec(matrix: tf.Tensor, vector: tf.Tensor) -> tf.Tensor:
    """Batched matrix-vector product (B, r, c) x (B, c) -> (B, r)."""
    return tf.matmul(matrix, vector[..., None])[..., 0]


def transposed_matvec(matrix: tf.Tensor, vector: tf.Tensor) -> tf.Tensor:
    """Batched (B, r, c)ᵀ x (B, r) -> (B, c), the transpose folded into the product.

    An explicit transpose of the matrix costs 100-300 µs at batch 128 on a
    CPU (TensorFlow's oneDNN transpose of small matrices), more than the
    product itself.
    """
    return tf.matmul(matrix, vector[..., None], adjoint_a=True)[..., 0]


def factor(Q: tf.Tensor | None, F: tf.Tensor, d: tf.Tensor | None = None) -> tf.Tensor:
    """Inverse Cholesky factor of Q + Fᵀ diag(d) F + δ I.

    The inverse of the factor, not the factor: each solve is then two
    batched matrix-vector products instead of two triangular solves, which
    are several times slower per call for the small matrices of a batch.

    Args:
        Q: (B, n, n) symmetric positive semidefinite, or None for zero.
        F: (B, m, n).
        d: (B, m) positive weights, or None for ones. Fᵀ(DF) is one product
            with the transpose folded in.

    Returns:
        Lower-triangular L⁻¹ of shape (B, n, n), where L Lᵀ = H.
    """
    H = tf.matmul(F, F if d is None else d[:, :, None] * F, adjoint_a=True)
    if Q is not None:
        H += Q
    diagonal = tf.linalg.diag_part(H)
    shift = tf.maximum(RELATIVE_REGULARIZATION * tf.reduce_max(diagonal, axis=-1, keepdims=True), ABSOLUTE_REGULARIZATION)
    cholesky_factor = tf.linalg.cholesky(tf.linalg.set_diag(H, diagonal + shift))
    # One identity broadcast over the batch: with a static n it is a constant of the graph, where a
    # batched one was formed at every factorization (once per iteration).
    identity = tf.eye(tf.shape(H)[-1], dtype=H.dtype)
    return tf.linalg.triangular_solve(cholesky_factor, identity, lower=True)


def solve(inverse_factor: tf.Tensor, rhs: tf.Tensor) -> tf.Tensor:
    """Solves H x = rhs for a batch of vectors rhs (B, n): x = L⁻ᵀ (L⁻¹ rhs)."""
    return tf.linalg.matvec(inverse_factor, matvec(inverse_factor, rhs), adjoint_a=True)

"""A compiled QP's auxiliary variables substituted out before the native QP solver runs.

With x_full = T x + u (`auxiliary_substitution`), the QP in the kept
variables x alone has

    P' = Tᵀ P T,   c' = Tᵀ (P u + c),   the other equalities and the
    inequalities restricted to the kept columns (t enters neither).

Every step is a TF op on the batch, differentiated by autodiff around the
solver's own implicit gradient. The eliminated rows' multipliers come from
stationarity in t, the only place t enters: (P x_full + c)_t + a ν_def = 0.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from keras_optlayers.core.auxiliary_variables import AuxiliaryVariables
from keras_optlayers.ops.auxiliary_substitution import Substitution


def substitute_auxiliary_variables(
    auxiliary: AuxiliaryVariables, P: tf.Tensor, c: tf.Tensor, A_eq: tf.Tensor, b_eq: tf.Tensor,
    G: tf.Tensor | None, h: tf.Tensor | None,
) -> tuple[tuple[tf.Tensor, ...], Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]]:
    """The reduced QP's (P, c, A_eq, b_eq, G, h), and `restore(x, ν) -> (x_full, ν_full)`.

    Shapes are batched: P (B, n, n), c (B, n), A_eq (B, p, n), b_eq (B, p),
    G (B, m, n) and h (B, m) or None. The reduced A_eq, b_eq are None when
    every equality defined a variable.
    """
    substitution = Substitution(auxiliary, A_eq, b_eq)
    T = substitution.T
    P_reduced = tf.linalg.matmul(T, tf.linalg.matmul(P, T), adjoint_a=True)
    c_reduced = tf.linalg.matvec(T, tf.linalg.matvec(P, substitution.u) + c, adjoint_a=True)
    if len(auxiliary.kept_rows):
        A_reduced = tf.gather(tf.gather(A_eq, auxiliary.kept_rows, axis=1), auxiliary.kept, axis=2)
        b_reduced = tf.gather(b_eq, auxiliary.kept_rows, axis=1)
    else:
        A_reduced = b_reduced = None
    G_reduced = None if G is None else tf.gather(G, auxiliary.kept, axis=2)

    def restore(x: tf.Tensor, nu: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x_full = substitution.full(x)
        nu_defining = substitution.defining_multipliers(tf.linalg.matvec(P, x_full) + c)
        nu_full = tf.gather(tf.concat([nu, nu_defining], axis=1), auxiliary.row_order, axis=1)
        return x_full, nu_full

    return (P_reduced, c_reduced, A_reduced, b_reduced, G_reduced, h), restore

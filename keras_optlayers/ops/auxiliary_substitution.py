"""What the QP and cone reductions share: the objective in the kept variables, t = Mx + d and the defining rows' multipliers.

With the eliminated variables t = M x + d (`core/dense_blocks`), the
objective ½x_fullᵀPx_full + cᵀx_full of x_full = [x; t] is, in the kept
variables x alone (up to a constant),

    P' = P_kk + P_kt M + Mᵀ (P_tk + P_tt M),
    c' = c_k + P_kt d + Mᵀ (c_t + P_tt d),

products with a structurally zero (absent) block skipped: on the OptNet QP,
written by CVXPY as ½‖t‖² with t = Lᵀx, P' is MᵀM and c' is c_k. The
solution the solver finds in x gives t, and the multiplier of the equality
that defines each t comes from stationarity in t, the only column where
that row meets it: (∇ of the rest)_t + a ν_def = 0.
"""

from __future__ import annotations

import tensorflow as tf

from keras_optlayers.core.dense_blocks import BlockLayout

Blocks = dict[str, tf.Tensor]  # the applied blocks of a `BlockLayout`, each (B, *shape)


def sum_present(*terms: tf.Tensor | None) -> tf.Tensor | None:
    """The sum of the terms that are not None (products with a structurally zero block are skipped); None if all are."""
    present = [t for t in terms if t is not None]
    return tf.add_n(present) if present else None


def reduced_objective(blocks: Blocks) -> tuple[tf.Tensor | None, tf.Tensor]:
    """(P', c') above, (B, kept, kept) and (B, kept); P' is None when every P block is absent (a linear objective).

    Either may come composed at compile time (the blocks P_reduced and
    c_reduced of `core/dense_blocks`, where M is constant); only the rest is
    multiplied here.
    """
    P_kt, P_tk, P_tt, c_t, M, d = (blocks.get(name) for name in ("P_kt", "P_tk", "P_tt", "c_t", "M", "d"))
    if M is None:
        return blocks.get("P_kk"), blocks["c_k"]
    if "P_reduced" in blocks:
        P = blocks["P_reduced"]
    else:
        W = sum_present(P_tk, None if P_tt is None else tf.linalg.matmul(P_tt, M))
        P = sum_present(
            blocks.get("P_kk"),
            None if P_kt is None else tf.linalg.matmul(P_kt, M),
            None if W is None else tf.linalg.matmul(M, W, adjoint_a=True))
    if "c_reduced" in blocks:
        return P, blocks["c_reduced"]
    linear_t = sum_present(c_t, None if P_tt is None or d is None else tf.linalg.matvec(P_tt, d))
    c = sum_present(
        blocks["c_k"],
        None if P_kt is None or d is None else tf.linalg.matvec(P_kt, d),
        None if linear_t is None else tf.linalg.matvec(M, linear_t, adjoint_a=True))
    return P, c


def objective_gradient_t(blocks: Blocks, x: tf.Tensor, t: tf.Tensor) -> tf.Tensor | None:
    """(P x_full + c)_t = P_tk x + P_tt t + c_t, (B, eliminated); None when the objective does not depend on t."""
    P_tk, P_tt = blocks.get("P_tk"), blocks.get("P_tt")
    return sum_present(
        None if P_tk is None else tf.linalg.matvec(P_tk, x),
        None if P_tt is None else tf.linalg.matvec(P_tt, t),
        blocks.get("c_t"))


def eliminated_variables(blocks: Blocks, x: tf.Tensor) -> tf.Tensor:
    """t = M x + d, (B, eliminated), from the kept variables x (B, kept)."""
    return sum_present(tf.linalg.matvec(blocks["M"], x), blocks.get("d"))


def defining_multipliers(layout: BlockLayout, gradient_t: tf.Tensor | None, t: tf.Tensor) -> tf.Tensor:
    """ν_def = −(∇ of the rest)_t / a, (B, eliminated); zeros where the rest does not depend on t (None)."""
    if gradient_t is None:
        return tf.zeros_like(t)
    return -gradient_t / tf.constant(layout.coefficients, t.dtype)  # constant: found at compile time

"""The native QP solver's data from the parameter vector, CVXPY's auxiliary variables substituted out.

Each dense block of `core/dense_blocks.qp_blocks` comes from the parameter
vector (`affine_maps.BlockMaps`). With x_full = [x; M x + d] (the
eliminated t defined by their equalities), the QP in the kept variables x alone has

    P' = P_kk + P_kt M + Mᵀ (P_tk + P_tt M),
    c' = c_k + P_kt d + Mᵀ (c_t + P_tt d),

the other equalities and the inequalities on the kept columns (t enters
neither). Products with a structurally zero block are skipped: on the
OptNet QP, written by CVXPY as ½‖t‖² with t = Lᵀx, P' is MᵀM and c' is
c_k. Every step is a TF op on the batch, differentiated by autodiff
around the solver's own implicit gradient. The eliminated rows'
multipliers come from stationarity in t, the only place t enters:
(P x_full + c)_t + a ν_def = 0.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from keras_optlayers.core.dense_blocks import BlockLayout
from keras_optlayers.ops.auxiliary_substitution import (
    Blocks,
    defining_multipliers,
    eliminated_variables,
    sum_present,
)


def reduced_qp(
    layout: BlockLayout, blocks: Blocks
) -> tuple[tuple[tf.Tensor | None, ...], Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]]:
    """The QP the solver sees, (P, c, A, b, G, h), and `restore(x, ν, λ) -> (x_solution, y_solution)`.

    A and b (G and h) are None without equalities (inequalities) left. The
    restored solution is in the layout's solver order: read it through
    `layout.x_order` and `layout.y_order`.
    """
    A, b, G, h = (blocks.get(name) for name in ("A", "b", "G", "h"))
    if not layout.has_auxiliary:
        return (blocks["P_kk"], blocks["c_k"], A, b, G, h), lambda x, nu, lam: (x, tf.concat([nu, lam], axis=1))
    M, d = blocks["M"], blocks.get("d")
    P_kt, P_tk, P_tt, c_t = (blocks.get(name) for name in ("P_kt", "P_tk", "P_tt", "c_t"))
    W = sum_present(P_tk, None if P_tt is None else tf.linalg.matmul(P_tt, M))
    P = sum_present(
        blocks["P_kk"],
        None if P_kt is None else tf.linalg.matmul(P_kt, M),
        None if W is None else tf.linalg.matmul(M, W, adjoint_a=True))
    linear_t = sum_present(c_t, None if P_tt is None or d is None else tf.linalg.matvec(P_tt, d))
    c = sum_present(
        blocks["c_k"],
        None if P_kt is None or d is None else tf.linalg.matvec(P_kt, d),
        None if linear_t is None else tf.linalg.matvec(M, linear_t, adjoint_a=True))

    def restore(x: tf.Tensor, nu: tf.Tensor, lam: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        t = eliminated_variables(blocks, x)
        gradient_t = sum_present(
            None if P_tk is None else tf.linalg.matvec(P_tk, x),
            None if P_tt is None else tf.linalg.matvec(P_tt, t),
            c_t)
        return tf.concat([x, t], axis=1), tf.concat([nu, defining_multipliers(layout, gradient_t, t), lam], axis=1)

    return (P, c, A, b, G, h), restore

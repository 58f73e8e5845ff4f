"""The native QP solver's data from the parameter vector, CVXPY's auxiliary variables substituted out.

Each dense block of `core/qp_layout` is one `SparseMap` of the parameter
vector. With x_full = [x; M x + d] (the eliminated t defined by their
equalities), the QP in the kept variables x alone has

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

import scipy.sparse as sp
import tensorflow as tf

from keras_optlayers.core.qp_layout import QPLayout
from keras_optlayers.ops.affine_maps import SparseMap

Blocks = dict[str, tf.Tensor]
# Blocks the solver or the substitution needs even when they are zero.
_ALWAYS_PRESENT = ("P_kk", "c_k", "M", "A", "b", "G", "h")


class QPData:
    """The dense blocks of a compiled QP, from the parameter vector (B, entries + 1), as float64 tensors.

    All blocks come from one map of the stacked block matrices, split after:
    its gradient is one segment sum into the parameter vector, where a map
    per block took one each (8 on the OptNet QP, 90-160 µs apiece at batch
    128).
    """

    def __init__(self, layout: QPLayout):
        self.layout = layout
        self._names = [name for name, block in layout.blocks.items() if block.matrix.nnz or name in _ALWAYS_PRESENT]
        matrices = [layout.blocks[name].matrix for name in self._names]
        self._sizes = [matrix.shape[0] for matrix in matrices]
        self._map = SparseMap(sp.vstack(matrices))

    def blocks(self, parameters: tf.Tensor) -> Blocks:
        """Each block (B, *shape), by name; structurally zero ones are left out."""
        batch = tf.shape(parameters)[0]
        parts = tf.split(self._map(parameters), self._sizes, axis=1)
        return {name: tf.reshape(part, [batch, *self.layout.blocks[name].shape]) for name, part in zip(self._names, parts)}


def _sum(*terms: tf.Tensor | None) -> tf.Tensor | None:
    present = [t for t in terms if t is not None]
    return tf.add_n(present) if present else None


def reduced_qp(
    layout: QPLayout, blocks: Blocks
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
    W = _sum(P_tk, None if P_tt is None else tf.linalg.matmul(P_tt, M))
    P = _sum(blocks["P_kk"], None if P_kt is None else tf.linalg.matmul(P_kt, M),
             None if W is None else tf.linalg.matmul(M, W, adjoint_a=True))
    linear_t = _sum(c_t, None if P_tt is None or d is None else tf.linalg.matvec(P_tt, d))
    c = _sum(blocks["c_k"], None if P_kt is None or d is None else tf.linalg.matvec(P_kt, d),
             None if linear_t is None else tf.linalg.matvec(M, linear_t, adjoint_a=True))
    coefficient = tf.constant(layout.coefficients, tf.float64)  # constant: found at compile time

    def restore(x: tf.Tensor, nu: tf.Tensor, lam: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        t = _sum(tf.linalg.matvec(M, x), d)
        gradient_t = _sum(None if P_tk is None else tf.linalg.matvec(P_tk, x),
                          None if P_tt is None else tf.linalg.matvec(P_tt, t), c_t)
        nu_defining = tf.zeros_like(t) if gradient_t is None else -gradient_t / coefficient
        return tf.concat([x, t], axis=1), tf.concat([nu, nu_defining, lam], axis=1)

    return (P, c, A, b, G, h), restore

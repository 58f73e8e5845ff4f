"""The native SOCP solver's data from the parameter vector, CVXPY's auxiliary variables substituted out.

The cone program is  minimize cᵀx  subject to  Ax + s = b,  s ∈ K,  with K's
first `zero` rows the equalities. Each dense block of
`core/dense_blocks.cone_blocks` comes from the parameter vector
(`affine_maps.BlockMaps`). With x_full = [x; M x + d] (the eliminated t
defined by their equalities), the program in the kept variables x alone
has

    A' = A + A_t M,   b' = b − A_t d,   c' = c_k + Mᵀ c_t,

A and A_t the rows that define nothing (the other equalities first, then
every cone row, in order: K loses only `zero` rows) on the kept and the
eliminated columns. The eliminated rows' multipliers come from
stationarity in t, c + Aᵀy = 0 read at t's columns: y_def = −(c_t +
A_tᵀ y') / a. The ellipsoid projection (n = 20) goes from 42 variables and
65 rows to 22 and 45; the interior-point method factors matrices of the
variables' size.

Every step is a TF op on the batch, differentiated by autodiff around the
solver's own implicit gradient.
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
from keras_optlayers.solvers.socp.cones import ConeLayout


def reduced_layout(blocks: BlockLayout, layout: ConeLayout) -> ConeLayout:
    """The cones of the reduced program: the defining equalities (one per eliminated variable) gone."""
    return ConeLayout(layout.zero - len(blocks.coefficients), layout.nonneg, layout.soc)


def reduced_cone_program(
    layout: BlockLayout, blocks: Blocks
) -> tuple[tuple[tf.Tensor, tf.Tensor, tf.Tensor], Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]]:
    """The program the solver sees, (A', b', c'), and `restore(x, y) -> (x_solution, y_solution)`.

    Shapes are batched: A' (B, m', n'), b' (B, m'), c' (B, n'). The restored
    solution is in the layout's solver order: read it through
    `layout.x_order` and `layout.y_order`.
    """
    A, b, c = blocks["A"], blocks["b"], blocks["c_k"]
    if not layout.has_auxiliary:
        return (A, b, c), lambda x, y: (x, y)
    M, d, A_t, c_t = blocks["M"], blocks.get("d"), blocks.get("A_t"), blocks.get("c_t")
    reduced = (
        sum_present(A, None if A_t is None else tf.linalg.matmul(A_t, M)),
        sum_present(b, None if A_t is None or d is None else -tf.linalg.matvec(A_t, d)),
        sum_present(c, None if c_t is None else tf.linalg.matvec(M, c_t, adjoint_a=True)),
    )

    def restore(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        t = eliminated_variables(blocks, x)
        gradient_t = sum_present(c_t, None if A_t is None else tf.linalg.matvec(A_t, y, adjoint_a=True))
        return tf.concat([x, t], axis=1), tf.concat([y, defining_multipliers(layout, gradient_t, t)], axis=1)

    return reduced, restore

"""The native SOCP solver's data from the parameter vector, CVXPY's auxiliary variables substituted out.

The cone program is  minimize ½xᵀPx + cᵀx  subject to  Ax + s = b,  s ∈ K
(P absent for a linear objective), with K's first `zero` rows the
equalities. Each dense block of `core/dense_blocks.cone_blocks` comes from
the parameter vector (`affine_maps.BlockMaps`). With x_full = [x; M x + d]
(the eliminated t defined by their equalities), the program in the kept
variables x alone has the objective of
`auxiliary_substitution.reduced_objective` and

    A' = A + A_t M,   b' = b − A_t d,

A and A_t the rows that define nothing (the other equalities first, then
every cone row, in order: K loses only `zero` rows) on the kept and the
eliminated columns. The eliminated rows' multipliers come from
stationarity in t, (P x_full + c)_t + A_tᵀy' + a y_def = 0. The ellipsoid
projection (n = 20), its objective kept quadratic, goes from 61 variables
and 63 rows to 20 and 23; the interior-point method factors matrices of
the variables' size.

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
    objective_gradient_t,
    reduced_objective,
    sum_present,
)
from keras_optlayers.solvers.socp.cones import ConeLayout


def reduced_layout(blocks: BlockLayout, layout: ConeLayout) -> ConeLayout:
    """The cones of the reduced program: the defining equalities (one per eliminated variable) gone."""
    return ConeLayout(layout.zero - len(blocks.coefficients), layout.nonneg, layout.soc)


def reduced_cone_program(
    layout: BlockLayout, blocks: Blocks
) -> tuple[tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor | None], Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]]:
    """The program the solver sees, (A', b', c', P'), and `restore(x, y) -> (x_solution, y_solution)`.

    Shapes are batched: A' (B, m', n'), b' (B, m'), c' (B, n'), P'
    (B, n', n') or None for a linear objective. The restored solution is in
    the layout's solver order: read it through `layout.x_order` and
    `layout.y_order`.
    """
    A, b = blocks.get("A"), blocks.get("b")
    P, c = reduced_objective(blocks)
    if not layout.has_auxiliary:
        return (A, b, c, P), lambda x, y: (x, y)
    M, d, A_t = blocks["M"], blocks.get("d"), blocks.get("A_t")
    # A' and b' may come composed at compile time (`core/dense_blocks`, where M is constant).
    reduced = (
        blocks["A_reduced"] if "A_reduced" in blocks else sum_present(A, None if A_t is None else tf.linalg.matmul(A_t, M)),
        blocks["b_reduced"] if "b_reduced" in blocks else sum_present(
            b, None if A_t is None or d is None else -tf.linalg.matvec(A_t, d)),
        c,
        P,
    )

    def restore(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        t = eliminated_variables(blocks, x)
        gradient_t = sum_present(objective_gradient_t(blocks, x, t),
                                 None if A_t is None else tf.linalg.matvec(A_t, y, adjoint_a=True))
        return tf.concat([x, t], axis=1), tf.concat([y, defining_multipliers(layout, gradient_t, t)], axis=1)

    return reduced, restore

"""The native QP solver's data from the parameter vector, CVXPY's auxiliary variables substituted out.

Each dense block of `core/dense_blocks.qp_blocks` comes from the parameter
vector (`affine_maps.BlockMaps`). With x_full = [x; M x + d] (the
eliminated t defined by their equalities), the QP in the kept variables x
alone has the objective of `auxiliary_substitution.reduced_objective` and
the other equalities and the inequalities on the kept columns (t enters
neither). Every step is a TF op on the batch, differentiated by autodiff
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
    objective_gradient_t,
    reduced_objective,
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
    P, c = reduced_objective(blocks)
    if not layout.has_auxiliary:
        return (P, c, A, b, G, h), lambda x, nu, lam: (x, tf.concat([nu, lam], axis=1))

    def restore(x: tf.Tensor, nu: tf.Tensor, lam: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        t = eliminated_variables(blocks, x)
        gradient_t = objective_gradient_t(blocks, x, t)
        return tf.concat([x, t], axis=1), tf.concat([nu, defining_multipliers(layout, gradient_t, t), lam], axis=1)

    return (P, c, A, b, G, h), restore

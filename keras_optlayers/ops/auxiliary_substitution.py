"""What the QP and cone reductions share: sums that skip zero blocks, t = Mx + d and the defining rows' multipliers.

With the eliminated variables t = M x + d (`core/dense_blocks`), the
solution the solver finds in the kept variables x gives t, and the
multiplier of the equality that defines each t comes from stationarity in
t, the only column where that row meets it: (∇ of the rest)_t + a ν_def = 0.
"""

from __future__ import annotations

import tensorflow as tf

from keras_optlayers.core.dense_blocks import BlockLayout

Blocks = dict[str, tf.Tensor]  # the applied blocks of a `BlockLayout`, each (B, *shape)


def sum_present(*terms: tf.Tensor | None) -> tf.Tensor | None:
    """The sum of the terms that are not None (products with a structurally zero block are skipped); None if all are."""
    present = [t for t in terms if t is not None]
    return tf.add_n(present) if present else None


def eliminated_variables(blocks: Blocks, x: tf.Tensor) -> tf.Tensor:
    """t = M x + d, (B, eliminated), from the kept variables x (B, kept)."""
    return sum_present(tf.linalg.matvec(blocks["M"], x), blocks.get("d"))


def defining_multipliers(layout: BlockLayout, gradient_t: tf.Tensor | None, t: tf.Tensor) -> tf.Tensor:
    """ν_def = −(∇ of the rest)_t / a, (B, eliminated); zeros where the rest does not depend on t (None)."""
    if gradient_t is None:
        return tf.zeros_like(t)
    return -gradient_t / tf.constant(layout.coefficients, t.dtype)  # constant: found at compile time

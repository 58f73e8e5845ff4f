"""A compiled cone program's auxiliary variables substituted out before the native SOCP solver runs.

The cone program is  minimize cᵀx  subject to  Ax + s = b,  s ∈ K,  with K's
first `zero` rows the equalities. With x_full = T x + u
(`auxiliary_substitution`), the program in the kept variables x alone has

    c' = Tᵀc,   A' = A_rest T,   b' = b_rest − A_rest u,

A_rest the rows that define nothing: the other equalities first, then every
cone row, in order, so K loses only `zero` rows. The eliminated rows'
multipliers come from stationarity in t, c + Aᵀy = 0 read at t's columns:
y_def = −(c_t + A_rest[:, t]ᵀ y') / a, and their slacks are 0. The
ellipsoid projection (n = 20) goes from 42 variables and 65 rows to 22 and
45; the interior-point method factors matrices of the variables' size.

Every step is a TF op on the batch, differentiated by autodiff around the
solver's own implicit gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_optlayers.core.auxiliary_variables import AuxiliaryVariables
from keras_optlayers.ops.auxiliary_substitution import Substitution
from keras_optlayers.solvers.socp.cones import ConeLayout


def reduced_layout(auxiliary: AuxiliaryVariables, layout: ConeLayout) -> ConeLayout:
    """The cones of the reduced program: the defining equalities gone."""
    return ConeLayout(layout.zero - len(auxiliary.defining_rows), layout.nonneg, layout.soc)


def substitute_auxiliary_variables(
    auxiliary: AuxiliaryVariables, A: tf.Tensor, b: tf.Tensor, c: tf.Tensor, layout: ConeLayout,
) -> tuple[tuple[tf.Tensor, tf.Tensor, tf.Tensor],
           Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]]:
    """The reduced program's (A', b', c'), and `restore(x, y, s) -> (x_full, y_full, s_full)`.

    Shapes are batched: A (B, m, n), b (B, m), c (B, n).
    """
    other_rows = np.concatenate([auxiliary.kept_rows, np.arange(layout.zero, layout.num_rows)]).astype(np.int32)
    row_order = np.argsort(np.concatenate([auxiliary.defining_rows, other_rows]))
    substitution = Substitution(auxiliary, A, b)
    A_rest = tf.gather(A, other_rows, axis=1)
    reduced = (tf.linalg.matmul(A_rest, substitution.T),
               tf.gather(b, other_rows, axis=1) - tf.linalg.matvec(A_rest, substitution.u),
               tf.linalg.matvec(substitution.T, c, adjoint_a=True))

    def restore(x: tf.Tensor, y: tf.Tensor, s: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        y_defining = substitution.defining_multipliers(c + tf.linalg.matvec(A_rest, y, adjoint_a=True))
        y_full = tf.gather(tf.concat([y_defining, y], axis=1), row_order, axis=1)
        s_full = tf.gather(tf.concat([tf.zeros_like(y_defining), s], axis=1), row_order, axis=1)
        return substitution.full(x), y_full, s_full

    return reduced, restore

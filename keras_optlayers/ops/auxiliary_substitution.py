"""x_full = T x + u: the map from the kept variables to all, for the cone reduction.

With the variables ordered [kept x, eliminated t] (`core/auxiliary_variables`),
each defining equality row reads  a t + A_def[:, kept] x = b_def, so
t = M x + d with M = -A_def[:, kept] / a and d = b_def / a, and
x_full = T x + u with T = [I; M] and u = [0; d] (put back in the compiled
order). A substituted row's multiplier comes from stationarity in its t,
the only column where a t meets it: (∇ of the rest)_t + a ν_def = 0.

The QP reduction reads the same M and d straight from the parameters
instead (`core/qp_layout.py`).
"""

from __future__ import annotations

import tensorflow as tf

from keras_optlayers.core.auxiliary_variables import AuxiliaryVariables


class Substitution:
    """T, u and the coefficients a of a batch, from the rows of A and b that define the auxiliary variables.

    Args:
        auxiliary: the compiled problem's auxiliary variables.
        A: (B, rows, n) with the defining rows at `auxiliary.defining_rows`.
        b: (B, rows).
    """

    def __init__(self, auxiliary: AuxiliaryVariables, A: tf.Tensor, b: tf.Tensor):
        self.auxiliary = auxiliary
        self.coefficient = tf.constant(auxiliary.coefficients, A.dtype)  # constant: found at compile time
        defining = tf.gather(A, auxiliary.defining_rows, axis=1)
        M = -tf.gather(defining, auxiliary.kept, axis=2) / self.coefficient[:, None]
        d = tf.gather(b, auxiliary.defining_rows, axis=1) / self.coefficient
        batch, kept = tf.shape(M)[0], len(auxiliary.kept)
        identity = tf.eye(kept, batch_shape=[batch], dtype=M.dtype)
        self.T = tf.gather(tf.concat([identity, M], axis=1), auxiliary.variable_order, axis=1)
        self.u = tf.gather(tf.concat([tf.zeros([batch, kept], M.dtype), d], axis=1), auxiliary.variable_order, axis=1)

    def full(self, x: tf.Tensor) -> tf.Tensor:
        """x_full = T x + u, (B, n)."""
        return tf.linalg.matvec(self.T, x) + self.u

    def defining_multipliers(self, gradient_of_the_rest: tf.Tensor) -> tf.Tensor:
        """ν_def (B, defining rows) from the Lagrangian's gradient without the defining rows, (B, n)."""
        return -tf.gather(gradient_of_the_rest, self.auxiliary.eliminated, axis=1) / self.coefficient

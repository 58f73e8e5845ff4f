"""The affine steps of affine-solve-affine, in TensorFlow ops: gathers and sums.

The compiled problem carries every index array (`theta_index`, each
output's `indices`), so forming theta is one concatenation and one gather,
and reading an output is one gather and one reshape; the sparse maps from
theta to solver data are gathers and segment sums. TF autodiff
differentiates all of it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from keras_optlayers.core.compiler import CompiledProblem, OutputMap


class SparseMap:
    """A constant sparse matrix applied with gather and segment-sum.

    Gather and unsorted_segment_sum compile under XLA and run on GPUs, which
    TensorFlow's sparse-dense matmul does not always do. The entries are kept
    as numpy arrays and become constants of whichever graph applies the map:
    a layer may be built inside one traced function and called in another.
    """

    def __init__(self, matrix: sp.spmatrix):
        coo = sp.coo_matrix(matrix)
        self.num_rows = int(coo.shape[0])
        self.rows = coo.row.astype(np.int32)
        self.cols = coo.col.astype(np.int32)
        self.values = coo.data.astype(np.float64)

    def __call__(self, theta: tf.Tensor) -> tf.Tensor:
        """(num_rows, len(theta)) map applied to theta (B, len(theta)) -> (B, num_rows)."""
        products = tf.gather(theta, self.cols, axis=1) * self.values
        return tf.transpose(tf.math.unsorted_segment_sum(tf.transpose(products), self.rows, self.num_rows))


def scatter_dense(values: tf.Tensor, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> tf.Tensor:
    """(B, nnz) values at (rows, cols) -> dense (B, *shape)."""
    indices = np.stack([rows, cols], axis=1).astype(np.int32)
    batch = tf.shape(values)[0]
    dense = tf.scatter_nd(indices, tf.transpose(values), [shape[0], shape[1], batch])
    return tf.transpose(dense, [2, 0, 1])


def stack_parameters(program: CompiledProblem, tensors: list[tf.Tensor], batch_size) -> tf.Tensor:
    """Float64 parameter tensors, each (shape) or (B, *shape), -> theta (B, len(theta)).

    Unbatched tensors are broadcast, so autodiff sums their gradient over
    the batch.
    """
    columns = []
    for info, tensor in zip(program.parameters, tensors):
        if tensor.shape.rank == len(info.shape):
            tensor = tf.broadcast_to(tensor[None], [batch_size, *info.shape])
        if info.log:
            tensor = tf.math.log(tensor)
        columns.append(tf.reshape(tensor, [batch_size, info.size]))
    columns.append(tf.ones([batch_size, 1], tf.float64))
    return tf.gather(tf.concat(columns, axis=1), program.theta_index, axis=1)


def read_output(output: OutputMap, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """One requested variable (B, *shape) from the solution."""
    value = tf.gather(x if output.source == "x" else y, output.indices, axis=1)
    if output.scales is not None:
        value = value * output.scales
    if output.exp:
        value = tf.exp(value)
    return tf.reshape(value, [-1, *output.shape])

"""The affine steps of affine-solve-affine, in TensorFlow ops.

Parameters are stacked into theta, the compiled sparse maps turn theta into
solver data for the whole batch at once, and requested variables are read
back from the solution; TF autodiff differentiates all of it.
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
        """(num_rows, num_theta) map applied to theta (B, num_theta) -> (B, num_rows)."""
        products = tf.gather(theta, self.cols, axis=1) * self.values
        return tf.transpose(tf.math.unsorted_segment_sum(tf.transpose(products), self.rows, self.num_rows))


def scatter_dense(values: tf.Tensor, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> tf.Tensor:
    """(B, nnz) values at (rows, cols) -> dense (B, *shape)."""
    indices = np.stack([rows, cols], axis=1).astype(np.int32)
    batch = tf.shape(values)[0]
    dense = tf.scatter_nd(indices, tf.transpose(values), [shape[0], shape[1], batch])
    return tf.transpose(dense, [2, 0, 1])


def flatten_fortran(tensor: tf.Tensor, param_rank: int) -> tf.Tensor:
    """(B, *shape) -> (B, size), entries in CVXPY's column-major order."""
    if param_rank > 1:
        perm = [0] + list(range(param_rank, 0, -1))
        tensor = tf.transpose(tensor, perm)
    return tf.reshape(tensor, [tf.shape(tensor)[0], -1])


def unflatten_fortran(tensor: tf.Tensor, shape: tuple[int, ...]) -> tf.Tensor:
    """(B, size) -> (B, *shape), inverse of `flatten_fortran`."""
    tensor = tf.reshape(tensor, [-1, *reversed(shape)])
    if len(shape) > 1:
        tensor = tf.transpose(tensor, [0] + list(range(len(shape), 0, -1)))
    return tensor


def stack_parameters(program: CompiledProblem, tensors: list[tf.Tensor], batch_size) -> tf.Tensor:
    """Stacks float64 parameter tensors into theta, shape (B, num_theta).

    Each tensor is (shape) or (B, *shape); unbatched ones are broadcast, so
    their gradient is summed over the batch by autodiff.
    """
    columns = []
    for index in program.parameter_order:
        info = program.parameters[index]
        tensor = tensors[index]
        if tensor.shape.rank == len(info.shape):
            tensor = tf.broadcast_to(tensor[None], [batch_size, *info.shape])
        if info.log:
            tensor = tf.math.log(tensor)
        columns.append(flatten_fortran(tensor, len(info.shape)))
    columns.append(tf.ones([batch_size, 1], tf.float64))
    return tf.concat(columns, axis=1)


def read_output(output: OutputMap, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Reads one requested variable (B, *shape) from the solution."""
    source = x if output.source == "x" else y
    value = tf.gather(source, output.indices, axis=1)
    if output.scales is not None:
        value = value * output.scales
    if output.exp:
        value = tf.exp(value)
    return unflatten_fortran(value, output.shape)

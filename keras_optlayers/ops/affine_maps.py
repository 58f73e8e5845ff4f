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


def sparse_constant(matrix: sp.spmatrix) -> tf.SparseTensor:
    """A float64 tf.SparseTensor holding a scipy sparse matrix."""
    coo = sp.coo_matrix(matrix)
    order = np.lexsort((coo.col, coo.row))  # row-major, as TF requires
    indices = np.stack([coo.row[order], coo.col[order]], axis=1).astype(np.int64)
    return tf.SparseTensor(indices, coo.data[order].astype(np.float64), coo.shape)


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


def apply_map(matrix: tf.SparseTensor, theta: tf.Tensor) -> tf.Tensor:
    """(k, num_theta) sparse map applied to theta (B, num_theta) -> (B, k)."""
    return tf.transpose(tf.sparse.sparse_dense_matmul(matrix, theta, adjoint_b=True))


def read_output(output: OutputMap, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Reads one requested variable (B, *shape) from the solution."""
    source = x if output.source == "x" else y
    value = tf.gather(source, output.indices, axis=1)
    if output.scales is not None:
        value = value * output.scales
    if output.exp:
        value = tf.exp(value)
    return unflatten_fortran(value, output.shape)

"""The affine steps of affine-solve-affine, in TensorFlow ops: gathers and sums.

The compiled problem carries every index array, so the parameter vector is
one concatenation, each map to solver data a gather and a segment sum, and
reading an output one gather and one reshape. TF autodiff differentiates
all of it.

Every gather and sum here works on the batch flattened into one axis, with
each example's indices offset by its position in the batch: an op along
axis 1 of a (B, k) tensor would be differentiated (or computed) through
transposes, and on CPU TensorFlow's transposes of these small tensors cost
80-300 µs each, more than the gather (45 of them took 3.8 ms of the OptNet
QP layer's 21 ms forward and backward call at batch 128).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from keras_optlayers.core.compiler import CompiledProblem, OutputMap
from keras_optlayers.core.dense_blocks import BlockLayout
from keras_optlayers.solvers.static_shapes import dimension


def _flat_indices(batch: tf.Tensor, width, indices: np.ndarray) -> tf.Tensor:
    """(B, len(indices)): each example's `indices` into its row of a (B, width) tensor flattened."""
    return tf.range(batch)[:, None] * width + indices


def gather_columns(values: tf.Tensor, columns: np.ndarray) -> tf.Tensor:
    """values[:, columns] for (B, k) values, without a transpose in the op or its gradient."""
    return tf.gather(tf.reshape(values, [-1]), _flat_indices(dimension(values), dimension(values, 1), columns))


class SparseMap:
    """A constant sparse matrix applied to a batch of vectors with one gather and one segment sum.

    Gather and unsorted_segment_sum compile under XLA and run on GPUs, which
    TensorFlow's sparse-dense matmul does not always do. The entries are kept
    as numpy arrays and become constants of whichever graph applies the map:
    a layer may be built inside one traced function and called in another.
    A matrix with no entries maps every vector to zeros.
    """

    def __init__(self, matrix: sp.spmatrix):
        coo = sp.coo_matrix(matrix)
        self.num_rows = int(coo.shape[0])
        self.rows = coo.row.astype(np.int32)
        self.cols = coo.col.astype(np.int32)
        self.values = coo.data.astype(np.float64)

    def __call__(self, vectors: tf.Tensor) -> tf.Tensor:
        """(num_rows, k) map applied to vectors (B, k) -> (B, num_rows)."""
        batch = dimension(vectors)
        products = gather_columns(vectors, self.cols) * self.values
        segments = _flat_indices(batch, self.num_rows, self.rows)
        sums = tf.math.unsorted_segment_sum(products, segments, batch * self.num_rows)
        return tf.reshape(sums, [batch, self.num_rows])


class BlockMaps:
    """The dense blocks of a `BlockLayout`, from the parameter vector (B, entries + 1), as float64 tensors.

    All blocks come from one map of the stacked block matrices, split after:
    its gradient is one segment sum into the parameter vector, where a map
    per block took one each (8 on the OptNet QP, 90-160 µs apiece at batch
    128). Structurally zero blocks are left out unless the layout requires
    them.
    """

    def __init__(self, layout: BlockLayout):
        self.layout = layout
        self._names = layout.applied()
        matrices = [layout.blocks[name].matrix for name in self._names]
        self._sizes = [matrix.shape[0] for matrix in matrices]
        self._map = SparseMap(sp.vstack(matrices))

    def __call__(self, parameters: tf.Tensor) -> dict[str, tf.Tensor]:
        """Each block (B, *shape), by name."""
        batch = dimension(parameters)
        parts = tf.split(self._map(parameters), self._sizes, axis=1)
        return {name: tf.reshape(part, [batch, *self.layout.blocks[name].shape]) for name, part in zip(self._names, parts)}


def parameter_vector(program: CompiledProblem, tensors: list[tf.Tensor], batch_size) -> tf.Tensor:
    """Float64 parameter tensors, each (shape) or (B, *shape), -> (B, entries + 1): flattened row-major, then 1.

    Maps composed with `CompiledProblem.parameter_selection` read it
    directly. Unbatched tensors are broadcast, so autodiff sums
    their gradient over the batch.
    """
    columns = []
    for info, tensor in zip(program.parameters, tensors):
        if tensor.shape.rank == len(info.shape):
            tensor = tf.broadcast_to(tensor[None], [batch_size, *info.shape])
        if info.log:
            tensor = tf.math.log(tensor)
        columns.append(tf.reshape(tensor, [batch_size, info.size]))
    columns.append(tf.ones([batch_size, 1], tf.float64))
    return tf.concat(columns, axis=1)


def read_output(output: OutputMap, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """One requested variable (B, *shape) from the solution."""
    value = gather_columns(x if output.source == "x" else y, output.indices)
    if output.scales is not None:
        value = value * output.scales
    if output.exp:
        value = tf.exp(value)
    return tf.reshape(value, [-1, *output.shape])

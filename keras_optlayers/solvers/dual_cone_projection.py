"""Batched derivative of the projection onto the dual cone K*.

The adjoint of a cone program's solution map needs D = DΠ_{K*}(v) at
v = y - s for every example. D is block diagonal over the cones; this module
computes its blocks for a whole batch at once (zero, nonnegative and
second-order cones in closed form) and leaves exponential and PSD blocks to
diffcp's C++ routine, example by example.
"""

from __future__ import annotations

import dataclasses

import diffcp._diffcp as diffcp_ext
import diffcp.cones as diffcp_cones
import numpy as np

from keras_optlayers.core.compiler import ConeDims


@dataclasses.dataclass(frozen=True)
class DenseBlock:
    """Rows `start:stop` of v, with D's block for each example (B, k, k)."""

    start: int
    stop: int
    matrix: np.ndarray


@dataclasses.dataclass(frozen=True)
class BatchedDualConeDerivative:
    """D = DΠ_{K*}(v) for a batch, as its diagonal and its dense blocks.

    `diagonal` (B, m) holds D's diagonal where D is diagonal (the zero cone,
    whose dual is free, and the nonnegative cone); the rows of `blocks` are
    covered by their dense blocks instead.
    """

    diagonal: np.ndarray
    blocks: tuple[DenseBlock, ...]

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """D @ vector for each example (D is symmetric, so also Dᵀ)."""
        out = self.diagonal * vectors
        for block in self.blocks:
            out[:, block.start:block.stop] = np.einsum(
                "bij,bj->bi", block.matrix, vectors[:, block.start:block.stop])
        return out


def _soc_derivative(v: np.ndarray) -> np.ndarray:
    """DΠ onto the second-order cone {(t, z): ‖z‖ ≤ t} (self-dual), (B, k, k)."""
    batch, k = v.shape
    t, z = v[:, 0], v[:, 1:]
    norm = np.linalg.norm(z, axis=1)
    D = np.zeros((batch, k, k))
    inside = norm <= t
    D[inside] = np.eye(k)
    between = ~inside & (norm > -t)
    if between.any():
        tb, zb, nb = t[between], z[between], norm[between]
        unit = zb / nb[:, None]
        ratio = (tb / nb)[:, None, None]
        block = np.empty((len(tb), k, k))
        block[:, 0, 0] = 1.0
        block[:, 0, 1:] = unit
        block[:, 1:, 0] = unit
        block[:, 1:, 1:] = (1.0 + ratio) * np.eye(k - 1) - ratio * unit[:, :, None] * unit[:, None, :]
        D[between] = 0.5 * block
    return D


class DualConeDerivative:
    """Computes `BatchedDualConeDerivative`s for one cone layout."""

    def __init__(self, cones: ConeDims):
        self.cones = cones
        self.m = cones.num_rows
        start = cones.zero + cones.nonneg
        self._soc_slices = []
        for size in cones.soc:
            self._soc_slices.append((start, start + size))
            start += size
        # PSD and exponential cones: diffcp's routine on the tail of v.
        self._tail_start = start
        tail = {"s": list(cones.psd), "ep": cones.exp}
        self._tail_cones = (
            diffcp_cones.parse_cone_dict_cpp(diffcp_cones.parse_cone_dict(tail))
            if start < self.m else None
        )

    def __call__(self, v: np.ndarray) -> BatchedDualConeDerivative:
        """D at each row of v (B, m)."""
        zero, nonneg = self.cones.zero, self.cones.nonneg
        diagonal = np.zeros_like(v)
        diagonal[:, :zero] = 1.0  # the dual of the zero cone is free
        diagonal[:, zero:zero + nonneg] = v[:, zero:zero + nonneg] > 0
        blocks = [DenseBlock(a, b, _soc_derivative(v[:, a:b])) for a, b in self._soc_slices]
        if self._tail_cones is not None:
            tail = v[:, self._tail_start:]
            matrix = np.stack([
                diffcp_ext.dprojection_dense(row, self._tail_cones, True) for row in tail])
            blocks.append(DenseBlock(self._tail_start, self.m, matrix))
        return BatchedDualConeDerivative(diagonal, tuple(blocks))

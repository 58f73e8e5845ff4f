"""Batched derivative of the projection onto the dual cone K*.

The adjoint of a cone program's solution map needs D = DΠ_{K*}(v) at
v = y - s for every example. D is block diagonal over the cones. This module
keeps it as a diagonal (zero and nonnegative cones) plus groups of
equal-sized dense blocks (second-order, PSD and exponential cones), computed
for a whole batch: second-order cones in closed form; PSD and exponential
cones through diffcp's operator, read out block by block with one
matrix-vector product per block column, so that D is never formed densely.
"""

from __future__ import annotations

import dataclasses

import diffcp._diffcp as diffcp_ext
import diffcp.cones as diffcp_cones
import numpy as np

from keras_optlayers.core.compiler import ConeDims


@dataclasses.dataclass(frozen=True)
class BlockGroup:
    """Equal-sized diagonal blocks of D: rows `indices` (G, k), blocks (B, G, k, k)."""

    indices: np.ndarray
    matrices: np.ndarray

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Block products with the matching entries of vectors (B, m) -> (B, G, k)."""
        return np.einsum("bgij,bgj->bgi", self.matrices, vectors[:, self.indices])


@dataclasses.dataclass(frozen=True)
class BatchedDualConeDerivative:
    """D = DΠ_{K*}(v) for a batch, as its diagonal and its dense block groups.

    `diagonal` (B, m) holds D's diagonal where D is diagonal (the zero cone,
    whose dual is free, and the nonnegative cone); it is zero on the rows the
    block groups cover.
    """

    diagonal: np.ndarray
    groups: tuple[BlockGroup, ...]

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """D @ vector for each example (D is symmetric, so also Dᵀ)."""
        out = self.diagonal * vectors
        for group in self.groups:
            out[:, group.indices] = group.apply(vectors)
        return out


def _soc_derivative(v: np.ndarray) -> np.ndarray:
    """DΠ onto second-order cones {(t, z): ‖z‖ ≤ t} (self-dual); v (..., k) -> (..., k, k)."""
    k = v.shape[-1]
    t, z = v[..., 0], v[..., 1:]
    norm = np.linalg.norm(z, axis=-1)
    D = np.zeros(v.shape + (k,))
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


def _group_by_size(starts_and_sizes):
    """{size: (G, size) row indices} for blocks given as (start, size)."""
    groups: dict[int, list[np.ndarray]] = {}
    for start, size in starts_and_sizes:
        groups.setdefault(size, []).append(start + np.arange(size))
    return {size: np.stack(rows) for size, rows in groups.items()}


class DualConeDerivative:
    """Computes `BatchedDualConeDerivative`s for one cone layout."""

    def __init__(self, cones: ConeDims):
        self.cones = cones
        self.m = cones.num_rows
        start = cones.zero + cones.nonneg
        soc = []
        for size in cones.soc:
            soc.append((start, size))
            start += size
        self._soc_groups = _group_by_size(soc)
        # PSD and exponential cones: diffcp's operator on the tail of v.
        self._tail_start = start
        tail = []
        for size in cones.psd:
            tail.append((start, size * (size + 1) // 2))
            start += size * (size + 1) // 2
        tail += [(start + 3 * i, 3) for i in range(cones.exp)]
        self._tail_groups = _group_by_size(tail)
        tail_cones = {"s": list(cones.psd), "ep": cones.exp}
        self._tail_cones = (
            diffcp_cones.parse_cone_dict_cpp(diffcp_cones.parse_cone_dict(tail_cones))
            if tail else None
        )

    def __call__(self, v: np.ndarray) -> BatchedDualConeDerivative:
        """D at each row of v (B, m)."""
        zero, nonneg = self.cones.zero, self.cones.nonneg
        diagonal = np.zeros_like(v)
        diagonal[:, :zero] = 1.0  # the dual of the zero cone is free
        diagonal[:, zero:zero + nonneg] = v[:, zero:zero + nonneg] > 0
        groups = [BlockGroup(rows, _soc_derivative(v[:, rows])) for rows in self._soc_groups.values()]
        if self._tail_cones is not None:
            groups += self._tail_blocks(v)
        return BatchedDualConeDerivative(diagonal, tuple(groups))

    def _tail_blocks(self, v: np.ndarray) -> list[BlockGroup]:
        """Reads D's PSD and exponential blocks from diffcp's operator.

        D is block diagonal, so D applied to a vector with a 1 in column j of
        every block returns column j of every block at once.
        """
        start = self._tail_start
        width = max(self._tail_groups)
        tail_size = self.m - start
        probes = np.zeros((width, tail_size))
        for rows in self._tail_groups.values():
            for j in range(rows.shape[1]):
                probes[j, rows[:, j] - start] = 1.0
        columns = np.empty((v.shape[0], width, tail_size))
        for i, row in enumerate(v[:, start:]):
            operator = diffcp_ext.dprojection(row, self._tail_cones, True)
            for j in range(width):
                columns[i, j] = operator.matvec(probes[j])
        groups = []
        for size, rows in self._tail_groups.items():
            # columns[b, j, rows[g, i] - start] = D_block[g][i, j]
            blocks = columns[:, :size][:, :, rows - start]  # (B, j, G, i)
            groups.append(BlockGroup(rows, np.transpose(blocks, (0, 2, 3, 1))))
        return groups

"""Batched Euclidean projections onto a cone product K and its dual K*.

K is laid out in SCS order (zero, nonnegative, second-order, PSD,
exponential; see `ConeDims`). The zero, nonnegative and second-order parts
are projected for a whole batch at once; PSD and exponential cones, rare in
layers, go example by example through diffcp's projection.

Used to measure how far a returned slack s and dual y lie from their cones
(`cone_solution_check`).
"""

from __future__ import annotations

import diffcp.cones as diffcp_cones
import numpy as np

from keras_optlayers.core.compiler import ConeDims


def _project_soc(v: np.ndarray) -> np.ndarray:
    """Projects (..., k) onto second-order cones {(t, z): ‖z‖ ≤ t} (self-dual)."""
    t, z = v[..., 0], v[..., 1:]
    norm = np.linalg.norm(z, axis=-1)
    out = np.zeros_like(v)
    inside = norm <= t
    out[inside] = v[inside]
    between = ~inside & (norm > -t)
    if between.any():
        half = 0.5 * (1.0 + t[between] / norm[between])
        out[between, 0] = half * norm[between]
        out[between, 1:] = half[:, None] * z[between]
    return out  # the rest (norm <= -t) lies in the polar cone: projects to 0


class ConeProjection:
    """Projections onto K (`primal`) and K* (`dual`) for one cone layout."""

    def __init__(self, cones: ConeDims):
        self.cones = cones
        start = cones.zero + cones.nonneg
        self._soc_rows: dict[int, list[np.ndarray]] = {}
        for size in cones.soc:
            self._soc_rows.setdefault(size, []).append(start + np.arange(size))
            start += size
        self._soc_rows_stacked = {size: np.stack(rows) for size, rows in self._soc_rows.items()}
        self._tail_start = start
        self._tail_cones = [(diffcp_cones.PSD, list(cones.psd)), (diffcp_cones.EXP, cones.exp)]
        self._has_tail = bool(cones.psd or cones.exp)

    def primal(self, v: np.ndarray) -> np.ndarray:
        """Π_K row by row of v (B, m)."""
        return self._project(v, dual=False)

    def dual(self, v: np.ndarray) -> np.ndarray:
        """Π_{K*} row by row of v (B, m)."""
        return self._project(v, dual=True)

    def _project(self, v: np.ndarray, dual: bool) -> np.ndarray:
        zero, nonneg = self.cones.zero, self.cones.nonneg
        out = np.empty_like(v)
        # The zero cone's dual is the free cone.
        out[:, :zero] = v[:, :zero] if dual else 0.0
        out[:, zero:zero + nonneg] = np.maximum(v[:, zero:zero + nonneg], 0.0)
        for rows in self._soc_rows_stacked.values():
            out[:, rows] = _project_soc(v[:, rows])
        if self._has_tail:
            start = self._tail_start
            for i, row in enumerate(v[:, start:]):
                out[i, start:] = diffcp_cones.pi(row, self._tail_cones, dual=dual)
        return out

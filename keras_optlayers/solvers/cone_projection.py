"""Batched Euclidean projections onto a cone product K and its dual K*.

K is laid out in SCS order (zero, nonnegative, second-order, PSD,
exponential; see `ConeDims`). Everything is projected for a whole batch at
once, except exponential cones that a point lies outside of: those go one by
one through diffcp's projection (points a solver returns lie inside or on
the boundary, so few do).

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


def _psd_layout(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and weights of SCS's vectorization of a size x size symmetric matrix.

    The lower triangle, column by column, off-diagonal entries times sqrt(2).
    """
    rows, cols = np.tril_indices(size)
    order = np.lexsort((rows, cols))  # column-major
    rows, cols = rows[order], cols[order]
    return rows, cols, np.where(rows == cols, 1.0, np.sqrt(2.0))


def _project_psd(v: np.ndarray, size: int) -> np.ndarray:
    """Projects (..., size(size+1)/2) vectorized symmetric matrices onto the PSD cone (self-dual)."""
    rows, cols, weights = _psd_layout(size)
    matrices = np.zeros(v.shape[:-1] + (size, size))
    matrices[..., rows, cols] = v / weights
    matrices[..., cols, rows] = v / weights
    eigenvalues, eigenvectors = np.linalg.eigh(matrices)
    clipped = (eigenvectors * np.maximum(eigenvalues, 0.0)[..., None, :]) @ np.swapaxes(eigenvectors, -1, -2)
    return clipped[..., rows, cols] * weights


# Points outside an exponential cone by this much relative to their size are
# taken as on it: their projection moves them by about as little, and
# solvers' boundary points (SCS's) miss the cone by rounding.
_EXP_ROUNDING = 1e-13


def _in_exp_cone(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (...): in K_exp = cl{(x, y, z): y exp(x / y) <= z, y > 0}, up to rounding."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    slack = _EXP_ROUNDING * np.max(np.abs(v), axis=-1)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        interior = (y > 0) & (y * np.exp(x / y) <= z + slack)
    return interior | ((np.abs(y) <= slack) & (x <= slack) & (z >= -slack))


def _project_exp(v: np.ndarray, dual: bool) -> np.ndarray:
    """Projects (B, G, 3) onto exponential cones (dual=False) or their duals.

    Moreau: Π_{K*}(v) = v + Π_K(-v), since the polar of K* is -K.
    """
    point = -v if dual else v
    out = point.copy()
    outside = ~_in_exp_cone(point)
    for index in zip(*np.nonzero(outside)):
        out[index] = diffcp_cones.project_exp_cone(point[index])
    return v + out if dual else out


class ConeProjection:
    """Projections onto K (`primal`) and K* (`dual`) for one cone layout."""

    def __init__(self, cones: ConeDims):
        self.cones = cones
        start = cones.zero + cones.nonneg
        soc_rows: dict[int, list[np.ndarray]] = {}
        for size in cones.soc:
            soc_rows.setdefault(size, []).append(start + np.arange(size))
            start += size
        self._soc_rows = {size: np.stack(rows) for size, rows in soc_rows.items()}
        psd_rows: dict[int, list[np.ndarray]] = {}
        for size in cones.psd:
            psd_rows.setdefault(size, []).append(start + np.arange(size * (size + 1) // 2))
            start += size * (size + 1) // 2
        self._psd_rows = {size: np.stack(rows) for size, rows in psd_rows.items()}
        self._exp_rows = start + np.arange(3 * cones.exp).reshape(cones.exp, 3)

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
        for rows in self._soc_rows.values():
            out[:, rows] = _project_soc(v[:, rows])
        for size, rows in self._psd_rows.items():
            out[:, rows] = _project_psd(v[:, rows], size)
        if self.cones.exp:
            out[:, self._exp_rows] = _project_exp(v[:, self._exp_rows], dual)
        return out

"""Scaling cone program data to unit size before a solve, and back after.

Solvers stop on absolute as well as relative tolerances and start from
unit-sized points, so data of size 1e8 or 1e-8 end as false infeasibility
certificates, iteration limits or wrong answers. Dividing each example's
data by positive numbers

    A' = A / α,  b' = b / β,  c' = c / γ      (α, β, γ: largest |entry|)

keeps the cone program the same up to a change of units: if (x', y', s')
solves the scaled program, then

    x = (β/α) x',  y = (γ/α) y',  s = β s'

solves the original one (Ax + s - b = β(A'x' + s' - b'), Aᵀy + c =
γ(A'ᵀy' + c'), and cones are closed under positive scaling). The solution
map obeys this identity for every α, β, γ, so its derivative may be taken in
the scaled units with α, β, γ held fixed (`solution_cotangents`,
`data_gradients`).

Limits: one number per block of data; entries of very different sizes
within A, b or c are left to the solvers' own equilibration.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def _largest_entry(values: np.ndarray) -> np.ndarray:
    """Largest |entry| per example (B,), or 1 for an all-zero example."""
    size = np.max(np.abs(values), axis=1, initial=0.0)
    return np.where(size > 0, size, 1.0)


@dataclasses.dataclass(frozen=True)
class DataScaling:
    """Per-example scale factors α (of A), β (of b) and γ (of c), each (B,)."""

    alpha: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray

    @classmethod
    def of(cls, A_values: np.ndarray, b: np.ndarray, c: np.ndarray) -> DataScaling:
        return cls(_largest_entry(A_values), _largest_entry(b), _largest_entry(c))

    def data(self, A_values, b, c):
        """(A', b', c'): the data in unit size."""
        return A_values / self.alpha[:, None], b / self.beta[:, None], c / self.gamma[:, None]

    def _solution_factors(self):
        return (self.beta / self.alpha)[:, None], (self.gamma / self.alpha)[:, None], self.beta[:, None]

    def solution(self, x, y, s):
        """(x, y, s) of the original program from those of the scaled one."""
        fx, fy, fs = self._solution_factors()
        return x * fx, y * fy, s * fs

    def scaled_solution(self, x, y, s):
        """(x', y', s') of the scaled program from those of the original one."""
        fx, fy, fs = self._solution_factors()
        return x / fx, y / fy, s / fs

    def solution_cotangents(self, dx, dy, ds):
        """Gradients with respect to (x', y', s') from those to (x, y, s)."""
        fx, fy, fs = self._solution_factors()
        return dx * fx, dy * fy, ds * fs

    def data_gradients(self, dA_values, db, dc):
        """Gradients with respect to (A, b, c) from those to (A', b', c')."""
        return dA_values / self.alpha[:, None], db / self.beta[:, None], dc / self.gamma[:, None]

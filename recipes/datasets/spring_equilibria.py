"""Loads on a chain of blocks and springs between two walls, and where the blocks come to rest.

Five blocks of width 0.05 sit between walls at 0 and 1, joined to each
other and to the walls by six springs with hidden stiffness constants
(1, 3, 0.5, 2, 1.5, 4). A load pushes each block sideways with forces
f ~ U(-0.6, 0.6)⁵ (numpy's generator, seed 21); the blocks rest where the
potential energy is smallest,

    minimize Σᵢ ½ kᵢ (pᵢ₊₁ - pᵢ)² - fᵀp₁..₅   subject to  p₀ = 0, p₆ = 1,
                                               pᵢ₊₁ - pᵢ >= 0.05,

(p₀ and p₆ are the walls; a spacing at 0.05 is two blocks, or a block and a
wall, touching). Targets are the five resting positions, solved in float64
by the library's QP solver to 1e-9 (the walls eliminated: a QP in the five
positions).
"""

from __future__ import annotations

import numpy as np

from keras_optlayers import qp_solve
from recipes.datasets.array_builder import ArrayBuilder, split_seed

NUM_BLOCKS = 5
LENGTH = 1.0
WIDTH = 0.05
HIDDEN_STIFFNESS = np.array([1.0, 3.0, 0.5, 2.0, 1.5, 4.0])
FORCE_BOUND = 0.6
LOADS_SEED = 21


def difference_matrix() -> np.ndarray:
    """D (NUM_BLOCKS + 1, NUM_BLOCKS): D p + e are the six spacings (e holds the right wall)."""
    D = np.zeros((NUM_BLOCKS + 1, NUM_BLOCKS))
    for i in range(NUM_BLOCKS + 1):
        if i < NUM_BLOCKS:
            D[i, i] = 1.0
        if i > 0:
            D[i, i - 1] = -1.0
    return D


def resting_positions(forces: np.ndarray, stiffness: np.ndarray = HIDDEN_STIFFNESS) -> np.ndarray:
    """The blocks' positions (batch, NUM_BLOCKS) under loads (batch, NUM_BLOCKS).

    The spacings are D p + e with e = (0, ..., 0, LENGTH) for the right
    wall, so the energy is ½ pᵀDᵀKDp + (DᵀKe - f)ᵀp + const and the
    constraints D p + e >= WIDTH read -D p <= e - WIDTH.
    """
    D = difference_matrix()
    e = np.zeros(NUM_BLOCKS + 1)
    e[-1] = LENGTH
    K = np.diag(stiffness)
    P = D.T @ K @ D
    q = D.T @ K @ e - forces
    G, h = -D, e - WIDTH
    return np.asarray(qp_solve(P, q, None, None, G, h, tol=1e-9))


class SpringEquilibria(ArrayBuilder):
    __doc__ = __doc__

    VERSION = "1.0.0"
    RELEASE_NOTES = {"1.0.0": "First version."}
    SPLIT_SIZES = {"train": 1024, "test": 256}
    FEATURE_SHAPES = {"forces": (NUM_BLOCKS,), "positions": (NUM_BLOCKS,)}
    SUPERVISED_KEYS = ("forces", "positions")

    def make_split(self, split: str, size: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(split_seed(LOADS_SEED, split))
        forces = rng.uniform(-FORCE_BOUND, FORCE_BOUND, (size, NUM_BLOCKS))
        return {"forces": forces, "positions": resting_positions(forces)}

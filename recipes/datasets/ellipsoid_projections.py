"""Points in the plane and their projections onto four hidden ellipsoids.

Ellipsoid k is {y : ½||A_k (y - z_k)||² <= 1}, with A_k = R(θ_k) diag(σ_k)
(a rotation times axis scales σ ~ U(0.7, 2.5), so semi-axes sqrt(2)/σ between
0.57 and 2) and centers z_k ~ U(-0.5, 0.5)², drawn with numpy's generator
(seed 3). Inputs x ~ N(0, 1.5² I); the targets y (4, 2) are the projections
of x onto each ellipsoid, computed in float64 in closed form up to one scalar
(the constraint's multiplier, found by bisection to machine precision).
"""

from __future__ import annotations

import numpy as np

from recipes.datasets.array_builder import ArrayBuilder, split_seed

DIM = 2
NUM_ELLIPSOIDS = 4
INPUT_SCALE = 1.5
HIDDEN_ELLIPSOIDS_SEED = 3
POINTS_SEED = 1


def hidden_ellipsoids() -> tuple[np.ndarray, np.ndarray]:
    """The data's ellipsoids: A (4, 2, 2) and z (4, 2), float64."""
    rng = np.random.default_rng(HIDDEN_ELLIPSOIDS_SEED)
    angles = rng.uniform(0.0, np.pi, NUM_ELLIPSOIDS)
    scales = rng.uniform(0.7, 2.5, (NUM_ELLIPSOIDS, DIM))
    cos, sin = np.cos(angles), np.sin(angles)
    rotations = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (4, 2, 2)
    A = rotations @ (scales[:, :, None] * np.eye(DIM))
    z = rng.uniform(-0.5, 0.5, (NUM_ELLIPSOIDS, DIM))
    return A, z


def project(points: np.ndarray, A: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Projections of `points` (batch, dim) onto {y : ½||A (y - z)||² <= 1}.

    The optimality conditions give y - z = (I + λ AᵀA)⁻¹ (x - z) with λ >= 0
    and, for x outside, ½||A (y - z)||² = 1: in the eigenbasis of AᵀA
    (eigenvalues μ), ½ Σ μ_i w_i² / (1 + λ μ_i)² = 1 with w = Vᵀ(x - z), a
    decreasing function of λ, solved by bisection on [0, sqrt(½ Σ w_i²/μ_i)].
    Needs A nonsingular.
    """
    mu, V = np.linalg.eigh(A.T @ A)
    w = (points - z) @ V  # (batch, dim)

    def excess(lam):  # ½||A (y - z)||² - 1 at multiplier lam
        return 0.5 * np.sum(mu * w**2 / (1.0 + lam[:, None] * mu) ** 2, axis=-1) - 1.0

    low = np.zeros(len(points))
    high = np.sqrt(0.5 * np.sum(w**2 / mu, axis=-1))
    for _ in range(200):  # halves the bracket each time: far past float64's resolution
        middle = 0.5 * (low + high)
        outside = excess(middle) > 0
        low, high = np.where(outside, middle, low), np.where(outside, high, middle)
    lam = np.where(excess(np.zeros(len(points))) > 0, high, 0.0)
    return z + (w / (1.0 + lam[:, None] * mu)) @ V.T


class EllipsoidProjections(ArrayBuilder):
    __doc__ = __doc__

    VERSION = "1.0.0"
    RELEASE_NOTES = {"1.0.0": "First version."}
    SPLIT_SIZES = {"train": 512, "test": 256}
    FEATURE_SHAPES = {"x": (DIM,), "y": (NUM_ELLIPSOIDS, DIM)}

    def make_split(self, split: str, size: int) -> dict[str, np.ndarray]:
        x = INPUT_SCALE * np.random.default_rng(split_seed(POINTS_SEED, split)).standard_normal((size, DIM))
        A, z = hidden_ellipsoids()
        return {"x": x, "y": np.stack([project(x, A[k], z[k]) for k in range(NUM_ELLIPSOIDS)], axis=1)}

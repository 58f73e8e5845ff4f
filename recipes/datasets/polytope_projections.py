"""Points in the plane and their projections onto a hidden polytope.

The cvxpylayers tutorial's polytope: 10 half-spaces G y <= h in the plane,
G ~ U(-4, 4) (numpy's generator, seed 6; the tutorial used torch's, so the
polytope differs) and h = G z0 + s0 with z0 = s0 = (0.5, ...). Inputs
x ~ N(0, I); targets y = argmin ½||x - y||² s.t. G y <= h, solved in float64
by the library's QP solver to 1e-10.
"""

from __future__ import annotations

import numpy as np

from keras_optlayers import qp_solve
from recipes.datasets.array_builder import ArrayBuilder, split_seed

DIM = 2
NUM_CONSTRAINTS = 10
INTERIOR_POINT = 0.5  # z0, every coordinate
SLACK = 0.5  # s0, every coordinate
HIDDEN_POLYTOPE_SEED = 6
POINTS_SEED = 0


def hidden_polytope() -> tuple[np.ndarray, np.ndarray]:
    """The data's polytope (G, h), float64."""
    G = np.random.default_rng(HIDDEN_POLYTOPE_SEED).uniform(-4.0, 4.0, size=(NUM_CONSTRAINTS, DIM))
    h = G @ np.full(DIM, INTERIOR_POINT) + SLACK
    return G, h


def project(points: np.ndarray, G: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Euclidean projections of `points` (batch, dim) onto {y : G y <= h}."""
    identity = np.eye(points.shape[1])
    projections = qp_solve(identity, -points, None, None, G, h, tol=1e-10)
    return np.asarray(projections)


class PolytopeProjections(ArrayBuilder):
    __doc__ = __doc__

    VERSION = "1.0.0"
    RELEASE_NOTES = {"1.0.0": "First version."}
    SPLIT_SIZES = {"train": 1024, "test": 512}
    FEATURE_SHAPES = {"x": (DIM,), "y": (DIM,)}

    def make_split(self, split: str, size: int) -> dict[str, np.ndarray]:
        x = np.random.default_rng(split_seed(POINTS_SEED, split)).standard_normal((size, DIM))
        return {"x": x, "y": project(x, *hidden_polytope())}

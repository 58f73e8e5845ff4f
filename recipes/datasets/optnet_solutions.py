"""Linear terms q and the solutions of a hidden OptNet quadratic program.

The hidden QP, in R^3: x*(q) = argmin ½ xᵀQx + qᵀx s.t. A x = b, G x <= h,
with Q = L Lᵀ + 0.1 I, one equality and six inequalities, b = A z0 and
h = G z0 + 1 (OptNet's construction, so z0 is feasible whatever the draws),
drawn with numpy's generator (seed 4): L, A, G ~ N(0, 1), z0 ~ N(0, 0.25 I).
Inputs q ~ N(0, 16 I); targets x*(q), solved in float64 by the library's QP
solver to 1e-9 (at 1e-10 it stalls on one near-degenerate test example).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_optlayers import qp_solve
from recipes.datasets.array_builder import ArrayBuilder, split_seed

DIM = 3
NUM_EQ = 1
NUM_INEQ = 6
SLACK = 1.0
HIDDEN_QP_SEED = 4
INPUTS_SEED = 2
INPUT_SCALE = 4.0


@dataclasses.dataclass(frozen=True)
class QuadraticProgram:
    """minimize ½ xᵀPx + qᵀx s.t. A x = b, G x <= h (q is the input)."""

    P: np.ndarray
    A: np.ndarray
    b: np.ndarray
    G: np.ndarray
    h: np.ndarray

    def solve(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(qp_solve(self.P, q, self.A, self.b, self.G, self.h, tol=1e-9))


def hidden_qp() -> QuadraticProgram:
    rng = np.random.default_rng(HIDDEN_QP_SEED)
    L = rng.standard_normal((DIM, DIM))
    A = rng.standard_normal((NUM_EQ, DIM))
    G = rng.standard_normal((NUM_INEQ, DIM))
    z0 = 0.5 * rng.standard_normal(DIM)
    return QuadraticProgram(P=L @ L.T + 0.1 * np.eye(DIM), A=A, b=A @ z0, G=G, h=G @ z0 + SLACK)


class OptnetSolutions(ArrayBuilder):
    __doc__ = __doc__

    VERSION = "1.0.0"
    RELEASE_NOTES = {"1.0.0": "First version."}
    SPLIT_SIZES = {"train": 1024, "test": 256}
    FEATURE_SHAPES = {"q": (DIM,), "x": (DIM,)}
    SUPERVISED_KEYS = ("q", "x")

    def make_split(self, split: str, size: int) -> dict[str, np.ndarray]:
        q = INPUT_SCALE * np.random.default_rng(split_seed(INPUTS_SEED, split)).standard_normal((size, DIM))
        return {"q": q, "x": hidden_qp().solve(q)}

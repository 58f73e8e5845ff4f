"""Initial states of a double integrator and an expert MPC controller's plans.

The system: position and velocity, x_{t+1} = A x_t + B u_t with a 0.2 s
step (A = [[1, 0.2], [0, 1]], B = [[0.02], [0.2]]), force |u_t| <= 1. The
expert plans H = 10 forces by model predictive control with hidden state
weights: minimize Σ_{t=1..H} (4 p_t² + 0.5 v_t²) + Σ_{t=0..H-1} u_t². Inputs
x0 ~ U([-3, 3] × [-2, 2]) (numpy's generator, seed 12); targets the expert's
H planned forces, solved in float64 by the library's QP solver to 1e-9 (the
states eliminated: a QP in the forces alone).
"""

from __future__ import annotations

import numpy as np

from keras_optlayers import qp_solve
from recipes.datasets.array_builder import ArrayBuilder, split_seed

TIME_STEP = 0.2
HORIZON = 10
FORCE_BOUND = 1.0
EXPERT_STATE_WEIGHTS = np.array([4.0, 0.5])  # position, velocity
STATES_SEED = 12
STATE_RANGE = np.array([3.0, 2.0])


def dynamics() -> tuple[np.ndarray, np.ndarray]:
    """(A (2, 2), B (2, 1)) of the double integrator."""
    A = np.array([[1.0, TIME_STEP], [0.0, 1.0]])
    B = np.array([[0.5 * TIME_STEP**2], [TIME_STEP]])
    return A, B


def expert_plans(initial_states: np.ndarray, state_weights: np.ndarray = EXPERT_STATE_WEIGHTS) -> np.ndarray:
    """The MPC plans (batch, HORIZON) for initial states (batch, 2).

    With the states written as x_t = A^t x0 + Σ_{s<t} A^{t-1-s} B u_s
    (x = Φ x0 + Γ u), the plan minimizes uᵀ(ΓᵀWΓ + I)u + 2 x0ᵀΦᵀWΓ u with
    W = diag(state_weights) for every step, under |u| <= FORCE_BOUND.
    """
    A, B = dynamics()
    powers = [np.linalg.matrix_power(A, t) for t in range(HORIZON + 1)]
    Phi = np.concatenate([powers[t] for t in range(1, HORIZON + 1)])  # (2H, 2)
    Gamma = np.zeros((2 * HORIZON, HORIZON))
    for t in range(1, HORIZON + 1):
        for s in range(t):
            Gamma[2 * (t - 1):2 * t, s] = (powers[t - 1 - s] @ B)[:, 0]
    W = np.diag(np.tile(state_weights, HORIZON))
    P = 2.0 * (Gamma.T @ W @ Gamma + np.eye(HORIZON))
    q = 2.0 * initial_states @ Phi.T @ W @ Gamma
    G = np.concatenate([np.eye(HORIZON), -np.eye(HORIZON)])
    h = np.full(2 * HORIZON, FORCE_BOUND)
    return np.asarray(qp_solve(P, q, None, None, G, h, tol=1e-9))


class MpcExpertPlans(ArrayBuilder):
    __doc__ = __doc__

    VERSION = "1.0.0"
    RELEASE_NOTES = {"1.0.0": "First version."}
    SPLIT_SIZES = {"train": 1024, "test": 256}
    FEATURE_SHAPES = {"x0": (2,), "plan": (HORIZON,)}
    SUPERVISED_KEYS = ("x0", "plan")

    def make_split(self, split: str, size: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(split_seed(STATES_SEED, split))
        x0 = rng.uniform(-STATE_RANGE, STATE_RANGE, (size, 2))
        return {"x0": x0, "plan": expert_plans(x0)}

"""Stochastic control: learning a convex approximate dynamic programming policy.

The cvxpylayers paper's second application (Agrawal et al. 2019, §6): a
linear system x_{t+1} = A x_t + B u_t + w_t with Gaussian disturbances w_t,
stage cost ||x_t||² + ||u_t||² and bounded inputs ||u_t||_∞ <= u_max, run
by the approximate dynamic programming (ADP) policy

    u(x) = argmin_{||u||_∞ <= u_max}  ||u||² + ||S (A x + B u)||²,

a quadratic program whose value-function factor S is a Keras weight
(`ADPPolicy`, a `ConvexLayer` of this module). S starts at the LQR factor
(SᵀS = the Riccati solution P, which ignores the input bound); then the
policy is trained by gradient descent on the simulated average cost of a
batch of trajectories, differentiated through every one of the QP solves,
in a Keras-style loop with a `keras.utils.Progbar`. The costs are compared
on a fixed set of evaluation trajectories.

Run:

    python -m recipes.stochastic_control [--quick] [--output-dir DIR] [--model-path PATH]

It writes cost.png (the average cost on a fixed set of evaluation
trajectories as training goes) to the output directory (default
recipes/output/stochastic_control/), prints the evaluation costs, and saves
the policy model to saved_models/stochastic_control.keras.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import cvxpy as cp
import keras
import numpy as np
import scipy.linalg
import tensorflow as tf

from keras_optlayers import ConvexLayer
from recipes.cli import recipe_parser
from recipes.figures import save_loss_curve

NUM_STATES = 4
NUM_INPUTS = 2
INPUT_BOUND = 1.0
NOISE = 0.5
ACTUATION = 0.2  # scale of B: weak inputs, so that the bound on u binds often
LEARNING_RATE = 5e-2
SYSTEM_SEED = 9
EVALUATION_SEED = 10
TRAINING_SEED = 11


@keras.saving.register_keras_serializable(package="recipes.stochastic_control")
class ADPPolicy(ConvexLayer):
    """u(x) = argmin_{||u||_∞ <= input_bound} ||u||² + ||S (A x + B u)||², S trainable.

    Args:
        state_matrix: A, (n, n).
        input_matrix: B, (n, m).
        input_bound: u_max > 0.
        **kwargs: `ConvexLayer` keyword arguments (solver, solver_args, name, ...).

    Input shape: `(batch, n)`, the states. Output shape: `(batch, m)`, the inputs.
    """

    def __init__(self, state_matrix, input_matrix, input_bound: float, **kwargs):
        super().__init__(**kwargs)
        self.state_matrix = np.asarray(state_matrix, dtype=np.float64)
        self.input_matrix = np.asarray(input_matrix, dtype=np.float64)
        self.input_bound = float(input_bound)

    def build(self, input_shape):
        n, m = self.input_matrix.shape
        self.S = self.add_weight(shape=(n, n), initializer="identity", name="S")
        x, S = cp.Parameter(n, name="x"), cp.Parameter((n, n), name="S")
        u, next_state = cp.Variable(m, name="u"), cp.Variable(n, name="next_state")
        # next_state stands for A x + B u so that S multiplies a variable, not
        # the parameter x: S @ (A @ x) would not be DPP.
        problem = cp.Problem(
            cp.Minimize(cp.sum_squares(u) + cp.sum_squares(S @ next_state)),
            [next_state == self.state_matrix @ x + self.input_matrix @ u, cp.abs(u) <= self.input_bound],
        )
        self.set_problem(problem, inputs=[x], weights={S: self.S}, outputs=[u])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.input_matrix.shape[1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "state_matrix": self.state_matrix.tolist(),
                "input_matrix": self.input_matrix.tolist(), "input_bound": self.input_bound}


@dataclasses.dataclass(frozen=True)
class ControlRunSize:
    steps: int  # training steps
    batch: int  # trajectories per training step
    horizon: int  # time steps per trajectory
    evaluation_trajectories: int
    evaluate_every: int  # training steps between evaluations


FULL_RUN = ControlRunSize(steps=60, batch=16, horizon=20, evaluation_trajectories=64, evaluate_every=5)
QUICK_RUN = ControlRunSize(steps=2, batch=4, horizon=4, evaluation_trajectories=8, evaluate_every=1)


def system() -> tuple[np.ndarray, np.ndarray]:
    """(A, B): A random with spectral radius 1 (marginally stable), B ~ N(0, ACTUATION²)."""
    rng = np.random.default_rng(SYSTEM_SEED)
    A = rng.standard_normal((NUM_STATES, NUM_STATES))
    A /= np.abs(np.linalg.eigvals(A)).max()
    return A, ACTUATION * rng.standard_normal((NUM_STATES, NUM_INPUTS))


def lqr_factor(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """S with SᵀS = P, the LQR cost-to-go matrix for costs ||x||² + ||u||² (input bound ignored)."""
    P = scipy.linalg.solve_discrete_are(A, B, np.eye(len(A)), np.eye(B.shape[1]))
    return np.linalg.cholesky(P).T


def make_policy() -> keras.Model:
    """The ADP policy as a Keras model, S at the LQR factor."""
    A, B = system()
    policy = ADPPolicy(A, B, INPUT_BOUND, dtype="float64", name="adp_policy")
    model = keras.Sequential([keras.Input((NUM_STATES,)), policy])
    policy.S.assign(lqr_factor(A, B))
    return model


def trajectories(seed: int, count: int, horizon: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Initial states x0 ~ N(0, I) (count, n) and disturbances w_t ~ N(0, NOISE² I) (horizon, count, n)."""
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.standard_normal((count, NUM_STATES))),
            tf.constant(NOISE * rng.standard_normal((horizon, count, NUM_STATES))))


def average_cost(policy: keras.Model, initial_states: tf.Tensor, disturbances: tf.Tensor) -> tf.Tensor:
    """Mean over trajectories and time of ||x_t||² + ||u_t||², simulated under the policy."""
    A, B = (tf.constant(matrix) for matrix in system())
    state, total = initial_states, tf.constant(0.0, tf.float64)
    for disturbance in disturbances:
        control = policy(state)
        total += tf.reduce_mean(tf.reduce_sum(state**2, axis=1) + tf.reduce_sum(control**2, axis=1))
        state = tf.linalg.matmul(state, A, transpose_b=True) + tf.linalg.matmul(control, B, transpose_b=True) + disturbance
    return total / len(disturbances)


def run(size: ControlRunSize, output_dir: pathlib.Path, model_path: pathlib.Path) -> tuple[float, float]:
    """Trains the policy; returns the evaluation cost before and after."""
    policy = make_policy()
    evaluation = trajectories(EVALUATION_SEED, size.evaluation_trajectories, size.horizon)
    evaluation_steps, evaluation_costs = [0], [float(average_cost(policy, *evaluation))]
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    rng_seeds = np.random.default_rng(TRAINING_SEED).integers(2**31, size=size.steps)
    progress = keras.utils.Progbar(size.steps, stateful_metrics=["batch_cost", "evaluation_cost"])
    for step, seed in enumerate(rng_seeds, start=1):
        with tf.GradientTape() as tape:
            cost = average_cost(policy, *trajectories(int(seed), size.batch, size.horizon))
        optimizer.apply(tape.gradient(cost, policy.trainable_variables), policy.trainable_variables)
        if step % size.evaluate_every == 0 or step == size.steps:
            evaluation_steps.append(step)
            evaluation_costs.append(float(average_cost(policy, *evaluation)))
        progress.update(step, values=[("batch_cost", float(cost)), ("evaluation_cost", evaluation_costs[-1])])
    initial_cost, final_cost = evaluation_costs[0], evaluation_costs[-1]

    output_dir.mkdir(parents=True, exist_ok=True)
    save_loss_curve(output_dir / "cost.png", {
        f"evaluation set ({size.evaluation_trajectories} fixed trajectories)": (evaluation_steps, evaluation_costs),
    }, xlabel="training step", ylabel="average stage cost", log_scale=False)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    policy.save(model_path)

    print(f"evaluation cost ({size.evaluation_trajectories} trajectories of {size.horizon} steps): "
          f"LQR-initialized ADP policy {initial_cost:.4f}, learned {final_cost:.4f} "
          f"({100 * (1 - final_cost / initial_cost):.1f}% lower)")
    print(f"wrote {output_dir}/cost.png; policy: {model_path}")
    return initial_cost, final_cost


def main(argv: list[str] | None = None) -> tuple[float, float]:
    args = recipe_parser("stochastic_control", __doc__.split("\n\n")[0]).parse_args(argv)
    return run(QUICK_RUN if args.quick else FULL_RUN, args.output_dir, args.model_path)


if __name__ == "__main__":
    main()

"""Stochastic control: learning a convex approximate dynamic programming policy.

The cvxpylayers paper's second application (Agrawal et al. 2019, §6.2 and
its Figure 2), in the paper's setting: a linear system

    x_{t+1} = A x_t + B u_t + w_t,   x ∈ R², u ∈ R³,   w_t ~ N(0, 0.2² I),

with stage cost ||x_t||² + ||u_t||² and the input in the unit ball,
||u_t||₂ <= 1, run by the control-Lyapunov policy

    u(x) = argmin_{||u||₂ <= 1}  ½ ||P_sqrt u||² + xᵀ P_21 u + qᵀ u,

a second-order cone program (solved by the native SOCP solver in TF ops)
whose data P_sqrt, P_21 and q are Keras weights (`ADPPolicy`, a
`ConvexLayer` of this module). They start at the LQR solution, which
ignores the input bound (P_sqrt = (R + BᵀPB)^½, P_21 = AᵀPB, q = 0 with P
the Riccati solution); then the policy is trained by SGD with momentum on
the average cost of 8 simulated trajectories of 25 steps, differentiated
through every one of the 200 cone programs solved per step, in a
Keras-style loop with a `keras.utils.Progbar`.

As in the paper's figure, the training trajectories keep the same
disturbances at every step (common random numbers), so the curve shows the
policy improving, not the noise; the paper reports that the average cost
falls by roughly 40%. The learned policy is also compared with the LQR one
on held-out trajectories.

Run:

    python -m recipes.stochastic_control [--quick] [--output-dir DIR] [--model-path PATH]

It writes cost.png (the training cost per step, the paper's Figure 2, and
the held-out cost) to the output directory (default
recipes/output/stochastic_control/), prints the costs, and saves the policy
model to saved_models/stochastic_control.keras.
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

NUM_STATES = 2
NUM_INPUTS = 3
INPUT_BOUND = 1.0
NOISE = 0.2
LEARNING_RATE = 0.02
MOMENTUM = 0.9
SYSTEM_SEED = 1
TRAINING_SEED = 2
EVALUATION_SEED = 3


@keras.saving.register_keras_serializable(package="recipes.stochastic_control")
class ADPPolicy(ConvexLayer):
    """u(x) = argmin_{||u||₂ <= input_bound} ½||P_sqrt u||² + xᵀ P_21 u + qᵀu, with P_sqrt, P_21, q trainable.

    The cross term is written through a variable y = P_21 u, since xᵀ P_21 u
    (a product of two parameters) would not be DPP.

    Args:
        num_inputs: m, the size of u.
        input_bound: the radius of the input ball, > 0.
        **kwargs: `ConvexLayer` keyword arguments (solver, solver_args, name, ...).

    Input shape: `(batch, n)`, the states. Output shape: `(batch, m)`, the inputs.
    """

    def __init__(self, num_inputs: int, input_bound: float, **kwargs):
        super().__init__(**kwargs)
        if num_inputs < 1 or input_bound <= 0:
            raise ValueError(f"Expected num_inputs >= 1 and input_bound > 0. "
                             f"Received: num_inputs={num_inputs}, input_bound={input_bound}")
        self.num_inputs = int(num_inputs)
        self.input_bound = float(input_bound)

    def build(self, input_shape):
        n, m = input_shape[-1], self.num_inputs
        self.P_sqrt = self.add_weight(shape=(m, m), initializer="identity", name="P_sqrt")
        self.P_21 = self.add_weight(shape=(n, m), initializer="zeros", name="P_21")
        self.q = self.add_weight(shape=(m,), initializer="zeros", name="q")
        x = cp.Parameter(n, name="x")
        P_sqrt, P_21, q = cp.Parameter((m, m), name="P_sqrt"), cp.Parameter((n, m), name="P_21"), cp.Parameter(m, name="q")
        u, y = cp.Variable(m, name="u"), cp.Variable(n, name="y")
        problem = cp.Problem(
            cp.Minimize(0.5 * cp.sum_squares(P_sqrt @ u) + x @ y + q @ u),
            [y == P_21 @ u, cp.norm(u, 2) <= self.input_bound],
        )
        self.set_problem(problem, inputs=[x], weights={P_sqrt: self.P_sqrt, P_21: self.P_21, q: self.q},
                         outputs=[u])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.num_inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_inputs": self.num_inputs, "input_bound": self.input_bound}


@dataclasses.dataclass(frozen=True)
class ControlRunSize:
    steps: int  # training steps
    batch: int  # trajectories per training step (the same ones at every step)
    horizon: int  # time steps per trajectory
    evaluation_trajectories: int  # held out
    evaluate_every: int  # training steps between held-out evaluations


FULL_RUN = ControlRunSize(steps=100, batch=8, horizon=25, evaluation_trajectories=64, evaluate_every=10)  # the paper's
QUICK_RUN = ControlRunSize(steps=3, batch=4, horizon=5, evaluation_trajectories=8, evaluate_every=1)


def system() -> tuple[np.ndarray, np.ndarray]:
    """(A, B) as in the paper's example: A = I + 0.01 N(0, 1), B = (0.01/3) N(0, 1); weak inputs."""
    rng = np.random.default_rng(SYSTEM_SEED)
    A = np.eye(NUM_STATES) + 0.01 * rng.standard_normal((NUM_STATES, NUM_STATES))
    return A, 0.01 / 3 * rng.standard_normal((NUM_STATES, NUM_INPUTS))


def lqr_policy_data(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P_sqrt, P_21, q) of the LQR policy for costs ||x||² + ||u||², the input bound ignored.

    With P the Riccati solution, LQR's u = -(R + BᵀPB)⁻¹BᵀPA x minimizes
    ½uᵀ(R + BᵀPB)u + xᵀAᵀPBu: P_sqrt = (R + BᵀPB)^½, P_21 = AᵀPB, q = 0.
    """
    R = np.eye(B.shape[1])
    P = scipy.linalg.solve_discrete_are(A, B, np.eye(len(A)), R)
    return np.real(scipy.linalg.sqrtm(R + B.T @ P @ B)), A.T @ P @ B, np.zeros(B.shape[1])


def make_policy() -> keras.Model:
    """The ADP policy as a Keras model, at the LQR solution."""
    A, B = system()
    policy = ADPPolicy(NUM_INPUTS, INPUT_BOUND, dtype="float64", name="adp_policy")
    model = keras.Sequential([keras.Input((NUM_STATES,)), policy])
    for weight, value in zip((policy.P_sqrt, policy.P_21, policy.q), lqr_policy_data(A, B), strict=True):
        weight.assign(value)
    return model


def disturbances(seed: int, count: int, horizon: int) -> tf.Tensor:
    """w_t ~ N(0, NOISE² I): (horizon, count, n); every trajectory starts at x0 = 0, as in the paper."""
    rng = np.random.default_rng(seed)
    return tf.constant(NOISE * rng.standard_normal((horizon, count, NUM_STATES)))


def average_cost(policy: keras.Model, noise: tf.Tensor) -> tf.Tensor:
    """Mean over trajectories and time of ||x_t||² + ||u_t||², simulated under the policy from x0 = 0."""
    A, B = (tf.constant(matrix) for matrix in system())
    state = tf.zeros([noise.shape[1], NUM_STATES], tf.float64)
    total = tf.constant(0.0, tf.float64)
    for disturbance in noise:
        control = policy(state)
        total += tf.reduce_mean(tf.reduce_sum(state**2, axis=1) + tf.reduce_sum(control**2, axis=1))
        state = tf.linalg.matmul(state, A, transpose_b=True) + tf.linalg.matmul(control, B, transpose_b=True) + disturbance
    return total / len(noise)


def run(size: ControlRunSize, output_dir: pathlib.Path, model_path: pathlib.Path) -> dict[str, tuple[float, float]]:
    """Trains the policy; returns {"training": (first, last), "held out": (LQR, learned)} costs."""
    policy = make_policy()
    training_noise = disturbances(TRAINING_SEED, size.batch, size.horizon)
    held_out_noise = disturbances(EVALUATION_SEED, size.evaluation_trajectories, size.horizon)
    held_out_steps, held_out_costs = [0], [float(average_cost(policy, held_out_noise))]
    training_costs = []
    optimizer = keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM)
    progress = keras.utils.Progbar(size.steps, stateful_metrics=["training_cost", "held_out_cost"])
    for step in range(1, size.steps + 1):
        with tf.GradientTape() as tape:
            cost = average_cost(policy, training_noise)
        training_costs.append(float(cost))
        optimizer.apply(tape.gradient(cost, policy.trainable_variables), policy.trainable_variables)
        if step % size.evaluate_every == 0 or step == size.steps:
            held_out_steps.append(step)
            held_out_costs.append(float(average_cost(policy, held_out_noise)))
        progress.update(step, values=[("training_cost", training_costs[-1]), ("held_out_cost", held_out_costs[-1])])
    training_costs.append(float(average_cost(policy, training_noise)))

    output_dir.mkdir(parents=True, exist_ok=True)
    save_loss_curve(output_dir / "cost.png", {
        f"training ({size.batch} trajectories, same noise each step)": (range(size.steps + 1), training_costs),
        f"held out ({size.evaluation_trajectories} trajectories)": (held_out_steps, held_out_costs),
    }, xlabel="training step", ylabel="average cost", log_scale=False)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    policy.save(model_path)

    costs = {"training": (training_costs[0], training_costs[-1]), "held out": (held_out_costs[0], held_out_costs[-1])}
    for name, (lqr, learned) in costs.items():
        print(f"{name} cost: LQR-initialized policy {lqr:.4f}, learned {learned:.4f} "
              f"({100 * (1 - learned / lqr):.1f}% lower; the paper: roughly 40%)")
    print(f"wrote {output_dir}/cost.png; policy: {model_path}")
    return costs


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    args = recipe_parser("stochastic_control", __doc__.split("\n\n")[0]).parse_args(argv)
    return run(QUICK_RUN if args.quick else FULL_RUN, args.output_dir, args.model_path)


if __name__ == "__main__":
    main()

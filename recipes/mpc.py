"""Learning an MPC controller's cost from an expert's plans.

A model predictive controller is a convex layer: given the state x0 it
plans H forces by solving a QP. Here an expert MPC controller of a double
integrator (the TFDS set `mpc_expert_plans`) weighs position and velocity
by weights the learner does not know; the learner is `MPCPlanner`, a
`ConvexLayer` of this module with the same dynamics, horizon and force
bound whose state weights are Keras weights (w², so they stay
nonnegative), starting at (1, 1). `model.fit` (Adam 5e-2, batches of 32,
mean squared error between the plans) recovers the expert's weights from
its plans, differentiating through every QP.

Run:

    python -m recipes.mpc [--quick] [--output-dir DIR] [--model-path PATH] [--data-dir DIR]

It writes loss.png and trajectories.png (closed-loop runs from a few
initial states under the expert, the initial and the learned controller)
to the output directory (default recipes/output/mpc/), prints the test loss
before and after and the learned weights beside the expert's, and saves the
model to saved_models/mpc.keras.
"""

from __future__ import annotations

import pathlib
import cvxpy as cp
import keras
import matplotlib.pyplot as plt
import numpy as np

from keras_optlayers import ConvexLayer
from recipes import pipeline
from recipes.cli import recipe_parser
from recipes.datasets.mpc_expert_plans import (
    EXPERT_STATE_WEIGHTS,
    FORCE_BOUND,
    HORIZON,
    MpcExpertPlans,
    dynamics,
    expert_plans,
)
from recipes.figures import fit_and_save
from recipes.pipeline import RunSize

SHUFFLE_SEED = 0
BATCH_SIZE = 32
FULL_RUN = RunSize(num_train=1024, num_test=256, epochs=10)  # 320 steps of 32
QUICK_RUN = RunSize(num_train=128, num_test=64, epochs=2)  # 8 steps of 32
FULL_CLOSED_LOOP_STEPS, QUICK_CLOSED_LOOP_STEPS = 40, 5
CLOSED_LOOP_STARTS = np.array([[-3.0, 0.0], [2.5, 1.5], [0.5, -2.0]])


@keras.saving.register_keras_serializable(package="recipes.mpc")
class MPCPlanner(ConvexLayer):
    """x0 -> the forces u_0..u_{H-1} minimizing Σ_t ||diag(w) x_t||² + Σ_t u_t²,
    subject to the double integrator's dynamics and |u_t| <= FORCE_BOUND; w trainable.

    Input shape: `(batch, 2)`. Output shape: `(batch, HORIZON)`.
    """

    def build(self, input_shape):
        A, B = dynamics()
        self.state_weight_root = self.add_weight(shape=(2,), initializer="ones", name="state_weight_root")
        x0, root = cp.Parameter(2, name="x0"), cp.Parameter(2, name="state_weight_root")
        u, x = cp.Variable(HORIZON, name="u"), cp.Variable((HORIZON + 1, 2), name="x")
        constraints = [x[0] == x0, cp.abs(u) <= FORCE_BOUND]
        constraints += [x[t + 1] == A @ x[t] + B[:, 0] * u[t] for t in range(HORIZON)]
        # w enters through its square root: a parameter times a variable keeps
        # the problem DPP and a QP, and the weights w = root² stay nonnegative.
        cost = sum(cp.sum_squares(cp.multiply(root, x[t])) for t in range(1, HORIZON + 1)) + cp.sum_squares(u)
        self.set_problem(cp.Problem(cp.Minimize(cost), constraints), inputs=[x0],
                         weights={root: self.state_weight_root}, outputs=[u])

    def state_weights(self) -> np.ndarray:
        return np.asarray(self.state_weight_root) ** 2

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], HORIZON)


def make_model() -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), MPCPlanner(name="planner")])
    model.compile(optimizer=keras.optimizers.Adam(5e-2), loss="mse")
    return model


def closed_loop(plan, starts: np.ndarray, steps: int) -> np.ndarray:
    """States (steps + 1, batch, 2) when each step applies the first force of `plan(states)`."""
    A, B = dynamics()
    states = [starts]
    for _ in range(steps):
        states.append(states[-1] @ A.T + np.outer(plan(states[-1])[:, 0], B[:, 0]))
    return np.array(states)


def draw_trajectories(path: pathlib.Path, initial_model: keras.Model, model: keras.Model, steps: int) -> None:
    """Phase portraits (position, velocity) of the three controllers from a few starts."""
    controllers = {  # label: (color, line style, planner)
        "expert": ("k", "-", expert_plans),
        "initial weights (1, 1)": ("#9ecae1", "-", lambda states: np.asarray(initial_model(states))),
        "learned": ("#de2d26", "--", lambda states: np.asarray(model(states))),
    }
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, (color, style, plan) in controllers.items():
        trajectories = closed_loop(plan, CLOSED_LOOP_STARTS, steps)
        for index in range(len(CLOSED_LOOP_STARTS)):
            ax.plot(trajectories[:, index, 0], trajectories[:, index, 1], color=color, ls=style,
                    lw=2 if label == "expert" else 1.2, label=label if index == 0 else None)
    ax.plot(*CLOSED_LOOP_STARTS.T, "ko", ms=4)
    ax.set_xlabel("position")
    ax.set_ylabel("velocity")
    ax.set_title(f"closed loop, {steps} steps of {HORIZON}-step plans", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(size: RunSize, closed_loop_steps: int, output_dir: pathlib.Path, model_path: pathlib.Path,
        data_dir: pathlib.Path | None) -> float:
    """Trains, draws and saves; returns the final test loss."""
    builder, train, test = pipeline.start_run(MpcExpertPlans, size, BATCH_SIZE, SHUFFLE_SEED, data_dir)
    initial_model, model = make_model(), make_model()
    _, final_test_loss = fit_and_save(model, train, test, epochs=size.epochs, output_dir=output_dir,
                                      model_path=model_path, ylabel="mean squared error of the plans")
    draw_trajectories(output_dir / "trajectories.png", initial_model, model, closed_loop_steps)

    learned = model.get_layer("planner").state_weights()
    print(f"state weights (position, velocity): learned {np.round(learned, 3)}, expert {EXPERT_STATE_WEIGHTS}")
    print(f"wrote {output_dir}/loss.png and trajectories.png; model: {model_path}")
    return final_test_loss


def main(argv: list[str] | None = None) -> float:
    args = recipe_parser("mpc", __doc__.split("\n\n")[0]).parse_args(argv)
    if args.quick:
        return run(QUICK_RUN, QUICK_CLOSED_LOOP_STEPS, args.output_dir, args.model_path, args.data_dir)
    return run(FULL_RUN, FULL_CLOSED_LOOP_STEPS, args.output_dir, args.model_path, args.data_dir)


if __name__ == "__main__":
    main()

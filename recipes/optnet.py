"""Learning an OptNet QP layer from the solutions of a hidden one.

Data (the TFDS data set `optnet_solutions`): linear terms q in R^3 and the
solutions x*(q) of a hidden quadratic program with one equality and six
inequalities. The model is a single `OptNetQP(num_eq=1, num_ineq=6)` fed q:
it learns Q = L Lᵀ + εI, the equality plane and the six half-spaces (all
feasible by construction) with `model.fit`: Adam 3e-2, batches of 32, mean
squared error between its solutions and the hidden ones.

Run:

    python -m recipes.optnet [--quick] [--output-dir DIR] [--model-path PATH] [--data-dir DIR]

It writes to the output directory (default recipes/output/optnet/) the loss
curve (loss.png) and, per epoch, the learned feasible set beside the hidden
one in the hidden equality plane, a 2-D slice of R^3 (frames/, and their
animation feasible_set.gif); prints the test loss before and after and the
angle between the learned and the hidden equality planes; and saves the
model to saved_models/optnet.keras.
"""

from __future__ import annotations

import pathlib

import keras
import matplotlib.pyplot as plt
import numpy as np

from keras_optlayers import OptNetQP
from recipes import pipeline
from recipes.cli import recipe_parser
from recipes.datasets.optnet_solutions import DIM, NUM_EQ, NUM_INEQ, OptnetSolutions, hidden_qp
from recipes.figures import fit_animated
from recipes.pipeline import RunSize

SHUFFLE_SEED = 0
BATCH_SIZE = 32
FULL_RUN = RunSize(num_train=1024, num_test=256, epochs=15)  # 480 steps of 32
QUICK_RUN = RunSize(num_train=128, num_test=64, epochs=2)  # 8 steps of 32
# The QP solver's default tolerance (1e-8) is more than learning needs, and
# one full run stopped in epoch 7 when an example of a learned QP hit the
# iteration limit at that tolerance (a SolverError inside model.fit).
SOLVER_ARGS = {"tol": 1e-6, "max_iter": 100}


def make_model() -> keras.Model:
    layer = OptNetQP(num_eq=NUM_EQ, num_ineq=NUM_INEQ, solver_args=SOLVER_ARGS, name="optnet")
    model = keras.Sequential([keras.Input((DIM,)), layer])
    model.compile(optimizer=keras.optimizers.Adam(3e-2), loss="mse")
    return model


def learned_constraints(model: keras.Model) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The layer's (A, b, G, h), with OptNet's tied offsets b = A z0, h = G z0 + s0."""
    layer = model.get_layer("optnet")
    A, G, z0 = (np.asarray(weight, dtype=np.float64) for weight in (layer.A, layer.G, layer.z0))
    return A, A @ z0, G, G @ z0 + layer.slack


class HiddenPlane:
    """Coordinates u in the hidden equality plane {x : A x = b}: x = origin + basis @ u."""

    def __init__(self):
        qp = hidden_qp()
        self.origin = np.linalg.lstsq(qp.A, qp.b, rcond=None)[0]
        self.basis = np.linalg.svd(qp.A)[2][NUM_EQ:].T  # (DIM, 2), orthonormal, spans A's null space
        self.normal = qp.A[0] / np.linalg.norm(qp.A[0])

    def coordinates(self, points: np.ndarray) -> np.ndarray:
        return (points - self.origin) @ self.basis

    def points(self, coordinates: np.ndarray) -> np.ndarray:
        return self.origin + coordinates @ self.basis.T


def plane_angle_degrees(model: keras.Model, plane: HiddenPlane) -> float:
    """The angle between the learned and the hidden equality planes."""
    A = learned_constraints(model)[0][0]
    return float(np.degrees(np.arccos(min(1.0, abs(A @ plane.normal) / np.linalg.norm(A)))))


def draw_feasible_sets(path: pathlib.Path, model: keras.Model, plane: HiddenPlane, q: np.ndarray,
                       targets: np.ndarray, title: str) -> None:
    """The hidden feasible set (filled) and the learned half-spaces' intersection (red), both cut
    by the hidden equality plane; the hidden solutions (black) and the model's (red dots)."""
    target_coordinates = plane.coordinates(targets)
    low, high = target_coordinates.min(axis=0) - 1.0, target_coordinates.max(axis=0) + 1.0
    u = np.linspace(low[0], high[0], 250)
    v = np.linspace(low[1], high[1], 250)
    grid = plane.points(np.stack(np.meshgrid(u, v), axis=-1))  # (250, 250, DIM)

    def violation(G, h):  # max_i (G_i x - h_i): <= 0 exactly inside
        return (grid @ G.T - h).max(axis=-1)

    qp = hidden_qp()
    _, _, G, h = learned_constraints(model)
    predictions = plane.coordinates(np.asarray(model.predict(q, verbose=0), dtype=np.float64))
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ax.contourf(u, v, violation(qp.G, qp.h), levels=[-np.inf, 0.0], colors=["#9ecae1"])
    ax.contour(u, v, violation(qp.G, qp.h), levels=[0.0], colors=["#3182bd"], linewidths=2)
    ax.contour(u, v, violation(G, h), levels=[0.0], colors=["#de2d26"], linewidths=2)
    ax.scatter(*target_coordinates.T, s=5, c="k", alpha=0.5, label="hidden QP's solutions")
    ax.scatter(*predictions.T, s=5, c="#de2d26", alpha=0.5, label="learned QP's solutions")
    ax.set_xlabel("$u_1$ (hidden plane)")
    ax.set_ylabel("$u_2$")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(size: RunSize, output_dir: pathlib.Path, model_path: pathlib.Path, data_dir: pathlib.Path | None) -> float:
    """Trains, draws and saves; returns the final test loss."""
    builder, train, test = pipeline.start_run(OptnetSolutions, size, BATCH_SIZE, SHUFFLE_SEED, data_dir)
    test_arrays = pipeline.arrays(builder, size.test_split)
    plane = HiddenPlane()
    model = make_model()
    initial_test_loss = float(model.evaluate(test, verbose=0))
    steps_per_epoch = size.steps_per_epoch(BATCH_SIZE)

    def draw(model: keras.Model, path: pathlib.Path, step: int) -> None:
        draw_feasible_sets(path, model, plane, test_arrays["q"], test_arrays["x"],
                           f"step {step}: hidden (blue) and learned (red) feasible sets,\n"
                           "cut by the hidden equality plane")

    final_test_loss = fit_animated(
        model, train, test, initial=initial_test_loss, epochs=size.epochs, steps_per_epoch=steps_per_epoch,
        batch_size=BATCH_SIZE, draw=draw, output_dir=output_dir, gif_name="feasible_set.gif", model_path=model_path,
        loss_format=".3e", ratio_format=".0f")
    print(f"angle between the learned and the hidden equality planes: {plane_angle_degrees(model, plane):.2f} degrees")
    return final_test_loss


def main(argv: list[str] | None = None) -> float:
    args = recipe_parser("optnet", __doc__.split("\n\n")[0]).parse_args(argv)
    return run(QUICK_RUN if args.quick else FULL_RUN, args.output_dir, args.model_path, args.data_dir)


if __name__ == "__main__":
    main()

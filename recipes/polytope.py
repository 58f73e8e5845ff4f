"""Learning a polytope from projections onto it, the Keras way.

The cvxpylayers tutorial's "General Polytope Projections": points x ~ N(0, I)
projected onto a hidden polytope {y : G y <= h} in the plane (the TFDS data
set `polytope_projections`, see `recipes.datasets.polytope_projections`),
and a model holding a `PolytopeProjection` with a random initial polytope
(h tied to the same z0 and s0) that learns G from the pairs (x, y) with
`model.fit`: Adam 1e-2, batches of 32, mean squared error.

Run:

    python -m recipes.polytope [--quick] [--output-dir DIR] [--model-path PATH] [--data-dir DIR]

It writes to the output directory (default recipes/output/polytope/) the
loss curve (loss.png), one frame of the true against the learned polytope
per epoch (frames/frame_XXXX.png) and their animation (polytope.gif); it
prints the final test loss and saves the trained model to
saved_models/polytope.keras.
"""

from __future__ import annotations

import pathlib

import keras
import matplotlib.pyplot as plt
import numpy as np

from keras_optlayers import PolytopeProjection
from recipes import pipeline
from recipes.pipeline import RunSize
from recipes.cli import recipe_parser
from recipes.datasets.polytope_projections import (
    DIM,
    INTERIOR_POINT,
    NUM_CONSTRAINTS,
    SLACK,
    PolytopeProjections,
    hidden_polytope,
)
from recipes.figures import fit_animated

INITIAL_POLYTOPE_SEED = 22
SHUFFLE_SEED = 0
BATCH_SIZE = 32


FULL_RUN = RunSize(num_train=1024, num_test=512, epochs=30)  # 960 steps of 32
QUICK_RUN = RunSize(num_train=256, num_test=128, epochs=3)  # 24 steps of 32


def make_model(solver: str | None) -> keras.Model:
    """A projection onto {y : G y <= G z0 + s0}, the tutorial's tied offsets, G random."""
    model = keras.Sequential([
        keras.Input((DIM,)),
        PolytopeProjection(
            NUM_CONSTRAINTS,
            offset="interior_point",
            interior_point=INTERIOR_POINT,
            slack=SLACK,
            G_initializer=keras.initializers.RandomUniform(-4.0, 4.0, seed=INITIAL_POLYTOPE_SEED),
            solver=solver,
            name="polytope",
        ),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def draw_polytopes(path: pathlib.Path, true_polytope, learned_polytope, points: np.ndarray, title: str) -> None:
    """Saves a plot of the true polytope (filled) and the learned one (red); each a pair (G, h)."""
    low, high = points.min(axis=0), points.max(axis=0)
    pad = 0.3 * (high - low).max() + 0.1
    u = np.linspace(low[0] - pad, high[0] + pad, 300)
    v = np.linspace(low[1] - pad, high[1] + pad, 300)
    grid = np.stack(np.meshgrid(u, v), axis=-1)  # (300, 300, 2)

    def violation(polytope):  # max_i (G_i p - h_i): <= 0 exactly inside
        G, h = (np.asarray(t) for t in polytope)
        return (grid @ G.T - h).max(axis=-1)

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.contourf(u, v, violation(true_polytope), levels=[-np.inf, 0.0], colors=["#9ecae1"])
    ax.contour(u, v, violation(true_polytope), levels=[0.0], colors=["#3182bd"], linewidths=2)
    ax.contour(u, v, violation(learned_polytope), levels=[0.0], colors=["#de2d26"], linewidths=2)
    ax.scatter(points[:, 0], points[:, 1], s=4, c="k", alpha=0.4)
    ax.set_title(title)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(size: RunSize, output_dir: pathlib.Path, model_path: pathlib.Path, data_dir: pathlib.Path | None,
        solver: str | None) -> float:
    """Trains, draws and saves; returns the final test loss."""
    builder, train, test = pipeline.start_run(PolytopeProjections, size, BATCH_SIZE, SHUFFLE_SEED, data_dir)
    model = make_model(solver)
    initial_test_loss = float(model.evaluate(test, verbose=0))
    steps_per_epoch = size.steps_per_epoch(BATCH_SIZE)
    test_targets = pipeline.arrays(builder, size.test_split)["y"]

    def draw(model: keras.Model, path: pathlib.Path, step: int) -> None:
        draw_polytopes(path, hidden_polytope(), model.get_layer("polytope").polytope(), test_targets,
                       f"step {step}: true (blue) and learned (red)")

    final_test_loss = fit_animated(
        model, train, test, initial=initial_test_loss, epochs=size.epochs, steps_per_epoch=steps_per_epoch,
        batch_size=BATCH_SIZE, draw=draw, output_dir=output_dir, gif_name="polytope.gif", model_path=model_path,
        loss_format=".6f", ratio_format=".1f")
    return final_test_loss


def main(argv: list[str] | None = None) -> float:
    parser = recipe_parser("polytope", __doc__.split("\n\n")[0])
    parser.add_argument("--solver", default="auto",
                        help='"auto" (the QP solver) or a solver name such as "SCS"')
    args = parser.parse_args(argv)
    solver = None if args.solver == "auto" else args.solver
    return run(QUICK_RUN if args.quick else FULL_RUN, args.output_dir, args.model_path, args.data_dir, solver)


if __name__ == "__main__":
    main()

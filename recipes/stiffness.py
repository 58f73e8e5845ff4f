"""Learning the stiffness constants of a chain of springs from where its blocks come to rest.

cvxpylayers 0.1.9's TensorFlow example `optimizing_stiffness_constants`
tunes the springs between blocks on a line so that the blocks rest at
target positions, differentiating the resting positions (the minimizer of
the potential energy, a QP with non-penetration constraints) with respect
to the stiffness constants. Here the same layer is learned the Keras way:
`SpringChain` is a `ConvexLayer` of this module whose six stiffness
constants are Keras weights (k = r², so they stay nonnegative), starting at
all ones; it maps the loads pushing on the five blocks to their resting
positions. The TFDS set `spring_equilibria` holds loads and the resting
positions of a hidden chain, many of them with blocks touching each other
or a wall (active constraints). `model.fit` (Adam 5e-2, batches of 32, mean
squared error of the positions) recovers the hidden constants.

Run:

    python -m recipes.stiffness [--quick] [--output-dir DIR] [--model-path PATH] [--data-dir DIR]

It writes loss.png and blocks.png (the blocks at rest under a few test
loads: hidden chain, initial and learned) to the output directory (default
recipes/output/stiffness/), prints the test loss before and after and the
learned constants beside the hidden ones, and saves the model to
saved_models/stiffness.keras.
"""

from __future__ import annotations

import pathlib

import cvxpy as cp
import keras
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patches

from keras_optlayers import ConvexLayer
from recipes import pipeline
from recipes.cli import recipe_parser
from recipes.datasets.spring_equilibria import (
    HIDDEN_STIFFNESS,
    LENGTH,
    NUM_BLOCKS,
    WIDTH,
    SpringEquilibria,
    resting_positions,
)
from recipes.figures import fit_and_save
from recipes.pipeline import RunSize

SHUFFLE_SEED = 0
BATCH_SIZE = 32
FULL_RUN = RunSize(num_train=1024, num_test=256, epochs=12)  # 384 steps of 32
QUICK_RUN = RunSize(num_train=128, num_test=64, epochs=2)  # 8 steps of 32
PICTURED_LOADS = 3


@keras.saving.register_keras_serializable(package="recipes.stiffness")
class SpringChain(ConvexLayer):
    """Loads f on the blocks -> the blocks' resting positions p, minimizing
    Σᵢ ½ kᵢ (pᵢ₊₁ - pᵢ)² - fᵀp with walls p₀ = 0, p₆ = LENGTH and spacings of
    at least WIDTH; k = r² with r trainable.

    Input shape: `(batch, NUM_BLOCKS)`. Output shape: `(batch, NUM_BLOCKS)`.
    """

    def build(self, input_shape):
        self.stiffness_root = self.add_weight(shape=(NUM_BLOCKS + 1,), initializer="ones", name="stiffness_root")
        forces, root = cp.Parameter(NUM_BLOCKS, name="forces"), cp.Parameter(NUM_BLOCKS + 1, name="stiffness_root")
        p = cp.Variable(NUM_BLOCKS + 2, name="positions")  # with the two walls
        spacings = cp.diff(p)
        # k enters through its square root: a parameter times a variable keeps
        # the problem DPP and a QP, and k = r² stays nonnegative.
        energy = 0.5 * cp.sum_squares(cp.multiply(root, spacings)) - forces @ p[1:-1]
        constraints = [p[0] == 0, p[-1] == LENGTH, spacings >= WIDTH]
        self.set_problem(cp.Problem(cp.Minimize(energy), constraints), inputs=[forces],
                         weights={root: self.stiffness_root}, outputs=[p])

    def call(self, forces):
        return super().call(forces)[..., 1:-1]  # the blocks, without the walls

    def stiffness(self) -> np.ndarray:
        return np.asarray(self.stiffness_root) ** 2

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], NUM_BLOCKS)


def make_model() -> keras.Model:
    model = keras.Sequential([keras.Input((NUM_BLOCKS,)), SpringChain(name="chain")])
    model.compile(optimizer=keras.optimizers.Adam(5e-2), loss="mse")
    return model


def draw_blocks(path: pathlib.Path, forces: np.ndarray, chains: dict[str, np.ndarray]) -> None:
    """One panel per load: the blocks at rest for each chain, one row per chain."""
    fig, axes = plt.subplots(len(forces), 1, figsize=(6, 1.3 * len(forces) + 0.4), squeeze=False)
    colors = {"hidden": "k", "initial (k = 1)": "#9ecae1", "learned": "#de2d26"}
    for index, (ax, load) in enumerate(zip(axes[:, 0], forces)):
        for row, (label, positions) in enumerate(chains.items()):
            y = len(chains) - 1 - row
            for center in positions[index]:
                ax.add_patch(patches.Rectangle((center - WIDTH / 2, y - 0.3), WIDTH, 0.6,
                                               color=colors.get(label, "gray"), alpha=0.85))
            ax.text(-0.02, y, label, ha="right", va="center", fontsize=7)
        ax.axvline(0, color="gray", lw=3)
        ax.axvline(LENGTH, color="gray", lw=3)
        ax.set_xlim(-0.25, LENGTH + 0.02)
        ax.set_ylim(-0.6, len(chains) - 0.4)
        ax.set_yticks([])
        ax.set_title("load " + np.array2string(load, precision=2, floatmode="fixed"), fontsize=8)
    axes[-1, 0].set_xlabel("position")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(size: RunSize, output_dir: pathlib.Path, model_path: pathlib.Path, data_dir: pathlib.Path | None) -> float:
    """Trains, draws and saves; returns the final test loss."""
    builder, train, test = pipeline.start_run(SpringEquilibria, size, BATCH_SIZE, SHUFFLE_SEED, data_dir)
    initial_model, model = make_model(), make_model()
    _, final_test_loss = fit_and_save(model, train, test, epochs=size.epochs, output_dir=output_dir,
                                      model_path=model_path, ylabel="mean squared error of the positions",
                                      ratio_format=".1e")
    forces = pipeline.arrays(builder, f"test[:{PICTURED_LOADS}]")["forces"].astype(np.float64)
    draw_blocks(output_dir / "blocks.png", forces, {
        "hidden": resting_positions(forces),
        "initial (k = 1)": np.asarray(initial_model(forces)),
        "learned": np.asarray(model(forces)),
    })

    learned = model.get_layer("chain").stiffness()
    print(f"stiffness constants: learned {np.round(learned, 3)}, hidden {HIDDEN_STIFFNESS}")
    print(f"wrote {output_dir}/loss.png and blocks.png; model: {model_path}")
    return final_test_loss


def main(argv: list[str] | None = None) -> float:
    args = recipe_parser("stiffness", __doc__.split("\n\n")[0]).parse_args(argv)
    size = QUICK_RUN if args.quick else FULL_RUN
    return run(size, args.output_dir, args.model_path, args.data_dir)


if __name__ == "__main__":
    main()

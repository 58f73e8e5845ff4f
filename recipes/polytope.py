"""Learning a polytope from projections onto it, the Keras way.

The cvxpylayers tutorial's "General Polytope Projections": points x ~ N(0, I)
are projected onto a hidden polytope {y : G y <= h} in the plane (10
half-spaces, G ~ U(-4, 4), h = G z0 + s0 with z0 = s0 = 0.5), and a model
holding a `PolytopeProjection` with a random initial polytope (h tied to the
same z0 and s0) learns G from the pairs (x, y) with `model.fit`: Adam 1e-2,
batches of 32, mean squared error. The tutorial draws G with torch's
generator; this recipe draws it with numpy's, so the polytopes differ.

Run:

    python -m recipes.polytope [--quick] [--output-dir DIR] [--model-path PATH]

It writes to the output directory (default recipes/output/polytope/) the
loss curve (loss.png), one frame of the true against the learned polytope
per epoch (frames/frame_XXXX.png) and their animation (polytope.gif); it
prints the final test loss and saves the trained model to
saved_models/polytope.keras.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib

import keras
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from keras_optlayers.layers.polytope_projection import PolytopeProjection  # noqa: E402

DIM = 2
NUM_CONSTRAINTS = 10
INTERIOR_POINT = 0.5  # z0, every coordinate
SLACK = 0.5  # s0, every coordinate
TRUE_POLYTOPE_SEED = 6
INITIAL_POLYTOPE_SEED = 22
DATA_SEED = 0

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT_DIR = REPO_ROOT / "recipes" / "output" / "polytope"
DEFAULT_MODEL_PATH = REPO_ROOT / "saved_models" / "polytope.keras"


@dataclasses.dataclass(frozen=True)
class RunSize:
    num_train: int
    num_test: int
    epochs: int


FULL_RUN = RunSize(num_train=1024, num_test=512, epochs=30)  # 960 steps of 32
QUICK_RUN = RunSize(num_train=256, num_test=128, epochs=3)  # 24 steps of 32


def polytope_layer(solver: str | None, G_initializer, name: str, trainable: bool = True) -> PolytopeProjection:
    """A projection onto {y : G y <= G z0 + s0}, the tutorial's tied offsets."""
    return PolytopeProjection(
        NUM_CONSTRAINTS,
        offset="interior_point",
        interior_point=INTERIOR_POINT,
        slack=SLACK,
        G_initializer=G_initializer,
        solver=solver,
        trainable=trainable,
        name=name,
    )


def make_data(size: RunSize, solver: str | None):
    """Inputs x ~ N(0, I) and their projections onto the hidden polytope."""
    rng = np.random.default_rng(TRUE_POLYTOPE_SEED)
    G_true = rng.uniform(-4.0, 4.0, size=(NUM_CONSTRAINTS, DIM)).astype("float32")
    true_projection = polytope_layer(
        solver, keras.initializers.Constant(G_true), name="true_polytope", trainable=False)
    x = np.random.default_rng(DATA_SEED).standard_normal((size.num_train + size.num_test, DIM))
    y = np.asarray(true_projection(x.astype("float32")))
    split = size.num_train
    return true_projection, (x[:split], y[:split]), (x[split:], y[split:])


def make_model(solver: str | None) -> keras.Model:
    model = keras.Sequential([
        keras.Input((DIM,)),
        polytope_layer(
            solver, keras.initializers.RandomUniform(-4.0, 4.0, seed=INITIAL_POLYTOPE_SEED), name="polytope"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def draw_polytopes(path: pathlib.Path, true_layer, learned_layer, points: np.ndarray, title: str) -> None:
    """Saves a plot of the true polytope (filled) and the learned one (red)."""
    low, high = points.min(axis=0), points.max(axis=0)
    pad = 0.3 * (high - low).max() + 0.1
    u = np.linspace(low[0] - pad, high[0] + pad, 300)
    v = np.linspace(low[1] - pad, high[1] + pad, 300)
    grid = np.stack(np.meshgrid(u, v), axis=-1)  # (300, 300, 2)

    def violation(layer):  # max_i (G_i p - h_i): <= 0 exactly inside
        G, h = (np.asarray(t) for t in layer.polytope())
        return (grid @ G.T - h).max(axis=-1)

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.contourf(u, v, violation(true_layer), levels=[-np.inf, 0.0], colors=["#9ecae1"])
    ax.contour(u, v, violation(true_layer), levels=[0.0], colors=["#3182bd"], linewidths=2)
    ax.contour(u, v, violation(learned_layer), levels=[0.0], colors=["#de2d26"], linewidths=2)
    ax.scatter(points[:, 0], points[:, 1], s=4, c="k", alpha=0.4)
    ax.set_title(title)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


class PolytopeFrames(keras.callbacks.Callback):
    """Draws the true against the learned polytope before training and after each epoch."""

    def __init__(self, frame_dir: pathlib.Path, true_layer, points: np.ndarray, steps_per_epoch: int):
        super().__init__()
        self.frame_dir = frame_dir
        self.true_layer = true_layer
        self.points = points
        self.steps_per_epoch = steps_per_epoch
        self.paths: list[pathlib.Path] = []

    def _draw(self, step: int) -> None:
        path = self.frame_dir / f"frame_{step:04d}.png"
        draw_polytopes(path, self.true_layer, self.model.get_layer("polytope"), self.points,
                       f"step {step}: true (blue) and learned (red)")
        self.paths.append(path)

    def on_train_begin(self, logs=None):
        self._draw(0)

    def on_epoch_end(self, epoch, logs=None):
        self._draw((epoch + 1) * self.steps_per_epoch)


def save_animation(frames: list[pathlib.Path], path: pathlib.Path) -> None:
    images = [Image.open(frame).convert("RGB") for frame in frames]
    # Hold the last frame so the loop shows where training ended.
    durations = [300] * (len(images) - 1) + [1500]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)


def save_loss_curve(history: keras.callbacks.History, initial_test_loss: float, steps_per_epoch: int,
                    path: pathlib.Path) -> None:
    steps = steps_per_epoch * np.arange(len(history.history["loss"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps[1:], history.history["loss"], marker="o", label="training (epoch mean)")
    ax.plot(steps, [initial_test_loss, *history.history["val_loss"]], marker="o", label="test")
    ax.set_yscale("log")
    ax.set_xlabel("step (batches of 32)")
    ax.set_ylabel("mean squared error")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(size: RunSize, output_dir: pathlib.Path, model_path: pathlib.Path, solver: str | None) -> float:
    """Trains, draws and saves; returns the final test loss."""
    keras.utils.set_random_seed(DATA_SEED)  # the shuffling in fit
    frame_dir = output_dir / "frames"
    frame_dir.mkdir(parents=True, exist_ok=True)
    for old_frame in frame_dir.glob("frame_*.png"):
        old_frame.unlink()

    true_layer, (x_train, y_train), (x_test, y_test) = make_data(size, solver)
    model = make_model(solver)
    initial_test_loss = float(model.evaluate(x_test, y_test, batch_size=256, verbose=0))
    steps_per_epoch = -(-size.num_train // 32)
    frames = PolytopeFrames(frame_dir, true_layer, y_test, steps_per_epoch)
    history = model.fit(x_train, y_train, batch_size=32, epochs=size.epochs,
                        validation_data=(x_test, y_test), callbacks=[frames])
    final_test_loss = float(model.evaluate(x_test, y_test, batch_size=256, verbose=0))

    save_loss_curve(history, initial_test_loss, steps_per_epoch, output_dir / "loss.png")
    save_animation(frames.paths, output_dir / "polytope.gif")
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(model_path)

    print(f"initial test loss (MSE): {initial_test_loss:.6f}")
    print(f"final test loss (MSE): {final_test_loss:.6f} "
          f"({initial_test_loss / final_test_loss:.1f}x lower after {size.epochs * steps_per_epoch} steps)")
    print(f"wrote {output_dir}/loss.png, {len(frames.paths)} frames and polytope.gif; model: {model_path}")
    return final_test_loss


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run, for tests")
    parser.add_argument("--output-dir", type=pathlib.Path, default=DEFAULT_OUTPUT_DIR)
    parser.add_argument("--model-path", type=pathlib.Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--solver", default="auto",
                        help='"auto" (the QP solver) or a solver name such as "SCS"')
    args = parser.parse_args(argv)
    solver = None if args.solver == "auto" else args.solver
    run(QUICK_RUN if args.quick else FULL_RUN, args.output_dir, args.model_path, solver)


if __name__ == "__main__":
    main()

"""Pictures the recipes share: loss curves and GIF animations."""

from __future__ import annotations

import pathlib
from typing import Callable, Sequence

import keras
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image


def save_animation(frames: Sequence[pathlib.Path], path: pathlib.Path, frame_ms: int = 300) -> None:
    """A looping GIF of the PNG frames, holding the last one so the loop shows where it ended."""
    images = [Image.open(frame).convert("RGB") for frame in frames]
    durations = [frame_ms] * (len(images) - 1) + [1500]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)


def save_loss_curve(path: pathlib.Path, curves: dict[str, tuple[Sequence[float], Sequence[float]]],
                    xlabel: str, ylabel: str, log_scale: bool = True) -> None:
    """One line per curve: {label: (x values, y values)}."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (xs, ys) in curves.items():
        ax.plot(np.asarray(xs), np.asarray(ys), marker="o" if len(xs) <= 40 else None, label=label)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_fit_curves(path: pathlib.Path, history: keras.callbacks.History, initial_test_loss: float,
                    ylabel: str) -> None:
    """The epoch-mean training loss and the test loss (from before the first epoch) of a `model.fit`."""
    epochs = np.arange(len(history.history["loss"]) + 1)
    save_loss_curve(path, {
        "training (epoch mean)": (epochs[1:], history.history["loss"]),
        "test": (epochs, [initial_test_loss, *history.history["val_loss"]]),
    }, xlabel="epoch", ylabel=ylabel)


def fit_and_save(model: keras.Model, train, test, *, epochs: int, output_dir: pathlib.Path,
                 model_path: pathlib.Path, ylabel: str, ratio_format: str = ".0f") -> tuple[float, float]:
    """`model.fit` with the test loss before and after: loss.png, the saved model, the two losses printed.

    Returns (initial, final) test losses.
    """
    initial = float(model.evaluate(test, verbose=0))
    history = model.fit(train, epochs=epochs, validation_data=test)
    final = float(model.evaluate(test, verbose=0))
    output_dir.mkdir(parents=True, exist_ok=True)
    save_fit_curves(output_dir / "loss.png", history, initial, ylabel=ylabel)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(model_path)
    print(f"initial test loss (MSE): {initial:.3e}")
    print(f"final test loss (MSE): {final:.3e} ({initial / final:{ratio_format}}x lower)")
    return initial, final


class EpochFrames(keras.callbacks.Callback):
    """Draws a frame before training and after each epoch: `draw(model, path, step)`.

    Frames go to `frame_dir/frame_XXXX.png` (XXXX: the training step); old
    frames there are removed first. `paths` lists the frames drawn, in order.
    """

    def __init__(self, frame_dir: pathlib.Path, draw: Callable[[keras.Model, pathlib.Path, int], None],
                 steps_per_epoch: int):
        super().__init__()
        self.frame_dir = frame_dir
        self.draw = draw
        self.steps_per_epoch = steps_per_epoch
        self.paths: list[pathlib.Path] = []

    def _draw(self, step: int) -> None:
        path = self.frame_dir / f"frame_{step:04d}.png"
        self.draw(self.model, path, step)
        self.paths.append(path)

    def on_train_begin(self, logs=None):
        self.frame_dir.mkdir(parents=True, exist_ok=True)
        for old_frame in self.frame_dir.glob("frame_*.png"):
            old_frame.unlink()
        self._draw(0)

    def on_epoch_end(self, epoch, logs=None):
        self._draw((epoch + 1) * self.steps_per_epoch)


def fit_animated(model: keras.Model, train, test, *, initial: float, epochs: int, steps_per_epoch: int,
                 batch_size: int, draw: Callable, output_dir: pathlib.Path, gif_name: str,
                 model_path: pathlib.Path, loss_format: str = ".3e", ratio_format: str = ".0f") -> float:
    """The supervised recipes' run: fit with a frame per epoch, loss curve, GIF, saved model, printout.

    `initial` is the test loss before training; returns the final one.
    """
    frames = EpochFrames(output_dir / "frames", draw, steps_per_epoch)
    history = model.fit(train, epochs=epochs, validation_data=test, callbacks=[frames])
    final = float(model.evaluate(test, verbose=0))
    steps = steps_per_epoch * np.arange(epochs + 1)
    save_loss_curve(output_dir / "loss.png", {
        "training (epoch mean)": (steps[1:], history.history["loss"]),
        "test": (steps, [initial, *history.history["val_loss"]]),
    }, xlabel=f"step (batches of {batch_size})", ylabel="mean squared error")
    save_animation(frames.paths, output_dir / gif_name)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(model_path)
    print(f"initial test loss (MSE): {initial:{loss_format}}")
    print(f"final test loss (MSE): {final:{loss_format}} "
          f"({initial / final:{ratio_format}}x lower after {epochs * steps_per_epoch} steps)")
    print(f"wrote {output_dir}/loss.png, {len(frames.paths)} frames and {gif_name}; model: {model_path}")
    return final

"""Pictures the recipes share: loss curves and GIF animations."""

from __future__ import annotations

import pathlib
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


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

"""Data poisoning: moving training points to hurt a logistic regression.

The cvxpylayers paper's first application (Agrawal et al. 2019, §6): fitting
a logistic regression is a convex problem of the training points,

    θ*, b* = argmin  (1/N) Σ_i log(1 + exp(-y_i (x_iᵀθ + b))) + 0.01 ||θ||²,

so as a `CvxpyLayer` with the training points X as its parameter, the test
loss of the fitted model can be differentiated with respect to every
training point. The gradient says which points an attacker should move,
and where: it is largest for the points that hold up the decision boundary.
The attack then takes normalized gradient-ascent steps on X, each point kept
within a radius of where it was, and watches the test loss rise (a
`keras.utils.Progbar` shows the progress). Data: the TFDS set
`poisoning_points` (two Gaussian classes in the plane).

The paper's Figure 1 is gradients.png here: the training points, the
boundary fitted to them, the boundary that best fits the test set, and each
point's gradient of the test loss. The paper reports no number for it; it
states the attack x_i + 0.01 sign(∇ᵢ) and its first-order prediction of the
test loss's increase, 0.01 Σᵢ ||∇ᵢ||₁, which this recipe evaluates against
the increase measured by refitting. The paper regularizes with an elastic
net; this recipe with a ridge term, and trains on 60 points, not 30.

Run:

    python -m recipes.data_poisoning [--quick] [--output-dir DIR] [--model-path PATH] [--data-dir DIR]

It writes to the output directory (default recipes/output/data_poisoning/)
gradients.png (each training point's gradient of the test loss, as in the
paper's figure), attack.gif (the points moving and the boundary turning)
and test_loss.png; prints the test loss and accuracy before and after; and
saves the clean and poisoned points and both fits to
saved_models/data_poisoning.npz.
"""

from __future__ import annotations

import dataclasses
import pathlib

import cvxpy as cp
import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from keras_optlayers import CvxpyLayer
from recipes import pipeline
from recipes.cli import recipe_parser
from recipes.datasets.poisoning_points import DIM, PoisoningPoints
from recipes.figures import save_animation, save_loss_curve

RIDGE = 0.01
RADIUS = 1.0  # how far the attacker may move each training point
STEP = 0.1  # the largest move of one step, given to the point with the largest gradient
PAPER_STEP = 0.01  # the paper's one-step attack moves every coordinate this far


@dataclasses.dataclass(frozen=True)
class AttackSize:
    steps: int
    frame_every: int


FULL_ATTACK = AttackSize(steps=40, frame_every=2)
QUICK_ATTACK = AttackSize(steps=3, frame_every=1)


def logistic_regression_layer(labels: np.ndarray) -> CvxpyLayer:
    """X (N, 2) -> (θ (2,), b) fitted to X and the fixed labels (±1)."""
    X = cp.Parameter((len(labels), DIM), name="X")
    theta, bias = cp.Variable(DIM, name="theta"), cp.Variable(name="bias")
    margins = cp.multiply(labels, X @ theta + bias)
    problem = cp.Problem(cp.Minimize(cp.sum(cp.logistic(-margins)) / len(labels) + RIDGE * cp.sum_squares(theta)))
    return CvxpyLayer(problem, parameters=[X], variables=[theta, bias])


def mean_logistic_loss(theta, bias, x, labels):
    return tf.reduce_mean(tf.math.softplus(-labels * (tf.linalg.matvec(x, theta) + bias)))


def accuracy(theta, bias, x, labels) -> float:
    return float(np.mean(np.sign(x @ np.asarray(theta) + float(bias)) == labels))


def test_loss_and_gradient(layer, X, x_test, y_test):
    """The fitted model's test loss and its gradient with respect to the training points."""
    with tf.GradientTape() as tape:
        tape.watch(X)
        theta, bias = layer(X)
        loss = mean_logistic_loss(theta, bias, x_test, y_test)
    return loss, tape.gradient(loss, X), theta, bias


def paper_attack(layer, X, gradient, x_test, y_test, loss) -> tuple[float, float]:
    """The paper's one-step attack X + 0.01 sign(∇): (predicted, measured) increase of the test loss.

    The prediction is first order, 0.01 Σᵢ ||∇ᵢ||₁; the measurement refits
    the model to the moved points.
    """
    predicted = PAPER_STEP * float(tf.reduce_sum(tf.abs(gradient)))
    theta, bias = layer(X + PAPER_STEP * tf.sign(gradient))
    return predicted, float(mean_logistic_loss(theta, bias, x_test, y_test) - loss)


def best_test_fit(x_test: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, float]:
    """(θ, b) of the same regression fitted to the test set: the boundary the attacker pulls away from."""
    theta, bias = cp.Variable(DIM), cp.Variable()
    margins = cp.multiply(y_test, x_test @ theta + bias)
    cp.Problem(cp.Minimize(cp.sum(cp.logistic(-margins)) / len(y_test) + RIDGE * cp.sum_squares(theta))).solve(
        solver=cp.CLARABEL)
    return theta.value, float(bias.value)


def draw_points(ax, X, labels, theta, bias, color="#de2d26", label=None) -> None:
    """Points by class and the decision boundary xᵀθ + b = 0 over the plot's range."""
    ax.scatter(*X[labels > 0].T, s=14, c="#3182bd", edgecolors="k", linewidths=0.3)
    ax.scatter(*X[labels < 0].T, s=14, c="#fd8d3c", edgecolors="k", linewidths=0.3)
    u = np.linspace(-4, 4, 2)
    theta = np.asarray(theta)
    ax.plot(u, -(theta[0] * u + float(bias)) / theta[1], color=color, lw=1.5, label=label)
    ax.set_xlim(-4, 4)
    ax.set_ylim(-4, 4)
    ax.set_aspect("equal")


def draw_gradients(path: pathlib.Path, X, labels, gradient, theta, bias, test_fit) -> None:
    """The paper's Figure 1: each training point with a segment along its gradient of the
    test loss (longest 0.8), the boundary fitted to the training points and the test set's."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    draw_points(ax, X, labels, theta, bias, color="#de2d26", label="fitted to the training points")
    u = np.linspace(-4, 4, 2)
    ax.plot(u, -(test_fit[0][0] * u + test_fit[1]) / test_fit[0][1], color="#3182bd", ls="--", lw=1.5,
            label="fitted to the test set")
    segments = 0.8 * gradient / np.linalg.norm(gradient, axis=1).max()
    for start, move in zip(X, segments, strict=True):
        ax.plot([start[0], start[0] + move[0]], [start[1], start[1] + move[1]], color="k", lw=1)
    ax.set_title("gradient of the test loss\nwith respect to each training point", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def draw_attack_frame(path: pathlib.Path, X_clean, X, labels, clean_fit, fit, step: int, test_loss: float) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for start, end in zip(X_clean, X, strict=True):
        ax.plot([start[0], end[0]], [start[1], end[1]], color="grey", lw=0.8)
    u = np.linspace(-4, 4, 2)
    theta_clean, bias_clean = (np.asarray(t) for t in clean_fit)
    ax.plot(u, -(theta_clean[0] * u + bias_clean) / theta_clean[1], "k--", lw=1, label="clean fit")
    draw_points(ax, X, labels, *fit, label="poisoned fit")
    ax.set_title(f"attack step {step}: test loss {test_loss:.3f}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def project_to_balls(X, centers, radius: float):
    """Each row of X moved back to within `radius` of its center."""
    offsets = X - centers
    norms = tf.norm(offsets, axis=1, keepdims=True)
    return centers + offsets * tf.minimum(1.0, radius / tf.maximum(norms, 1e-12))


def run(attack: AttackSize, output_dir: pathlib.Path, model_path: pathlib.Path,
        data_dir: pathlib.Path | None) -> dict[str, tuple[float, float]]:
    """Attacks; returns {"test loss": (before, after), "paper's step": (predicted, measured increase)}."""
    builder = pipeline.prepared(PoisoningPoints, data_dir)
    train, test = pipeline.arrays(builder, "train"), pipeline.arrays(builder, "test")
    labels = train["label"].astype(np.float64)
    x_test, y_test = (tf.constant(test[key], tf.float64) for key in ("x", "label"))
    layer = logistic_regression_layer(labels)
    X_clean = tf.constant(train["x"], tf.float64)
    frame_dir = output_dir / "frames"
    frame_dir.mkdir(parents=True, exist_ok=True)
    for old_frame in frame_dir.glob("frame_*.png"):
        old_frame.unlink()

    X = X_clean
    losses, frames = [], []
    progress = keras.utils.Progbar(attack.steps, stateful_metrics=["test_loss", "test_accuracy"])
    for step in range(attack.steps + 1):
        loss, gradient, theta, bias = test_loss_and_gradient(layer, X, x_test, y_test)
        losses.append(float(loss))
        if step == 0:
            clean_fit = (theta, bias)
            clean_accuracy = accuracy(theta, bias, test["x"], test["label"])
            draw_gradients(output_dir / "gradients.png", train["x"], labels, gradient.numpy(), theta, bias,
                           best_test_fit(test["x"], test["label"]))
            predicted, measured = paper_attack(layer, X, gradient, x_test, y_test, loss)
        if step % attack.frame_every == 0 or step == attack.steps:
            frames.append(frame_dir / f"frame_{step:04d}.png")
            draw_attack_frame(frames[-1], train["x"], X.numpy(), labels, clean_fit, (theta, bias), step, float(loss))
        if step == attack.steps:
            break
        largest = tf.reduce_max(tf.norm(gradient, axis=1))
        X = project_to_balls(X + STEP * gradient / largest, X_clean, RADIUS)
        progress.update(step + 1, values=[("test_loss", float(loss)),
                                          ("test_accuracy", accuracy(theta, bias, test["x"], test["label"]))])
    poisoned_accuracy = accuracy(theta, bias, test["x"], test["label"])

    save_animation(frames, output_dir / "attack.gif", frame_ms=200)
    save_loss_curve(output_dir / "test_loss.png", {"test loss of the fit to the poisoned points": (
        np.arange(attack.steps + 1), losses)}, xlabel="attack step", ylabel="mean logistic loss", log_scale=False)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(model_path, x_clean=train["x"], x_poisoned=X.numpy(), labels=labels,
             theta_clean=np.asarray(clean_fit[0]), bias_clean=np.asarray(clean_fit[1]),
             theta_poisoned=np.asarray(theta), bias_poisoned=np.asarray(bias), radius=RADIUS)

    print(f"test loss: {losses[0]:.4f} -> {losses[-1]:.4f}; test accuracy: {clean_accuracy:.3f} -> "
          f"{poisoned_accuracy:.3f} after {attack.steps} steps (each training point moved at most {RADIUS})")
    print(f"the paper's one-step attack (every coordinate moved {PAPER_STEP} along its gradient's sign): test loss "
          f"up by {measured:.5f}; its first-order prediction 0.01 Σ||∇ᵢ||₁ = {predicted:.5f}")
    print(f"wrote gradients.png, attack.gif and test_loss.png to {output_dir}; points and fits: {model_path}")
    return {"test loss": (losses[0], losses[-1]), "paper's step": (predicted, measured)}


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    args = recipe_parser("data_poisoning", __doc__.split("\n\n")[0], model_suffix=".npz").parse_args(argv)
    return run(QUICK_ATTACK if args.quick else FULL_ATTACK, args.output_dir, args.model_path, args.data_dir)


if __name__ == "__main__":
    main()

"""The tutorial's tour of activations as optimization layers, in Keras.

Part one: the variational ReLU, sigmoid and softmax (CVXPY forms from
`keras_optlayers.core.problems`, run through `CvxpyLayer`) beside Keras' own
activations, values and derivatives, on the tutorial's inputs: 201 and 100
points of [-5, 5], and for the softmax the 5 numbers torch's generator gives
after `torch.manual_seed(7)`. Part two: sparsemax, csoftmax (u = 1/2),
csparsemax (u = 1/2) and LML (k = 2) on the tutorial's 4 numbers
(`torch.manual_seed(0); torch.randn(4)`), each by the library's fast layer
and by `CvxpyLayer` on the layer's CVXPY form, beside the outputs the
tutorial printed (SCS at its default tolerance: they differ from the exact
answers in the 6th or 7th digit). Each function and its derivative is
plotted; the projections along the slice where the first input varies.

No training, so no data set: run

    python -m recipes.activations [--quick] [--output-dir DIR]

It writes relu.png, sigmoid.png, softmax.png and projections.png to the
output directory (default recipes/output/activations/) and prints the
values and the largest differences. `--quick` uses coarser grids.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from keras_optlayers import LML, CSoftmax, CSparsemax, CvxpyLayer, Sparsemax
from keras_optlayers.core.problems import ProblemSpec, relu_problem, sigmoid_problem, softmax_problem
from recipes.cli import recipe_parser

# torch.manual_seed(7); torch.randn(5), as the tutorial prints it.
SOFTMAX_INPUT = np.array([-0.1467951, 0.7861413, 0.94682163, -1.114344, 1.6907902])
# The tutorial's softmax output and the gradient of its last entry.
TUTORIAL_SOFTMAX = np.array([0.07582434, 0.1927426, 0.22633949, 0.02881426, 0.47627935])
TUTORIAL_SOFTMAX_GRADIENT = np.array([-0.03611356, -0.09179932, -0.10780083, -0.01372364, 0.24943732])
# torch.manual_seed(0); torch.randn(4).
PROJECTION_INPUT = np.array([1.5409961, -0.2934289, -2.1787894, 0.56843126])
UPPER = 0.5  # u = 1/k with k = 2
TOP_K = 2


@dataclasses.dataclass(frozen=True)
class Projection:
    name: str
    fast_layer: keras.layers.Layer
    tutorial_output: np.ndarray  # as the tutorial printed it


PROJECTIONS = (
    Projection("sparsemax", Sparsemax(), np.array([9.8628241e-01, -3.9884393e-10, -8.0997226e-10, 1.3717593e-02])),
    Projection("csoftmax", CSoftmax(upper=UPPER), np.array([0.5000002, 0.1420723, 0.02156317, 0.33636498])),
    Projection("csparsemax", CSparsemax(upper=UPPER), np.array([5.000000e-01, 3.033220e-11, -6.598309e-12, 5.000000e-01])),
    Projection("lml", LML(k=TOP_K), np.array([0.8254717, 0.43031406, 0.10285254, 0.64136344])),
)


def cvxpy_layer(spec: ProblemSpec) -> CvxpyLayer:
    return CvxpyLayer(spec.problem, parameters=spec.parameters, variables=spec.variables)


def values_and_derivatives(function: Callable[[tf.Tensor], tf.Tensor], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(x) and the gradient of sum(f(x)): for an elementwise f, f'(x) entry by entry."""
    x = tf.constant(x, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = function(x)
        total = tf.reduce_sum(y)
    return y.numpy(), tape.gradient(total, x).numpy()


def compare_elementwise(name: str, keras_function, spec_for_size, num_points: int, output_dir: pathlib.Path) -> float:
    """The variational form against Keras' activation on num_points of [-5, 5]; plots both."""
    x = np.linspace(-5.0, 5.0, num_points)
    variational = cvxpy_layer(spec_for_size(num_points))
    y_keras, dy_keras = values_and_derivatives(keras_function, x)
    y_cvx, dy_cvx = values_and_derivatives(lambda t: variational(t)[0], x)
    # The ReLU has a kink at 0, where any number in [0, 1] is a derivative:
    # Keras takes 0, the implicit derivative of the variational form another.
    smooth = np.abs(x) > 1e-12 if name == "relu" else np.ones_like(x, dtype=bool)
    value_gap = np.abs(y_cvx - y_keras).max()
    derivative_gap = np.abs(dy_cvx - dy_keras)[smooth].max()
    print(f"{name}: max |variational - keras| over {num_points} points: "
          f"value {value_gap:.2e}, derivative {derivative_gap:.2e}"
          + ("" if smooth.all() else f" (away from 0; at 0: keras {dy_keras[~smooth][0]:.3f}, "
                                     f"variational {dy_cvx[~smooth][0]:.3f})"))

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, keras_values, cvx_values, label in ((axes[0], y_keras, y_cvx, "$f(x)$"),
                                                (axes[1], dy_keras, dy_cvx, "$f'(x)$")):
        ax.plot(x, keras_values, lw=3, alpha=0.5, label=f"keras.activations.{name}")
        ax.plot(x, cvx_values, "k--", lw=1, label="variational (CvxpyLayer)")
        ax.set_xlabel("$x$")
        ax.set_ylabel(label)
    axes[0].set_title(f"The {name}")
    axes[1].set_title("Its derivative")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output_dir / f"{name}.png", dpi=80)
    plt.close(fig)
    return max(value_gap, derivative_gap)


def compare_softmax(output_dir: pathlib.Path) -> float:
    """The tutorial's softmax printout, by Keras and by the variational form."""
    variational = cvxpy_layer(softmax_problem(len(SOFTMAX_INPUT)))
    gaps = []
    results = {}
    for label, function in (("keras.activations.softmax", keras.activations.softmax),
                            ("variational (CvxpyLayer)", lambda t: variational(t)[0])):
        x = tf.constant(SOFTMAX_INPUT, tf.float64)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = function(x)
            last = y[4]
        gradient = tape.gradient(last, x).numpy()
        results[label] = y.numpy(), gradient
        print(f"softmax, {label}:\n  Input: {SOFTMAX_INPUT}\n  Output: {y.numpy()} (sum {float(tf.reduce_sum(y)):.6f})"
              f"\n  Gradient of output[4]: {gradient}")
    (y_keras, g_keras), (y_cvx, g_cvx) = results.values()
    gaps = [np.abs(y_cvx - y_keras).max(), np.abs(g_cvx - g_keras).max()]
    print(f"softmax: max |variational - keras|: output {gaps[0]:.2e}, gradient {gaps[1]:.2e}; "
          f"max |keras - tutorial's printout|: output {np.abs(y_keras - TUTORIAL_SOFTMAX).max():.1e}, "
          f"gradient {np.abs(g_keras - TUTORIAL_SOFTMAX_GRADIENT).max():.1e}")

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    positions = np.arange(len(SOFTMAX_INPUT))
    for ax, index, title in ((axes[0], 0, "softmax(x)"), (axes[1], 1, "gradient of softmax(x)[4]")):
        ax.bar(positions - 0.2, results["keras.activations.softmax"][index], width=0.4, label="Keras")
        ax.bar(positions + 0.2, results["variational (CvxpyLayer)"][index], width=0.4, label="variational")
        ax.set_xticks(positions)
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output_dir / "softmax.png", dpi=80)
    plt.close(fig)
    return max(gaps)


def slice_values_and_derivatives(layer: Callable, first_inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y(x) and dy/dx_0 where x is the tutorial's input with x_0 replaced by each value given."""
    x = np.tile(PROJECTION_INPUT, (len(first_inputs), 1))
    x[:, 0] = first_inputs
    x = tf.constant(x, tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = layer(x)
        outputs = [tf.reduce_sum(y[:, j]) for j in range(y.shape[1])]
    # Example b's y depends on its own x only, so the gradient of a column sum
    # holds each example's row of its Jacobian: one backward pass per output.
    rows = [tape.gradient(output, x).numpy() for output in outputs]
    return y.numpy(), np.stack(rows, axis=1)[:, :, 0]


def compare_projections(num_points: int, output_dir: pathlib.Path) -> float:
    """The four projections on the tutorial's input, fast against CVXPY; plotted along x_0."""
    n = len(PROJECTION_INPUT)
    x0_values = np.linspace(-3.0, 3.0, num_points)
    worst_gap = 0.0  # values only: the CVXPY forms' derivatives carry SCS's error
    fig, axes = plt.subplots(2, len(PROJECTIONS), figsize=(3.2 * len(PROJECTIONS), 5.6), sharex=True)
    for column, projection in enumerate(PROJECTIONS):
        reference = cvxpy_layer(projection.fast_layer.cvxpy_problem(n))
        x = tf.constant(PROJECTION_INPUT[None], tf.float64)
        fast = projection.fast_layer(x).numpy()[0]
        cvx = reference(x)[0].numpy()[0]
        gap = np.abs(fast - cvx).max()
        print(f"{projection.name}:\n  Input: {PROJECTION_INPUT}\n  fast layer: {fast}\n  CvxpyLayer: {cvx}"
              f"\n  tutorial:   {projection.tutorial_output}\n  max |fast - CvxpyLayer| {gap:.1e}, "
              f"max |fast - tutorial| {np.abs(fast - projection.tutorial_output).max():.1e}")

        y_fast, dy_fast = slice_values_and_derivatives(projection.fast_layer, x0_values)
        y_cvx, dy_cvx = slice_values_and_derivatives(lambda t, layer=reference: layer(t)[0], x0_values)
        derivative_gap = np.abs(dy_fast - dy_cvx).max()
        print(f"  along x_0 in [-3, 3] ({num_points} points): max |fast - CvxpyLayer| value "
              f"{np.abs(y_fast - y_cvx).max():.1e}, derivative {derivative_gap:.1e}")
        worst_gap = max(worst_gap, gap, np.abs(y_fast - y_cvx).max())
        for row, (fast_curves, cvx_curves) in enumerate(((y_fast, y_cvx), (dy_fast, dy_cvx))):
            ax = axes[row, column]
            for j in range(n):
                ax.plot(x0_values, fast_curves[:, j], lw=3, alpha=0.5, color=f"C{j}", label=f"$y_{j}$")
                ax.plot(x0_values, cvx_curves[:, j], "--", lw=1, color="k")
            ax.axvline(PROJECTION_INPUT[0], color="grey", lw=0.5)
        axes[0, column].set_title(projection.name)
        axes[1, column].set_xlabel("$x_0$ (others fixed)")
    axes[0, 0].set_ylabel("$y(x)$")
    axes[1, 0].set_ylabel(r"$\partial y / \partial x_0$")
    axes[0, 0].legend(fontsize=7, title="fast (thick), CVXPY (dashed)", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(output_dir / "projections.png", dpi=80)
    plt.close(fig)
    return worst_gap


def run(output_dir: pathlib.Path, quick: bool) -> float:
    """Prints and plots every comparison; returns the largest gap found."""
    output_dir.mkdir(parents=True, exist_ok=True)
    # Eight small layers, each traced for a few shapes: TF's retracing warnings
    # would bury the printout, and say nothing about the numbers.
    tf.get_logger().setLevel("ERROR")
    relu_points, sigmoid_points, slice_points = (41, 20, 25) if quick else (201, 100, 121)
    gaps = [
        compare_elementwise("relu", keras.activations.relu, relu_problem, relu_points, output_dir),
        compare_elementwise("sigmoid", keras.activations.sigmoid, sigmoid_problem, sigmoid_points, output_dir),
        compare_softmax(output_dir),
        compare_projections(slice_points, output_dir),
    ]
    print(f"largest gap between a CVXPY form and Keras or a fast layer: {max(gaps):.1e}")
    print(f"wrote relu.png, sigmoid.png, softmax.png and projections.png to {output_dir}")
    return max(gaps)


def main(argv: list[str] | None = None) -> float:
    parser = recipe_parser("activations", __doc__.split("\n\n")[0], model_suffix=None)
    args = parser.parse_args(argv)
    return run(args.output_dir, args.quick)


if __name__ == "__main__":
    main()

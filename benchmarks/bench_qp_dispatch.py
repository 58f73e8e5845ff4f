"""Where the automatic choice should stop sending QPs to the native QP solver.

Problems whose only cone, as CVXPY writes them for a cone solver, is their
squared norm: the variational ReLU (min ‖y − x‖² s.t. y ≥ 0) and sparsemax
(the same on the simplex), n entries each, inputs uniform in [-5, 5]. Each
runs through `CvxpyLayer` with solver="QP" (the native solver, which
solves for the n entries once CVXPY's t = y − x is substituted out) and
solver="ECOS" (the host default for larger QPs, which sees ½‖t‖² as a
second-order cone), forward and backward inside a `tf.function`, timed in
turns. The table gives both times, ECOS / QP, and each one's largest error
against the closed form (np.maximum; sparsemax by sorting).

Usage (from the repository root):

    python benchmarks/bench_qp_dispatch.py [--sizes 50 100 200] [--batches 1 128] [--repeats 6]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from helpers import exact_sparsemax  # noqa: E402
from timing import interleaved_median_seconds  # noqa: E402

from keras_optlayers.core.problems import relu_problem, sparsemax_problem  # noqa: E402
from keras_optlayers.layers.cvxpy_layer import CvxpyLayer  # noqa: E402

PROBLEMS = {
    "ReLU": (relu_problem, lambda x: np.maximum(x, 0.0)),
    "sparsemax": (sparsemax_problem, exact_sparsemax),
}
SOLVERS = ("QP", "ECOS")


def forward_backward(layer: CvxpyLayer, inputs: tf.Tensor, n: int):
    """A `tf.function` returning the layer's output and the gradient of a fixed linear functional of it."""
    weights = tf.cos(tf.range(n, dtype=tf.float64))

    @tf.function
    def run():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            (output,) = layer(inputs)
            loss = tf.reduce_sum(output * weights)
        return output, tape.gradient(loss, inputs)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 128])
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    print("| problem | n | batch | QP (ms) | ECOS (ms) | ECOS / QP | QP error | ECOS error |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (make, exact) in PROBLEMS.items():
        for n in args.sizes:
            spec = make(n)
            for batch in args.batches:
                inputs = np.random.default_rng(0).uniform(-5.0, 5.0, (batch, n))
                tensor = tf.constant(inputs)
                runs, errors = {}, {}
                for solver in SOLVERS:
                    run = forward_backward(CvxpyLayer(spec.problem, spec.parameters, spec.variables, solver=solver), tensor, n)
                    output, _ = run()
                    errors[solver] = np.abs(output.numpy() - exact(inputs)).max()
                    runs[solver] = run
                seconds = interleaved_median_seconds(runs, args.repeats * (4 if batch < 16 else 1))
                print(f"| {name} | {n} | {batch} | {1e3 * seconds['QP']:.1f} | {1e3 * seconds['ECOS']:.1f} | "
                      f"{seconds['ECOS'] / seconds['QP']:.2f}x | {errors['QP']:.1e} | {errors['ECOS']:.1e} |", flush=True)


if __name__ == "__main__":
    main()

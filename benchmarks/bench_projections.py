"""Fast projection layers against the same problems through generic solvers.

For sparsemax, csparsemax, csoftmax and LML at batch 128, forward + backward
(gradient of a fixed random linear functional), float64:

* the fast layer (keras_optlayers.layers; eager call, compiled graph inside),
* the same CVXPY problem through keras_optlayers' `CvxpyLayer`,
* the same problem through cvxpylayers 0.1.9's TensorFlow layer (eager only),
* for sparsemax, a plain sort-based TF sparsemax with autodiff (in a tf.function).

Prints a markdown table of median times and ratios. The fast and the plain
sparsemax are timed in turns, so that their ratio holds on a loaded machine.
Usage:

    python benchmarks/bench_projections.py            # n = 100 and 1000
    python benchmarks/bench_projections.py --quick    # n = 100 only, fewer repeats
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import baselines  # noqa: E402
from timing import median_seconds  # noqa: E402

from keras_optlayers.layers.csoftmax import CSoftmax  # noqa: E402
from keras_optlayers.layers.csparsemax import CSparsemax  # noqa: E402
from keras_optlayers.layers.cvxpy_layer import CvxpyLayer  # noqa: E402
from keras_optlayers.layers.lml import LML  # noqa: E402
from keras_optlayers.layers.sparsemax import Sparsemax  # noqa: E402

BATCH = 128


@tf.function
def plain_sparsemax(x):
    """Textbook sort-and-threshold sparsemax; its gradient comes from autodiff."""
    z = tf.sort(x, axis=-1, direction="DESCENDING")
    ranks = tf.cast(tf.range(1, tf.shape(x)[-1] + 1), x.dtype)
    partial_sums = tf.cumsum(z, axis=-1)
    support = tf.reduce_sum(tf.cast(1 + ranks * z > partial_sums, tf.int32), axis=-1, keepdims=True)
    tau = (tf.gather(partial_sums, support - 1, batch_dims=1) - 1) / tf.cast(support, x.dtype)
    return tf.maximum(x - tau, 0)


def fast_layers(n: int) -> dict:
    """The benchmarked layers; bounds and k chosen so that constraints are active."""
    return {
        "sparsemax": Sparsemax(),
        "csparsemax": CSparsemax(upper=2.0 / n),
        "csoftmax": CSoftmax(upper=2.0 / n),
        "lml": LML(k=n // 10),
    }


def forward_backward(layer, x: tf.Tensor, weights: tf.Tensor) -> Callable[[], None]:
    """One call of y = layer(x) and d<w, y>/dx, as a function to time."""

    def run():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            if isinstance(y, (list, tuple)):
                y = y[0]
            functional = tf.reduce_sum(weights * tf.cast(y, weights.dtype))
        tape.gradient(functional, x).numpy()

    return run


def forward_backward_seconds(layer, x: tf.Tensor, weights: tf.Tensor, repeats: int, warm_up: bool = True) -> float:
    """Median wall time of y = layer(x) and d<w, y>/dx (after one warm-up call, unless told not to)."""
    return median_seconds(forward_backward(layer, x, weights), repeats, warm_up)


def interleaved_median_seconds(runs: list[Callable[[], None]], repeats: int) -> list[float]:
    """Median wall time of each run, timed in turns (a, b, a, b, ...) after one warm-up call each.

    On a machine shared with other work the load changes from second to
    second; taking turns exposes the runs to the same load, so their ratio
    stays meaningful where back-to-back medians would not.
    """
    for run in runs:
        run()
    seconds: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, samples in zip(runs, seconds):
            start = time.perf_counter()
            run()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in seconds]


def try_time(make_layer, x, weights, repeats):
    try:
        layer = make_layer()
        # Host-solver columns: tracing is negligible next to the solves, so no
        # warm-up; the native QP path compiles on its first call, so warm it up.
        warm_up = getattr(layer, "solver", None) == "QP"
        return forward_backward_seconds(layer, x, weights, repeats, warm_up=warm_up), ""
    except Exception as error:  # a baseline failing is a result, not a crash
        return float("nan"), f"{type(error).__name__}: {str(error).splitlines()[0][:60]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n = 100 only, fewer repeats")
    parser.add_argument("--repeats", type=int, default=20, help="repeats of the fast columns")
    parser.add_argument("--slow-repeats", type=int, default=3, help="repeats of the solver columns")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="problem sizes n (default 100 1000)")
    parser.add_argument("--skip-legacy", action="store_true", help="leave out cvxpylayers 0.1.9 (slowest column)")
    args = parser.parse_args()
    sizes = args.sizes or ([100] if args.quick else [100, 1000])
    slow_repeats = 1 if args.quick else args.slow_repeats
    # Loaded only when timed, so --skip-legacy runs without the installed baselines.
    legacy_layer = None if args.skip_legacy else baselines.cvxpylayers_tf_layer()
    rng = np.random.default_rng(0)

    def ms(seconds):
        return "n/a" if seconds is None else ("failed" if np.isnan(seconds) else f"{1e3 * seconds:.2f}")

    def ratio(slow, fast):
        return "n/a" if slow is None or np.isnan(slow) else f"{slow / fast:.2f}x"

    print(f"batch {BATCH}, float64, forward + backward, median ms "
          f"({args.repeats} repeats fast, {slow_repeats} solver)\n")
    print("| layer | n | fast (ms) | plain sort TF (ms) | CvxpyLayer (ms) | cvxpylayers 0.1.9 (ms) "
          "| fast / plain | CvxpyLayer / fast | 0.1.9 / fast |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    notes = []
    for n in sizes:
        x = tf.constant(rng.standard_normal((BATCH, n)))
        weights = tf.constant(rng.standard_normal((BATCH, n)))
        for name, layer in fast_layers(n).items():
            spec = layer.cvxpy_problem(n)
            if name == "sparsemax":
                fast, plain = interleaved_median_seconds(
                    [forward_backward(layer, x, weights), forward_backward(plain_sparsemax, x, weights)], args.repeats
                )
            else:
                fast, plain = forward_backward_seconds(layer, x, weights, args.repeats), None
            ours, ours_error = try_time(
                lambda spec=spec: CvxpyLayer(spec.problem, parameters=spec.parameters, variables=spec.variables),
                x, weights, slow_repeats,
            )
            legacy, legacy_error = (float("nan"), "skipped (--skip-legacy)") if args.skip_legacy else try_time(
                lambda spec=spec: legacy_layer(spec.problem, parameters=list(spec.parameters),
                                               variables=list(spec.variables)),
                x, weights, slow_repeats,
            )
            notes += [f"{name} n={n} {label}: {e}" for label, e in (("CvxpyLayer", ours_error), ("0.1.9", legacy_error)) if e]
            print(f"| {name} | {n} | {ms(fast)} | {ms(plain)} | {ms(ours)} | {ms(legacy)} "
                  f"| {ratio(fast, plain) if plain else 'n/a'} | {ratio(ours, fast)} | {ratio(legacy, fast)} |", flush=True)
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()

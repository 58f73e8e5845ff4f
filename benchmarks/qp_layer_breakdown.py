"""Where `CvxpyLayer(solver="QP")` spends its time beyond the QP solver itself.

The OptNet QP of `bench_qp.py` (n=10, 5 equalities, 5 inequalities), written
in CVXPY as ½‖Lᵀx‖² + qᵀx, forward and backward inside a `tf.function`, at
one batch size. Each row times a prefix of the layer's pipeline alone:

  * the affine maps: parameters -> the dense blocks of the canonical QP
    (`core/dense_blocks.py`);
  * the same, then the substitution of CVXPY's auxiliary variables
    (`ops/qp_reduction.py`) and the restore of the full solution from the
    reduced data;
  * `BatchedProblem._solve_qp`: all of the above around the solve;
  * the whole layer call;
  * `qp_solve` on P = LLᵀ given directly, the solver alone.

Timed in rounds (`timing.interleaved_median_seconds`); prints the medians
as a markdown table, in ms.

    python benchmarks/qp_layer_breakdown.py [--batch 128] [--repeats 30]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import bench_qp  # noqa: E402
from timing import interleaved_median_seconds  # noqa: E402

from keras_optlayers.layers.cvxpy_layer import CvxpyLayer  # noqa: E402
from keras_optlayers.ops import qp_reduction  # noqa: E402
from keras_optlayers.solvers.qp import qp_solve  # noqa: E402

NAMES = ["root", "q", "G", "h", "A", "b"]


def forward_backward(compute, args):
    """A no-argument callable: `compute(*args)` and the gradient of its outputs' sum, in a tf.function.

    The outputs are returned with the gradient: the gradient of a sum
    through linear maps does not need the forward values, and graph
    optimization would otherwise prune the forward pass it times.
    """

    @tf.function
    def run(*args):
        with tf.GradientTape() as tape:
            tape.watch(args)
            outputs = [t for t in tf.nest.flatten(compute(*args)) if t is not None]
            loss = tf.add_n([tf.reduce_sum(t) for t in outputs])
        return outputs, tape.gradient(loss, args)

    return lambda: run(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    options = parser.parse_args()
    data = bench_qp.random_qp(options.batch, 10, 5, 5, seed=options.batch + 10)
    problem, parameters, x = bench_qp._cvxpy_qp(10, 5, 5)
    layer = CvxpyLayer(problem, parameters=parameters, variables=[x], solver="QP")
    engine = layer.batched_problem
    block_maps = engine._blocks
    args = [tf.constant(data[name]) for name in NAMES]

    def dense_blocks(*args):
        return block_maps(engine._parameter_vector(list(args)))

    def substituted(*args):
        qp, restore = qp_reduction.reduced_qp(block_maps.layout, dense_blocks(*args))
        # Restore from the reduced data standing in for a solution: the same ops as after a solve.
        P, c, A, b, G, h = qp
        x_full, y_full = restore(c, tf.zeros_like(b), tf.zeros_like(h))
        return [t for t in qp if t is not None] + [x_full, y_full]

    P = tf.constant(data["P"])
    runs = {
        "affine maps to the dense blocks": forward_backward(dense_blocks, args),
        "+ auxiliary substitution and restore": forward_backward(substituted, args),
        "BatchedProblem._solve_qp": forward_backward(
            lambda *a: engine._solve_qp({"parameters": engine._parameter_vector(list(a))}, engine.settings)[:2], args),
        "CvxpyLayer call": forward_backward(lambda *a: layer(*a), args),
        "qp_solve, P given": forward_backward(lambda root, q, G, h, A, b: qp_solve(P, q, A, b, G, h), args),
    }
    seconds = interleaved_median_seconds(runs, options.repeats)
    print(f"| piece (OptNet QP, batch {options.batch}, fwd+bwd, tf.function) | median (ms) |")
    print("|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {1e3 * value:.2f} |")


if __name__ == "__main__":
    main()

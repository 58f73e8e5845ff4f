"""Benchmark: the native TF QP solver against qpth, cvxpylayers 0.1.9 (TF) and CvxpyLayer(SCS).

Forward + backward (gradient of a fixed random linear function of x with
respect to every QP input), float64, CPU. Problems:

  * OptNet QP: n=10, 5 equalities, 5 inequalities, batch 1 and 128;
  * the cvxpylayers paper's dense QP: n=128, 128 inequalities, batch 128.

Every example is feasible by construction (b = A x₀, h = G x₀ + s₀, s₀ ≥ 0).
At OptNet size it also times the path users call, inside a tf.function:
CvxpyLayer(solver="QP") on the problem as CVXPY writes it (½‖Lᵀx‖²) and the
OptNetQP layer (its weights shared by the batch).
Prints a markdown table of median times and ratios. Our runs and qpth are
timed in turn, round by round, so the machine's drifting load falls on
both sides of each ratio alike. XLA is checked for agreement only (on CPU
it is far slower than graph mode for this work).

    python benchmarks/bench_qp.py            # full run
    python benchmarks/bench_qp.py --quick    # fewer repeats, smaller slow baselines
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cvxpy as cp
import numpy as np
import tensorflow as tf
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import baselines  # noqa: E402
from timing import interleaved_median_seconds, median_seconds  # noqa: E402

from keras_optlayers.solvers.qp import qp_solve  # noqa: E402


def random_qp(batch: int, n: int, p: int, m: int, seed: int):
    """Feasible random QP data, all batched, float64 numpy; plus P's square root."""
    rng = np.random.default_rng(seed)
    root = rng.standard_normal((batch, n, n)) / np.sqrt(n)
    root = root + 0.3 * np.eye(n)
    P = root @ np.swapaxes(root, -1, -2)
    q = rng.standard_normal((batch, n))
    A = rng.standard_normal((batch, p, n))
    G = rng.standard_normal((batch, m, n))
    x0 = rng.standard_normal((batch, n))
    b = np.einsum("bij,bj->bi", A, x0)
    h = np.einsum("bij,bj->bi", G, x0) + np.abs(rng.standard_normal((batch, m)))
    weights = rng.standard_normal((batch, n))
    return dict(P=P, q=q, A=A, b=b, G=G, h=h, root=root, weights=weights)


def _qp_args(data, p: int):
    names = ["P", "q", "A", "b", "G", "h"] if p else ["P", "q", "G", "h"]
    return [tf.constant(data[k]) for k in names], names


def ours_eager(data, p):
    args, names = _qp_args(data, p)
    weights = tf.constant(data["weights"])

    def run():
        with tf.GradientTape() as tape:
            tape.watch(args)
            x = qp_solve(**dict(zip(names, args)))
            loss = tf.reduce_sum(weights * x)
        return tape.gradient(loss, args)

    return run


def ours_graph(data, p, jit_compile=False):
    args, names = _qp_args(data, p)
    weights = tf.constant(data["weights"])

    @tf.function(jit_compile=jit_compile)
    def forward_backward(*args):
        with tf.GradientTape() as tape:
            tape.watch(args)
            x = qp_solve(**dict(zip(names, args)), check_status=not jit_compile)
            loss = tf.reduce_sum(weights * x)
        return [x] + list(tape.gradient(loss, args))

    return lambda: forward_backward(*args)


def qpth_run(data, p):
    QPFunction = baselines.qpth_qpfunction()
    names = ["P", "q", "G", "h", "A", "b"]
    tensors = [torch.tensor(data[k], requires_grad=True) for k in names]
    if not p:  # qpth's way of saying "no equalities"
        tensors[4], tensors[5] = torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.float64)
    weights = torch.tensor(data["weights"])

    def run():
        x = QPFunction(verbose=-1)(*tensors)
        (weights * x).sum().backward()

    return run


def _cvxpy_qp(n: int, p: int, m: int):
    """The OptNet QP as a DPP CVXPY problem (P through its square root)."""
    root, q = cp.Parameter((n, n)), cp.Parameter(n)
    G, h = cp.Parameter((m, n)), cp.Parameter(m)
    x = cp.Variable(n)
    parameters = [root, q, G, h]
    constraints = [G @ x <= h]
    if p:
        A, b = cp.Parameter((p, n)), cp.Parameter(p)
        parameters += [A, b]
        constraints.append(A @ x == b)
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(root.T @ x) + q @ x), constraints)
    return problem, parameters, x


def _cvxpy_layer_run(layer, data, p, batch):
    names = ["root", "q", "G", "h"] + (["A", "b"] if p else [])
    args = [tf.constant(data[k][:batch]) for k in names]
    weights = tf.constant(data["weights"][:batch])

    def run():
        with tf.GradientTape() as tape:
            tape.watch(args)
            (x,) = layer(*args)
            loss = tf.reduce_sum(weights * tf.cast(x, tf.float64))
        return tape.gradient(loss, args)

    return run


def cvxpylayers_tf_run(data, n, p, m, batch):
    problem, parameters, x = _cvxpy_qp(n, p, m)
    layer = baselines.cvxpylayers_tf_layer()(problem, parameters=parameters, variables=[x])
    return _cvxpy_layer_run(layer, data, p, batch)


def cvxpy_layer_scs_run(data, n, p, m, batch):
    from keras_optlayers.layers.cvxpy_layer import CvxpyLayer

    problem, parameters, x = _cvxpy_qp(n, p, m)
    layer = CvxpyLayer(problem, parameters=parameters, variables=[x], solver="SCS")
    return _cvxpy_layer_run(layer, data, p, batch)


def cvxpy_layer_qp_graph_run(data, n, p, m):
    """CvxpyLayer(solver="QP") on the problem as CVXPY writes it, inside a tf.function."""
    from keras_optlayers.layers.cvxpy_layer import CvxpyLayer

    problem, parameters, x = _cvxpy_qp(n, p, m)
    layer = CvxpyLayer(problem, parameters=parameters, variables=[x], solver="QP")
    names = ["root", "q", "G", "h"] + (["A", "b"] if p else [])
    args = [tf.constant(data[k]) for k in names]
    weights = tf.constant(data["weights"])

    @tf.function
    def forward_backward(*args):
        with tf.GradientTape() as tape:
            tape.watch(args)
            (x,) = layer(*args)
            loss = tf.reduce_sum(weights * x)
        return tape.gradient(loss, args)

    return lambda: forward_backward(*args)


def optnet_layer_graph_run(data, n, p, m):
    """The OptNetQP layer (weights L, A, G, z0 shared by the batch; input q) inside a tf.function."""
    from keras_optlayers import OptNetQP

    layer = OptNetQP(num_eq=p, num_ineq=m, dtype="float64")
    q = tf.constant(data["q"])
    layer(q)
    weights = tf.constant(data["weights"])

    @tf.function
    def forward_backward(q):
        with tf.GradientTape() as tape:
            tape.watch(q)
            loss = tf.reduce_sum(weights * layer(q))
        return tape.gradient(loss, [q, *layer.trainable_weights])

    return lambda: forward_backward(q)


def check_xla(data, p):
    graph = ours_graph(data, p)()
    xla = ours_graph(data, p, jit_compile=True)()
    return max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(graph, xla))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats; slow baselines on smaller batches")
    parser.add_argument("--repeats", type=int, default=None)
    options = parser.parse_args()
    repeats = options.repeats or (5 if options.quick else 20)
    slow_repeats = 2 if options.quick else 3
    # One torch thread: in one process with TF, torch's pool and TF's contend
    # for the 2 cores and qpth's times swing 20x; alone, 1 and 2 threads
    # give qpth the same time at these sizes.
    torch.set_num_threads(1)

    try:
        import keras_optlayers.layers.cvxpy_layer  # noqa: F401

        have_cvxpy_layer = True
    except ImportError as error:
        have_cvxpy_layer = False
        print(f"note: CvxpyLayer(solver='SCS') column skipped: {error}")

    cases = [("OptNet QP (n=10, p=5, m=5)", 1, 10, 5, 5), ("OptNet QP (n=10, p=5, m=5)", 128, 10, 5, 5),
             ("dense QP (n=128, m=128)", 128, 128, 0, 128)]
    notes = []
    rows = []
    for label, batch, n, p, m in cases:
        data = random_qp(batch, n, p, m, seed=batch + n)
        dense = n >= 100
        # The runs compared with qpth are timed in turn (`interleaved_median_seconds`): their ratios are the targets.
        runs = {"eager": ours_eager(data, p), "graph": ours_graph(data, p), "qpth": qpth_run(data, p)}
        if not dense:
            runs["layer_qp"] = cvxpy_layer_qp_graph_run(data, n, p, m)
            runs["optnet"] = optnet_layer_graph_run(data, n, p, m)
        seconds = interleaved_median_seconds(runs, slow_repeats if dense else repeats)
        result = {name: 1e3 * value for name, value in seconds.items()}
        # cvxpylayers at the dense size takes minutes per batch of 128.
        slow_batch = batch if not dense else (2 if options.quick else 8)
        slow = "" if slow_batch == batch else f" (batch {slow_batch})"
        result["cvxpylayers"] = 1e3 * median_seconds(cvxpylayers_tf_run(data, n, p, m, slow_batch), slow_repeats if dense else repeats)
        result["cvxpylayers_label"] = slow
        if have_cvxpy_layer:
            result["scs"] = 1e3 * median_seconds(cvxpy_layer_scs_run(data, n, p, m, slow_batch), slow_repeats if dense else repeats)
        if slow:
            notes.append(f"{label}, batch {batch}: the CVXPY-based columns were timed at batch {slow_batch}, not {batch}.")
        result["xla_diff"] = check_xla(data, p) if not dense else None
        rows.append((label, batch, result))
        print(f"done: {label} batch {batch}", flush=True)

    header = "| problem | batch | ours eager (ms) | ours tf.function (ms) | qpth (ms) | cvxpylayers 0.1.9 TF (ms) |"
    header += " CvxpyLayer SCS (ms) |" if have_cvxpy_layer else ""
    header += " qpth / ours graph | qpth / ours eager | cvxpylayers / ours graph | XLA vs graph max abs diff |"
    print()
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for label, batch, r in rows:
        cells = [label, str(batch), f"{r['eager']:.1f}", f"{r['graph']:.1f}", f"{r['qpth']:.1f}",
                 f"{r['cvxpylayers']:.1f}{r['cvxpylayers_label']}"]
        if have_cvxpy_layer:
            cells.append(f"{r['scs']:.1f}{r['cvxpylayers_label']}")
        ratio = "n/a (different batch)" if r["cvxpylayers_label"] else f"{r['cvxpylayers'] / r['graph']:.1f}x"
        cells += [f"{r['qpth'] / r['graph']:.1f}x", f"{r['qpth'] / r['eager']:.1f}x", ratio,
                  "not run (CPU XLA too slow at n=128)" if r["xla_diff"] is None else f"{r['xla_diff']:.1e}"]
        print("| " + " | ".join(cells) + " |")
    for note in notes:
        print(f"\nnote: {note}")
    print()
    print("Through the layers, forward and backward inside a tf.function, against the same run's qpth:")
    print()
    print("| problem | batch | qpth (ms) | CvxpyLayer(solver='QP') (ms) | OptNetQP (ms) | qpth / CvxpyLayer | qpth / OptNetQP |")
    print("|---|---|---|---|---|---|---|")
    for label, batch, r in rows:
        if "layer_qp" in r:
            print(f"| {label} | {batch} | {r['qpth']:.1f} | {r['layer_qp']:.1f} | {r['optnet']:.1f} | "
                  f"{r['qpth'] / r['layer_qp']:.1f}x | {r['qpth'] / r['optnet']:.1f}x |")


if __name__ == "__main__":
    main()

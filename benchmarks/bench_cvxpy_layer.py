"""Times CvxpyLayer (diffcp path) against the cvxpylayers baselines.

Side by side, in one run: forward+backward and forward-only, at batch 1 and
128, of the tutorial's OptNet QP (n=10, 5 equalities, 5 inequalities),
sparsemax (n=20), LML (n=20, k=5), the ellipsoid projection (n=20), a
robust LP (n=10, 5 second-order-cone constraints) and a SOC-constrained
least squares (n=10, 20 rows: ½‖Fx − g‖² with ‖x‖ ≤ 1 and sum(x) = t), for

* this library's CvxpyLayer with solver="SCS", and with the default solver
  (the native QP solver for the QPs, Clarabel for LML, the native SOCP
  solver for the second-order cone problems), each called eagerly and
  inside a tf.function, and the default solver eagerly once its first
  `eager_xla_after()` calls have moved a small batch to XLA
  (`keras_optlayers.eager_xla`; the column is the plain eager layer where
  nothing moves: a host solver, a large batch),
* cvxpylayers 0.1.9's TensorFlow layer (eager only: it calls .numpy()),
* cvxpylayers 1.x's torch layer,

float64. The baselines run SCS at its default tolerance (eps 1e-4); this
library's SCS runs at its registry default (eps 1e-9), since its solutions
must pass the optimality check at 1e-6. The implementations of a problem
and batch are timed in turn, round by round (`timing.interleaved_median_seconds`),
so the machine's drifting load does not move the ratios. Prints medians and the
speedups over 0.1.9 as a markdown table, and the geometric mean of the
speedups at the largest batch.

Usage (from the repository root; the baselines come from
benchmarks/install_baselines.sh):

    python benchmarks/bench_cvxpy_layer.py [--repeats 5] [--batches 1 128] [--problems ellipsoid ...]
    python benchmarks/bench_cvxpy_layer.py --profile   # cProfile ours, batch 128
    python benchmarks/bench_cvxpy_layer.py --xla --batches 1   # native solvers under XLA
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pathlib
import pstats
import sys
import time
import warnings
from typing import Callable, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cvxpy as cp  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

BENCHMARKS_DIR = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS_DIR))
sys.path.insert(0, str(BENCHMARKS_DIR.parent / "tests"))
import baselines  # noqa: E402
import socp_problems  # noqa: E402
from timing import interleaved_median_seconds  # noqa: E402

from keras_optlayers import eager_xla  # noqa: E402
from keras_optlayers.core.problems import lml_problem, sparsemax_problem  # noqa: E402
from keras_optlayers.layers.cvxpy_layer import CvxpyLayer  # noqa: E402

# SCS at each implementation's own default tolerance (see the module docstring).
SCS_DEFAULTS = {"solve_method": "SCS"}  # the baselines' diffcp argument


class Benchmark(NamedTuple):
    name: str
    problem: cp.Problem
    parameters: tuple[cp.Parameter, ...]
    variables: tuple[cp.Variable, ...]
    sample: Callable[[np.random.Generator, int], list[np.ndarray]]  # (rng, batch) -> values


def optnet_qp(n: int = 10, num_eq: int = 5, num_ineq: int = 5) -> Benchmark:
    """The tutorial's OptNet QP; data sampled feasible (h = G x0 + slack)."""
    Q_sqrt = cp.Parameter((n, n))
    q = cp.Parameter(n)
    A = cp.Parameter((num_eq, n))
    b = cp.Parameter(num_eq)
    G = cp.Parameter((num_ineq, n))
    h = cp.Parameter(num_ineq)
    x = cp.Variable(n)
    objective = cp.Minimize(0.5 * cp.sum_squares(Q_sqrt @ x) + q @ x)
    problem = cp.Problem(objective, [A @ x == b, G @ x <= h])

    def sample(rng, batch):
        x0 = rng.standard_normal((batch, n))
        A_value = rng.standard_normal((batch, num_eq, n))
        G_value = rng.standard_normal((batch, num_ineq, n))
        return [
            rng.standard_normal((batch, n, n)),
            rng.standard_normal((batch, n)),
            A_value,
            np.einsum("bij,bj->bi", A_value, x0),
            G_value,
            np.einsum("bij,bj->bi", G_value, x0) + rng.random((batch, num_ineq)),
        ]

    return Benchmark("OptNet QP (n=10)", problem, (Q_sqrt, q, A, b, G, h), (x,), sample)


def sparsemax(n: int = 20) -> Benchmark:
    spec = sparsemax_problem(n)
    return Benchmark("sparsemax (n=20)", spec.problem, spec.parameters, spec.variables,
                     lambda rng, batch: [rng.standard_normal((batch, n))])


def lml(n: int = 20, k: int = 5) -> Benchmark:
    spec = lml_problem(n, k)
    return Benchmark("LML (n=20, k=5)", spec.problem, spec.parameters, spec.variables,
                     lambda rng, batch: [rng.standard_normal((batch, n))])


def ellipsoid_projection(n: int = 20) -> Benchmark:
    """The tutorial's ellipsoid projection (t = y - z keeps it DPP)."""
    A = cp.Parameter((n, n))
    z = cp.Parameter(n)
    x = cp.Parameter(n)
    y = cp.Variable(n)
    t = cp.Variable(n)
    constraints = [0.5 * cp.sum_squares(A @ t) <= 1, t == y - z]
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - y)), constraints)
    return Benchmark("ellipsoid projection (n=20)", problem, (A, z, x), (y, t),
                     lambda rng, batch: [rng.standard_normal((batch, n, n)),
                                         rng.standard_normal((batch, n)),
                                         rng.standard_normal((batch, n))])


def robust_lp(n: int = 10, constraints: int = 5) -> Benchmark:
    """A robust LP: min cᵀx s.t. aᵢᵀx + ‖Pᵢx‖ ≤ bᵢ, −1 ≤ x ≤ 1 (tests/socp_problems.py)."""
    spec, sample = socp_problems.robust_lp(n, constraints)
    return Benchmark(f"robust LP (n={n}, {constraints} SOC)", spec.problem, spec.parameters, spec.variables, sample)


def soc_least_squares(n: int = 10, rows: int = 20) -> Benchmark:
    """SOC-constrained least squares: min ½‖F x − g‖² s.t. ‖x‖₂ ≤ 1, sum(x) = t (tests/socp_problems.py)."""
    spec, sample = socp_problems.squared_least_squares(n, rows)
    return Benchmark(f"SOC least squares (n={n}, {rows} rows)", spec.problem, spec.parameters, spec.variables, sample)


BENCHMARKS = (optnet_qp, sparsemax, lml, ellipsoid_projection, robust_lp, soc_least_squares)


# -- the callables timed -------------------------------------------------------
# Each maker returns (forward, forward_backward), both taking no arguments:
# inputs are converted to the framework's tensors once, outside the timing.


def tf_callables(layer_call, values, compile_graph: bool):
    tensors = [tf.constant(v) for v in values]

    def forward():
        return layer_call(*tensors)

    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            loss = tf.add_n([tf.reduce_sum(o) for o in layer_call(*tensors)])
        return tape.gradient(loss, tensors)

    if compile_graph:
        return tf.function(forward), tf.function(forward_backward)
    return forward, forward_backward


def ours(benchmark, values, compile_graph, solver="SCS"):
    layer = CvxpyLayer(benchmark.problem, benchmark.parameters, benchmark.variables, solver=solver)
    return tf_callables(layer, values, compile_graph)


def ours_after_eager_xla(benchmark, values):
    """Our default-solver layer, eager, after the calls that move a small batch to XLA (`keras_optlayers.eager_xla`).

    It makes `eager_xla_after()` forward and backward calls, then waits for
    the background compilation; a host solver or a large batch moves
    nothing, so there it is the plain eager layer.
    """
    forward, forward_backward = ours(benchmark, values, compile_graph=False, solver=None)
    start = time.perf_counter()
    for _ in range(eager_xla.eager_xla_after() or 0):
        forward_backward()
    eager_xla.wait_for_eager_xla()
    print(f"  {benchmark.name}: {time.perf_counter() - start:.1f} s of eager calls and XLA compilation",
          file=sys.stderr)
    return forward, forward_backward


def load_baselines():
    """The two baseline layer classes, both called `cvxpylayers.CvxpyLayer`."""
    tf_layer = baselines.cvxpylayers_tf_layer()
    torch_layer = baselines.cvxpylayers_torch_layer()
    return tf_layer, torch_layer


BASELINE_LAYERS = load_baselines()


def cvxpylayers_tf(benchmark, values):
    layer = BASELINE_LAYERS[0](benchmark.problem, list(benchmark.parameters), list(benchmark.variables))
    return tf_callables(lambda *t: layer(*t, solver_args=SCS_DEFAULTS), values, compile_graph=False)


def cvxpylayers_torch(benchmark, values):
    layer = BASELINE_LAYERS[1](benchmark.problem, list(benchmark.parameters), list(benchmark.variables),
                               solver_args=SCS_DEFAULTS)
    constants = [torch.tensor(v) for v in values]
    leaves = [torch.tensor(v, requires_grad=True) for v in values]

    def forward():
        return layer(*constants)

    def forward_backward():
        sum(o.sum() for o in layer(*leaves)).backward()

    return forward, forward_backward


IMPLEMENTATIONS = {
    "ours (eager)": lambda b, v: ours(b, v, compile_graph=False),
    "ours (tf.function)": lambda b, v: ours(b, v, compile_graph=True),
    # solver=None: the native QP solver for QPs (OptNet, sparsemax), else SCS.
    "ours, default solver (eager)": lambda b, v: ours(b, v, compile_graph=False, solver=None),
    "ours, default solver (tf.function)": lambda b, v: ours(b, v, compile_graph=True, solver=None),
    "ours, default solver (eager, after XLA)": ours_after_eager_xla,
    "cvxpylayers 0.1.9 TF": cvxpylayers_tf,
    "cvxpylayers 1.x torch": cvxpylayers_torch,
}
BASELINE = "cvxpylayers 0.1.9 TF"
MODES = ("fwd+bwd", "fwd")


def selected_benchmarks(problems=None) -> list[Benchmark]:
    """The benchmarks whose names start with one of `problems` (default all)."""
    benchmarks = [make() for make in BENCHMARKS]
    if not problems:
        return benchmarks
    return [b for b in benchmarks if any(b.name.lower().startswith(p.lower()) for p in problems)]


def timed_calls(batch: int, repeats: int) -> int:
    """Small batches are quick and noisier: they are repeated more."""
    return repeats * 4 if batch < 16 else repeats


def measure(batches, repeats, problems=None):
    """{(benchmark name, batch, mode): {implementation: median ms}}; `problems`: name prefixes to keep."""
    results = {}
    for benchmark in selected_benchmarks(problems):
        for batch in batches:
            values = benchmark.sample(np.random.default_rng(0), batch)
            runs = {}
            for implementation, build in IMPLEMENTATIONS.items():
                forward, forward_backward = build(benchmark, values)
                runs.update({(implementation, mode): function for mode, function in zip(MODES, (forward_backward, forward))})
            # Timed in turn, so that every implementation sees the machine's drifting load alike.
            for (implementation, mode), seconds in interleaved_median_seconds(runs, timed_calls(batch, repeats)).items():
                results.setdefault((benchmark.name, batch, mode), {})[implementation] = 1e3 * seconds
            print(f"  measured {benchmark.name}, batch {batch}", file=sys.stderr)
    return results


def measure_xla(batches, repeats, problems=None) -> str:
    """The default solver under `tf.function(jit_compile=True)` beside graph mode and torch, as a table.

    Only problems whose default solver is native (a host solver cannot be
    compiled). The first call's time (tracing and XLA compilation) is
    reported apart: it is paid once per input shape.
    """
    header = ["problem", "batch", "pass", "ours, default solver (XLA)", "ours, default solver (tf.function)",
              "cvxpylayers 1.x torch", "speedup vs torch (XLA)", "speedup vs torch (tf.function)", "first XLA call"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for benchmark in selected_benchmarks(problems):
        layer = CvxpyLayer(benchmark.problem, benchmark.parameters, benchmark.variables)
        if not layer.batched_problem.solver.runs_in_xla:
            continue
        for batch in batches:
            values = benchmark.sample(np.random.default_rng(0), batch)
            graph = tf_callables(layer, values, compile_graph=True)
            eager = tf_callables(layer, values, compile_graph=False)
            compiled = [tf.function(function, jit_compile=True) for function in eager]
            torch_callables = cvxpylayers_torch(benchmark, values)
            count = timed_calls(batch, repeats)
            for index, mode in ((1, "fwd+bwd"), (0, "fwd")):
                start = time.perf_counter()
                compiled[index]()
                first_call = time.perf_counter() - start
                seconds = interleaved_median_seconds({k: f[index] for k, f in enumerate((compiled, graph, torch_callables))}, count)
                times = [1e3 * seconds[k] for k in range(3)]
                cells = [benchmark.name, str(batch), mode, *(f"{t:.2f} ms" for t in times),
                         f"{times[2] / times[0]:.1f}x", f"{times[2] / times[1]:.1f}x", f"{first_call:.1f} s"]
                lines.append("| " + " | ".join(cells) + " |")
            print(f"  measured {benchmark.name}, batch {batch} under XLA", file=sys.stderr)
    return "\n".join(lines)


def geometric_mean(values) -> float:
    return float(np.exp(np.mean(np.log(values))))


def report(results, batches) -> str:
    ours_columns = ("ours (eager)", "ours (tf.function)", "ours, default solver (eager)",
                    "ours, default solver (tf.function)", "ours, default solver (eager, after XLA)")
    default_columns = ours_columns[2:]
    header = ["problem", "batch", "pass", *IMPLEMENTATIONS,
              *(f"speedup vs 0.1.9, {c}" for c in ours_columns),
              *(f"speedup vs torch, {c}" for c in default_columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (name, batch, mode), times in results.items():
        speedups = [times[BASELINE] / times[c] for c in ours_columns]
        speedups += [times["cvxpylayers 1.x torch"] / times[c] for c in default_columns]
        cells = [name, str(batch), mode, *(f"{times[i]:.1f} ms" for i in IMPLEMENTATIONS),
                 *(f"{s:.1f}x" for s in speedups)]
        lines.append("| " + " | ".join(cells) + " |")
    largest = max(batches)
    lines.append("")
    lines.append(f"Geometric mean of the speedups over cvxpylayers 0.1.9 TF at batch {largest}:")
    lines.append("")
    lines.append("| pass | " + " | ".join(ours_columns) + " | target |")
    lines.append("|---|" + "---|" * (len(ours_columns) + 1))
    for mode, target in zip(MODES, ("3x", "8x")):
        row = [times for (name, batch, m), times in results.items() if batch == largest and m == mode]
        means = [geometric_mean([t[BASELINE] / t[c] for t in row]) for c in ours_columns]
        lines.append(f"| {mode} | " + " | ".join(f"{m:.1f}x" for m in means) + f" | {target} |")
    return "\n".join(lines)


def profile(batch: int, repeats: int) -> None:
    """cProfile of our eager layer, fwd+bwd and fwd, at one batch size."""
    for make in BENCHMARKS:
        benchmark = make()
        values = benchmark.sample(np.random.default_rng(0), batch)
        forward, forward_backward = ours(benchmark, values, compile_graph=False)
        for mode, function in zip(MODES, (forward_backward, forward)):
            function()
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(repeats):
                function()
            profiler.disable()
            print(f"\n## {benchmark.name}, batch {batch}, {mode}, {repeats} calls")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per cell (4x at small batches)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 128])
    parser.add_argument("--profile", action="store_true", help="profile ours at the largest batch instead")
    parser.add_argument("--xla", action="store_true", help="time the native default solvers under XLA instead")
    parser.add_argument("--problems", nargs="+", default=None,
                        help="only these problems (name prefixes: optnet, sparsemax, lml, ellipsoid, robust)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # SCS's "Solved/Inaccurate" at default tolerance
    torch.set_num_threads(os.cpu_count() or 1)
    if args.profile:
        profile(max(args.batches), args.repeats)
        return
    if args.xla:
        print(measure_xla(args.batches, args.repeats, args.problems))
        return
    calls_before_xla = eager_xla.eager_xla_after()
    if calls_before_xla is not None and 2 * (timed_calls(min(args.batches), args.repeats) + 1) >= calls_before_xla:
        # The plain eager columns would move to XLA part of the way through (keras_optlayers.eager_xla).
        parser.error(f"--repeats {args.repeats} calls an eager layer {calls_before_xla} times or more; "
                     "use fewer, or raise KERAS_OPTLAYERS_EAGER_XLA_AFTER")
    print(report(measure(args.batches, args.repeats, args.problems), args.batches))


if __name__ == "__main__":
    main()

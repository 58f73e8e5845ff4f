"""Times the native SOCP solver against cvxpylayers 0.1.9 TF, cvxpylayers 1.x torch and our SCS path.

Problems: the ellipsoid projection (n=20) of `bench_cvxpy_layer` and a
robust LP (n=10, 5 second-order-cone constraints, box bounds), at batch 1
and 128, forward and forward+backward. The native path compiles the problem
as a cone program and calls `keras_optlayers.solvers.socp.solve_compiled_socp`
(tests/socp_problems.py's `SocpLayerFunction`), eagerly (through its
compiled function) and inside `tf.function`; the others use SCS at its
default tolerance, as in `bench_cvxpy_layer`.

Usage (from the repository root; baselines from benchmarks/install_baselines.sh):

    PYTHONPATH=$PWD python benchmarks/bench_socp.py [--repeats 5] [--batches 1 128]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))

import bench_cvxpy_layer as layer_bench
from socp_problems import SocpLayerFunction, robust_lp
from timing import median_seconds

from keras_optlayers.core.problems.spec import ProblemSpec


def robust_lp_benchmark() -> layer_bench.Benchmark:
    spec, sample = robust_lp(10, 5)
    return layer_bench.Benchmark("robust LP (n=10, 5 SOC)", spec.problem, spec.parameters, spec.variables, sample)


BENCHMARKS = (layer_bench.ellipsoid_projection, robust_lp_benchmark)


def native(benchmark, values, compile_graph):
    function = SocpLayerFunction(ProblemSpec(benchmark.problem, benchmark.parameters, benchmark.variables))
    return layer_bench.tf_callables(function, values, compile_graph)


IMPLEMENTATIONS = {
    "native SOCP (eager)": lambda b, v: native(b, v, compile_graph=False),
    "native SOCP (tf.function)": lambda b, v: native(b, v, compile_graph=True),
    "ours, SCS (tf.function)": lambda b, v: layer_bench.ours(b, v, compile_graph=True, solver="SCS"),
    "cvxpylayers 0.1.9 TF": layer_bench.cvxpylayers_tf,
    "cvxpylayers 1.x torch": layer_bench.cvxpylayers_torch,
}
MODES = ("fwd+bwd", "fwd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 128])
    args = parser.parse_args()
    header = ["problem", "batch", "pass", *IMPLEMENTATIONS, "vs 0.1.9 (eager)", "vs torch (eager)", "vs SCS path (tf.function)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for make in BENCHMARKS:
        benchmark = make()
        for batch in args.batches:
            values = benchmark.sample(np.random.default_rng(0), batch)
            times = {mode: {} for mode in MODES}
            for name, build in IMPLEMENTATIONS.items():
                forward, forward_backward = build(benchmark, values)
                for mode, function in zip(MODES, (forward_backward, forward)):
                    times[mode][name] = 1e3 * median_seconds(function, args.repeats)
                print(f"  measured {benchmark.name}, batch {batch}, {name}", file=sys.stderr)
            for mode in MODES:
                t = times[mode]
                ratios = (
                    t["cvxpylayers 0.1.9 TF"] / t["native SOCP (eager)"],
                    t["cvxpylayers 1.x torch"] / t["native SOCP (eager)"],
                    t["ours, SCS (tf.function)"] / t["native SOCP (tf.function)"],
                )
                cells = [benchmark.name, str(batch), mode, *(f"{t[n]:.1f} ms" for n in IMPLEMENTATIONS), *(f"{r:.1f}x" for r in ratios)]
                print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

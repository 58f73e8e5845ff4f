"""Times the native SOCP solver against the host path and cvxpylayers 0.1.9 TF and 1.x torch.

Problems: the ellipsoid projection (n=20) of `bench_cvxpy_layer` and a
robust LP (n=10, 5 second-order-cone constraints, box bounds), forward and
forward+backward, at the batch sizes given (the crossover between the
native and the host path). All through `CvxpyLayer`: solver="SOCP" (the
native solver, eagerly and inside `tf.function`), and inside `tf.function`
the host path with SCS and with ECOS (the host default for second-order
cone programs too large for the native solver), each at this library's
default settings; the baselines use SCS at its default tolerance, as in
`bench_cvxpy_layer`.

Usage (from the repository root; baselines from benchmarks/install_baselines.sh):

    python benchmarks/bench_socp.py [--repeats 5] [--batches 1 8 32 128]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import bench_cvxpy_layer as layer_bench
from timing import interleaved_median_seconds

IMPLEMENTATIONS = {
    "native SOCP (eager)": lambda b, v: layer_bench.ours(b, v, compile_graph=False, solver="SOCP"),
    "native SOCP (tf.function)": lambda b, v: layer_bench.ours(b, v, compile_graph=True, solver="SOCP"),
    "host, SCS (tf.function)": lambda b, v: layer_bench.ours(b, v, compile_graph=True, solver="SCS"),
    "host, ECOS (tf.function)": lambda b, v: layer_bench.ours(b, v, compile_graph=True, solver="ECOS"),
    "cvxpylayers 0.1.9 TF": layer_bench.cvxpylayers_tf,
    "cvxpylayers 1.x torch": layer_bench.cvxpylayers_torch,
}
MODES = ("fwd+bwd", "fwd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 128])
    args = parser.parse_args()
    header = ["problem", "batch", "pass", *IMPLEMENTATIONS, "native vs 0.1.9 (eager)", "native vs torch (eager)",
              "native vs the faster host path (tf.function)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for benchmark in layer_bench.selected_benchmarks(["ellipsoid", "robust"]):
        for batch in args.batches:
            values = benchmark.sample(np.random.default_rng(0), batch)
            runs = {}
            for name, build in IMPLEMENTATIONS.items():
                forward, forward_backward = build(benchmark, values)
                runs.update({(name, mode): function for mode, function in zip(MODES, (forward_backward, forward))})
            times: dict[str, dict[str, float]] = {mode: {} for mode in MODES}
            # Timed in turn, so that every implementation sees the machine's drifting load alike.
            for (name, mode), seconds in interleaved_median_seconds(runs, layer_bench.timed_calls(batch, args.repeats)).items():
                times[mode][name] = 1e3 * seconds
            print(f"  measured {benchmark.name}, batch {batch}", file=sys.stderr)
            for mode in MODES:
                t = times[mode]
                ratios = (
                    t["cvxpylayers 0.1.9 TF"] / t["native SOCP (eager)"],
                    t["cvxpylayers 1.x torch"] / t["native SOCP (eager)"],
                    min(t["host, SCS (tf.function)"], t["host, ECOS (tf.function)"]) / t["native SOCP (tf.function)"],
                )
                cells = [benchmark.name, str(batch), mode, *(f"{t[n]:.1f} ms" for n in IMPLEMENTATIONS), *(f"{r:.1f}x" for r in ratios)]
                print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

"""What the after-the-fact optimality check costs the native solvers' forward pass.

Times the forward pass inside a tf.function at batch 128, float64, of
`qp_solve` on the OptNet QP (n=10, 5 equalities, 5 inequalities) and of
`socp_solve` on the ellipsoid projection (n=20) in conic form, once as
shipped and once with the check's measures replaced by zeros (the solver
then trusts its own status), and prints the check's share of the forward
pass. Both variants run in one process, alternately, so the machine's load
drifts over both alike. (The host path reports its own share:
benchmarks/bench_cone_accuracy.py, column "check % of fwd b128".)

    python benchmarks/bench_check_cost.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_cvxpy_layer  # noqa: E402
import bench_qp  # noqa: E402
from timing import median_seconds  # noqa: E402

from keras_optlayers.core.compiler import compile_problem  # noqa: E402
from keras_optlayers.solvers.qp import solution_check as qp_check  # noqa: E402
from keras_optlayers.solvers.qp import solve as qp_module  # noqa: E402
from keras_optlayers.solvers.socp import solve as socp_module  # noqa: E402

BATCH = 128


@contextlib.contextmanager
def check_skipped():
    """The QP's residuals and the SOCP's measures replaced by zeros while tracing."""
    qp_residuals, socp_measures = qp_module.solution_check.residuals, socp_module.relative_measures

    def zero_residuals(P, q, A, b, G, h, x, nu, lam, units):
        zero = tf.zeros_like(x[:, 0])
        return qp_check.Residuals(zero, zero, zero)

    def zero_measures(layout, A, b, c, x, y, s):
        zero = tf.zeros_like(x[:, 0])
        return {"primal_residual": zero, "dual_residual": zero, "gap": zero, "cone": zero}

    qp_module.solution_check.residuals, socp_module.relative_measures = zero_residuals, zero_measures
    try:
        yield
    finally:
        qp_module.solution_check.residuals, socp_module.relative_measures = qp_residuals, socp_measures


def qp_forward():
    data = bench_qp.random_qp(BATCH, 10, 5, 5, seed=BATCH + 10)
    args = [tf.constant(data[name]) for name in ("P", "q", "A", "b", "G", "h")]
    function = tf.function(lambda *a: qp_module.qp_solve_with_info(*a)[0])
    return lambda: function(*args)


def socp_forward():
    benchmark = bench_cvxpy_layer.ellipsoid_projection()
    program = compile_problem(benchmark.problem, benchmark.parameters, benchmark.variables, quadratic=False)
    theta = program.theta(benchmark.sample(np.random.default_rng(0), BATCH))
    A_values = tf.constant((program.A.matrix @ theta.T).T)
    b, c = tf.constant((program.b @ theta.T).T), tf.constant((program.c @ theta.T).T)
    function = tf.function(lambda A, b, c: socp_module.solve_compiled_socp(program, A, b, c)[0])
    return lambda: function(A_values, b, c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    options = parser.parse_args()
    print("| solver | problem, batch 128 | forward with the check (ms) | without (ms) | check's share |")
    print("|---|---|---|---|---|")
    for solver, label, make in (("QP", "OptNet QP (n=10)", qp_forward), ("SOCP", "ellipsoid (n=20)", socp_forward)):
        checked = make()
        checked()  # traced with the check
        with check_skipped():
            unchecked = make()
            unchecked()  # traced without it
        with_check, without = [], []
        for _ in range(5):  # alternate, so that load drifts over both
            with_check.append(median_seconds(checked, max(1, options.repeats // 5)))
            without.append(median_seconds(unchecked, max(1, options.repeats // 5)))
        full, bare = 1e3 * float(np.median(with_check)), 1e3 * float(np.median(without))
        print(f"| {solver} | {label} | {full:.1f} | {bare:.1f} | {100 * (full - bare) / full:.1f}% |", flush=True)


if __name__ == "__main__":
    main()

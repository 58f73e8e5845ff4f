"""Right or refused: every path on squared-norm problems from 1e-8 to 1e10.

Projects random points of each magnitude onto the probability simplex
(sparsemax) and onto the unit ball, and compares every point that was
returned with the exact answer:

* the host solvers (SCS, ECOS, Clarabel) on CVXPY's conic form (the squared
  norm becomes a second-order cone), through `ConeSolver` (solve, check,
  retries) at the library's defaults;
* the native solvers through `CvxpyLayer` with `on_failure="nan"`: "QP" on
  the simplex (a QP), "SOCP" on the ball (a second-order cone program).

An accuracy scan, not a timing: it prints, per problem, solver and
magnitude, how many points were refused and the worst error of the returned
ones relative to the magnitude (max(1, scale)).

    python benchmarks/scan_scales.py                 # 32 points per cell
    python benchmarks/scan_scales.py --points 8 --solvers ECOS QP
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cvxpy as cp  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from helpers import sparsemax_solution  # noqa: E402

from keras_optlayers import CvxpyLayer  # noqa: E402
from keras_optlayers.core.compiler import compile_problem  # noqa: E402
from keras_optlayers.solvers.cone_solver import ConeSolver  # noqa: E402

SCALES = (1e-8, 1e-6, 1e-2, 1.0, 1e2, 1e3, 1e4, 1e6, 1e8, 1e10)
NATIVE = {"QP": "sparsemax", "SOCP": "unit ball"}  # the problem each native solver takes


def sparsemax(points: np.ndarray) -> np.ndarray:
    return np.array([sparsemax_solution(point) for point in points])


def unit_ball(points: np.ndarray) -> np.ndarray:
    return points / np.maximum(1.0, np.linalg.norm(points, axis=1))[:, None]


def problems():
    x, y = cp.Parameter(4), cp.Variable(4)
    simplex = cp.Problem(cp.Minimize(cp.sum_squares(x - y)), [cp.sum(y) == 1, y >= 0])
    z, w = cp.Parameter(3), cp.Variable(3)
    ball = cp.Problem(cp.Minimize(cp.sum_squares(z - w)), [cp.norm(w) <= 1])
    return {"sparsemax": (simplex, x, y, sparsemax), "unit ball": (ball, z, w, unit_ball)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--solvers", nargs="+", default=["SCS", "ECOS", "Clarabel", "QP", "SOCP"])
    options = parser.parse_args()
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    print("| problem | solver | scale | refused | worst error of the passed / max(1, scale) |")
    print("|---|---|---|---|---|")
    for name, (problem, parameter, variable, exact) in problems().items():
        program = compile_problem(problem, [parameter], [variable], quadratic=False)
        for solver in options.solvers:
            if solver in NATIVE and NATIVE[solver] != name:
                continue
            solve = native_solve(problem, parameter, variable, solver) if solver in NATIVE \
                else host_solve(program, solver)
            for scale in SCALES:
                points = rng.normal(size=(options.points, parameter.size)) * scale
                values = solve(points)
                returned = ~np.isnan(values).any(axis=1)
                error = np.abs(values - exact(points)).max(axis=1) / max(1.0, scale)
                worst = f"{error[returned].max():.1e}" if returned.any() else "-"
                print(f"| {name} | {solver} | {scale:.0e} | {int((~returned).sum())}/{options.points} | {worst} |",
                      flush=True)


def host_solve(program, solver):
    """points -> the host path's solutions, NaN where refused."""
    cone_solver = ConeSolver(program, solver)

    def solve(points):
        theta = program.theta([points])
        data = ((program.A.matrix @ theta.T).T, (program.b @ theta.T).T, (program.c @ theta.T).T)
        x, _, _, statuses, _ = cone_solver.solve_with_status(*data)
        values = x[:, program.outputs[0].indices]
        values[[status != "solved" for status in statuses]] = np.nan
        return values

    return solve


def native_solve(problem, parameter, variable, solver):
    """points -> the native solver's solutions through CvxpyLayer, NaN where refused."""
    layer = CvxpyLayer(problem, [parameter], [variable], solver=solver, on_failure="nan")

    def solve(points):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return layer(tf.constant(points))[0].numpy()

    return solve

if __name__ == "__main__":
    main()

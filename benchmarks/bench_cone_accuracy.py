"""Accuracy and speed of the host cone path (ConeSolver) per solver and setting.

For the library's problems in conic form (EllipsoidProjection n=20 with
points inside and outside the ellipsoid, sparsemax n=20 and n=100, LML
n=20, softmax n=20, a second-order-cone least squares, the OptNet QP) and
each solver configuration, it measures, in float64 on the numpy path alone
(no TensorFlow):

* status: how many examples passed the optimality check (ok/total);
* solution error: max |y - y_ref| of the requested variable against CVXPY's
  Clarabel at tolerances 1e-10, over the examples that passed;
* gradient error: max |Jᵀw - (Jᵀw)_ref| of a random linear functional w of
  the output, with respect to the batched input, against central
  differences (step 1e-4) of the same Clarabel reference;
* forward and forward+backward wall time at batch 1 and 128 (medians), and
  the share of the forward pass spent in the optimality check at batch 128.

Prints a markdown table. Usage:

    python benchmarks/bench_cone_accuracy.py            # all problems, 8 accuracy examples
    python benchmarks/bench_cone_accuracy.py --quick    # 4 accuracy examples, fewer repeats
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time
from collections.abc import Callable

import cvxpy as cp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from timing import median_seconds

from keras_optlayers.core.compiler import compile_problem
from keras_optlayers.core.problems import (
    ProblemSpec,
    ellipsoid_projection_problem,
    lml_problem,
    optnet_qp_problem,
    softmax_problem,
    sparsemax_problem,
)
from keras_optlayers.solvers.cone_solver import ConeSolver

CONFIGS: dict[str, tuple[str, dict]] = {
    "SCS eps 1e-4 (SCS's default)": ("SCS", {"eps_abs": 1e-4, "eps_rel": 1e-4}),
    "SCS eps 1e-9 (ours)": ("SCS", {}),
    "ECOS 1e-8 (ECOS's default)": ("ECOS", {"abstol": 1e-8, "reltol": 1e-8, "feastol": 1e-8}),
    "ECOS 1e-11 (ours)": ("ECOS", {}),
    "Clarabel 1e-8 (Clarabel's default)": ("Clarabel", {"tol_gap_abs": 1e-8, "tol_gap_rel": 1e-8, "tol_feas": 1e-8}),
    "Clarabel 1e-12 (ours)": ("Clarabel", {}),
}
# ECOS has no PSD cone.
SKIP = {("nearest PSD matrix 4x4 (PSD)", config) for config in CONFIGS if config.startswith("ECOS")}
REFERENCE = dict(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
# Clarabel's exponential-cone solutions stay ~1e-6 off even at 1e-10
# (softmax against its closed form), too far for central differences; SCS at
# 1e-12 is within 1e-11 there.
REFERENCE_EXP = dict(solver=cp.SCS, eps_abs=1e-12, eps_rel=1e-12, max_iters=1_000_000)
FD_STEP = 1e-4


@dataclasses.dataclass
class Case:
    """A problem, its fixed parameter values, and a sampler of the batched first parameter."""

    name: str
    spec: ProblemSpec
    fixed: list[np.ndarray]  # values of parameters[1:]
    sample: Callable[[np.random.Generator, int], np.ndarray]
    reference: dict = dataclasses.field(default_factory=lambda: REFERENCE)


def cases() -> list[Case]:
    rng = np.random.default_rng(0)

    def ellipsoid_points(r, batch):
        # Half inside the ball of radius sqrt(2) (A = I, z = 0), half outside.
        directions = r.standard_normal((batch, 20))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        radii = np.where(np.arange(batch) % 2 == 0, r.uniform(0.2, 1.3, batch), r.uniform(1.6, 4.0, batch))
        return directions * radii[:, None]

    F = rng.standard_normal((30, 10))
    n_qp, eq, ineq = 10, 5, 5
    L = rng.standard_normal((n_qp, n_qp)) / np.sqrt(n_qp)
    A_eq = rng.standard_normal((eq, n_qp))
    G = rng.standard_normal((ineq, n_qp))
    z0 = rng.standard_normal(n_qp)
    def normal(size):
        return lambda r, batch: r.standard_normal((batch, size))

    least_squares = soc_least_squares(30, 10)
    return [
        Case("ellipsoid n=20 (SOC)", ellipsoid_projection_problem(20), [np.eye(20), np.zeros(20)], ellipsoid_points),
        Case("sparsemax n=20 (LP+SOC)", sparsemax_problem(20), [], normal(20)),
        Case("sparsemax n=100 (LP+SOC)", sparsemax_problem(100), [], normal(100)),
        Case("LML n=20 k=5 (exp)", lml_problem(20, 5.0), [], normal(20), REFERENCE_EXP),
        Case("softmax n=20 (exp)", softmax_problem(20), [], normal(20), REFERENCE_EXP),
        Case("SOC least squares 30x10", least_squares, [F], normal(30)),
        Case("OptNet QP n=10 (SOC form)", optnet_qp_problem(n_qp, eq, ineq),
             [L, A_eq, A_eq @ z0, G, G @ z0 + 1.0], normal(n_qp)),
        Case("nearest PSD matrix 4x4 (PSD)", nearest_psd(4), [], symmetric(4)),
    ]


def symmetric(k: int):
    def sample(r, batch):
        M = r.standard_normal((batch, k, k))
        return (M + np.swapaxes(M, 1, 2)) / 2

    return sample


def nearest_psd(k: int) -> ProblemSpec:
    """argmin_X ||X - P||_F s.t. X ⪰ 0 (for symmetric P: P's negative eigenvalues clipped)."""
    P = cp.Parameter((k, k), name="P")
    X = cp.Variable((k, k), name="X", symmetric=True)
    return ProblemSpec(cp.Problem(cp.Minimize(cp.sum_squares(X - P)), [X >> 0]), (P,), (X,))


def soc_least_squares(m: int, n: int) -> ProblemSpec:
    """argmin_w ||F w - g||₂ (not squared: a second-order cone)."""
    g = cp.Parameter(m, name="g")
    F = cp.Parameter((m, n), name="F")
    w = cp.Variable(n, name="w")
    return ProblemSpec(cp.Problem(cp.Minimize(cp.norm(F @ w - g, 2))), (g, F), (w,))


# -- numpy path: parameters -> data -> solve -> output, and back ---------------


class NumpyLayer:
    """The host path of CvxpyLayer, in numpy: data maps, ConeSolver, output map."""

    def __init__(self, case: Case, solver: str):
        self.case = case
        self.program = compile_problem(case.spec.problem, case.spec.parameters, case.spec.variables,
                                       quadratic=False)
        self.solver = ConeSolver(self.program, solver)
        self.output = self.program.outputs[0]
        assert self.output.source == "x" and not self.output.exp

    def data(self, inputs):
        theta = self.program.theta([inputs, *self.case.fixed])
        p = self.program
        return theta, (p.A.matrix @ theta.T).T, (p.b @ theta.T).T, (p.c @ theta.T).T

    def forward(self, inputs, settings):
        _, A_values, b, c = self.data(inputs)
        x, y, s, statuses, _ = self.solver.solve_with_status(A_values, b, c, settings)
        return self.read(x), (A_values, b, c, x, y, s), statuses

    def read(self, x):
        """The output (B, *shape) from x."""
        flat = x[:, self.output.indices]
        if self.output.scales is not None:
            flat = flat * self.output.scales
        return flat.reshape(-1, *self.output.shape)

    def backward(self, saved, weights, valid):
        A_values, b, c, x, y, s = saved
        dx = np.zeros_like(x)
        flat_weights = weights.reshape(len(weights), -1)
        if self.output.scales is not None:
            flat_weights = flat_weights * self.output.scales
        np.add.at(dx, (slice(None), self.output.indices), flat_weights)
        dA, db, dc = self.solver.adjoint(A_values, b, c, x, y, s, dx, np.zeros_like(y), np.zeros_like(s),
                                         valid=valid)
        p = self.program
        dtheta = dA @ p.A.matrix + db @ p.b + dc @ p.c
        return p.parameter_gradients(dtheta)[0]


def reference(case: Case, inputs: np.ndarray, weights: np.ndarray):
    """Tight Clarabel solutions and central-difference gradients of weights·y."""
    spec = case.spec
    for parameter, value in zip(spec.parameters[1:], case.fixed):
        parameter.value = value
    variable = spec.variables[0]

    def solve(point):
        spec.parameters[0].value = point
        spec.problem.solve(**case.reference)
        return np.array(variable.value)

    solutions, gradients = [], []
    for point, w in zip(inputs, weights):
        solutions.append(solve(point))
        gradient = np.zeros_like(point)
        for j in np.ndindex(point.shape):
            step = np.zeros_like(point)
            step[j] = FD_STEP
            gradient[j] = np.sum(w * (solve(point + step) - solve(point - step))) / (2 * FD_STEP)
        gradients.append(gradient)
    return np.array(solutions), np.array(gradients)


def measure(case: Case, examples: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(1)
    inputs = case.sample(rng, examples)
    weights = rng.standard_normal((examples, *case.spec.variables[0].shape))
    y_ref, g_ref = reference(case, inputs, weights)
    big = case.sample(rng, 128)
    big_weights = rng.standard_normal((128, *case.spec.variables[0].shape))
    rows = []
    for config, (solver, settings) in CONFIGS.items():
        if (case.name, config) in SKIP:
            continue
        layer = NumpyLayer(case, solver)
        y, saved, statuses = layer.forward(inputs, settings)
        ok = np.array([status == "solved" for status in statuses])
        g = layer.backward(saved, weights, ok)
        row = {"problem": case.name, "config": config, "ok": f"{ok.sum()}/{len(ok)}",
               "solution error": np.max(np.abs(y - y_ref)[ok], initial=0.0),
               "gradient error": np.max(np.abs(g - g_ref)[ok], initial=0.0),
               "failed": sorted({s.split(" (")[0] for s in statuses if s != "solved"})}
        for batch, (xs, ws) in {1: (big[:1], big_weights[:1]), 128: (big, big_weights)}.items():
            # Timed here, inside the loop: the closures bind this iteration's values as defaults.
            row[f"fwd b{batch} ms"] = 1e3 * median_seconds(
                lambda layer=layer, xs=xs, settings=settings: layer.forward(xs, settings), repeats)

            def forward_backward(layer=layer, xs=xs, ws=ws, settings=settings):
                _, saved, statuses = layer.forward(xs, settings)
                layer.backward(saved, ws, np.array([s == "solved" for s in statuses]))

            row[f"fwd+bwd b{batch} ms"] = 1e3 * median_seconds(forward_backward, repeats)
        # The check's share of a forward pass at batch 128.
        _, saved, _ = layer.forward(big, settings)
        checker = layer.solver._checker
        start = time.perf_counter()
        for _ in range(repeats):
            checker(*saved)
        row["check % of fwd b128"] = 100 * (time.perf_counter() - start) / repeats / (row["fwd b128 ms"] / 1e3)
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="run the problems whose name contains this")
    args = parser.parse_args()
    examples, repeats = (4, 3) if args.quick else (8, 5)
    rows = []
    for case in cases():
        if args.only in case.name:
            rows += measure(case, examples, repeats)
    columns = ["problem", "config", "ok", "solution error", "gradient error", "fwd b1 ms", "fwd+bwd b1 ms",
               "fwd b128 ms", "fwd+bwd b128 ms", "check % of fwd b128"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [f"{row[c]:.1e}" if "error" in c else f"{row[c]:.1f}" if isinstance(row[c], float) else str(row[c])
                 for c in columns]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

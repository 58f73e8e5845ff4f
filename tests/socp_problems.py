"""Small SOCP families for the native SOCP solver's tests and benchmark, through CVXPY.

Each builder returns a `ProblemSpec` (problem, parameters, variables) and a
function drawing a batch of parameter values. `SocpLayerFunction` applies a
compiled cone program with TF ops around `solve_compiled_socp`;
`clarabel_reference` solves the same problem example by example with
Clarabel at tight tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cvxpy as cp
import numpy as np
import tensorflow as tf

from keras_optlayers.core.compiler import compile_problem
from keras_optlayers.core.problems.ellipsoid import ellipsoid_projection_problem
from keras_optlayers.core.problems.spec import ProblemSpec
from keras_optlayers.ops.affine_maps import SparseMap, parameter_vector, read_output
from keras_optlayers.solvers.socp import solve_compiled_socp

TIGHT_CLARABEL = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}

Sampler = Callable[[np.random.Generator, int], list]


def ellipsoid(dim: int) -> tuple[ProblemSpec, Sampler]:
    """Projection of x onto {y: ½‖A(y − z)‖² ≤ 1}; half the points outside."""

    def sample(rng, batch):
        A = np.eye(dim) + 0.3 * rng.standard_normal((batch, dim, dim))
        z = 0.1 * rng.standard_normal((batch, dim))
        x = 2.0 * rng.standard_normal((batch, dim))
        return [x, A, z]

    return ellipsoid_projection_problem(dim), sample


def soc_least_squares(dim: int, rows: int) -> tuple[ProblemSpec, Sampler]:
    """min ‖F x − g‖₂ s.t. ‖x‖₂ ≤ 1, sum(x) = t (zero, nonneg-free, two SOCs)."""
    F = cp.Parameter((rows, dim), name="F")
    g = cp.Parameter(rows, name="g")
    t = cp.Parameter(name="t")
    x = cp.Variable(dim, name="x")
    problem = cp.Problem(cp.Minimize(cp.norm(F @ x - g, 2)), [cp.norm(x, 2) <= 1, cp.sum(x) == t])

    def sample(rng, batch):
        return [rng.standard_normal((batch, rows, dim)), 3.0 * rng.standard_normal((batch, rows)), 0.3 * rng.standard_normal(batch)]

    return ProblemSpec(problem, (F, g, t), (x,)), sample


def squared_least_squares(dim: int, rows: int) -> tuple[ProblemSpec, Sampler]:
    """min ½‖F x − g‖² s.t. ‖x‖₂ ≤ 1, sum(x) = t: a quadratic objective, an equality and a SOC."""
    F = cp.Parameter((rows, dim), name="F")
    g = cp.Parameter(rows, name="g")
    t = cp.Parameter(name="t")
    x = cp.Variable(dim, name="x")
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(F @ x - g)), [cp.norm(x, 2) <= 1, cp.sum(x) == t])

    def sample(rng, batch):
        return [rng.standard_normal((batch, rows, dim)), 3.0 * rng.standard_normal((batch, rows)), 0.3 * rng.standard_normal(batch)]

    return ProblemSpec(problem, (F, g, t), (x,)), sample


def robust_lp(dim: int, constraints: int) -> tuple[ProblemSpec, Sampler]:
    """min cᵀx s.t. aᵢᵀx + ‖Pᵢ x‖₂ ≤ bᵢ (ellipsoidal uncertainty in aᵢ), −1 ≤ x ≤ 1."""
    c = cp.Parameter(dim, name="c")
    a = cp.Parameter((constraints, dim), name="a")
    b = cp.Parameter(constraints, name="b")
    x = cp.Variable(dim, name="x")
    uncertainty = [0.3 * np.random.default_rng(100 + i).standard_normal((dim, dim)) for i in range(constraints)]
    robust = [a[i] @ x + cp.norm(uncertainty[i] @ x, 2) <= b[i] for i in range(constraints)]
    problem = cp.Problem(cp.Minimize(c @ x), robust + [x <= 1, x >= -1])

    def sample(rng, batch):
        return [rng.standard_normal((batch, dim)), rng.standard_normal((batch, constraints, dim)), 0.5 + rng.uniform(size=(batch, constraints))]

    return ProblemSpec(problem, (c, a, b), (x,)), sample


def mixed_norms(dim: int, rows: int) -> tuple[ProblemSpec, Sampler]:
    """min ‖F x − g‖₂ + ‖x₂: − h‖₂ s.t. ‖x:₂‖₂ ≤ 1, ‖x‖₂ ≤ 2, ‖F x‖₂ ≤ 3.

    Its SOC blocks come in sizes (rows + 1, 3, 3, dim + 1, rows + 1): not
    grouped by size, so the solver reorders them.
    """
    F = cp.Parameter((rows, dim), name="F")
    g = cp.Parameter(rows, name="g")
    h = cp.Parameter(dim - 2, name="h")
    x = cp.Variable(dim, name="x")
    objective = cp.norm(F @ x - g, 2) + cp.norm(x[2:] - h, 2)
    problem = cp.Problem(cp.Minimize(objective), [cp.norm(x[:2], 2) <= 1, cp.norm(x, 2) <= 2, cp.norm(F @ x, 2) <= 3])

    def sample(rng, batch):
        return [rng.standard_normal((batch, rows, dim)), 2.0 * rng.standard_normal((batch, rows)), rng.standard_normal((batch, dim - 2))]

    return ProblemSpec(problem, (F, g, h), (x,)), sample


class SocpLayerFunction:
    """parameters (batched, float64) -> requested variables, through the native SOCP solver.

    With `quadratic_objective`, the program keeps its objective's quadratic
    part as P (`compile_problem(..., quadratic_objective=True)`).
    """

    def __init__(self, spec: ProblemSpec, quadratic_objective: bool = False, **solve_args):
        self.program = compile_problem(spec.problem, spec.parameters, spec.variables, quadratic=False,
                                       quadratic_objective=quadratic_objective)
        selection = self.program.parameter_selection()
        self.A_map, self.b_map, self.c_map = (
            SparseMap(matrix @ selection) for matrix in (self.program.A.matrix, self.program.b, self.program.c))
        self.P_map = None if self.program.P is None else SparseMap(self.program.P.matrix @ selection)
        self.solve_args = solve_args

    def data(self, *parameters: tf.Tensor):
        """(A_values, b, c) of the cone program, (B, nnz), (B, m), (B, n), and P_values (B, nnz) or None."""
        vector = parameter_vector(self.program, list(parameters), tf.shape(parameters[0])[0])
        P_values = None if self.P_map is None else self.P_map(vector)
        return self.A_map(vector), self.b_map(vector), self.c_map(vector), P_values

    def __call__(self, *parameters: tf.Tensor) -> list[tf.Tensor]:
        A_values, b, c, P_values = self.data(*parameters)
        x, y, _, _, _ = solve_compiled_socp(self.program, A_values, b, c, P_values=P_values, **self.solve_args)
        return [read_output(output, x, y) for output in self.program.outputs]


def clarabel_reference(spec: ProblemSpec, values: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The requested variables, example by example, from Clarabel at tight tolerance."""
    batch = len(values[0])
    outputs = [np.zeros((batch, *v.shape)) for v in spec.variables]
    for i in range(batch):
        for parameter, value in zip(spec.parameters, values):
            parameter.value = value[i]
        spec.problem.solve(solver=cp.CLARABEL, **TIGHT_CLARABEL)
        for output, variable in zip(outputs, spec.variables):
            output[i] = variable.value
    return outputs

"""Shared helpers for the CvxpyLayer tests.

Run modes (eager or traced by tf.function), central finite differences,
reference solves through CVXPY, and small instances of each problem family
the layer must handle. Test modules import from here; nothing is copied.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import cvxpy as cp
import keras
import numpy as np
import tensorflow as tf

from keras_optlayers.core.problems import lml_problem, sparsemax_problem

# Tight enough that finite differences with a 1e-6 step see the solution map,
# not the solver's stopping rule.
TIGHT_SCS = {"eps": 1e-10, "max_iters": 100_000}
TIGHT_CLARABEL = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
REFERENCE_CLARABEL = dict(solver=cp.CLARABEL, **TIGHT_CLARABEL)


class Runner:
    """Calls a function eagerly, or traces it with tf.function first."""

    def __init__(self, eager: bool):
        self.eager = eager

    def __call__(self, function: Callable, *args):
        return function(*args) if self.eager else tf.function(function)(*args)



# -- gradients -------------------------------------------------------------


def weights_like(outputs: Sequence[np.ndarray], seed: int = 1) -> list[np.ndarray]:
    """Fixed random weights, one array per output, for a scalar test loss."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(np.shape(o)) for o in outputs]


def weighted_sum(outputs: Sequence[tf.Tensor], weights: Sequence[np.ndarray]) -> tf.Tensor:
    """sum_k <weights_k, outputs_k>: a scalar whose gradient is a generic VJP."""
    return tf.add_n([tf.reduce_sum(o * tf.constant(w, o.dtype)) for o, w in zip(outputs, weights)])


def loss_and_gradients(layer, weights, solver_args=None) -> Callable:
    """A function of the parameter tensors giving (loss, gradients), for `run`."""

    def compute(*tensors):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            loss = weighted_sum(layer(*tensors, solver_args=solver_args), weights)
        return loss, tape.gradient(loss, tensors)

    return compute


def central_differences(loss: Callable[[list[np.ndarray]], float], arrays: Sequence[np.ndarray],
                        step: float = 1e-6) -> list[np.ndarray]:
    """Gradient of `loss(arrays)` by central differences, entry by entry."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    gradients = []
    for array in arrays:
        gradient = np.zeros_like(array)
        flat, flat_gradient = array.reshape(-1), gradient.reshape(-1)  # views
        for j in range(flat.size):
            saved = flat[j]
            flat[j] = saved + step
            up = loss(arrays)
            flat[j] = saved - step
            down = loss(arrays)
            flat[j] = saved
            flat_gradient[j] = (up - down) / (2 * step)
        gradients.append(gradient)
    return gradients


def finite_difference_gradients(layer, weights, arrays, solver_args=None, step=1e-6) -> list[np.ndarray]:
    """Central differences of the weighted-sum loss through the layer's forward pass."""

    def loss(values):
        outputs = layer(*[tf.constant(v) for v in values], solver_args=solver_args)
        return float(weighted_sum(outputs, weights))

    return central_differences(loss, arrays, step)


# -- reference solves --------------------------------------------------------


def cvxpy_solve(problem: cp.Problem, parameters, values, variables, gp: bool = False) -> list[np.ndarray]:
    """CVXPY's own (Clarabel, tight) solution for one example."""
    for parameter, value in zip(parameters, values):
        parameter.value = np.asarray(value, dtype=np.float64)
    problem.solve(gp=gp, **REFERENCE_CLARABEL)
    assert problem.status == cp.OPTIMAL, problem.status
    return [np.array(v.value, dtype=np.float64) for v in variables]


def cvxpy_solve_batch(problem, parameters, values, variables, gp: bool = False) -> list[np.ndarray]:
    """`cvxpy_solve` for each example of batched values, stacked."""
    batch = len(values[0])
    solutions = [cvxpy_solve(problem, parameters, [v[i] for v in values], variables, gp) for i in range(batch)]
    return [np.stack([s[k] for s in solutions]) for k in range(len(variables))]


# -- problem families ---------------------------------------------------------


@dataclasses.dataclass
class Family:
    """A small parametrized problem and a sampler of well-posed parameter values.

    `sample(rng)` returns one example's values; the samplers keep problems
    feasible, bounded and nondegenerate, so the solution map is
    differentiable there and finite differences are meaningful.
    """

    name: str
    problem: cp.Problem
    parameters: tuple[cp.Parameter, ...]
    variables: tuple[cp.Variable, ...]
    sample: Callable[[np.random.Generator], list[np.ndarray]]
    gp: bool = False
    constraints: dict[str, cp.Constraint] = dataclasses.field(default_factory=dict)

    def sample_batch(self, rng: np.random.Generator, batch: int) -> list[np.ndarray]:
        examples = [self.sample(rng) for _ in range(batch)]
        return [np.stack([e[k] for e in examples]) for k in range(len(self.parameters))]


def least_squares(m: int = 5, n: int = 3) -> Family:
    """argmin_x ||Ax - b||²: x = (AᵀA)⁻¹Aᵀb."""
    A = cp.Parameter((m, n), name="A")
    b = cp.Parameter(m, name="b")
    x = cp.Variable(n, name="x")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b)))
    return Family("least_squares", problem, (A, b), (x,),
                  lambda rng: [rng.standard_normal((m, n)), rng.standard_normal(m)])


def least_squares_solution(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.solve(A.T @ A, A.T @ b)


def least_squares_gradients(A: np.ndarray, b: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of gᵀx(A, b) for x = (AᵀA)⁻¹Aᵀb.

    With w = (AᵀA)⁻¹g and r = b - Ax: d/db = Aw, d/dA = r wᵀ - (Aw) xᵀ.
    """
    x = least_squares_solution(A, b)
    w = np.linalg.solve(A.T @ A, g)
    return np.outer(b - A @ x, w) - np.outer(A @ w, x), A @ w


def inequality_qp(n: int = 3) -> Family:
    """OptNet's QP: min ½||Q_sqrt x||² + qᵀx s.t. Ax = b, Gx <= h.

    One equality and two inequalities; the sampler puts the unconstrained
    minimizer outside the first inequality, so it is active with a positive
    multiplier, and leaves the second inactive.
    """
    Q_sqrt = cp.Parameter((n, n), name="Q_sqrt")
    q = cp.Parameter(n, name="q")
    A = cp.Parameter((1, n), name="A")
    b = cp.Parameter(1, name="b")
    G = cp.Parameter((2, n), name="G")
    h = cp.Parameter(2, name="h")
    x = cp.Variable(n, name="x")
    equality = A @ x == b
    inequality = G @ x <= h
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(Q_sqrt @ x) + q @ x), [equality, inequality])

    def sample(rng):
        Q_value = np.eye(n) + 0.3 * rng.standard_normal((n, n))
        A_value = rng.standard_normal((1, n))
        b_value = rng.standard_normal(1)
        q_value = rng.standard_normal(n)
        # Equality-constrained minimizer x_eq: cut it off with the first
        # inequality, keep the second far away.
        P = Q_value.T @ Q_value
        kkt = np.block([[P, A_value.T], [A_value, np.zeros((1, 1))]])
        x_eq = np.linalg.solve(kkt, np.concatenate([-q_value, b_value]))[:n]
        G_value = rng.standard_normal((2, n))
        h_value = G_value @ x_eq + np.array([-0.5, 2.0])
        return [Q_value, q_value, A_value, b_value, G_value, h_value]

    return Family("inequality_qp", problem, (Q_sqrt, q, A, b, G, h), (x,), sample,
                  constraints={"equality": equality, "inequality": inequality})


def logistic_regression(m: int = 6, n: int = 2) -> Family:
    """min (1/m) Σ log(1 + exp(-zᵢᵀβ)) + λ||β||²: exponential cones.

    Z holds the label-signed features yᵢxᵢ (a product of two parameters is
    not DPP, so the data enter premultiplied).
    """
    Z = cp.Parameter((m, n), name="Z")
    lam = cp.Parameter(nonneg=True, name="lam")
    beta = cp.Variable(n, name="beta")
    objective = cp.sum(cp.logistic(-Z @ beta)) / m + lam * cp.sum_squares(beta)
    problem = cp.Problem(cp.Minimize(objective))
    return Family("logistic_regression", problem, (Z, lam), (beta,),
                  lambda rng: [rng.standard_normal((m, n)) + 0.5, np.array(0.1 + 0.1 * rng.random())])


def ellipsoid_projection(n: int = 2) -> Family:
    """The tutorial's ellipsoid projection: min ½||x - y||² s.t. ½||At||² <= 1, t = y - z.

    A second-order-cone program; the sampler puts x outside the ellipsoid.
    """
    A = cp.Parameter((n, n), name="A")
    z = cp.Parameter(n, name="z")
    x = cp.Parameter(n, name="x")
    y = cp.Variable(n, name="y")
    t = cp.Variable(n, name="t")
    constraints = [0.5 * cp.sum_squares(A @ t) <= 1, t == y - z]
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - y)), constraints)

    def sample(rng):
        A_value = np.eye(n) + 0.2 * rng.standard_normal((n, n))
        z_value = rng.standard_normal(n)
        direction = rng.standard_normal(n)
        x_value = z_value + 4.0 * direction / np.linalg.norm(direction)
        return [A_value, z_value, x_value]

    return Family("ellipsoid_projection", problem, (A, z, x), (y, t), sample)


def psd_projection(n: int = 3) -> Family:
    """min ||X - P||²_F s.t. X ⪰ 0: an SDP whose answer clips sym(P)'s eigenvalues.

    Also returns the PSD constraint's dual. The sampler keeps sym(P)'s
    eigenvalues away from 0, where the projection is not differentiable.
    """
    P = cp.Parameter((n, n), name="P")
    X = cp.Variable((n, n), symmetric=True, name="X")
    psd = X >> 0
    problem = cp.Problem(cp.Minimize(cp.sum_squares(X - P)), [psd])

    def sample(rng):
        basis, _ = np.linalg.qr(rng.standard_normal((n, n)))
        eigenvalues = np.linspace(-1.0, 1.5, n)
        skew = rng.standard_normal((n, n))
        return [basis @ np.diag(eigenvalues) @ basis.T + 0.1 * (skew - skew.T)]

    return Family("psd_projection", problem, (P,), (X, psd.dual_variables[0]), sample,
                  constraints={"psd": psd})


def psd_projection_solution(P: np.ndarray) -> np.ndarray:
    eigenvalues, vectors = np.linalg.eigh((P + P.T) / 2)
    return vectors @ np.diag(np.maximum(eigenvalues, 0)) @ vectors.T


def lml(n: int = 4, k: float = 2) -> Family:
    """The library's LML projection (exponential cones)."""
    spec = lml_problem(n, k)
    return Family("lml", spec.problem, spec.parameters, spec.variables,
                  lambda rng: [rng.standard_normal(n)])


def sparsemax(n: int = 4) -> Family:
    """The library's sparsemax (a QP, here solved as a cone program)."""
    spec = sparsemax_problem(n)
    return Family("sparsemax", spec.problem, spec.parameters, spec.variables,
                  lambda rng: [rng.standard_normal(n)])


def sparsemax_solution(x: np.ndarray) -> np.ndarray:
    """Sort-based sparsemax (Martins & Astudillo, 2016)."""
    z = np.sort(x)[::-1]
    cumulative = np.cumsum(z) - 1
    support = np.arange(1, x.size + 1)
    k = support[z - cumulative / support > 0][-1]
    return np.maximum(x - cumulative[k - 1] / k, 0)


def geometric_program() -> Family:
    """CVXPY's DGP example: min 1/(xyz) s.t. a(xy + xz + yz) <= b, x >= y^c."""
    x = cp.Variable(pos=True, name="x")
    y = cp.Variable(pos=True, name="y")
    z = cp.Variable(pos=True, name="z")
    a = cp.Parameter(pos=True, name="a")
    b = cp.Parameter(pos=True, name="b")
    c = cp.Parameter(name="c")
    constraints = [a * (x * y + x * z + y * z) <= b, x >= y**c]
    problem = cp.Problem(cp.Minimize(1 / (x * y * z)), constraints)
    return Family("geometric_program", problem, (a, b, c), (x, y, z),
                  lambda rng: [np.array(1.5 + rng.random()), np.array(1.0 + rng.random()),
                               np.array(0.3 + 0.4 * rng.random())], gp=True)


FAMILIES = {
    "least_squares": least_squares,
    "inequality_qp": inequality_qp,
    "logistic_regression": logistic_regression,
    "ellipsoid_projection": ellipsoid_projection,
    "psd_projection": psd_projection,
    "lml": lml,
    "sparsemax": sparsemax,
    "geometric_program": geometric_program,
}


# -- models ------------------------------------------------------------------


def between_dense_layers(layer, units: int) -> keras.Sequential:
    """Input (4,) -> Dense(3) -> `layer` -> Dense(units): a layer inside a trainable model."""
    return keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3),
        layer,
        keras.layers.Dense(units),
    ])


# -- process memory ---------------------------------------------------------


def resident_memory_kib() -> int:
    """This process's resident set size (VmRSS), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS not found in /proc/self/status")


def dense_data(data_map, theta: np.ndarray) -> np.ndarray:
    """The dense matrix a compiled `SparseDataMap` gives for one theta, in numpy."""
    dense = np.zeros(data_map.shape)
    np.add.at(dense, (data_map.rows, data_map.cols), data_map.matrix @ theta)
    return dense


def op_types_and_gradients(compute: Callable, values: Sequence[tf.Tensor]) -> tuple[set[str], list[tf.Tensor]]:
    """The op types of `compute`'s forward and backward graph (a sum of squares of its outputs), and its gradients."""

    @tf.function
    def forward_and_backward(*tensors):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            loss = tf.add_n([tf.reduce_sum(t * t) for t in compute(*tensors)])
        return tape.gradient(loss, tensors)

    graph = forward_and_backward.get_concrete_function(*values).graph
    return {op.type for op in graph.get_operations()}, list(forward_and_backward(*values))


def exact_sparsemax(x: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of x onto the simplex (sort-based closed form)."""
    x = np.atleast_2d(x)
    ordered = -np.sort(-x, axis=-1)
    cumulative = np.cumsum(ordered, axis=-1) - 1.0
    ranks = np.arange(1, x.shape[-1] + 1)
    support = np.sum(ordered - cumulative / ranks > 0, axis=-1)
    threshold = cumulative[np.arange(len(x)), support - 1] / support
    return np.maximum(x - threshold[:, None], 0.0)

"""A compiled CVXPY problem as one differentiable TensorFlow operation.

`ConvexProblemOp` is the engine behind `CvxpyLayer` and `ConvexLayer`: it
compiles the problem once, then each call checks the parameter tensors,
stacks them, maps them to solver data in TF ops, solves (native QP solver or
diffcp on the host) and reads back the requested variables.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import cvxpy as cp
import tensorflow as tf

from keras_optlayers.core import checks
from keras_optlayers.core.compiler import CompiledProblem, compile_problem
from keras_optlayers.ops import affine_maps
from keras_optlayers.ops.cone_solve import cone_solve
from keras_optlayers.solvers.cone_solver import ConeSolver, solver_name
from keras_optlayers.solvers.qp import qp_solve, qp_solve_with_status
from keras_optlayers.solvers.qp import status as qp_status
from keras_optlayers.xla_context import in_xla_context

QP_SOLVER = "QP"
QP_SETTINGS = ("tol", "max_iter")


class ConvexProblemOp:
    """Solves a parametrized CVXPY problem for a batch of parameter tensors.

    Args:
        problem: a DPP (or, with gp=True, DGP) `cvxpy.Problem`.
        parameters: all of the problem's parameters, in call order.
        variables: the variables (or constraint dual variables) to return.
        solver: None (native QP solver for small or dense QPs, see
            `compiler.prefers_dense_qp`, else SCS), "QP", "SCS",
            "ECOS" or "Clarabel".
        solver_args: default settings, overridden per call.
        gp: the problem is a geometric program.

    Raises:
        ValueError: for a problem, parameters or variables the op cannot
            handle (see `keras_optlayers.core.compiler.check_problem`).
    """

    def __init__(
        self,
        problem: cp.Problem,
        parameters: Sequence[cp.Parameter],
        variables: Sequence[cp.Variable],
        *,
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
        gp: bool = False,
    ):
        checks.check_solver_argument(solver)
        use_qp = None if solver is None else solver.upper() == QP_SOLVER
        if use_qp is False:
            solver_name(solver)  # reject unknown names before compiling
        self.program: CompiledProblem = compile_problem(
            problem, parameters, variables, gp=gp, quadratic=use_qp)
        self.solver_args = dict(solver_args or {})
        if self.program.kind == "qp":
            self.solver = QP_SOLVER
            self._cone_solver = None
        else:
            self._cone_solver = ConeSolver(self.program, "SCS" if solver is None else solver)
            self.solver = self._cone_solver.solver
        self._maps = {
            "c": affine_maps.SparseMap(self.program.c),
            "A": affine_maps.SparseMap(self.program.A.matrix),
            "b": affine_maps.SparseMap(self.program.b),
        }
        if self.program.P is not None:
            self._maps["P"] = affine_maps.SparseMap(self.program.P.matrix)
        self._functions: dict = {}  # compiled pieces for eager callers

    @property
    def supports_xla(self) -> bool:
        return self._cone_solver is None

    # -- input checks ------------------------------------------------------

    def _check_inputs(self, tensors):
        infos = self.program.parameters
        checks.check_parameter_count(infos, len(tensors))
        converted, batched = [], []
        for info, tensor in zip(infos, tensors):
            tensor = tf.convert_to_tensor(tensor)
            checks.check_floating(info, tensor.dtype.is_floating, tensor.dtype.name)
            converted.append(tensor)
            if checks.is_batched(info, tuple(tensor.shape)):
                batched.append((info.name, tensor))
        return converted, batched

    @staticmethod
    def _batch_size(batched):
        """The batch size: a python int when known statically, else a tensor."""
        if not batched:
            return 1
        static = [(name, t.shape[0]) for name, t in batched if t.shape[0] is not None]
        if static:
            return checks.common_batch_size(static)
        return tf.shape(batched[0][1])[0]

    def _checked(self, tensors, batched, batch_size):
        """NaN/Inf (and, in graphs, batch size) checks before any solve."""
        infos = self.program.parameters
        if tf.executing_eagerly():
            for info, tensor in zip(infos, tensors):
                if not bool(tf.reduce_all(tf.math.is_finite(tensor))):
                    raise ValueError(checks.non_finite_parameter_message(info))
            return tensors
        if in_xla_context():
            return tensors  # XLA compiles no assertions; the QP solver says so too
        assertions = [
            tf.debugging.assert_all_finite(t, checks.non_finite_parameter_message(info))
            for info, t in zip(infos, tensors)
        ]
        assertions += [
            tf.debugging.assert_equal(
                tf.shape(t)[0], batch_size,
                message=f"Batched parameters must share one batch size; '{name}' differs.")
            for name, t in batched
        ]
        with tf.control_dependencies(assertions):
            return [tf.identity(t) for t in tensors]

    # -- call --------------------------------------------------------------

    def __call__(self, *tensors, solver_args: Mapping[str, Any] | None = None) -> list[tf.Tensor]:
        """Solves for a batch; see `CvxpyLayer` for the conventions."""
        xla = in_xla_context()
        if xla and not self.supports_xla:
            raise ValueError(
                f"Solver '{self.solver}' runs on the host and cannot be compiled "
                "with XLA (jit_compile=True). Use jit_compile=False (or 'auto'), "
                "or solver='QP' for a quadratic program."
            )
        tensors, batched = self._check_inputs(tensors)
        out_dtype = tf.float64 if any(t.dtype == tf.float64 for t in tensors) else tf.float32
        tensors = [tf.cast(t, tf.float64) for t in tensors]
        tensors = self._checked(tensors, batched, self._batch_size(batched))
        settings = {**self.solver_args, **(solver_args or {})}

        # One compiled function per pattern of batched inputs: reduce_retracing
        # relaxes sizes, and must not relax ranks, which say what is batched.
        ranks = tuple(t.shape.rank for t in tensors)
        if not tf.executing_eagerly():
            # Under XLA no assertion compiles: statuses go unchecked there.
            outputs, _ = self._solve(tensors, settings, check_status=not xla)
        elif self._cone_solver is None:
            # Eager callers get graph speed: the whole QP path is one function,
            # traced once per input signature; the status is checked here.
            key = ("qp", ranks, *sorted(settings.items()))
            outputs, status = self._compiled(key, self._solve)(tensors, settings, check_status=False)
            qp_status.raise_for_status(status.numpy())
        else:
            # The affine steps run compiled; the host solve between them runs
            # as itself, so a SolverError reaches the caller unchanged.
            _, c, A_values, b = self._compiled(("data", ranks), self._solver_data)(tensors)
            x, y = self._solve_cone(A_values, b, c, settings)
            outputs = self._compiled(("read",), self._read_outputs)(x, y)
        if not batched:
            outputs = [o[0] for o in outputs]
        return [tf.cast(o, out_dtype) for o in outputs]

    def _solver_data(self, tensors):
        """Parameters (float64) -> theta and the solver's c, A values and b."""
        batched = [
            (info.name, t) for info, t in zip(self.program.parameters, tensors)
            if t.shape.rank == len(info.shape) + 1
        ]
        theta = affine_maps.stack_parameters(self.program, tensors, self._batch_size(batched))
        return theta, self._maps["c"](theta), self._maps["A"](theta), self._maps["b"](theta)

    def _read_outputs(self, x, y):
        """The requested variables (B, ...) from the solution."""
        return [affine_maps.read_output(o, x, y) for o in self.program.outputs]

    def _solve(self, tensors, settings, check_status):
        """Parameters (float64) -> requested variables (B, ...), QP status."""
        theta, c, A_values, b = self._solver_data(tensors)
        status = None
        if self._cone_solver is None:
            x, y, status = self._solve_qp(theta, A_values, b, c, settings, check_status)
        else:
            x, y = self._solve_cone(A_values, b, c, settings)
        return self._read_outputs(x, y), status

    def _solve_cone(self, A_values, b, c, settings):
        settings = dict(settings)
        mode = settings.pop("mode", "auto")
        x, y, _ = cone_solve(self._cone_solver, A_values, b, c, settings, mode)
        return x, y

    def _compiled(self, key, function):
        """`function` as a tf.function, traced once per input signature."""
        if key not in self._functions:
            self._functions[key] = tf.function(function, reduce_retracing=True, autograph=False)
        return self._functions[key]

    def _solve_qp(self, theta, A_values, b, c, settings, check_status):
        """The native QP solver on P, c and the rows of A, b split by cone."""
        unknown = sorted(set(settings) - set(QP_SETTINGS))
        if unknown:
            raise ValueError(
                f"The QP solver accepts the settings {list(QP_SETTINGS)}. "
                f"Received: solver_args with {unknown}"
            )
        program = self.program
        n, zero, rows = program.num_vars, program.cones.zero, program.num_rows
        if program.P is not None:
            P = affine_maps.scatter_dense(self._maps["P"](theta), program.P.rows, program.P.cols, (n, n))
        else:
            P = tf.zeros([tf.shape(theta)[0], n, n], tf.float64)
        A = affine_maps.scatter_dense(A_values, program.A.rows, program.A.cols, (rows, n))
        A_eq, b_eq = (A[:, :zero], b[:, :zero]) if zero else (None, None)
        G, h = (A[:, zero:], b[:, zero:]) if rows > zero else (None, None)
        if check_status:
            x, nu, lam = qp_solve(P, c, A_eq, b_eq, G, h, return_duals=True, **settings)
            status = None
        else:
            x, nu, lam, status = qp_solve_with_status(P, c, A_eq, b_eq, G, h, **settings)
        return x, tf.concat([nu, lam], axis=1), status

    def output_shapes(self, input_shapes) -> list[tuple]:
        """Output shapes for the given parameter shapes."""
        infos = self.program.parameters
        batch_dims = [s[0] for s, info in zip(input_shapes, infos) if len(s) == len(info.shape) + 1]
        if not batch_dims:
            return [o.shape for o in self.program.outputs]
        batch = next((d for d in batch_dims if d is not None), None)
        return [(batch,) + o.shape for o in self.program.outputs]

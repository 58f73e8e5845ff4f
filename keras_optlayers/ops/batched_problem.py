"""A compiled CVXPY problem solved for batches of TensorFlow tensors, differentiably.

`BatchedProblem` is the engine behind `CvxpyLayer` and every learnable
layer: it asks the solver registry which solver runs, compiles the problem
once, then each call checks the parameter tensors, forms the solver data
with the compiled affine maps, solves (a native solver in TF ops, or diffcp
on the host), applies the failure policy and reads back the requested
variables.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
from typing import Any, Callable, Mapping, Sequence

import cvxpy as cp
import numpy as np
import tensorflow as tf

from keras_optlayers.compiled_function import CompiledFunction
from keras_optlayers.core import checks, failure_policy
from keras_optlayers.core.auxiliary_variables import find_auxiliary_variables
from keras_optlayers.core.compiler import CompiledProblem, compile_problem
from keras_optlayers.core.dense_blocks import cone_blocks, qp_blocks
from keras_optlayers.ops import affine_maps, cone_reduction
from keras_optlayers.ops.cone_solve import cone_solve
from keras_optlayers.ops.qp_reduction import reduced_qp
from keras_optlayers.ops.solver_statistics import SolverStatistics
from keras_optlayers.solvers import registry, solution_replay
from keras_optlayers.solvers.cone_solver import ConeSolver
from keras_optlayers.solvers.cone_status import SOLVED
from keras_optlayers.solvers.qp import qp_solve_with_info
from keras_optlayers.solvers.qp import solve as qp_solve_module
from keras_optlayers.solvers.qp import status as qp_status
from keras_optlayers.solvers.shrinking_batch import is_small_batch, where_rows
from keras_optlayers.solvers.socp import socp_solve_with_info
from keras_optlayers.solvers.socp import solve as socp_solve_module
from keras_optlayers.solvers.socp import status as socp_status
from keras_optlayers.solvers.static_shapes import shared_batch_size
from keras_optlayers.xla_context import in_xla_context

# Eager calls run compiled functions, one per pattern of batched inputs (the
# native solvers' settings are tensor arguments of theirs); the oldest is
# dropped past this many.
COMPILED_FUNCTIONS_PER_PROBLEM = 8


class BatchedProblem:
    """Solves a parametrized CVXPY problem for a batch of parameter tensors.

    Args:
        problem: a DPP (or, with gp=True, DGP) `cvxpy.Problem`.
        parameters: all of the problem's parameters, in call order.
        variables: the variables (or constraint dual variables) to return.
        solver: None (chosen by the registry: see `keras_optlayers.solvers.registry`)
            or a registered solver's name.
        solver_args: default settings, checked here and overridden per call.
        gp: the problem is a geometric program.
        on_failure: "raise", "warn" or "nan" (see `CvxpyLayer`).

    Raises:
        ValueError: for a problem, parameters, variables, solver or settings
            the op cannot handle, before anything is solved.
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
        on_failure: str = "raise",
    ):
        entry, settings = registry.check_solver_and_settings(solver, solver_args)
        self.on_failure = failure_policy.check_on_failure(on_failure)
        quadratic = None if entry is None else entry.program == "qp"
        self.program: CompiledProblem = compile_problem(problem, parameters, variables, gp=gp, quadratic=quadratic)
        if entry is None:
            # QPs the QP solver does not take are larger than any the native SOCP solver
            # would (`compiler.AUTO_QP_SMALL_VARIABLES`, `registry.NATIVE_SOCP_MAX_SIZE`).
            entry = registry.QP if self.program.kind == "qp" else registry.default_cone_solver(self.program)
        if entry is registry.SOCP and not problem.objective.expr.is_affine():
            # The native SOCP solver takes a quadratic objective as it is: written
            # as a cone it costs a variable and a cone of n + 2 rows, and the
            # ellipsoid projection's solve took 3x longer that way.
            self.program = compile_problem(problem, parameters, variables, gp=gp, quadratic=False,
                                           quadratic_objective=True)
        self.solver: registry.SolverEntry = entry
        self.settings = registry.translate_settings(entry, settings)
        # The host path's solver; None when a native solver (QP, SOCP) runs in TF ops.
        self._cone_solver = None if entry.runs_in_xla else ConeSolver(self.program, entry.name)
        self._status_report = {"QP": qp_status.REPORT, "SOCP": socp_status.REPORT}.get(entry.name)
        outputs = self.program.outputs
        if self._cone_solver is None:
            # The native solvers solve for the variables CVXPY's auxiliary
            # ones depend on, their data straight from the parameters as
            # dense blocks; their solution is read through the layout's orders.
            blocks = qp_blocks if entry is registry.QP else cone_blocks
            layout = blocks(self.program, find_auxiliary_variables(self.program))
            self._blocks = affine_maps.BlockMaps(layout)
            order = {"x": layout.x_order, "y": layout.y_order}
            outputs = tuple(dataclasses.replace(o, indices=order[o.source][o.indices]) for o in outputs)
            if entry is registry.SOCP:
                self._reduced_cones = cone_reduction.reduced_layout(
                    layout, socp_solve_module.cone_layout(self.program.cones))
        else:
            selection = self.program.parameter_selection()
            self._maps = {
                "c": affine_maps.SparseMap(self.program.c @ selection),
                "A": affine_maps.SparseMap(self.program.A.matrix @ selection),
                "b": affine_maps.SparseMap(self.program.b @ selection),
            }
        # Where each requested variable is read from the solver's solution.
        self._outputs = outputs
        self._functions: collections.OrderedDict[tuple, Callable] = collections.OrderedDict()
        self._default_setting_values: tuple[tuple, list[tf.Tensor]] | None = None
        self.statistics = SolverStatistics()

    # -- input checks ------------------------------------------------------

    def _check_inputs(self, tensors) -> tuple[list[tf.Tensor], list[bool], Any]:
        """Converted tensors, which are batched, and the batch size (int or tensor)."""
        converted = []
        for info, tensor in zip(self.program.parameters, tensors):
            if isinstance(tensor, (tf.RaggedTensor, tf.SparseTensor)):
                raise ValueError(
                    f"Parameter '{info.name}' must be a dense tensor; convert ragged or sparse "
                    f"tensors first. Received: {type(tensor).__name__}")
            converted.append(tf.convert_to_tensor(tensor))
        batched, batch_size = checks.check_parameter_tensors(
            self.program.parameters,
            [(tuple(t.shape), t.dtype.is_floating, t.dtype.name) for t in converted])
        if batch_size is None:
            batch_size = tf.shape(next(t for t, b in zip(converted, batched) if b))[0]
        return converted, batched, batch_size

    def _checked(self, tensors, batched, batch_size):
        """NaN/Inf (and, in graphs, batch size) checks before any solve."""
        infos = self.program.parameters
        if tf.executing_eagerly():
            # In numpy: a few eager TF ops per parameter cost more than the batch-1 solve's own work.
            for info, tensor in zip(infos, tensors):
                value = tensor.numpy()
                if not np.isfinite(value).all():
                    raise ValueError(f"{checks.non_finite_parameter_message(info)} Received: {info.name}={value!r}")
                if info.log and not (value > 0).all():
                    raise ValueError(
                        f"{checks.non_positive_parameter_message(info)} Received: {info.name} with minimum "
                        f"{value.min()}")
            return tensors
        if in_xla_context():
            return tensors  # XLA compiles no assertions
        assertions = [
            tf.debugging.assert_all_finite(t, checks.non_finite_parameter_message(info))
            for info, t in zip(infos, tensors)
        ]
        assertions += [
            tf.debugging.assert_positive(t, message=checks.non_positive_parameter_message(info))
            for info, t in zip(infos, tensors) if info.log
        ]
        assertions += [
            tf.debugging.assert_equal(
                tf.shape(t)[0], batch_size,
                message=f"Batched parameters must share one batch size; '{info.name}' differs.")
            for info, t, b in zip(infos, tensors, batched) if b
        ]
        with tf.control_dependencies(assertions):
            return [tf.identity(t) for t in tensors]

    # -- call --------------------------------------------------------------

    def call_settings(self, solver_args: Mapping[str, Any] | None) -> dict[str, Any]:
        """The settings of one call: the defaults, overridden by `solver_args`."""
        if not solver_args:
            return self.settings
        return {**self.settings, **registry.translate_settings(self.solver, registry.check_settings(solver_args))}

    def __call__(self, *tensors, solver_args: Mapping[str, Any] | None = None,
                 layer_name: str | None = None) -> list[tf.Tensor]:
        """Solves for a batch; see `CvxpyLayer` for the conventions."""
        if in_xla_context() and not self.solver.runs_in_xla:
            raise ValueError(
                f"Solver '{self.solver.name}' runs on the host and cannot be compiled "
                "with XLA (jit_compile=True). Use jit_compile=False (or 'auto'), "
                "or a native solver (solver='QP' for a quadratic program).")
        settings = self.call_settings(solver_args)
        checked, batched, batch_size = self._check_inputs(tensors)
        out_dtype = _result_dtype([t.dtype for t in checked])
        if isinstance(batch_size, int) and batch_size == 0:
            outputs = [tf.zeros([0, *o.shape], out_dtype) for o in self.program.outputs]
            return outputs if any(batched) else [o[0] for o in outputs]
        checked = [tf.cast(t, tf.float64) for t in checked]
        checked = self._checked(checked, batched, batch_size)
        ranks = tuple(t.shape.rank for t in checked)
        if tf.executing_eagerly() and self._cone_solver is None:
            outputs, failed, describe = self._solve_native_eagerly(checked, settings, ranks, is_small_batch(batch_size))
        else:
            if not tf.executing_eagerly():
                outputs, failed, describe, info = self._solve(checked, settings, layer_name)
            else:
                # The affine steps run compiled; the host solve between them runs
                # as itself, so a SolverError reaches the caller unchanged.
                data = self._compiled(("data", ranks), lambda: CompiledFunction(self._solver_data))(checked)
                x, y, failed, describe, info = self._timed(self._solve_cone, data, settings, layer_name)
                outputs = self._compiled(("read",), lambda: CompiledFunction(self._read_outputs))(x, y)
            self.statistics.record(failed, info["iterations"], info["residual"], info["seconds"])
        outputs = self._apply_failure_policy(outputs, failed, describe, layer_name)
        if not any(batched):
            outputs = [o[0] for o in outputs]
        return [tf.cast(o, out_dtype) for o in outputs]

    def _solve_native_eagerly(self, tensors, settings, ranks, small_batch: bool):
        """`_solve` for eager callers, at graph speed, differentiable.

        A `solution_replay.CompiledSolve` per pattern of batched inputs, its
        statistics recorded in its forward graph. The settings are tensor
        arguments of it, not part of its key: a graph traced per setting
        keeps about 11 MiB that TensorFlow never frees (its gradient
        registrations hold the graph), 2.3 GB after 200 calls with distinct
        `tol` (benchmarks/settings_memory.py). A small batch
        (`small_batch`) gets traces of its own, static down to the loop.

        Returns:
            The outputs, the failed mask and the failure description.
        """
        compiled = self._compiled(("native", ranks), self._compiled_native_solve)
        *outputs, failed, describe, _ = compiled(tensors, self._setting_values(settings), small_batch=small_batch)
        return outputs, failed, describe

    def _setting_values(self, settings: Mapping[str, Any]) -> list[tf.Tensor]:
        """The native solver's settings as the tensors its compiled solve takes (the defaults' made once)."""
        specs = _NATIVE_SETTINGS[self.solver.name]
        key = tuple(settings.get(name, default) for name, default, _ in specs)
        if self._default_setting_values is not None and key == self._default_setting_values[0]:
            return self._default_setting_values[1]
        values = [tf.constant(value, dtype) for value, (_, _, dtype) in zip(key, specs)]
        if settings is self.settings:
            self._default_setting_values = (key, values)
        return values

    def _compiled_native_solve(self) -> solution_replay.CompiledSolve:
        """`_solve` as a CompiledSolve of (parameters, setting values): outputs, then failed, describe, info."""
        count = len(self.program.outputs)
        names = [name for name, _, _ in _NATIVE_SETTINGS[self.solver.name]]

        def solve(inputs, values):
            outputs, failed, describe, info = self._solve(inputs, dict(zip(names, values)))
            return (*outputs, failed, describe, info)

        def record(results):
            failed, _, info = results[count:]
            self.statistics.record(failed, info["iterations"], info["residual"], info["seconds"])

        return solution_replay.CompiledSolve(solve, count, after=record)

    def _compiled(self, key: tuple, make: Callable[[], Callable]) -> Callable:
        """The compiled function `make()` builds for `key`; at most COMPILED_FUNCTIONS_PER_PROBLEM kept."""
        if key in self._functions:
            self._functions.move_to_end(key)
        else:
            self._functions[key] = make()
            if len(self._functions) > COMPILED_FUNCTIONS_PER_PROBLEM:
                self._functions.popitem(last=False)
        return self._functions[key]

    def _parameter_vector(self, tensors):
        """Parameters (float64) -> the parameter vector (B, entries + 1) every map reads."""
        batched = [t for info, t in zip(self.program.parameters, tensors) if t.shape.rank > len(info.shape)]
        return affine_maps.parameter_vector(self.program, tensors, shared_batch_size(batched))

    def _solver_data(self, tensors):
        """Parameters (float64) -> the cone program's data {c, A, b}, each (B, ...)."""
        parameters = self._parameter_vector(tensors)
        return {name: sparse_map(parameters) for name, sparse_map in self._maps.items()}

    def _read_outputs(self, x, y):
        """The requested variables (B, ...) from the solution."""
        return [affine_maps.read_output(o, x, y) for o in self._outputs]

    def _solve(self, tensors, settings, layer_name=None):
        """Parameters (float64) -> requested variables, failed mask, failure description, info."""
        if self._cone_solver is None:
            data = {"parameters": self._parameter_vector(tensors)}
            solve = self._solve_qp if self.solver is registry.QP else self._solve_socp
        else:
            data, solve = self._solver_data(tensors), self._solve_cone
        x, y, failed, describe, info = self._timed(solve, data, settings, layer_name)
        return self._read_outputs(x, y), failed, describe, info

    @staticmethod
    def _timed(solve, data, settings, layer_name):
        """`solve(data, settings, layer_name)`, its info completed with the wall time it took."""
        if in_xla_context():  # XLA has no clock op
            x, y, failed, describe, info = solve(data, settings, layer_name)
            return x, y, failed, describe, {**info, "seconds": tf.constant(0.0, tf.float64)}
        with tf.control_dependencies(list(data.values())):
            start = tf.timestamp()
        x, y, failed, describe, info = solve(data, settings, layer_name)
        with tf.control_dependencies([x, y]):
            end = tf.timestamp()
        return x, y, failed, describe, {**info, "seconds": end - start}

    def _solve_cone(self, data, settings, layer_name):
        """The host solver (diffcp) on the compiled cone program."""
        settings = dict(settings)
        mode = settings.pop("mode", "auto")
        x, y, _, status, info = cone_solve(
            self._cone_solver, data["A"], data["b"], data["c"], settings, mode,
            raise_on_failure=self.on_failure == "raise", layer_name=layer_name)
        return x, y, tf.not_equal(status, SOLVED), status, info

    def _native_data(self, parameters, failed_rows):
        """The dense blocks, their gradient zeroed where `failed_rows` will say the solve failed.

        Every gradient into the parameters passes through the blocks.
        """
        blocks = self._blocks(parameters)
        return dict(zip(blocks, _without_gradient_where(failed_rows, *blocks.values())))

    def _solve_qp(self, data, settings, layer_name=None):
        """The native QP solver on the dense blocks of the parameters, auxiliary variables substituted out."""
        settings = {key: settings[key] for key in self.solver.settings if key in settings}
        failed_rows: list[tf.Tensor] = []
        qp, restore = reduced_qp(self._blocks.layout, self._native_data(data["parameters"], failed_rows))
        x, nu, lam, status, info = qp_solve_with_info(*qp, **settings)
        failed = tf.not_equal(status, qp_status.SOLVED)
        failed_rows.append(failed)
        x, y = restore(x, nu, lam)
        return x, y, failed, status, _largest_measure(info)

    def _solve_socp(self, data, settings, layer_name=None):
        """The native SOCP solver on the dense blocks of the parameters, auxiliary variables substituted out."""
        settings = {key: settings[key] for key in self.solver.settings if key in settings}
        failed_rows: list[tf.Tensor] = []
        program, restore = cone_reduction.reduced_cone_program(
            self._blocks.layout, self._native_data(data["parameters"], failed_rows))
        A, b, c, P = program
        x, y, _, status, info = socp_solve_with_info(A, b, c, self._reduced_cones, P=P, **settings)
        failed = tf.not_equal(status, socp_status.SOLVED)
        failed_rows.append(failed)
        x, y = restore(x, y)
        return x, y, failed, status, _largest_measure(info)

    # -- failures ------------------------------------------------------------

    def _failures(self, describe) -> dict[str, list[int]]:
        """{status name: batch indices} of the failed examples (eager)."""
        if self._status_report is not None:
            return self._status_report.failures_by_status(describe.numpy())
        return failure_policy.failures_by_status([name.decode() for name in describe.numpy()], SOLVED)

    def _apply_failure_policy(self, outputs, failed, describe, layer_name):
        """Raises, or warns and masks, for the failed examples (see `on_failure`)."""
        if tf.executing_eagerly():
            if failed.numpy().any():
                failure_policy.handle_failures(self.on_failure, self.solver.name, self._failures(describe), layer_name)
        elif self.on_failure == "raise":
            if self._status_report is not None and not in_xla_context():
                with tf.control_dependencies([self._status_report.assert_solved(describe, layer_name)]):
                    outputs = [tf.identity(o) for o in outputs]
            # The host path raised in its own callback; XLA compiles no assertion.
        elif not in_xla_context():
            message = f"{layer_name or 'keras_optlayers'}: {self.solver.name} failed at batch indices"
            report = tf.cond(
                tf.reduce_any(failed),
                lambda: tf.print("WARNING:", message, tf.where(failed)[:, 0],
                                 f"({failure_policy.EFFECTS[self.on_failure]})", output_stream=sys.stderr),
                lambda: tf.no_op())
            with tf.control_dependencies([report]):
                outputs = [tf.identity(o) for o in outputs]
        return [_mask_failed(o, failed, self.on_failure) for o in outputs]


# Each native solver's settings as (name, default, dtype), passed to its
# compiled eager solve as tensors.
_NATIVE_SETTINGS = {
    "QP": (("tol", qp_solve_module.DEFAULT_TOL, tf.float64), ("max_iter", qp_solve_module.DEFAULT_MAX_ITER, tf.int32)),
    "SOCP": (("tol", socp_solve_module.DEFAULT_TOL, tf.float64),
             ("max_iter", socp_solve_module.DEFAULT_MAX_ITER, tf.int32)),
}


def _result_dtype(dtypes: Sequence[tf.DType]) -> tf.DType:
    """The inputs' widest floating dtype: float64, float32, or (mixed precision) float16/bfloat16."""
    for wide in (tf.float64, tf.float32):
        if wide in dtypes:
            return wide
    return dtypes[0]


def _largest_measure(info: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """A native solver's info as {"iterations", "residual"}: the largest of its check's relative measures."""
    measures = [value for name, value in info.items() if name != "iterations"]
    return {"iterations": info["iterations"], "residual": tf.reduce_max(tf.stack(measures), axis=0)}


def _mask_failed(output: tf.Tensor, failed: tf.Tensor, on_failure: str) -> tf.Tensor:
    """NaN (on_failure="nan") or frozen (="warn") outputs with zero gradients where failed."""
    if on_failure == "raise":
        return output
    replacement = tf.fill(tf.shape(output), tf.constant(float("nan"), output.dtype)) if on_failure == "nan" \
        else tf.stop_gradient(output)
    return where_rows(failed, replacement, output)


def _without_gradient_where(failed_rows: list[tf.Tensor], *tensors):
    """Identity on `tensors` whose gradient is zeroed in the rows of failed examples.

    The failed mask is only known after the solve, so it is read from
    `failed_rows` (filled in by then) when the gradient runs: a failed
    example's KKT system can be singular, and its gradient must not spread
    NaN into shared parameters.
    """
    present = [t for t in tensors if t is not None]

    @tf.custom_gradient
    def identity(*values):
        def gradient(*upstream):
            failed = failed_rows[0]
            return [where_rows(failed, tf.zeros_like(g), g) for g in upstream]
        return list(values), gradient

    passed = iter(identity(*present))
    return [None if t is None else next(passed) for t in tensors]

"""`CvxpyLayer`: any DPP problem written in CVXPY as a torch module."""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import cvxpy as cp
import torch

from keras_optlayers.core import checks, failure_policy
from keras_optlayers.core.compiler import CompiledProblem, compile_problem
from keras_optlayers.solvers import registry
from keras_optlayers.solvers.cone_solver import ConeSolver
from keras_optlayers.solvers.cone_status import SOLVED
from keras_optlayers.torch import affine_maps
from keras_optlayers.torch.cone_function import cone_solve


class CvxpyLayer(torch.nn.Module):
    """A differentiable module that solves a parametrized convex problem.

    The torch front end of the Keras `CvxpyLayer`, with cvxpylayers' torch
    calling convention. The problem is compiled once, at construction, into
    affine maps around a cone program: each call stacks the parameter
    tensors, maps them to solver data for the whole batch in torch ops,
    solves with diffcp's solvers on the host (float64, CPU) and reads the
    requested variables from the solution. Gradients come from implicit
    differentiation of the cone program's optimality conditions.

    Args:
        problem: a `cvxpy.Problem` that is DPP (or DGP and DPP, with gp=True).
        parameters: the problem's `cp.Parameter`s, all of them, in the order
            the module is called with.
        variables: the `cp.Variable`s to return, in order; a constraint's dual
            variable (`constraint.dual_variables[k]`) returns its dual value.
        solver: None (the registry's default cone solver), "SCS", "ECOS" or
            "Clarabel". (The native QP solver is TensorFlow-only.)
        solver_args: default settings for every call, checked here: the
            solver's own settings (e.g. `eps`, `max_iters` for SCS) and `mode`
            ("auto", "dense" or "lsqr") for the derivative; accuracy targets
            and iteration limits are translated to the solver that runs.
        gp: the problem is a geometric program (CVXPY's DGP); parameters must
            be positive.
        on_failure: "raise" (default), "warn" or "nan": what a failed solve
            does (`SolverError`; or a warning, with the failed examples'
            outputs left as zeros or set to NaN, and zero gradients).

    Call arguments:
        *tensors: one tensor per parameter, of the parameter's shape or with
            one leading batch dimension. Unbatched tensors are shared by the
            batch (their gradient is summed over it).
        solver_args: settings for this call, overriding the defaults.

    Input shape:
        Each tensor: the parameter's shape, or (batch_size, *shape).

    Output shape:
        A tuple with one tensor per requested variable, of the variable's
        shape, with a leading batch dimension whenever an input had one. The
        dtype is the inputs' promoted floating dtype (float64 if any input is
        float64) and the device that of the inputs; the solve runs in float64
        on the CPU.

    Raises:
        ValueError: at construction, for a problem that is not DPP, parameters
            that are not exactly the problem's, variables not in it, or an
            unknown solver or setting; at call time, for a wrong number of
            tensors, a missing or non-tensor value, a wrong shape or dtype,
            inconsistent batch sizes or NaN/Inf values, before any solve.
        SolverError: when a solve fails (infeasible, unbounded, iteration
            limit...), naming the status and the batch indices.

    Example:

    >>> import cvxpy as cp
    >>> import torch
    >>> x = cp.Parameter(3)
    >>> y = cp.Variable(3)
    >>> problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [y >= 0])
    >>> relu = CvxpyLayer(problem, parameters=[x], variables=[y])
    >>> y_value, = relu(torch.tensor([[-1.0, 0.5, 2.0]]))
    >>> y_value.round(decimals=3) + 0.0  # (+ 0.0 turns a solver's -0.0 into 0.0)
    tensor([[0.0000, 0.5000, 2.0000]])
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
        super().__init__()
        entry = self.check_arguments(solver, solver_args, on_failure)
        settings = dict(solver_args or {})
        self.problem = problem
        self.on_failure = on_failure
        self.program: CompiledProblem = compile_problem(problem, parameters, variables, gp=gp, quadratic=False)
        self._entry = entry or registry.default_cone_solver(self.program, native=False)
        self.solver_args = registry.translate_settings(self._entry, settings)
        self._cone_solver = ConeSolver(self.program, self._entry.name)
        # Constants of the problem, not state: plain attributes, kept on the CPU.
        self._maps = {
            name: affine_maps.sparse_constant(matrix)
            for name, matrix in (("c", self.program.c), ("A", self.program.A.matrix), ("b", self.program.b))
        }

    @staticmethod
    def check_arguments(solver: str | None = None, solver_args: Mapping[str, Any] | None = None,
                        on_failure: str = "raise") -> registry.SolverEntry | None:
        """Checks the solver arguments; returns the solver they select, if any."""
        entry, _ = registry.check_solver_and_settings(solver, solver_args)
        if entry is not None and (entry.program != "cone" or entry.runs_in_xla):
            raise ValueError(
                f"The torch front end solves with diffcp's solvers {registry.cone_solver_names()}; "
                f"solver '{entry.name}' runs in TensorFlow. Received: solver={solver!r}")
        failure_policy.check_on_failure(on_failure)
        return entry

    @property
    def solver(self) -> str:
        """The name of the solver that runs."""
        return self._entry.name

    def _check_inputs(self, tensors) -> tuple[list[torch.Tensor], bool, int]:
        """Converts and checks the inputs; returns them, whether batched, and the batch size."""
        infos = self.program.parameters
        converted = []
        for info, tensor in zip(infos, tensors):
            if not isinstance(tensor, (torch.Tensor, int, float)) and not hasattr(tensor, "__array__"):
                raise ValueError(
                    f"Parameter '{info.name}' must be a tensor of shape {info.shape} or "
                    f"(batch_size, *{info.shape}). Received: {info.name}={tensor!r}")
            converted.append(torch.as_tensor(tensor))
        batched, batch_size = checks.check_parameter_tensors(
            infos, [(tuple(t.shape), t.is_floating_point(), str(t.dtype).replace("torch.", "")) for t in converted])
        for info, tensor in zip(infos, converted):
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(checks.non_finite_parameter_message(info))
            if info.log and not bool((tensor > 0).all()):
                raise ValueError(f"{checks.non_positive_parameter_message(info)} Received: {info.name} with "
                                 f"minimum {float(tensor.min())}")
        return converted, any(batched), batch_size or 1

    def forward(self, *tensors: torch.Tensor, solver_args: Mapping[str, Any] | None = None) -> tuple[torch.Tensor, ...]:
        checked, batched, batch_size = self._check_inputs(tensors)
        out_dtype = functools.reduce(torch.promote_types, [t.dtype for t in checked])
        device = checked[0].device
        on_host = [t.to(device="cpu", dtype=torch.float64) for t in checked]

        settings = {**self.solver_args,
                    **registry.translate_settings(self._entry, registry.check_settings(solver_args))}
        derivative_mode = settings.pop("mode", "auto")
        theta = affine_maps.stack_parameters(self.program, on_host, batch_size)
        A_values, b, c = (affine_maps.apply_map(self._maps[name], theta) for name in ("A", "b", "c"))
        x, y, _, statuses = cone_solve(self._cone_solver, A_values, b, c, settings, derivative_mode)
        failures = failure_policy.failures_by_status(statuses, SOLVED)
        failure_policy.handle_failures(self.on_failure, self.solver, failures, type(self).__name__)

        outputs = [affine_maps.read_output(o, x, y) for o in self.program.outputs]
        if failures and self.on_failure == "nan":
            failed = torch.tensor([status != SOLVED for status in statuses])
            outputs = [torch.where(failed.reshape(-1, *[1] * (o.dim() - 1)), torch.nan, o) for o in outputs]
        if not batched:
            outputs = [o[0] for o in outputs]
        return tuple(o.to(device=device, dtype=out_dtype) for o in outputs)

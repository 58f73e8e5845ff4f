"""`CvxpyLayer`: any DPP problem written in CVXPY as a torch module."""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import cvxpy as cp
import torch

from keras_optlayers.core import checks
from keras_optlayers.core.compiler import CompiledProblem, compile_problem
from keras_optlayers.solvers.cone_solver import ConeSolver
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
            variable (`constraint.dual_variables[0]`) returns its dual value.
        solver: None (SCS), "SCS", "ECOS" or "Clarabel".
        solver_args: default settings for every call: keyword arguments of the
            solver (e.g. `eps`, `max_iters` for SCS) and `mode` ("auto",
            "dense" or "lsqr") for the derivative.
        gp: the problem is a geometric program (CVXPY's DGP); parameters must
            be positive.

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
            that are not exactly the problem's, or variables not in it; at
            call time, for a wrong number of tensors, a wrong shape or dtype,
            inconsistent batch sizes or NaN/Inf values, before any solve.
        SolverError: when a solve fails (infeasible, unbounded, iteration
            limit...), naming the status and the batch indices.

    Example:

    >>> import cvxpy as cp
    >>> x = cp.Parameter(3)
    >>> y = cp.Variable(3)
    >>> problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [y >= 0])
    >>> relu = CvxpyLayer(problem, parameters=[x], variables=[y])
    >>> y_value, = relu(torch.tensor([[-1.0, 0.5, 2.0]]))
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
        super().__init__()
        checks.check_solver_argument(solver)
        self.problem = problem
        self.program: CompiledProblem = compile_problem(
            problem, parameters, variables, gp=gp, quadratic=False)
        self._cone_solver = ConeSolver(self.program, "SCS" if solver is None else solver)
        self.solver_args = dict(solver_args or {})
        # Constants of the problem, not state: plain attributes, kept on the CPU.
        self._maps = {
            name: affine_maps.sparse_constant(matrix)
            for name, matrix in (("c", self.program.c), ("A", self.program.A.matrix), ("b", self.program.b))
        }

    @property
    def solver(self) -> str:
        return self._cone_solver.solver

    def _check_inputs(self, tensors) -> tuple[list[torch.Tensor], int | None]:
        """Converts and checks the inputs; returns them and the batch size (None if unbatched)."""
        infos = self.program.parameters
        checks.check_parameter_count(infos, len(tensors))
        converted, batch_sizes = [], []
        for info, tensor in zip(infos, tensors):
            tensor = torch.as_tensor(tensor)
            checks.check_floating(info, tensor.is_floating_point(), str(tensor.dtype).replace("torch.", ""))
            if checks.is_batched(info, tuple(tensor.shape)):
                batch_sizes.append((info.name, tensor.shape[0]))
            converted.append(tensor)
        batch_size = checks.common_batch_size(batch_sizes) if batch_sizes else None
        for info, tensor in zip(infos, converted):
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(checks.non_finite_parameter_message(info))
        return converted, batch_size

    def forward(self, *tensors: torch.Tensor, solver_args: Mapping[str, Any] | None = None) -> tuple[torch.Tensor, ...]:
        tensors, batch_size = self._check_inputs(tensors)
        out_dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors])
        device = tensors[0].device
        tensors = [t.to(device="cpu", dtype=torch.float64) for t in tensors]

        settings = {**self.solver_args, **(solver_args or {})}
        derivative_mode = settings.pop("mode", "auto")
        theta = affine_maps.stack_parameters(self.program, tensors, batch_size or 1)
        A_values, b, c = (affine_maps.apply_map(self._maps[name], theta) for name in ("A", "b", "c"))
        x, y, _ = cone_solve(self._cone_solver, A_values, b, c, settings, derivative_mode)

        outputs = [affine_maps.read_output(o, x, y) for o in self.program.outputs]
        if batch_size is None:
            outputs = [o[0] for o in outputs]
        return tuple(o.to(device=device, dtype=out_dtype) for o in outputs)

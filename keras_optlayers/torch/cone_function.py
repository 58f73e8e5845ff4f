"""The cone solve as one differentiable torch operation that runs on the host.

Forward: `ConeSolver.solve_with_status` on the batch. Backward:
`ConeSolver.adjoint` at the solution of the solved examples (failed
examples get zero gradients). The solution tensors are all the backward
pass needs, so a forward pass without autograd does no derivative work.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from keras_optlayers.solvers.cone_solver import ConeSolver
from keras_optlayers.solvers.cone_status import SOLVED


class ConeSolveFunction(torch.autograd.Function):
    """x, y, s = solution of the cone program with data (A_values, b, c).

    All tensors are float64 on the CPU: A_values (B, nnz), b (B, m), c (B, n).
    Differentiable once in A_values, b and c (the adjoint is not itself
    differentiated).
    """

    @staticmethod
    def forward(ctx, A_values: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                solver: ConeSolver, settings: Mapping[str, Any], derivative_mode: str, statuses: list):
        *solution, status, _ = solver.solve_with_status(
            A_values.detach().numpy(), b.detach().numpy(), c.detach().numpy(), settings)
        statuses.extend(status)
        x, y, s = (torch.from_numpy(a) for a in solution)
        ctx.save_for_backward(A_values, b, c, x, y, s)
        ctx.solver, ctx.derivative_mode = solver, derivative_mode
        ctx.solved = np.array([name == SOLVED for name in status])
        return x, y, s

    @staticmethod
    @once_differentiable
    def backward(ctx, dx: torch.Tensor, dy: torch.Tensor, ds: torch.Tensor):
        arrays = [t.numpy() for t in ctx.saved_tensors] + [g.numpy() for g in (dx, dy, ds)]
        grads = ctx.solver.adjoint(*arrays, mode=ctx.derivative_mode, valid=ctx.solved)
        return (*(torch.from_numpy(g) for g in grads), None, None, None, None)


def cone_solve(solver: ConeSolver, A_values: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
               settings: Mapping[str, Any], derivative_mode: str):
    """Solves a batch of cone programs; differentiable in A, b and c.

    Args:
        solver: the ConeSolver of the compiled program.
        A_values: (B, nnz) float64 CPU values of A in the program's pattern.
        b: (B, m) float64 CPU tensor.
        c: (B, n) float64 CPU tensor.
        settings: keyword arguments for the solver (tolerances, limits).
        derivative_mode: the adjoint's linear solve, see ConeSolver.adjoint.

    Returns:
        x (B, n), y (B, m), s (B, m): primal, dual and slack solutions (zeros
        for failed examples), and each example's status (`SOLVED` or what
        went wrong).
    """
    statuses: list[str] = []
    x, y, s = ConeSolveFunction.apply(A_values, b, c, solver, dict(settings), derivative_mode, statuses)
    return x, y, s, statuses

"""The cone solve as one differentiable torch operation that runs on the host.

Forward: `ConeSolver.solve` on the batch. Backward: `ConeSolver.adjoint` at
the solution. The solution tensors are all the backward pass needs, so a
forward pass without autograd does no derivative work.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch.autograd.function import once_differentiable

from keras_optlayers.solvers.cone_solver import ConeSolver


class ConeSolveFunction(torch.autograd.Function):
    """x, y, s = solution of the cone program with data (A_values, b, c).

    All tensors are float64 on the CPU: A_values (B, nnz), b (B, m), c (B, n).
    Differentiable once in A_values, b and c (the adjoint is not itself
    differentiated).
    """

    @staticmethod
    def forward(ctx, A_values: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                solver: ConeSolver, settings: Mapping[str, Any], derivative_mode: str):
        data = [t.detach().numpy() for t in (A_values, b, c)]
        x, y, s = (torch.from_numpy(a) for a in solver.solve(*data, settings))
        ctx.save_for_backward(A_values, b, c, x, y, s)
        ctx.solver, ctx.derivative_mode = solver, derivative_mode
        return x, y, s

    @staticmethod
    @once_differentiable
    def backward(ctx, dx: torch.Tensor, dy: torch.Tensor, ds: torch.Tensor):
        arrays = [t.numpy() for t in ctx.saved_tensors] + [g.numpy() for g in (dx, dy, ds)]
        dA, db, dc = ctx.solver.adjoint(*arrays, mode=ctx.derivative_mode)
        return torch.from_numpy(dA), torch.from_numpy(db), torch.from_numpy(dc), None, None, None


def cone_solve(solver: ConeSolver, A_values: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
               settings: Mapping[str, Any] | None = None, derivative_mode: str = "auto"):
    """Solves a batch of cone programs; differentiable in A, b and c.

    Args:
        solver: the ConeSolver of the compiled program.
        A_values: (B, nnz) float64 CPU values of A in the program's pattern.
        b: (B, m) float64 CPU tensor.
        c: (B, n) float64 CPU tensor.
        settings: keyword arguments for the solver (tolerances, limits).
        derivative_mode: the adjoint's linear solve, see ConeSolver.adjoint.

    Returns:
        x (B, n), y (B, m), s (B, m): primal, dual and slack solutions.

    Raises:
        SolverError: naming each failed status and its batch indices.
    """
    return ConeSolveFunction.apply(A_values, b, c, solver, dict(settings or {}), derivative_mode)

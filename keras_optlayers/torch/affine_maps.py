"""The affine steps of affine-solve-affine, in torch ops: gathers and sparse products.

The compiled problem carries every index array (`theta_index`, each
output's `indices`), so forming theta is one concatenation and one gather,
and reading an output is one gather and one reshape. Everything is float64
on the CPU, where the solver runs; autograd differentiates all of it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from keras_optlayers.core.compiler import CompiledProblem, OutputMap


def sparse_constant(matrix: sp.spmatrix) -> torch.Tensor:
    """A float64 sparse COO tensor holding a scipy sparse matrix."""
    coo = sp.coo_matrix(matrix)
    indices = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float64))
    return torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=False).coalesce()


def apply_map(matrix: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(k, len(theta)) sparse map applied to theta (B, len(theta)) -> (B, k)."""
    return torch.sparse.mm(matrix, theta.T).T


def stack_parameters(program: CompiledProblem, tensors: list[torch.Tensor], batch_size: int) -> torch.Tensor:
    """Float64 parameter tensors, each (shape) or (B, *shape), -> theta (B, len(theta))."""
    columns = []
    for info, tensor in zip(program.parameters, tensors):
        if tensor.dim() == len(info.shape):
            tensor = tensor.unsqueeze(0).expand(batch_size, *info.shape)
        columns.append((torch.log(tensor) if info.log else tensor).reshape(batch_size, info.size))
    columns.append(torch.ones(batch_size, 1, dtype=torch.float64))
    return torch.cat(columns, dim=1)[:, torch.from_numpy(program.theta_index)]


def read_output(output: OutputMap, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One requested variable (B, *shape) from the solution."""
    value = (x if output.source == "x" else y)[:, torch.from_numpy(output.indices)]
    if output.scales is not None:
        value = value * torch.from_numpy(output.scales)
    return (torch.exp(value) if output.exp else value).reshape(-1, *output.shape)

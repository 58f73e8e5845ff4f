"""The affine steps of affine-solve-affine, in torch ops.

The torch twin of `keras_optlayers.ops.affine_maps`: parameters are stacked
into theta, the compiled sparse maps turn theta into solver data for the
whole batch at once, and requested variables are read back from the
solution; torch autograd differentiates all of it. Everything is float64 on
the CPU, where the solver runs.
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


def flatten_fortran(tensor: torch.Tensor, param_rank: int) -> torch.Tensor:
    """(B, *shape) -> (B, size), entries in CVXPY's column-major order."""
    if param_rank > 1:
        tensor = tensor.permute(0, *range(param_rank, 0, -1))
    return tensor.reshape(tensor.shape[0], -1)


def unflatten_fortran(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(B, size) -> (B, *shape), inverse of `flatten_fortran`."""
    tensor = tensor.reshape(-1, *reversed(shape))
    if len(shape) > 1:
        tensor = tensor.permute(0, *range(len(shape), 0, -1))
    return tensor


def stack_parameters(program: CompiledProblem, tensors: list[torch.Tensor], batch_size: int) -> torch.Tensor:
    """Stacks float64 parameter tensors into theta, shape (B, num_theta).

    Each tensor is (shape) or (B, *shape); unbatched ones are broadcast, so
    their gradient is summed over the batch by autograd.
    """
    columns = []
    for index in program.parameter_order:
        info = program.parameters[index]
        tensor = tensors[index]
        if tensor.dim() == len(info.shape):
            tensor = tensor.unsqueeze(0).expand(batch_size, *info.shape)
        if info.log:
            tensor = torch.log(tensor)
        columns.append(flatten_fortran(tensor, len(info.shape)))
    columns.append(torch.ones(batch_size, 1, dtype=torch.float64))
    return torch.cat(columns, dim=1)


def apply_map(matrix: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(k, num_theta) sparse map applied to theta (B, num_theta) -> (B, k)."""
    return torch.sparse.mm(matrix, theta.T).T


def read_output(output: OutputMap, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reads one requested variable (B, *shape) from the solution."""
    source = x if output.source == "x" else y
    value = source[:, torch.from_numpy(output.indices)]
    if output.scales is not None:
        value = value * torch.from_numpy(output.scales)
    if output.exp:
        value = torch.exp(value)
    return unflatten_fortran(value, output.shape)

"""Sparsemax, CSparsemax, CSoftmax and LML as torch modules.

The torch interpreter of the same `ProjectionDefinition`s as the Keras
layers. The Keras layers compute these with specialized algorithms written
in TensorFlow ops; here each is the torch `CvxpyLayer` on the definition's
CVXPY form, solved by SCS with tight tolerances (`DEFAULT_SOLVER_ARGS`) and
differentiated implicitly: slower, the same maps, arguments and checks.
Masks are a Keras feature: these modules take none.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from keras_optlayers.core import checks
from keras_optlayers.core.definitions import CSOFTMAX, CSPARSEMAX, SPARSEMAX, ArgumentAttributes, ProjectionDefinition
from keras_optlayers.core.definitions import LML as LML_DEFINITION
from keras_optlayers.core.problems import ProblemSpec
from keras_optlayers.torch.cvxpy_layer import CvxpyLayer

# The fast Keras layers are exact. SCS gets close at eps 1e-10, and its
# solutions are exactly complementary, which keeps the implicit gradient
# accurate; interior-point solutions (ECOS, Clarabel) are not.
SOLVER = "SCS"
DEFAULT_SOLVER_ARGS = {"eps": 1e-10, "max_iters": 100_000}

# One compiled CvxpyLayer is kept per size of `axis`, up to this many.
LAYERS_PER_MODULE = 8


class ProjectionModule(ArgumentAttributes, torch.nn.Module):
    """A projection along `axis`, solved as one CvxpyLayer call per input.

    The axis is moved last and the other dimensions flattened into the
    batch; one CvxpyLayer is compiled per size of `axis` and reused.
    """

    definition: ProjectionDefinition

    def __init__(self, *, solver_args: Mapping[str, Any] | None = None, **arguments):
        super().__init__()
        self.arguments = self.definition.bind(**arguments)
        self.solver_args = {**DEFAULT_SOLVER_ARGS, **(solver_args or {})}
        CvxpyLayer.check_arguments(SOLVER, self.solver_args)
        self._layers: dict[int, CvxpyLayer] = {}  # by the size of `axis`, oldest first

    def cvxpy_problem(self, n: int) -> ProblemSpec:
        """The projection in CVXPY form; parameters `(x, upper)` or `(x,)`."""
        return self.definition.problem(n, self.arguments)

    def _layer(self, n: int) -> CvxpyLayer:
        if n not in self._layers:
            if len(self._layers) >= LAYERS_PER_MODULE:
                self._layers.pop(next(iter(self._layers)))
            spec = self.cvxpy_problem(n)
            self._layers[n] = CvxpyLayer(
                spec.problem, spec.parameters, spec.variables, solver=SOLVER, solver_args=self.solver_args)
        return self._layers[n]

    def forward(self, inputs: torch.Tensor, upper: torch.Tensor | None = None) -> torch.Tensor:
        arguments, name = self.arguments, type(self).__name__
        x = torch.as_tensor(inputs)
        x = x if x.is_floating_point() else x.to(torch.float32)
        axis = checks.canonical_axis(arguments["axis"], x.dim(), name="inputs")
        checks.check_finite_values("x", x.detach().cpu().numpy())
        n = x.shape[axis]
        self.definition.check_size(n, arguments)
        if "upper" in arguments:
            checks.check_call_upper(name, arguments["upper"], upper)
        elif upper is not None:
            raise ValueError(f"{name} takes no bounds at call time. Received: upper={upper!r}")
        more = []
        if upper is not None:
            upper = torch.broadcast_to(torch.as_tensor(upper).to(device=x.device, dtype=x.dtype), x.shape)
            values = torch.movedim(upper.detach(), axis, -1).cpu().numpy()
            checks.check_finite_values("upper", values)
            checks.check_upper_values(values, tolerance=n * float(torch.finfo(x.dtype).eps))
            more.append(upper)
        moved = [torch.movedim(t, axis, -1) for t in (x, *more)]
        y, = self._layer(n)(*[t.reshape(-1, n) for t in moved])
        return torch.movedim(y.reshape(moved[0].shape), -1, axis)


class Sparsemax(ProjectionModule):
    """Sparsemax: the Euclidean projection onto the probability simplex.

    The torch twin of the Keras `Sparsemax` (same definition), solved as a
    cone program (see the module docstring).

    Example:

    >>> import torch
    >>> Sparsemax()(torch.tensor([1.5, 0.5, -2.0])).round(decimals=4) + 0.0  # (-0.0 -> 0.0)
    tensor([1., 0., 0.])
    """

    definition = SPARSEMAX

    def __init__(self, axis: int = SPARSEMAX.defaults.axis, *, solver_args: Mapping[str, Any] | None = None):
        super().__init__(axis=axis, solver_args=solver_args)


class CSparsemax(ProjectionModule):
    """Constrained sparsemax: the Euclidean projection onto the capped simplex.

    The torch twin of the Keras `CSparsemax` (same definition); `upper` is a
    number, or None to pass per-element bounds at call time.

    Example:

    >>> import torch
    >>> CSparsemax(upper=0.5)(torch.tensor([1.5, -0.3, -2.2, 0.6])).round(decimals=4)
    tensor([0.5000, 0.0000, 0.0000, 0.5000])
    """

    definition = CSPARSEMAX

    def __init__(self, upper: float | None = CSPARSEMAX.defaults.upper, axis: int = CSPARSEMAX.defaults.axis,
                 *, solver_args: Mapping[str, Any] | None = None):
        super().__init__(upper=upper, axis=axis, solver_args=solver_args)


class CSoftmax(ProjectionModule):
    """Constrained softmax: softmax with per-coordinate upper bounds.

    The torch twin of the Keras `CSoftmax` (same definition); `upper` is a
    number, or None to pass per-element bounds at call time.

    Example:

    >>> import torch
    >>> CSoftmax(upper=0.5)(torch.tensor([1.5, -0.3, -2.2, 0.6])).round(decimals=4)
    tensor([0.5000, 0.1385, 0.0207, 0.3407])
    """

    definition = CSOFTMAX

    def __init__(self, upper: float | None = CSOFTMAX.defaults.upper, axis: int = CSOFTMAX.defaults.axis,
                 *, solver_args: Mapping[str, Any] | None = None):
        super().__init__(upper=upper, axis=axis, solver_args=solver_args)


class LML(ProjectionModule):
    """The limited multi-label projection: a soft top-k.

    The torch twin of the Keras `LML` (same definition).

    Example:

    >>> import torch
    >>> LML(k=2)(torch.tensor([1.5, -0.3, -2.2, 0.6])).round(decimals=4)
    tensor([0.8200, 0.4295, 0.1012, 0.6493])
    """

    definition = LML_DEFINITION

    def __init__(self, k: float, axis: int = LML_DEFINITION.defaults.axis, *,
                 solver_args: Mapping[str, Any] | None = None):
        super().__init__(k=k, axis=axis, solver_args=solver_args)

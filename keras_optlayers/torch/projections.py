"""Sparsemax, CSparsemax, CSoftmax and LML as torch modules.

The Keras layers compute these with specialized algorithms written in
TensorFlow ops; here each is the torch `CvxpyLayer` on the same CVXPY
definition (`keras_optlayers.core.problems`), solved by an interior-point
to SCS with tight tolerances (`DEFAULT_SOLVER_ARGS`) and differentiated
implicitly. Slower than the Keras layers; the same maps, arguments and
input checks.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch

from keras_optlayers.core import checks
from keras_optlayers.core.problems import (
    ProblemSpec,
    csoftmax_problem,
    csparsemax_problem,
    lml_problem,
    sparsemax_problem,
)
from keras_optlayers.torch.cvxpy_layer import CvxpyLayer

# The fast Keras layers are exact. SCS gets close at eps 1e-10, and its
# solutions are exactly complementary, which keeps the implicit gradient
# accurate; interior-point solutions (ECOS, Clarabel) are not.
SOLVER = "SCS"
DEFAULT_SOLVER_ARGS = {"eps": 1e-10, "max_iters": 100_000}


class _ConeProjection(torch.nn.Module):
    """A projection along `axis`, solved as one CvxpyLayer call per input.

    The axis is moved last and the other dimensions flattened into the batch;
    one CvxpyLayer is compiled per size of `axis` and reused.
    """

    def __init__(self, axis: int, solver_args: Mapping[str, Any] | None):
        super().__init__()
        checks.check_axis_argument(axis)
        self.axis = axis
        self.solver_args = {**DEFAULT_SOLVER_ARGS, **(solver_args or {})}
        self._layers: dict[int, CvxpyLayer] = {}  # by the size of `axis`

    def cvxpy_problem(self, n: int) -> ProblemSpec:
        raise NotImplementedError

    def _layer(self, n: int) -> CvxpyLayer:
        if n not in self._layers:
            spec = self.cvxpy_problem(n)
            self._layers[n] = CvxpyLayer(
                spec.problem, spec.parameters, spec.variables,
                solver=SOLVER, solver_args=self.solver_args)
        return self._layers[n]

    @staticmethod
    def _as_float_tensor(value) -> torch.Tensor:
        tensor = torch.as_tensor(value)
        return tensor if tensor.is_floating_point() else tensor.to(torch.float32)

    def _prepare(self, inputs) -> tuple[torch.Tensor, int]:
        x = self._as_float_tensor(inputs)
        axis = checks.canonical_axis(self.axis, x.dim(), name="inputs")
        checks.check_finite_values("x", x.detach().cpu().numpy())
        return x, axis

    def _project(self, axis: int, x: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        """Solves along `axis` for x (and per-element parameters shaped like x)."""
        moved = [torch.movedim(t, axis, -1) for t in (x, *more)]
        rows = [t.reshape(-1, t.shape[-1]) for t in moved]
        y, = self._layer(x.shape[axis])(*rows)
        return torch.movedim(y.reshape(moved[0].shape), -1, axis)


class Sparsemax(_ConeProjection):
    """Sparsemax: the Euclidean projection onto the probability simplex.

    Formula:
    ``` python
    y = argmin_y ||y - x||^2  s.t.  sum(y) = 1, y >= 0   (along `axis`)
    ```
    (Martins & Astudillo, 2016.) The torch twin of the Keras `Sparsemax`,
    solved as a cone program (see the module docstring).

    Args:
        axis: the axis to project along. Defaults to `-1`.
        solver_args: SCS settings, over `DEFAULT_SOLVER_ARGS`.

    Input shape:
        Arbitrary, rank >= 1.

    Output shape:
        Same shape, dtype and device as the input.

    Example:

    >>> layer = Sparsemax()
    >>> layer(torch.tensor([1.5, 0.5, -2.0]))  # about [1., 0., 0.]
    """

    def __init__(self, axis: int = -1, *, solver_args: Mapping[str, Any] | None = None):
        super().__init__(axis, solver_args)

    def cvxpy_problem(self, n: int) -> ProblemSpec:
        """The projection in CVXPY form; parameters `(x,)`."""
        return sparsemax_problem(n)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x, axis = self._prepare(inputs)
        return self._project(axis, x)


class _BoundedProjection(_ConeProjection):
    """A projection with per-coordinate upper bounds, fixed or fed at call time.

    Subclasses set `_problem`, the CVXPY builder `(n, upper=...) -> ProblemSpec`.
    """

    _problem: Callable[..., ProblemSpec]

    def __init__(self, upper: float | None = None, axis: int = -1, *,
                 solver_args: Mapping[str, Any] | None = None):
        super().__init__(axis, solver_args)
        self.upper = checks.check_upper_argument(upper)

    def cvxpy_problem(self, n: int) -> ProblemSpec:
        """The projection in CVXPY form; parameters `(x, upper)` or `(x,)`."""
        return type(self)._problem(n, upper=self.upper)

    def forward(self, inputs: torch.Tensor, upper: torch.Tensor | None = None) -> torch.Tensor:
        checks.check_call_upper(type(self).__name__, self.upper, upper)
        x, axis = self._prepare(inputs)
        n = x.shape[axis]
        if self.upper is not None:
            checks.check_float_upper(self.upper, n)
            return self._project(axis, x)
        upper = self._as_float_tensor(upper).to(device=x.device, dtype=x.dtype)
        upper = torch.broadcast_to(upper, x.shape)
        values = torch.movedim(upper.detach(), axis, -1).cpu().numpy()
        checks.check_finite_values("upper", values)
        checks.check_upper_values(values, tolerance=n * float(torch.finfo(x.dtype).eps))
        return self._project(axis, x, upper)


class CSparsemax(_BoundedProjection):
    """Constrained sparsemax: the Euclidean projection onto the capped simplex.

    Formula:
    ``` python
    y = argmin_y ||y - x||^2  s.t.  sum(y) = 1, 0 <= y <= upper   (along `axis`)
    ```
    (Malaviya, Ferreira & Martins, 2018.) The torch twin of the Keras
    `CSparsemax`, solved as a cone program; differentiable also with respect
    to call-time bounds.

    Args:
        upper: a python number bounding every coordinate (the size n of
            `axis` must satisfy n * upper >= 1), or `None` (default) to pass
            per-element bounds at call time: `layer(x, upper)`.
        axis: the axis to project along. Defaults to `-1`.
        solver_args: SCS settings, over `DEFAULT_SOLVER_ARGS`.

    Call arguments:
        inputs: the scores x.
        upper: per-element bounds, broadcastable to `inputs`, nonnegative and
            summing to at least 1 along `axis`; only when the module was built
            with `upper=None`.

    Input shape:
        Arbitrary, rank >= 1.

    Output shape:
        Same shape, dtype and device as the input.

    Example:

    >>> layer = CSparsemax(upper=0.5)
    >>> layer(torch.tensor([1.5, -0.3, -2.2, 0.6]))  # about [0.5, 0., 0., 0.5]
    """

    _problem = staticmethod(csparsemax_problem)


class CSoftmax(_BoundedProjection):
    """Constrained softmax: softmax with per-coordinate upper bounds.

    Formula:
    ``` python
    y = argmin_y -x^T y - H(y)  s.t.  sum(y) = 1, y <= upper   (along `axis`)
    ```
    with H the Shannon entropy (Martins & Kreutzer, 2017). The torch twin of
    the Keras `CSoftmax`, solved as a cone program; differentiable also with
    respect to call-time bounds.

    Args:
        upper: a python number bounding every coordinate (the size n of
            `axis` must satisfy n * upper >= 1), or `None` (default) to pass
            per-element bounds at call time: `layer(x, upper)`.
        axis: the axis to project along. Defaults to `-1`.
        solver_args: SCS settings, over `DEFAULT_SOLVER_ARGS`.

    Call arguments:
        inputs: the scores x.
        upper: per-element bounds, broadcastable to `inputs`, nonnegative and
            summing to at least 1 along `axis`; only when the module was built
            with `upper=None`.

    Input shape:
        Arbitrary, rank >= 1.

    Output shape:
        Same shape, dtype and device as the input.

    Example:

    >>> layer = CSoftmax(upper=0.5)
    >>> layer(torch.tensor([1.5, -0.3, -2.2, 0.6]))  # about [0.5, 0.1385, 0.0207, 0.3407]
    """

    _problem = staticmethod(csoftmax_problem)


class LML(_ConeProjection):
    """The limited multi-label projection: a soft top-k.

    Formula:
    ``` python
    y = argmin_y -x^T y - H_b(y)  s.t.  sum(y) = k   (along `axis`)
    ```
    with H_b the binary entropy (Amos, Koltun & Kolter, 2019). The torch twin
    of the Keras `LML`, solved as a cone program.

    Args:
        k: a python number strictly between 0 and n, the size of `axis`
            (need not be an integer).
        axis: the axis to project along. Defaults to `-1`.
        solver_args: SCS settings, over `DEFAULT_SOLVER_ARGS`.

    Input shape:
        Arbitrary, rank >= 1.

    Output shape:
        Same shape, dtype and device as the input.

    Example:

    >>> layer = LML(k=2)
    >>> layer(torch.tensor([1.5, -0.3, -2.2, 0.6]))  # about [0.82, 0.4295, 0.1012, 0.6493]
    """

    def __init__(self, k: float, axis: int = -1, *, solver_args: Mapping[str, Any] | None = None):
        super().__init__(axis, solver_args)
        checks.check_k(k, n=None)
        self.k = k.item() if isinstance(k, np.generic) else k

    def cvxpy_problem(self, n: int) -> ProblemSpec:
        """The projection in CVXPY form; parameters `(x,)`."""
        return lml_problem(n, self.k)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x, axis = self._prepare(inputs)
        checks.check_k(self.k, x.shape[axis])
        return self._project(axis, x)

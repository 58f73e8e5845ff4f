"""PolytopeProjection, EllipsoidProjection and OptNetQP as torch modules.

The torch twins of the Keras layers of the same names: the same problems
(from `keras_optlayers.core.problems`), constructor arguments, weight names,
shapes and initializers. Like the Keras layers they create their weights
when they first see an input (torch's lazy modules: run one batch before
building the optimizer), then solve with the torch `CvxpyLayer`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, Union

import torch
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from keras_optlayers.core import checks
from keras_optlayers.core.problems import ProblemSpec
from keras_optlayers.core.problems.ellipsoid import ellipsoid_projection_problem
from keras_optlayers.core.problems.offsets import equality_offsets, inequality_offsets
from keras_optlayers.core.problems.optnet_qp import check_input_size, check_optnet_qp_arguments, optnet_qp_problem
from keras_optlayers.core.problems.polytope import check_polytope_projection_arguments, polytope_projection_problem
from keras_optlayers.torch.cvxpy_layer import CvxpyLayer

# An initializer: a Keras name below, or a function that fills a tensor in place.
Initializer = Union[str, Callable[[torch.Tensor], Any]]

_INITIALIZERS: dict[str, Callable[[torch.Tensor], Any]] = {
    # Keras's glorot_uniform: U(±sqrt(6 / (fan_in + fan_out))), as torch's xavier_uniform_.
    "glorot_uniform": torch.nn.init.xavier_uniform_,
    "identity": torch.nn.init.eye_,
    "zeros": torch.nn.init.zeros_,
    "ones": torch.nn.init.ones_,
}


def _initializer(value: Initializer, name: str) -> Callable[[torch.Tensor], Any]:
    if callable(value):
        return value
    if value not in _INITIALIZERS:
        raise ValueError(
            f"`{name}` must be one of {sorted(_INITIALIZERS)} or a function filling a "
            f"tensor in place. Received: {name}={value!r}"
        )
    return _INITIALIZERS[value]


class _LearnableProblem(LazyModuleMixin, torch.nn.Module):
    """A problem fed one input tensor and weights, solved by a CvxpyLayer.

    Subclasses create their weights in `initialize_parameters(inputs)` (run
    by the lazy-module machinery before the first forward) and describe the
    problem in `_problem(dim)` and `_weight_values()`.
    """

    def __init__(self, solver: str | None, solver_args: Mapping[str, Any] | None):
        super().__init__()
        checks.check_solver_argument(solver)
        self.solver = solver
        self.solver_args = dict(solver_args or {})
        self._layers: dict[int, CvxpyLayer] = {}  # by the last input dimension

    def _problem(self, dim: int) -> ProblemSpec:
        """The problem for inputs of size `dim`; its input parameter comes first."""
        raise NotImplementedError

    def _weight_values(self) -> Sequence[torch.Tensor]:
        """Values of the problem's other parameters, in order."""
        raise NotImplementedError

    def _layer(self, dim: int) -> CvxpyLayer:
        if dim not in self._layers:
            spec = self._problem(dim)
            self._layers[dim] = CvxpyLayer(
                spec.problem, spec.parameters, spec.variables,
                solver=self.solver, solver_args=self.solver_args)
        return self._layers[dim]

    def forward(self, inputs: torch.Tensor, solver_args: Mapping[str, Any] | None = None) -> torch.Tensor:
        inputs = torch.as_tensor(inputs)
        dim = inputs.shape[-1]
        # The layer batches over one leading dimension: fold any others into it.
        batched = inputs.reshape(-1, dim)
        outputs, = self._layer(dim)(batched, *self._weight_values(), solver_args=solver_args)
        return outputs.reshape(*inputs.shape[:-1], *outputs.shape[1:])


def _materialize(parameter: torch.nn.Parameter, shape: tuple[int, ...], initializer) -> None:
    parameter.materialize(shape)
    with torch.no_grad():
        initializer(parameter)


class PolytopeProjection(_LearnableProblem):
    """Euclidean projection onto a learnable polytope {y : G y <= h}.

    Formula:
    ``` python
    y = argmin_y ½||x - y||²  s.t.  G y <= h
    ```
    The torch twin of the Keras `PolytopeProjection`. With
    `offset="interior_point"` (default) h = G z0 + s0 with s0 = `slack` > 0,
    so z0 stays strictly inside whatever G becomes; with `offset="free"`, h
    is a parameter of its own, and an empty polytope makes the solve fail
    with a `SolverError`.

    Args:
        num_constraints: number of half-spaces (rows of G), a positive integer.
        offset: "interior_point" (h = G z0 + slack) or "free" (h trainable).
        interior_point: the value of every coordinate of z0. Defaults to `0.0`.
        slack: s0, a positive number. Defaults to `1.0`.
        trainable_interior_point: whether z0 is trained too. Defaults to
            `False` (z0 is then a parameter with requires_grad=False).
        G_initializer: "glorot_uniform" (default), "identity", "zeros",
            "ones" or a function filling a tensor in place.
        h_initializer: initializer of h (for `offset="free"`). Defaults to
            `"ones"`.
        solver: None (SCS), "SCS", "ECOS" or "Clarabel".
        solver_args: default solver settings, see `CvxpyLayer`.

    Parameters:
        `G`; `h` with `offset="free"`, else `z0`.

    Input shape:
        `(..., dim)`.

    Output shape:
        Same shape as the input; the dtype is promoted from the input's and
        the parameters'.

    Example:

    >>> layer = PolytopeProjection(num_constraints=10)
    >>> y = layer(torch.randn(32, 2))
    >>> G, h = layer.polytope()  # y[i] is feasible: G @ y[i] <= h
    """

    def __init__(
        self,
        num_constraints: int,
        offset: str = "interior_point",
        interior_point: float = 0.0,
        slack: float = 1.0,
        trainable_interior_point: bool = False,
        G_initializer: Initializer = "glorot_uniform",
        h_initializer: Initializer = "ones",
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
    ):
        super().__init__(solver, solver_args)
        check_polytope_projection_arguments(num_constraints, offset, interior_point, slack, trainable_interior_point)
        self.num_constraints = num_constraints
        self.offset = offset
        self.interior_point = float(interior_point)
        self.slack = float(slack)
        self.trainable_interior_point = trainable_interior_point
        self.G_initializer = _initializer(G_initializer, "G_initializer")
        self.h_initializer = _initializer(h_initializer, "h_initializer")
        self.G = UninitializedParameter()
        if offset == "free":
            self.h = UninitializedParameter()
        else:
            self.z0 = UninitializedParameter(requires_grad=trainable_interior_point)

    def initialize_parameters(self, inputs, *args, **kwargs) -> None:
        dim = inputs.shape[-1]
        _materialize(self.G, (self.num_constraints, dim), self.G_initializer)
        if self.offset == "free":
            _materialize(self.h, (self.num_constraints,), self.h_initializer)
        else:
            _materialize(self.z0, (dim,), lambda t: t.fill_(self.interior_point))

    def _problem(self, dim: int) -> ProblemSpec:
        return polytope_projection_problem(dim, self.num_constraints)

    def _offsets(self) -> torch.Tensor:
        return self.h if self.offset == "free" else inequality_offsets(self.G, self.z0, self.slack)

    def _weight_values(self):
        return self.G, self._offsets()

    def polytope(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current (G, h)."""
        return self.G, self._offsets()


class EllipsoidProjection(_LearnableProblem):
    """Euclidean projection onto a learnable ellipsoid.

    Formula:
    ``` python
    y = argmin_y ½||x - y||²  s.t.  ½||A (y - z)||² <= 1
    ```
    The torch twin of the Keras `EllipsoidProjection`, with the shape matrix
    A (dim, dim) and the center z (dim,) trainable. The ellipsoid is never
    empty (z is in it).

    Args:
        A_initializer: "identity" (default: the ball of radius sqrt(2)
            around z), "glorot_uniform", "zeros", "ones" or a function
            filling a tensor in place.
        z_initializer: initializer of z. Defaults to `"zeros"`.
        solver: None (SCS), "SCS", "ECOS" or "Clarabel".
        solver_args: default solver settings, see `CvxpyLayer`.

    Parameters:
        `A`, `z`.

    Input shape:
        `(..., dim)`.

    Output shape:
        Same shape as the input.

    Example:

    >>> layer = EllipsoidProjection()
    >>> y = layer(torch.tensor([[3.0, 0.0], [0.5, 0.5]]))
    >>> # y ~ [[1.414, 0.], [0.5, 0.5]]: outside points land on the boundary
    """

    def __init__(
        self,
        A_initializer: Initializer = "identity",
        z_initializer: Initializer = "zeros",
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
    ):
        super().__init__(solver, solver_args)
        self.A_initializer = _initializer(A_initializer, "A_initializer")
        self.z_initializer = _initializer(z_initializer, "z_initializer")
        self.A = UninitializedParameter()
        self.z = UninitializedParameter()

    def initialize_parameters(self, inputs, *args, **kwargs) -> None:
        dim = inputs.shape[-1]
        _materialize(self.A, (dim, dim), self.A_initializer)
        _materialize(self.z, (dim,), self.z_initializer)

    def _problem(self, dim: int) -> ProblemSpec:
        return ellipsoid_projection_problem(dim)

    def _weight_values(self):
        return self.A, self.z


class OptNetQP(_LearnableProblem):
    """OptNet: a quadratic program with learnable data, fed its linear term.

    Formula:
    ``` python
    x = argmin_x ½ xᵀ(L Lᵀ + eps I)x + qᵀx  s.t.  A x = b,  G x <= h
    ```
    The torch twin of the Keras `OptNetQP`: the input q and trainable L
    (n, n), A (num_eq, n), G (num_ineq, n) and z0 (n,), with b = A z0 and
    h = G z0 + s0 (s0 = `slack` > 0), so the QP stays feasible whatever the
    weights become. Solved in conic form.

    Args:
        num_eq: number of equality constraints, 0 <= num_eq < n.
        num_ineq: number of inequality constraints, >= 0.
        eps: the ridge eps > 0 added to L Lᵀ. Defaults to `1e-4`.
        slack: s0, a positive number. Defaults to `1.0`.
        L_initializer: initializer of L. Defaults to `"identity"`.
        A_initializer: initializer of A. Defaults to `"glorot_uniform"`.
        G_initializer: initializer of G. Defaults to `"glorot_uniform"`.
        z0_initializer: initializer of z0. Defaults to `"zeros"`.
        solver: None (SCS), "SCS", "ECOS" or "Clarabel".
        solver_args: default solver settings, see `CvxpyLayer`.

    Parameters:
        `L`, `A` (None when num_eq == 0), `G` (None when num_ineq == 0), `z0`.

    Input shape:
        `(..., n)`: the linear term q.

    Output shape:
        `(..., n)`: the solution x.

    Example:

    >>> model = torch.nn.Sequential(
    ...     torch.nn.Linear(20, 10),
    ...     OptNetQP(num_eq=2, num_ineq=5),
    ...     torch.nn.Linear(10, 1),
    ... )
    """

    def __init__(
        self,
        num_eq: int,
        num_ineq: int,
        eps: float = 1e-4,
        slack: float = 1.0,
        L_initializer: Initializer = "identity",
        A_initializer: Initializer = "glorot_uniform",
        G_initializer: Initializer = "glorot_uniform",
        z0_initializer: Initializer = "zeros",
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
    ):
        super().__init__(solver, solver_args)
        check_optnet_qp_arguments(num_eq, num_ineq, eps, slack)
        self.num_eq = num_eq
        self.num_ineq = num_ineq
        self.eps = float(eps)
        self.slack = float(slack)
        self.L_initializer = _initializer(L_initializer, "L_initializer")
        self.A_initializer = _initializer(A_initializer, "A_initializer")
        self.G_initializer = _initializer(G_initializer, "G_initializer")
        self.z0_initializer = _initializer(z0_initializer, "z0_initializer")
        self.L = UninitializedParameter()
        self.A = UninitializedParameter() if num_eq else None
        self.G = UninitializedParameter() if num_ineq else None
        self.z0 = UninitializedParameter()

    def initialize_parameters(self, inputs, *args, **kwargs) -> None:
        n = inputs.shape[-1]
        check_input_size(n, self.num_eq, tuple(inputs.shape))
        _materialize(self.L, (n, n), self.L_initializer)
        if self.num_eq:
            _materialize(self.A, (self.num_eq, n), self.A_initializer)
        if self.num_ineq:
            _materialize(self.G, (self.num_ineq, n), self.G_initializer)
        _materialize(self.z0, (n,), self.z0_initializer)

    def _problem(self, n: int) -> ProblemSpec:
        return optnet_qp_problem(n, self.num_eq, self.num_ineq, self.eps)

    def _weight_values(self):
        values = [self.L]
        if self.num_eq:
            values += [self.A, equality_offsets(self.A, self.z0)]
        if self.num_ineq:
            values += [self.G, inequality_offsets(self.G, self.z0, self.slack)]
        return values

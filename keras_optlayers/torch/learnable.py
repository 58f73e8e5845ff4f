"""PolytopeProjection, EllipsoidProjection and OptNetQP as torch modules.

The torch interpreter of the same `LearnableDefinition`s as the Keras
layers (`keras_optlayers.core.definitions`): the same arguments, checks,
weight names, shapes, initializers, problems and wiring. Like the Keras
layers they create their weights when they first see an input (torch's
lazy modules: run one batch before building the optimizer), then solve with
the torch `CvxpyLayer`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Union

import torch
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter

from keras_optlayers.core import checks
from keras_optlayers.core.definitions import (
    ArgumentAttributes,
    ELLIPSOID_PROJECTION,
    OPTNET_QP,
    POLYTOPE_PROJECTION,
    LearnableDefinition,
)
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

# The arguments `_own_arguments` leaves out of a constructor's locals().
_NOT_ARGUMENTS = ("self", "__class__")


def _own_arguments(local_values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in local_values.items() if name not in _NOT_ARGUMENTS}


def _initializer(value: Any, name: str) -> Callable[[torch.Tensor], Any]:
    if callable(value):
        return value
    if value not in _INITIALIZERS:
        raise ValueError(
            f"`{name}` must be one of {sorted(_INITIALIZERS)} or a function filling a "
            f"tensor in place. Received: {name}={value!r}"
        )
    return _INITIALIZERS[value]


class LearnableModule(ArgumentAttributes, LazyModuleMixin, torch.nn.Module):
    """A module whose arguments, weights, problem and wiring come from `definition`."""

    definition: LearnableDefinition

    def __init__(self, *, solver: str | None = None, solver_args: Mapping[str, Any] | None = None,
                 on_failure: str = "raise", **arguments):
        super().__init__()
        definition = self.definition
        own = {a.name for a in definition.arguments}
        self.arguments = definition.bind(**{k: v for k, v in arguments.items() if k in own})
        self.initializers = {
            w.name: _initializer(arguments.get(w.initializer_argument, w.initializer), str(w.initializer_argument))
            for w in definition.weights if w.initializer_argument
        }
        # Checked now, used by the layer the first input builds.
        CvxpyLayer.check_arguments(solver, solver_args, on_failure)
        self.solver, self.solver_args, self.on_failure = solver, solver_args, on_failure
        for weight in definition.weights:
            present = weight.present(self.arguments)
            setattr(self, weight.name,
                    UninitializedParameter(requires_grad=weight.trainable(self.arguments)) if present else None)
        self._layer: CvxpyLayer | None = None
        self._input_size: int | None = None

    def initialize_parameters(self, inputs, *args, **kwargs) -> None:
        definition, arguments = self.definition, self.arguments
        n = definition.input_size(tuple(inputs.shape), arguments)
        for weight in definition.present_weights(arguments):
            parameter = getattr(self, weight.name)
            parameter.materialize(weight.shape(n, arguments))
            with torch.no_grad():
                if weight.fill is not None:
                    parameter.fill_(weight.fill(arguments))
                else:
                    self.initializers[weight.name](parameter)
        spec = definition.problem(n, arguments)
        self._layer = CvxpyLayer(spec.problem, spec.parameters, spec.variables, solver=self.solver,
                                 solver_args=self.solver_args, on_failure=self.on_failure)
        self._input_size = n

    def parameter_values(self) -> tuple[torch.Tensor, ...]:
        """The current values of the problem's parameters other than the input."""
        weights = {w.name: getattr(self, w.name) for w in self.definition.present_weights(self.arguments)}
        return tuple(self.definition.wiring(weights, self.arguments))

    def forward(self, inputs: torch.Tensor, solver_args: Mapping[str, Any] | None = None) -> torch.Tensor:
        inputs = torch.as_tensor(inputs)
        # Built by initialize_parameters before the first forward.
        assert self._layer is not None and self._input_size is not None
        checks.check_built_input_size(type(self).__name__, self._input_size, inputs.shape[-1])
        # The layer batches over one leading dimension: fold any others into it.
        batched = inputs.reshape(-1, self._input_size)
        outputs, = self._layer(batched, *self.parameter_values(), solver_args=solver_args)
        return outputs.reshape(*inputs.shape[:-1], *outputs.shape[1:])


class PolytopeProjection(LearnableModule):
    """Euclidean projection onto a learnable polytope {y : G y <= h}.

    The torch twin of the Keras `PolytopeProjection` (same definition, see
    its docstring for the arguments), solved with diffcp's solvers.
    Initializers are Keras names ("glorot_uniform", "identity", "zeros",
    "ones") or functions filling a tensor in place.

    Example:

    >>> import torch
    >>> layer = PolytopeProjection(num_constraints=10)
    >>> y = layer(torch.randn(32, 2))
    >>> G, h = layer.polytope()
    >>> bool((y @ G.T <= h + 1e-4).all())
    True
    """

    definition = POLYTOPE_PROJECTION
    _defaults = POLYTOPE_PROJECTION.defaults

    def __init__(
        self,
        num_constraints: int,
        offset: str = _defaults.offset,
        interior_point: float = _defaults.interior_point,
        slack: float = _defaults.slack,
        trainable_interior_point: bool = _defaults.trainable_interior_point,
        G_initializer: Initializer = _defaults.G_initializer,
        h_initializer: Initializer = _defaults.h_initializer,
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
        on_failure: str = "raise",
    ):
        super().__init__(**_own_arguments(locals()))

    def polytope(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current (G, h)."""
        G, h = self.parameter_values()
        return G, h


class EllipsoidProjection(LearnableModule):
    """Euclidean projection onto a learnable ellipsoid {y : ½||A (y - z)||² <= 1}.

    The torch twin of the Keras `EllipsoidProjection` (same definition, see
    its docstring for the arguments), solved with diffcp's solvers.

    Example:

    >>> import torch
    >>> layer = EllipsoidProjection()
    >>> layer(torch.tensor([[3.0, 0.0], [0.5, 0.5]])).round(decimals=3)
    tensor([[1.4140, 0.0000],
            [0.5000, 0.5000]], grad_fn=<RoundBackward1>)
    """

    definition = ELLIPSOID_PROJECTION
    _defaults = ELLIPSOID_PROJECTION.defaults

    def __init__(
        self,
        A_initializer: Initializer = _defaults.A_initializer,
        z_initializer: Initializer = _defaults.z_initializer,
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
        on_failure: str = "raise",
    ):
        super().__init__(**_own_arguments(locals()))


class OptNetQP(LearnableModule):
    """OptNet: a quadratic program with learnable data, fed its linear term.

    The torch twin of the Keras `OptNetQP` (same definition, see its
    docstring for the arguments), solved in conic form with diffcp's solvers.

    Example:

    >>> import torch
    >>> model = torch.nn.Sequential(
    ...     torch.nn.Linear(20, 10),
    ...     OptNetQP(num_eq=2, num_ineq=5),
    ...     torch.nn.Linear(10, 1),
    ... )
    >>> model(torch.randn(4, 20)).shape
    torch.Size([4, 1])
    """

    definition = OPTNET_QP
    _defaults = OPTNET_QP.defaults

    def __init__(
        self,
        num_eq: int,
        num_ineq: int,
        eps: float = _defaults.eps,
        slack: float = _defaults.slack,
        L_initializer: Initializer = _defaults.L_initializer,
        A_initializer: Initializer = _defaults.A_initializer,
        G_initializer: Initializer = _defaults.G_initializer,
        z0_initializer: Initializer = _defaults.z0_initializer,
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
        on_failure: str = "raise",
    ):
        super().__init__(**_own_arguments(locals()))

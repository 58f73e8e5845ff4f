"""What a layer definition is: arguments, weights, problem and wiring, framework-free.

Each of the library's layers is defined once, as a `LearnableDefinition`
(layers that own weights and solve a CVXPY problem) or a
`ProjectionDefinition` (fast projections with a CVXPY form). The Keras
layers (`keras_optlayers.layers`) and the torch modules
(`keras_optlayers.torch`) interpret the same definition; a public class only
adds its explicit signature and docstring. Changing an argument's default or
check, a weight's shape or initializer, the problem or the wiring is one
edit, here.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable, Mapping, Sequence

from keras_optlayers.core.problems.spec import ProblemSpec

# Marks an argument that has no default.
REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()

Arguments = Mapping[str, Any]


def _unchecked(value: Any) -> Any:
    return value


def _always(arguments: Arguments) -> bool:
    return True


@dataclasses.dataclass(frozen=True)
class Argument:
    """A constructor argument: its name, default and check.

    `check(value)` raises ValueError ("... Received: name=value") or returns
    the value as a plain python value (what `get_config` stores).
    """

    name: str
    default: Any = REQUIRED
    check: Callable[[Any], Any] = _unchecked


@dataclasses.dataclass(frozen=True)
class Weight:
    """A trainable (or frozen) array of a learnable layer.

    Attributes:
        name: the weight's name (and the prefix of its `*_initializer`
            argument, plus `*_regularizer` and `*_constraint` in Keras).
        shape: (input size n, arguments) -> the weight's shape.
        initializer: the default initializer's name ("zeros", "ones",
            "identity", "glorot_uniform"); None when the weight is filled
            with `fill(arguments)` instead and takes no initializer argument.
        fill: (arguments) -> the constant value of every entry, for weights
            set by an argument (e.g. the interior point z0).
        present: (arguments) -> whether the layer has this weight.
        trainable: (arguments) -> whether it is trained.
    """

    name: str
    shape: Callable[[int, Arguments], tuple[int, ...]]
    initializer: str | None
    fill: Callable[[Arguments], float] | None = None
    present: Callable[[Arguments], bool] = _always
    trainable: Callable[[Arguments], bool] = _always

    @property
    def initializer_argument(self) -> str | None:
        return None if self.initializer is None else f"{self.name}_initializer"


def _bind(name: str, arguments: Sequence[Argument], values: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(values) - {a.name for a in arguments})
    if unknown:
        raise TypeError(f"{name} got unexpected arguments {unknown}.")
    bound = {}
    for argument in arguments:
        value = values.get(argument.name, argument.default)
        if value is REQUIRED:
            raise TypeError(f"{name} is missing the required argument `{argument.name}`.")
        bound[argument.name] = argument.check(value)
    return bound


@dataclasses.dataclass(frozen=True)
class LearnableDefinition:
    """A layer that feeds its input and its weights to a CVXPY problem.

    Attributes:
        name: the public class name.
        arguments: the layer's own constructor arguments (the front ends add
            initializers, solver settings and framework arguments).
        weights: the weights, in creation order.
        input_size: (input shape, arguments) -> n, the last input
            dimension, after checking it (ValueError naming expected and
            received).
        problem: (n, arguments) -> ProblemSpec whose first parameter is fed
            the input and whose variables are the outputs.
        wiring: (weights by name, arguments) -> the values of the problem's
            other parameters, in order. Written with `@` and `+` only, so
            that it runs on numpy arrays, TF tensors, Keras variables and
            torch tensors alike.
    """

    name: str
    arguments: tuple[Argument, ...]
    weights: tuple[Weight, ...]
    input_size: Callable[[Sequence[int | None], Arguments], int]
    problem: Callable[[int, Arguments], ProblemSpec]
    wiring: Callable[[Mapping[str, Any], Arguments], Sequence[Any]]

    def bind(self, **values: Any) -> dict[str, Any]:
        """Checked arguments, defaults filled in."""
        return _bind(self.name, self.arguments, values)

    def present_weights(self, arguments: Arguments) -> tuple[Weight, ...]:
        return tuple(w for w in self.weights if w.present(arguments))

    @property
    def defaults(self) -> types.SimpleNamespace:
        """Every default, by argument name, `<weight>_initializer`s included.

        The public classes' signatures read their defaults from here, so a
        default changes in one place for both front ends.
        """
        values = {a.name: a.default for a in self.arguments}
        values.update({w.initializer_argument: w.initializer for w in self.weights if w.initializer_argument})
        return types.SimpleNamespace(**values)


@dataclasses.dataclass(frozen=True)
class ProjectionDefinition:
    """A projection along an axis with a fast op and a CVXPY form.

    Attributes:
        name: the public class name.
        arguments: constructor arguments besides `axis` (e.g. `upper`, `k`).
        op: the name of the fast op in `keras_optlayers.ops`; it is called
            as `op(x, *[arguments], axis=..., mask=...)` with the arguments
            in order (a call-time `upper` in place of a None one).
        check_size: (n or None, arguments) -> None; raises ValueError when
            the size of `axis` does not fit the arguments.
        problem: (n, arguments) -> ProblemSpec; parameters (x,) or, when the
            bounds come at call time, (x, upper).
        call_bounds: (arguments) -> whether the call takes `upper`.
    """

    name: str
    arguments: tuple[Argument, ...]
    op: str
    check_size: Callable[[int | None, Arguments], None]
    problem: Callable[[int, Arguments], ProblemSpec]
    call_bounds: Callable[[Arguments], bool] = lambda arguments: False

    def bind(self, **values: Any) -> dict[str, Any]:
        """Checked arguments (`axis` included), defaults filled in."""
        return _bind(self.name, (*self.arguments, AXIS), values)

    @property
    def defaults(self) -> types.SimpleNamespace:
        """Every default, by argument name (`axis` included)."""
        return types.SimpleNamespace(**{a.name: a.default for a in (*self.arguments, AXIS)})


class ArgumentAttributes:
    """Mixin: a layer's bound definition arguments (`self.arguments`) read as attributes.

    `layer.num_constraints`, `layer.k`, `layer.axis`: in both front ends.
    """

    def __getattr__(self, name: str) -> Any:
        arguments = self.__dict__.get("arguments")
        if arguments is not None and name in arguments:
            return arguments[name]
        parent = getattr(super(), "__getattr__", None)  # torch modules look up their parameters there
        if parent is not None:
            return parent(name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")


def _check_axis(axis: Any) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ValueError(f"`axis` must be an integer. Received: axis={axis!r}")
    return axis


AXIS = Argument("axis", -1, _check_axis)

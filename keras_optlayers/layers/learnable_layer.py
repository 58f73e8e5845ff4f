"""The Keras interpreter of a `LearnableDefinition`: weights, problem and wiring.

A public learnable layer (`PolytopeProjection`, ...) is a subclass that
names its definition and spells out its signature; everything else —
argument checks, weights with their initializers, regularizers and
constraints, the problem, the wiring, the config — comes from the
definition, shared with the torch modules.
"""

from __future__ import annotations

from typing import Any, Mapping, TypeAlias, Union

import keras
import tensorflow as tf

from keras_optlayers.core.definitions import ArgumentAttributes, LearnableDefinition
from keras_optlayers.layers.convex_layer import ConvexLayer

# A weight's initializer: a Keras name, config or Initializer.
Initializer: TypeAlias = Union[str, dict, keras.initializers.Initializer]

# The arguments `own_arguments` leaves out of a constructor's locals().
_NOT_ARGUMENTS = ("self", "kwargs", "__class__")


def own_arguments(local_values: Mapping[str, Any]) -> dict[str, Any]:
    """A constructor's arguments from its `locals()`, for `super().__init__(**...)`."""
    return {name: value for name, value in local_values.items() if name not in _NOT_ARGUMENTS}


class LearnableLayer(ArgumentAttributes, ConvexLayer):
    """A `ConvexLayer` whose arguments, weights, problem and wiring come from `definition`.

    Subclasses set `definition` and pass their constructor's arguments up:
    the definition's own arguments, `<weight>_initializer` for each weight
    that has one, `<weight>_regularizer` and `<weight>_constraint` for each
    weight, and `ConvexLayer`'s solver arguments.
    """

    definition: LearnableDefinition

    def __init__(self, *, solver=None, solver_args=None, on_failure="raise", **arguments):
        layer_kwargs = {key: arguments.pop(key) for key in list(arguments) if key not in self._argument_names()}
        super().__init__(solver=solver, solver_args=solver_args, on_failure=on_failure, **layer_kwargs)
        definition = self.definition
        own = {a.name for a in definition.arguments}
        self.arguments = definition.bind(**{k: v for k, v in arguments.items() if k in own})
        self.initializers = {
            w.name: keras.initializers.get(arguments.get(w.initializer_argument, w.initializer))
            for w in definition.weights if w.initializer_argument
        }
        self.regularizers = {
            w.name: keras.regularizers.get(arguments.get(f"{w.name}_regularizer")) for w in definition.weights}
        self.constraints = {
            w.name: keras.constraints.get(arguments.get(f"{w.name}_constraint")) for w in definition.weights}
        self._weights_by_name: dict[str, keras.Variable] = {}
        self._input_size: int | None = None

    @classmethod
    def _argument_names(cls) -> set[str]:
        definition = cls.definition
        names = {a.name for a in definition.arguments}
        for weight in definition.weights:
            names |= {f"{weight.name}_regularizer", f"{weight.name}_constraint"}
            if weight.initializer_argument:
                names.add(weight.initializer_argument)
        return names

    def build(self, input_shape):
        definition, arguments = self.definition, self.arguments
        n = definition.input_size(tuple(input_shape), arguments)
        for weight in definition.present_weights(arguments):
            initializer = (
                keras.initializers.Constant(weight.fill(arguments)) if weight.fill is not None
                else self.initializers[weight.name])
            variable = self.add_weight(
                shape=weight.shape(n, arguments), initializer=initializer,
                regularizer=self.regularizers[weight.name], constraint=self.constraints[weight.name],
                trainable=weight.trainable(arguments), name=weight.name)
            self._weights_by_name[weight.name] = variable
            setattr(self, weight.name, variable)
        spec = definition.problem(n, arguments)
        fed, *others = spec.parameters
        # The wiring once per call (it ran once per parameter), and eagerly as
        # one compiled function: its products, Keras ops through tensordot,
        # cost more than a batch-1 solve. Measured in one process, OptNetQP at
        # batch 1, eager forward and backward: 20.3 -> 13.8 ms once per call,
        # 9.8 ms compiled. In a graph it is traced inline (a nested function
        # gained nothing there).
        def plain_wiring():
            return definition.wiring(self._weights_by_name, arguments)

        compiled_wiring = tf.function(
            lambda: [keras.ops.convert_to_tensor(v) for v in plain_wiring()], autograph=False)

        def wiring():
            return compiled_wiring() if tf.executing_eagerly() else plain_wiring()

        self.set_problem(spec.problem, inputs=[fed], weights=others, weight_values=wiring, outputs=spec.variables)

    def parameter_values(self) -> tuple[Any, ...]:
        """The current values of the problem's parameters other than the input."""
        return tuple(keras.ops.convert_to_tensor(v)
                     for v in self.definition.wiring(self._weights_by_name, self.arguments))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), **self.arguments}
        for name, initializer in self.initializers.items():
            config[f"{name}_initializer"] = keras.initializers.serialize(initializer)
        for name in self.regularizers:
            config[f"{name}_regularizer"] = keras.regularizers.serialize(self.regularizers[name])
            config[f"{name}_constraint"] = keras.constraints.serialize(self.constraints[name])
        return config

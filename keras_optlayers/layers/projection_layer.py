"""The Keras interpreter of a `ProjectionDefinition`: thin glue over a fast op.

`Sparsemax`, `CSparsemax`, `CSoftmax` and `LML` are subclasses that name
their definition and spell out their signature. Like `keras.layers.Softmax`
they support masking: a `mask` (False = excluded) or `-inf` inputs give
those entries probability 0 and gradient 0.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_optlayers import ops
from keras_optlayers.core import checks
from keras_optlayers.core.definitions import ArgumentAttributes, ProjectionDefinition
from keras_optlayers.core.problems import ProblemSpec


class ProjectionLayer(ArgumentAttributes, keras.layers.Layer):
    """A fast projection along `axis`; its arguments and CVXPY form come from `definition`."""

    definition: ProjectionDefinition

    def __init__(self, **arguments):
        own = {a.name for a in self.definition.arguments} | {"axis"}
        layer_kwargs = {key: arguments.pop(key) for key in list(arguments) if key not in own}
        # The input dtype is kept: float64 callers get float64 results.
        layer_kwargs.setdefault("autocast", False)
        super().__init__(**layer_kwargs)
        self.arguments = self.definition.bind(**arguments)
        self.supports_masking = True

    def build(self, inputs_shape, upper_shape=None):
        axis = checks.canonical_axis(self.arguments["axis"], len(inputs_shape), name="inputs")
        self.definition.check_size(inputs_shape[axis], self.arguments)

    def call(self, inputs, upper=None, mask=None):
        arguments, name = self.arguments, type(self).__name__
        if "upper" in arguments:
            checks.check_call_upper(name, arguments["upper"], upper)
        elif upper is not None:
            raise ValueError(f"{name} takes no bounds at call time. Received: upper={upper!r}")
        values = [upper if a.name == "upper" and upper is not None else arguments[a.name]
                  for a in self.definition.arguments]
        if isinstance(mask, (list, tuple)):  # Keras' masks of (inputs, upper): the scores' applies
            mask = mask[0]
        op = getattr(ops, self.definition.op)
        return op(inputs, *values, axis=arguments["axis"], mask=mask)

    def compute_output_shape(self, inputs_shape, upper_shape=None):
        return inputs_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.arguments}

    def cvxpy_problem(self, n: int) -> ProblemSpec:
        """The same projection in CVXPY form, for `CvxpyLayer`.

        Parameters `(x, upper)` when the layer takes bounds at call time,
        else `(x,)`.
        """
        return self.definition.problem(n, self.arguments)

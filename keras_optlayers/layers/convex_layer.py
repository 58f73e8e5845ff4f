"""`ConvexLayer`: the base of learnable, savable convex optimization layers."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, Union

import cvxpy as cp
import keras
import tensorflow as tf

from keras_optlayers.core import checks, failure_policy
from keras_optlayers.ops.batched_problem import BatchedProblem
from keras_optlayers.ops.solver_statistics import ReportsSolverStatistics
from keras_optlayers.solvers import registry

# What feeds a parameter that does not come from the call's inputs: a weight,
# or a function of weights evaluated at every call (e.g. h = G z0 + s0).
ParameterSource = Union[keras.Variable, Callable[[], Any]]


class ConvexLayer(ReportsSolverStatistics, keras.layers.Layer):
    """Base class of layers that solve a convex problem with learnable data.

    A subclass describes its problem in `build(input_shape)`: it creates its
    weights with `add_weight`, writes a DPP problem in CVXPY, and calls
    `set_problem` to say which CVXPY parameters are fed from the call's
    inputs, which from weights (or from functions of the weights, evaluated
    at every call so that gradients reach the weights), and which variables
    the layer returns. The base class compiles the problem once into a
    `BatchedProblem` and does the rest: batching, dtype, gradients, solver
    choice, failures, output shapes and config. Because the problem is
    rebuilt from the layer's plain constructor arguments, a model holding
    the layer saves to and loads from `.keras` files.

    Args:
        solver: None (default) lets the registry choose (the native QP
            solver for small or dense QPs, a diffcp solver otherwise; see
            "Solvers" in the README), or one of "QP", "SCS", "ECOS",
            "Clarabel".
        solver_args: default solver settings for every call, as plain values
            (e.g. `{"eps": 1e-8}`; see `keras_optlayers.solvers.registry`).
            Unknown keys raise ValueError here.
        on_failure: what a failed solve does: "raise" (default) a
            `SolverError` naming the layer, statuses and batch indices;
            "warn" a warning, with the failed examples' outputs left as the
            solver returned them and zero gradients; "nan" a warning, NaN
            outputs and zero gradients for the failed examples, so the rest
            of the batch trains.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: one tensor per input parameter (a single tensor, or a list),
            each of the parameter's shape with leading batch dimensions.
        solver_args: settings for this call, overriding the defaults.

    Input shape:
        For each input parameter of shape `s`: `(..., *s)`; all inputs share
        their leading dimensions.

    Output shape:
        For each output variable of shape `v`: `(..., *v)`, with the inputs'
        leading dimensions; a single tensor when there is one output.

    Example:

    A learnable box projection, argmin_y ||y - x||² s.t. lower <= y <= upper,
    with upper = lower + exp(log_width) so that the box is never empty:

    >>> import cvxpy as cp
    >>> import keras
    >>> import numpy as np
    >>> class BoxProjection(ConvexLayer):
    ...     def build(self, input_shape):
    ...         n = input_shape[-1]
    ...         self.lower = self.add_weight(shape=(n,), initializer="zeros", name="lower")
    ...         self.log_width = self.add_weight(shape=(n,), initializer="zeros", name="log_width")
    ...         x, lower, upper = cp.Parameter(n), cp.Parameter(n), cp.Parameter(n)
    ...         y = cp.Variable(n)
    ...         problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [lower <= y, y <= upper])
    ...         self.set_problem(
    ...             problem,
    ...             inputs=[x],
    ...             weights={
    ...                 lower: self.lower,
    ...                 upper: lambda: self.lower + keras.ops.exp(self.log_width),
    ...             },
    ...             outputs=[y],
    ...         )
    >>> layer = BoxProjection()
    >>> y = layer(np.array([[-1.0, 0.5, 2.0]], dtype="float32"))
    >>> np.allclose(y, [[0.0, 0.5, 1.0]], atol=1e-6)  # x clipped to the box [0, 1]
    True
    """

    def __init__(
        self,
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
        on_failure: str = "raise",
        **kwargs,
    ):
        super().__init__(**kwargs)
        entry, _ = registry.check_solver_and_settings(solver, solver_args)
        self.solver = solver
        self.solver_args = dict(solver_args or {})
        self.on_failure = failure_policy.check_on_failure(on_failure)
        self.batched_problem: BatchedProblem | None = None
        self._input_parameters: tuple[cp.Parameter, ...] = ()
        self._weight_values: Callable[[], Sequence[Any]] = lambda: ()
        # Until the problem is built only an explicit native solver is known
        # to compile with XLA; keep jit_compile="auto" off the layer meanwhile.
        self.supports_jit = entry is not None and entry.runs_in_xla

    def set_problem(
        self,
        problem: cp.Problem,
        *,
        inputs: Sequence[cp.Parameter],
        outputs: Sequence[cp.Variable],
        weights: Mapping[cp.Parameter, ParameterSource] | Sequence[cp.Parameter] | None = None,
        weight_values: Callable[[], Sequence[Any]] | None = None,
    ) -> None:
        """Declares the layer's problem; call it from `build`.

        Args:
            problem: a DPP `cvxpy.Problem`.
            inputs: the parameters fed from the call's inputs, in order.
            outputs: the variables the layer returns, in order.
            weights: the remaining parameters, each mapped to a weight of the
                layer or to a function of no arguments that computes the
                parameter's value from weights (called at every call); or,
                with `weight_values`, the remaining parameters in order.
            weight_values: a function of no arguments returning the values
                of all of `weights`' parameters, in order, called once per
                call: for values that share work (the library's learnable
                layers compute them together, compiled).

        Raises:
            ValueError: if the problem is not DPP, the parameters are not
                exactly the problem's, or an output is not in the problem.
        """
        if not inputs:
            raise ValueError("`inputs` must list at least one parameter fed from the call. Received: inputs=[]")
        if weight_values is not None:
            if isinstance(weights, Mapping) or not callable(weight_values):
                raise ValueError(
                    "With `weight_values` (a function of no arguments), `weights` must list the parameters "
                    f"it gives values of. Received: weights={weights!r}, weight_values={weight_values!r}")
            parameters = list(weights or ())
        else:
            sources = dict(weights or {})
            for parameter, source in sources.items():
                if not (isinstance(source, keras.Variable) or callable(source)):
                    raise ValueError(
                        f"`weights` must map each parameter to a keras.Variable or a "
                        f"function of no arguments. Received: {parameter.name()}={source!r}"
                    )
            parameters = list(sources)
            values = tuple(sources.values())

            def weight_values():
                return [source if isinstance(source, keras.Variable) else source() for source in values]

        self.batched_problem = BatchedProblem(
            problem, [*inputs, *parameters], outputs,
            solver=self.solver, solver_args=self.solver_args, on_failure=self.on_failure)
        self._input_parameters = tuple(inputs)
        self._weight_values = weight_values
        self.supports_jit = self.batched_problem.solver.runs_in_xla

    def build(self, input_shape):
        raise NotImplementedError(
            f"{type(self).__name__} must override build(input_shape) to create its "
            "weights and call self.set_problem(...)."
        )

    def _built_problem(self) -> BatchedProblem:
        if self.batched_problem is None:
            raise RuntimeError(f"{type(self).__name__}.build did not call self.set_problem(...).")
        return self.batched_problem

    def call(self, inputs, solver_args: Mapping[str, Any] | None = None):
        problem = self._built_problem()
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(tensors) != len(self._input_parameters):
            raise ValueError(
                f"{type(self).__name__} takes {len(self._input_parameters)} input "
                f"tensor(s). Received: {len(tensors)} tensors."
            )
        # The problem batches over one leading dimension: fold any others into it.
        leading = None
        batched = []
        for tensor, parameter in zip(tensors, self._input_parameters):
            tensor = tf.convert_to_tensor(tensor)
            if tensor.shape.rank is not None and len(parameter.shape) and tensor.shape.rank >= len(parameter.shape):
                checks.check_built_input_size(type(self).__name__, parameter.shape[-1], tensor.shape[-1])
            if leading is None:
                leading = tf.shape(tensor)[: tensor.shape.rank - len(parameter.shape)]
            batched.append(tf.reshape(tensor, (-1, *parameter.shape)))
        weight_values = list(self._weight_values())
        weight_count = len(problem.program.parameters) - len(self._input_parameters)
        if len(weight_values) != weight_count:
            raise ValueError(
                f"{type(self).__name__}'s `weight_values` must give {weight_count} values, one per "
                f"parameter of `weights`. Received: {len(weight_values)} values.")
        solutions = problem(*batched, *weight_values, solver_args=solver_args, layer_name=self.name)
        outputs = [
            tf.cast(
                tf.reshape(solution, tf.concat([leading, tf.constant(output.shape, tf.int32)], axis=0)),
                self.compute_dtype,
            )
            for solution, output in zip(solutions, problem.program.outputs)
        ]
        return outputs[0] if len(outputs) == 1 else outputs

    def compute_output_shape(self, input_shape):
        problem = self._built_problem()
        shapes = input_shape if len(self._input_parameters) > 1 else [input_shape]
        first_shape, first_parameter = tuple(shapes[0]), self._input_parameters[0]
        leading = first_shape[: len(first_shape) - len(first_parameter.shape)]
        output_shapes = [leading + tuple(o.shape) for o in problem.program.outputs]
        return output_shapes[0] if len(output_shapes) == 1 else output_shapes


    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "solver": self.solver,
            "solver_args": dict(self.solver_args) or None,
            "on_failure": self.on_failure,
        }

"""`CvxpyLayer`: any DPP problem written in CVXPY as a Keras layer."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import cvxpy as cp
import keras
import tensorflow as tf

from keras_optlayers.core import checks
from keras_optlayers.ops.batched_problem import BatchedProblem
from keras_optlayers.ops.solver_statistics import ReportsSolverStatistics


class CvxpyLayer(ReportsSolverStatistics, keras.layers.Layer):
    """A differentiable layer that solves a parametrized convex problem.

    The problem is compiled once, at construction, into affine maps around a
    solver: each call stacks the parameter tensors, maps them to solver data
    for the whole batch in TF ops, solves, and reads the requested variables
    from the solution. Gradients come from implicit differentiation of the
    optimality conditions (diffcp's adjoint for cone programs, the KKT
    system for quadratic programs).

    Quadratic programs (quadratic or linear objective, only equality and
    inequality constraints after canonicalization) go to the native QP
    solver, and second-order cone programs of moderate size to the native
    SOCP solver, both written in TF ops; everything else goes through
    diffcp's solvers on the host (`tf.numpy_function`), which XLA cannot
    compile: the layer then sets `supports_jit = False`, so
    `model.compile(jit_compile="auto")` keeps it out of XLA. Eager calls of
    a native solver at a small batch move to XLA after many calls at one
    shape, compiled in the background (`keras_optlayers.eager_xla`).

    Args:
        problem: a `cvxpy.Problem` that is DPP (or DGP and DPP, with gp=True).
        parameters: the problem's `cp.Parameter`s, all of them, in the order
            the layer is called with.
        variables: the `cp.Variable`s to return, in order; a constraint's dual
            variable (`constraint.dual_variables[0]`) returns its dual value.
        solver: None (chosen by the registry: the native QP solver for
            small or dense QPs, else a diffcp solver; see "Solvers" in the
            README), "QP" (raises ValueError if the problem is not a QP),
            "SCS", "ECOS" or "Clarabel".
        solver_args: default settings for every call, checked here. Each
            solver's own settings (e.g. `eps`, `max_iters` for SCS; `tol`,
            `max_iter` for the QP solver) and `mode` ("auto", "dense" or
            "lsqr") for diffcp's derivative. Accuracy targets and iteration
            limits are translated to the solver that runs; another solver's
            own setting selects that solver (with `solver=None`) or raises.
        gp: the problem is a geometric program (CVXPY's DGP); parameters must
            be positive.
        on_failure: "raise" (default), "warn" or "nan"; see `ConvexLayer`.
        **kwargs: base layer keyword arguments (e.g. `name`).

    Call arguments:
        *tensors: one tensor per parameter, of the parameter's shape or with
            one leading batch dimension. Unbatched tensors are shared by the
            batch (their gradient is summed over it).
        solver_args: settings for this call, overriding the defaults.

    Returns:
        A list with one tensor per requested variable, of the variable's shape
        with a leading batch dimension whenever an input had one. The dtype is
        the inputs' widest floating dtype (float64 if any input is float64,
        else float32, else float16 or bfloat16 under mixed precision); the
        solve runs in float64.

    Raises:
        ValueError: at construction, for a problem that is not DPP, parameters
            that are not exactly the problem's, or variables not in it; at
            call time, for a wrong number of tensors, a wrong shape,
            inconsistent batch sizes or NaN/Inf values, before any solve.
        SolverError: when a solve fails (infeasible, unbounded, iteration
            limit...), naming the status and the batch indices.

    Example:

    >>> import cvxpy as cp
    >>> x = cp.Parameter(3)
    >>> y = cp.Variable(3)
    >>> problem = cp.Problem(cp.Minimize(cp.sum_squares(y - x)), [y >= 0])
    >>> relu = CvxpyLayer(problem, parameters=[x], variables=[y])
    >>> y_value, = relu(tf.constant([[-1.0, 0.5, 2.0]]))
    """

    def __init__(
        self,
        problem: cp.Problem,
        parameters: Sequence[cp.Parameter],
        variables: Sequence[cp.Variable],
        *,
        solver: str | None = None,
        solver_args: Mapping[str, Any] | None = None,
        gp: bool = False,
        on_failure: str = "raise",
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)  # float64 inputs stay float64
        super().__init__(**kwargs)
        # With autocast off, Keras' conversion of the parameters only turns non-tensors into tensors, which
        # `__call__` does itself, cheaper; with autocast on, Keras converts and casts them as usual. (Keras'
        # preprocessing layers set the same attribute.)
        self._convert_input_args = self.autocast
        self.problem = problem
        self.batched_problem = BatchedProblem(
            problem, parameters, variables, solver=solver, solver_args=solver_args, gp=gp,
            on_failure=on_failure)
        # A host callback cannot be compiled by XLA; keep jit_compile="auto" off it.
        self.supports_jit = self.batched_problem.solver.runs_in_xla
        self.built = True

    def __call__(self, *args, **kwargs):
        # Keras converts several positional arguments through a map over their structure (about 0.25 ms of a
        # 4 ms eager call at batch 1); one pass here, leaving tensors and symbolic inputs as they are, lets it
        # skip that. The batched problem checks what they hold, with errors that name the parameter.
        if not self._convert_input_args:
            args = tuple(arg if tf.is_tensor(arg) or isinstance(arg, keras.KerasTensor) else tf.convert_to_tensor(arg)
                         for arg in args)
        return super().__call__(*args, **kwargs)

    @property
    def solver(self) -> str:
        """The name of the solver that runs."""
        return self.batched_problem.solver.name

    def call(self, *tensors, solver_args: Mapping[str, Any] | None = None) -> list[tf.Tensor]:
        return self.batched_problem(*tensors, solver_args=solver_args, layer_name=self.name)

    def compute_output_spec(self, *tensors, solver_args: Mapping[str, Any] | None = None):
        # Keras' default passes only the first of *tensors' shapes on; the
        # outputs are batched when any input is.
        program = self.batched_problem.program
        batched, batch_size = checks.check_parameter_tensors(
            program.parameters, [(tuple(t.shape), True, "float") for t in tensors])
        dtypes = [keras.backend.standardize_dtype(t.dtype) for t in tensors]
        dtype = next((wide for wide in ("float64", "float32") if wide in dtypes), dtypes[0])
        leading = (batch_size,) if any(batched) else ()
        return [keras.KerasTensor(leading + tuple(o.shape), dtype=dtype) for o in program.outputs]


    def get_config(self):
        raise NotImplementedError(
            "CvxpyLayer holds a CVXPY problem, which has no plain-value config, so a "
            "model holding it cannot be saved as .keras. Subclass "
            "keras_optlayers.ConvexLayer, which rebuilds its problem from plain "
            "arguments, for a savable layer."
        )

"""`SolverStatisticsCallback`: each optimization layer's solver statistics in the epoch logs."""

from __future__ import annotations

import keras_optlayers._tensorflow_check  # noqa: F401  (TensorFlow and its Keras backend first)

from typing import Any

import keras


class SolverStatisticsCallback(keras.callbacks.Callback):
    """Adds each optimization layer's solver statistics to the epoch logs.

    For every layer of the model that has `solver_statistics()` (every
    `CvxpyLayer` and `ConvexLayer`), the epoch's statistics are added to the
    logs as `<layer name>/solver_<statistic>`:

    * `calls`, `examples`, `failures`: solver calls, examples solved, and
      examples whose solve failed under `on_failure="warn"` or `"nan"` (with
      "raise" the first failure stops training);
    * `mean_iterations`: solver iterations per example;
    * `solve_seconds`: wall-clock time in the solver (forward passes; 0
      under XLA);
    * `worst_residual`: the largest relative optimality residual of a
      solved example (each passed the check at 1e-6): how close the epoch's
      solutions came to being refused.

    The statistics are reset at the start of each epoch and cover the
    training steps (validation runs after `on_epoch_begin` too, so it is
    counted as well). The logs reach `History` (`model.fit(...).history`),
    and `keras.callbacks.TensorBoard` when it comes after this callback in
    the `callbacks` list.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> from keras_optlayers import PolytopeProjection
    >>> model = keras.Sequential([keras.Input((2,)), PolytopeProjection(4, on_failure="nan", name="polytope")])
    >>> model.compile(optimizer="adam", loss="mse")
    >>> history = model.fit(np.zeros((8, 2)), np.zeros((8, 2)), epochs=1, verbose=0,
    ...                     callbacks=[SolverStatisticsCallback()])
    >>> history.history["polytope/solver_failures"]
    [0]
    >>> history.history["polytope/solver_worst_residual"][0] < 1e-6
    True
    """

    def _layers(self) -> list[Any]:
        return [layer for layer in self.model._flatten_layers() if hasattr(layer, "solver_statistics")
                and getattr(layer, "built", False)]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for layer in self._layers():
            layer.reset_solver_statistics()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        for layer in self._layers():
            for name, value in layer.solver_statistics().items():
                logs[f"{layer.name}/solver_{name}"] = value

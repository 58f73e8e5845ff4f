"""The host path's adjoint limits BLAS to one thread per worker thread, cheaply.

Finding the loaded BLAS libraries reads the process's memory map (3.5 ms a
call here, a third of an LML layer's batch-1 forward and backward when it was
done at every call); it is done once.
"""

import numpy as np
import tensorflow as tf
import threadpoolctl
from helpers import sparsemax

from keras_optlayers import CvxpyLayer
from keras_optlayers.solvers import cone_solver


def test_blas_libraries_are_looked_up_once_and_not_for_a_single_example(monkeypatch):
    constructed = []

    class CountingController(threadpoolctl.ThreadpoolController):
        def __init__(self):
            constructed.append(True)
            super().__init__()

    monkeypatch.setattr(cone_solver, "ThreadpoolController", CountingController)
    monkeypatch.setattr(cone_solver, "_BLAS_CONTROLLER", None)
    family = sparsemax(4)
    layer = CvxpyLayer(family.problem, family.parameters, family.variables, solver="Clarabel")

    def gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x)[0] * np.arange(4.0))
        return tape.gradient(loss, x)

    gradient(tf.constant(np.random.default_rng(0).standard_normal((1, 4))))
    assert not constructed  # one example: no worker threads, nothing to limit
    for _ in range(2):
        gradient(tf.constant(np.random.default_rng(1).standard_normal((8, 4))))
    assert len(constructed) == (1 if cone_solver._THREADS > 1 else 0)

"""Check one differentiable layer against another: outputs and gradients.

Typical use: a fast specialized layer against the same problem through the
generic `CvxpyLayer`:

    fast = CSoftmax(upper=0.5)
    reference = CvxpyLayer(*fast.cvxpy_problem(n))
    print(compare_layers(fast, reference, x))
"""

from __future__ import annotations

import keras_optlayers._tensorflow_check  # noqa: F401  (TensorFlow and its Keras backend first)

import dataclasses
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class ComparisonReport:
    """How far two layers are apart on the same inputs.

    Attributes:
        output_error: max |fast(x) - reference(x)| over all entries.
        gradient_errors: for each input, max abs difference of the gradients
            of the same random linear functional sum(w * y) of the output.
        atol, rtol: the tolerances for the outputs (|a - b| <= atol + rtol |b|).
        grad_atol, grad_rtol: the same for the gradients.
        passed: every output and gradient entry is within its tolerance.
    """

    output_error: float
    gradient_errors: tuple[float, ...]
    atol: float
    rtol: float
    grad_atol: float
    grad_rtol: float
    passed: bool

    def __str__(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        gradients = ", ".join(f"{e:.3g}" for e in self.gradient_errors)
        return (
            f"ComparisonReport {verdict}: output max abs error {self.output_error:.3g} "
            f"(atol {self.atol:g}, rtol {self.rtol:g}); gradient max abs errors [{gradients}] "
            f"(atol {self.grad_atol:g}, rtol {self.grad_rtol:g})"
        )


def _single_output(outputs) -> tf.Tensor:
    """Unwraps the one-element list a CvxpyLayer returns."""
    if isinstance(outputs, (list, tuple)):
        if len(outputs) != 1:
            raise ValueError(f"Expected a layer with one output. Received: {len(outputs)} outputs")
        outputs = outputs[0]
    return tf.cast(outputs, tf.float64)


def _output_and_gradients(
    layer: Callable, inputs: Sequence[tf.Tensor], weights: np.ndarray | None, seed: int
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = _single_output(layer(*inputs))
        if weights is None:
            weights = np.random.default_rng(seed).standard_normal(y.shape)
        elif weights.shape != tuple(y.shape):
            raise ValueError(
                "Expected both layers to return outputs of the same shape. Received: "
                f"fast output shape={weights.shape}, reference output shape={tuple(y.shape)}")
        functional = tf.reduce_sum(tf.constant(weights, tf.float64) * y)
    gradients = tape.gradient(functional, inputs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return y.numpy(), [g.numpy().astype(np.float64) for g in gradients], weights


def _within(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> tuple[float, bool]:
    error = float(np.max(np.abs(a - b), initial=0.0))
    return error, bool(np.all(np.abs(a - b) <= atol + rtol * np.abs(b)))


def compare_layers(
    fast: Callable,
    reference: Callable,
    inputs,
    *,
    atol: float = 2e-6,
    rtol: float = 0.0,
    grad_atol: float = 1e-5,
    grad_rtol: float = 0.0,
    seed: int = 0,
) -> ComparisonReport:
    """Runs two layers (or any TF callables) on the same inputs and compares them.

    Both are called eagerly as `layer(*inputs)`; a one-element list output
    (as `CvxpyLayer` returns) is unwrapped. The gradients compared are those
    of sum(w * y) with respect to every input, for one seeded random w of
    the output's shape. Outputs and gradients are compared in float64.

    Args:
        fast: the layer under test.
        reference: the layer trusted to be right.
        inputs: a tensor or array, or a list/tuple of them (one per call
            argument).
        atol, rtol: output tolerance: |fast - reference| <= atol + rtol |reference|.
        grad_atol, grad_rtol: the same for the gradients.
        seed: seed of the random functional w.

    Returns:
        A `ComparisonReport`; `str(report)` reads as one line.

    Raises:
        ValueError: when the two outputs differ in shape.
    """
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    tensors = [tf.convert_to_tensor(t) for t in inputs]
    fast_y, fast_grads, weights = _output_and_gradients(fast, tensors, None, seed)
    reference_y, reference_grads, _ = _output_and_gradients(reference, tensors, weights, seed)
    output_error, outputs_ok = _within(fast_y, reference_y, atol, rtol)
    gradient_checks = [_within(a, b, grad_atol, grad_rtol) for a, b in zip(fast_grads, reference_grads)]
    return ComparisonReport(
        output_error=output_error,
        gradient_errors=tuple(error for error, _ in gradient_checks),
        atol=atol,
        rtol=rtol,
        grad_atol=grad_atol,
        grad_rtol=grad_rtol,
        passed=outputs_ok and all(ok for _, ok in gradient_checks),
    )

"""Framework-free input checks, shared by the Keras and torch front ends.

Nothing here imports torch or TensorFlow: the checks work on shapes, dtype
names, python numbers and numpy arrays, so that both front ends raise the
same ValueError, with the same text, for the same mistake.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from keras_optlayers.core.compiler import ParameterInfo


# -- constructor arguments ----------------------------------------------------


def is_finite_number(value) -> bool:
    """A python int or float (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive(name: str, value) -> float:
    """Checks a positive finite python number; returns it as a float."""
    if not (is_finite_number(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)


def known_input_size(input_shape: Sequence[int | None], arguments: Any = None) -> int:
    """The size of the last input dimension, which sets a learnable layer's problem."""
    if not len(input_shape) or input_shape[-1] is None:
        raise ValueError(f"Expected the last input dimension to be known. Received: input_shape={tuple(input_shape)}")
    return int(input_shape[-1])


def check_built_input_size(layer_name: str, built: int, received: int | None) -> None:
    """A learnable layer's weights fix the last input dimension it accepts."""
    if received is not None and received != built:
        raise ValueError(
            f"{layer_name} was built for inputs whose last dimension is {built}. "
            f"Received: inputs with last dimension {received}")


# -- the parameter tensors of CvxpyLayer ---------------------------------------


def check_parameter_count(infos: Sequence[ParameterInfo], count: int) -> None:
    if count != len(infos):
        raise ValueError(
            f"Expected {len(infos)} tensors, one per parameter ({[p.name for p in infos]}), "
            f"in the order of `parameters`. Received: {count} tensors."
        )


def check_floating(info: ParameterInfo, is_floating: bool, dtype_name: str) -> None:
    if not is_floating:
        raise ValueError(
            f"Parameter '{info.name}' must be a float32 or float64 tensor. "
            f"Received: dtype={dtype_name}"
        )


def is_batched(info: ParameterInfo, shape: tuple) -> bool:
    """Whether `shape` is the parameter's shape with a leading batch dimension.

    Raises ValueError for any other shape (None entries match any size).
    """
    rank = len(shape)
    batched = rank == len(info.shape) + 1
    trailing = tuple(shape[1:]) if batched else tuple(shape)
    if rank not in (len(info.shape), len(info.shape) + 1) or any(
        d is not None and d != e for d, e in zip(trailing, info.shape)
    ):
        raise ValueError(
            f"Parameter '{info.name}' must have shape {info.shape} or "
            f"(batch_size, *{info.shape}). Received: shape={tuple(shape)}"
        )
    return batched


def common_batch_size(named_sizes: Sequence[tuple[str, int]]) -> int:
    """The one batch size of the batched parameters (1 when none is batched)."""
    if not named_sizes:
        return 1
    static = sorted(set(named_sizes))
    if len({size for _, size in static}) > 1:
        sizes = ", ".join(f"{name}: {size}" for name, size in static)
        raise ValueError(f"Batched parameters must share one batch size. Received: {sizes}")
    return static[0][1]


def check_parameter_tensors(
    infos: Sequence[ParameterInfo], tensors: Sequence[tuple[tuple, bool, str]]
) -> tuple[list[bool], int | None]:
    """Checks a layer call's tensors, described as (shape, is_floating, dtype name).

    Returns which tensors are batched and the batch size (None when it is
    not known statically, 1 when nothing is batched); raises ValueError for
    a wrong count, dtype, shape or mismatched batch sizes.
    """
    check_parameter_count(infos, len(tensors))
    batched = []
    for info, (shape, is_floating, dtype_name) in zip(infos, tensors):
        check_floating(info, is_floating, dtype_name)
        batched.append(is_batched(info, tuple(shape)))
    sizes = [(info.name, shape[0]) for info, (shape, _, _), b in zip(infos, tensors, batched) if b]
    known = [(name, size) for name, size in sizes if size is not None]
    if known:
        return batched, common_batch_size(known)
    return batched, (None if sizes else 1)


def non_finite_parameter_message(info: ParameterInfo) -> str:
    return f"Parameter '{info.name}' contains NaN or Inf."


def non_positive_parameter_message(info: ParameterInfo) -> str:
    return (f"Parameter '{info.name}' must be positive: a geometric program (gp=True) "
            "takes the logarithm of its parameters.")


# -- the projection layers (Sparsemax, CSparsemax, CSoftmax, LML) -----------


def check_axis_argument(axis) -> None:
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ValueError(f"`axis` must be an integer. Received: axis={axis!r}")


def canonical_axis(axis: int, rank: int | None, name: str = "x") -> int:
    """Returns `axis` as a non-negative index, checking it against `rank`."""
    if rank is None:
        raise ValueError(f"`{name}` must have a known rank. Received: {name} with unknown rank")
    if rank == 0:
        raise ValueError(f"`{name}` must have at least one dimension. Received: {name} of rank 0")
    if not -rank <= axis < rank:
        raise ValueError(f"`axis` is out of range for an input of rank {rank}. Received: axis={axis}")
    return axis % rank


def check_float_upper(upper: float, n: int | None) -> None:
    """Checks a python-number upper bound: positive and n * upper >= 1."""
    if not np.isfinite(upper) or upper <= 0:
        raise ValueError(f"`upper` must be a positive finite number. Received: upper={upper}")
    if n is not None and upper * n < 1.0 - n * np.finfo(np.float32).eps:
        raise ValueError(
            "`upper` times the size of `axis` must be at least 1, or no point is feasible. "
            f"Received: upper={upper}, n={n}"
        )


def check_upper_argument(upper) -> float | None:
    """A construction-time `upper`: None or a python number, returned as a float."""
    if upper is None:
        return None
    if isinstance(upper, bool) or not isinstance(upper, (int, float, np.integer, np.floating)):
        raise ValueError(
            "`upper` given at construction must be a python number; pass per-element "
            f"bounds at call time instead, `layer(x, upper)`. Received: upper={upper!r}"
        )
    upper = float(upper)
    check_float_upper(upper, n=None)
    return upper


def check_call_upper(layer_name: str, fixed_upper: float | None, upper) -> None:
    """The bounds come from exactly one place: the constructor or the call."""
    if fixed_upper is not None and upper is not None:
        raise ValueError(
            f"`upper` was fixed at construction; do not pass it again at call time. Received: upper={fixed_upper}"
        )
    if fixed_upper is None and upper is None:
        raise ValueError(
            f"{layer_name} was built with upper=None, so the call needs the bounds: "
            "`layer(x, upper)`. Received: upper=None"
        )


# The first sentences of the data-check errors, also the texts of the graph
# assertions that stand in for them inside a TensorFlow graph.
UPPER_SIGN_MESSAGE = "The upper bounds must be nonnegative."
UPPER_SUM_MESSAGE = "The upper bounds must sum to at least 1 along `axis`, or no point is feasible."


def non_finite_values_message(name: str) -> str:
    return f"`{name}` must contain only finite values (no NaN or Inf)."


def check_upper_values(upper: np.ndarray, tolerance: float) -> None:
    """Call-time bounds (..., n): nonnegative, each slice summing to >= 1."""
    check_upper_signs(upper)
    check_upper_sums(upper.sum(axis=-1), tolerance)


def check_upper_signs(upper: np.ndarray) -> None:
    if np.any(upper < 0):
        raise ValueError(f"{UPPER_SIGN_MESSAGE} Received: upper with minimum {upper.min()!r}")


def check_upper_sums(sums: np.ndarray, tolerance: float) -> None:
    """`tolerance` absorbs rounding, e.g. u = 1/3 three times in float32."""
    if np.any(sums < 1.0 - tolerance):
        raise ValueError(f"{UPPER_SUM_MESSAGE} Received: upper with sum {sums.min()!r}")


def check_finite_values(name: str, values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        counts = f"{int(np.isnan(values).sum())} NaN and {int(np.isinf(values).sum())} Inf entries"
        raise ValueError(f"{non_finite_values_message(name)} Received: {name} with {counts}")


def check_k(k, n: int | None) -> float:
    """Checks that k is a number strictly between 0 and n; returns it as a float."""
    if isinstance(k, bool) or not isinstance(k, (int, float, np.integer, np.floating)):
        raise ValueError(f"`k` must be a python number. Received: k={k!r}")
    if not math.isfinite(k) or k <= 0 or (n is not None and k >= n):
        raise ValueError(f"`k` must be strictly between 0 and n, the size of `axis`. Received: k={k}, n={n}")
    return float(k)

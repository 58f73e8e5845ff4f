"""Checks for a usable TensorFlow, and Keras on its backend, before anything uses them.

Importing this module runs the check once; every module of the Keras front
end imports it first. TensorFlow is not a hard dependency in pyproject (see
there): this turns a missing or old install, or another Keras backend, into
a message that says what to do.
"""

from __future__ import annotations

MINIMUM_TENSORFLOW = (2, 16)


def check_tensorflow() -> None:
    try:
        import tensorflow as tf
    except ImportError as err:
        raise ImportError(
            "keras-optlayers' Keras layers need TensorFlow 2.16 or newer. Install it with "
            "`pip install keras-optlayers[cpu]` (tensorflow-cpu) or "
            "`pip install keras-optlayers[tensorflow]`. (`keras_optlayers.torch` works without it.)"
        ) from err
    version = tuple(int(part) for part in tf.__version__.split(".")[:2] if part.isdigit())
    if version < MINIMUM_TENSORFLOW:
        raise ImportError(f"keras-optlayers needs TensorFlow 2.16 or newer; found {tf.__version__}.")
    import keras

    if keras.config.backend() != "tensorflow":
        raise ImportError(
            "keras-optlayers' layers are written in TensorFlow ops and need Keras' "
            f"'tensorflow' backend. Received: KERAS_BACKEND={keras.config.backend()!r}. Set "
            "KERAS_BACKEND=tensorflow before importing keras (torch users: keras_optlayers.torch).")


check_tensorflow()

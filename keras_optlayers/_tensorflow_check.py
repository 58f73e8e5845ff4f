"""Checks for a usable TensorFlow before anything imports it.

TensorFlow is not a hard dependency in pyproject (see there): this turns a
missing or old install into a message that says what to install.
"""

MINIMUM_TENSORFLOW = (2, 16)


def check_tensorflow() -> None:
    try:
        import tensorflow as tf
    except ImportError as err:
        raise ImportError(
            "keras-optlayers needs TensorFlow 2.16 or newer. Install it with "
            "`pip install keras-optlayers[cpu]` (tensorflow-cpu) or "
            "`pip install keras-optlayers[tensorflow]`."
        ) from err
    version = tuple(int(part) for part in tf.__version__.split(".")[:2] if part.isdigit())
    if version < MINIMUM_TENSORFLOW:
        raise ImportError(
            f"keras-optlayers needs TensorFlow 2.16 or newer; found {tf.__version__}."
        )

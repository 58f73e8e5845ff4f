"""Whether the code being traced will be compiled by XLA."""

import tensorflow as tf
from tensorflow.python.ops import control_flow_util


def in_xla_context() -> bool:
    """True while tracing inside `tf.function(jit_compile=True)`.

    TensorFlow has no public query; such functions trace inside an XLA
    control-flow context, which this detects.
    """
    if tf.executing_eagerly():
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())

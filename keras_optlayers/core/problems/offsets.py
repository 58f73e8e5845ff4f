"""Right-hand sides tied to a point z0, so that learned constraints stay feasible.

With b = A z0 and h = G z0 + s0 (s0 > 0), z0 satisfies A z0 = b and lies
strictly inside G z <= h whatever A and G become. The functions take any
arrays or tensors that support `@` and `+`: numpy, TensorFlow, Keras
variables and torch alike.
"""

from __future__ import annotations


def equality_offsets(A, z0):
    """b = A z0."""
    return A @ z0


def inequality_offsets(G, z0, slack: float):
    """h = G z0 + s0, with s0 = `slack` in every coordinate."""
    return G @ z0 + slack

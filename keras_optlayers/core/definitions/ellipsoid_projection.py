"""The definition of EllipsoidProjection: projection onto a learnable ellipsoid."""

from __future__ import annotations

from keras_optlayers.core import checks
from keras_optlayers.core.definitions.base import LearnableDefinition, Weight
from keras_optlayers.core.problems.ellipsoid import ellipsoid_projection_problem

ELLIPSOID_PROJECTION = LearnableDefinition(
    name="EllipsoidProjection",
    arguments=(),
    weights=(
        Weight("A", lambda n, a: (n, n), "identity"),
        Weight("z", lambda n, a: (n,), "zeros"),
    ),
    input_size=checks.known_input_size,
    problem=lambda n, a: ellipsoid_projection_problem(n),
    wiring=lambda w, a: (w["A"], w["z"]),
)

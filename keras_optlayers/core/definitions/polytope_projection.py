"""The definition of PolytopeProjection: projection onto a learnable polytope."""

from __future__ import annotations

from keras_optlayers.core import checks
from keras_optlayers.core.definitions.base import Argument, LearnableDefinition, Weight
from keras_optlayers.core.problems.offsets import inequality_offsets
from keras_optlayers.core.problems.polytope import check_num_constraints, polytope_projection_problem

# How h is set: tied to an interior point z0, or a weight of its own.
OFFSETS = ("interior_point", "free")


def _check_offset(offset):
    if offset not in OFFSETS:
        raise ValueError(f"`offset` must be one of {OFFSETS}. Received: offset={offset!r}")
    return offset


def _check_interior_point(value):
    if not checks.is_finite_number(value):
        raise ValueError(f"`interior_point` must be a finite number. Received: interior_point={value!r}")
    return float(value)


def _check_flag(name):
    def check(value):
        if not isinstance(value, bool):
            raise ValueError(f"`{name}` must be a boolean. Received: {name}={value!r}")
        return value
    return check


def _num_constraints(num_constraints):
    check_num_constraints(num_constraints)
    return num_constraints


def _free(arguments) -> bool:
    return arguments["offset"] == "free"


def _tied(arguments) -> bool:
    return arguments["offset"] == "interior_point"


POLYTOPE_PROJECTION = LearnableDefinition(
    name="PolytopeProjection",
    arguments=(
        Argument("num_constraints", check=_num_constraints),
        Argument("offset", "interior_point", _check_offset),
        Argument("interior_point", 0.0, _check_interior_point),
        Argument("slack", 1.0, lambda value: checks.check_positive("slack", value)),
        Argument("trainable_interior_point", False, _check_flag("trainable_interior_point")),
    ),
    weights=(
        Weight("G", lambda n, a: (a["num_constraints"], n), "glorot_uniform"),
        Weight("h", lambda n, a: (a["num_constraints"],), "ones", present=_free),
        Weight("z0", lambda n, a: (n,), None, fill=lambda a: a["interior_point"], present=_tied,
               trainable=lambda a: a["trainable_interior_point"]),
    ),
    input_size=checks.known_input_size,
    problem=lambda n, a: polytope_projection_problem(n, a["num_constraints"]),
    wiring=lambda w, a: (w["G"], w["h"] if _free(a) else inequality_offsets(w["G"], w["z0"], a["slack"])),
)

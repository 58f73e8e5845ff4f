"""Fixtures shared by the learnable-layer tests."""

from __future__ import annotations

import os
from typing import Callable

if "PYTEST_XDIST_WORKER" in os.environ:
    # One core per xdist worker (`-n 2` on the 2-core CI machine): TensorFlow's
    # and BLAS's own thread pools would otherwise contend across workers. Set
    # before TensorFlow is imported, which reads them once.
    for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(variable, "1")

# Eager small batches move to XLA after many calls (keras_optlayers/eager_xla.py): off
# here, so that each test's eager calls run the plain graph they check, and no test
# pays for a background compilation by chance; test_eager_xla.py turns it on.
os.environ.setdefault("KERAS_OPTLAYERS_EAGER_XLA_AFTER", "off")

import keras
import pytest
from helpers import Runner

from keras_optlayers.layers.ellipsoid_projection import EllipsoidProjection
from keras_optlayers.layers.optnet_qp import OptNetQP
from keras_optlayers.layers.polytope_projection import PolytopeProjection

# The library's learnable layers, in small configurations, by test id.
LEARNABLE_LAYERS: dict[str, Callable[..., keras.layers.Layer]] = {
    "polytope": lambda **kwargs: PolytopeProjection(4, **kwargs),
    "polytope_free": lambda **kwargs: PolytopeProjection(4, offset="free", **kwargs),
    "polytope_trainable_z0": lambda **kwargs: PolytopeProjection(4, trainable_interior_point=True, **kwargs),
    "ellipsoid": lambda **kwargs: EllipsoidProjection(**kwargs),
    "optnet_qp": lambda **kwargs: OptNetQP(num_eq=1, num_ineq=2, **kwargs),
}


@pytest.fixture(scope="session")
def default_solver() -> str | None:
    """The solver the training tests pass to layers: the registry's choice."""
    return None


@pytest.fixture(scope="session")
def accurate_solver() -> dict:
    """Layer keyword arguments for answers accurate to ~1e-9: SCS, tight.

    Tight enough that central differences with a 1e-4 step (error ~1e-8
    where the solution map is smooth) see the solution map, not the solver's
    stopping rule.
    """
    return {"solver": "SCS", "solver_args": {"eps_abs": 1e-12, "eps_rel": 1e-12, "max_iters": 100_000}}


@pytest.fixture(params=sorted(LEARNABLE_LAYERS))
def make_learnable_layer(request) -> Callable[..., keras.layers.Layer]:
    """Each learnable layer in turn: a factory taking layer keyword arguments."""
    return LEARNABLE_LAYERS[request.param]


@pytest.fixture
def learnable_layers() -> dict[str, Callable[..., keras.layers.Layer]]:
    """All the learnable layers' factories, by name (for one test over all)."""
    return dict(LEARNABLE_LAYERS)


@pytest.fixture(params=["eager", "tf_function"])
def run(request):
    """`run(fn, *args)`: every layer test runs both eagerly and in a graph."""
    return Runner(eager=request.param == "eager")

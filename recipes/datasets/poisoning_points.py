"""Two classes in the plane, for the data-poisoning recipe.

Label +1 ~ N((1, 1), I) and label -1 ~ N((-1, -1), I), equally likely
(numpy's generator, seed 7): a small training set for a logistic
regression the attacker perturbs, and a larger test set the attacker wants
the regression to fail on. Features "x" (2,), "label" () in {-1, +1}.
"""

from __future__ import annotations

import numpy as np

from recipes.datasets.array_builder import ArrayBuilder, split_seed

DIM = 2
CLASS_OFFSET = 1.0
POINTS_SEED = 7


class PoisoningPoints(ArrayBuilder):
    __doc__ = __doc__

    VERSION = "1.0.0"
    RELEASE_NOTES = {"1.0.0": "First version."}
    SPLIT_SIZES = {"train": 60, "test": 500}
    FEATURE_SHAPES = {"x": (DIM,), "label": ()}
    SUPERVISED_KEYS = ("x", "label")

    def make_split(self, split: str, size: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(split_seed(POINTS_SEED, split))
        label = rng.choice([-1.0, 1.0], size)
        x = CLASS_OFFSET * label[:, None] + rng.standard_normal((size, DIM))
        return {"x": x, "label": label}

"""A multi-label set: noisy sums of label prototypes.

20 labels, each with a prototype in R^32 (N(0, I), numpy's generator,
seed 5). An example has 2 to 4 distinct labels drawn uniformly; its features
are the sum of their prototypes plus N(0, 1.5² I) noise, so that the labels
can be read off only approximately. Features "x" (32,), targets "labels"
(20,), multi-hot.
"""

from __future__ import annotations

import numpy as np

from recipes.datasets.array_builder import ArrayBuilder, split_seed

NUM_FEATURES = 32
NUM_LABELS = 20
MIN_LABELS, MAX_LABELS = 2, 4
NOISE = 1.5
PROTOTYPES_SEED = 5
EXAMPLES_SEED = 3


def label_prototypes() -> np.ndarray:
    """(NUM_LABELS, NUM_FEATURES), float64."""
    return np.random.default_rng(PROTOTYPES_SEED).standard_normal((NUM_LABELS, NUM_FEATURES))


class MultilabelPrototypes(ArrayBuilder):
    __doc__ = __doc__

    VERSION = "1.0.0"
    RELEASE_NOTES = {"1.0.0": "First version."}
    SPLIT_SIZES = {"train": 4096, "test": 1024}
    FEATURE_SHAPES = {"x": (NUM_FEATURES,), "labels": (NUM_LABELS,)}
    SUPERVISED_KEYS = ("x", "labels")

    def make_split(self, split: str, size: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(split_seed(EXAMPLES_SEED, split))
        labels = np.zeros((size, NUM_LABELS))
        for row, count in zip(labels, rng.integers(MIN_LABELS, MAX_LABELS + 1, size), strict=True):
            row[rng.choice(NUM_LABELS, count, replace=False)] = 1.0
        x = labels @ label_prototypes() + NOISE * rng.standard_normal((size, NUM_FEATURES))
        return {"x": x, "labels": labels}

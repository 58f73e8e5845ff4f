"""A TFDS builder base for data sets the recipes compute themselves.

Each data set is a few named float32 arrays per split, computed by a seeded,
offline function of the split's name and size: no download, and the same
examples on every machine. Subclasses declare `VERSION`, `SPLIT_SIZES` and
`FEATURE_SHAPES` and write `make_split`; the base class does the TFDS part
(info, splits, examples). Prepared on first use into the TFDS data directory
(`~/tensorflow_datasets` unless `data_dir` or `TFDS_DATA_DIR` says otherwise).
"""

from __future__ import annotations

from typing import ClassVar, Iterator, Mapping

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds


class ArrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Examples cut from arrays that `make_split` computes, one split at a time."""

    SPLIT_SIZES: ClassVar[Mapping[str, int]]
    FEATURE_SHAPES: ClassVar[Mapping[str, tuple[int, ...]]]
    SUPERVISED_KEYS: ClassVar[tuple[str, str] | None] = ("x", "y")

    def make_split(self, split: str, size: int) -> Mapping[str, np.ndarray]:
        """The split's arrays by feature name, each with `size` rows."""
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        features = tfds.features.FeaturesDict({
            name: tfds.features.Tensor(shape=shape, dtype=tf.float32) for name, shape in self.FEATURE_SHAPES.items()
        })
        return self.dataset_info_from_configs(
            description=(type(self).__doc__ or "").strip(),
            features=features,
            supervised_keys=self.SUPERVISED_KEYS,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # computed data: nothing to download
        return {split: self._generate_examples(split) for split in self.SPLIT_SIZES}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        size = self.SPLIT_SIZES[split]
        arrays = self.make_split(split, size)
        for name, array in arrays.items():
            expected = (size, *self.FEATURE_SHAPES[name])
            if array.shape != expected:  # a bug in make_split, caught before anything is written
                raise ValueError(f"Expected `{name}` of shape {expected} in split {split!r}. Received: shape={array.shape}")
        for index in range(size):
            yield index, {name: array[index].astype(np.float32) for name, array in arrays.items()}


def split_seed(base_seed: int, split: str) -> np.random.SeedSequence:
    """A seed per (data set, split): the splits never share draws."""
    return np.random.SeedSequence([base_seed, *split.encode()])

"""From a TFDS builder to `tf.data` pipelines and arrays, for the recipes."""

from __future__ import annotations

import dataclasses
import pathlib

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds


def prepared(builder_class: type[tfds.core.DatasetBuilder], data_dir: pathlib.Path | None) -> tfds.core.DatasetBuilder:
    """The builder, its data written on first use into `data_dir` (None: the TFDS default)."""
    builder = builder_class(data_dir=None if data_dir is None else str(data_dir))
    builder.download_and_prepare()
    return builder


def arrays(builder: tfds.core.DatasetBuilder, split: str) -> dict[str, np.ndarray]:
    """A whole split (or a slice such as "train[:256]") as numpy arrays by feature name."""
    return tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))


def shuffled_batches(dataset: tf.data.Dataset, batch_size: int, seed: int) -> tf.data.Dataset:
    """Batches of a finite data set, reshuffled every epoch (seeded), prefetched."""
    size = int(dataset.cardinality())
    buffer_size = size if size > 0 else 10_000  # size unknown (a generator's data set): a large buffer
    return (dataset.cache()
            .shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))


def ordered_batches(dataset: tf.data.Dataset, batch_size: int = 256) -> tf.data.Dataset:
    """Batches in a fixed order, prefetched: for evaluation."""
    return dataset.cache().batch(batch_size).prefetch(tf.data.AUTOTUNE)


def start_run(builder_class: type[tfds.core.DatasetBuilder], size: RunSize, batch_size: int, seed: int,
              data_dir: pathlib.Path | None) -> tuple[tfds.core.DatasetBuilder, tf.data.Dataset, tf.data.Dataset]:
    """Seeds Keras, prepares the data set; (builder, training batches, test batches) of `size`."""
    keras.utils.set_random_seed(seed)
    builder = prepared(builder_class, data_dir)
    train = training_pipeline(builder, size.train_split, batch_size, seed=seed)
    return builder, train, evaluation_pipeline(builder, size.test_split)


def training_pipeline(builder: tfds.core.DatasetBuilder, split: str, batch_size: int, seed: int) -> tf.data.Dataset:
    """A split's (input, target) pairs as `shuffled_batches`."""
    return shuffled_batches(builder.as_dataset(split=split, as_supervised=True), batch_size, seed)


def evaluation_pipeline(builder: tfds.core.DatasetBuilder, split: str, batch_size: int = 256) -> tf.data.Dataset:
    """A split's (input, target) pairs as `ordered_batches`."""
    return ordered_batches(builder.as_dataset(split=split, as_supervised=True), batch_size)


@dataclasses.dataclass(frozen=True)
class RunSize:
    """How much of a data set a run uses, and for how many epochs."""

    num_train: int
    num_test: int
    epochs: int

    @property
    def train_split(self) -> str:
        return f"train[:{self.num_train}]"

    @property
    def test_split(self) -> str:
        return f"test[:{self.num_test}]"

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-self.num_train // batch_size)

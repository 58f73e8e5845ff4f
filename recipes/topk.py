"""Multi-label top-k learning with the LML layer, against a sigmoid baseline.

The LML layer (Amos, Koltun & Kolter, 2019) maps logits to p in (0, 1)^n
with Σ p = k, the maximum-entropy point of the top-k polytope; trained with
the likelihood of the true labels, -Σ_{j true} log p_j, it spends its mass
on k labels and so optimizes top-k recall directly. The baseline is the
usual independent sigmoids with binary cross-entropy. Both share one
architecture (a hidden layer of 128 ReLUs, then one logit per label) and
are trained with `model.fit` (Adam 1e-3, batches of 64); the number that
matters is the test set's top-k recall, the share of true labels among the
k highest scores.

Data: the TFDS set `multilabel_prototypes` (20 labels, 2 to 4 per
example; k = 5), or with `--dataset NAME` a public TFDS image
classification set (one label per image) if it is already prepared in the
data directory; if not, one line says so and the built-in set is used.

Run:

    python -m recipes.topk [--quick] [--dataset NAME] [--k K] [--output-dir DIR] [--model-path PATH] [--data-dir DIR]

It writes recall.png (test top-k recall per epoch, both models) to the
output directory (default recipes/output/topk/), prints both recalls and
saves the LML model to saved_models/topk.keras (load it after importing
`recipes.topk`, which registers its loss and metric).
"""

from __future__ import annotations

import pathlib

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_optlayers import LML
from recipes import pipeline
from recipes.cli import recipe_parser
from recipes.datasets.multilabel_prototypes import MultilabelPrototypes
from recipes.figures import save_loss_curve
from recipes.pipeline import RunSize

SHUFFLE_SEED = 0
BATCH_SIZE = 64
HIDDEN_UNITS = 128
DEFAULT_K = 5
FULL_RUN = RunSize(num_train=4096, num_test=1024, epochs=20)  # 1280 steps of 64
QUICK_RUN = RunSize(num_train=512, num_test=256, epochs=2)  # 16 steps of 64


@keras.saving.register_keras_serializable(package="recipes.topk")
def true_label_negative_log_likelihood(labels, probabilities):
    """-Σ_{j true} log p_j per example, divided by the number of true labels."""
    labels = keras.ops.cast(labels, probabilities.dtype)
    # p is in (0, 1) in exact arithmetic; float32 can round a tiny p to 0.
    log_probabilities = keras.ops.log(keras.ops.maximum(probabilities, 1e-12))
    return -keras.ops.sum(labels * log_probabilities, axis=-1) / keras.ops.maximum(keras.ops.sum(labels, axis=-1), 1.0)


@keras.saving.register_keras_serializable(package="recipes.topk")
class TopKRecall(keras.metrics.Metric):
    """The share of true labels among the k highest scores, over all examples seen."""

    def __init__(self, k: int, name: str = "top_k_recall", **kwargs):
        super().__init__(name=name, **kwargs)
        self.k = k
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.true_labels = self.add_variable(shape=(), initializer="zeros", name="true_labels")

    def update_state(self, y_true, y_pred, sample_weight=None):
        del sample_weight  # every example counts the same
        y_true = keras.ops.cast(y_true, self.dtype)
        _, top = keras.ops.top_k(y_pred, k=self.k)
        self.hits.assign_add(keras.ops.sum(keras.ops.take_along_axis(y_true, top, axis=-1)))
        self.true_labels.assign_add(keras.ops.sum(y_true))

    def result(self):
        return self.hits / keras.ops.maximum(self.true_labels, 1.0)

    def reset_state(self):
        self.hits.assign(0.0)
        self.true_labels.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def make_model(input_shape: tuple[int, ...], num_labels: int, k: int, head: str) -> keras.Model:
    """head "lml": probabilities summing to k; head "sigmoid": one logit per label."""
    if head not in ("lml", "sigmoid"):
        raise ValueError(f'Expected head "lml" or "sigmoid". Received: head={head!r}')
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(HIDDEN_UNITS, activation="relu")(keras.layers.Flatten()(inputs))
    logits = keras.layers.Dense(num_labels, name="logits")(hidden)
    if head == "lml":
        model = keras.Model(inputs, LML(k=k, name="lml")(logits), name="lml_top_k")
        loss = true_label_negative_log_likelihood
    else:
        model = keras.Model(inputs, logits, name="sigmoid_baseline")
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=[TopKRecall(k)])
    return model


def public_image_classification(name: str, data_dir: pathlib.Path | None, size: RunSize):
    """(train, test, input shape, number of labels) of a prepared TFDS image set, or None if not prepared."""
    try:
        (train, test), info = tfds.load(
            name, split=[size.train_split, size.test_split], data_dir=None if data_dir is None else str(data_dir),
            download=False, as_supervised=True, with_info=True)
    except (AssertionError, tfds.core.DatasetNotFoundError):  # not prepared there, or no such data set
        return None
    image_key, label_key = info.supervised_keys
    label_feature = info.features[label_key]
    if not isinstance(label_feature, tfds.features.ClassLabel):
        raise ValueError(f"Expected an image classification data set (a class label as target). "
                         f"Received: dataset={name!r} with target {label_key!r} of type {type(label_feature).__name__}")
    num_labels = label_feature.num_classes

    def to_multi_hot(image, label):
        return tf.cast(image, tf.float32) / 255.0, tf.one_hot(label, num_labels)

    return (train.map(to_multi_hot), test.map(to_multi_hot), tuple(info.features[image_key].shape), num_labels)


def load_data(dataset: str | None, data_dir: pathlib.Path | None, size: RunSize):
    """(train, test, input shape, number of labels, description); falls back to the built-in set."""
    if dataset is not None:
        public = public_image_classification(dataset, data_dir, size)
        if public is not None:
            return (*public, dataset)
        print(f"TFDS data set {dataset!r} is not prepared in {data_dir or 'the default TFDS data directory'}: "
              "using the built-in multilabel_prototypes set instead")
    builder = pipeline.prepared(MultilabelPrototypes, data_dir)
    features = builder.info.features
    train = builder.as_dataset(split=size.train_split, as_supervised=True)
    test = builder.as_dataset(split=size.test_split, as_supervised=True)
    return train, test, tuple(features["x"].shape), features["labels"].shape[0], "multilabel_prototypes"


def run(size: RunSize, output_dir: pathlib.Path, model_path: pathlib.Path, data_dir: pathlib.Path | None,
        dataset: str | None, k: int) -> dict[str, float]:
    """Trains both models; returns the final test top-k recall of each, by head."""
    keras.utils.set_random_seed(SHUFFLE_SEED)
    train, test, input_shape, num_labels, description = load_data(dataset, data_dir, size)
    if not 0 < k < num_labels:
        raise ValueError(f"Expected 0 < k < the number of labels ({num_labels}). Received: k={k}")
    train = pipeline.shuffled_batches(train, BATCH_SIZE, seed=SHUFFLE_SEED)
    test = pipeline.ordered_batches(test)
    recalls, curves = {}, {}
    for head in ("lml", "sigmoid"):
        print(f"training the {head} model on {description} (k = {k})")
        model = make_model(input_shape, num_labels, k, head)
        initial_recall = float(model.evaluate(test, verbose=0, return_dict=True)["top_k_recall"])
        history = model.fit(train, epochs=size.epochs, validation_data=test)
        recalls[head] = float(model.evaluate(test, verbose=0, return_dict=True)["top_k_recall"])
        curves[f"{head}: test top-{k} recall"] = (np.arange(size.epochs + 1),
                                                   [initial_recall, *history.history["val_top_k_recall"]])
        if head == "lml":
            model_path.parent.mkdir(parents=True, exist_ok=True)
            model.save(model_path)

    output_dir.mkdir(parents=True, exist_ok=True)
    save_loss_curve(output_dir / "recall.png", curves, xlabel="epoch", ylabel=f"top-{k} recall", log_scale=False)
    print(f"test top-{k} recall: LML {recalls['lml']:.3f}, sigmoid baseline {recalls['sigmoid']:.3f}")
    print(f"wrote {output_dir}/recall.png; LML model: {model_path}")
    return recalls


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = recipe_parser("topk", __doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=None,
                        help="a public TFDS image classification set (e.g. mnist), used if prepared in --data-dir")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="the k of top-k")
    args = parser.parse_args(argv)
    return run(QUICK_RUN if args.quick else FULL_RUN, args.output_dir, args.model_path, args.data_dir,
               args.dataset, args.k)


if __name__ == "__main__":
    main()

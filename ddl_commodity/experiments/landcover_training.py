"""The training loop of the multimodal CNN, shared by the single-machine run and the model-parallel client.

Model parallelism needs more than ``model.fit``: the backward pass must run where the forward pass ran and
the optimizer where the weights live, or every layer's saved activations travel to the client and the
"distributed" model is computed on one node (measured: 48 MB per step out of the HSI worker and 6x its CPU on
the client, Fig 6.3 default scheme, batch 50). So the step takes gradients with ``tf.gradients`` (which puts
each gradient op on its forward op's device) inside a ``tf.function`` and applies them under the variable
device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ddl_commodity.config_landcover import LandcoverConfig
from ddl_commodity.data.patches import PatchSet
from ddl_commodity.models.multimodal_cnn import MultimodalCNN, MultimodalSpec, Placement


def model_spec(cfg: LandcoverConfig) -> MultimodalSpec:
    m = cfg.model
    return MultimodalSpec(patch_size=cfg.data.patch_size, hsi_bands=len(cfg.data.hsi_bands),
                          rgb_filters=m.rgb_filters, hsi_filters=m.hsi_filters, fc_units=m.fc_units,
                          dropout=m.dropout, seed=cfg.seed)


@dataclass
class EpochResult:
    epoch: int
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    samples: int
    steps: int
    train_start: float
    train_end: float
    seconds: float


class MultimodalTrainer:
    """Builds the model (variables on ``placement.variables``), its optimizer and the compiled steps."""

    def __init__(self, cfg: LandcoverConfig, placement: Placement | None = None) -> None:
        import keras
        import tensorflow as tf

        self.cfg = cfg
        self.placement = placement or Placement()
        self.model = MultimodalCNN(model_spec(cfg), self.placement).build_on(self.placement.variables)
        optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
                      "rmsprop": keras.optimizers.RMSprop}
        self.optimizer = optimizers[cfg.training.optimizer](learning_rate=cfg.training.learning_rate)
        var_scope = tf.device(self.placement.variables) if self.placement.variables else _null()
        with var_scope:
            self.optimizer.build(self.model.trainable_variables)
        self._loss = keras.losses.SparseCategoricalCrossentropy(reduction="sum")
        self._train_step = tf.function(self._train_step_fn)
        self._eval_step = tf.function(self._eval_step_fn)

    def _train_step_fn(self, rgb, hsi, y):
        import tensorflow as tf

        probs = self.model((rgb, hsi), training=True)
        n = tf.cast(tf.shape(y)[0], tf.float32)
        loss = self._loss(y, probs) / n
        variables = self.model.trainable_variables
        grads = tf.gradients(loss, [v.value for v in variables])  # colocated with the forward ops
        with tf.device(self.placement.variables) if self.placement.variables else _null():
            self.optimizer.apply(grads, variables)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, axis=1, output_type=tf.int32), y), tf.float32))
        return loss * n, correct

    def _eval_step_fn(self, rgb, hsi, y):
        import tensorflow as tf

        probs = self.model((rgb, hsi), training=False)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, axis=1, output_type=tf.int32), y), tf.float32))
        return self._loss(y, probs), correct

    def train_epoch(self, data: PatchSet, train_index: np.ndarray, epoch: int, rng: np.random.Generator,
                    progress: Callable[[int, int], None] | None = None) -> tuple[float, float, int, int, float, float]:
        """One pass over ``train_index`` (or ``steps_per_epoch`` batches); returns loss, accuracy, samples, steps,
        start and end time of the training part."""
        bs = self.cfg.training.batch_size
        order = rng.permutation(train_index)
        batches = [order[a:a + bs] for a in range(0, len(order), bs)]
        if self.cfg.training.steps_per_epoch:
            batches = batches[:self.cfg.training.steps_per_epoch]
        loss_sum = correct = 0.0
        seen = 0
        start = time.time()
        for i, idx in enumerate(batches, start=1):
            idx = np.sort(idx)  # h5-style fancy indexing order; the batch composition is what is random
            loss, ok = self._train_step(data.rgb[idx], data.hsi[idx], data.label[idx])
            loss_sum += float(loss)
            correct += float(ok)
            seen += len(idx)
            if progress:
                progress(i, len(batches))
        return loss_sum / seen, correct / seen, seen, len(batches), start, time.time()

    def evaluate(self, data: PatchSet, index: np.ndarray) -> tuple[float | None, float | None]:
        if not len(index):
            return None, None
        loss_sum = correct = 0.0
        for a in range(0, len(index), 256):
            idx = index[a:a + 256]
            loss, ok = self._eval_step(data.rgb[idx], data.hsi[idx], data.label[idx])
            loss_sum += float(loss)
            correct += float(ok)
        return loss_sum / len(index), correct / len(index)

    def fit(self, data: PatchSet, train_index: np.ndarray, val_index: np.ndarray,
            on_epoch: Callable[[EpochResult], None]) -> list[EpochResult]:
        rng = np.random.default_rng(self.cfg.seed)
        results = []
        for epoch in range(1, self.cfg.training.epochs + 1):
            t0 = time.monotonic()
            loss, acc, seen, steps, start, end = self.train_epoch(data, train_index, epoch, rng)
            val_loss, val_acc = self.evaluate(data, val_index)
            result = EpochResult(epoch, loss, acc, val_loss, val_acc, seen, steps, start, end, time.monotonic() - t0)
            results.append(result)
            on_epoch(result)
        return results

    def save(self, path) -> None:
        """Save a placement-free copy of the trained model (``.keras``) that loads on any single machine."""
        copy = MultimodalCNN(self.model.spec).build_on(None)
        copy.set_weights([np.asarray(w) for w in self.model.get_weights()])
        copy.save(str(path))


def _null():
    import contextlib

    return contextlib.nullcontext()

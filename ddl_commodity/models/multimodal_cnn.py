"""The two-branch multimodal 3D CNN for land cover (thesis 6.2.2, Figs 6.2 and 6.3(a)).

Two branches of 3D convolution, one per modality, each three blocks of Conv3D(3x3x3, ReLU) -> MaxPool3D ->
BatchNorm, then Flatten -> Dropout; early fusion by concatenation; two fully connected layers with dropout
between them; a 20-way softmax. Patches enter as ``(batch, 25, 25, bands)`` and are seen by Conv3D as
``(batch, 25, 25, bands, 1)``: bands are the third convolution axis (the thesis's reason for 3D convolution).

Tensor shapes with the defaults (RGB filters 16/32/32, HSI filters 16/32/64, 11 HSI bands)::

    rgb (B,25,25,3,1) -block1-> (B,12,12,3,16) -block2-> (B,6,6,3,32) -block3-> (B,3,3,3,32) -head-> (B,864)
    hsi (B,25,25,11,1) -block1-> (B,12,12,11,16) -block2-> (B,6,6,5,32) -block3-> (B,3,3,2,64) -head-> (B,1152)
    merge: concat (B,2016) -> fc1 (B,256) -> dropout -> fc2 (B,128) -> classifier (B,20)

The thesis shows the structure but not the filter counts; these keep the HSI branch the most expensive part
(as Fig 6.13 reports) and the whole model small enough for 2 GB workers.

**Model parallelism.** Every layer has a stable name (``hsi_conv2``, ``merge_fc1``, ...) and belongs to a
*block* (``hsi_block2``, ``rgb_head``, ``merge``); a :class:`~ddl_commodity.models.splits.SplitScheme` maps
blocks to devices. The device scopes are applied in :meth:`MultimodalCNN.call`, at call time, because a
Keras 3 functional model forgets construction-time scopes; variables are created once by
:meth:`MultimodalCNN.build_on` under the variable device (the PS), because Keras builds variables lazily on
whatever device is current at the first call.
"""

from __future__ import annotations

import dataclasses

import keras

from ddl_commodity.models.multimodal_layout import HSI_POOLS, RGB_POOLS, MultimodalSpec
from ddl_commodity.models.placement import Placement, device_scope


@keras.saving.register_keras_serializable(package="ddl_commodity")
class MultimodalCNN(keras.Model):
    """Fig 6.3(a). Inputs ``(rgb (B,s,s,3), hsi (B,s,s,bands))``, output ``(B, num_classes)`` probabilities."""

    def __init__(self, spec: MultimodalSpec | None = None, placement: Placement | None = None, **kwargs):
        super().__init__(name=kwargs.pop("name", "multimodal_cnn"), **kwargs)
        self.spec = spec = spec or MultimodalSpec()
        self.placement = placement or Placement()
        seed = spec.seed
        self.branch_layers: dict[str, list[keras.layers.Layer]] = {}
        for b, (branch, filters, pools) in enumerate(
            (("rgb", spec.rgb_filters, RGB_POOLS), ("hsi", spec.hsi_filters, HSI_POOLS))
        ):
            layers: list[keras.layers.Layer] = []
            for i, (f, pool) in enumerate(zip(filters, pools, strict=True), start=1):
                init = keras.initializers.GlorotUniform(seed + 10 * b + i)
                layers += [
                    keras.layers.Conv3D(f, 3, padding="same", activation="relu", kernel_initializer=init,
                                        name=f"{branch}_conv{i}"),
                    keras.layers.MaxPooling3D(pool, name=f"{branch}_pool{i}"),
                    keras.layers.BatchNormalization(name=f"{branch}_bn{i}"),
                ]
            layers += [keras.layers.Flatten(name=f"{branch}_flatten"),
                       keras.layers.Dropout(spec.dropout, seed=seed + 30 + b, name=f"{branch}_dropout")]
            self.branch_layers[branch] = layers
            setattr(self, f"_{branch}_layers", layers)  # tracked by Keras
        f1, f2 = spec.fc_units
        self.merge_layers = [
            keras.layers.Concatenate(name="merge_concat"),
            keras.layers.Dense(f1, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed + 40),
                               name="merge_fc1"),
            keras.layers.Dropout(spec.dropout, seed=seed + 41, name="merge_dropout"),
            keras.layers.Dense(f2, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed + 42),
                               name="merge_fc2"),
            keras.layers.Dense(spec.num_classes, activation="softmax",
                               kernel_initializer=keras.initializers.GlorotUniform(seed + 43), name="merge_classifier"),
        ]

    def _scope(self, layer: keras.layers.Layer):
        return self.placement.scope(layer.name)

    def _branch(self, branch: str, x, training):
        import tensorflow as tf

        layers = self.branch_layers[branch]
        with self._scope(layers[0]):
            x = tf.expand_dims(x, -1)  # bands become the third convolution axis
        for layer in layers:
            with self._scope(layer):
                x = layer(x, training=training)
        return x

    def call(self, inputs, training=None):
        rgb, hsi = inputs
        x = [self._branch("rgb", rgb, training), self._branch("hsi", hsi, training)]
        for layer in self.merge_layers:
            with self._scope(layer):
                x = layer(x, training=training) if layer.name != "merge_concat" else layer(x)
        return x

    def build_on(self, device: str | None = None) -> MultimodalCNN:
        """Create every variable on ``device`` (the PS) with one forward pass of a 1-sample batch there."""
        import tensorflow as tf

        s = self.spec
        saved, self.placement = self.placement, Placement()
        try:
            with device_scope(device):
                self((tf.zeros((1, s.patch_size, s.patch_size, s.rgb_bands)),
                      tf.zeros((1, s.patch_size, s.patch_size, s.hsi_bands))), training=False)
        finally:
            self.placement = saved
        return self

    def get_config(self) -> dict:
        # The placement is deliberately not saved: a saved model loads on any single machine.
        return {"name": self.name, "spec": dataclasses.asdict(self.spec)}

    @classmethod
    def from_config(cls, config: dict) -> MultimodalCNN:
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in config["spec"].items()}
        return cls(MultimodalSpec(**spec), name=config.get("name", "multimodal_cnn")).build_on(None)

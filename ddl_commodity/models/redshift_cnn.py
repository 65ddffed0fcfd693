"""The one-dimensional CNN for redshift classification (thesis 5.2.1, Fig 5.1).

Conv1D(k=8) -> ReLU -> Conv1D(k=8) -> ReLU -> Dropout -> Flatten -> Dense(800, softmax). No pooling: the
thesis drops it on purpose, because pooling makes the network blind to the small shifts of the spectrum
that *are* the redshift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def build_redshift_cnn(
    filters: tuple[int, int] = (8, 8),
    kernel_size: int = 8,
    dropout: float = 0.2,
    num_bands: int = 1800,
    num_classes: int = 800,
    seed: int = 0,
) -> keras.Model:
    """Build the uncompiled Fig 5.1 network.

    Input ``(batch, num_bands)`` float32 spectra; output ``(batch, num_classes)`` class probabilities.
    Weight initialisation is seeded so the PS and every worker can start from the same point.
    """
    import keras

    init = keras.initializers.GlorotUniform
    f1, f2 = filters
    k = kernel_size
    inputs = keras.Input(shape=(num_bands,), name="spectrum")
    x = keras.layers.Reshape((num_bands, 1), name="bands_as_channels")(inputs)
    x = keras.layers.Conv1D(f1, k, activation="relu", kernel_initializer=init(seed), name="conv1")(x)
    x = keras.layers.Conv1D(f2, k, activation="relu", kernel_initializer=init(seed + 1), name="conv2")(x)
    x = keras.layers.Dropout(dropout, seed=seed + 2, name="dropout")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", kernel_initializer=init(seed + 3), name="redshift_class"
    )(x)
    return keras.Model(inputs, outputs, name="redshift_cnn")


def parameter_count(filters: tuple[int, int] = (8, 8), kernel_size: int = 8, num_bands: int = 1800,
                    num_classes: int = 800) -> int:
    """Trainable weights of the network, computed from shapes (no TensorFlow needed)."""
    f1, f2 = filters
    k = kernel_size
    length = num_bands - 2 * (k - 1)
    return (k * 1 * f1 + f1) + (k * f1 * f2 + f2) + (length * f2 * num_classes + num_classes)

"""Variants of the two-input user experiment (``examples/two_inputs.py``) that ``ddl plan`` is tested on: a
regression whose loss records that the profiler called it, one that cannot train (a loss that expects
one-hot labels), and one whose model does not build. Named in test configs by dotted path
(``tests.plan_experiments:CountedLossRegression``), so the profiling process imports them too."""

from __future__ import annotations

from examples.two_inputs import CLASSES, TwoInputConfig, TwoInputExperiment

#: One entry per trace of :func:`counted_mae` in this process (a ``tf.function`` traces its Python once).
LOSS_CALLS: list[str] = []


def counted_mae(y_true, y_pred):
    """Mean absolute error ``(N,)`` that records it was used."""
    import keras

    LOSS_CALLS.append("mae")
    return keras.losses.mean_absolute_error(keras.ops.reshape(y_true, (-1, 1)), y_pred)


class CountedLossRegression(TwoInputExperiment):
    """The two-input model with a linear ``Dense(1)`` head, float targets and its own loss."""

    classification = False

    def build_model(self, cfg: TwoInputConfig):
        import keras

        model = super().build_model(cfg)
        features = model.get_layer("head_dense").output
        z = keras.layers.Dense(1, name="head_z")(features)
        return keras.Model(model.inputs, z, name="two_inputs_regression")

    def loss(self, cfg: TwoInputConfig):
        return counted_mae


class OneHotLossClassifier(TwoInputExperiment):
    """A loss that wants ``(N, 3)`` one-hot labels where the engines feed ``(N,)`` classes: no step can run."""

    def loss(self, cfg: TwoInputConfig):
        return "categorical_crossentropy"


class BrokenModel(TwoInputExperiment):
    """A model whose code raises while it is built."""

    def build_model(self, cfg: TwoInputConfig):
        raise ValueError(f"a user's bug: {CLASSES} classes but no head")

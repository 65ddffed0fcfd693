"""How good a redshift estimator is, in the terms astronomers read (photometric-redshift practice).

The network classifies a spectrum into one of 800 redshift bins (thesis 5.2); top-1 accuracy over 800 bins of
width 0.001 says little, since a prediction one bin off is an excellent redshift. What is judged instead is the
normalised error ``dz = (z_pred - z_true) / (1 + z_true)``:

* ``dz_median``: the median of ``|dz|``;
* ``dz_nmad``: the normalised median absolute deviation, ``1.4826 * median(|dz - median(dz)|)``, a scatter
  robust to outliers (equal to the standard deviation for Gaussian errors);
* ``outlier_fraction``: the share of catastrophic errors, ``|dz| > 0.15``;
* ``within_1`` / ``within_5``: the share of predicted classes at most 1 / 5 bins from the true class.

Two point estimates come from the class probabilities: the centre of the most probable class (the keys above)
and the softmax-expected z, ``sum_k p_k * centre_k`` (the same keys with ``_expected``). Only class labels reach
the engines, so the true z is its class centre: bins are 0.001 wide, so the truth is quantised by at most
0.0005, i.e. <= 0.00025 in ``dz``.
"""

from __future__ import annotations

import numpy as np

from ddl_commodity.data.redshift import NUM_CLASSES, Z_MAX, Z_MIN

OUTLIER_DZ = 0.15
NMAD_SCALE = 1.4826


def class_centres(num_classes: int = NUM_CLASSES) -> np.ndarray:
    """z at the centre of each class bin, shape ``(num_classes,)``."""
    width = (Z_MAX - Z_MIN) / num_classes
    return Z_MIN + (np.arange(num_classes) + 0.5) * width


def point_metrics(z_pred: np.ndarray, z_true: np.ndarray) -> dict[str, float]:
    """``dz_median``, ``dz_nmad`` and ``outlier_fraction`` of the estimates ``z_pred`` (both shapes ``(N,)``)."""
    dz = (np.asarray(z_pred, np.float64) - z_true) / (1.0 + z_true)
    return {
        "dz_median": float(np.median(np.abs(dz))),
        "dz_nmad": float(NMAD_SCALE * np.median(np.abs(dz - np.median(dz)))),
        "outlier_fraction": float(np.mean(np.abs(dz) > OUTLIER_DZ)),
    }


def redshift_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """All the metrics of the module doc for class probabilities ``probs`` ``(N, C)`` and true classes ``(N,)``."""
    centres = class_centres(probs.shape[1])
    labels = np.asarray(labels, np.int64)
    z_true = centres[labels]
    predicted = np.argmax(probs, axis=1)
    out = point_metrics(centres[predicted], z_true)
    off = np.abs(predicted - labels)
    out.update(within_1=float(np.mean(off <= 1)), within_5=float(np.mean(off <= 5)))
    expected = point_metrics(probs.astype(np.float64) @ centres, z_true)
    out.update({f"{k}_expected": v for k, v in expected.items()})
    return out


def trivial_metrics(train_labels: np.ndarray, labels: np.ndarray, num_classes: int = NUM_CLASSES) -> dict:
    """The trivial estimator, always the training set's median z, scored on ``labels``: what a model must beat.
    Labels are classes ``(N,)``; the true z is their class centre."""
    centres = class_centres(num_classes)
    return trivial_z_metrics(centres[np.asarray(train_labels, np.int64)], centres[np.asarray(labels, np.int64)])


def trivial_z_metrics(train_z: np.ndarray, z_true: np.ndarray) -> dict:
    """:func:`trivial_metrics` for redshifts themselves (a regression's targets), both shapes ``(N,)``:
    ``z`` (the training median) and its :func:`point_metrics` on ``z_true``."""
    z = float(np.median(np.asarray(train_z, np.float64)))
    return {"z": z, **point_metrics(np.full(len(z_true), z), np.asarray(z_true, np.float64))}

"""PS checkpoints: the global weights, version and update count in one ``.npz``, replaced atomically.

The PS task sends its state to the driver (it may not see the run directory), which keeps the latest one as
``runs/<id>/checkpoints/ps.npz``. ``ddl run --resume`` starts the PS from it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ddl_commodity.errors import DataError
from ddl_commodity.runs import write_bytes_atomic

CHECKPOINT_FILE = Path("checkpoints") / "ps.npz"


def save_checkpoint(path: Path, meta: dict, weights: list[np.ndarray]) -> Path:
    """Write ``meta`` (JSON-able: version, applied_updates, ...) and the weights, atomically."""
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **{f"w{i:04d}": w for i, w in enumerate(weights)})
    return write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: Path) -> tuple[dict, list[np.ndarray]]:
    """Inverse of :func:`save_checkpoint`; a missing or unreadable file is a :class:`DataError`."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no PS checkpoint (the run had ps.checkpoint_every unset or died before one)")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            weights = [z[k] for k in sorted(k for k in z.files if k.startswith("w"))]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: unreadable PS checkpoint ({err})") from None
    return meta, weights

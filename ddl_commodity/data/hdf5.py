"""HDF5 shards read where they lie, with h5py: what datasets a file holds, and a slice of its rows.

A data set in HDF5 is a directory (or a glob, or one file) of ``*.h5`` / ``*.hdf5`` files, each a shard that
holds one dataset per column with the rows along axis 0 (what ``ddl data redshift`` and ``ddl data houston``
write). :mod:`ddl_commodity.data.parquet` numbers their rows and cuts them into pieces; this module only opens
the files. h5py reads local files: a path or ``file://`` URI, on a shared disk or at the same path on every
node's own disk. A data set on HDFS or S3 is kept as Parquet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np

from ddl_commodity.errors import DataError

SUFFIXES = (".h5", ".hdf5")


def is_hdf5(path: str) -> bool:
    """Whether ``path`` (a file, URI or glob) names HDF5 files, by its suffix."""
    return path.lower().endswith(SUFFIXES)


def local_path(uri: str) -> str:
    """The local path of ``uri`` (a path or ``file://`` URI).

    Raises:
        DataError: any other scheme (``hdfs://``, ``s3a://``): h5py cannot read there.
    """
    scheme = uri.partition("://")[0] if "://" in uri else ""
    if scheme not in ("", "file"):
        raise DataError(f"{uri}: HDF5 is read from a local path or file:// only (a shared disk, or the same path "
                        f"on every node); to read from {scheme}:// write the data set as Parquet "
                        "(`ddl data ... --format parquet`)")
    return url2pathname(urlparse(uri).path) if scheme else uri


def _open(uri: str):
    import h5py

    try:
        # No file lock: readers only, and HDF5's lock fails on many shared disks (NFS); the toolkit's writers
        # rename a finished file into place.
        return h5py.File(local_path(uri), "r", locking=False)
    except OSError as err:
        raise DataError(f"{uri}: not a readable HDF5 file: {err}") from None


def datasets(uri: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Every dataset in the file at ``uri``, by its path in the file: ``(shape, dtype)`` (native byte order),
    from the file's metadata only."""
    import h5py

    found: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset):
            found[name] = (tuple(item.shape), item.dtype.newbyteorder("="))

    with _open(uri) as f:
        f.visititems(visit)
    return found


def read_rows(uri: str, names: Mapping[str, Sequence[str]], start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows ``start`` to ``stop - 1`` of the file at ``uri``: for each key of ``names``, the first of its
    dataset names the file holds, sliced along axis 0.

    Raises:
        DataError: naming the file and the rows: unreadable, or no dataset of a key's names.
    """
    where = f"{uri}: rows {start}..{stop - 1}"
    out = {}
    with _open(uri) as f:
        for key, candidates in names.items():
            name = next((n for n in candidates if n in f), None)
            if name is None:
                raise DataError(f"{where}: no dataset {' or '.join(map(repr, candidates))}")
            try:
                out[key] = f[name][start:stop]
            except (OSError, ValueError) as err:
                raise DataError(f"{where}: dataset {name!r} cannot be read: {err}") from None
    return out

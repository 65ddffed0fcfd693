"""Data sets as sharded Parquet, the form in which data larger than one machine is kept and read, and
directories of HDF5 shards read alike.

A data set is a directory (or a glob) of Parquet files on any file system the nodes can reach: a local path
or ``file://`` (a shared disk, or the same path on each node's own disk), ``hdfs://`` and ``s3a://`` (read
through pyarrow's file systems with the user's Hadoop or S3 settings). Every file holds consecutive rows, and
column ``row`` (int64) is each row's global index, so the numbering of Fig 5.2 is the same in every run and
does not depend on which task read what. Arrays are stored flat, as fixed-size lists; their shapes are in
each file's key-value metadata (``ddl.shapes``).

A :class:`Piece` is one row group of one file: the unit a task reads, so no reader ever holds more than one
row group of the data set.

A directory (or glob, or file) of HDF5 shards (``*.h5``, ``*.hdf5``; :mod:`ddl_commodity.data.hdf5`) is read
the same way from a local path or ``file://``: each file holds one dataset per column (named as the column or
one of its ``aliases``), rows along axis 0. Its rows are numbered through the files in sorted name order, as
``zipWithIndex`` over them would (a dataset named ``row`` is not taken as the index), and its pieces are slices
of at most :data:`ROW_GROUP_ROWS` consecutive rows of one file. One data set is one format.
"""

from __future__ import annotations

import fnmatch
import json
import math
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddl_commodity.data import hdf5
from ddl_commodity.errors import DataError

ROW = "row"
SHAPES_KEY = b"ddl.shapes"
#: Rows per row group unless told otherwise: a few MB of spectra, a small unit of work for one task.
ROW_GROUP_ROWS = 512
#: Pieces a data set the toolkit writes or slices is cut into at least: a small one still has whole pieces to
#: hold out for validation and to deal to shards.
MIN_PIECES = 32


@dataclass(frozen=True)
class Column:
    """One column of a data set. Args: ``name``; ``shape`` of one row's value (``()`` for a scalar);
    ``dtype`` a NumPy dtype name (``float32``, ``int32``, ``float64``); ``bounds`` ``(low, high)``: every value
    must lie in ``[low, high)`` (a classifier's labels: ``(0, classes)``), or None; ``aliases`` other names of
    its dataset in an HDF5 shard, tried in order after ``name``."""

    name: str
    shape: tuple[int, ...] = ()
    dtype: str = "float32"
    bounds: tuple[float, float] | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Piece:
    """Row group ``row_group`` of the file at ``path`` (a URI: ``file:///...``, ``hdfs://...``): ``rows``
    rows, the first of them global row ``first_row``. Of an HDF5 file, its ``row_group``-th slice: the file's
    rows ``start`` to ``start + rows - 1``."""

    path: str
    row_group: int
    first_row: int
    rows: int
    start: int = 0


def write_parquet(out: str | Path, blocks: Iterable[tuple[int, Mapping[str, np.ndarray]]], rows_per_file: int,
                  row_group_rows: int = ROW_GROUP_ROWS) -> Path:
    """Write consecutive blocks of rows as ``part-NNNNN.parquet`` files of ``rows_per_file`` rows into ``out``.

    Args:
        out: the data set's directory; it must not exist. Written into a temporary directory beside it and
            renamed at the end, so a crash never leaves a half-written data set.
        blocks: ``(first global row, {column: array (n, *shape)})``, in row order, the same columns each.
        rows_per_file: rows per file (the last file may hold fewer).
        row_group_rows: rows per row group, the unit one task reads.
    """
    out = Path(out)
    if rows_per_file < 1 or row_group_rows < 1:
        raise DataError(f"{out}: rows per file and per row group must be at least 1")
    if out.exists():
        raise DataError(f"{out}: exists; choose a new directory for the data set")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as err:
        raise DataError(f"{out}: cannot write there: {err.strerror}") from None
    try:
        _write_files(tmp, _rechunk(blocks, rows_per_file), row_group_rows)
        tmp.chmod(0o755)  # mkdtemp's 0700 would keep the data set from other users (a shared disk's nodes)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _rechunk(blocks: Iterable[tuple[int, Mapping[str, np.ndarray]]], rows: int
             ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """The rows of ``blocks`` again, as blocks of exactly ``rows`` rows (the last one fewer)."""
    pending: list[dict[str, np.ndarray]] = []
    held, first = 0, 0
    for start, block in blocks:
        if not pending:
            first = start
        pending.append(dict(block))
        held += len(next(iter(block.values())))
        while held >= rows:
            joined = {k: np.concatenate([b[k] for b in pending]) for k in pending[0]}
            yield first, {k: v[:rows] for k, v in joined.items()}
            rest = {k: v[rows:] for k, v in joined.items()}
            first, held = first + rows, held - rows
            pending = [rest] if held else []
    if held:
        yield first, {k: np.concatenate([b[k] for b in pending]) for k in pending[0]}


def _write_files(directory: Path, files: Iterable[tuple[int, dict[str, np.ndarray]]], row_group_rows: int) -> None:
    import pyarrow.parquet as pq

    for i, (first, columns) in enumerate(files):
        table = to_table(first, columns)
        pq.write_table(table, directory / f"part-{i:05d}.parquet", row_group_size=row_group_rows)


def to_table(first_row: int, columns: Mapping[str, np.ndarray]):
    """An Arrow table of ``columns`` with the global ``row`` index from ``first_row``; shapes in its metadata."""
    import pyarrow as pa

    n = len(next(iter(columns.values())))
    arrays, shapes = {ROW: pa.array(np.arange(first_row, first_row + n, dtype=np.int64))}, {}
    for name, values in columns.items():
        values = np.ascontiguousarray(values)
        shapes[name] = list(values.shape[1:])
        if values.ndim == 1:
            arrays[name] = pa.array(values)
        else:
            width = math.prod(values.shape[1:])
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)
    table = pa.table(arrays)
    return table.replace_schema_metadata({SHAPES_KEY: json.dumps(shapes).encode()})


def source_uri(source: str) -> str:
    """``source`` as a URI pyarrow reads: a local path as ``file://``, ``s3a://`` as ``s3://``."""
    if source.startswith("s3a://"):
        return "s3://" + source.removeprefix("s3a://")
    return source if "://" in source else Path(source).resolve().as_uri()


def filesystem_and_paths(source: str) -> tuple[object, list[str]]:
    """The pyarrow file system of ``source`` and the URIs of its Parquet or HDF5 files, sorted: a file, a
    directory (its ``*.parquet``, or its ``*.h5`` and ``*.hdf5``) or a glob in the last path component.

    Raises:
        DataError: nothing there, or both Parquet and HDF5 files (one data set is one format).
    """
    from pyarrow import fs

    head, _, tail = source.rpartition("/")
    pattern = tail if any(ch in tail for ch in "*?[") else None
    uri = source_uri(head if pattern else source)
    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
        prefix = uri[:len(uri) - len(path)] if uri.endswith(path) else ""  # scheme and authority
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.File:
            return filesystem, [uri]
        if info.type != fs.FileType.Directory:
            raise DataError(f"{source}: no such file or directory")
        found = filesystem.get_file_info(fs.FileSelector(path, recursive=False))
    except (OSError, ValueError) as err:
        raise DataError(f"{source}: cannot read it: {err}") from None
    names = sorted(prefix + i.path for i in found if i.type == fs.FileType.File and (
        fnmatch.fnmatch(i.base_name, pattern) if pattern else i.base_name.endswith(".parquet") or hdf5.is_hdf5(
            i.base_name)))
    if not names:
        raise DataError(f"{source}: no Parquet or HDF5 files there")
    hdf5_files = [n for n in names if hdf5.is_hdf5(n)]
    if hdf5_files and len(hdf5_files) < len(names):
        other = next(n for n in names if not hdf5.is_hdf5(n))
        raise DataError(f"{source}: holds both HDF5 ({hdf5_files[0].rsplit('/', 1)[-1]}) and other files "
                        f"({other.rsplit('/', 1)[-1]}): one data set is one format, Parquet or HDF5")
    return filesystem, names


def pieces(source: str, columns: Iterable[Column] = ()) -> list[Piece]:
    """Every row group of the data set at ``source``, in global row order, read from the files' footers only
    (of HDF5 shards: every slice, from the files' metadata only).

    Raises:
        DataError: naming the file: unreadable or not Parquet, a column of ``columns`` missing or of the wrong
            width or type, or global rows that do not follow one another; HDF5 anywhere but a local path or
            ``file://``, a column's dataset missing or of the wrong shape or type, or datasets of different
            lengths.
    """
    import pyarrow.parquet as pq
    from pyarrow import fs

    if hdf5.is_hdf5(source):
        hdf5.local_path(source)  # an hdfs:// or s3a:// HDF5 source ends here, before its file system is asked
    _, paths = filesystem_and_paths(source)
    if hdf5.is_hdf5(paths[0]):
        return hdf5_pieces(paths, list(columns))
    out: list[Piece] = []
    for path in paths:
        try:
            filesystem, local = fs.FileSystem.from_uri(path)
            with filesystem.open_input_file(local) as f:
                meta = pq.ParquetFile(f).metadata
                schema = meta.schema.to_arrow_schema()
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"{path}: not a readable Parquet file: {err}") from None
        check_schema(path, schema, columns)
        first = _first_row(filesystem, local, meta)
        for g in range(meta.num_row_groups):
            out.append(Piece(path, g, first, meta.row_group(g).num_rows))
            first += meta.row_group(g).num_rows
    _check_numbering(out)
    return out


def _first_row(filesystem: object, path: str, meta: object) -> int:
    """The global row of the file's first row, from the ``row`` column's statistics (or its first value)."""
    import pyarrow.parquet as pq

    if meta.num_rows == 0:
        return 0
    index = meta.schema.to_arrow_schema().get_field_index(ROW)
    stats = meta.row_group(0).column(index).statistics
    if stats is not None and stats.has_min_max:
        return int(stats.min)
    with filesystem.open_input_file(path) as f:
        return int(pq.ParquetFile(f).read_row_group(0, columns=[ROW]).column(0)[0].as_py())


def _check_numbering(found: list[Piece]) -> None:
    expected = 0
    for p in sorted(found, key=lambda p: p.first_row):
        if p.first_row != expected:
            raise DataError(f"{p.path}: row group {p.row_group} starts at global row {p.first_row}, expected "
                            f"{expected}: the files' rows must number 0..N-1 without gaps or overlaps")
        expected += p.rows
    found.sort(key=lambda p: p.first_row)


def check_schema(path: str, schema: object, columns: Iterable[Column]) -> None:
    """Raise :class:`DataError` naming ``path`` if ``schema`` lacks the ``row`` index or a column, or holds one
    of the wrong width or type."""
    import pyarrow as pa

    names = set(schema.names)
    for column in (Column(ROW, (), "int64"), *columns):
        if column.name not in names:
            raise DataError(f"{path}: column {column.name!r} is missing (has: {', '.join(schema.names)})")
        field_type = schema.field(column.name).type
        width = math.prod(column.shape)
        if column.shape:
            if not pa.types.is_fixed_size_list(field_type) or field_type.list_size != width:
                raise DataError(f"{path}: column {column.name!r} must hold {width} values per row "
                                f"(shape {column.shape}), found {field_type}")
            field_type = field_type.value_type
        if field_type != pa.from_numpy_dtype(np.dtype(column.dtype)):
            raise DataError(f"{path}: column {column.name!r} must be {column.dtype}, found {field_type}")


def piece_rows(rows: int) -> int:
    """Rows per piece of a data set of ``rows`` rows: :data:`ROW_GROUP_ROWS`, fewer for a set of under
    :data:`MIN_PIECES` such pieces."""
    return max(1, min(ROW_GROUP_ROWS, rows // MIN_PIECES))


def hdf5_pieces(paths: list[str], columns: list[Column]) -> list[Piece]:
    """The slices of the HDF5 shards ``paths`` (in this order), numbered through the files one after another:
    :func:`piece_rows` rows each."""
    counts = [hdf5_rows(path, columns) for path in paths]
    size = piece_rows(sum(counts))
    out: list[Piece] = []
    first = 0
    for path, n in zip(paths, counts, strict=True):
        out += [Piece(path, k, first + a, min(size, n - a), a) for k, a in enumerate(range(0, n, size))]
        first += n
    return out


def hdf5_rows(path: str, columns: list[Column]) -> int:
    """The rows of the HDF5 shard at ``path``, from its metadata: each column's dataset must hold rows of the
    column's shape and dtype along axis 0, all of them as many rows (without ``columns``: every dataset).

    Raises:
        DataError: naming the file: unreadable, a dataset missing, of the wrong shape or type, or of another
            length than the others.
    """
    found = hdf5.datasets(path)
    lengths = {name: shape[0] for name, (shape, _) in found.items() if shape}
    if columns:
        lengths = {}
        for column in columns:
            name = _hdf5_dataset(path, found, column)
            lengths[name] = found[name][0][0]
    if len(set(lengths.values())) > 1:
        held = ", ".join(f"{name} {rows}" for name, rows in lengths.items())
        raise DataError(f"{path}: datasets hold different numbers of rows ({held}): a shard's datasets are its "
                        "columns, one row each along axis 0")
    return next(iter(lengths.values()), 0)


def _hdf5_dataset(path: str, found: Mapping[str, tuple[tuple[int, ...], np.dtype]], column: Column) -> str:
    """The name of ``column``'s dataset among ``found``, checked against its shape and dtype."""
    names = (column.name, *column.aliases)
    name = next((n for n in names if n in found), None)
    if name is None:
        raise DataError(f"{path}: no dataset for column {column.name!r} (looked for {', '.join(names)}; has: "
                        f"{', '.join(sorted(found)) or 'none'})")
    shape, dtype = found[name]
    what = f"dataset {name!r}" + (f" (column {column.name!r})" if name != column.name else "")
    if not shape or shape[1:] != tuple(column.shape):
        raise DataError(f"{path}: {what} must hold rows of shape {tuple(column.shape)} along axis 0, found "
                        f"shape {shape}")
    if dtype != np.dtype(column.dtype):
        raise DataError(f"{path}: {what} must be {column.dtype}, found {dtype}")
    return name


def read_piece(piece: Piece, columns: Iterable[Column]) -> dict[str, np.ndarray]:
    """The rows of one piece: ``row`` (n,) int64 and each column as an array (n, *shape) of its dtype.

    Raises:
        DataError: naming the file and row group (of HDF5: the file's rows): unreadable, or NaN or infinite
            values in a float column, or values outside a column's bounds.
    """
    columns = list(columns)
    if hdf5.is_hdf5(piece.path):
        return _read_hdf5_piece(piece, columns)
    import pyarrow.parquet as pq
    from pyarrow import fs

    try:
        filesystem, local = fs.FileSystem.from_uri(piece.path)
        with filesystem.open_input_file(local) as f:
            table = pq.ParquetFile(f).read_row_group(piece.row_group, columns=[ROW, *(c.name for c in columns)])
    except (OSError, ValueError) as err:
        raise DataError(f"{piece.path}: row group {piece.row_group} cannot be read: {err}") from None
    out = {ROW: table.column(ROW).to_numpy()}
    for c in columns:
        values = table.column(c.name).combine_chunks()
        flat = values.flatten() if c.shape else values
        array = flat.to_numpy(zero_copy_only=False).astype(c.dtype, copy=False).reshape(len(table), *c.shape)
        out[c.name] = _checked(f"{piece.path}: row group {piece.row_group}", c, array)
    return out


def _read_hdf5_piece(piece: Piece, columns: list[Column]) -> dict[str, np.ndarray]:
    stop = piece.start + piece.rows
    where = f"{piece.path}: rows {piece.start}..{stop - 1}"
    got = hdf5.read_rows(piece.path, {c.name: (c.name, *c.aliases) for c in columns}, piece.start, stop)
    out = {ROW: np.arange(piece.first_row, piece.first_row + piece.rows, dtype=np.int64)}
    for c in columns:
        array = np.asarray(got[c.name])
        if array.shape != (piece.rows, *c.shape):
            raise DataError(f"{where}: column {c.name!r} reads as shape {array.shape}, expected "
                            f"{(piece.rows, *c.shape)}: the file changed after its pieces were listed")
        out[c.name] = _checked(where, c, array.astype(c.dtype, copy=False))
    return out


def _checked(where: str, c: Column, array: np.ndarray) -> np.ndarray:
    """``array`` (column ``c``'s values read at ``where``), once it holds no NaN or infinite floats and no value
    outside the column's bounds."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(f"{where}: column {c.name!r} holds NaN or infinite values")
    if c.bounds is not None and len(array) and not (c.bounds[0] <= array.min() and array.max() < c.bounds[1]):
        raise DataError(f"{where}: column {c.name!r} holds values outside [{c.bounds[0]:g}, {c.bounds[1]:g}) "
                        f"({array.min():g} to {array.max():g})")
    return array


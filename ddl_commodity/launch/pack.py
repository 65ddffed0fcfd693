"""``ddl pack``: this Python environment as one archive that Spark ships to every executor.

    ddl pack --out env.tar.gz
    ddl run my.yaml --master spark://head:7077 --env env.tar.gz

The archive is a virtualenv packed by ``venv-pack``: the toolkit (built as a wheel from its source checkout
when it is installed editable), every distribution it needs as installed here, and the packages named with
``--with``. Spark unpacks it in each executor's working directory as ``environment/``
(``spark.archives = env.tar.gz#environment``) and the executors run ``./environment/bin/python``. A venv carries
no interpreter: ``bin/python`` links to the packing machine's Python 3.11, so a worker host needs Java 17,
Spark, a Python 3.11 at that same path and a glibc at least as new as the wheels need (2.28: pyarrow's
``manylinux_2_28``), and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import venv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ddl_commodity.errors import UserInputError

#: The name the archive is unpacked under in every executor's working directory.
ENV_NAME = "environment"
#: The executors' Python inside the unpacked archive (relative to their working directory).
EXECUTOR_PYTHON = f"./{ENV_NAME}/bin/python"
#: Archive formats both venv-pack writes and Spark unpacks.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
TOOLKIT = "ddl-commodity"
#: Installed files executors never read, left out of the archive: Spark's jars (a worker runs its own Spark, of
#: the same version) and TensorFlow's C++ headers (for building extensions). 600 MB of the 2.3 GB.
LEFT_OUT = ("pyspark/jars/", "tensorflow/include/")


@dataclass(frozen=True)
class Packed:
    """What :func:`pack` wrote.

    Args:
        path: the archive.
        size_bytes: its size.
        seconds: how long packing took.
        distributions: how many distributions it holds.
        python: the interpreter its ``bin/python`` links to (a worker needs a Python 3.11 at this path).
    """

    path: Path
    size_bytes: int
    seconds: float
    distributions: int
    python: str


def pack(out: str | Path, with_packages: Sequence[str | Path] = (), *, compress_level: int = 1,
         say: Callable[[str], None] = print) -> Packed:
    """Pack the toolkit's environment (and ``with_packages``) into the archive ``out``.

    Args:
        out: the archive to write (``.tar.gz``, ``.tgz`` or ``.zip``); it must not exist. Written whole or not
            at all.
        with_packages: more packages to ship: source directories (built as wheels) or wheel files. Their
            dependencies must be installed in this environment.
        compress_level: gzip level, 0-9 (most of the bytes are shared libraries: higher levels gain little).
        say: where progress lines go.

    Raises:
        UserInputError: ``out`` exists or has a suffix Spark cannot unpack, a ``--with`` path is no package,
            a needed distribution is missing or installed editable, or a build fails (one line).
    """
    out = Path(out).resolve()
    if not out.name.endswith(ARCHIVE_SUFFIXES):
        raise UserInputError(f"{out.name}: the archive must end in {', '.join(ARCHIVE_SUFFIXES)} (what Spark unpacks)")
    if out.exists():
        raise UserInputError(f"{out}: exists; choose another --out or remove it")
    extra = [Path(p).resolve() for p in with_packages]
    for path in extra:
        if not (path.suffix == ".whl" and path.is_file()) and not _is_source_dir(path):
            raise UserInputError(f"{path}: --with takes a wheel file or a directory with pyproject.toml or setup.py")
    t0 = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        staging, wheels = Path(tmp) / "env", Path(tmp) / "wheels"
        toolkit = toolkit_source()
        built = [_wheel(src, wheels, say) for src in [*([toolkit] if toolkit else []), *extra]]
        needs = [] if toolkit else [TOOLKIT]  # an installed toolkit is copied with what it needs
        for wheel in built:
            needs += _wheel_requirements(wheel)
        copied = requirement_closure(needs, skip={_canonical(_wheel_name(w)) for w in built})
        # A small venv holds what is built here; the installed distributions go into the archive from where
        # they lie (copying 1.7 GB first would double the time, and more on a container's overlay file system).
        venv.EnvBuilder(with_pip=False, symlinks=True).create(staging)
        _install_wheels(staging, built)
        installed = [f for d in copied for f in installed_files(d)]
        say(f"pack: {len(copied)} installed distributions ({sum(s for _, _, s in installed) / 1e6:.0f} MB) and "
            f"{len(built)} built here")
        partial = Path(tmp) / out.name
        _write_archive(staging, installed, partial, compress_level, say)
        python = os.path.realpath(staging / "bin" / "python")
        partial.rename(out)
    return Packed(out, out.stat().st_size, time.monotonic() - t0, len(copied) + len(built), python)


def toolkit_source() -> Path | None:
    """The toolkit's source checkout when it is installed from one (editable), else None (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    site_dirs = {Path(p).resolve() for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])}
    return root if root not in site_dirs and _is_source_dir(root) else None


def requirement_closure(requirements: Iterable[str], skip: Iterable[str] = ()) -> list[metadata.Distribution]:
    """The installed distributions ``requirements`` name, and those they need in turn (markers evaluated here,
    no extras), less ``skip`` (canonical names: what is built instead). Raises :class:`UserInputError` naming one
    that is missing or installed editable."""
    from packaging.requirements import Requirement

    skipped = set(skip)
    found: dict[str, metadata.Distribution] = {}
    todo: list[tuple[str, str | None]] = [(spec, None) for spec in requirements]
    while todo:
        spec, needed_by = todo.pop()
        req = Requirement(spec)
        key, name = _canonical(req.name), req.name
        if key in found or key in skipped or not (req.marker is None or req.marker.evaluate({"extra": ""})):
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise UserInputError(f"{name} (needed by {needed_by or 'the archive'}) is not installed in this "
                                 "environment: pip install it first") from None
        if _editable(dist):
            raise UserInputError(f"{name} is installed editable (pip install -e): name its source directory "
                                 "with --with PATH")
        found[key] = dist
        todo += [(needed, name) for needed in dist.requires or []]
    return list(found.values())


def installed_files(dist: metadata.Distribution) -> list[tuple[Path, str, int]]:
    """``dist``'s files in this environment's site-packages, less :data:`LEFT_OUT`: ``(path, path relative to
    site-packages, size)``. Its scripts are left out (executors import, they run no console scripts)."""
    if dist.files is None:
        raise UserInputError(f"{dist.metadata['Name']}: installed without a file list (RECORD); reinstall it with pip")
    here = Path(sysconfig.get_paths()["purelib"]).resolve()
    out = []
    for record in dist.files:
        located = Path(os.path.normpath(dist.locate_file(record)))
        source = Path(os.path.realpath(located.parent)) / located.name
        try:
            relative = source.relative_to(here).as_posix()
        except ValueError:
            continue
        if source.is_file() and not relative.startswith(LEFT_OUT):  # a RECORD may list .pyc never compiled
            out.append((source, relative, source.stat().st_size))
    return out


def _write_archive(staging: Path, installed: Sequence[tuple[Path, str, int]], out: Path, compress_level: int,
                   say: Callable[[str], None]) -> None:
    """venv-pack's archive of the venv ``staging`` with the ``installed`` files added to its site-packages (its
    packer rewrites the scripts' interpreter lines and adds relocatable activate scripts)."""
    from venv_pack.core import File, Packer, VenvPackException, load_environment
    from venv_pack.formats import archive

    try:
        context, files = load_environment(str(staging))
    except VenvPackException as err:
        raise UserInputError(f"venv-pack: {str(err).splitlines()[0]}") from None
    site = Path(sysconfig.get_paths(vars={"base": str(staging), "platbase": str(staging)})["purelib"])
    target = site.relative_to(staging).as_posix()
    files = [f for f in files if f.target != "pyvenv.cfg"]  # its packer adds it (load_environment keeps it too)
    files += [File(str(source), f"{target}/{relative}") for source, relative, _ in installed]
    total, done, shown = sum(size for _, _, size in installed), 0, 0
    with out.open("wb") as f, archive(f, "zip" if out.suffix == ".zip" else "tar.gz",
                                      compress_level=compress_level) as arc:
        packer = Packer(context, arc, None)
        for file in files:
            packer.add(file)
            done += os.lstat(file.source).st_size
            if done * 10 // max(total, 1) > shown:
                shown = done * 10 // max(total, 1)
                say(f"pack: {min(shown, 10) * 10}% of {total / 1e6:.0f} MB compressed")
        packer.finish()


def _wheel(source: Path, wheels: Path, say: Callable[[str], None]) -> Path:
    """``source`` as a wheel in ``wheels`` (a wheel file is copied; a directory is built, no network)."""
    wheels.mkdir(exist_ok=True)
    if source.suffix == ".whl":
        return Path(shutil.copy2(source, wheels))
    say(f"pack: building a wheel of {source} ...")
    before = set(wheels.glob("*.whl"))
    leftover = not (source / "build").exists()  # setuptools builds in the tree: leave it as it was
    try:
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
              str(source)], f"building a wheel of {source}")
    finally:
        if leftover:
            shutil.rmtree(source / "build", ignore_errors=True)
    (new,) = set(wheels.glob("*.whl")) - before
    return new


def _install_wheels(staging: Path, wheels: Sequence[Path]) -> None:
    if wheels:
        _run([sys.executable, "-m", "pip", "--python", str(staging / "bin" / "python"), "install", "-q",
              "--no-deps", "--no-index", *map(str, wheels)], "installing the built wheels")


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        raise UserInputError(f"{what} failed: {lines[-1].strip() if lines else f'exit {proc.returncode}'}")


def _editable(dist: metadata.Distribution) -> bool:
    direct = dist.read_text("direct_url.json")
    if direct and json.loads(direct).get("dir_info", {}).get("editable"):
        return True
    here = Path(sysconfig.get_paths()["purelib"]).resolve()
    location = Path(str(dist.locate_file(""))).resolve()
    return location != here  # an egg-info beside a source tree (setup.py develop)


def _is_source_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "pyproject.toml").is_file() or (path / "setup.py").is_file())


def _wheel_requirements(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` lines of a wheel's metadata."""
    import zipfile
    from email.parser import HeaderParser

    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        headers = HeaderParser().parsestr(zf.read(name).decode("utf-8"))
    return headers.get_all("Requires-Dist") or []


def _wheel_name(wheel: Path) -> str:
    return wheel.name.split("-", 1)[0]


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def archive_uri(archive: str | Path) -> str:
    """``archive`` checked (it exists, Spark can unpack it) as Spark's ``path#environment``."""
    path = Path(archive).resolve()
    if not path.name.endswith(ARCHIVE_SUFFIXES):
        raise UserInputError(f"{archive}: not an archive Spark unpacks ({', '.join(ARCHIVE_SUFFIXES)}); "
                             "make one with `ddl pack`")
    if not path.is_file():
        raise UserInputError(f"{archive}: no such archive; make one with `ddl pack --out {archive}`")
    return f"{path}#{ENV_NAME}"


def executor_settings(archive: str | Path) -> dict[str, str]:
    """The Spark settings that ship ``archive`` and run the executors' Python from it."""
    return {"spark.archives": archive_uri(archive), "spark.executorEnv.PYSPARK_PYTHON": EXECUTOR_PYTHON}


class ShippedEnvironment:
    """A :class:`~ddl_commodity.runtime.session.SparkSource` whose executors run in a packed environment.

    Args:
        source: where the SparkContext comes from (a driver JVM the run starts: ``spark.archives`` is read
            when the context starts).
        archive: the archive :func:`pack` wrote.
    """

    def __init__(self, source: Any, archive: str | Path) -> None:
        self.source, self.settings = source, executor_settings(archive)

    def open(self, conf: Any) -> Any:
        for key, value in self.settings.items():
            shipped = conf.get(key, None) if key == "spark.archives" else None
            conf.set(key, f"{shipped},{value}" if shipped else value)
        sc = self.source.open(conf)
        sc.pythonExec = EXECUTOR_PYTHON  # what each task's Python function names as its interpreter
        return sc

    def close(self, sc: Any) -> None:
        self.source.close(sc)

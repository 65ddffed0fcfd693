"""JVM options for the Spark processes this toolkit starts on this machine, and the class-data archive that
cuts their start-up.

A Spark JVM loads 6,000-10,000 classes out of ~250 jars while it starts: on a node with one core that is
seconds of CPU for every daemon, executor and driver. Java's application class-data sharing (AppCDS) maps them
already parsed and verified from one archive instead. The archive is built once per Java and Spark
installation (~15 CPU-s) from the class list shipped with the package, ``spark_classes.lst.gz``: every class
the master, the workers, the executors and the driver of a quickstart run loaded (recorded with
``-Xlog:class+load``). It is cached under ``$XDG_CACHE_HOME/ddl-commodity`` (default ``~/.cache``). A JVM whose
Java or class path differs from the archive's ignores it silently, so the archive never changes what runs.

The archive saves a master's start-up through ``spark-class`` about a quarter of its CPU time, a tiny
redshift run (everything it starts) nearly a tenth. Remote nodes (``master: spark://...``) are not given the
archive: it is a file on this machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

#: The small, short-lived JVMs of a commodity node (daemons, executors, the driver) only schedule and move
#: bytes while Python and TensorFlow compute: the C1 compiler alone and the serial collector are enough, and
#: leave the node's core to TensorFlow (docs/guides/data-parallel.md, "Defaults the thesis does not give").
SMALL_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:CICompilerCount=1"
CLASS_LIST = Path(__file__).with_name("spark_classes.lst.gz")
BUILD_TIMEOUT_S = 300


def spark_home() -> Path:
    """The Spark distribution inside the installed ``pyspark`` package."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def java_binary() -> str | None:
    """The ``java`` Spark's launcher runs: ``$JAVA_HOME/bin/java``, else the first on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    if home:
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def spark_class_path(home: Path) -> str:
    """The class path ``spark-class`` gives every Spark JVM (the archive is valid only for it)."""
    return f"{home / 'conf'}:{home / 'jars'}/*"


#: The environment variable whose options ``spark-class`` adds for each daemon, after SPARK_DAEMON_JAVA_OPTS.
_DAEMON_OPTIONS_ENV = {"org.apache.spark.deploy.master.Master": "SPARK_MASTER_OPTS",
                       "org.apache.spark.deploy.worker.Worker": "SPARK_WORKER_OPTS"}


def daemon_command(args: list[str], env: dict[str, str], home: Path | None = None) -> list[str]:
    """The ``java`` command ``spark-class`` would run for a master or worker daemon (``args``: its class and
    arguments), with the options it takes from ``env``; start it with :func:`daemon_environment` in ``env``.

    spark-class asks a JVM of its own (``org.apache.spark.launcher.Main``) for this command line first, then
    execs it: 0.2 CPU-s and a third of a second per daemon, four or five daemons per embedded cluster.
    """
    home = home or spark_home()
    options = [*shlex.split(env.get("SPARK_DAEMON_JAVA_OPTS", "")),
               *shlex.split(env.get(_DAEMON_OPTIONS_ENV.get(args[0], ""), ""))]
    memory = f"-Xmx{env.get('SPARK_DAEMON_MEMORY', '1g')}"
    return [java_binary() or "java", "-cp", spark_class_path(home), *options, memory, *args]


def daemon_environment(env: dict[str, str], home: Path | None = None) -> dict[str, str]:
    """What spark-class exports (``bin/load-spark-env.sh``) before it starts a daemon, unless ``env`` has it: a
    worker builds its executors' command lines with the launcher's code, which needs the Scala version."""
    home = home or spark_home()
    scala = next((p.name.split("_", 1)[1].split("-", 1)[0] for p in (home / "jars").glob("spark-core_*.jar")),
                 "2.12")
    return {"SPARK_ENV_LOADED": "1", "SPARK_CONF_DIR": str(home / "conf"), "SPARK_SCALA_VERSION": scala, **env}


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ddl-commodity"


def archive_path(home: Path, java: str) -> Path:
    """Where the archive for this Java, this Spark installation and this class list lives."""
    digest = hashlib.sha256()
    java_file = Path(java).resolve()
    for path in [java_file, CLASS_LIST, *sorted((home / "jars").glob("*.jar"))]:
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return cache_dir() / f"spark-classes-{digest.hexdigest()[:16]}.jsa"


def class_data_archive(build: bool = True, home: Path | None = None) -> Path | None:
    """The archive for the JVMs of the Spark in ``home`` (default :func:`spark_home`), built first when missing
    and ``build``; ``None`` when there is none (no Java, the build failed, or another process is building it
    right now: its JVMs start without)."""
    java = java_binary()
    if java is None or not CLASS_LIST.is_file():
        return None
    home = home or spark_home()
    path = archive_path(home, java)
    if path.is_file():
        return path
    if not build:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if not path.is_file():
            _dump(java, home, path)
    return path if path.is_file() else None


def _dump(java: str, home: Path, path: Path) -> None:
    classes = path.with_suffix(f".{os.getpid()}.lst")
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        classes.write_bytes(gzip.decompress(CLASS_LIST.read_bytes()))
        done = subprocess.run([java, "-Xshare:dump", f"-XX:SharedClassListFile={classes}",
                               f"-XX:SharedArchiveFile={partial}", "-cp", spark_class_path(home)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=BUILD_TIMEOUT_S,
                              check=False)
        if done.returncode == 0 and partial.is_file():
            partial.replace(path)
    except (OSError, subprocess.TimeoutExpired):
        pass  # without the archive the JVMs only start slower
    finally:
        for leftover in (classes, partial):
            with contextlib.suppress(OSError):
                leftover.unlink()


def jvm_options(build: bool = True, home: Path | None = None) -> str:
    """:data:`SMALL_JVM_OPTIONS`, plus the class-data archive where there is one (see the module doc)."""
    archive = class_data_archive(build, home)
    return SMALL_JVM_OPTIONS if archive is None else f"{SMALL_JVM_OPTIONS} -XX:SharedArchiveFile={archive}"


if __name__ == "__main__":  # scripts/setup.sh: build the archive once, at set-up
    built = class_data_archive()
    print(f"Spark class-data archive: {built or 'not built (JVMs start without it)'}")

"""``ddl pack`` and ``--env``: what is packed, the Spark settings that ship it, and the one-line errors.

Packing for real (a minute, half a gigabyte) and running on the packed environment are in
``tests/integration/test_docker_share_nothing.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ddl_commodity.cli import main
from ddl_commodity.errors import UserInputError
from ddl_commodity.launch.api import spark_conf
from ddl_commodity.launch.pack import (
    EXECUTOR_PYTHON,
    LEFT_OUT,
    executor_settings,
    pack,
    requirement_closure,
    toolkit_source,
)
from ddl_commodity.launch.submit import _shipped

REPO = Path(__file__).resolve().parents[2]


def names(dists) -> set[str]:
    return {d.metadata["Name"].lower().replace("_", "-") for d in dists}


def test_the_closure_follows_requirements_and_skips_what_is_built() -> None:
    closure = names(requirement_closure(["pydantic>=2"]))
    assert {"pydantic", "pydantic-core", "typing-extensions", "annotated-types"} <= closure
    assert "numpy" not in closure
    assert "pydantic-core" not in names(requirement_closure(["pydantic"], skip=["pydantic-core"]))
    # markers are evaluated here: a requirement for another Python or platform is left out
    assert names(requirement_closure(['pyyaml; python_version < "3"'])) == set()


def test_the_toolkits_closure_holds_tensorflow_and_tfos() -> None:
    from importlib import metadata

    closure = names(requirement_closure(metadata.requires("ddl-commodity")))
    assert {"tensorflow-cpu", "tensorflowonspark", "pyspark", "keras", "pyarrow", "venv-pack"} <= closure
    assert not {"pytest", "ruff", "mkdocs"} & closure  # the dev and docs extras stay out


def test_a_checkout_install_is_built_from_its_source() -> None:
    assert toolkit_source() == REPO  # this checkout is installed editable
    assert "tensorflow/include/" in LEFT_OUT and "pyspark/jars/" in LEFT_OUT


def test_missing_requirements_are_one_line_errors() -> None:
    with pytest.raises(UserInputError, match=r"^no-such-dist-xyz \(needed by the archive\) is not installed"):
        requirement_closure(["no-such-dist-xyz"])


def test_pack_refuses_bad_outputs_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"must end in \.tar\.gz, \.tgz, \.zip"):
        pack(tmp_path / "env.tar")
    (tmp_path / "env.tar.gz").write_bytes(b"")
    with pytest.raises(UserInputError, match="exists"):
        pack(tmp_path / "env.tar.gz")
    with pytest.raises(UserInputError, match="--with takes a wheel file or a directory"):
        pack(tmp_path / "other.tar.gz", [tmp_path])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env.tar.gz"]  # nothing half-written


def test_spark_settings_ship_the_archive(tmp_path: Path) -> None:
    archive = tmp_path / "env.tar.gz"
    with pytest.raises(UserInputError, match="no such archive"):
        executor_settings(archive)
    archive.write_bytes(b"")
    settings = executor_settings(archive)
    assert settings == {"spark.archives": f"{archive}#environment",
                        "spark.executorEnv.PYSPARK_PYTHON": "./environment/bin/python"}
    assert EXECUTOR_PYTHON == "./environment/bin/python"
    conf = spark_conf(REPO / "configs" / "quickstart.yaml", env=archive)
    assert conf.get("spark.archives") == f"{archive}#environment"
    assert _shipped(archive) == ["--archives", f"{archive}#environment",
                                 "--conf", "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python"]
    assert _shipped(None) == []


def test_cli_env_and_pack_errors_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["run", str(REPO / "configs" / "quickstart.yaml"), "--env", str(tmp_path / "none.tar.gz")]) == 2
    assert main(["pack", "--out", str(tmp_path / "env.zip.part")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err), err
    assert "ddl pack --out" in err[0]


class _Opened:
    """A SparkSource that hands back a plain object for the context: what ShippedEnvironment sets on it."""

    def __init__(self) -> None:
        self.conf = None

    def open(self, conf):
        self.conf = conf
        return type("Context", (), {"pythonExec": "python3"})()

    def close(self, sc) -> None:
        pass


def test_a_shipped_environment_adds_to_the_archives_already_set(tmp_path: Path) -> None:
    from pyspark import SparkConf

    from ddl_commodity.launch.pack import ShippedEnvironment

    archive = tmp_path / "env.tar.gz"
    archive.write_bytes(b"")
    source = _Opened()
    sc = ShippedEnvironment(source, archive).open(SparkConf(loadDefaults=False).set("spark.archives", "a.zip#a"))
    assert source.conf.get("spark.archives") == f"a.zip#a,{archive}#environment"
    assert source.conf.get("spark.executorEnv.PYSPARK_PYTHON") == EXECUTOR_PYTHON == sc.pythonExec

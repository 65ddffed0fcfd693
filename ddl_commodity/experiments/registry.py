"""Experiments by name (``activations.get`` style): the thesis's two are registered here; any other is named in
its YAML file by dotted path, ``experiment: mypkg.module:MyExperiment``, and imported from the current
directory or the Python path. Nothing outside this module names an experiment.
"""

from __future__ import annotations

import importlib
import os
import sys
import zipfile
from pathlib import Path

from ddl_commodity.config import RunConfig, merge, read_yaml, validate
from ddl_commodity.errors import ConfigError
from ddl_commodity.experiments.api import Experiment
from ddl_commodity.experiments.view import ExperimentView, LossView
from ddl_commodity.resources.profiles import load_profile

#: name -> "module:Class"; imported on first use so that loading one experiment never imports another's code.
_BUILTIN = {
    "redshift": "ddl_commodity.experiments.redshift:RedshiftExperiment",
    "landcover": "ddl_commodity.experiments.landcover:LandcoverExperiment",
}
#: What a config without an ``experiment`` key runs (chapter 5's: the key is optional).
DEFAULT_EXPERIMENT = "redshift"
#: Former names: an experiment is named for what is trained, ``training.mode`` says how. A config is refused
#: with the new name; a run directory of before the rename is still shown (:func:`view_of`).
RENAMED = {"redshift_data_parallel": "redshift", "landcover_model_parallel": "landcover"}
#: Former ``training.mode`` names.
RENAMED_MODES = {"distributed": "data_parallel"}


def names() -> list[str]:
    return sorted(_BUILTIN)


def _import(path: str, source: str) -> type[Experiment]:
    module_name, _, attr = path.partition(":")
    if os.getcwd() not in sys.path:  # like `python -m`: a user's module next to their YAML files
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{source}: experiment {path!r} cannot be imported: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, Experiment)):
        raise ConfigError(f"{source}: experiment {path!r} is not an Experiment subclass")
    return cls


def get(name: str, source: str = "<config>") -> Experiment:
    """The experiment registered as ``name``, or the class at dotted path ``module:Class``; a former name is a
    one-line :class:`ConfigError` that names the new one."""
    if name in RENAMED:
        raise ConfigError(f"{source}: experiment {name!r} was renamed: use {RENAMED[name]!r} (training.mode says how)")
    if name in _BUILTIN:
        return _import(_BUILTIN[name], source)()
    if ":" in name:
        return _import(name, source)()
    raise ConfigError(f"{source}: invalid configuration\n  experiment: unknown experiment {name!r} "
                      f"(known: {', '.join(names())}; or give module.path:ClassName)")


def view_of(experiment: Experiment | str) -> ExperimentView:
    """How ``experiment``'s runs are shown: its :attr:`~Experiment.view`, or for one that names none and does not
    classify, :class:`~ddl_commodity.experiments.view.LossView`. By name (a run directory's ``experiment``) a
    former name still resolves, so runs of before a rename are shown as they were; another unknown or
    unimportable name is a :class:`ConfigError`."""
    if isinstance(experiment, str):
        experiment = get(RENAMED.get(experiment, experiment))
    cls = experiment.view
    if cls is ExperimentView and not experiment.classification:
        cls = LossView
    return cls()


def experiment_and_config(raw: object, source: str = "<config>", check: bool = True) -> tuple[Experiment, RunConfig]:
    """Validate an already-parsed YAML document with its experiment's schema and, if ``check``, its checks
    (the split scheme's file: a node gets the scheme resolved by the driver, not its path)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}")
    raw = {"experiment": DEFAULT_EXPERIMENT, **raw}
    if not isinstance(raw["experiment"], str):
        raise ConfigError(f"{source}: invalid configuration\n  experiment: must be a name or module:Class")
    mode = raw["training"].get("mode") if isinstance(raw.get("training"), dict) else None
    if isinstance(mode, str) and mode in RENAMED_MODES:
        raise ConfigError(f"{source}: training.mode {mode!r} was renamed: use {RENAMED_MODES[mode]!r}")
    experiment = get(raw["experiment"], source)
    cfg = validate(experiment.config_class, raw, source)
    if not check:
        return experiment, cfg
    try:
        experiment.check(cfg)
        if cfg.cluster.profile:
            load_profile(cfg.cluster.profile)
    except ConfigError as err:
        raise ConfigError(f"{source}: invalid configuration\n  {err}") from None
    return experiment, cfg


def parse_config(raw: object, source: str = "<config>") -> RunConfig:
    return experiment_and_config(raw, source)[1]


def load(path: str | Path, overrides: dict | None = None) -> tuple[Experiment, RunConfig]:
    """Read and validate a YAML experiment file; ``overrides`` (nested dicts) are merged on top."""
    raw = read_yaml(path)
    if overrides and isinstance(raw, dict):  # anything else is refused below, as it is without overrides
        raw = merge(raw, overrides)
    return experiment_and_config(raw, str(path))


def load_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    return load(path, overrides)[1]


def experiment_code_archive(name: str, work_dir: Path) -> Path | None:
    """A zip of a dotted-path experiment's top-level package (or its one module) for ``SparkContext.addPyFile``,
    so executors on other machines can import it; ``None`` for experiments inside this toolkit."""
    if ":" not in name or name in _BUILTIN:
        return None
    top = sys.modules[name.partition(":")[0].split(".")[0]]
    origin = Path(top.__file__) if getattr(top, "__file__", None) else None
    root = origin.parent if origin and origin.name == "__init__.py" else None
    if root is None and hasattr(top, "__path__"):  # a namespace package (a folder without __init__.py)
        root = Path(next(iter(top.__path__)))
    archive = Path(work_dir) / "experiment-code.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        if root is None:
            zf.write(origin, origin.name)
            return archive
        for f in sorted(root.rglob("*.py")):
            zf.write(f, str(Path(root.name) / f.relative_to(root)))
        # zipimport finds no namespace packages (a folder without __init__.py, like examples/): make them regular
        for folder in sorted({f.parent for f in root.rglob("*.py")}):
            if not (folder / "__init__.py").exists():
                zf.writestr(str(Path(root.name) / folder.relative_to(root) / "__init__.py"), "")
    return archive

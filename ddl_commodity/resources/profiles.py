"""Cluster profiles as data: a real cluster (PCs, cores, memory, link speed) scaled to this machine.

A profile (``configs/clusters/<name>.yaml``) describes the PCs being emulated. :meth:`ClusterProfile.resolve`
turns it into what every node of the local cluster gets, by a time-dilation factor d: d of the PC's cores
and d x its link rate, so that compute-to-communication ratios stay those of the real cluster, and one
second measured here is d seconds of the real cluster ("cluster seconds").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from ddl_commodity.config import Strict, read_yaml
from ddl_commodity.errors import ConfigError, UserInputError
from ddl_commodity.resources.cgroups import NodeLimits, parse_size

PROFILE_DIR = Path(__file__).resolve().parents[2] / "configs" / "clusters"
_RATE_UNITS = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


class PcSpec(Strict):
    cores: float = Field(1.0, gt=0)
    memory: str = "2g"


class ClusterProfile(Strict):
    """One emulated cluster. ``nodes`` counts the master; ``master`` defaults to ``node``."""

    name: str
    description: str = ""
    nodes: int = Field(5, ge=2, le=64)
    node: PcSpec = PcSpec()
    master: PcSpec | None = None
    link: str = "1gbit"
    dilation: float | Literal["auto"] = "auto"

    def resolve(self, machine_cores: int | None = None) -> ResolvedProfile:
        cores = machine_cores or os.cpu_count() or 1
        master = self.master or self.node
        demand = self.node.cores * (self.nodes - 1) + master.cores
        d = min(1.0, cores / demand) if self.dilation == "auto" else float(self.dilation)
        if d * demand > cores + 1e-9:
            raise UserInputError(f"profile {self.name}: dilation {d:g} asks for {d * demand:.2f} cores, "
                                 f"this machine has {cores}")
        return ResolvedProfile(
            name=self.name, dilation=round(d, 4), nodes=self.nodes,
            worker=NodeLimits(cpus=round(self.node.cores * d, 4), memory=parse_size(self.node.memory)),
            master=NodeLimits(cpus=round(master.cores * d, 4), memory=parse_size(master.memory)),
            bandwidth=scale_rate(self.link, d))


@dataclass(frozen=True)
class ResolvedProfile:
    """A profile on this machine: per-node limits, the link rate to shape, and d."""

    name: str
    dilation: float
    nodes: int
    worker: NodeLimits
    master: NodeLimits
    bandwidth: str


def rate_bps(rate: str) -> float:
    """``"400mbit"`` -> 4e8 bits per second."""
    text = rate.strip().lower()
    unit = next((u for u in _RATE_UNITS if text.endswith(u)), None)
    try:
        bits = float(text[: -len(unit)]) * _RATE_UNITS[unit] if unit else -1.0
    except ValueError:
        bits = -1.0
    if not bits > 0:
        raise UserInputError(f"link rate {rate!r}: expected e.g. 1gbit or 100mbit")
    return bits


def scale_rate(rate: str, factor: float) -> str:
    """``"1gbit"`` x 0.4 -> ``"400mbit"`` (tc syntax)."""
    bits = rate_bps(rate) * factor
    return f"{round(bits / 1e6)}mbit" if bits >= 1e6 else f"{max(1, round(bits / 1e3))}kbit"


def load_profile(name_or_path: str | Path) -> ClusterProfile:
    """A profile by name (``configs/clusters/<name>.yaml``) or by path; errors are :class:`ConfigError`."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise ConfigError(f"cluster profile {name_or_path!r} not found (known: {', '.join(known) or 'none'})")
    try:
        return ClusterProfile.model_validate(read_yaml(path))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def cluster_limits(profile: str | None, node_cpus: float | None = None, node_memory: str | None = None,
                   master_cpus: float | None = None, master_memory: str | None = None,
                   ) -> tuple[NodeLimits, NodeLimits, ResolvedProfile | None]:
    """``(worker limits, master limits, resolved profile)``: the profile's, overridden by explicit values.

    Explicit worker values apply to the master too unless the master's are given.
    """
    resolved = load_profile(profile).resolve() if profile else None
    worker = resolved.worker if resolved else NodeLimits()
    master = resolved.master if resolved else NodeLimits()
    mem = parse_size(node_memory) if node_memory else None
    worker = NodeLimits(cpus=node_cpus or worker.cpus, memory=mem or worker.memory)
    master = NodeLimits(cpus=master_cpus or node_cpus or master.cpus,
                        memory=(parse_size(master_memory) if master_memory else None) or mem or master.memory)
    return worker, master, resolved
